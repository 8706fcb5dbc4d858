// `mlkeeper agent`: the scheduling daemon, for hosts (containers, minimal systems) where the jobs
// are not exported as systemd timers. Meant to run under systemd as Type=notify or under any
// supervisor; logs go to stderr (the journal) and the configured log file.
#include <fmt/format.h>

#include "mlkeeper/agent/agent.hpp"
#include "mlkeeper/agent/services.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/job_support.hpp"
#include "mlkeeper/cli/outcome_alerts.hpp"
#include "mlkeeper/core/logging.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/sched/job_config.hpp"

namespace mlk::cli {

Command agent_command() {
    return Command{
        "agent", "Run scheduled jobs as a daemon (systemd Type=notify; SIGHUP reloads)", "",
        Record::kYes, [](CLI::App& app, FlagBindings&) {
            struct Opts {
                int exit_after = 0;
            };
            auto o = std::make_shared<Opts>();
            app.add_option("--exit-after-runs", o->exit_after,
                           "Stop after N finished runs (for tests and one-off catch-up)")
                ->check(CLI::Range(0, 1000000));
            app.footer(R"(
The agent runs the jobs `mlkeeper schedule list` shows, never two runs of one
job at once, records every run (`mlkeeper schedule history`), catches up a
persistent job missed while it was down, and alerts on failures.

Signals: SIGTERM/SIGINT stop (running jobs get SIGTERM, then SIGKILL after
schedule.stop_timeout); SIGHUP reloads the configuration (a bad one is
rejected and the old one kept) and reopens log files.

Example unit: packaging/systemd/mlkeeper-agent.service (Type=notify,
WatchdogSec=60).)");
            Handler h;
            h.run = [o](Context& ctx) {
                OutcomeAlerts alerts(ctx);
                agent::AgentOptions opts;
                opts.state = &ctx.state();
                opts.lock_dir = job_lock_dir(ctx);
                opts.exit_after_runs = o->exit_after;
                opts.builtin_argv = [&ctx](const sched::JobSpec& job) {
                    return job_argv(ctx, job);
                };
                const auto file = ctx.config().file();
                // The first load uses the configuration already read; a reload reads the
                // file again with the same environment.
                opts.load = [&ctx, file, first = std::make_shared<bool>(true)] {
                    core::Config cfg = ctx.config();
                    if (!*first) {
                        core::ConfigInputs in;
                        in.file = file;
                        in.env = core::process_environment();
                        cfg = core::Config::load(in);
                    }
                    *first = false;
                    agent::render_nginx_if_enabled(cfg);
                    agent::AgentConfig ac;
                    ac.jobs = sched::load_jobs(cfg);
                    ac.cgroup_parent = cfg.path("schedule.cgroup_parent");
                    ac.stop_timeout = cfg.duration("schedule.stop_timeout");
                    ac.output_tail = cfg.size("schedule.output_tail");
                    return ac;
                };
                opts.on_finished = [&alerts](const sched::JobSpec& job, const sched::JobRun& run) {
                    report_job_outcome(alerts, job, run);
                };
                opts.on_reload = [] { core::request_log_reopen(); };
                opts.start_services = [&ctx] {
                    return agent::start_services(ctx.config(), ctx.state(), ctx.state_dir());
                };
                return agent::run(opts);
            };
            return h;
        }};
}

}  // namespace mlk::cli
