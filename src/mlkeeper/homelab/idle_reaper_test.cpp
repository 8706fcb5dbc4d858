#include "mlkeeper/homelab/idle_reaper.hpp"
#include "support/fake_model_backend.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;

using testing::FakeBackend;
using testing::FakeProc;

const SysTime kT0 = SysTime(std::chrono::seconds(1795356000));

// One clock for the manager, the tracker and the reaper; `on_read` lets a test act in the
// middle of a reaper pass (every clock read calls it).
struct FakeClock {
    std::mutex mu;
    SysTime now = kT0;
    std::function<void()> on_read;
    SysTime read() {
        std::function<void()> hook;
        SysTime t;
        {
            std::lock_guard lk(mu);
            t = now;
            hook = on_read;
        }
        if (hook) {
            hook();
        }
        return t;
    }
    void advance(std::chrono::seconds d) {
        std::lock_guard lk(mu);
        now += d;
    }
};

ModelSpec spec(const std::string& name, std::optional<std::chrono::seconds> idle_timeout,
               bool pinned = false) {
    ModelSpec s;
    s.name = name;
    s.command = {"/bin/true"};
    s.port = 8001;
    s.health_url = "http://fake/" + name;
    s.start_timeout = 5s;
    s.stop_timeout = 2s;
    s.idle_timeout = idle_timeout;
    s.pinned = pinned;
    return s;
}

class IdleReaperTest : public ::testing::Test {
  protected:
    IdleReaperTest() {
        specs_ = {spec("idle", 30min), spec("pinned", 30min, true), spec("forever", std::nullopt),
                  spec("zero", 0s),    spec("busy", 30min),         spec("stopped", 30min)};
        for (const auto& s : specs_) {
            procs_[s.name] = std::make_shared<FakeProc>();
        }
        mgr_ = std::make_unique<ModelManager>(
            specs_,
            [this](const ModelSpec& s) { return std::make_unique<FakeBackend>(procs_.at(s.name)); },
            [](const std::string&, std::chrono::milliseconds) { return true; },
            [this] { return clock_.read(); });
        std::vector<std::string> names;
        for (const auto& s : specs_) {
            names.push_back(s.name);
        }
        activity_ = std::make_unique<ActivityTracker>(names, [this] { return clock_.read(); });
        for (const auto& s : specs_) {
            if (s.name != "stopped") {
                mgr_->start(s.name, Wait::kYes, std::nullopt);
            }
        }
        activity_->request_started("busy");  // a long request, still in flight
    }

    IdleReaper make(IdleReaper::OnStop on_stop = {}, ReaperSettings settings = {}) {
        return IdleReaper(settings, *mgr_, *activity_, specs_, std::move(on_stop),
                          [this] { return clock_.read(); });
    }

    RequestEvent request(const std::string& model, SysTime at) {
        RequestEvent e;
        e.model = model;
        e.status = 200;
        e.at = at;
        return e;
    }

    ModelState state(const std::string& name) { return mgr_->get(name)->state; }

    FakeClock clock_;
    std::vector<ModelSpec> specs_;
    std::map<std::string, std::shared_ptr<FakeProc>> procs_;
    std::unique_ptr<ModelManager> mgr_;
    std::unique_ptr<ActivityTracker> activity_;
};

TEST(FormatIdle, CompactUnits) {
    EXPECT_EQ(format_idle(0s), "0s");
    EXPECT_EQ(format_idle(-5s), "0s");
    EXPECT_EQ(format_idle(45s), "45s");
    EXPECT_EQ(format_idle(30min), "30m");
    EXPECT_EQ(format_idle(31min + 12s), "31m12s");
    EXPECT_EQ(format_idle(1h + 2min), "1h2m");
    EXPECT_EQ(format_idle(1h + 5s), "1h5s");
    EXPECT_EQ(format_idle(51h), "2d3h");
}

TEST_F(IdleReaperTest, StopsOnlyIdleUnpinnedModelsWithATimeout) {
    std::vector<ReaperStop> seen;
    auto reaper = make([&](const ReaperStop& s) { seen.push_back(s); });

    clock_.advance(30min);  // exactly the timeout: not more than it
    EXPECT_TRUE(reaper.run_once().empty());

    clock_.advance(1min + 12s);
    const auto stops = reaper.run_once();
    ASSERT_EQ(stops.size(), 1U);
    EXPECT_EQ(stops[0].name, "idle");
    EXPECT_EQ(stops[0].reason, "idle for 31m12s > idle_timeout 30m");
    EXPECT_EQ(stops[0].idle, 31min + 12s);
    EXPECT_EQ(stops[0].idle_timeout, 30min);
    EXPECT_EQ(stops[0].at, kT0 + 31min + 12s);
    EXPECT_FALSE(stops[0].error);
    EXPECT_EQ(state("idle"), ModelState::kStopped);
    for (const char* kept : {"pinned", "forever", "zero", "busy"}) {
        EXPECT_EQ(state(kept), ModelState::kRunning) << kept;
    }
    EXPECT_EQ(state("stopped"), ModelState::kStopped);
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_EQ(seen[0].name, "idle");
    ASSERT_EQ(reaper.recent().size(), 1U);
    EXPECT_EQ(reaper.last_run(), kT0 + 31min + 12s);

    // The long request ends: busy is idle since then, not since it started running.
    activity_->request_finished(request("busy", clock_.now));
    clock_.advance(29min);
    EXPECT_TRUE(reaper.run_once().empty());
    clock_.advance(2min);
    ASSERT_EQ(reaper.run_once().size(), 1U);
    EXPECT_EQ(state("busy"), ModelState::kStopped);
    EXPECT_EQ(reaper.recent()[0].name, "busy");  // newest first

    EXPECT_EQ(reaper.timeout_of("idle"), 30min);
    EXPECT_FALSE(reaper.timeout_of("pinned"));
    EXPECT_FALSE(reaper.timeout_of("zero"));
    EXPECT_FALSE(reaper.timeout_of("ghost"));
}

TEST_F(IdleReaperTest, IdleSinceIsTheLaterOfLastRequestAndRunningSince) {
    auto reaper = make();
    // A request long before the model (re)started does not make it idle sooner.
    activity_->request_seen(request("idle", kT0 - 5h));
    clock_.advance(20min);
    activity_->request_seen(request("idle", clock_.now));
    clock_.advance(25min);  // 45 min since start, 25 since the last request
    EXPECT_TRUE(reaper.run_once().empty());
    clock_.advance(6min);
    const auto stops = reaper.run_once();
    ASSERT_EQ(stops.size(), 1U);
    EXPECT_EQ(stops[0].idle, 31min);
}

TEST_F(IdleReaperTest, ARequestDuringTheDecisionKeepsTheModel) {
    auto reaper = make();
    clock_.advance(40min);
    // The clock is read once for the first decision and again right before the stop: start a
    // request in between, as the proxy would.
    int reads = 0;
    clock_.on_read = [&] {
        if (++reads == 2) {
            activity_->request_started("idle");
        }
    };
    EXPECT_TRUE(reaper.run_once().empty());
    clock_.on_read = nullptr;
    EXPECT_EQ(state("idle"), ModelState::kRunning);
    EXPECT_EQ(procs_["idle"]->stops, 0);

    // The same with a request that started and finished in between.
    activity_->request_finished(request("idle", kT0));
    clock_.advance(40min);
    reads = 0;
    clock_.on_read = [&] {
        if (++reads == 2) {
            activity_->request_seen(request("idle", clock_.now));
        }
    };
    EXPECT_TRUE(reaper.run_once().empty());
    clock_.on_read = nullptr;
    EXPECT_EQ(state("idle"), ModelState::kRunning);
}

TEST_F(IdleReaperTest, AFailedStopIsRecordedAndReported) {
    std::vector<ReaperStop> seen;
    auto reaper = make([&](const ReaperStop& s) {
        seen.push_back(s);
        throw std::runtime_error("alert channel down");  // logged, the reaper goes on
    });
    procs_["idle"]->stop_throws = true;
    clock_.advance(31min);
    const auto stops = reaper.run_once();
    ASSERT_EQ(stops.size(), 1U);
    ASSERT_TRUE(stops[0].error);
    EXPECT_NE(stops[0].error->find("cannot stop"), std::string::npos);
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_TRUE(seen[0].error);
    EXPECT_NE(state("idle"), ModelState::kRunning);
}

TEST_F(IdleReaperTest, HistoryIsBounded) {
    ReaperSettings settings;
    settings.history = 2;
    auto reaper = make({}, settings);
    for (int i = 0; i < 3; ++i) {
        clock_.advance(31min);
        ASSERT_EQ(reaper.run_once().size(), 1U);
        mgr_->start("idle", Wait::kYes, std::nullopt);
    }
    EXPECT_EQ(reaper.recent().size(), 2U);
}

TEST_F(IdleReaperTest, ThreadReapsAndStopsPromptly) {
    ReaperSettings settings;
    settings.interval = 10ms;
    auto reaper = make({}, settings);
    clock_.advance(31min);
    reaper.start();
    reaper.start();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (state("idle") == ModelState::kRunning && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(5ms);
    }
    EXPECT_EQ(state("idle"), ModelState::kStopped);
    const auto t0 = std::chrono::steady_clock::now();
    reaper.stop();
    reaper.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

}  // namespace
}  // namespace mlk::homelab
