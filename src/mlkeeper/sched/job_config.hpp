// Reads the jobs the agent runs: the seeds' four defaults (unless schedule.default_jobs = false)
// changed, disabled or joined by [schedule.jobs.NAME] tables in the config file. Every field and
// every schedule expression is checked; all problems are reported at once as `file:line:col:
// message`, like the rest of the configuration.
// Thread safety: pure functions.
#pragma once

#include <string_view>
#include <vector>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/sched/job_spec.hpp"

namespace mlk::sched {

// The subcommands a job may name in `task`.
bool is_builtin_task(std::string_view name);

// The jobs of `cfg`: defaults (if enabled) merged with the file's [schedule.jobs.*] tables.
// Throws ConfigError (exit 78) listing every problem.
std::vector<JobSpec> load_jobs(const core::Config& cfg);

// The same from TOML text (the whole config file); `origin` names it in messages.
std::vector<JobSpec> parse_jobs(std::string_view toml_text, std::string_view origin,
                                const std::vector<JobSpec>& defaults);

}  // namespace mlk::sched
