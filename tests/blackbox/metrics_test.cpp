// Black-box tests of observability: `mlkeeper agent` with [metrics] on a free loopback port, two
// fake GPUs (the fake NVML library), a backup and a cleanup run beforehand, a scheduled job and a
// model. The scrape must hold every part's families with the right values and pass
// `promtool check metrics`; the status page's data and charts must follow the GPUs; tokens guard
// the data but not the page's shell; one-shot commands write the same families as textfiles.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mlkeeper/core/http_client.hpp"
#include "support/chromium.hpp"
#include "support/fake_nvml.hpp"
#include "support/mlkeeper_runner.hpp"
#include "support/promtool.hpp"
#include "support/servers.hpp"
#include "support/temp_dir.hpp"
#include "support/tree.hpp"
#include "support/wait.hpp"

namespace mlk {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::MlkeeperRunner;

constexpr const char* kViewer = "fedcba9876543210fedcba9876543210";

class MetricsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        nvml_ = gpu::testing::fake_nvml_path();
        if (nvml_.empty()) {
            GTEST_SKIP() << "the fake NVML library was not built";
        }
        port_ = testing::free_port();
        scenario_ =
            mk_.dir().write("gpus.txt",
                            "gpu 0 name=\"NVIDIA H100 80GB HBM3\" uuid=GPU-aaaa temp=61 util=90 "
                            "mem_used_mib=40960 mem_total_mib=81559 power_w=650 power_limit_w=700\n"
                            "gpu 1 name=\"NVIDIA H100 80GB HBM3\" uuid=GPU-bbbb temp=88 util=10 "
                            "mem_used_mib=1024 mem_total_mib=81559 power_w=90 power_limit_w=700 "
                            "ecc_vol_uncorr=2 xid=79\n");
        mk_.env()["FAKE_NVML_SCENARIO"] = scenario_.string();
        mk_.env()["LOG_FILE"] = (mk_.dir() / "mlkeeper.log").string();
        fs::create_directories(mk_.dir() / "models/llama");
        std::ofstream(mk_.dir() / "models/llama/weights.bin") << std::string(100000, 'w');
        for (const char* d : {"experiments", "checkpoints", "logs", "tmp"}) {
            fs::create_directories(mk_.dir() / "work" / d);
        }
    }

    void write_config(const std::string& extra = "") {
        std::ofstream(config_path())
            << "[gpu]\nnvml_library = \"" << nvml_ << "\"\nwrite_csv = false\n\n"
            << "[backup]\nmodel_dir = \"" << (mk_.dir() / "models").string()
            << "\"\nbackup_dir = \"" << (mk_.dir() / "backups").string() << "\"\n\n"
            << "[cleanup]\n"
            << "experiments_dir = \"" << (mk_.dir() / "work/experiments").string() << "\"\n"
            << "checkpoints_dir = \"" << (mk_.dir() / "work/checkpoints").string() << "\"\n"
            << "logs_dir = \"" << (mk_.dir() / "work/logs").string() << "\"\n"
            << "temp_dir = \"" << (mk_.dir() / "work/tmp").string() << "\"\n\n"
            << "[health]\nservices_to_check = []\ncheck_errors = false\n\n"
            << "[schedule]\ndefault_jobs = false\n\n"
            << "[schedule.jobs.nightly]\ncommand = [\"/bin/true\"]\n"
            << "on_calendar = \"*-*-* 03:30:00\"\n\n"
            << "[metrics]\nenabled = true\nlisten = \"127.0.0.1:" << port_ << "\"\n"
            << "gpu_interval = \"1s\"\nhealth_interval = \"2s\"\nhealth_network = false\n"
            << extra << "\n"
            << "[models.web]\ncommand = [\"/bin/sleep\", \"1000\"]\nstart_timeout = \"5s\"\n";
    }
    fs::path config_path() const { return mk_.dir() / "mlkeeper.toml"; }

    util::Subprocess start_agent() {
        return mk_.start_agent(config_path(), [&] { return get("/health").status == 200; });
    }
    void stop_agent(util::Subprocess& agent) { MlkeeperRunner::stop_agent(agent); }

    core::HttpResponse get(const std::string& path, const std::string& token = "") {
        core::HttpRequest r;
        r.url = "http://127.0.0.1:" + std::to_string(port_) + path;
        r.timeout = 10s;
        if (!token.empty()) {
            r.headers.emplace_back("Authorization", "Bearer " + token);
        }
        try {
            return core::http_request(r);
        } catch (const std::exception&) {
            return {};
        }
    }
    util::RunResult cli(std::vector<std::string> args) {
        args.insert(args.begin(), {"--config", config_path().string()});
        return mk_.run(args);
    }

    MlkeeperRunner mk_;
    std::string nvml_;
    fs::path scenario_;
    int port_ = 0;
};

std::string header(const core::HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
        if (strcasecmp(k.c_str(), name.c_str()) == 0) {
            return v;
        }
    }
    return "";
}

TEST_F(MetricsTest, OneScrapeHoldsEveryPartAndPassesPromtool) {
    write_config();
    ASSERT_EQ(cli({"backup", "--json"}).exit_code, 0);
    ASSERT_EQ(cli({"cleanup", "--yes", "--json"}).exit_code, 0);
    auto agent = start_agent();
    // The health collector's first run lands within its interval.
    std::string text;
    ASSERT_TRUE(testing::wait_until(
        [&] {
            text = get("/metrics").body;
            return text.find("mlkeeper_health_score_ratio") != std::string::npos &&
                   text.find("mlkeeper_gpu_last_xid{gpu=\"1\"") != std::string::npos &&
                   text.find("} 79\n") != std::string::npos;
        },
        15s))
        << text << testing::slurp(mk_.dir() / "agent.log");
    const auto r = get("/metrics");
    EXPECT_THAT(header(r, "Content-Type"), HasSubstr("text/plain; version=0.0.4"));
    for (const char* want : {
             "mlkeeper_build_info{version=\"",
             "mlkeeper_agent_uptime_seconds ",
             "mlkeeper_gpu_devices 2\n",
             "mlkeeper_gpu_temperature_celsius{gpu=\"1\",uuid=\"GPU-bbbb\",name=\"NVIDIA H100 80GB "
             "HBM3\"} 88\n",
             "mlkeeper_gpu_status{gpu=\"1\",uuid=\"GPU-bbbb\",name=\"NVIDIA H100 80GB HBM3\"} 2\n",
             "mlkeeper_gpu_ecc_errors_total{gpu=\"1\",uuid=\"GPU-bbbb\",name=\"NVIDIA H100 80GB "
             "HBM3\",type=\"uncorrected\",counter=\"volatile\"} 2\n",
             "mlkeeper_gpu_xid_errors_total{gpu=\"1\",uuid=\"GPU-bbbb\",name=\"NVIDIA H100 80GB "
             "HBM3\"} 1\n",
             "mlkeeper_gpu_last_xid{gpu=\"1\",uuid=\"GPU-bbbb\",name=\"NVIDIA H100 80GB HBM3\"} "
             "79\n",
             "mlkeeper_health_check_status{check=\"GPU 1\"",
             "mlkeeper_backup_runs_total{result=\"success\"} 1\n",
             "mlkeeper_backup_verified 1\n",
             "mlkeeper_backup_last_success_timestamp_seconds ",
             "mlkeeper_cleanup_runs_total{result=\"success\"} 1\n",
             "mlkeeper_alerts_firing{severity=\"critical\"} ",
             "mlkeeper_model_state{model=\"web\",state=\"stopped\"} 1\n",
             "mlkeeper_scrape_duration_seconds ",
         }) {
        EXPECT_THAT(r.body, HasSubstr(want));
    }
    std::string out;
    EXPECT_TRUE(testing::promtool_accepts(r.body, &out)) << out << r.body;
    stop_agent(agent);
}

TEST_F(MetricsTest, StatusPageDataAndChartsFollowTheGpus) {
    write_config();
    ASSERT_EQ(cli({"backup", "--json"}).exit_code, 0);
    auto agent = start_agent();
    const auto page = get("/");
    EXPECT_EQ(page.status, 200);
    EXPECT_THAT(header(page, "Content-Type"), HasSubstr("text/html"));
    EXPECT_THAT(page.body, HasSubstr("api/dashboard/summary"));

    nlohmann::json s;
    ASSERT_TRUE(testing::wait_until(
        [&] {
            const auto r = get("/api/dashboard/summary");
            if (r.status != 200) {
                return false;
            }
            s = nlohmann::json::parse(r.body);
            return s["gpus"].size() == 2 && !s["health"]["checks"].empty();
        },
        15s))
        << s.dump(2);
    EXPECT_EQ(s["gpus"][1]["temp"], 88);
    EXPECT_EQ(s["gpus"][1]["status"], "critical");
    EXPECT_FALSE(s["gpus"][1]["findings"].empty());
    ASSERT_EQ(s["backups"].size(), 1u);
    EXPECT_EQ(s["backups"][0]["ok"], true);
    ASSERT_EQ(s["schedule"].size(), 1u);
    EXPECT_EQ(s["schedule"][0]["job"], "nightly");
    EXPECT_TRUE(s["schedule"][0]["next"].is_string());
    ASSERT_EQ(s["models"].size(), 1u);
    EXPECT_EQ(s["models"][0]["state"], "stopped");

    // Samples every second land in the history: both GPUs get a line.
    std::string svg;
    ASSERT_TRUE(testing::wait_until(
        [&] {
            const auto r = get("/charts/gpu/temp.svg?range=1h");
            svg = r.body;
            return r.status == 200 && svg.find("GPU 1") != std::string::npos;
        },
        15s))
        << svg;
    EXPECT_THAT(svg, HasSubstr("<svg"));
    EXPECT_THAT(svg, HasSubstr("GPU 0"));
    EXPECT_EQ(get("/charts/gpu/nope.svg").status, 404);
    EXPECT_EQ(get("/charts/gpu/temp.svg?range=5y").status, 400);
    stop_agent(agent);
}

// The real agent's page in headless Chromium: data from the collectors and the state database,
// charts from the history, no console errors. The screenshot is kept for review.
TEST_F(MetricsTest, TheStatusPageRendersInChromium) {
    MLK_REQUIRE_CHROMIUM();
    write_config();
    ASSERT_EQ(cli({"backup", "--json"}).exit_code, 0);
    auto agent = start_agent();
    // A few seconds of samples, so the charts have lines.
    ASSERT_TRUE(testing::wait_until(
        [&] { return get("/charts/gpu/temp.svg").body.find("GPU 1") != std::string::npos; }, 15s));
    const auto png = testing::artifact_path("agent-status-page.png");
    const auto page = testing::load_page("http://127.0.0.1:" + std::to_string(port_) + "/",
                                         "document.body.dataset.ready === '1'", 30s, png);
    EXPECT_TRUE(page.ready) << testing::describe(page.console) << page.dom;
    EXPECT_TRUE(page.errors.empty()) << testing::describe(page.errors);
    EXPECT_THAT(page.dom, HasSubstr("NVIDIA H100 80GB HBM3"));
    EXPECT_THAT(page.dom, HasSubstr("nightly"));
    EXPECT_THAT(page.dom, HasSubstr("models_backup_"));
    EXPECT_THAT(page.dom, HasSubstr("<svg"));
    std::cout << "status page screenshot: " << png.string() << "\n";
    stop_agent(agent);
}

TEST_F(MetricsTest, TokensGuardTheDataButNotThePageShell) {
    const auto tokens = mk_.dir().write("tokens", std::string("viewer read ") + kViewer + "\n");
    ::chmod(tokens.c_str(), 0600);
    write_config();
    std::ofstream(config_path(), std::ios::app)
        << "\n[api]\ntokens_file = \"" << tokens.string() << "\"\n";
    auto agent = start_agent();
    EXPECT_EQ(get("/metrics").status, 401);
    EXPECT_EQ(get("/api/dashboard/summary").status, 401);
    EXPECT_EQ(get("/charts/gpu/temp.svg").status, 401);
    EXPECT_EQ(get("/metrics", "wrong-token-wrong-token-wrong-tok").status, 401);
    EXPECT_EQ(get("/metrics", kViewer).status, 200);
    EXPECT_EQ(get("/").status, 200);  // the shell holds no data; it asks for the token
    stop_agent(agent);
}

TEST_F(MetricsTest, OffLoopbackWithoutTokensIsRefusedAtStart) {
    write_config();
    std::string text = testing::slurp(config_path());
    text.replace(text.find("127.0.0.1:" + std::to_string(port_)), 9, "0.0.0.0");
    std::ofstream(config_path()) << text;
    auto r = cli({"agent"});
    EXPECT_EQ(r.exit_code, 78) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("metrics.listen"));
}

TEST_F(MetricsTest, OneShotCommandsWriteTheSameFamiliesAsTextfiles) {
    write_config();
    // Healthy GPUs: a critical GPU would stop the maintenance run before the backup.
    std::ofstream(scenario_) << "gpu 0 temp=50\ngpu 1 temp=51\n";
    const auto dir = mk_.dir() / "textfile";
    fs::create_directories(dir);
    ASSERT_EQ(cli({"maintain", "--skip-health", "--textfile", dir.string()}).exit_code, 0);
    for (const char* name :
         {"mlkeeper_gpu.prom", "mlkeeper_backup.prom", "mlkeeper_cleanup.prom"}) {
        ASSERT_TRUE(fs::exists(dir / name)) << name;
        const auto text = testing::slurp(dir / name);
        std::string out;
        EXPECT_TRUE(testing::promtool_accepts(text, &out)) << name << ": " << out << text;
    }
    EXPECT_THAT(testing::slurp(dir / "mlkeeper_backup.prom"),
                HasSubstr("mlkeeper_backup_runs_total{result=\"success\"} 1\n"));
    EXPECT_FALSE(fs::exists(dir / "mlkeeper_health.prom"));  // skipped
    // No temp files left beside them for node_exporter to trip over.
    for (const auto& e : fs::directory_iterator(dir)) {
        EXPECT_EQ(e.path().extension(), ".prom") << e.path();
    }
}

}  // namespace
}  // namespace mlk
