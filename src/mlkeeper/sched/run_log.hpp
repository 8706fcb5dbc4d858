// The record of scheduled job runs (state table job_runs, docs/STATE.md): every start with its
// trigger, every end with its outcome and output tail, skips, and runs a crashed agent left
// open. It is also where a restarted agent finds each job's last trigger (Persistent=).
// Thread safety: like StateStore, calls are serialized; the agent uses it from its main loop.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/sched/job_runner.hpp"
#include "mlkeeper/sched/scheduler.hpp"

namespace mlk::sched {

// How a run ended. "interrupted": the agent died while the job ran and the job is gone too.
enum class Outcome {
    kSuccess,
    kFailed,
    kTimedOut,
    kCancelled,
    kFailedToStart,
    kSkipped,
    kInterrupted,
};
std::string_view to_string(Outcome o);
std::optional<Outcome> outcome_from_string(std::string_view s);
// How a finished JobRun is recorded.
Outcome to_outcome(JobOutcome o);

struct JobRunRecord {
    int64_t id = 0;
    std::string job;
    Trigger trigger = Trigger::kScheduled;
    std::optional<TimePoint> elapse;  // the calendar elapse that fired it (none for manual)
    TimePoint started;
    std::optional<TimePoint> ended;
    std::optional<Outcome> outcome;  // nullopt while running (or until a restart closes it)
    std::optional<int> exit_code;
    std::optional<int> signal;
    int attempts = 0;
    std::optional<pid_t> pid;
    std::optional<std::uint64_t> pid_start;  // /proc/PID/stat starttime, to recognise the pid
    std::optional<pid_t> agent_pid;
    std::string output_tail;
};

class RunLog {
  public:
    // Uses the process's one store for the state file: a second StateStore on the same file
    // would drop the first one's SQLite locks (see StateStore).
    explicit RunLog(core::StateStore& store) : store_(store) {}

    // A run starts now; returns its id.
    int64_t begin(std::string_view job, Trigger trigger, std::optional<TimePoint> elapse,
                  TimePoint started);
    // The job's process once started (also after each retry), for recovery after a crash.
    void set_process(int64_t id, pid_t pid, std::optional<std::uint64_t> pid_start);
    void finish(int64_t id, Outcome outcome, std::optional<int> exit_code,
                std::optional<int> signal, int attempts, TimePoint ended,
                std::string_view output_tail);
    // A firing that did not start because the previous run was still going.
    void record_skip(std::string_view job, Trigger trigger, std::optional<TimePoint> elapse,
                     TimePoint when, std::string_view reason);

    // Runs with no outcome yet, oldest first (a previous agent died while they ran).
    std::vector<JobRunRecord> unfinished() const;
    // The start of the job's newest run that was not skipped: systemd's LAST for Persistent=.
    std::optional<TimePoint> last_trigger(std::string_view job) const;
    // Newest first; all jobs when `job` is empty.
    std::vector<JobRunRecord> recent(std::string_view job, std::size_t limit) const;

  private:
    core::StateStore& store_;
};

}  // namespace mlk::sched
