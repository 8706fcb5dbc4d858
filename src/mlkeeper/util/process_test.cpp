// Tests for the child-process runner: real children (sh, cat, sleep, head, nice, ionice), every
// wait bounded.
#include "mlkeeper/util/process.hpp"
#include "support/process_state.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>

namespace mlk::util {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using mlk::testing::TempDir;

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::filesystem::path& p, const std::string& text, mode_t mode) {
    {
        std::ofstream out(p, std::ios::binary);
        out << text;
    }
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
}

using mlk::testing::process_gone;
using mlk::testing::wait_gone;

pid_t first_line_pid(const std::string& out) {
    return static_cast<pid_t>(std::stol(out.substr(0, out.find('\n'))));
}

// Waits (bounded) until `p` exists and is non-empty.
bool wait_for_file(const std::filesystem::path& p, std::chrono::milliseconds limit) {
    auto until = Clock::now() + limit;
    while (Clock::now() < until) {
        if (!read_file(p).empty()) {
            return true;
        }
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

// Children we start must all be reaped: nothing left for waitpid(-1). Not checkable when the
// test runs as pid 1 (a bare container), where every orphan becomes our child.
void expect_no_zombies() {
    if (::getpid() == 1) {
        return;
    }
    int status;
    errno = 0;
    EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

RunOptions with_timeout(std::chrono::milliseconds t) {
    RunOptions o;
    o.timeout = t;  // a safety net so a broken runner fails the test instead of hanging it
    return o;
}

// ---- run_process ----

TEST(RunProcess, CapturesExitCodeAndStdout) {
    RunResult r = run_process({"sh", "-c", "echo hello; exit 3"}, with_timeout(10s));
    EXPECT_EQ(r.kind, ExitKind::kExited);
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_EQ(r.signal, 0);
    EXPECT_EQ(r.out, "hello\n");
    EXPECT_EQ(r.err, "");
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(r.error.empty());
    expect_no_zombies();
}

TEST(RunProcess, OkOnlyForExitZero) {
    EXPECT_TRUE(run_process({"true"}, with_timeout(10s)).ok());
    RunResult r = run_process({"false"}, with_timeout(10s));
    EXPECT_EQ(r.kind, ExitKind::kExited);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_FALSE(r.ok());
}

TEST(RunProcess, StderrIsSeparate) {
    RunResult r = run_process({"sh", "-c", "echo out; echo err >&2; echo out2; echo err2 >&2"},
                              with_timeout(10s));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "out\nout2\n");
    EXPECT_EQ(r.err, "err\nerr2\n");
}

TEST(RunProcess, ArgumentsAreNotShellExpanded) {
    RunResult r = run_process({"printf", "%s|", "$HOME", "a b", "*", ""}, with_timeout(10s));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "$HOME|a b|*||");
}

TEST(RunProcess, StdinRoundTripThroughCat) {
    RunOptions o = with_timeout(10s);
    o.stdin_data = std::string("line one\nbinary \0\x01\xff end", 23);
    RunResult r = run_process({"cat"}, o);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, *o.stdin_data);
}

TEST(RunProcess, LargeStdinAndStdoutAtOnceDoNotDeadlock) {
    // Far beyond the 64 KiB pipe buffers in both directions: needs simultaneous write and read.
    RunOptions o = with_timeout(30s);
    o.output_cap = 8 << 20;
    std::string data(4 << 20, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = static_cast<char>(i * 31 % 251);
    }
    o.stdin_data = data;
    RunResult r = run_process({"cat"}, o);
    ASSERT_EQ(r.kind, ExitKind::kExited) << r.error;
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_FALSE(r.out_truncated);
    EXPECT_TRUE(r.out == data);
}

TEST(RunProcess, EmptyStdinDataGivesImmediateEof) {
    RunOptions o = with_timeout(10s);
    o.stdin_data = "";
    RunResult r = run_process({"cat"}, o);
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "");
}

TEST(RunProcess, NoStdinDataMeansDevNull) {
    RunResult r = run_process({"cat"}, with_timeout(10s));
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.kind, ExitKind::kTimedOut);
}

TEST(RunProcess, ChildClosingStdinEarlyDoesNotKillUs) {
    // head exits after 10 bytes; our writes then hit EPIPE, and SIGPIPE must not end the test.
    RunOptions o = with_timeout(10s);
    o.stdin_data = std::string(8 << 20, 'x');
    RunResult r = run_process({"head", "-c", "10"}, o);
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, std::string(10, 'x'));

    // And no SIGPIPE is left pending for this thread to trip over later.
    sigset_t pending;
    sigemptyset(&pending);
    ASSERT_EQ(::sigpending(&pending), 0);
    EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
}

TEST(RunProcess, ChildGetsDefaultSigpipeEvenIfWeIgnoreIt) {
    struct sigaction ign {
    }, old{};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    ASSERT_EQ(::sigaction(SIGPIPE, &ign, &old), 0);
    // `yes` dies of SIGPIPE when head closes the pipe; with SIGPIPE ignored it would complain.
    RunResult r = run_process({"sh", "-c", "yes | head -c 3"}, with_timeout(10s));
    ::sigaction(SIGPIPE, &old, nullptr);
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "y\ny");
    EXPECT_EQ(r.err, "");
}

TEST(RunProcess, EnvSetIsVisibleAndOverrides) {
    ASSERT_EQ(::setenv("MLK_TEST_PARENT_ONLY", "from-parent", 1), 0);
    ASSERT_EQ(::setenv("MLK_TEST_OVERRIDE", "old", 1), 0);
    RunOptions o = with_timeout(10s);
    o.env_set = {{"MLK_TEST_NEW", "value with spaces"},
                 {"MLK_TEST_OVERRIDE", "first"},
                 {"MLK_TEST_OVERRIDE", "new"}};
    RunResult r = run_process(
        {"sh", "-c",
         "printf '%s|%s|%s|' \"$MLK_TEST_NEW\" \"$MLK_TEST_OVERRIDE\" \"$MLK_TEST_PARENT_ONLY\";"
         " env | grep -c '^MLK_TEST_OVERRIDE='"},
        o);
    ::unsetenv("MLK_TEST_PARENT_ONLY");
    ::unsetenv("MLK_TEST_OVERRIDE");
    ASSERT_TRUE(r.ok()) << r.error << r.err;
    EXPECT_EQ(r.out, "value with spaces|new|from-parent|1\n");
}

TEST(RunProcess, BadEnvNameFailsToStart) {
    RunOptions o;
    o.env_set = {{"BAD=NAME", "x"}};
    RunResult r = run_process({"true"}, o);
    EXPECT_EQ(r.kind, ExitKind::kFailedToStart);
    EXPECT_NE(r.error.find("BAD=NAME"), std::string::npos) << r.error;

    o.env_set = {{"", "x"}};
    EXPECT_EQ(run_process({"true"}, o).kind, ExitKind::kFailedToStart);
}

TEST(RunProcess, RunsInCwd) {
    TempDir dir;
    RunOptions o = with_timeout(10s);
    o.cwd = dir.path();
    RunResult r = run_process({"pwd", "-P"}, o);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, std::filesystem::canonical(dir.path()).string() + "\n");
}

TEST(RunProcess, RelativeProgramIsResolvedAgainstCwd) {
    TempDir dir;
    write_file(dir.path() / "tool.sh", "#!/bin/sh\necho from-tool\n", 0755);
    RunOptions o = with_timeout(10s);
    o.cwd = dir.path();
    RunResult r = run_process({"./tool.sh"}, o);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "from-tool\n");
}

TEST(RunProcess, MissingCwdFailsToStartNamingIt) {
    RunOptions o;
    o.cwd = "/nonexistent/mlk-dir";
    RunResult r = run_process({"true"}, o);
    EXPECT_EQ(r.kind, ExitKind::kFailedToStart);
    EXPECT_NE(r.error.find("/nonexistent/mlk-dir"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("No such file"), std::string::npos) << r.error;
    expect_no_zombies();
}

TEST(RunProcess, OutputCapTruncatesFiveMegabytesWithoutDeadlock) {
    RunOptions o = with_timeout(30s);
    o.output_cap = 1 << 20;
    RunResult r = run_process(
        {"sh", "-c", "head -c 5242880 /dev/zero; head -c 5242880 /dev/zero >&2; echo done >&2"}, o);
    ASSERT_EQ(r.kind, ExitKind::kExited) << r.error;
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out.size(), o.output_cap);
    EXPECT_EQ(r.err.size(), o.output_cap);
    EXPECT_TRUE(r.out_truncated);
    EXPECT_TRUE(r.err_truncated);
    EXPECT_EQ(r.out, std::string(o.output_cap, '\0'));
    EXPECT_LT(r.elapsed, 20s);
}

TEST(RunProcess, OutputCapBoundaryIsExact) {
    RunOptions o = with_timeout(10s);
    o.output_cap = 5;
    RunResult exact = run_process({"printf", "12345"}, o);
    EXPECT_EQ(exact.out, "12345");
    EXPECT_FALSE(exact.out_truncated);

    RunResult over = run_process({"printf", "123456"}, o);
    EXPECT_EQ(over.out, "12345");
    EXPECT_TRUE(over.out_truncated);

    o.output_cap = 0;
    RunResult none = run_process({"printf", "x"}, o);
    EXPECT_EQ(none.out, "");
    EXPECT_TRUE(none.out_truncated);
    EXPECT_TRUE(none.ok());
}

TEST(RunProcess, NonexistentProgramFailsToStart) {
    RunResult r = run_process({"mlk-no-such-program-xyz", "arg"});
    EXPECT_EQ(r.kind, ExitKind::kFailedToStart);
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.error.find("mlk-no-such-program-xyz"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("not found"), std::string::npos) << r.error;
}

TEST(RunProcess, NonexistentAbsolutePathReportsExecErrno) {
    // This one is only found out by execve in the child and comes back through the pipe.
    RunResult r = run_process({"/nonexistent/bin/mlk-tool"});
    EXPECT_EQ(r.kind, ExitKind::kFailedToStart);
    EXPECT_NE(r.error.find("/nonexistent/bin/mlk-tool"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("No such file or directory"), std::string::npos) << r.error;
    EXPECT_EQ(r.exit_code, -1);
    expect_no_zombies();
}

TEST(RunProcess, NonExecutableFileFailsToStart) {
    TempDir dir;
    write_file(dir.path() / "data.txt", "not a program\n", 0644);
    RunResult r = run_process({(dir.path() / "data.txt").string()});
    EXPECT_EQ(r.kind, ExitKind::kFailedToStart);
    EXPECT_NE(r.error.find("Permission denied"), std::string::npos) << r.error;

    // Found in PATH but not executable: same answer, naming the file found.
    RunOptions o;
    o.env_set = {{"PATH", dir.path().string()}};
    RunResult via_path = run_process({"data.txt"}, o);
    EXPECT_EQ(via_path.kind, ExitKind::kFailedToStart);
    EXPECT_NE(via_path.error.find("Permission denied"), std::string::npos) << via_path.error;
    EXPECT_NE(via_path.error.find((dir.path() / "data.txt").string()), std::string::npos);

    // No shebang: execve says ENOEXEC, and we do not fall back to a shell as execvp would.
    write_file(dir.path() / "no-shebang", "echo should not run\n", 0755);
    RunResult script = run_process({(dir.path() / "no-shebang").string()});
    EXPECT_EQ(script.kind, ExitKind::kFailedToStart);
    EXPECT_NE(script.error.find("Exec format error"), std::string::npos) << script.error;
    EXPECT_EQ(script.out, "");

    RunResult directory = run_process({dir.path().string()});
    EXPECT_EQ(directory.kind, ExitKind::kFailedToStart);
}

TEST(RunProcess, PathFromEnvSetIsUsedForLookup) {
    TempDir dir;
    write_file(dir.path() / "mlk-fake-tool", "#!/bin/sh\necho fake \"$1\"\n", 0755);
    RunOptions o = with_timeout(10s);
    o.env_set = {{"PATH", dir.path().string() + ":/usr/bin:/bin"}};
    RunResult r = run_process({"mlk-fake-tool", "ran"}, o);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "fake ran\n");
}

TEST(RunProcess, BadArgvFailsToStart) {
    EXPECT_EQ(run_process({}).kind, ExitKind::kFailedToStart);
    RunResult nul = run_process({"echo", std::string("a\0b", 3)});
    EXPECT_EQ(nul.kind, ExitKind::kFailedToStart);
    EXPECT_NE(nul.error.find("NUL"), std::string::npos) << nul.error;
}

TEST(RunProcess, KilledBySignalIsSignaled) {
    RunResult r =
        run_process({"sh", "-c", "echo before; kill -TERM $$; echo after"}, with_timeout(10s));
    EXPECT_EQ(r.kind, ExitKind::kSignaled);
    EXPECT_EQ(r.signal, SIGTERM);
    EXPECT_EQ(r.out, "before\n");
    EXPECT_FALSE(r.ok());

    RunResult k = run_process({"sh", "-c", "kill -KILL $$"}, with_timeout(10s));
    EXPECT_EQ(k.kind, ExitKind::kSignaled);
    EXPECT_EQ(k.signal, SIGKILL);
}

TEST(RunProcess, TimeoutKillsChildAndGrandchild) {
    RunOptions o;
    o.timeout = 300ms;
    o.kill_grace = 2000ms;
    RunResult r = run_process({"sh", "-c", "sleep 30 & echo $!; wait"}, o);
    EXPECT_EQ(r.kind, ExitKind::kTimedOut);
    EXPECT_EQ(r.signal, SIGTERM);
    EXPECT_FALSE(r.ok());
    EXPECT_GE(r.elapsed, 300ms);
    EXPECT_LT(r.elapsed, 2000ms);  // both die on SIGTERM; no need to sit out the grace
    ASSERT_FALSE(r.out.empty());
    pid_t grandchild = first_line_pid(r.out);
    ASSERT_GT(grandchild, 1);
    EXPECT_TRUE(wait_gone(grandchild, 3s)) << "grandchild " << grandchild << " survived";
    expect_no_zombies();
}

TEST(RunProcess, TimeoutUsesSigkillAfterGraceWhenTermIsIgnored) {
    RunOptions o;
    o.timeout = 200ms;
    o.kill_grace = 300ms;
    RunResult r = run_process({"sh", "-c", "trap '' TERM; sleep 30 & echo $!; wait"}, o);
    EXPECT_EQ(r.kind, ExitKind::kTimedOut);
    EXPECT_EQ(r.signal, SIGKILL);
    EXPECT_GE(r.elapsed, 500ms);
    EXPECT_LT(r.elapsed, 5s);
    ASSERT_FALSE(r.out.empty());
    EXPECT_TRUE(wait_gone(first_line_pid(r.out), 3s));
    expect_no_zombies();
}

TEST(RunProcess, TimeoutKillsGrandchildThatIgnoresTermAfterLeaderDies) {
    // The leader dies on SIGTERM; the grandchild ignores it and keeps stdout open.
    RunOptions o;
    o.timeout = 200ms;
    o.kill_grace = 300ms;
    RunResult r = run_process({"sh", "-c", "(trap '' TERM; exec sleep 30) & echo $!; wait"}, o);
    EXPECT_EQ(r.kind, ExitKind::kTimedOut);
    EXPECT_EQ(r.signal, SIGTERM);
    EXPECT_LT(r.elapsed, 5s);
    ASSERT_FALSE(r.out.empty());
    EXPECT_TRUE(wait_gone(first_line_pid(r.out), 3s));
}

TEST(RunProcess, BackgroundGrandchildHoldingOutputDoesNotBlockUs) {
    // The command finished; its background child keeps stdout open. We stop reading after a
    // bounded drain instead of waiting 30 s, and report the command's own exit.
    RunResult r = run_process({"sh", "-c", "sleep 30 & echo $!; exit 4"});
    EXPECT_EQ(r.kind, ExitKind::kExited);
    EXPECT_EQ(r.exit_code, 4);
    EXPECT_LT(r.elapsed, 5s);
    ASSERT_FALSE(r.out.empty());
    pid_t grandchild = first_line_pid(r.out);
    ::kill(grandchild, SIGKILL);  // not ours to reap; just do not leave it running
}

TEST(RunProcess, FastCommandUnderTimeoutIsNotTimedOut) {
    RunResult r = run_process({"true"}, with_timeout(5s));
    EXPECT_EQ(r.kind, ExitKind::kExited);
    EXPECT_LT(r.elapsed, 5s);
}

TEST(RunProcess, ConcurrentCallsFromThreads) {
    constexpr int kThreads = 8;
    std::vector<RunResult> results(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&results, i] {
            RunOptions o = with_timeout(20s);
            o.stdin_data = std::string(200000, static_cast<char>('a' + i));
            results[static_cast<std::size_t>(i)] = run_process({"cat"}, o);
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    for (int i = 0; i < kThreads; ++i) {
        const RunResult& r = results[static_cast<std::size_t>(i)];
        EXPECT_TRUE(r.ok()) << r.error;
        EXPECT_EQ(r.out, std::string(200000, static_cast<char>('a' + i)));
    }
    expect_no_zombies();
}

TEST(RunProcess, MergedStderrKeepsWriteOrder) {
    RunOptions o = with_timeout(10s);
    o.stderr_mode = RunOptions::Stderr::kMergeIntoOut;
    RunResult r = run_process({"sh", "-c", "echo a; echo b >&2; echo c; echo d >&2"}, o);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "a\nb\nc\nd\n");
    EXPECT_EQ(r.err, "");
    EXPECT_FALSE(r.err_truncated);
}

// ---- keeping the tail of the output ----

TEST(RunProcess, TailKeepsTheLastBytes) {
    RunOptions o = with_timeout(10s);
    o.keep = RunOptions::Keep::kTail;
    o.output_cap = 5;
    RunResult r = run_process({"printf", "123456789"}, o);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "56789");
    EXPECT_TRUE(r.out_truncated);

    RunResult exact = run_process({"printf", "12345"}, o);
    EXPECT_EQ(exact.out, "12345");
    EXPECT_FALSE(exact.out_truncated);

    RunResult shorter = run_process({"printf", "12"}, o);
    EXPECT_EQ(shorter.out, "12");
    EXPECT_FALSE(shorter.out_truncated);

    o.output_cap = 0;
    RunResult none = run_process({"printf", "x"}, o);
    EXPECT_EQ(none.out, "");
    EXPECT_TRUE(none.out_truncated);
}

TEST(RunProcess, TailOfChattyOutputAcrossManyReads) {
    // ~1.2 MB in many writes: the kept tail must be exactly the last bytes, in order, for both
    // a cap below one read chunk and one above it.
    for (std::size_t cap : {std::size_t{100}, std::size_t{200000}}) {
        RunOptions o = with_timeout(30s);
        o.keep = RunOptions::Keep::kTail;
        o.output_cap = cap;
        RunResult r = run_process({"seq", "1", "200000"}, o);
        ASSERT_TRUE(r.ok()) << r.error;
        std::string all;
        for (int i = 1; i <= 200000; ++i) {
            all += std::to_string(i) + "\n";
        }
        ASSERT_EQ(r.out.size(), cap);
        EXPECT_TRUE(r.out == all.substr(all.size() - cap)) << "cap " << cap;
        EXPECT_TRUE(r.out_truncated);
    }
}

TEST(RunProcess, TailOfBothStreamsSeparately) {
    RunOptions o = with_timeout(30s);
    o.keep = RunOptions::Keep::kTail;
    o.output_cap = 4;
    RunResult r = run_process(
        {"sh", "-c",
         "head -c 3000000 /dev/zero; echo OUT; head -c 100000 /dev/zero >&2; echo ERR >&2"},
        o);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "OUT\n");
    EXPECT_EQ(r.err, "ERR\n");
    EXPECT_TRUE(r.out_truncated);
    EXPECT_TRUE(r.err_truncated);
}

// ---- priority, limits, cgroup ----

TEST(RunProcess, NiceIsApplied) {
    RunOptions o = with_timeout(10s);
    o.nice = 7;
    RunResult r = run_process({"nice"}, o);  // coreutils `nice` alone prints the niceness
    ASSERT_TRUE(r.ok()) << r.error << r.err;
    EXPECT_EQ(r.out, "7\n");

    RunResult inherit = run_process({"nice"}, with_timeout(10s));
    ASSERT_TRUE(inherit.ok()) << inherit.error;
    errno = 0;
    const int ours = ::getpriority(PRIO_PROCESS, 0);
    EXPECT_EQ(inherit.out, std::to_string(ours) + "\n");
}

TEST(RunProcess, BadOrForbiddenNiceFailsToStart) {
    RunOptions o = with_timeout(10s);
    o.nice = 20;
    RunResult r = run_process({"true"}, o);
    EXPECT_EQ(r.kind, ExitKind::kFailedToStart);
    EXPECT_NE(r.error.find("-20..19"), std::string::npos) << r.error;
    o.nice = -21;
    EXPECT_EQ(run_process({"true"}, o).kind, ExitKind::kFailedToStart);

    if (::geteuid() != 0) {
        // Raising priority needs CAP_SYS_NICE: reported by the child through the error pipe.
        o.nice = -5;
        RunResult denied = run_process({"true"}, o);
        EXPECT_EQ(denied.kind, ExitKind::kFailedToStart);
        EXPECT_NE(denied.error.find("cannot set nice -5"), std::string::npos) << denied.error;
        expect_no_zombies();
    }
}

TEST(RunProcess, IoPriorityIsApplied) {
    RunOptions o = with_timeout(10s);
    o.io_class = IoPriorityClass::kBestEffort;
    o.io_level = 7;
    RunResult r = run_process({"sh", "-c", "ionice -p $$"}, o);
    if (r.kind == ExitKind::kFailedToStart && r.error.find("ionice") != std::string::npos) {
        GTEST_SKIP() << "ionice (util-linux) is not installed";
    }
    ASSERT_TRUE(r.ok()) << r.error << r.err;
    EXPECT_EQ(r.out, "best-effort: prio 7\n");

    o.io_class = IoPriorityClass::kIdle;
    RunResult idle = run_process({"sh", "-c", "ionice -p $$"}, o);
    ASSERT_TRUE(idle.ok()) << idle.error << idle.err;
    EXPECT_EQ(idle.out, "idle\n");

    o.io_class = IoPriorityClass::kBestEffort;
    o.io_level = 8;
    RunResult bad = run_process({"true"}, o);
    EXPECT_EQ(bad.kind, ExitKind::kFailedToStart);
    EXPECT_NE(bad.error.find("0..7"), std::string::npos) << bad.error;
}

TEST(RunProcess, AddressSpaceLimitIsApplied) {
    RunOptions o = with_timeout(10s);
    o.rlimit_as = 64ULL << 20;
    RunResult r = run_process({"sh", "-c", "ulimit -v; ulimit -H -v"}, o);
    ASSERT_TRUE(r.ok()) << r.error << r.err;
    EXPECT_EQ(r.out, "65536\n65536\n");  // KiB, soft and hard

    // Above the hard limit: lowered to it instead of failing (only root may raise it).
    rlimit hard{};
    ASSERT_EQ(::getrlimit(RLIMIT_AS, &hard), 0);
    if (hard.rlim_max == RLIM_INFINITY) {
        o.rlimit_as = ~std::uint64_t{0};
        RunResult unlimited = run_process({"sh", "-c", "ulimit -v"}, o);
        ASSERT_TRUE(unlimited.ok()) << unlimited.error;
        EXPECT_EQ(unlimited.out, "unlimited\n");
    }
}

TEST(RunProcess, JoinsTheCgroupBeforeExec) {
    // A plain directory stands in for a cgroup: the child's write of its pid is what we check.
    TempDir dir;
    write_file(dir.path() / "cgroup.procs", "", 0644);
    RunOptions o = with_timeout(10s);
    o.cgroup_dir = dir.path();
    RunResult r = run_process({"sh", "-c", "echo $$"}, o);
    ASSERT_TRUE(r.ok()) << r.error << r.err;
    EXPECT_EQ(read_file(dir.path() / "cgroup.procs"), std::to_string(first_line_pid(r.out)));
}

TEST(RunProcess, UnusableCgroupFailsToStart) {
    RunOptions o = with_timeout(10s);
    o.cgroup_dir = "/nonexistent/mlk-cgroup";
    RunResult r = run_process({"true"}, o);
    EXPECT_EQ(r.kind, ExitKind::kFailedToStart);
    EXPECT_NE(r.error.find("cgroup /nonexistent/mlk-cgroup"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("No such file"), std::string::npos) << r.error;
    expect_no_zombies();

    // A directory that is not a cgroup (no cgroup.procs) is refused rather than created.
    TempDir dir;
    o.cgroup_dir = dir.path();
    RunResult plain = run_process({"true"}, o);
    EXPECT_EQ(plain.kind, ExitKind::kFailedToStart);
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "cgroup.procs"));

    // Not writable (a directory in its place: EISDIR even for root).
    std::filesystem::create_directory(dir.path() / "cgroup.procs");
    RunResult unwritable = run_process({"true"}, o);
    EXPECT_EQ(unwritable.kind, ExitKind::kFailedToStart);
    EXPECT_NE(unwritable.error.find("Is a directory"), std::string::npos) << unwritable.error;
    expect_no_zombies();
}

// ---- cancellation ----

TEST(RunProcess, CancelKillsChildAndGrandchildPromptly) {
    std::atomic<bool> cancel{false};
    RunOptions o = with_timeout(20s);
    o.cancel = &cancel;
    std::thread canceller([&] {
        std::this_thread::sleep_for(300ms);
        cancel = true;
    });
    RunResult r = run_process({"sh", "-c", "sleep 30 & echo $!; wait"}, o);
    canceller.join();
    EXPECT_EQ(r.kind, ExitKind::kCancelled);
    EXPECT_EQ(r.signal, SIGTERM);
    EXPECT_FALSE(r.ok());
    EXPECT_GE(r.elapsed, 290ms);
    EXPECT_LT(r.elapsed, 2s);
    ASSERT_FALSE(r.out.empty());
    EXPECT_TRUE(wait_gone(first_line_pid(r.out), 3s));
    expect_no_zombies();
}

TEST(RunProcess, CancelEscalatesToSigkillAfterGrace) {
    std::atomic<bool> cancel{false};
    RunOptions o = with_timeout(20s);
    o.cancel = &cancel;
    o.kill_grace = 300ms;
    std::thread canceller([&] {
        std::this_thread::sleep_for(200ms);
        cancel = true;
    });
    RunResult r = run_process({"sh", "-c", "trap '' TERM; sleep 30 & echo $!; wait"}, o);
    canceller.join();
    EXPECT_EQ(r.kind, ExitKind::kCancelled);
    EXPECT_EQ(r.signal, SIGKILL);
    EXPECT_GE(r.elapsed, 490ms);
    EXPECT_LT(r.elapsed, 5s);
    ASSERT_FALSE(r.out.empty());
    EXPECT_TRUE(wait_gone(first_line_pid(r.out), 3s));
    expect_no_zombies();
}

TEST(RunProcess, CancelledBeforeStartRunsNothing) {
    TempDir dir;
    const auto marker = dir.path() / "ran";
    std::atomic<bool> cancel{true};
    RunOptions o = with_timeout(10s);
    o.cancel = &cancel;
    RunResult r = run_process({"touch", marker.string()}, o);
    EXPECT_EQ(r.kind, ExitKind::kCancelled);
    EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(RunProcess, UnsetCancelFlagChangesNothing) {
    std::atomic<bool> cancel{false};
    RunOptions o = with_timeout(10s);
    o.cancel = &cancel;
    RunResult r = run_process({"sh", "-c", "sleep 0.2; echo done"}, o);
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.out, "done\n");
}

TEST(RunProcess, TimeoutStillWinsWithACancelFlag) {
    std::atomic<bool> cancel{false};
    RunOptions o;
    o.timeout = 200ms;
    o.cancel = &cancel;
    RunResult r = run_process({"sleep", "30"}, o);
    EXPECT_EQ(r.kind, ExitKind::kTimedOut);
    EXPECT_LT(r.elapsed, 2s);
}

// ---- Subprocess ----

TEST(Subprocess, DestructorKillsItsGroup) {
    TempDir dir;
    const auto pid_file = dir.path() / "grandchild.pid";
    pid_t leader = -1;
    pid_t grandchild = -1;
    {
        Subprocess p = Subprocess::start(
            {"sh", "-c", "sleep 30 & echo $! > \"$1\"; wait", "sh", pid_file.string()});
        leader = p.pid();
        ASSERT_GT(leader, 0);
        ASSERT_TRUE(wait_for_file(pid_file, 5s));
        grandchild = first_line_pid(read_file(pid_file));
        EXPECT_FALSE(p.try_wait().has_value());
        EXPECT_TRUE(p.running());
    }
    EXPECT_TRUE(wait_gone(leader, 3s));
    EXPECT_TRUE(wait_gone(grandchild, 3s)) << "grandchild " << grandchild << " survived";
    expect_no_zombies();
}

TEST(Subprocess, DestructorKillsGrandchildrenEvenAfterLeaderExited) {
    TempDir dir;
    const auto pid_file = dir.path() / "grandchild.pid";
    pid_t grandchild = -1;
    {
        Subprocess p = Subprocess::start(
            {"sh", "-c", "sleep 30 & echo $! > \"$1\"; exit 0", "sh", pid_file.string()});
        auto status = p.wait_for(5s);
        ASSERT_TRUE(status.has_value());
        EXPECT_TRUE(WIFEXITED(*status));
        ASSERT_TRUE(wait_for_file(pid_file, 5s));
        grandchild = first_line_pid(read_file(pid_file));
        EXPECT_FALSE(process_gone(grandchild));
    }
    EXPECT_TRUE(wait_gone(grandchild, 3s));
    expect_no_zombies();
}

TEST(Subprocess, WaitForIsBounded) {
    RunOptions o;
    o.kill_grace = 500ms;
    Subprocess p = Subprocess::start({"sleep", "30"}, o);
    auto t0 = Clock::now();
    EXPECT_FALSE(p.wait_for(200ms).has_value());
    auto waited = Clock::now() - t0;
    EXPECT_GE(waited, 190ms);
    EXPECT_LT(waited, 2s);
    EXPECT_FALSE(p.wait_for(0ms).has_value());
}

TEST(Subprocess, WaitForReturnsExitStatus) {
    Subprocess p = Subprocess::start({"sh", "-c", "exit 7"});
    auto status = p.wait_for(5s);
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(WIFEXITED(*status));
    EXPECT_EQ(WEXITSTATUS(*status), 7);
    EXPECT_FALSE(p.running());
    // Stable on repeated calls.
    EXPECT_EQ(p.try_wait(), status);
    p.terminate(100ms);
    EXPECT_EQ(p.try_wait(), status);
    expect_no_zombies();
}

TEST(Subprocess, TerminateEscalatesToSigkill) {
    TempDir dir;
    const auto ready = dir.path() / "ready";
    Subprocess p =
        Subprocess::start({"sh", "-c", "trap '' TERM; echo up > \"$1\"; while :; do sleep 1; done",
                           "sh", ready.string()});
    ASSERT_TRUE(wait_for_file(ready, 5s));  // the trap is in place
    auto t0 = Clock::now();
    p.terminate(300ms);
    auto took = Clock::now() - t0;
    EXPECT_GE(took, 290ms);
    EXPECT_LT(took, 5s);
    auto status = p.try_wait();
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(WIFSIGNALED(*status));
    EXPECT_EQ(WTERMSIG(*status), SIGKILL);
    expect_no_zombies();
}

TEST(Subprocess, TerminateReturnsQuicklyWhenChildObeysTerm) {
    Subprocess p = Subprocess::start({"sleep", "30"});
    auto t0 = Clock::now();
    p.terminate(5s);
    EXPECT_LT(Clock::now() - t0, 2s);
    auto status = p.try_wait();
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(WIFSIGNALED(*status));
    EXPECT_EQ(WTERMSIG(*status), SIGTERM);
}

TEST(Subprocess, StartFailuresThrowSystemError) {
    try {
        Subprocess::start({"mlk-no-such-program-xyz"});
        ADD_FAILURE() << "expected a throw";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_NE(std::string(e.what()).find("mlk-no-such-program-xyz"), std::string::npos);
    }
    try {
        Subprocess::start({"/nonexistent/bin/mlk-tool"});  // exec failure via the CLOEXEC pipe
        ADD_FAILURE() << "expected a throw";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_NE(std::string(e.what()).find("/nonexistent/bin/mlk-tool"), std::string::npos);
    }
    RunOptions bad_cwd;
    bad_cwd.cwd = "/nonexistent/mlk-dir";
    EXPECT_THROW(Subprocess::start({"true"}, bad_cwd), std::system_error);
    EXPECT_THROW(Subprocess::start({}), std::system_error);
    EXPECT_THROW(Subprocess::start({"true"}, {}, Subprocess::Output::kToFile),
                 std::invalid_argument);
    EXPECT_THROW(
        Subprocess::start({"true"}, {}, Subprocess::Output::kToFile, "/nonexistent/dir/log.txt"),
        std::system_error);
    expect_no_zombies();
}

TEST(Subprocess, OutputToFileWithEnvCwdAndStdin) {
    TempDir dir;
    const auto log = dir.path() / "child.log";
    RunOptions o;
    o.cwd = dir.path();
    o.env_set = {{"MLK_SUB_VAR", "sub-value"}};
    o.stdin_data = "from stdin\n";
    Subprocess p =
        Subprocess::start({"sh", "-c", "pwd -P; echo \"$MLK_SUB_VAR\"; cat; echo to-stderr >&2"}, o,
                          Subprocess::Output::kToFile, log);
    auto status = p.wait_for(5s);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
    EXPECT_EQ(read_file(log), std::filesystem::canonical(dir.path()).string() +
                                  "\nsub-value\nfrom stdin\nto-stderr\n");
}

TEST(Subprocess, PriorityLimitsAndCgroupApply) {
    TempDir dir;
    const auto log = dir.path() / "child.log";
    const auto cg = dir.path() / "cg";
    std::filesystem::create_directory(cg);
    write_file(cg / "cgroup.procs", "", 0644);
    RunOptions o;
    o.nice = 3;
    o.rlimit_as = 256ULL << 20;
    o.cgroup_dir = cg;
    {
        Subprocess p =
            Subprocess::start({"sh", "-c", "nice; ulimit -v"}, o, Subprocess::Output::kToFile, log);
        auto status = p.wait_for(5s);
        ASSERT_TRUE(status.has_value());
        EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
        EXPECT_EQ(read_file(log), "3\n262144\n");
        EXPECT_EQ(read_file(cg / "cgroup.procs"), std::to_string(p.pid()));
    }

    o.cgroup_dir = "/nonexistent/mlk-cgroup";
    EXPECT_THROW(Subprocess::start({"true"}, o), std::system_error);
    expect_no_zombies();
}

TEST(Subprocess, OversizedStdinIsRejected) {
    RunOptions o;
    o.stdin_data = std::string(64 << 20, 'x');  // beyond any pipe capacity
    EXPECT_THROW(Subprocess::start({"cat"}, o), std::invalid_argument);
    expect_no_zombies();
}

TEST(Subprocess, MoveTransfersOwnership) {
    Subprocess a = Subprocess::start({"sleep", "30"});
    const pid_t pid = a.pid();
    Subprocess b = std::move(a);
    EXPECT_EQ(a.pid(), -1);  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_FALSE(a.try_wait().has_value());
    a.terminate(10ms);  // no-op on a moved-from handle
    EXPECT_EQ(b.pid(), pid);
    EXPECT_FALSE(process_gone(pid));

    // Assigning over a live handle ends the child it held.
    Subprocess c = Subprocess::start({"sleep", "30"});
    const pid_t c_pid = c.pid();
    c = std::move(b);
    EXPECT_TRUE(wait_gone(c_pid, 3s));
    EXPECT_EQ(c.pid(), pid);
    EXPECT_FALSE(process_gone(pid));
}

}  // namespace
}  // namespace mlk::util
