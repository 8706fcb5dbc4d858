// Black-box tests of the NGINX config renderer against a real nginx (/usr/sbin/nginx) started by
// the test on a free loopback port with a temporary prefix, including the rendered file from its
// own conf.d, in front of two model stand-ins (cpp-httplib servers in this process): routing and
// prefix stripping, server-sent events arriving as they are produced, the JSON access log, a
// config nginx rejects (old file kept, nginx's error reported), "unchanged" on a second render,
// and the same through `mlkeeper nginx render|configmap` when the binary has the command.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mlkeeper/homelab/k8s_configmap.hpp"
#include "mlkeeper/homelab/nginx_apply.hpp"
#include "mlkeeper/homelab/nginx_config.hpp"
#include "mlkeeper/util/process.hpp"
#include "support/http_test_server.hpp"
#include "support/mlkeeper_runner.hpp"
#include "support/servers.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using homelab::ApplyOutcome;
using homelab::ModelSpec;
using homelab::NginxSettings;
using nlohmann::json;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kNginx = "/usr/sbin/nginx";
constexpr int kSseEvents = 5;
constexpr auto kSseGap = 150ms;

// A model stand-in: echoes what it received as JSON, and streams events on /stream.
class ModelStandIn {
  public:
    explicit ModelStandIn(std::string name)
        : name_(std::move(name)), server_([this](httplib::Server& s) { setup(s); }) {}

    int port() const { return server_.port(); }
    SteadyClock::time_point last_event_sent() const {
        std::lock_guard<std::mutex> lock(mu_);
        return last_event_sent_;
    }

  private:
    void setup(httplib::Server& s) {
        const auto echo = [this](const httplib::Request& req, httplib::Response& res) {
            json params = json::object();
            for (const auto& [k, v] : req.params) {
                params[k] = v;
            }
            json j = {{"model", name_},
                      {"method", req.method},
                      {"path", req.path},
                      {"params", params},
                      {"body", req.body},
                      {"forwarded_prefix", req.get_header_value("X-Forwarded-Prefix")}};
            res.set_content(j.dump(), "application/json");
        };
        s.Get("/stream", [this](const httplib::Request&, httplib::Response& res) {
            res.set_chunked_content_provider(
                "text/event-stream", [this](std::size_t, httplib::DataSink& sink) {
                    for (int i = 1; i <= kSseEvents; ++i) {
                        const auto event = fmt::format("data: event {}\n\n", i);
                        if (!sink.write(event.data(), event.size())) {
                            return false;
                        }
                        {
                            std::lock_guard<std::mutex> lock(mu_);
                            last_event_sent_ = SteadyClock::now();
                        }
                        if (i < kSseEvents) {
                            server_.block_for(kSseGap);
                        }
                    }
                    sink.done();
                    return true;
                });
        });
        s.Get(".*", echo);
        s.Post(".*", echo);
    }

    std::string name_;
    mutable std::mutex mu_;
    SteadyClock::time_point last_event_sent_{};
    testing::TestServer server_;
};

ModelSpec spec(const std::string& name, std::optional<int> port) {
    ModelSpec m;
    m.name = name;
    m.port = port;
    return m;
}

// nginx with prefix DIR, its main config including DIR/conf.d/*.conf, started on demand and
// always stopped (Subprocess's destructor).
class NginxUnderTest {
  public:
    NginxUnderTest() {
        if (!fs::exists(kNginx)) {
            throw testing::ServerUnavailable("nginx is not installed");
        }
        fs::create_directories(dir_ / "conf.d");
        const auto d = dir_.path().string();
        dir_.write("nginx.conf",
                   testing::nginx_main_conf(d, "    include " + d + "/conf.d/*.conf;\n"));
        port_ = testing::free_port();
        settings_.output = dir_ / "conf.d" / "mlkeeper-models.conf";
        settings_.listen = fmt::format("127.0.0.1:{}", port_);
        settings_.access_log = dir_ / "access.log";
        settings_.test_command = nginx_argv({"-t"});
        settings_.reload_command = nginx_argv({"-s", "reload"});
        settings_.command_timeout = 20s;
    }

    std::vector<std::string> nginx_argv(std::vector<std::string> extra) const {
        std::vector<std::string> argv = {kNginx,
                                         "-p",
                                         dir_.path().string(),
                                         "-c",
                                         (dir_ / "nginx.conf").string(),
                                         "-e",
                                         (dir_ / "error.log").string()};
        argv.insert(argv.end(), extra.begin(), extra.end());
        return argv;
    }

    void start() {
        proc_.emplace(util::Subprocess::start(nginx_argv({"-g", "daemon off;"}), {},
                                              util::Subprocess::Output::kToFile,
                                              dir_ / "stderr.log"));
        if (!testing::wait_for_port(port_, 10s)) {
            throw std::runtime_error(
                "nginx did not listen within 10 s: " + testing::slurp(dir_ / "error.log") +
                testing::slurp(dir_ / "stderr.log"));
        }
    }

    NginxSettings& settings() { return settings_; }
    const testing::TempDir& dir() const { return dir_; }
    int port() const { return port_; }

    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port_);
        c.set_connection_timeout(5s);
        c.set_read_timeout(10s);
        return c;
    }

  private:
    testing::TempDir dir_;
    int port_ = 0;
    NginxSettings settings_;
    std::optional<util::Subprocess> proc_;
};

homelab::ApplyOptions no_fsync() {
    homelab::ApplyOptions o;
    o.durability = util::Durability::kNoFsync;
    return o;
}

class NginxBlackbox : public ::testing::Test {
  protected:
    void SetUp() override {
        try {
            nginx_.emplace();
        } catch (const testing::ServerUnavailable& e) {
            GTEST_SKIP() << e.what();
        }
        models_ = {spec("alpha", alpha_.port()), spec("beta", beta_.port()),
                   spec("gamma", std::nullopt)};
        auto opts = no_fsync();
        opts.reload = homelab::ApplyOptions::Reload::kNo;
        const auto r = homelab::render_and_apply(nginx_->settings(), models_, {}, opts);
        ASSERT_EQ(r.outcome, ApplyOutcome::kApplied) << r.error;
        nginx_->start();
    }

    json get_json(const std::string& path) {
        auto c = nginx_->client();
        const auto res = c.Get(path);
        if (!res) {
            ADD_FAILURE() << "GET " << path << " failed: " << httplib::to_string(res.error());
            return json();
        }
        EXPECT_EQ(res->status, 200) << path << ": " << res->body;
        return json::parse(res->body, nullptr, false);
    }

    // Every access-log line once at least `count` are there (bounded wait).
    std::vector<json> log_lines(std::size_t count) {
        std::vector<json> lines;
        testing::wait_until(
            [&] {
                lines.clear();
                std::ifstream in(nginx_->settings().access_log);
                for (std::string line; std::getline(in, line);) {
                    lines.push_back(json::parse(line, nullptr, false));
                }
                return lines.size() >= count;
            },
            5s);
        return lines;
    }

    ModelStandIn alpha_{"alpha"};
    ModelStandIn beta_{"beta"};
    std::vector<ModelSpec> models_;
    std::optional<NginxUnderTest> nginx_;
};

TEST_F(NginxBlackbox, RequestsReachTheRightModelWithThePrefixStripped) {
    auto a = get_json("/models/alpha/v1/models?x=1&y=two");
    EXPECT_EQ(a["model"], "alpha");
    EXPECT_EQ(a["path"], "/v1/models");
    EXPECT_EQ(a["params"]["x"], "1");
    EXPECT_EQ(a["params"]["y"], "two");
    EXPECT_EQ(a["forwarded_prefix"], "/models/alpha/");
    auto b = get_json("/models/beta/");
    EXPECT_EQ(b["model"], "beta");
    EXPECT_EQ(b["path"], "/");

    auto c = nginx_->client();
    const auto post =
        c.Post("/models/beta/v1/chat/completions", R"({"prompt":"hi"})", "application/json");
    ASSERT_TRUE(post);
    const auto p = json::parse(post->body);
    EXPECT_EQ(p["model"], "beta");
    EXPECT_EQ(p["method"], "POST");
    EXPECT_EQ(p["path"], "/v1/chat/completions");
    EXPECT_EQ(p["body"], R"({"prompt":"hi"})");

    // Without the trailing slash: a relative redirect to the location.
    const auto redirect = c.Get("/models/alpha?q=1");
    ASSERT_TRUE(redirect);
    EXPECT_EQ(redirect->status, 308);
    EXPECT_EQ(redirect->get_header_value("Location"), "/models/alpha/?q=1");

    // Unknown models and a model without a port are not routed.
    for (const char* path : {"/models/nope/x", "/models/gamma/x", "/", "/models/../etc/passwd"}) {
        const auto res = c.Get(path);
        ASSERT_TRUE(res) << path;
        EXPECT_EQ(res->status, 404) << path;
        if (res->status == 404 && std::string(path) != "/models/../etc/passwd") {
            EXPECT_EQ(json::parse(res->body, nullptr, false)["error"]["code"], "not_found")
                << path << ": " << res->body;
        }
    }
}

TEST_F(NginxBlackbox, ServerSentEventsArriveAsTheyAreProduced) {
    auto c = nginx_->client();
    std::string received;
    std::optional<SteadyClock::time_point> first_event_at;
    const auto start = SteadyClock::now();
    const auto res = c.Get("/models/beta/stream", [&](const char* data, std::size_t len) {
        received.append(data, len);
        if (!first_event_at && received.find("\n\n") != std::string::npos) {
            first_event_at = SteadyClock::now();
        }
        return true;
    });
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->get_header_value("X-Accel-Buffering"), "no");
    for (int i = 1; i <= kSseEvents; ++i) {
        EXPECT_THAT(received, HasSubstr(fmt::format("data: event {}\n\n", i)));
    }
    ASSERT_TRUE(first_event_at.has_value());
    // The stand-in needs (kSseEvents - 1) gaps for the whole stream; the first event must come
    // through nginx long before the last one is even sent.
    EXPECT_LT(*first_event_at, beta_.last_event_sent() - 2 * kSseGap)
        << "first event after "
        << std::chrono::duration_cast<std::chrono::milliseconds>(*first_event_at - start).count()
        << " ms";
}

TEST_F(NginxBlackbox, AccessLogLinesAreJsonWithTheDocumentedFields) {
    get_json("/models/alpha/hello?q=1");
    auto c = nginx_->client();
    ASSERT_TRUE(c.Get("/elsewhere"));
    ASSERT_TRUE(c.Post("/models/beta/up", std::string(1000, 'x'), "text/plain"));
    const auto lines = log_lines(3);
    ASSERT_EQ(lines.size(), 3u);
    for (const auto& l : lines) {
        ASSERT_TRUE(l.is_object()) << l;
        for (const char* field : {"time", "msec", "model", "uri", "status", "request_length",
                                  "bytes_sent", "request_time", "upstream_response_time"}) {
            ASSERT_TRUE(l.contains(field)) << field << " in " << l;
            EXPECT_TRUE(l[field].is_string()) << field << " in " << l;
        }
    }
    EXPECT_EQ(lines[0]["model"], "alpha");
    EXPECT_EQ(lines[0]["uri"], "/models/alpha/hello?q=1");
    EXPECT_EQ(lines[0]["status"], "200");
    EXPECT_GT(std::stod(lines[0]["msec"].get<std::string>()), 1.6e9);
    EXPECT_GE(std::stod(lines[0]["request_time"].get<std::string>()), 0.0);
    EXPECT_NE(lines[0]["upstream_response_time"], "");
    EXPECT_EQ(lines[1]["model"], "");
    EXPECT_EQ(lines[1]["status"], "404");
    // escape=json writes an unset variable as "" (not "-").
    EXPECT_EQ(lines[1]["upstream_response_time"], "");
    EXPECT_EQ(lines[2]["model"], "beta");
    EXPECT_GT(std::stoll(lines[2]["request_length"].get<std::string>()), 1000);
    EXPECT_GT(std::stoll(lines[2]["bytes_sent"].get<std::string>()), 0);
}

TEST_F(NginxBlackbox, RenderTwiceIsUnchangedAndANewModelIsServedAfterTheReload) {
    auto r = homelab::render_and_apply(nginx_->settings(), models_, {}, no_fsync());
    EXPECT_EQ(r.outcome, ApplyOutcome::kUnchanged);

    ModelStandIn delta("delta");
    models_.push_back(spec("delta", delta.port()));
    r = homelab::render_and_apply(nginx_->settings(), models_, {}, no_fsync());
    ASSERT_EQ(r.outcome, ApplyOutcome::kApplied) << r.error;
    EXPECT_TRUE(r.reloaded);
    EXPECT_THAT(r.diff, HasSubstr("+    location /models/delta/ {\n"));
    // Old workers finish while new ones start: poll until the new route answers.
    auto c = nginx_->client();
    EXPECT_TRUE(testing::wait_until(
        [&] {
            const auto res = c.Get("/models/delta/x");
            return res && res->status == 200 && res->body.find("\"delta\"") != std::string::npos;
        },
        10s, 50ms));
    EXPECT_EQ(homelab::render_and_apply(nginx_->settings(), models_, {}, no_fsync()).outcome,
              ApplyOutcome::kUnchanged);
}

TEST_F(NginxBlackbox, AConfigNginxRejectsLeavesTheOldFileAndReportsTheError) {
    const auto live = nginx_->settings().output;
    const auto before = testing::slurp(live);
    // Another file of the same nginx already defines the upstream a new model would get: only
    // a check of the whole configuration with the candidate in place can see that.
    nginx_->dir().write("conf.d/other.conf", "upstream mlkeeper_clash { server 127.0.0.1:1; }\n");
    auto models = models_;
    models.push_back(spec("clash", 9));
    const auto r = homelab::render_and_apply(nginx_->settings(), models, {}, no_fsync());
    EXPECT_EQ(r.outcome, ApplyOutcome::kTestFailed);
    EXPECT_THAT(r.error, HasSubstr("duplicate upstream \"mlkeeper_clash\""));
    EXPECT_THAT(r.error, HasSubstr("exited with status 1"));
    EXPECT_FALSE(r.reloaded);
    EXPECT_EQ(testing::slurp(live), before);
    EXPECT_EQ(get_json("/models/alpha/still")["model"], "alpha");

    // A test command that fails for its own reasons is handled the same way.
    auto s = nginx_->settings();
    s.test_command = {"false"};
    const auto r2 = homelab::render_and_apply(s, {spec("alpha", alpha_.port())}, {}, no_fsync());
    EXPECT_EQ(r2.outcome, ApplyOutcome::kTestFailed);
    EXPECT_EQ(r2.error, "false exited with status 1");
    EXPECT_EQ(testing::slurp(live), before);
    for (const auto& e : fs::directory_iterator(live.parent_path())) {
        const auto name = e.path().filename().string();
        EXPECT_TRUE(name == "mlkeeper-models.conf" || name == "other.conf" ||
                    name == ".mlkeeper-models.conf.lock")
            << "left behind: " << name;
    }
}

TEST_F(NginxBlackbox, ProxyModeSendsTheFullPathToTheAgentsProxy) {
    // The stand-in plays the agent's proxy: it must see /models/NAME/rest unchanged.
    auto& s = nginx_->settings();
    s.upstream = NginxSettings::Upstream::kProxy;
    s.proxy_url = fmt::format("http://127.0.0.1:{}/models", alpha_.port());
    const auto r = homelab::render_and_apply(s, models_, {}, no_fsync());
    ASSERT_EQ(r.outcome, ApplyOutcome::kApplied) << r.error;
    auto c = nginx_->client();
    json seen;
    EXPECT_TRUE(testing::wait_until(
        [&] {
            const auto res = c.Get("/models/beta/v1/x");
            if (!res || res->status != 200) {
                return false;
            }
            seen = json::parse(res->body, nullptr, false);
            return seen.value("path", "") == "/models/beta/v1/x";
        },
        10s, 50ms))
        << seen;
    EXPECT_EQ(seen["model"], "alpha");
}

// ---- the same through the binary (skipped until the lead wires the command) ----

class NginxCli : public NginxBlackbox {
  protected:
    void SetUp() override {
        NginxBlackbox::SetUp();
        if (IsSkipped() || HasFatalFailure()) {
            return;
        }
        const auto help = runner_.run({"nginx", "--help"});
        if (!help.ok()) {
            GTEST_SKIP() << "this mlkeeper has no `nginx` command yet: " << help.err;
        }
        const auto& s = nginx_->settings();
        config_ = runner_.dir().write(
            "mlkeeper.toml",
            fmt::format(R"([models.alpha]
command = ["sleep", "1000"]
port = {}

[models.beta]
command = ["sleep", "1000"]
port = {}

[nginx]
output = {}
listen = "{}"
access_log = {}
test_command = {}
reload_command = {}
)",
                        alpha_.port(), beta_.port(), json(s.output.string()).dump(), s.listen,
                        json(s.access_log.string()).dump(), json(s.test_command).dump(),
                        json(s.reload_command).dump()));
    }

    util::RunResult mlkeeper(std::vector<std::string> args,
                             const std::map<std::string, std::string>& env = {}) {
        args.insert(args.begin(), {"--config", config_.string()});
        return runner_.run(args, env);
    }

    testing::MlkeeperRunner runner_;
    fs::path config_;
};

TEST_F(NginxCli, RenderWritesChecksReloadsAndThenIsUpToDate) {
    // SetUp rendered the same registry (gamma aside) with the library; the CLI's file differs
    // only by the model without a port.
    auto r = mlkeeper({"nginx", "render", "--dry-run"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("-    # model gamma: no port in the registry"));
    EXPECT_THAT(r.out, HasSubstr("dry run:"));

    r = mlkeeper({"nginx", "render"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("wrote " + nginx_->settings().output.string()));
    EXPECT_THAT(r.out, HasSubstr("nginx reloaded"));

    r = mlkeeper({"nginx", "render", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    const auto j = json::parse(r.out);
    EXPECT_EQ(j["outcome"], "unchanged");
    EXPECT_EQ(j["changed"], false);
    EXPECT_EQ(j["models_routed"], 2);
    EXPECT_EQ(get_json("/models/beta/cli")["path"], "/cli");
}

TEST_F(NginxCli, RejectedConfigExitsOneAndKeepsTheOldFile) {
    const auto before = testing::slurp(nginx_->settings().output);
    const auto r = mlkeeper(
        {"nginx", "render"},
        {{"MLKEEPER_NGINX_ACCESS_LOG", (nginx_->dir() / "no-such-dir" / "a.log").string()}});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("nginx rejected the new config"));
    EXPECT_THAT(r.err, HasSubstr("no-such-dir/a.log"));
    EXPECT_EQ(testing::slurp(nginx_->settings().output), before);

    const auto bad = mlkeeper({"nginx", "render"}, {{"MLKEEPER_NGINX_LISTEN", "80; evil"}});
    EXPECT_EQ(bad.exit_code, 78) << bad.out << bad.err;
    EXPECT_THAT(bad.err, HasSubstr("nginx.listen"));
    EXPECT_EQ(mlkeeper({"nginx", "render", "--bogus"}).exit_code, 64);
    EXPECT_EQ(testing::slurp(nginx_->settings().output), before);
}

TEST_F(NginxCli, ConfigmapPrintsBothConfigMaps) {
    auto r = mlkeeper({"nginx", "configmap", "--namespace", "inference-manager", "--name",
                       "models-conf", "--inference-url", "http://inference:5002"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("  name: \"models-conf\"\n  namespace: \"inference-manager\"\n"));
    EXPECT_THAT(r.out, HasSubstr("  models.conf: |\n"));
    EXPECT_THAT(r.out, HasSubstr("\n        location /models/alpha/ {\n"));
    EXPECT_THAT(r.out, HasSubstr("\n---\n"));
    EXPECT_THAT(r.out, HasSubstr("  INFERENCE_SERVICE_URL: \"http://inference:5002\"\n"));

    r = mlkeeper({"nginx", "configmap", "--namespace", "Not_Valid"});
    EXPECT_EQ(r.exit_code, 64) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("not a valid Kubernetes name"));
    r = mlkeeper({"nginx", "configmap"}, {{"MLKEEPER_NGINX_K8S_CONFIGMAP", "-bad"}});
    EXPECT_EQ(r.exit_code, 78) << r.out << r.err;
}

}  // namespace
}  // namespace mlk
