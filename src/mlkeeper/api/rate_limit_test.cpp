#include "mlkeeper/api/rate_limit.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace mlk::api {
namespace {

using namespace std::chrono_literals;

// A clock the test moves by hand.
struct FakeClock {
    RateLimiter::Clock::time_point t{std::chrono::hours(1000)};
    RateLimiter::Now fn() {
        return [this] { return t; };
    }
};

TEST(RateLimiter, AllowsABurstThenRefusesWithRetryAfter) {
    FakeClock clock;
    RateLimiter limiter(60, clock.fn());
    for (int i = 0; i < 60; ++i) {
        EXPECT_TRUE(limiter.check("10.0.0.1").allowed) << i;
    }
    const auto d = limiter.check("10.0.0.1");
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after, 1s);
    // Another client has its own bucket.
    EXPECT_TRUE(limiter.check("10.0.0.2").allowed);
}

TEST(RateLimiter, RefillsAtTheConfiguredRate) {
    FakeClock clock;
    RateLimiter limiter(6, clock.fn());  // one call every 10 s
    for (int i = 0; i < 6; ++i) {
        ASSERT_TRUE(limiter.check("c").allowed);
    }
    auto d = limiter.check("c");
    ASSERT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after, 10s);
    clock.t += 4s;
    d = limiter.check("c");
    ASSERT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after, 6s);
    clock.t += 6s;
    EXPECT_TRUE(limiter.check("c").allowed);
    EXPECT_FALSE(limiter.check("c").allowed);
    // A long pause refills to the burst size, not beyond.
    clock.t += 1h;
    for (int i = 0; i < 6; ++i) {
        EXPECT_TRUE(limiter.check("c").allowed) << i;
    }
    EXPECT_FALSE(limiter.check("c").allowed);
}

TEST(RateLimiter, RetryAfterIsAtLeastOneSecond) {
    FakeClock clock;
    RateLimiter limiter(600, clock.fn());  // 10 a second
    for (int i = 0; i < 600; ++i) {
        ASSERT_TRUE(limiter.check("c").allowed);
    }
    const auto d = limiter.check("c");
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after, 1s);
}

TEST(RateLimiter, ZeroDisablesTheLimit) {
    FakeClock clock;
    RateLimiter limiter(0, clock.fn());
    for (int i = 0; i < 1000; ++i) {
        ASSERT_TRUE(limiter.check("c").allowed);
    }
    EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(RateLimiter, ClockGoingBackwardsGivesNothingBack) {
    FakeClock clock;
    RateLimiter limiter(1, clock.fn());
    EXPECT_TRUE(limiter.check("c").allowed);
    clock.t -= 10min;
    EXPECT_FALSE(limiter.check("c").allowed);
    clock.t += 10min + 59s;
    EXPECT_FALSE(limiter.check("c").allowed);
    clock.t += 1s;
    EXPECT_TRUE(limiter.check("c").allowed);
}

TEST(RateLimiter, MemoryIsBoundedAndIdleClientsAreForgotten) {
    FakeClock clock;
    RateLimiter limiter(2, clock.fn(), 100);
    for (int i = 0; i < 1000; ++i) {
        limiter.check("10.0.0." + std::to_string(i));
    }
    EXPECT_LE(limiter.tracked(), 100u);
    // Newcomers beyond the cap share one bucket (2 calls), so a flood cannot reset limits.
    int allowed = 0;
    for (int i = 0; i < 50; ++i) {
        allowed += limiter.check("192.168.0." + std::to_string(i)).allowed ? 1 : 0;
    }
    EXPECT_EQ(allowed, 0);  // the overflow bucket was already drained by the first flood
    // Once every bucket has refilled (one minute at 2/min), the table empties on the next sweep.
    clock.t += 61s;
    EXPECT_TRUE(limiter.check("fresh").allowed);
    EXPECT_EQ(limiter.tracked(), 1u);
}

TEST(RateLimiter, TrackedClientsKeepTheirStateUnderTheCap) {
    FakeClock clock;
    RateLimiter limiter(1, clock.fn(), 2);
    EXPECT_TRUE(limiter.check("a").allowed);
    EXPECT_TRUE(limiter.check("b").allowed);
    EXPECT_TRUE(limiter.check("c").allowed);   // overflow bucket
    EXPECT_FALSE(limiter.check("a").allowed);  // a's bucket was not dropped
    EXPECT_FALSE(limiter.check("d").allowed);  // overflow bucket spent
}

TEST(RateLimiter, ThreadSafe) {
    RateLimiter limiter(1000);
    std::atomic<int> allowed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 500; ++i) {
                if (limiter.check(t % 2 == 0 ? "even" : "odd").allowed) {
                    ++allowed;
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    // Two buckets of 1000, plus whatever refilled while the test ran (well under a second).
    EXPECT_GE(allowed.load(), 2000);
    EXPECT_LE(allowed.load(), 2000 + 2 * 1000 / 60 * 5);
}

}  // namespace
}  // namespace mlk::api
