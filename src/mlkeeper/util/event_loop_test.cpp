#include "mlkeeper/util/event_loop.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "mlkeeper/util/async_socket.hpp"

namespace mlk::util {
namespace {

using namespace std::chrono_literals;
using Clock = EventLoop::Clock;

// A connected pair of stream sockets: [0] goes on the loop, [1] stays blocking for the test.
struct Pair {
    int fds[2] = {-1, -1};
    Pair() {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
            throw std::runtime_error("socketpair");
        }
    }
    ~Pair() {
        for (const int fd : fds) {
            if (fd >= 0) {
                ::close(fd);
            }
        }
    }
    int take_loop_end() { return std::exchange(fds[0], -1); }
};

// Runs `loop` on a thread; stops and joins it (bounded by the tasks ending) when destroyed.
struct Running {
    EventLoop& loop;
    std::thread thread;
    explicit Running(EventLoop& l) : loop(l), thread([&l] { l.run(); }) {}
    ~Running() {
        loop.stop();
        thread.join();
    }
};

bool wait_for(const std::atomic<bool>& flag, std::chrono::milliseconds limit = 5s) {
    const auto end = Clock::now() + limit;
    while (!flag && Clock::now() < end) {
        std::this_thread::sleep_for(1ms);
    }
    return flag;
}

Task<int> forty_two() {
    co_return 42;
}

Task<int> throws() {
    throw std::runtime_error("boom");
    co_return 0;
}

TEST(CoTask, ValuesAndExceptionsReachTheAwaiter) {
    EventLoop loop;
    int got = 0;
    std::string error;
    loop.spawn([](int& out, std::string& err) -> Task<void> {
        out = co_await forty_two();
        try {
            (void)co_await throws();
        } catch (const std::runtime_error& e) {
            err = e.what();
        }
    }(got, error));
    EXPECT_EQ(got, 42);
    EXPECT_EQ(error, "boom");
    EXPECT_EQ(loop.tasks(), 0U);
}

TEST(EventLoop, ReadsWhatArrivesAndSeesTheEndAfterIt) {
    EventLoop loop;
    Pair p;
    std::atomic<bool> done{false};
    std::string got;
    ssize_t last = -2;
    loop.spawn([](EventLoop& l, int fd, std::string& out, ssize_t& end,
                  std::atomic<bool>& finished) -> Task<void> {
        AsyncSocket s(l, fd);
        char buf[4];  // smaller than a write: several reads per arrival
        for (;;) {
            const ssize_t n = co_await s.recv(buf, sizeof buf, Clock::now() + 5s);
            if (n <= 0) {
                end = n;
                break;
            }
            out.append(buf, static_cast<std::size_t>(n));
        }
        finished = true;
    }(loop, p.take_loop_end(), got, last, done));
    Running r(loop);
    ASSERT_EQ(::write(p.fds[1], "hello ", 6), 6);
    std::this_thread::sleep_for(20ms);
    // Data and the end together: the read that empties the socket must not wait for an edge
    // that the end already brought.
    ASSERT_EQ(::write(p.fds[1], "world", 5), 5);
    ::shutdown(p.fds[1], SHUT_WR);
    ASSERT_TRUE(wait_for(done));
    EXPECT_EQ(got, "hello world");
    EXPECT_EQ(last, 0);
}

TEST(EventLoop, AWaitEndsAtItsDeadline) {
    EventLoop loop;
    Pair p;
    std::atomic<bool> done{false};
    int err = 0;
    Clock::duration waited{};
    loop.spawn([](EventLoop& l, int fd, int& e, Clock::duration& w,
                  std::atomic<bool>& finished) -> Task<void> {
        AsyncSocket s(l, fd);
        char c;
        const auto t0 = Clock::now();
        const ssize_t n = co_await s.recv(&c, 1, t0 + 150ms);
        w = Clock::now() - t0;
        e = n < 0 ? errno : 0;
        finished = true;
    }(loop, p.take_loop_end(), err, waited, done));
    Running r(loop);
    ASSERT_TRUE(wait_for(done));
    EXPECT_EQ(err, EAGAIN);
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 2s);
}

TEST(EventLoop, StopCancelsEveryWaitAndRunReturnsWhenTheTasksEnd) {
    EventLoop loop;
    Pair a;
    Pair b;
    std::atomic<int> cancelled{0};
    for (Pair* p : {&a, &b}) {
        loop.spawn([](EventLoop& l, int fd, std::atomic<int>& count) -> Task<void> {
            AsyncSocket s(l, fd);
            char c;
            const ssize_t n = co_await s.recv(&c, 1, EventLoop::kNoDeadline);
            if (n < 0 && errno == ECANCELED) {
                ++count;
            }
            // A wait begun after the stop ends at once.
            const ssize_t again = co_await s.recv(&c, 1, EventLoop::kNoDeadline);
            if (again < 0 && errno == ECANCELED) {
                ++count;
            }
        }(loop, p->take_loop_end(), cancelled));
    }
    EXPECT_EQ(loop.tasks(), 2U);
    std::thread t([&] { loop.run(); });
    std::this_thread::sleep_for(20ms);
    const auto t0 = Clock::now();
    loop.stop();
    t.join();
    EXPECT_LT(Clock::now() - t0, 2s);
    EXPECT_EQ(cancelled, 4);
    EXPECT_EQ(loop.tasks(), 0U);
}

TEST(EventLoop, BlockingWorkRunsOffTheLoopAndResumesOnIt) {
    EventLoop loop;
    std::atomic<bool> done{false};
    std::thread::id loop_thread;
    std::thread::id work_thread;
    std::thread::id resumed_on;
    std::string error;
    std::atomic<bool> ticked{false};
    loop.spawn([](EventLoop& l, std::thread::id& work, std::thread::id& resumed, std::string& err,
                  std::atomic<bool>& finished) -> Task<void> {
        const std::function<void()> sleepy = [&work] {
            work = std::this_thread::get_id();
            std::this_thread::sleep_for(100ms);
        };
        co_await l.run_blocking(sleepy);
        resumed = std::this_thread::get_id();
        const std::function<void()> failing = [] { throw std::runtime_error("no start"); };
        try {
            co_await l.run_blocking(failing);
        } catch (const std::runtime_error& e) {
            err = e.what();
        }
        finished = true;
    }(loop, work_thread, resumed_on, error, done));
    std::thread t([&] {
        loop_thread = std::this_thread::get_id();
        loop.run();
    });
    // The loop stays free while the work blocks: posted work runs meanwhile.
    loop.post([&] { ticked = true; });
    EXPECT_TRUE(wait_for(ticked, 80ms));
    EXPECT_TRUE(wait_for(done));
    loop.stop();
    t.join();
    EXPECT_NE(work_thread, loop_thread);
    EXPECT_EQ(resumed_on, loop_thread);
    EXPECT_EQ(error, "no start");
}

TEST(EventLoop, WholeWritesLargerThanTheSocketBufferWaitForTheReader) {
    EventLoop loop;
    Pair p;
    const std::string big(4 * 1024 * 1024, 'x');
    std::atomic<bool> done{false};
    bool ok = false;
    loop.spawn([](EventLoop& l, int fd, const std::string& data, bool& sent,
                  std::atomic<bool>& finished) -> Task<void> {
        AsyncSocket s(l, fd);
        sent = co_await s.send_all(data, Clock::now() + 10s);
        finished = true;
    }(loop, p.take_loop_end(), big, ok, done));
    Running r(loop);
    std::size_t total = 0;
    char buf[65536];
    while (total < big.size()) {
        const ssize_t n = ::read(p.fds[1], buf, sizeof buf);
        ASSERT_GT(n, 0);
        total += static_cast<std::size_t>(n);
    }
    ASSERT_TRUE(wait_for(done));
    EXPECT_TRUE(ok);
    EXPECT_EQ(total, big.size());
}

TEST(EventLoop, AWriteToAReaderThatNeverReadsTimesOut) {
    EventLoop loop;
    Pair p;
    const std::string big(4 * 1024 * 1024, 'x');
    std::atomic<bool> done{false};
    bool ok = true;
    int err = 0;
    loop.spawn([](EventLoop& l, int fd, const std::string& data, bool& sent, int& e,
                  std::atomic<bool>& finished) -> Task<void> {
        AsyncSocket s(l, fd);
        sent = co_await s.send_all(data, Clock::now() + 100ms);
        e = errno;
        finished = true;
    }(loop, p.take_loop_end(), big, ok, err, done));
    Running r(loop);
    ASSERT_TRUE(wait_for(done));
    EXPECT_FALSE(ok);
    EXPECT_EQ(err, EAGAIN);
}

TEST(EventLoop, ManyConnectionsOnOneThread) {
    EventLoop loop;
    constexpr int kConns = 64;
    std::vector<std::unique_ptr<Pair>> pairs;
    std::atomic<int> echoed{0};
    for (int i = 0; i < kConns; ++i) {
        pairs.push_back(std::make_unique<Pair>());
        loop.spawn([](EventLoop& l, int fd, std::atomic<int>& count) -> Task<void> {
            AsyncSocket s(l, fd);
            char buf[64];
            for (;;) {
                const ssize_t n = co_await s.recv(buf, sizeof buf, Clock::now() + 5s);
                if (n <= 0) {
                    break;
                }
                const std::string_view data(buf, static_cast<std::size_t>(n));
                const bool sent = co_await s.send_all(data, Clock::now() + 5s);
                if (!sent) {
                    break;
                }
                ++count;
            }
        }(loop, pairs.back()->take_loop_end(), echoed));
    }
    Running r(loop);
    for (int round = 0; round < 3; ++round) {
        for (auto& p : pairs) {
            ASSERT_EQ(::write(p->fds[1], "ping", 4), 4);
        }
        for (auto& p : pairs) {
            char buf[4];
            ASSERT_EQ(::read(p->fds[1], buf, 4), 4);
            EXPECT_EQ(std::string(buf, 4), "ping");
        }
    }
    EXPECT_EQ(echoed, 3 * kConns);
    for (auto& p : pairs) {
        ::shutdown(p->fds[1], SHUT_WR);
    }
    const auto end = Clock::now() + 5s;
    while (loop.tasks() > 0 && Clock::now() < end) {
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(loop.tasks(), 0U);
}

}  // namespace
}  // namespace mlk::util
