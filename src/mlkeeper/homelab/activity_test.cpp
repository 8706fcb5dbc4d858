#include "mlkeeper/homelab/activity.hpp"

#include <stdlib.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/state_store.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;

// 2026-11-22T14:00:00Z, a whole minute.
const SysTime kT0 = SysTime(std::chrono::seconds(1795356000));

struct FakeClock {
    std::shared_ptr<std::atomic<std::int64_t>> us = std::make_shared<std::atomic<std::int64_t>>(
        std::chrono::duration_cast<std::chrono::microseconds>(kT0.time_since_epoch()).count());
    ActivityTracker::Clock fn() const {
        return [u = us] { return SysTime(std::chrono::microseconds(u->load())); };
    }
    void advance(std::chrono::microseconds d) const { us->fetch_add(d.count()); }
    SysTime now() const { return SysTime(std::chrono::microseconds(us->load())); }
};

RequestEvent ev(const std::string& model, SysTime at, int status = 200,
                std::chrono::microseconds latency = 3ms) {
    RequestEvent e;
    e.model = model;
    e.status = status;
    e.bytes_in = 100;
    e.bytes_out = 1000;
    e.latency = latency;
    e.at = at;
    return e;
}

class TempStore {
  public:
    TempStore() {
        std::string tmpl = ::testing::TempDir() + "mlk-activity-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp");
        }
        dir_ = tmpl;
        store_ = std::make_unique<core::StateStore>(dir_ / "state.db");
    }
    ~TempStore() {
        store_.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    core::StateStore& operator*() { return *store_; }

  private:
    std::filesystem::path dir_;
    std::unique_ptr<core::StateStore> store_;
};

TEST(StatusClass, Classes) {
    EXPECT_EQ(status_class(200), StatusClass::k2xx);
    EXPECT_EQ(status_class(304), StatusClass::k3xx);
    EXPECT_EQ(status_class(499), StatusClass::k4xx);
    EXPECT_EQ(status_class(599), StatusClass::k5xx);
    EXPECT_EQ(status_class(0), StatusClass::kNone);
    EXPECT_EQ(status_class(101), StatusClass::kNone);
    EXPECT_EQ(status_class(600), StatusClass::kNone);
    EXPECT_EQ(status_class(-1), StatusClass::kNone);
    EXPECT_EQ(to_string(StatusClass::k4xx), "4xx");
    EXPECT_EQ(to_string(StatusClass::kNone), "none");
}

TEST(ActivityTracker, CountsPerModelAndDropsUnknownNames) {
    FakeClock clock;
    ActivityTracker t({"llama", "qwen", "llama"}, clock.fn());
    EXPECT_EQ(t.names(), (std::vector<std::string>{"llama", "qwen"}));
    t.request_seen(ev("llama", kT0, 200, 3ms));
    t.request_seen(ev("llama", kT0 + 1s, 404, 7ms));
    t.request_seen(ev("llama", kT0 + 2s, 503, 20s));
    t.request_seen(ev("llama", kT0 + 3s, 0, 0ms));
    t.request_seen(ev("llama", kT0 + 4s, 301, 5ms));
    t.request_seen(ev("ghost", kT0));
    t.request_finished(ev("ghost", kT0));
    t.request_started("ghost");
    EXPECT_EQ(t.dropped(), 2U);
    EXPECT_FALSE(t.get("ghost"));
    EXPECT_FALSE(t.knows("ghost"));

    const auto a = *t.get("llama");
    EXPECT_EQ(a.requests, 5U);
    EXPECT_EQ(a.by_status[0], 1U);
    EXPECT_EQ(a.by_status[1], 1U);
    EXPECT_EQ(a.by_status[2], 1U);
    EXPECT_EQ(a.by_status[3], 1U);
    EXPECT_EQ(a.by_status[4], 1U);
    EXPECT_EQ(a.bytes_in, 500U);
    EXPECT_EQ(a.bytes_out, 5000U);
    EXPECT_EQ(a.latency_sum, 3ms + 7ms + 20s + 5ms);
    EXPECT_EQ(a.latency_buckets[0], 3U);  // 3 ms, 0 ms and exactly 5 ms: bound inclusive
    EXPECT_EQ(a.latency_buckets[1], 1U);  // 7 ms
    EXPECT_EQ(a.latency_buckets[kLatencyBuckets - 1], 1U);  // 20 s: over the last bound
    EXPECT_EQ(a.last_request, kT0 + 4s);
    EXPECT_EQ(t.get("qwen")->requests, 0U);
    EXPECT_FALSE(t.get("qwen")->last_request);
}

TEST(ActivityTracker, InFlightNeverNegative) {
    ActivityTracker t({"llama"});
    t.request_started("llama");
    t.request_started("llama");
    EXPECT_EQ(t.in_flight("llama"), 2);
    t.request_finished(ev("llama", kT0));
    t.request_finished(ev("llama", kT0));
    t.request_finished(ev("llama", kT0));  // one too many: a caller's bug
    EXPECT_EQ(t.in_flight("llama"), 0);
    EXPECT_EQ(t.get("llama")->requests, 3U);
    t.request_started("llama");
    EXPECT_EQ(t.in_flight("llama"), 1);
    t.request_seen(ev("llama", kT0));  // seen events never touch in-flight
    EXPECT_EQ(t.in_flight("llama"), 1);
    EXPECT_EQ(t.in_flight("ghost"), 0);
}

TEST(ActivityTracker, UnsetTimeIsStampedWithNow) {
    FakeClock clock;
    ActivityTracker t({"llama"}, clock.fn());
    t.request_seen(ev("llama", SysTime{}));
    EXPECT_EQ(t.last_request("llama"), kT0);
    EXPECT_FALSE(t.last_request("ghost"));
}

TEST(ActivityTracker, LastRequestKeepsTheNewestOfOutOfOrderEvents) {
    ActivityTracker t({"llama"});
    t.request_seen(ev("llama", kT0 + 10s));
    t.request_seen(ev("llama", kT0 + 5s));
    EXPECT_EQ(t.last_request("llama"), kT0 + 10s);
}

TEST(ActivityTracker, ActiveWindowCountsRecentMinutes) {
    FakeClock clock;
    ActivityTracker t({"a", "b", "c", "d"}, clock.fn());
    // a: 3 requests now-ish, 1 twenty minutes ago; b: one 11 minutes ago; c: nothing, but one in
    // flight; d: nothing.
    clock.advance(30min);
    const SysTime now = clock.now();
    t.request_seen(ev("a", now - 20min));
    t.request_seen(ev("a", now - 2min));
    t.request_seen(ev("a", now - 1min));
    t.request_seen(ev("a", now - 1s));
    t.request_seen(ev("b", now - 11min));
    t.request_started("c");

    auto act = t.active(10min);
    ASSERT_EQ(act.size(), 2U);
    EXPECT_EQ(act[0].name, "a");
    EXPECT_EQ(act[0].requests, 3U);
    EXPECT_EQ(act[0].last_request, now - 1s);
    EXPECT_EQ(act[1].name, "c");
    EXPECT_EQ(act[1].requests, 0U);
    EXPECT_EQ(act[1].in_flight, 1);

    act = t.active(15min);
    ASSERT_EQ(act.size(), 3U);
    EXPECT_EQ(act[1].name, "b");
    EXPECT_EQ(act[1].requests, 1U);

    act = t.active(1h);
    EXPECT_EQ(act[0].requests, 4U);

    // 30 s: only the request 1 s ago is within the window, but the count is by whole minutes:
    // its minute also holds the one from 60 s ago (documented).
    act = t.active(30s);
    ASSERT_EQ(act.size(), 2U);
    EXPECT_EQ(act[0].requests, 2U);
    EXPECT_EQ(act[0].last_request, now - 1s);

    // Time passes: nothing left in a 10-minute window but the in-flight one.
    clock.advance(11min);
    act = t.active(10min);
    ASSERT_EQ(act.size(), 1U);
    EXPECT_EQ(act[0].name, "c");
    // Longer than the history: cut to 24 h, still answers.
    EXPECT_EQ(t.active(48h).size(), 3U);
}

TEST(ActivityTracker, MinuteBucketsForgetAfterADay) {
    FakeClock clock;
    ActivityTracker t({"a"}, clock.fn());
    t.request_seen(ev("a", kT0));
    clock.advance(24h);
    t.request_seen(ev("a", clock.now()));  // the same ring slot, one day later
    // A late event older than the slot's minute is counted in the totals only.
    t.request_seen(ev("a", kT0));
    EXPECT_EQ(t.get("a")->requests, 3U);
    EXPECT_EQ(t.active(24h)[0].requests, 1U);
}

TEST(ActivityTracker, SaveAndLoadRoundTrip) {
    TempStore store;
    FakeClock clock;
    ActivityTracker t({"a", "b", "gone"}, clock.fn());
    clock.advance(10min);
    t.request_seen(ev("a", clock.now() - 5min, 200, 30ms));
    t.request_seen(ev("a", clock.now() - 1min, 500, 300ms));
    t.request_seen(ev("gone", clock.now()));
    t.request_started("b");  // not saved
    t.save(*store);

    auto doc = nlohmann::json::parse(*(*store).kv_get(kActivityStateKey));
    EXPECT_EQ(doc["version"], 1);
    EXPECT_EQ(doc["models"]["a"]["requests"], 2);
    EXPECT_EQ(doc["models"]["a"]["minutes"].size(), 2U);

    ActivityTracker u({"a", "b", "new"}, clock.fn());
    u.request_seen(ev("a", clock.now()));  // replaced by load (documented: load first)
    ASSERT_TRUE(u.load(*store));
    const auto a = *u.get("a");
    EXPECT_EQ(a.requests, 2U);
    EXPECT_EQ(a.by_status[0], 1U);
    EXPECT_EQ(a.by_status[3], 1U);
    EXPECT_EQ(a.latency_sum, 330ms);
    EXPECT_EQ(a.bytes_out, 2000U);
    EXPECT_EQ(a.last_request, *t.last_request("a"));
    EXPECT_EQ(u.in_flight("b"), 0);
    const auto act = u.active(10min);
    ASSERT_EQ(act.size(), 1U);
    EXPECT_EQ(act[0].requests, 2U);
    EXPECT_EQ(u.get("new")->requests, 0U);
}

TEST(ActivityTracker, LoadWithoutSavedValueIsAFreshStart) {
    TempStore store;
    ActivityTracker t({"a"});
    EXPECT_TRUE(t.load(*store));
    EXPECT_EQ(t.get("a")->requests, 0U);
}

TEST(ActivityTracker, CorruptOrUnknownVersionIsIgnoredNotFatal) {
    TempStore store;
    ActivityTracker t({"a"});
    t.request_seen(ev("a", kT0));
    for (const char* bad : {
             "not json",
             "[]",
             R"({"models": {}})",
             R"({"version": 2, "models": {}})",
             R"({"version": "1", "models": {}})",
             R"({"version": 1})",
             R"({"version": 1, "models": []})",
             R"({"version": 1, "models": {"a": 5}})",
             R"({"version": 1, "models": {"a": {"requests": -1}}})",
             R"({"version": 1, "models": {"a": {"requests": "7"}}})",
             R"({"version": 1, "models": {"a": {"status": [1]}}})",
             R"({"version": 1, "models": {"a": {"latency_buckets": [1, 2]}}})",
             R"({"version": 1, "models": {"a": {"last_request_ms": "x"}}})",
             R"({"version": 1, "models": {"a": {"minutes": [[1]]}}})",
             R"({"version": 1, "models": {"a": {"minutes": [[-5, 1]]}}})",
             R"({"version": 1, "models": {"a": {"minutes": [[5, 99999999999]]}}})",
         }) {
        (*store).kv_set(kActivityStateKey, bad);
        EXPECT_FALSE(t.load(*store)) << bad;
        EXPECT_EQ(t.get("a")->requests, 1U) << bad;  // nothing half-loaded
    }
}

TEST(ActivityTracker, ConcurrentRecordsAreAllCounted) {
    ActivityTracker t({"a", "b"});
    constexpr int kThreads = 4;
    constexpr int kEach = 20000;
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&t, i] {
            const std::string name = i % 2 == 0 ? "a" : "b";
            for (int n = 0; n < kEach; ++n) {
                t.request_started(name);
                t.request_finished(ev(name, kT0 + std::chrono::seconds(n % 600)));
            }
        });
    }
    // A reader at the same time.
    for (int n = 0; n < 50; ++n) {
        (void)t.active(10min);
        (void)t.all();
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(t.get("a")->requests, 2U * kEach);
    EXPECT_EQ(t.get("b")->requests, 2U * kEach);
    EXPECT_EQ(t.in_flight("a"), 0);
    EXPECT_EQ(t.in_flight("b"), 0);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// The proxy records every request: 1M records must take well under a second (sanitizers slow
// everything several times, so there the bound is looser).
TEST(ActivityTracker, MillionRecordsWellUnderASecond) {
    std::vector<std::string> names;
    for (int i = 0; i < 20; ++i) {
        names.push_back("model-" + std::to_string(i));
    }
    ActivityTracker t(names);
    RequestEvent e = ev("model-7", kT0);
    constexpr int kCalls = 1000000;
    const auto start = std::chrono::steady_clock::now();
    for (int n = 0; n < kCalls; ++n) {
        e.at = kT0 + std::chrono::milliseconds(n);
        t.request_started(e.model);
        t.request_finished(e);
    }
    const auto took = std::chrono::steady_clock::now() - start;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    std::printf("[ timing ] 1M request_started+request_finished: %lld ms%s\n",
                static_cast<long long>(ms), kSanitized ? " (sanitized build)" : "");
    EXPECT_EQ(t.get("model-7")->requests, static_cast<std::uint64_t>(kCalls));
    EXPECT_LT(ms, kSanitized ? 15000 : 800);
}

TEST(ActivityAutosave, SavesPeriodicallyAndOnDestruction) {
    std::atomic<int> saves{0};
    {
        ActivityAutosave a(
            [&] {
                if (saves.fetch_add(1) == 0) {
                    throw std::runtime_error("disk full");  // logged, the saver goes on
                }
            },
            10ms);
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (saves.load() < 3 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(5ms);
        }
        EXPECT_GE(saves.load(), 3);
    }
    const int after = saves.load();
    EXPECT_GE(after, 4);  // the last save at destruction
    std::this_thread::sleep_for(30ms);
    EXPECT_EQ(saves.load(), after);
}

}  // namespace
}  // namespace mlk::homelab
