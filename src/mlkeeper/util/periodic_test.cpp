#include "mlkeeper/util/periodic.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace mlk::util {
namespace {

using namespace std::chrono_literals;

TEST(PeriodicTask, TicksAtOnceThenEveryInterval) {
    std::atomic<int> ticks{0};
    PeriodicTask t(20ms, [&] { ++ticks; });
    t.start();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (ticks < 4 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_GE(ticks.load(), 4);
}

TEST(PeriodicTask, StopDoesNotWaitForALongInterval) {
    std::atomic<int> ticks{0};
    PeriodicTask t(1h, [&] { ++ticks; });
    t.start();
    while (ticks == 0) {
        std::this_thread::sleep_for(1ms);
    }
    const auto t0 = std::chrono::steady_clock::now();
    t.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    EXPECT_EQ(ticks.load(), 1);
    t.stop();  // idempotent
}

TEST(PeriodicTask, PokeRunsTheNextTickNow) {
    std::atomic<int> ticks{0};
    PeriodicTask t(1h, [&] { ++ticks; });
    t.start();
    while (ticks == 0) {
        std::this_thread::sleep_for(1ms);
    }
    t.poke();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (ticks < 2 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(ticks.load(), 2);
}

TEST(PeriodicTask, NeverStartedStopsCleanly) {
    PeriodicTask t(1s, [] {});
    t.stop();
}

}  // namespace
}  // namespace mlk::util
