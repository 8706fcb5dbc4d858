#include "mlkeeper/gpu/watch.hpp"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace mlk::gpu {
namespace {

using namespace std::chrono_literals;

bool blocked(int sig) {
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, nullptr, &cur);
    return sigismember(&cur, sig) == 1;
}

TEST(StopSignals, TimesOutWithoutSignal) {
    StopSignals stop;
    auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(stop.wait(50ms));
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_GE(took, 45ms);
    EXPECT_LT(took, 5s);
    EXPECT_FALSE(stop.stop_requested());
    EXPECT_FALSE(stop.wait(0ms));
}

TEST(StopSignals, SigtermDuringWorkStopsAtTheNextWait) {
    ASSERT_FALSE(blocked(SIGTERM));
    {
        StopSignals stop;
        EXPECT_TRUE(blocked(SIGTERM));
        EXPECT_TRUE(blocked(SIGINT));
        ASSERT_EQ(::raise(SIGTERM), 0);  // blocked: stays pending, the process lives
        auto start = std::chrono::steady_clock::now();
        EXPECT_TRUE(stop.wait(10s));
        EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
        EXPECT_EQ(stop.signal(), SIGTERM);
        EXPECT_TRUE(stop.wait(10s));  // remembered
    }
    EXPECT_FALSE(blocked(SIGTERM));
}

TEST(StopSignals, SigintFromAnotherThreadWakesTheWait) {
    StopSignals stop;
    pthread_t self = pthread_self();
    std::thread t([self] {
        std::this_thread::sleep_for(50ms);
        pthread_kill(self, SIGINT);
    });
    auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(stop.wait(10s));
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_EQ(stop.signal(), SIGINT);
    t.join();
}

TEST(StopSignals, UnconsumedSignalIsDroppedOnExit) {
    {
        StopSignals stop;
        ASSERT_EQ(::raise(SIGINT), 0);
    }  // had the destructor unblocked it pending, SIGINT's default action would end the test
    EXPECT_FALSE(blocked(SIGINT));
    sigset_t pending;
    sigpending(&pending);
    EXPECT_EQ(sigismember(&pending, SIGINT), 0);
}

}  // namespace
}  // namespace mlk::gpu
