// `mlkeeper maintain`: the seeds' run_all_maintenance.sh. Health check, GPU monitoring, backup,
// cleanup in that order under one lock, a line per task as it ends, a summary table (or --json),
// a heartbeat ping, and exit 0 only when every task that ran succeeded.
#include <unistd.h>

#include <iostream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/job_support.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/http_client.hpp"
#include "mlkeeper/maintain/maintenance.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

using maintain::Task;

std::vector<std::string> task_argv(const Context& ctx, const std::string& sub,
                                   std::vector<std::string> extra) {
    sched::JobSpec job;
    job.kind = sched::TaskKind::kBuiltin;
    job.builtin = sub;
    job.argv = std::move(extra);
    return job_argv(ctx, job);
}

void heartbeat(const core::Config& cfg, bool success) {
    const auto& url = cfg.str("maintain.heartbeat_url");
    if (url.empty()) {
        return;
    }
    core::HttpRequest req;
    req.url = success ? url : (url.back() == '/' ? url + "fail" : url + "/fail");
    req.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        cfg.duration("maintain.heartbeat_timeout"));
    req.connect_timeout = std::min(req.timeout, std::chrono::milliseconds(5000));
    try {
        const auto resp = core::http_request(req);
        if (resp.status >= 200 && resp.status < 300) {
            spdlog::info("heartbeat: {} answered {}", core::redact_url(req.url), resp.status);
        } else {
            spdlog::warn("heartbeat: {} answered {} (the run's result stands)",
                         core::redact_url(req.url), resp.status);
        }
    } catch (const std::exception& e) {
        spdlog::warn("heartbeat failed (the run's result stands): {}", e.what());
    }
}

std::string mark(maintain::Status s) {
    switch (s) {
        case maintain::Status::kOk:
            return "ok";
        case maintain::Status::kWarning:
            return "warning";
        case maintain::Status::kFailed:
            return "FAILED";
        case maintain::Status::kSkipped:
            return "skipped";
    }
    return "?";
}

// "34ms" below a second (a release build's tasks often are), "2.5s" above.
std::string seconds(std::chrono::milliseconds d) {
    if (d < std::chrono::seconds(1)) {
        return fmt::format("{}ms", d.count());
    }
    return fmt::format("{:.1f}s", static_cast<double>(d.count()) / 1000.0);
}

}  // namespace

Command maintain_command() {
    return Command{
        "maintain", "The maintenance run: health check, GPU, backup, cleanup (in that order)",
        "/var/log/ml-maintenance.log", Record::kYes, [](CLI::App& app, FlagBindings& flags) {
            struct Opts {
                bool json = false, force_cleanup = false, dry_run = false;
            };
            auto o = std::make_shared<Opts>();
            flags.bind_switch(app, "--skip-health", "maintain.run_health_check", "false",
                              "Do not run the health check (RUN_HEALTH_CHECK=false)");
            flags.bind_switch(app, "--skip-gpu", "maintain.run_gpu_monitor", "false",
                              "Do not run GPU monitoring (RUN_GPU_MONITOR=false)");
            flags.bind_switch(app, "--skip-backup", "maintain.run_backup", "false",
                              "Do not run the backup (RUN_BACKUP=false)");
            flags.bind_switch(app, "--skip-cleanup", "maintain.run_cleanup", "false",
                              "Do not run the cleanup (RUN_CLEANUP=false)");
            flags.bind_switch(app, "--continue-on-error", "maintain.continue_on_error", "true",
                              "Go on after a failed task (CONTINUE_ON_ERROR=true); cleanup still "
                              "waits for a good backup");
            flags
                .bind(app, "--textfile", "metrics.textfile_dir",
                      "Every task also writes its node_exporter textfile to DIR "
                      "(mlkeeper_health.prom, _gpu, _backup, _cleanup)")
                ->type_name("DIR");
            app.add_flag("--force-cleanup", o->force_cleanup,
                         "Run the cleanup even if this run's backup failed");
            app.add_flag("-n,--dry-run", o->dry_run,
                         "Backup and cleanup only report what they would do");
            app.add_flag("--json", o->json, "JSON report on stdout");
            app.footer(R"(
Each task runs as its own mlkeeper process with this run's configuration; its
logs go where that command logs (as root: the seeds' files, /var/log/ml-*.log).
Health and GPU warnings (exit 1) do not stop the run; a critical health check,
a failed backup or cleanup does, unless --continue-on-error. Cleanup never runs
after a failed backup of the same run unless --force-cleanup.

Exit codes: 0 every task that ran succeeded, 1 some failed (or already running).

Examples:
  mlkeeper maintain
  mlkeeper maintain --skip-gpu --continue-on-error
  mlkeeper maintain --dry-run --json | jq '.tasks[] | {task, status, figures}')");
            Handler h;
            h.run = [o](Context& ctx) {
                const auto& cfg = ctx.config();
                pid_t holder = 0;
                auto lock = util::FileLock::try_acquire(ctx.state_dir() / "maintain.lock", &holder);
                if (!lock) {
                    throw Error(
                        fmt::format("a maintenance run is already running (pid {})", holder));
                }
                std::vector<std::string> dry;
                if (o->dry_run) {
                    dry.push_back("--dry-run");
                }
                std::vector<std::string> textfile;
                if (cfg.is_set("metrics.textfile_dir") &&
                    !cfg.path("metrics.textfile_dir").empty()) {
                    textfile = {"--textfile", cfg.path("metrics.textfile_dir").string()};
                }
                auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
                    a.insert(a.end(), b.begin(), b.end());
                    return a;
                };
                const std::vector<maintain::TaskPlan> plans = {
                    {Task::kHealth, cfg.boolean("maintain.run_health_check"),
                     task_argv(ctx, "health", with({"--json"}, textfile))},
                    {Task::kGpu, cfg.boolean("maintain.run_gpu_monitor"),
                     task_argv(ctx, "gpu", with({"--json"}, textfile))},
                    {Task::kBackup, cfg.boolean("maintain.run_backup"),
                     task_argv(ctx, "backup", with(with({"--json"}, dry), textfile))},
                    {Task::kCleanup, cfg.boolean("maintain.run_cleanup"),
                     task_argv(ctx, "cleanup", with(with({"--json", "--yes"}, dry), textfile))},
                };
                maintain::MaintainOptions mo;
                mo.on_error = cfg.boolean("maintain.continue_on_error")
                                  ? maintain::OnError::kContinue
                                  : maintain::OnError::kStop;
                mo.cleanup_after_failed_backup = o->force_cleanup
                                                     ? maintain::CleanupAfterFailedBackup::kRun
                                                     : maintain::CleanupAfterFailedBackup::kSkip;
                mo.task_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
                    cfg.duration("maintain.task_timeout"));
                mo.on_start = [](const maintain::TaskPlan& p, std::size_t i, std::size_t n) {
                    spdlog::info("maintain: task {}/{}: {} starting", i, n, to_string(p.task));
                };
                mo.on_done = [](const maintain::TaskResult& t) {
                    for (const auto& line : util::split(t.output, '\n')) {
                        if (!line.empty()) {
                            spdlog::debug("maintain: {}: {}", to_string(t.task), line);
                        }
                    }
                    const std::string what = !t.reason.empty() ? t.reason : t.figures;
                    spdlog::log(t.status == maintain::Status::kFailed ? spdlog::level::err
                                                                      : spdlog::level::info,
                                "maintain: {} {} ({}){}", to_string(t.task), mark(t.status),
                                seconds(t.duration), what.empty() ? "" : ": " + what);
                };
                const auto rep = maintain::run_maintenance(plans, mo);
                heartbeat(cfg, rep.exit_code() == 0);
                ctx.summary() = rep.to_json()["summary"];
                if (o->json) {
                    std::cout << rep.to_json().dump(2) << "\n";
                } else {
                    std::cout << fmt::format("{:<8}  {:<8}  {:>8}  {}\n", "TASK", "STATUS",
                                             "DURATION", "DETAILS");
                    for (const auto& t : rep.tasks) {
                        std::cout << fmt::format(
                            "{:<8}  {:<8}  {:>8}  {}\n", to_string(t.task), mark(t.status),
                            t.status == maintain::Status::kSkipped ? "-" : seconds(t.duration),
                            !t.reason.empty() ? t.reason : t.figures);
                    }
                    std::cout << fmt::format(
                        "\nmaintenance {} in {}: {} ok, {} warning(s), {} failed, {} skipped\n",
                        rep.exit_code() == 0 ? "finished" : "FAILED", seconds(rep.duration), rep.ok,
                        rep.warnings, rep.failed, rep.skipped);
                }
                return rep.exit_code();
            };
            return h;
        }};
}

}  // namespace mlk::cli
