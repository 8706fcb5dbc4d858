// Black-box tests of the REST API served by `mlkeeper agent`: the real binary on a free loopback
// port, a real model process (python3's http.server) started and stopped through the API and the
// `mlkeeper models` CLI, bearer tokens, the shutdown service with a recording power-off command
// (surviving an agent restart), and the refusals at start.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "mlkeeper/core/http_client.hpp"
#include "support/mlkeeper_runner.hpp"
#include "support/servers.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::MlkeeperRunner;

constexpr const char* kAdmin = "0123456789abcdef0123456789abcdef";
constexpr const char* kViewer = "fedcba9876543210fedcba9876543210";

class ApiTest : public ::testing::Test {
  protected:
    void SetUp() override {
        port_ = testing::free_port();
        model_port_ = testing::free_port();
        tokens_ = mk_.dir().write(
            "tokens", std::string("ops admin ") + kAdmin + "\nviewer read " + kViewer + "\n");
        ::chmod(tokens_.c_str(), 0600);
        client_token_ = mk_.dir().write("client-token", std::string(kAdmin) + "\n");
        ::chmod(client_token_.c_str(), 0600);
        record_ = mk_.dir() / "poweroff.log";
        mk_.env()["LOG_FILE"] = (mk_.dir() / "mlkeeper.log").string();
    }

    void write_config(const std::string& api_extra = "") {
        std::ofstream(config_path())
            << "[schedule]\ndefault_jobs = false\n\n"
            << "[api]\nenabled = true\nlisten = \"127.0.0.1:" << port_ << "\"\n"
            << "tokens_file = \"" << tokens_.string() << "\"\n"
            << "client_token_file = \"" << client_token_.string() << "\"\n"
            << api_extra << "\n"
            << "[shutdown]\ncommand = [\"/bin/sh\", \"-c\", \"echo poweroff >> '"
            << record_.string() << "'\"]\n\n"
            << "[models.web]\ncommand = [\"/usr/bin/python3\", \"-m\", \"http.server\", \""
            << model_port_ << "\", \"--bind\", \"127.0.0.1\"]\nport = " << model_port_
            << "\nhealth_url = \"http://127.0.0.1:" << model_port_
            << "/\"\nstart_timeout = \"20s\"\nstop_timeout = \"5s\"\n\n"
            << "[models.broken]\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\"]\n"
            << "start_timeout = \"5s\"\nrestart = \"no\"\n";
    }

    fs::path config_path() const { return mk_.dir() / "mlkeeper.toml"; }

    util::Subprocess start_agent() {
        return mk_.start_agent(config_path(), [&] { return get("/health").status == 200; });
    }
    void stop_agent(util::Subprocess& agent) { MlkeeperRunner::stop_agent(agent); }

    core::HttpResponse call(const std::string& method, const std::string& path,
                            const std::string& token = "", const std::string& body = "") {
        core::HttpRequest r;
        r.method = method;
        r.url = "http://127.0.0.1:" + std::to_string(port_) + path;
        r.body = body;
        r.timeout = 30s;
        if (!token.empty()) {
            r.headers.emplace_back("Authorization", "Bearer " + token);
        }
        if (!body.empty()) {
            r.headers.emplace_back("Content-Type", "application/json");
        }
        try {
            return core::http_request(r);
        } catch (const std::exception&) {
            return {};  // status 0: not reachable (yet)
        }
    }
    core::HttpResponse get(const std::string& path, const std::string& token = "") {
        return call("GET", path, token);
    }
    util::RunResult cli(std::vector<std::string> args) {
        args.insert(args.begin(), {"--config", config_path().string()});
        return mk_.run(args);
    }

    MlkeeperRunner mk_;
    int port_ = 0;
    int model_port_ = 0;
    fs::path tokens_, client_token_, record_;
};

TEST_F(ApiTest, ModelsStartAndStopThroughTheApiAndTheCli) {
    write_config();
    auto agent = start_agent();

    // Authentication: none, read-only, admin.
    EXPECT_EQ(get("/api/v1/models").status, 401);
    auto list = get("/api/v1/models", kViewer);
    ASSERT_EQ(list.status, 200) << list.body;
    auto models = nlohmann::json::parse(list.body)["models"];
    ASSERT_EQ(models.size(), 2u);
    EXPECT_EQ(models[0]["name"], "broken");
    EXPECT_EQ(models[1]["state"], "stopped");
    EXPECT_EQ(call("POST", "/api/v1/models/web/start", kViewer).status, 403);
    EXPECT_EQ(get("/api/v1/models/..%2Fetc", kViewer).status, 404);
    EXPECT_EQ(get("/api/v1/models/web%3Brm", kViewer).status, 404);

    auto started = call("POST", "/api/v1/models/web/start", kAdmin);
    ASSERT_EQ(started.status, 200) << started.body << testing::slurp(mk_.dir() / "agent.log");
    auto s = nlohmann::json::parse(started.body);
    EXPECT_EQ(s["result"], "started");
    EXPECT_EQ(s["model"]["state"], "running");
    EXPECT_TRUE(s["model"]["pid"].is_number());
    EXPECT_TRUE(testing::wait_for_port(model_port_, 1s)) << "the model itself answers";
    EXPECT_EQ(
        nlohmann::json::parse(call("POST", "/api/v1/models/web/start", kAdmin).body)["result"],
        "already_running");

    // The CLI reaches the same agent with the client token.
    auto cl = cli({"models", "list"});
    EXPECT_EQ(cl.exit_code, 0) << cl.err;
    EXPECT_THAT(cl.out, HasSubstr("web"));
    EXPECT_THAT(cl.out, HasSubstr("running"));
    auto cs = cli({"models", "stop", "web"});
    EXPECT_EQ(cs.exit_code, 0) << cs.err << cs.out;
    EXPECT_EQ(nlohmann::json::parse(get("/api/v1/models/web", kViewer).body)["state"], "stopped");
    EXPECT_FALSE(testing::wait_for_port(model_port_, 200ms)) << "the model process is gone";

    // A model that exits at once: 500 start_failed, and the CLI exits 1 with the reason.
    auto broken = call("POST", "/api/v1/models/broken/start", kAdmin);
    EXPECT_EQ(broken.status, 500) << broken.body;
    EXPECT_EQ(nlohmann::json::parse(broken.body)["error"]["code"], "start_failed");
    auto cb = cli({"models", "start", "broken"});
    EXPECT_EQ(cb.exit_code, 1);
    EXPECT_THAT(cb.err, HasSubstr("start_failed"));

    // Every state change is audited with the token's name.
    stop_agent(agent);
    const auto log = testing::slurp(mk_.dir() / "mlkeeper.log");
    EXPECT_THAT(log, HasSubstr("api audit"));
    EXPECT_THAT(log, HasSubstr("ops"));
    EXPECT_THAT(log, ::testing::Not(HasSubstr(kAdmin))) << "tokens never reach the log";
}

// The agent's model proxy starts a stopped model on the first request, the monitor API reports
// the request, the idle reaper stops the model once idle, the counters survive a restart, and the
// NGINX config is rendered (and checked and reloaded with the configured commands) at start.
TEST_F(ApiTest, TheProxyStartsAModelOnDemandAndTheReaperStopsItWhenIdle) {
    const int proxy_port = testing::free_port();
    const auto nginx_conf = mk_.dir() / "nginx" / "models.conf";
    const auto nginx_calls = mk_.dir() / "nginx-calls.log";
    fs::create_directories(nginx_conf.parent_path());
    write_config("\n[proxy]\nenabled = true\nlisten = \"127.0.0.1:" + std::to_string(proxy_port) +
                 "\"\n\n[nginx]\nenabled = true\nrender_on_model_change = true\noutput = \"" +
                 nginx_conf.string() + "\"\ntest_command = [\"/bin/sh\", \"-c\", \"echo test >> '" +
                 nginx_calls.string() +
                 "'\"]\nreload_command = [\"/bin/sh\", \"-c\", \"echo reload >> '" +
                 nginx_calls.string() +
                 "'\"]\n\n[models]\nreaper_interval = \"1s\"\nidle_timeout = \"3s\"\n");
    auto agent = start_agent();

    // NGINX follows the running models: a stopped one answers 503 model_stopped from NGINX.
    const auto routes_web = [&] {
        const auto conf = testing::slurp(nginx_conf);
        return conf.find("location /models/web/") != std::string::npos &&
               conf.find("model web is not running") == std::string::npos;
    };
    EXPECT_TRUE(testing::wait_until(
        [&] {
            return testing::slurp(nginx_conf).find("model web is not running") != std::string::npos;
        },
        10s))
        << testing::slurp(nginx_conf);
    EXPECT_TRUE(testing::wait_until(
        [&] { return testing::slurp(nginx_calls).starts_with("test\nreload\n"); }, 10s))
        << testing::slurp(nginx_calls);

    core::HttpRequest r;
    r.url = "http://127.0.0.1:" + std::to_string(proxy_port) + "/models/web/";
    r.timeout = 30s;
    auto through = core::http_request(r);
    EXPECT_EQ(through.status, 200) << through.body << testing::slurp(mk_.dir() / "agent.log");
    EXPECT_EQ(nlohmann::json::parse(get("/api/v1/models/web", kViewer).body)["state"], "running");
    EXPECT_TRUE(testing::wait_until(routes_web, 10s)) << testing::slurp(nginx_conf);

    auto active = get("/api/v1/models/active?window=10m", kViewer);
    ASSERT_EQ(active.status, 200) << active.body;
    auto listed = nlohmann::json::parse(active.body)["models"];
    ASSERT_EQ(listed.size(), 1u) << active.body;
    EXPECT_EQ(listed[0]["name"], "web");
    EXPECT_EQ(listed[0]["requests"], 1);
    EXPECT_EQ(get("/api/v1/models/active?window=forever", kViewer).status, 400);

    EXPECT_TRUE(testing::wait_until(
        [&] {
            return nlohmann::json::parse(get("/api/v1/models/web", kViewer).body)["state"] ==
                   "stopped";
        },
        20s))
        << "the idle reaper never stopped the model\n"
        << testing::slurp(mk_.dir() / "mlkeeper.log");
    EXPECT_TRUE(testing::wait_until([&] { return !routes_web(); }, 10s));
    auto reaper = nlohmann::json::parse(get("/api/v1/reaper", kViewer).body);
    EXPECT_THAT(reaper.dump(), HasSubstr("web"));
    EXPECT_THAT(testing::slurp(mk_.dir() / "mlkeeper.log"), HasSubstr("idle for"));
    stop_agent(agent);

    auto again = start_agent();
    auto counters = get("/api/v1/activity", kViewer);
    ASSERT_EQ(counters.status, 200) << counters.body;
    EXPECT_THAT(counters.body, HasSubstr("\"requests\":1")) << counters.body;
    stop_agent(again);
}

TEST_F(ApiTest, AShutdownSurvivesAnAgentRestartAndRunsTheConfiguredCommand) {
    write_config();
    auto agent = start_agent();
    auto sched = cli({"shutdown", "schedule", "30", "--reason", "nightly"});
    ASSERT_EQ(sched.exit_code, 0) << sched.err;
    stop_agent(agent);

    agent = start_agent();
    auto st = cli({"shutdown", "status", "--json"});
    ASSERT_EQ(st.exit_code, 0) << st.err;
    auto j = nlohmann::json::parse(st.out);
    EXPECT_EQ(j["shutdown"]["reason"], "nightly");
    EXPECT_EQ(j["shutdown"]["requested_by"], "ops");
    EXPECT_EQ(j["shutdown"]["delay_minutes"], 30);

    // A second schedule conflicts; replacing it with "now" runs the recording command once.
    EXPECT_EQ(cli({"shutdown", "schedule", "5"}).exit_code, 1);
    auto now = call("POST", "/api/v1/shutdown", kAdmin, R"({"delay_minutes": 0, "replace": true})");
    EXPECT_EQ(now.status, 200) << now.body;
    EXPECT_TRUE(testing::wait_until([&] { return fs::exists(record_); }, 10s));
    EXPECT_EQ(testing::slurp(record_), "poweroff\n");
    EXPECT_EQ(nlohmann::json::parse(get("/api/v1/shutdown", kViewer).body)["shutdown"], nullptr);
    EXPECT_EQ(call("DELETE", "/api/v1/shutdown", kAdmin).status, 404);
    auto up = nlohmann::json::parse(get("/api/v1/uptime", kViewer).body);
    EXPECT_GT(up["uptime_seconds"].get<double>(), 0);
    stop_agent(agent);
}

TEST_F(ApiTest, TheAgentRefusesUnsafeListenersAndTokenFiles) {
    // Off loopback without tokens: refused before anything binds.
    std::ofstream(config_path()) << "[schedule]\ndefault_jobs = false\n[api]\nenabled = true\n"
                                 << "listen = \"0.0.0.0:" << port_ << "\"\n";
    auto r = mk_.run({"--config", config_path().string(), "agent"});
    EXPECT_EQ(r.exit_code, 78) << r.err;
    EXPECT_THAT(r.err, HasSubstr("tokens_file"));

    // A tokens file others can read.
    write_config();
    ::chmod(tokens_.c_str(), 0644);
    auto t = mk_.run({"--config", config_path().string(), "agent"});
    EXPECT_EQ(t.exit_code, 78) << t.err;
    EXPECT_THAT(t.err, ::testing::Not(HasSubstr(kAdmin)));

    // The port taken by someone else: a one-line error naming it.
    ::chmod(tokens_.c_str(), 0600);
    auto agent = start_agent();
    auto second = mk_.run({"--config", config_path().string(), "agent"});
    EXPECT_NE(second.exit_code, 0);
    EXPECT_THAT(second.err, HasSubstr(std::to_string(port_)));
    stop_agent(agent);
}

}  // namespace
}  // namespace mlk
