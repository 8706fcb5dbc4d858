#include "mlkeeper/api/monitor_routes.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/api/model_routes.hpp"

namespace mlk::api {
namespace {

using namespace std::chrono_literals;
using homelab::ActivityTracker;
using homelab::BackendState;
using homelab::BackendStatus;
using homelab::IdleReaper;
using homelab::ModelBackend;
using homelab::ModelManager;
using homelab::ModelSpec;
using homelab::RequestEvent;
using homelab::SysTime;
using homelab::Wait;

class FakeBackend : public ModelBackend {
  public:
    void start() override {
        std::lock_guard lk(mu_);
        running_ = true;
    }
    void stop(std::chrono::milliseconds) override {
        std::lock_guard lk(mu_);
        running_ = false;
    }
    BackendStatus status() override {
        std::lock_guard lk(mu_);
        BackendStatus st;
        st.state = running_ ? BackendState::kRunning : BackendState::kStopped;
        return st;
    }

  private:
    std::mutex mu_;
    bool running_ = false;
};

const SysTime kT0 = SysTime(std::chrono::seconds(1795356000));  // 2026-11-22T14:00:00Z

ModelSpec spec(const std::string& name, bool pinned = false) {
    ModelSpec s;
    s.name = name;
    s.command = {"/bin/true"};
    s.port = 8001;
    s.health_url = "http://fake/" + name;
    s.idle_timeout = 30min;
    s.pinned = pinned;
    return s;
}

struct Outcome {
    int status = 0;
    nlohmann::json body;
};

class MonitorRoutesTest : public ::testing::Test {
  protected:
    MonitorRoutesTest() {
        specs_ = {spec("llama"), spec("qwen"), spec("mistral", true)};
        auto clock = [this] { return now_; };
        mgr_ = std::make_unique<ModelManager>(
            specs_, [](const ModelSpec&) { return std::make_unique<FakeBackend>(); },
            [](const std::string&, std::chrono::milliseconds) { return true; }, clock);
        activity_ = std::make_unique<ActivityTracker>(
            std::vector<std::string>{"llama", "qwen", "mistral"}, clock);
        reaper_ = std::make_unique<IdleReaper>(homelab::ReaperSettings{}, *mgr_, *activity_, specs_,
                                               IdleReaper::OnStop{}, clock);
    }

    Outcome get(const std::string& path, std::map<std::string, std::string> query = {},
                std::vector<RouteGroup> groups = {RouteGroup::kMonitor}) {
        Request req;
        req.method = "GET";
        req.path = path;
        req.query = std::move(query);
        const auto m = router_.match("GET", path, groups);
        if (m.route == nullptr) {
            return {m.status, {}};
        }
        EXPECT_EQ(m.route->access, Access::kRead);
        EXPECT_EQ(m.route->group, RouteGroup::kMonitor);
        req.params = m.params;
        const auto resp = router_.dispatch(m, req);
        return {resp.status, resp.raw_body ? nlohmann::json::parse(*resp.raw_body) : resp.body};
    }

    void request(const std::string& model, SysTime at, int status = 200) {
        RequestEvent e;
        e.model = model;
        e.status = status;
        e.bytes_in = 10;
        e.bytes_out = 100;
        e.latency = 20ms;
        e.at = at;
        activity_->request_seen(e);
    }

    SysTime now_ = kT0;
    std::vector<ModelSpec> specs_;
    std::unique_ptr<ModelManager> mgr_;
    std::unique_ptr<ActivityTracker> activity_;
    std::unique_ptr<IdleReaper> reaper_;
    Router router_;
};

TEST_F(MonitorRoutesTest, ActiveModelsDefaultWindowIsTenMinutes) {
    add_monitor_routes(router_, *activity_, reaper_.get(), *mgr_);
    mgr_->start("llama", Wait::kYes, std::nullopt);
    now_ = kT0 + 1h;
    request("llama", now_ - 2min);
    request("llama", now_ - 1min);
    request("qwen", now_ - 11min);
    activity_->request_started("mistral");

    auto r = get("/models/active");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body["window_seconds"], 600);
    ASSERT_EQ(r.body["models"].size(), 2U) << r.body;
    const auto& llama = r.body["models"][0];
    EXPECT_EQ(llama["name"], "llama");
    EXPECT_EQ(llama["requests"], 2);
    EXPECT_EQ(llama["last_request"], "2026-11-22T14:59:00.000Z");
    EXPECT_EQ(llama["in_flight"], 0);
    EXPECT_EQ(llama["state"], "running");
    EXPECT_EQ(r.body["models"][1]["name"], "mistral");
    EXPECT_EQ(r.body["models"][1]["in_flight"], 1);
    EXPECT_TRUE(r.body["models"][1]["last_request"].is_null());
    EXPECT_EQ(r.body["models"][1]["state"], "stopped");

    r = get("/models/active", {{"window", "15m"}});
    EXPECT_EQ(r.body["window_seconds"], 900);
    EXPECT_EQ(r.body["models"].size(), 3U);
    r = get("/models/active", {{"window", "90"}});
    EXPECT_EQ(r.body["window_seconds"], 90);
    r = get("/models/active", {{"window", "24h"}});
    EXPECT_EQ(r.status, 200);
}

TEST_F(MonitorRoutesTest, BadWindowIs400) {
    add_monitor_routes(router_, *activity_, reaper_.get(), *mgr_);
    for (const char* bad : {"", "0", "0s", "25h", "2d", "-5m", "ten", "10M", "1.5s", "10m junk"}) {
        const auto r = get("/models/active", {{"window", bad}});
        EXPECT_EQ(r.status, 400) << bad;
        EXPECT_EQ(r.body["error"]["code"], "bad_request") << bad;
    }
    // Whatever was sent is quoted, cut and escaped in the message.
    const auto r = get("/models/active", {{"window", std::string(500, 'x') + "\n"}});
    EXPECT_LT(r.body["error"]["message"].get<std::string>().size(), 200U);
    EXPECT_THROW(parse_window("1w"), ApiError);
    EXPECT_EQ(parse_window("1s"), 1s);
}

TEST_F(MonitorRoutesTest, ActivityListsEveryModelsCounters) {
    add_monitor_routes(router_, *activity_, reaper_.get(), *mgr_);
    mgr_->start("qwen", Wait::kYes, std::nullopt);  // running since kT0
    now_ = kT0 + 10min;
    request("llama", kT0 + 1min, 200);
    request("llama", kT0 + 2min, 502);
    RequestEvent ghost;
    ghost.model = "ghost";
    activity_->request_seen(ghost);

    const auto r = get("/activity");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body["dropped"], 1);
    ASSERT_EQ(r.body["models"].size(), 3U);
    const auto& llama = r.body["models"][0];
    EXPECT_EQ(llama["name"], "llama");
    EXPECT_EQ(llama["state"], "stopped");
    EXPECT_EQ(llama["requests"], 2);
    EXPECT_EQ(llama["status"]["2xx"], 1);
    EXPECT_EQ(llama["status"]["5xx"], 1);
    EXPECT_EQ(llama["status"]["none"], 0);
    EXPECT_EQ(llama["bytes_in"], 20);
    EXPECT_EQ(llama["bytes_out"], 200);
    EXPECT_DOUBLE_EQ(llama["latency"]["sum_seconds"].get<double>(), 0.04);
    EXPECT_DOUBLE_EQ(llama["latency"]["mean_ms"].get<double>(), 20.0);
    ASSERT_EQ(llama["latency"]["buckets"].size(), homelab::kLatencyBuckets);
    EXPECT_EQ(llama["latency"]["buckets"][2]["le_ms"], 25);
    EXPECT_EQ(llama["latency"]["buckets"][2]["count"], 2);
    EXPECT_TRUE(llama["latency"]["buckets"].back()["le_ms"].is_null());
    EXPECT_EQ(llama["idle_seconds"], 8 * 60);
    EXPECT_EQ(llama["last_request"], "2026-11-22T14:02:00.000Z");

    const auto& mistral = r.body["models"][1];
    EXPECT_EQ(mistral["requests"], 0);
    EXPECT_TRUE(mistral["idle_seconds"].is_null());  // never ran, never asked
    EXPECT_TRUE(mistral["latency"]["mean_ms"].is_null());

    const auto& qwen = r.body["models"][2];
    EXPECT_EQ(qwen["state"], "running");
    EXPECT_EQ(qwen["idle_seconds"], 600);  // running since kT0, no request
}

TEST_F(MonitorRoutesTest, ReaperSettingsAndRecentStops) {
    add_monitor_routes(router_, *activity_, reaper_.get(), *mgr_);
    mgr_->start("llama", Wait::kYes, std::nullopt);
    auto r = get("/reaper");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body["enabled"], true);
    EXPECT_EQ(r.body["interval_seconds"], 60);
    EXPECT_TRUE(r.body["last_run"].is_null());
    EXPECT_EQ(r.body["recent_stops"].size(), 0U);
    ASSERT_EQ(r.body["models"].size(), 3U);
    EXPECT_EQ(r.body["models"][0]["name"], "llama");
    EXPECT_EQ(r.body["models"][0]["idle_timeout_seconds"], 1800);
    EXPECT_EQ(r.body["models"][1]["name"], "mistral");
    EXPECT_EQ(r.body["models"][1]["pinned"], true);
    EXPECT_TRUE(r.body["models"][1]["idle_timeout_seconds"].is_null());

    now_ = kT0 + 31min;
    ASSERT_EQ(reaper_->run_once().size(), 1U);
    r = get("/reaper");
    ASSERT_EQ(r.body["recent_stops"].size(), 1U);
    const auto& s = r.body["recent_stops"][0];
    EXPECT_EQ(s["name"], "llama");
    EXPECT_EQ(s["at"], "2026-11-22T14:31:00.000Z");
    EXPECT_EQ(s["reason"], "idle for 31m > idle_timeout 30m");
    EXPECT_EQ(s["idle_seconds"], 1860);
    EXPECT_EQ(s["idle_timeout_seconds"], 1800);
    EXPECT_TRUE(s["error"].is_null());
    EXPECT_EQ(r.body["last_run"], "2026-11-22T14:31:00.000Z");
}

TEST_F(MonitorRoutesTest, ReaperOff) {
    add_monitor_routes(router_, *activity_, nullptr, *mgr_);
    const auto r = get("/reaper");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body["enabled"], false);
    EXPECT_TRUE(r.body["interval_seconds"].is_null());
}

TEST_F(MonitorRoutesTest, OnlyOnTheMonitorListenerAndReadOnly) {
    add_monitor_routes(router_, *activity_, reaper_.get(), *mgr_);
    add_model_routes(router_, *mgr_);
    for (const auto& route : router_.routes()) {
        if (route.group == RouteGroup::kMonitor) {
            EXPECT_EQ(route.method, "GET");
            EXPECT_EQ(route.access, Access::kRead);
            EXPECT_EQ(route.audit, Audit::kNo);
        }
    }
    // Not on the models listener...
    auto m = router_.match("GET", "/activity", {RouteGroup::kModels});
    EXPECT_EQ(m.route, nullptr);
    m = router_.match("GET", "/models/active", {RouteGroup::kModels});
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/models/{name}");
    // ... and in single-port mode /models/active wins over /models/{name}.
    m = router_.match(
        "GET", "/models/active",
        {RouteGroup::kCommon, RouteGroup::kShutdown, RouteGroup::kModels, RouteGroup::kMonitor});
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/models/active");
    // Other methods: 405.
    EXPECT_EQ(router_.match("POST", "/activity", {RouteGroup::kMonitor}).status, 405);
}

}  // namespace
}  // namespace mlk::api
