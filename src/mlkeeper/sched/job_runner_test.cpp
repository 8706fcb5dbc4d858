// Tests for run_job: small shell scripts as jobs, a fake sleep for retry delays, real cgroups
// only where a writable cgroup v2 directory exists. Every wait is bounded.
#include "mlkeeper/sched/job_runner.hpp"
#include "support/process_state.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
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

namespace mlk::sched {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

using mlk::testing::TempDir;

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

bool any_contains(const std::vector<std::string>& lines, const std::string& needle) {
    for (const auto& l : lines) {
        if (contains(l, needle)) {
            return true;
        }
    }
    return false;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string all;
    for (const auto& l : lines) {
        all += l + "\n";
    }
    return all;
}

using mlk::testing::process_gone;
using mlk::testing::wait_gone;

JobSpec command_job(const std::string& name) {
    JobSpec job;
    job.name = name;
    job.kind = TaskKind::kCommand;
    job.retries = 0;
    job.retry_delay = 30s;
    return job;
}

std::vector<std::string> sh(const std::string& script) {
    return {"sh", "-c", script};
}

// Records the delays asked for instead of sleeping.
struct FakeSleep {
    std::vector<milliseconds> delays;
    bool result = true;

    std::function<bool(milliseconds)> fn() {
        return [this](milliseconds d) {
            delays.push_back(d);
            return result;
        };
    }
};

// A script that fails until it has run `succeed_on` times, counting in `counter`.
std::string counting_script(const std::filesystem::path& counter, int succeed_on) {
    return "n=$(cat '" + counter.string() + "' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '" +
           counter.string() + "'; echo \"try $n\"; [ $n -ge " + std::to_string(succeed_on) +
           " ] || exit 3";
}

// ---- outcomes and retries ----

TEST(JobRunner, SuccessOnFirstAttempt) {
    JobSpec job = command_job("ok");
    job.retries = 3;
    FakeSleep sleep;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    const auto before = std::chrono::system_clock::now();
    JobRun run = run_job(job, sh("echo hello; echo oops >&2; echo bye"), o);
    EXPECT_EQ(run.outcome, JobOutcome::kSuccess);
    EXPECT_TRUE(run.ok());
    EXPECT_EQ(run.attempts, 1);
    EXPECT_EQ(run.exit_kind, util::ExitKind::kExited);
    EXPECT_EQ(run.exit_code, 0);
    EXPECT_FALSE(run.timed_out);
    EXPECT_FALSE(run.cancelled);
    EXPECT_EQ(run.output_tail, "hello\noops\nbye\n");  // both streams, in write order
    EXPECT_FALSE(run.output_truncated);
    EXPECT_TRUE(run.warnings.empty()) << joined(run.warnings);
    EXPECT_TRUE(sleep.delays.empty());
    EXPECT_LE(before, run.start);
    EXPECT_LE(run.start, run.end);
    EXPECT_STREQ(to_string(run.outcome), "success");
}

TEST(JobRunner, FailureThenSuccessOnRetry) {
    TempDir dir;
    JobSpec job = command_job("flaky");
    job.retries = 3;
    job.retry_delay = 30s;
    FakeSleep sleep;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    JobRun run = run_job(job, sh(counting_script(dir.path() / "count", 2)), o);
    EXPECT_EQ(run.outcome, JobOutcome::kSuccess);
    EXPECT_EQ(run.attempts, 2);
    EXPECT_EQ(read_file(dir.path() / "count"), "2\n");
    ASSERT_EQ(sleep.delays.size(), 1u);
    EXPECT_EQ(sleep.delays[0], 30s);
    EXPECT_EQ(run.output_tail, "try 1\n--- mlkeeper: attempt 2 of 4 ---\ntry 2\n");
}

TEST(JobRunner, AllAttemptsFailWithDoublingDelays) {
    TempDir dir;
    JobSpec job = command_job("broken");
    job.retries = 3;
    job.retry_delay = 10s;
    FakeSleep sleep;
    std::vector<AttemptReport> reports;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    o.on_attempt = [&](const AttemptReport& r) { reports.push_back(r); };
    JobRun run = run_job(job, sh(counting_script(dir.path() / "count", 100)), o);
    EXPECT_EQ(run.outcome, JobOutcome::kFailed);
    EXPECT_FALSE(run.ok());
    EXPECT_EQ(run.attempts, 4);
    EXPECT_EQ(run.exit_kind, util::ExitKind::kExited);
    EXPECT_EQ(run.exit_code, 3);
    EXPECT_EQ(read_file(dir.path() / "count"), "4\n");
    EXPECT_EQ(sleep.delays, (std::vector<milliseconds>{10s, 20s, 40s}));
    ASSERT_EQ(reports.size(), 4u);
    for (int i = 0; i < 4; ++i) {
        const AttemptReport& r = reports[static_cast<std::size_t>(i)];
        EXPECT_EQ(r.attempt, i + 1);
        EXPECT_EQ(r.max_attempts, 4);
        EXPECT_EQ(r.outcome, JobOutcome::kFailed);
        EXPECT_EQ(r.exit_code, 3);
    }
    EXPECT_EQ(reports[0].retry_in, milliseconds(10s));
    EXPECT_EQ(reports[2].retry_in, milliseconds(40s));
    EXPECT_FALSE(reports[3].retry_in.has_value());
    EXPECT_TRUE(contains(run.output_tail, "try 4\n"));
}

TEST(JobRunner, SignalIsAFailureAndIsRetried) {
    JobSpec job = command_job("crash");
    job.retries = 1;
    FakeSleep sleep;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    JobRun run = run_job(job, sh("kill -SEGV $$"), o);
    EXPECT_EQ(run.outcome, JobOutcome::kFailed);
    EXPECT_EQ(run.exit_kind, util::ExitKind::kSignaled);
    EXPECT_EQ(run.signal, SIGSEGV);
    EXPECT_EQ(run.attempts, 2);
}

TEST(JobRunner, RetryDelayDoublesUpToTheCap) {
    JobSpec job = command_job("x");
    job.retry_delay = 30s;
    EXPECT_EQ(retry_delay_before(job, 2, 1h), 30s);
    EXPECT_EQ(retry_delay_before(job, 3, 1h), 60s);
    EXPECT_EQ(retry_delay_before(job, 4, 1h), 120s);
    EXPECT_EQ(retry_delay_before(job, 8, 1h), 1920s);
    EXPECT_EQ(retry_delay_before(job, 9, 1h), 1h);  // 3840 s, capped
    EXPECT_EQ(retry_delay_before(job, 1000000, 1h), 1h);
    EXPECT_EQ(retry_delay_before(job, 1000, milliseconds::max()), milliseconds::max());
    job.retry_delay = 0s;
    EXPECT_EQ(retry_delay_before(job, 5, 1h), 0ms);
    job.retry_delay = -5s;
    EXPECT_EQ(retry_delay_before(job, 2, 1h), 0ms);
}

TEST(JobRunner, ZeroRetryDelayRetriesWithoutSleeping) {
    TempDir dir;
    JobSpec job = command_job("fast-retry");
    job.retries = 2;
    job.retry_delay = 0s;
    FakeSleep sleep;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    JobRun run = run_job(job, sh(counting_script(dir.path() / "count", 3)), o);
    EXPECT_EQ(run.outcome, JobOutcome::kSuccess);
    EXPECT_EQ(run.attempts, 3);
    EXPECT_TRUE(sleep.delays.empty());
}

TEST(JobRunner, MissingProgramIsNotRetried) {
    JobSpec job = command_job("missing");
    job.retries = 5;
    FakeSleep sleep;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    JobRun run = run_job(job, {"mlk-no-such-program-xyz", "--flag"}, o);
    EXPECT_EQ(run.outcome, JobOutcome::kFailedToStart);
    EXPECT_EQ(run.exit_kind, util::ExitKind::kFailedToStart);
    EXPECT_EQ(run.attempts, 1);
    EXPECT_TRUE(sleep.delays.empty());
    EXPECT_TRUE(contains(run.error, "mlk-no-such-program-xyz")) << run.error;
    EXPECT_STREQ(to_string(run.outcome), "failed-to-start");

    JobRun empty = run_job(job, {}, o);
    EXPECT_EQ(empty.outcome, JobOutcome::kFailedToStart);
    EXPECT_EQ(empty.attempts, 1);
}

TEST(JobRunner, ClockSeamStampsStartAndEnd) {
    using SysClock = std::chrono::system_clock;
    std::vector<SysClock::time_point> ticks{SysClock::time_point(1000s),
                                            SysClock::time_point(1060s)};
    std::size_t next = 0;
    RunnerOptions o;
    o.now = [&] { return ticks.at(next++); };
    JobRun run = run_job(command_job("clock"), {"true"}, o);
    EXPECT_EQ(run.start, ticks[0]);
    EXPECT_EQ(run.end, ticks[1]);
}

// ---- timeout and cancel ----

TEST(JobRunner, TimeoutKillsTheGroupAndIsRetried) {
    JobSpec job = command_job("hang");
    job.timeout = 1s;
    job.retries = 1;
    FakeSleep sleep;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    o.kill_grace = 500ms;
    const auto t0 = Clock::now();
    JobRun run = run_job(job, sh("sleep 30 & echo $!; wait"), o);
    const auto took = Clock::now() - t0;
    EXPECT_EQ(run.outcome, JobOutcome::kTimedOut);
    EXPECT_TRUE(run.timed_out);
    EXPECT_FALSE(run.cancelled);
    EXPECT_EQ(run.exit_kind, util::ExitKind::kTimedOut);
    EXPECT_EQ(run.attempts, 2);  // Restart=on-failure also restarts after a timeout
    EXPECT_EQ(sleep.delays.size(), 1u);
    EXPECT_GE(took, 2s);
    EXPECT_LT(took, 6s);
    // Both attempts' grandchildren were killed with their group.
    std::istringstream lines(run.output_tail);
    std::string line;
    int checked = 0;
    while (std::getline(lines, line)) {
        if (!line.empty() && line.find_first_not_of("0123456789") == std::string::npos) {
            EXPECT_TRUE(wait_gone(static_cast<pid_t>(std::stol(line)), 3s)) << line;
            ++checked;
        }
    }
    EXPECT_EQ(checked, 2);
}

TEST(JobRunner, CancelDuringARunStopsItAndDoesNotRetry) {
    JobSpec job = command_job("long");
    job.retries = 3;
    job.timeout = 20s;  // a safety net: a broken cancel fails the test instead of hanging it
    std::atomic<bool> cancel{false};
    FakeSleep sleep;
    RunnerOptions o;
    o.cancel = &cancel;
    o.sleep_for = sleep.fn();
    o.kill_grace = 1s;
    std::thread canceller([&] {
        std::this_thread::sleep_for(300ms);
        cancel = true;
    });
    const auto t0 = Clock::now();
    JobRun run = run_job(job, sh("sleep 30 & echo $!; wait"), o);
    const auto took = Clock::now() - t0;
    canceller.join();
    EXPECT_EQ(run.outcome, JobOutcome::kCancelled);
    EXPECT_TRUE(run.cancelled);
    EXPECT_FALSE(run.timed_out);
    EXPECT_EQ(run.exit_kind, util::ExitKind::kCancelled);
    EXPECT_EQ(run.attempts, 1);
    EXPECT_TRUE(sleep.delays.empty());
    EXPECT_LT(took, 3s);
    ASSERT_FALSE(run.output_tail.empty());
    EXPECT_TRUE(wait_gone(static_cast<pid_t>(std::stol(run.output_tail)), 3s));
}

TEST(JobRunner, CancelDuringARetryWaitWithTheRealSleep) {
    TempDir dir;
    JobSpec job = command_job("waiting");
    job.retries = 2;
    job.retry_delay = 30s;
    std::atomic<bool> cancel{false};
    RunnerOptions o;
    o.cancel = &cancel;  // no sleep_for: the real one, polling the flag
    std::thread canceller([&] {
        std::this_thread::sleep_for(400ms);
        cancel = true;
    });
    const auto t0 = Clock::now();
    JobRun run = run_job(job, sh(counting_script(dir.path() / "count", 100)), o);
    const auto took = Clock::now() - t0;
    canceller.join();
    EXPECT_EQ(run.outcome, JobOutcome::kCancelled);
    EXPECT_TRUE(run.cancelled);
    EXPECT_EQ(run.attempts, 1);
    EXPECT_EQ(run.exit_kind, util::ExitKind::kExited);  // what the last attempt did
    EXPECT_EQ(run.exit_code, 3);
    EXPECT_EQ(read_file(dir.path() / "count"), "1\n");
    EXPECT_GE(took, 350ms);
    EXPECT_LT(took, 3s);
}

TEST(JobRunner, FakeSleepReportingCancelStopsRetries) {
    JobSpec job = command_job("stop");
    job.retries = 4;
    FakeSleep sleep;
    sleep.result = false;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    JobRun run = run_job(job, {"false"}, o);
    EXPECT_EQ(run.outcome, JobOutcome::kCancelled);
    EXPECT_EQ(run.attempts, 1);
    EXPECT_EQ(sleep.delays.size(), 1u);
}

TEST(JobRunner, CancelledBeforeStartRunsNothing) {
    TempDir dir;
    std::atomic<bool> cancel{true};
    RunnerOptions o;
    o.cancel = &cancel;
    JobRun run = run_job(command_job("never"), {"touch", (dir.path() / "ran").string()}, o);
    EXPECT_EQ(run.outcome, JobOutcome::kCancelled);
    EXPECT_TRUE(run.cancelled);
    EXPECT_EQ(run.attempts, 0);
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "ran"));
}

// ---- output ----

TEST(JobRunner, OutputTailOfAChattyJob) {
    RunnerOptions o;
    o.output_tail = 1024;
    JobRun run =
        run_job(command_job("chatty"), sh("seq 1 100000; echo last-err >&2; echo last-out"), o);
    ASSERT_EQ(run.outcome, JobOutcome::kSuccess) << run.error;
    EXPECT_EQ(run.output_tail.size(), 1024u);
    EXPECT_TRUE(run.output_truncated);
    const std::string end = "99999\n100000\nlast-err\nlast-out\n";
    ASSERT_GE(run.output_tail.size(), end.size());
    EXPECT_EQ(run.output_tail.substr(run.output_tail.size() - end.size()), end);
}

TEST(JobRunner, OutputTailSpansAttempts) {
    TempDir dir;
    JobSpec job = command_job("tail-retry");
    job.retries = 1;
    FakeSleep sleep;
    RunnerOptions o;
    o.sleep_for = sleep.fn();
    o.output_tail = 40;
    JobRun run = run_job(job, sh(counting_script(dir.path() / "count", 2) + "; seq 1 5"), o);
    ASSERT_EQ(run.outcome, JobOutcome::kSuccess);
    EXPECT_EQ(run.output_tail.size(), 40u);
    EXPECT_TRUE(run.output_truncated);
    // The first attempt failed before `seq`; the cut falls inside the marker line.
    EXPECT_EQ(run.output_tail, "per: attempt 2 of 2 ---\ntry 2\n1\n2\n3\n4\n5\n");
}

// ---- priority and limits ----

TEST(JobRunner, NiceAndIoClassAreApplied) {
    JobSpec job = command_job("polite");
    job.nice = 10;
    job.io_class = IoClass::kBestEffort;
    job.io_level = 6;
    JobRun run = run_job(job, sh("nice; ionice -p $$"), {});
    ASSERT_EQ(run.outcome, JobOutcome::kSuccess) << run.error << run.output_tail;
    EXPECT_EQ(run.output_tail, "10\nbest-effort: prio 6\n");

    job.io_class = IoClass::kIdle;
    job.nice = 19;
    JobRun idle = run_job(job, sh("nice; ionice -p $$"), {});
    ASSERT_EQ(idle.outcome, JobOutcome::kSuccess) << idle.error;
    EXPECT_EQ(idle.output_tail, "19\nidle\n");

    job.nice = 42;  // out of range: the job cannot start, and retrying would not help
    job.retries = 2;
    JobRun bad = run_job(job, {"true"}, {});
    EXPECT_EQ(bad.outcome, JobOutcome::kFailedToStart);
    EXPECT_EQ(bad.attempts, 1);
    EXPECT_TRUE(contains(bad.error, "nice")) << bad.error;
}

std::string find_python() {
    for (const char* p : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
        if (::access(p, X_OK) == 0) {
            return p;
        }
    }
    return {};
}

TEST(JobRunner, MemoryLimitFallsBackToRlimit) {
    const std::string python = find_python();
    if (python.empty()) {
        GTEST_SKIP() << "python3 not installed";
    }
    JobSpec job = command_job("hungry");
    job.memory_max = 64ULL << 20;
    JobRun big = run_job(job, {python, "-c", "x = bytearray(200 * 2**20)"}, {});
    EXPECT_EQ(big.outcome, JobOutcome::kFailed) << big.output_tail;
    EXPECT_TRUE(contains(big.output_tail, "MemoryError")) << big.output_tail;
    EXPECT_TRUE(any_contains(big.warnings, "RLIMIT_AS")) << joined(big.warnings);
    EXPECT_TRUE(any_contains(big.warnings, "no cgroup parent is configured"));

    // The same limit leaves room for a modest job, and without it the big one runs.
    JobRun small = run_job(job, {python, "-c", "x = bytearray(20 * 2**20)"}, {});
    EXPECT_EQ(small.outcome, JobOutcome::kSuccess) << small.output_tail;
    job.memory_max.reset();
    JobRun unlimited = run_job(job, {python, "-c", "x = bytearray(200 * 2**20)"}, {});
    EXPECT_EQ(unlimited.outcome, JobOutcome::kSuccess) << unlimited.output_tail;
    EXPECT_TRUE(unlimited.warnings.empty()) << joined(unlimited.warnings);
}

TEST(JobRunner, NonCgroupParentFallsBackWithWarnings) {
    TempDir dir;  // a plain directory, not on cgroup2
    JobSpec job = command_job("limited");
    job.memory_max = 128ULL << 20;
    job.cpu_quota_percent = 50;
    RunnerOptions o;
    o.cgroup_parent = dir.path();
    JobRun run = run_job(job, sh("ulimit -v"), o);
    ASSERT_EQ(run.outcome, JobOutcome::kSuccess) << run.error;
    EXPECT_EQ(run.output_tail, "131072\n");
    ASSERT_EQ(run.warnings.size(), 2u) << joined(run.warnings);
    EXPECT_TRUE(contains(run.warnings[0], "RLIMIT_AS"));
    EXPECT_TRUE(contains(run.warnings[0], "is not a cgroup v2 directory"));
    EXPECT_TRUE(contains(run.warnings[1], "CPU quota of job limited (50%) is not enforced"));
    EXPECT_TRUE(std::filesystem::is_empty(dir.path()));  // nothing created there

    job.memory_max.reset();
    job.cpu_quota_percent = 0;
    JobRun zero = run_job(job, {"true"}, o);
    ASSERT_EQ(zero.warnings.size(), 2u) << joined(zero.warnings);
    EXPECT_TRUE(contains(zero.warnings[0], "(0%) is ignored"));
    EXPECT_TRUE(contains(zero.warnings[1], "job limited runs without its own cgroup"));

    // Without a cgroup parent only the quota is worth a warning.
    JobRun none = run_job(job, {"true"}, {});
    ASSERT_EQ(none.warnings.size(), 1u) << joined(none.warnings);
}

// ---- real cgroup v2 ----

// A fresh directory inside a cgroup v2 hierarchy we may write (MLK_TEST_CGROUP_PARENT, else
// our own cgroup under the cgroup2 mount), or empty. Removed by the destructor.
class TestCgroup {
  public:
    TestCgroup() {
        std::filesystem::path base;
        if (const char* env = std::getenv("MLK_TEST_CGROUP_PARENT"); env != nullptr && *env) {
            base = env;
        } else {
            base = own_cgroup();
        }
        if (base.empty()) {
            return;
        }
        std::filesystem::path dir = base / ("mlk-test-" + std::to_string(::getpid()));
        if (::mkdir(dir.c_str(), 0755) == 0) {
            path_ = dir;
        }
    }
    TestCgroup(const TestCgroup&) = delete;
    TestCgroup& operator=(const TestCgroup&) = delete;
    ~TestCgroup() {
        if (path_.empty()) {
            return;
        }
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(path_, ec)) {
            if (e.is_directory()) {
                ::rmdir(e.path().c_str());
            }
        }
        ::rmdir(path_.c_str());
    }
    const std::filesystem::path& path() const { return path_; }

  private:
    static std::filesystem::path own_cgroup() {
        std::string mount;
        std::istringstream mounts(read_file("/proc/self/mountinfo"));
        std::string line;
        while (std::getline(mounts, line)) {
            auto dash = line.find(" - cgroup2 ");
            if (dash == std::string::npos) {
                continue;
            }
            std::istringstream fields(line.substr(0, dash));
            std::string id, parent, devno, root, point;
            fields >> id >> parent >> devno >> root >> point;
            if (root == "/") {
                mount = point;
                break;
            }
        }
        if (mount.empty()) {
            return {};
        }
        std::istringstream groups(read_file("/proc/self/cgroup"));
        while (std::getline(groups, line)) {
            if (line.rfind("0::", 0) == 0) {
                return std::filesystem::path(mount) /
                       std::filesystem::path(line.substr(3)).relative_path();
            }
        }
        return {};
    }

    std::filesystem::path path_;
};

TEST(JobRunnerCgroup, RunsInItsOwnCgroupWithLimitsAndRemovesIt) {
    TestCgroup parent;
    if (parent.path().empty()) {
        GTEST_SKIP() << "no writable cgroup v2 directory";
    }
    const auto cg = parent.path() / "mlkeeper-job-limited";
    JobSpec job = command_job("limited");
    job.memory_max = 64ULL << 20;
    job.cpu_quota_percent = 50;
    RunnerOptions o;
    o.cgroup_parent = parent.path();
    // The straggler keeps running after the job exits; removing the cgroup must end it.
    const std::string script = "cat /proc/self/cgroup | grep '^0::'; cat '" + cg.string() +
                               "/memory.max' 2>/dev/null || echo no-memory-max; cat '" +
                               cg.string() +
                               "/cpu.max' 2>/dev/null || echo no-cpu-max; ulimit -v; "
                               "sleep 30 >/dev/null 2>&1 & echo straggler $!";
    JobRun run = run_job(job, sh(script), o);
    ASSERT_EQ(run.outcome, JobOutcome::kSuccess) << run.error << run.output_tail;
    const std::string& out = run.output_tail;
    EXPECT_TRUE(contains(out, "/mlkeeper-job-limited\n")) << out;
    // Each limit is either in the cgroup, or (controller not available here) a warning.
    if (any_contains(run.warnings, "RLIMIT_AS")) {
        EXPECT_TRUE(contains(out, "65536\n")) << out;
    } else {
        EXPECT_TRUE(contains(out, "67108864\n")) << out;
        EXPECT_TRUE(contains(out, "unlimited\n")) << out;
    }
    if (any_contains(run.warnings, "CPU quota")) {
        EXPECT_TRUE(contains(run.warnings.back(), "cpu")) << joined(run.warnings);
    } else {
        EXPECT_TRUE(contains(out, "50000 100000\n")) << out;
    }
    EXPECT_FALSE(any_contains(run.warnings, "cannot remove")) << joined(run.warnings);
    auto at = out.find("straggler ");
    ASSERT_NE(at, std::string::npos) << out;
    EXPECT_TRUE(wait_gone(static_cast<pid_t>(std::stol(out.substr(at + 10))), 3s));
    EXPECT_FALSE(std::filesystem::exists(cg));
}

TEST(JobRunnerCgroup, BusyCgroupOfTheSameNameIsNotShared) {
    TestCgroup parent;
    if (parent.path().empty()) {
        GTEST_SKIP() << "no writable cgroup v2 directory";
    }
    // Another run of the job (say `schedule run` beside the agent) occupies the usual name.
    const auto busy = parent.path() / "mlkeeper-job-shared";
    ASSERT_EQ(::mkdir(busy.c_str(), 0755), 0);
    util::RunOptions other_opts;
    other_opts.cgroup_dir = busy;
    util::Subprocess other = util::Subprocess::start({"sleep", "30"}, other_opts);

    JobSpec job = command_job("shared");
    job.memory_max = 256ULL << 20;
    job.cpu_quota_percent = 100;
    RunnerOptions o;
    o.cgroup_parent = parent.path();
    JobRun run = run_job(job, sh("grep '^0::' /proc/self/cgroup"), o);
    ASSERT_EQ(run.outcome, JobOutcome::kSuccess) << run.error;
    EXPECT_TRUE(
        contains(run.output_tail, "/mlkeeper-job-shared." + std::to_string(::getpid()) + "\n"))
        << run.output_tail;
    EXPECT_FALSE(std::filesystem::exists(busy.string() + "." + std::to_string(::getpid())));
    EXPECT_TRUE(other.running());
    EXPECT_FALSE(other.try_wait().has_value()) << "the other run's process was killed";
    other.terminate(1s);
}

TEST(JobRunnerCgroup, EveryRunGetsACgroupEvenWithoutLimits) {
    TestCgroup parent;
    if (parent.path().empty()) {
        GTEST_SKIP() << "no writable cgroup v2 directory";
    }
    RunnerOptions o;
    o.cgroup_parent = parent.path();
    JobRun run = run_job(command_job("plain"), sh("grep '^0::' /proc/self/cgroup"), o);
    ASSERT_EQ(run.outcome, JobOutcome::kSuccess) << run.error;
    EXPECT_TRUE(run.warnings.empty()) << joined(run.warnings);
    EXPECT_TRUE(contains(run.output_tail, "/mlkeeper-job-plain\n")) << run.output_tail;
    EXPECT_FALSE(std::filesystem::exists(parent.path() / "mlkeeper-job-plain"));
}

TEST(JobRunnerCgroup, UnsafeJobNameGetsNoCgroup) {
    TestCgroup parent;
    if (parent.path().empty()) {
        GTEST_SKIP() << "no writable cgroup v2 directory";
    }
    JobSpec job = command_job("../escape");
    job.cpu_quota_percent = 20;
    RunnerOptions o;
    o.cgroup_parent = parent.path();
    JobRun run = run_job(job, {"true"}, o);
    EXPECT_EQ(run.outcome, JobOutcome::kSuccess);
    EXPECT_TRUE(any_contains(run.warnings, "cannot name a cgroup")) << joined(run.warnings);
    EXPECT_TRUE(std::filesystem::is_empty(parent.path()) ||
                !std::filesystem::exists(parent.path().parent_path() / "escape"));
}

}  // namespace
}  // namespace mlk::sched
