#include "mlkeeper/homelab/process_backend.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk::homelab {
namespace {

bool eventually_(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    return testing::wait_until(pred, limit, std::chrono::milliseconds(5));
}

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using mlk::testing::slurp;
using mlk::testing::TempDir;

// A zombie counts as dead: an orphaned grandchild waits for init (or a container's pid 1) to
// reap it, which this test does not control.
bool alive(pid_t pid) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    const auto stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    const auto paren = stat.rfind(')');
    return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

ModelSpec sh_model(const std::string& name, const std::string& script) {
    ModelSpec s;
    s.name = name;
    s.command = {"/bin/sh", "-c", script};
    s.stop_timeout = 2s;
    return s;
}

BackendEnv env_in(const TempDir& dir, std::uint64_t max_size = 10'000'000, int keep = 3) {
    BackendEnv e;
    e.log_dir = dir / "logs";
    e.log_max_size = max_size;
    e.log_keep = keep;
    return e;
}

std::size_t count_lines(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(ProcessBackend, StartsCapturesOutputAndStops) {
    TempDir dir;
    auto spec = sh_model("m1", "echo out; echo err >&2; echo \"FOO=$FOO\"; pwd; exec sleep 30");
    spec.env = {{"FOO", "bar baz"}};
    spec.workdir = dir.path();
    ProcessBackend b(spec, env_in(dir));
    EXPECT_EQ(b.status().state, BackendState::kStopped);
    b.start();
    const auto s = b.status();
    ASSERT_EQ(s.state, BackendState::kRunning);
    ASSERT_TRUE(s.pid.has_value());
    const pid_t pid = *s.pid;
    EXPECT_TRUE(alive(pid));
    const auto log = dir / "logs" / "m1.log";
    EXPECT_EQ(b.log_path(), log);
    ASSERT_TRUE(
        eventually_([&] { return slurp(log).find(dir.path().string()) != std::string::npos; }));
    const auto text = slurp(log);
    EXPECT_NE(text.find("---- mlkeeper: starting m1 at "), std::string::npos) << text;
    EXPECT_NE(text.find("\nout\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nerr\n"), std::string::npos) << text;
    EXPECT_NE(text.find("FOO=bar baz\n"), std::string::npos) << text;

    const auto t0 = Clock::now();
    b.stop(2000ms);
    EXPECT_LT(Clock::now() - t0, 1500ms);                 // sleep dies of SIGTERM at once
    EXPECT_EQ(b.status().state, BackendState::kStopped);  // not kExited: we stopped it
    EXPECT_FALSE(alive(pid));
    EXPECT_NE(slurp(log).find("---- mlkeeper: m1 stopped at "), std::string::npos);
    b.stop(100ms);  // again: no-op
}

TEST(ProcessBackend, StartTwiceKeepsTheRunningChild) {
    TempDir dir;
    ProcessBackend b(sh_model("m", "exec sleep 30"), env_in(dir));
    b.start();
    const auto pid = b.status().pid;
    b.start();
    EXPECT_EQ(b.status().pid, pid);
    b.stop(1000ms);
}

TEST(ProcessBackend, ChildIgnoringSigtermIsKilledAfterTheTimeout) {
    TempDir dir;
    // A grandchild in the same group must die too.
    ProcessBackend b(sh_model("stubborn",
                              "trap '' TERM; sleep 100 & echo \"gc=$!\"; echo ready; "
                              "while :; do sleep 0.05; done"),
                     env_in(dir));
    b.start();
    const auto log = dir / "logs" / "stubborn.log";
    ASSERT_TRUE(eventually_([&] { return slurp(log).find("\nready\n") != std::string::npos; }));
    const auto text = slurp(log);
    const auto at = text.find("\ngc=");
    ASSERT_NE(at, std::string::npos);
    const pid_t grandchild = std::stoi(text.substr(at + 4));
    const pid_t pid = *b.status().pid;

    std::atomic<bool> saw_stopping{false};
    std::atomic<bool> done{false};
    std::thread monitor([&] {
        while (!done) {
            const auto s = b.status();  // from another thread while stop() blocks
            if (s.state == BackendState::kRunning && s.detail == "stopping") {
                saw_stopping = true;
            }
            EXPECT_NE(s.state, BackendState::kExited);
            std::this_thread::sleep_for(5ms);
        }
    });
    const auto t0 = Clock::now();
    b.stop(400ms);
    const auto took = Clock::now() - t0;
    done = true;
    monitor.join();
    EXPECT_GE(took, 390ms);
    EXPECT_LT(took, 3000ms);
    EXPECT_TRUE(saw_stopping);
    EXPECT_EQ(b.status().state, BackendState::kStopped);
    EXPECT_FALSE(alive(pid));
    EXPECT_TRUE(eventually_([&] { return !alive(grandchild); }, 2000ms));
    EXPECT_NE(slurp(log).find("stopped (SIGKILL after 400 ms)"), std::string::npos);
}

TEST(ProcessBackend, CrashIsReportedOnceThenStopped) {
    TempDir dir;
    ProcessBackend b(sh_model("crash", "echo dying; exit 3"), env_in(dir));
    b.start();
    BackendStatus s;
    ASSERT_TRUE(eventually_([&] {
        s = b.status();
        return s.state != BackendState::kRunning;
    }));
    EXPECT_EQ(s.state, BackendState::kExited);
    EXPECT_EQ(s.exit_code, 3);
    EXPECT_FALSE(s.signal.has_value());
    EXPECT_TRUE(s.pid.has_value());
    EXPECT_EQ(s.detail, "exited with code 3");
    const auto again = b.status();
    EXPECT_EQ(again.state, BackendState::kStopped);
    EXPECT_EQ(again.detail, "exited with code 3");
    const auto log = dir / "logs" / "crash.log";
    EXPECT_TRUE(eventually_([&] { return slurp(log).find("dying\n") != std::string::npos; }));
    EXPECT_NE(slurp(log).find("crash exited with code 3"), std::string::npos);

    // It can be started again.
    b.start();
    ASSERT_TRUE(eventually_([&] { return b.status().state == BackendState::kExited; }));
    b.stop(100ms);
}

TEST(ProcessBackend, DeathBySignalIsReported) {
    TempDir dir;
    ProcessBackend b(sh_model("segv", "kill -SEGV $$"), env_in(dir));
    b.start();
    BackendStatus s;
    ASSERT_TRUE(eventually_([&] {
        s = b.status();
        return s.state != BackendState::kRunning;
    }));
    EXPECT_EQ(s.state, BackendState::kExited);
    EXPECT_EQ(s.signal, SIGSEGV);
    EXPECT_FALSE(s.exit_code.has_value());
    EXPECT_EQ(s.detail, "killed by SIGSEGV");
}

TEST(ProcessBackend, MissingBinaryFailsStartWithAClearError) {
    TempDir dir;
    ModelSpec spec;
    spec.name = "ghost";
    spec.command = {"/nonexistent/llama-server", "--port", "1"};
    ProcessBackend b(spec, env_in(dir));
    try {
        b.start();
        FAIL() << "start() should throw";
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("model ghost"), std::string::npos) << msg;
        EXPECT_NE(msg.find("/nonexistent/llama-server"), std::string::npos) << msg;
    }
    const auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);
    EXPECT_NE(s.detail.find("failed to start"), std::string::npos) << s.detail;

    spec.command = {"no-such-program-mlkeeper-test"};
    ProcessBackend path_lookup(spec, env_in(dir));
    EXPECT_THROW(path_lookup.start(), std::runtime_error);

    spec.command = {"/bin/true"};
    spec.workdir = dir / "missing-dir";
    ProcessBackend bad_dir(spec, env_in(dir));
    EXPECT_THROW(bad_dir.start(), std::runtime_error);
}

TEST(ProcessBackend, RejectsASpecWithoutCommand) {
    TempDir dir;
    ModelSpec spec;
    spec.name = "x";
    EXPECT_THROW(ProcessBackend(spec, env_in(dir)), std::invalid_argument);
    spec.command = {"/bin/true"};
    spec.name = "../x";
    EXPECT_THROW(ProcessBackend(spec, env_in(dir)), std::invalid_argument);
}

TEST(ProcessBackend, LogIsRotatedBySizeKeepingWholeLines) {
    TempDir dir;
    // 20000 lines of 20 bytes = 400 KB through a 50 KB limit: several rotations.
    ProcessBackend b(sh_model("chatty",
                              "i=0; while [ $i -lt 20000 ]; do "
                              "printf 'line %014d\\n' $i; i=$((i+1)); done"),
                     env_in(dir, 50'000, 2));
    b.start();
    ASSERT_TRUE(eventually_([&] { return b.status().state == BackendState::kExited; }, 20000ms));
    b.stop(100ms);  // joins the reader
    const auto logs = dir / "logs";
    ASSERT_TRUE(std::filesystem::exists(logs / "chatty.log"));
    ASSERT_TRUE(std::filesystem::exists(logs / "chatty.log.1"));
    ASSERT_TRUE(std::filesystem::exists(logs / "chatty.log.2"));
    EXPECT_FALSE(std::filesystem::exists(logs / "chatty.log.3"));
    std::size_t total = 0;
    for (const char* f : {"chatty.log", "chatty.log.1", "chatty.log.2"}) {
        EXPECT_LE(std::filesystem::file_size(logs / f), 50'000u) << f;
        const auto text = slurp(logs / f);
        ASSERT_FALSE(text.empty());
        EXPECT_EQ(text.back(), '\n') << f;
        // Every line whole: output lines are 20 bytes, ours start with "----".
        std::size_t start = 0;
        while (start < text.size()) {
            const auto nl = text.find('\n', start);
            const auto line = text.substr(start, nl - start);
            if (line.rfind("----", 0) != 0) {
                EXPECT_EQ(line.size(), 19u) << f << ": " << line;
                ++total;
            }
            start = nl + 1;
        }
    }
    EXPECT_GT(total, 2000u);
    EXPECT_LT(total, 20000u);  // older ones rotated away
    EXPECT_NE(slurp(logs / "chatty.log").find("line 00000000019999"), std::string::npos);
    EXPECT_EQ(b.dropped_lines(), 0u);
}

TEST(ProcessBackend, AFullDiskDropsLinesAndNeverBlocksTheModel) {
    TempDir dir;
    std::filesystem::create_directories(dir / "logs");
    // Every write to /dev/full fails with ENOSPC.
    std::filesystem::create_symlink("/dev/full", dir / "logs" / "full.log");
    ProcessBackend b(sh_model("full",
                              "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; "
                              "i=$((i+1)); done"),
                     env_in(dir, 0, 3));
    b.start();
    // 3000 lines are far more than a pipe holds: the child only finishes if they are drained.
    ASSERT_TRUE(eventually_([&] { return b.status().state == BackendState::kExited; }, 20000ms));
    b.stop(100ms);
    // Its 3000 lines plus our two notes (started, exited), each counted once.
    EXPECT_EQ(b.dropped_lines(), 3002u);
}

TEST(ProcessBackend, AnUnwritableLogDirectoryDoesNotStopTheModel) {
    TempDir dir;
    std::filesystem::create_directories(dir / "logs");
    { std::ofstream f(dir / "not-a-dir"); }
    BackendEnv env = env_in(dir);
    env.log_dir = dir / "not-a-dir" / "logs";
    ProcessBackend b(sh_model("m", "echo a; echo b; exit 0"), env);
    b.start();
    ASSERT_TRUE(eventually_([&] { return b.status().state == BackendState::kExited; }));
    b.stop(100ms);
    EXPECT_GE(b.dropped_lines(), 2u);
}

TEST(ProcessBackend, DestructorStopsTheChild) {
    TempDir dir;
    pid_t pid = 0;
    {
        ProcessBackend b(sh_model("m", "exec sleep 30"), env_in(dir));
        b.start();
        pid = *b.status().pid;
    }
    EXPECT_FALSE(alive(pid));
}

TEST(ProcessBackend, ConcurrentCallsStayConsistent) {
    TempDir dir;
    ProcessBackend b(sh_model("busy", "exec sleep 30"), env_in(dir));
    std::atomic<bool> stop{false};
    std::vector<std::thread> pollers;
    for (int i = 0; i < 4; ++i) {
        pollers.emplace_back([&] {
            while (!stop) {
                (void)b.status();
            }
        });
    }
    for (int i = 0; i < 5; ++i) {
        std::thread a([&] { b.start(); });
        std::thread c([&] { b.start(); });
        a.join();
        c.join();
        EXPECT_EQ(b.status().state, BackendState::kRunning);
        std::thread s1([&] { b.stop(1000ms); });
        std::thread s2([&] { b.stop(1000ms); });
        s1.join();
        s2.join();
        EXPECT_EQ(b.status().state, BackendState::kStopped);
    }
    stop = true;
    for (auto& t : pollers) {
        t.join();
    }
}

int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

bool can_connect(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

TEST(ProcessBackend, RealServerStartsListensAndStops) {
    if (::access("/usr/bin/python3", X_OK) != 0) {
        GTEST_SKIP() << "python3 not installed";
    }
    TempDir dir;
    const int port = free_port();
    ModelSpec spec;
    spec.name = "http";
    spec.command = {"/usr/bin/python3",   "-u",     "-m",       "http.server",
                    std::to_string(port), "--bind", "127.0.0.1"};
    spec.workdir = dir.path();
    ProcessBackend b(spec, env_in(dir));
    b.start();
    ASSERT_TRUE(eventually_([&] { return can_connect(port); }, 10000ms));
    EXPECT_EQ(b.status().state, BackendState::kRunning);
    b.stop(3000ms);
    EXPECT_FALSE(can_connect(port));
    EXPECT_NE(slurp(dir / "logs" / "http.log").find("Serving HTTP"), std::string::npos);
}

// ---- RotatingLog on its own ----

TEST(RotatingLog, HoldsPartialLinesUntilTheirNewline) {
    TempDir dir;
    RotatingLog log(dir / "a.log", 0, 3);
    log.write("hel");
    log.write("lo\nwor");
    EXPECT_EQ(slurp(dir / "a.log"), "hello\n");
    log.write("ld");
    log.flush();
    EXPECT_EQ(slurp(dir / "a.log"), "hello\nworld\n");
    log.note("---- x ----");
    EXPECT_EQ(slurp(dir / "a.log"), "hello\nworld\n---- x ----\n");
}

TEST(RotatingLog, AVeryLongLineIsWrittenWholeAndAlone) {
    TempDir dir;
    RotatingLog log(dir / "a.log", 100, 2);
    log.write("short\n");
    log.write(std::string(250, 'x') + "\n");
    log.write("after\n");
    EXPECT_EQ(slurp(dir / "a.log"), "after\n");
    EXPECT_EQ(slurp(dir / "a.log.1"), std::string(250, 'x') + "\n");
    EXPECT_EQ(slurp(dir / "a.log.2"), "short\n");
}

TEST(RotatingLog, PartialLinesAreCutAt64KiB) {
    TempDir dir;
    RotatingLog log(dir / "a.log", 0, 1);
    log.write(std::string(70 * 1024, 'y'));  // no newline ever
    EXPECT_EQ(std::filesystem::file_size(dir / "a.log"), 70u * 1024 + 1);
}

TEST(RotatingLog, KeepZeroTruncates) {
    TempDir dir;
    RotatingLog log(dir / "a.log", 10, 0);
    log.write("123456789\n");
    log.write("abc\n");
    EXPECT_EQ(slurp(dir / "a.log"), "abc\n");
    EXPECT_FALSE(std::filesystem::exists(dir / "a.log.1"));
}

TEST(RotatingLog, AppendsToAnExistingLogAndCountsItsSize) {
    TempDir dir;
    dir.write("a.log", std::string(95, 'o') + "\n");
    RotatingLog log(dir / "a.log", 100, 1);
    log.write("12345\n");  // would pass 100 bytes: rotates first
    EXPECT_EQ(slurp(dir / "a.log"), "12345\n");
    EXPECT_EQ(std::filesystem::file_size(dir / "a.log.1"), 96u);
}

TEST(RotatingLog, NotesTheGapAfterWritesFailed) {
    TempDir dir;
    // A directory where the file should be: every open fails (EISDIR) until it is removed.
    std::filesystem::create_directories(dir / "a.log");
    RotatingLog log(dir / "a.log", 0, 1);
    log.write("lost 1\nlost 2\n");
    log.write("lost 3\n");
    EXPECT_EQ(log.dropped_lines(), 3u);
    std::filesystem::remove(dir / "a.log");
    log.write("kept\n");
    const auto text = slurp(dir / "a.log");
    EXPECT_EQ(count_lines(text), 2u);
    EXPECT_EQ(text.rfind("---- mlkeeper: 3 output line(s) lost: ", 0), 0u) << text;
    EXPECT_NE(text.find("\nkept\n"), std::string::npos);
    EXPECT_EQ(log.dropped_lines(), 3u);
}

}  // namespace
}  // namespace mlk::homelab
