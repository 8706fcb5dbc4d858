// The maintenance run (`mlkeeper maintain`, the seeds' run_all_maintenance.sh): health check,
// GPU monitoring, backup, cleanup, in that order, each as its own mlkeeper process so that one
// task crashing cannot take the run down. Cleanup never follows a failed backup of the same run
// (backups before cleanup is the point) unless forced. Each task's --json output is kept and
// boiled down to a few key figures for the summary.
// Thread safety: run_maintenance() blocks; its callbacks run on the calling thread.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/process.hpp"

namespace mlk::maintain {

enum class Task { kHealth, kGpu, kBackup, kCleanup };
std::string_view to_string(Task t);  // "health", "gpu", "backup", "cleanup"

enum class Status {
    kOk,       // exit 0
    kWarning,  // health or gpu exit 1: warnings found, the run goes on and counts as succeeded
    kFailed,   // any other non-zero exit, a crash, a timeout, or a start failure
    kSkipped,  // disabled, or not run because of an earlier failure (see reason)
};
std::string_view to_string(Status s);

struct TaskPlan {
    Task task = Task::kHealth;
    bool enabled = true;
    std::vector<std::string> argv;  // the full command line, --json included
};

struct TaskResult {
    Task task = Task::kHealth;
    Status status = Status::kSkipped;
    std::string reason;  // why skipped or failed, one line
    int exit_code = -1;  // when it ran and exited
    std::chrono::milliseconds duration{0};
    std::string figures;     // "12 checks, 1 warning, score 91.67" ...
    nlohmann::json details;  // the task's own --json output (null when it had none)
    std::string output;      // its stderr (logs), for the maintenance log
};

enum class OnError { kStop, kContinue };
enum class CleanupAfterFailedBackup { kSkip, kRun };

struct MaintainOptions {
    OnError on_error = OnError::kStop;
    CleanupAfterFailedBackup cleanup_after_failed_backup = CleanupAfterFailedBackup::kSkip;
    std::chrono::milliseconds task_timeout{0};  // 0 = none
    // Seam: runs one task (default util::run_process with task_timeout).
    std::function<util::RunResult(const std::vector<std::string>&)> run;
    // Called before and after each task (progress lines, logs).
    std::function<void(const TaskPlan&, std::size_t index, std::size_t total)> on_start;
    std::function<void(const TaskResult&)> on_done;
};

struct MaintainReport {
    std::vector<TaskResult> tasks;
    std::chrono::milliseconds duration{0};
    int failed = 0, warnings = 0, ok = 0, skipped = 0;
    int exit_code() const { return failed > 0 ? 1 : 0; }
    nlohmann::json to_json() const;
};

// Runs `plans` in the order given (the caller passes health, gpu, backup, cleanup).
MaintainReport run_maintenance(const std::vector<TaskPlan>& plans, const MaintainOptions& opts);

// The key figures of a task's --json output, for the summary table.
std::string key_figures(Task task, const nlohmann::json& details);

}  // namespace mlk::maintain
