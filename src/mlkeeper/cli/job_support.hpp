// What `schedule run` and `agent` share: how a job's command line is built, where the run log
// and job locks live, and how a finished run becomes an alert (failure) or a recovery notice.
// Thread safety: call from the command's main thread.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/sched/job_runner.hpp"
#include "mlkeeper/sched/job_spec.hpp"

namespace mlk::cli {

class OutcomeAlerts;

// The absolute path of the running mlkeeper binary.
std::string self_exe();

// {this executable, [--config FILE,] task, args...} for built-ins; the job's argv otherwise.
std::vector<std::string> job_argv(const Context& ctx, const sched::JobSpec& job);

std::filesystem::path job_lock_dir(const Context& ctx);

// Fires "job_<name>" when the run failed (and the job alerts on failure); resolves it when it
// succeeded.
void report_job_outcome(OutcomeAlerts& alerts, const sched::JobSpec& job, const sched::JobRun& run);

// The JobRun's outcome in the run log's words.
std::string describe(const sched::JobRun& run);

}  // namespace mlk::cli
