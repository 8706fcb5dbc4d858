// `mlkeeper agent`: the daemon that runs scheduled jobs where systemd timers are not used. It
// owns the main loop: signals (SIGTERM/SIGINT stop, SIGHUP reloads), systemd notify (READY,
// STATUS, WATCHDOG, RELOADING, STOPPING), the scheduler, one thread per running job, the run log
// and recovery of runs a killed agent left open. Alerting and configuration loading are
// callbacks, so the CLI decides how to alert and where the config comes from.
// Thread safety: run() blocks the calling thread; it blocks SIGTERM/SIGINT/SIGHUP in the process
// (call it before starting other threads so they inherit the mask).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/sched/job_runner.hpp"
#include "mlkeeper/sched/job_spec.hpp"

namespace mlk::agent {

struct AgentConfig {
    std::vector<sched::JobSpec> jobs;
    std::filesystem::path cgroup_parent;
    std::chrono::seconds stop_timeout{90};
    std::size_t output_tail = 8 * 1024;
};

struct AgentOptions {
    core::StateStore* state = nullptr;  // the run log lives here (table job_runs)
    std::filesystem::path lock_dir;     // per-job locks shared with `schedule run`
    // The argv of a built-in task: {"/proc/self/exe", "--config", F, task, args...}.
    std::function<std::vector<std::string>(const sched::JobSpec&)> builtin_argv;
    // Loads (at start) and reloads (SIGHUP) the configuration; throws on a bad one, and then the
    // agent keeps the configuration it has.
    std::function<AgentConfig()> load;
    // Called from the main loop after every finished run (alerts, metrics).
    std::function<void(const sched::JobSpec&, const sched::JobRun&)> on_finished;
    // Called after SIGHUP (reopen log files).
    std::function<void()> on_reload;
    // Starts the long-running services (REST API, model supervision, shutdown timer) once the
    // signal mask is set, so their threads inherit it, and before READY=1. The object it returns
    // is destroyed when the agent stops, after the running jobs have finished. A throw stops the
    // agent before it starts any job.
    std::function<std::shared_ptr<void>()> start_services;
    // Stop after this many jobs have finished (tests); 0 = run until signalled.
    int exit_after_runs = 0;
};

// Runs until SIGTERM/SIGINT; returns the process exit code (0 on a clean stop). Throws mlk::Error
// when it cannot start (state database unusable, first configuration invalid).
int run(const AgentOptions& opts);

}  // namespace mlk::agent
