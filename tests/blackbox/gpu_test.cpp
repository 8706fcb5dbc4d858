// Black-box tests of `mlkeeper gpu` through the fake NVML library: exit codes
// as the seeds, JSON and CSV output, Prometheus text checked by promtool,
// --watch keeping one NVML session, alerts through a command channel.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/fake_nvml.hpp"
#include "support/mlkeeper_runner.hpp"

namespace mlk {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class GpuCli : public ::testing::Test {
  protected:
    void SetUp() override {
        lib_ = gpu::testing::fake_nvml_path();
        if (lib_.empty()) {
            GTEST_SKIP() << "fake NVML library not built";
        }
        m_.env()["MLKEEPER_NVML_LIBRARY"] = lib_;
        m_.env()["METRICS_FILE"] = (m_.dir() / "gpu-metrics.csv").string();
        m_.env()["ALERT_SYSLOG"] = "off";
        m_.env()["ALERT_JOURNAL"] = "off";
    }
    util::RunResult run(const std::string& scenario, std::vector<std::string> args) {
        auto file = m_.dir() / "scenario.txt";
        std::ofstream(file) << scenario;
        args.insert(args.begin(), "gpu");
        return m_.run(args, {{"FAKE_NVML_SCENARIO", file.string()},
                             {"FAKE_NVML_INIT_LOG", (m_.dir() / "init.log").string()}});
    }
    testing::MlkeeperRunner m_;
    std::string lib_;
};

TEST_F(GpuCli, HealthyGpuExitsZeroAndPrintsOneLinePerGpu) {
    auto r =
        run("gpu 0 name=\"NVIDIA A100\" temp=55 util=30 mem_used_mib=1024\n"
            "gpu 1 name=\"NVIDIA A100\" temp=60\n",
            {});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("NVIDIA A100"));
    EXPECT_THAT(r.out, HasSubstr("55"));
    EXPECT_THAT(r.out, Not(HasSubstr("\x1b[")));  // no colour when stdout is not a TTY
}

TEST_F(GpuCli, ExitCodesFollowTheSeeds) {
    EXPECT_EQ(run("gpu 0 temp=82\n", {}).exit_code, 1);             // warning
    EXPECT_EQ(run("gpu 0 temp=90\n", {}).exit_code, 2);             // critical
    EXPECT_EQ(run("gpu 0 lost=1\n", {}).exit_code, 2);              // fallen off the bus
    EXPECT_EQ(run("gpu 0 ecc_vol_uncorr=3\n", {}).exit_code, 2);    // uncorrected ECC
    EXPECT_EQ(run("gpu 0 mem_used_mib=15900\n", {}).exit_code, 1);  // 97 % of 16 GiB
    EXPECT_EQ(run("gpu 0 power_w=298 power_limit_w=300\n", {}).exit_code, 1);
}

TEST_F(GpuCli, ThresholdsFromEnvAndFlags) {
    EXPECT_EQ(run("gpu 0 temp=70\n", {}).exit_code, 0);
    m_.env()["TEMP_THRESHOLD"] = "65";
    EXPECT_EQ(run("gpu 0 temp=70\n", {}).exit_code, 1);
    EXPECT_EQ(run("gpu 0 temp=70\n", {"--temp-threshold", "75"}).exit_code, 0);  // flag wins
    auto bad = run("gpu 0 temp=70\n", {"--temp-threshold", "hot"});
    EXPECT_EQ(bad.exit_code, 64) << bad.err;
}

TEST_F(GpuCli, NoDriverIsSuccessUnlessAGpuIsRequired) {
    m_.env()["MLKEEPER_NVML_LIBRARY"] = (m_.dir() / "no-such-libnvidia-ml.so.1").string();
    auto r = run("", {});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out + r.err, HasSubstr("GPU"));
    EXPECT_EQ(run("", {"--require-gpu"}).exit_code, 2);
}

TEST_F(GpuCli, UnsupportedFieldsAreNullInJsonNeverSentinels) {
    auto r = run("gpu 0 unsupported=fan,power,ecc sentinel=temp\n", {"--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["gpus"].size(), 1u);
    EXPECT_TRUE(j["gpus"][0]["temp"].is_null()) << r.out;
    EXPECT_THAT(r.out, Not(HasSubstr("4294967295")));
}

TEST_F(GpuCli, CsvHasTheSeedsHeaderOnce) {
    ASSERT_EQ(run("gpu 0 temp=50\ngpu 1 temp=51\n", {}).exit_code, 0);
    ASSERT_EQ(run("gpu 0 temp=50\ngpu 1 temp=51\n", {}).exit_code, 0);
    auto csv = slurp(m_.dir() / "gpu-metrics.csv");
    const std::string header =
        "timestamp,gpu_id,name,temp,util_gpu,util_mem,mem_used,mem_total,power_draw,power_limit\n";
    EXPECT_EQ(csv.rfind(header, 0), 0u) << csv;
    EXPECT_EQ(csv.find(header, 1), std::string::npos) << csv;
    EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5) << csv;
}

TEST_F(GpuCli, WatchKeepsOneNvmlSession) {
    auto r = run("gpu 0 temp=50\n", {"--watch", "0.1", "--count", "4", "--no-csv"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto log = slurp(m_.dir() / "init.log");
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 2) << log;  // one init, one shutdown
    EXPECT_THAT(log, HasSubstr("shutdown"));
}

TEST_F(GpuCli, PrometheusTextfilePassesPromtool) {
    if (!std::filesystem::exists("/usr/bin/promtool")) {
        GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
    }
    auto dir = m_.dir() / "textfile";
    std::filesystem::create_directories(dir);
    auto r = run("gpu 0 temp=50 unsupported=fan\ngpu 1 lost=1\n",
                 {"--textfile", dir.string(), "--no-csv"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    auto prom = dir / "mlkeeper_gpu.prom";
    ASSERT_TRUE(std::filesystem::exists(prom));
    auto check = util::run_process({"/bin/sh", "-c", "promtool check metrics < " + prom.string()});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err << slurp(prom);
}

TEST_F(GpuCli, AlertsFireOnceThenResolve) {
    auto log = m_.dir() / "alerts.log";
    auto handler = m_.dir() / "handler.sh";
    std::ofstream(handler) << "#!/bin/sh\necho \"$1 $2\" >> " << log.string() << "\n";
    std::filesystem::permissions(handler, std::filesystem::perms::owner_all);
    m_.env()["ALERT_COMMAND"] = handler.string();
    EXPECT_EQ(run("gpu 0 temp=90\n", {"--alert"}).exit_code, 2);
    EXPECT_EQ(run("gpu 0 temp=90\n", {"--alert"}).exit_code, 2);  // cooldown: no second notice
    EXPECT_EQ(run("gpu 0 temp=50\n", {"--alert"}).exit_code, 0);  // resolved notice
    auto text = slurp(log);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
    EXPECT_THAT(text, HasSubstr("critical"));
}

}  // namespace
}  // namespace mlk
