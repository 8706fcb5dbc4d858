// Runs one scheduled job to its end: every attempt (1 + retries, with doubling delays), under the
// job's timeout, niceness, I/O class and memory/CPU limits (a cgroup v2 child when one can be
// made, rlimits otherwise), cancellable at any point. run_job() may be called from several
// threads at once for different jobs; RunnerOptions must outlive the call.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mlkeeper/sched/job_spec.hpp"
#include "mlkeeper/util/process.hpp"

namespace mlk::sched {

enum class JobOutcome { kSuccess, kFailed, kTimedOut, kCancelled, kFailedToStart };

// "success", "failed", "timed-out", "cancelled", "failed-to-start": for logs and the state store.
const char* to_string(JobOutcome outcome);

// What one finished attempt looked like; passed to RunnerOptions::on_attempt.
struct AttemptReport {
    int attempt = 0;  // 1-based
    int max_attempts = 0;
    JobOutcome outcome = JobOutcome::kFailedToStart;
    util::ExitKind exit_kind = util::ExitKind::kFailedToStart;
    int exit_code = -1;
    int signal = 0;
    std::chrono::milliseconds elapsed{0};
    std::string error;  // why it did not start, if it did not
    // Set when another attempt follows after this wait.
    std::optional<std::chrono::milliseconds> retry_in;
};

struct JobRun {
    std::chrono::system_clock::time_point start, end;
    int attempts = 0;  // attempts started (0 if cancelled before the first)
    JobOutcome outcome = JobOutcome::kFailedToStart;
    // From the last attempt.
    util::ExitKind exit_kind = util::ExitKind::kFailedToStart;
    int exit_code = -1;      // for kExited
    int signal = 0;          // for kSignaled, or the signal that ended a timed-out/cancelled child
    bool timed_out = false;  // the last attempt hit the job's timeout
    bool cancelled = false;  // stopped by RunnerOptions::cancel (during a run or a retry wait)
    // stdout and stderr merged in the order written, across attempts (each retry starts with a
    // marker line), cut to the last RunnerOptions::output_tail bytes.
    std::string output_tail;
    bool output_truncated = false;
    std::string error;  // why the last attempt could not start, or other runner failures
    // Limits that could not be applied as configured and why; the same text on every run, so the
    // caller can log each one once.
    std::vector<std::string> warnings;

    bool ok() const { return outcome == JobOutcome::kSuccess; }
};

struct RunnerOptions {
    // A cgroup v2 directory we may create children in (e.g. our own delegated cgroup). Empty:
    // never use cgroups. Otherwise each run happens in <parent>/mlkeeper-job-<name>, created
    // before and removed after it, which also ends whatever an attempt left running there (as
    // systemd's KillMode=control-group does); memory.max and cpu.max are set in it.
    std::filesystem::path cgroup_parent;
    // Checked between waits (about every 50 ms); once true the running attempt is stopped
    // (SIGTERM, SIGKILL after kill_grace) and no further attempt starts.
    const std::atomic<bool>* cancel = nullptr;
    // How long a timed-out or cancelled job has after SIGTERM before SIGKILL.
    std::chrono::milliseconds kill_grace{10000};
    std::size_t output_tail = 8 * 1024;  // bytes
    // The longest wait between attempts, however many retries have doubled it.
    std::chrono::milliseconds max_retry_delay = std::chrono::hours(1);
    // Added to the job's environment (e.g. MLKEEPER_JOB); cwd empty = inherit.
    std::vector<std::pair<std::string, std::string>> env_set;
    std::filesystem::path cwd;

    // Seams. sleep_for waits between attempts and returns false if cancelled; empty: a real
    // sleep that polls `cancel`. now stamps JobRun::start/end; empty: system_clock::now.
    std::function<bool(std::chrono::milliseconds)> sleep_for;
    std::function<std::chrono::system_clock::time_point()> now;
    // Called after every attempt, from the calling thread (e.g. to log "retrying in 30 s").
    std::function<void(const AttemptReport&)> on_attempt;
    // Called from the calling thread with each attempt's pid as soon as it is started.
    std::function<void(pid_t)> on_spawn;
};

// Runs argv (the caller resolves a builtin into {"/proc/self/exe", builtin, args...}) as `job`
// says. Retries follow systemd's Restart=on-failure: a non-zero exit, a signal or a timeout is
// retried after retry_delay * 2^(attempt-1) (capped by max_retry_delay); success, a cancel and a
// program that cannot be started are not (a missing binary or a bad setting does not fix
// itself). Never throws for OS failures: they are outcomes, errors or warnings.
JobRun run_job(const JobSpec& job, const std::vector<std::string>& argv,
               const RunnerOptions& opts = {});

// The delay before attempt `next_attempt` (2-based: the first retry is attempt 2).
std::chrono::milliseconds retry_delay_before(const JobSpec& job, int next_attempt,
                                             std::chrono::milliseconds cap);

}  // namespace mlk::sched
