#include "mlkeeper/util/progress.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mlk::util {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

constexpr std::uint64_t kMiB = 1024 * 1024;

// A hand-driven clock and a sink that records every write.
struct Harness {
    TimePoint now = TimePoint(1000s);
    std::vector<std::string> writes;

    void attach(Progress& p) {
        p.set_clock([this] { return now; });
        p.set_sink([this](std::string_view text) { writes.emplace_back(text); });
    }
};

// Owns both ends of a pipe; closes whatever is still open.
class Pipe {
  public:
    Pipe() {
        if (::pipe(fds_) != 0) {
            throw std::runtime_error("pipe failed");
        }
    }
    ~Pipe() {
        close_write();
        ::close(fds_[0]);
    }
    int write_fd() const { return fds_[1]; }
    void close_write() {
        if (fds_[1] >= 0) {
            ::close(fds_[1]);
            fds_[1] = -1;
        }
    }
    // Everything written, read after the write end is closed (bounded by a poll timeout).
    std::string drain() {
        close_write();
        std::string out;
        char buf[4096];
        while (true) {
            pollfd pfd{fds_[0], POLLIN, 0};
            if (::poll(&pfd, 1, 5000) != 1) {
                ADD_FAILURE() << "pipe read timed out";
                return out;
            }
            const ssize_t n = ::read(fds_[0], buf, sizeof buf);
            if (n <= 0) {
                return out;
            }
            out.append(buf, static_cast<std::size_t>(n));
        }
    }

  private:
    int fds_[2] = {-1, -1};
};

// Sets or unsets TERM for the lifetime of the guard.
class ScopedTerm {
  public:
    explicit ScopedTerm(const char* value) {
        if (const char* old = std::getenv("TERM")) {
            old_ = old;
        }
        if (value != nullptr) {
            ::setenv("TERM", value, 1);
        } else {
            ::unsetenv("TERM");
        }
    }
    ~ScopedTerm() {
        if (old_) {
            ::setenv("TERM", old_->c_str(), 1);
        } else {
            ::unsetenv("TERM");
        }
    }
    ScopedTerm(const ScopedTerm&) = delete;
    ScopedTerm& operator=(const ScopedTerm&) = delete;

  private:
    std::optional<std::string> old_;
};

TEST(Progress, RenderAtKnownPoints) {
    Harness h;
    Progress p("backup", 10 * kMiB, ProgressMode::kAlways);
    h.attach(p);
    EXPECT_EQ(p.render(), "backup  0% 0 B / 10.0 MiB");  // no time passed: no rate yet

    h.now += 1s;
    p.advance(kMiB);
    EXPECT_EQ(p.render(), "backup  10% 1.0 MiB / 10.0 MiB  1.0 MiB/s  ETA 9s");

    h.now += 1s;
    p.advance(kMiB);
    EXPECT_EQ(p.render(), "backup  20% 2.0 MiB / 10.0 MiB  1.0 MiB/s  ETA 8s");

    h.now += 60s;
    p.advance(60 * kMiB / 10);  // slowed to 0.1 MiB/s for a minute: the smoothed rate follows
    EXPECT_EQ(p.render(), "backup  80% 8.0 MiB / 10.0 MiB  102.4 KiB/s  ETA 20s");
}

TEST(Progress, RenderBeforeFirstSampleUsesAverage) {
    Harness h;
    Progress p("x", 4 * kMiB, ProgressMode::kNever);
    h.attach(p);
    h.now += 200ms;  // shorter than a sample interval
    p.advance(kMiB);
    EXPECT_DOUBLE_EQ(p.rate(), 5.0 * kMiB);
    EXPECT_EQ(p.render(), "x  25% 1.0 MiB / 4.0 MiB  5.0 MiB/s  ETA 1s");
}

TEST(Progress, UnknownTotalHasNoPercentOrEta) {
    Harness h;
    Progress p("upload", 0, ProgressMode::kAlways);
    h.attach(p);
    EXPECT_EQ(p.render(), "upload  0 B");
    h.now += 2s;
    p.advance(3 * kMiB);
    EXPECT_EQ(p.render(), "upload  3.0 MiB  1.5 MiB/s");
    p.finish();
    ASSERT_FALSE(h.writes.empty());
    EXPECT_EQ(h.writes.back(), "\rupload  3.0 MiB  1.5 MiB/s\x1b[K\n");
}

TEST(Progress, EmptyLabel) {
    Harness h;
    Progress p("", 2048, ProgressMode::kNever);
    h.attach(p);
    p.advance(1024);
    EXPECT_EQ(p.render(), "50% 1.0 KiB / 2.0 KiB");
}

TEST(Progress, PercentReaches100OnlyWhenDone) {
    Harness h;
    Progress p("x", 10000, ProgressMode::kAlways);
    h.attach(p);
    h.now += 1s;
    p.advance(9999);
    EXPECT_EQ(p.render().rfind("x  99% ", 0), 0u) << p.render();
    h.now += 1s;
    p.advance(1);
    EXPECT_EQ(p.render().rfind("x  100% ", 0), 0u) << p.render();
    EXPECT_EQ(p.render().find("ETA"), std::string::npos);
    p.advance(5000);  // more than announced (the file grew): clamp, no negative ETA
    EXPECT_EQ(p.render().rfind("x  100% 14.6 KiB / 9.8 KiB", 0), 0u) << p.render();
    EXPECT_EQ(p.render().find("ETA"), std::string::npos);
}

TEST(Progress, StalledTransferHasNoEta) {
    Harness h;
    Progress p("x", 1024, ProgressMode::kAlways);
    h.attach(p);
    h.now += 1s;
    p.advance(0);
    EXPECT_EQ(p.render(), "x  0% 0 B / 1.0 KiB  0 B/s");
}

TEST(Progress, HugeEtaIsLeftOut) {
    Harness h;
    Progress p("x", std::uint64_t{1} << 60, ProgressMode::kAlways);
    h.attach(p);
    h.now += 1s;
    p.advance(1);
    EXPECT_EQ(p.render(), "x  0% 1 B / 1.0 EiB  1 B/s");
}

TEST(Progress, RateIsSmoothed) {
    Harness h;
    Progress p("x", 0, ProgressMode::kAlways);
    h.attach(p);
    for (int i = 0; i < 20; ++i) {
        h.now += 1s;
        p.advance(kMiB);
    }
    EXPECT_NEAR(p.rate(), 1.0 * kMiB, 1.0);
    h.now += 1s;
    p.advance(10 * kMiB);  // one burst at 10 MiB/s
    EXPECT_GT(p.rate(), 1.0 * kMiB);
    EXPECT_LT(p.rate(), 5.5 * kMiB);  // moves less than halfway toward the burst
    h.now += 1s;
    p.advance(0);  // one stalled second
    EXPECT_GT(p.rate(), 1.0 * kMiB);
}

TEST(Progress, RateIgnoresRedrawFrequency) {
    // The same transfer sampled every 0.5 s and every 2 s ends at (nearly) the same rate.
    auto run = [](std::chrono::milliseconds step) {
        Harness h;
        Progress p("x", 0, ProgressMode::kAlways);
        h.attach(p);
        const auto per_step = static_cast<std::uint64_t>(step.count()) * kMiB / 1000;
        for (auto t = 0ms; t < 10s; t += step) {
            h.now += step;
            p.advance(per_step);
        }
        for (auto t = 0ms; t < 4s; t += step) {
            h.now += step;
            p.advance(per_step * 4);
        }
        return p.rate();
    };
    const double fine = run(500ms);
    const double coarse = run(2000ms);
    EXPECT_NEAR(fine, coarse, 0.05 * fine);
}

TEST(Progress, ThrottlesRedraws) {
    Harness h;
    Progress p("x", 1000, ProgressMode::kAlways);
    h.attach(p);
    for (int i = 0; i < 100; ++i) {  // 100 calls within 10 ms
        p.advance(1);
        h.now += 100us;
    }
    ASSERT_EQ(h.writes.size(), 1u);
    EXPECT_EQ(h.writes[0], "\rx  0% 1 B / 1000 B\x1b[K");  // the first call draws at once

    h.now += 89900us;  // 99.9 ms after the first draw
    p.advance(1);
    EXPECT_EQ(h.writes.size(), 1u);
    h.now += 100us;  // exactly 100 ms
    p.advance(1);
    ASSERT_EQ(h.writes.size(), 2u);
    EXPECT_EQ(h.writes[1], "\r" + p.render() + "\x1b[K");
    EXPECT_EQ(p.done(), 102u);
}

TEST(Progress, ThrottlesWithTheRealClock) {
    std::vector<std::string> writes;
    Progress p("x", 1000, ProgressMode::kAlways);
    p.set_sink([&](std::string_view text) { writes.emplace_back(text); });
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 100; ++i) {
        p.advance(1);
    }
    if (std::chrono::steady_clock::now() - start < Progress::kRedrawInterval) {
        EXPECT_EQ(writes.size(), 1u);
    }
}

TEST(Progress, FinishWritesFinalLineWithNewlineOnce) {
    Harness h;
    Progress p("x", 100, ProgressMode::kAlways);
    h.attach(p);
    h.now += 1s;
    p.advance(100);
    p.finish();
    ASSERT_EQ(h.writes.size(), 2u);
    EXPECT_EQ(h.writes[1], "\rx  100% 100 B / 100 B  100 B/s\x1b[K\n");
    p.finish();
    h.now += 1s;
    p.advance(1);  // after finish: counted, never drawn
    EXPECT_EQ(h.writes.size(), 2u);
    EXPECT_EQ(p.done(), 101u);
}

TEST(Progress, FinishWithoutDrawingWritesNothing) {
    Harness h;
    {
        Progress p("x", 100, ProgressMode::kAlways);
        h.attach(p);
        p.finish();
    }
    EXPECT_TRUE(h.writes.empty());
}

TEST(Progress, DestructorFinishes) {
    Harness h;
    {
        Progress p("x", 100, ProgressMode::kAlways);
        h.attach(p);
        p.advance(50);
    }
    ASSERT_EQ(h.writes.size(), 2u);
    EXPECT_EQ(h.writes[1].back(), '\n');
}

TEST(Progress, DestructorSwallowsSinkErrors) {
    Harness h;
    {
        Progress p("x", 100, ProgressMode::kAlways);
        h.attach(p);
        p.advance(1);
        p.set_sink([](std::string_view) { throw std::runtime_error("terminal gone"); });
    }
    SUCCEED();
}

TEST(Progress, NeverModeIsSilent) {
    Harness h;
    {
        Progress p("x", 100, ProgressMode::kNever);
        h.attach(p);
        EXPECT_FALSE(p.enabled());
        for (int i = 0; i < 10; ++i) {
            h.now += 1s;
            p.advance(10);
        }
        p.finish();
        EXPECT_EQ(p.done(), 100u);
        EXPECT_EQ(p.render().rfind("x  100% ", 0), 0u);  // still usable for a log line
    }
    EXPECT_TRUE(h.writes.empty());
}

TEST(Progress, AutoOnAPipeWritesNothing) {
    Pipe pipe;
    {
        Progress p("x", 100, ProgressMode::kAuto, pipe.write_fd());
        EXPECT_FALSE(p.enabled());
        p.advance(50);
        p.advance(50);
        p.finish();
    }
    EXPECT_EQ(pipe.drain(), "");
}

TEST(Progress, AlwaysOnAPipeWritesToTheFd) {
    Pipe pipe;
    {
        Progress p("x", 100, ProgressMode::kAlways, pipe.write_fd());
        EXPECT_TRUE(p.enabled());
        p.advance(100);
    }
    const std::string out = pipe.drain();
    EXPECT_EQ(out.rfind("\rx  100% 100 B / 100 B", 0), 0u) << out;
    EXPECT_NE(out.find("\x1b[K"), std::string::npos);
    EXPECT_EQ(out.back(), '\n');
}

TEST(Progress, WriteErrorsAreIgnored) {
    Progress p("x", 100, ProgressMode::kAlways, -1);  // EBADF on every write
    p.advance(100);
    p.finish();
    EXPECT_EQ(p.done(), 100u);
}

TEST(Progress, AutoOnATerminalHonoursTerm) {
    const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
        if (master >= 0) {
            ::close(master);
        }
        GTEST_SKIP() << "no pseudo-terminal available";
    }
    const char* name = ::ptsname(master);
    const int slave = name != nullptr ? ::open(name, O_RDWR | O_NOCTTY) : -1;
    if (slave < 0) {
        ::close(master);
        GTEST_SKIP() << "cannot open the pseudo-terminal";
    }
    {
        ScopedTerm term("xterm-256color");
        EXPECT_TRUE(Progress("x", 1, ProgressMode::kAuto, slave).enabled());
    }
    {
        ScopedTerm term("dumb");
        EXPECT_FALSE(Progress("x", 1, ProgressMode::kAuto, slave).enabled());
        EXPECT_TRUE(Progress("x", 1, ProgressMode::kAlways, slave).enabled());
    }
    {
        ScopedTerm term(nullptr);
        EXPECT_TRUE(Progress("x", 1, ProgressMode::kAuto, slave).enabled());
    }
    ::close(slave);
    ::close(master);
}

TEST(Progress, ConcurrentAdvanceCountsEveryByte) {
    std::size_t writes = 0;
    Progress p("x", 0, ProgressMode::kAlways);
    p.set_sink([&](std::string_view text) {
        ++writes;  // the sink is called under the lock, so this is not a race
        EXPECT_EQ(text.front(), '\r');
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                p.advance(1);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(p.done(), 80000u);
    EXPECT_GE(writes, 1u);
    p.finish();
    EXPECT_NE(p.render().find("78.1 KiB"), std::string::npos) << p.render();
}

}  // namespace
}  // namespace mlk::util
