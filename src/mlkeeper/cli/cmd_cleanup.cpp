// `mlkeeper cleanup`: the seeds' cleanup_ml_artifacts.sh made safe. Plans first (scan, protect,
// breakers), asks on a terminal, then deletes exactly the planned files after re-checking each.
#include <unistd.h>

#include <iostream>
#include <set>

#include <spdlog/spdlog.h>

#include "mlkeeper/cleanup/aggressive.hpp"
#include "mlkeeper/cleanup/executor.hpp"
#include "mlkeeper/cleanup/open_files.hpp"
#include "mlkeeper/cleanup/report.hpp"
#include "mlkeeper/cleanup/scanner.hpp"
#include "mlkeeper/cleanup/target_spec.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/outcome_alerts.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

struct Opts {
    bool experiments = false, checkpoints = false, logs = false;
    bool dry_run = false, json = false, yes = false, force = false;
};

bool confirm(const cleanup::Plan& p) {
    std::cerr << "About to delete " << p.files() << " files (" << util::format_bytes(p.bytes())
              << ") and " << p.dirs() << " directories. Continue? (yes/no): " << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer)) {
        return false;
    }
    return answer == "yes" || answer == "y";
}

// Interactive runs (stdin and stdout on a terminal) show the plan and ask; cron and systemd
// runs have no terminal and never wait for an answer.
bool confirmed(const Opts& o, const cleanup::Plan& plan, const cleanup::ReportInput& in) {
    if (o.yes || !::isatty(0) || !::isatty(1) || plan.files() + plan.dirs() == 0) {
        return true;
    }
    std::cout << cleanup::report_text(in, cleanup::FileList::kNo);
    return confirm(plan);
}

int run_cleanup(const Opts& o, Context& ctx) {
    const core::Config& cfg = ctx.config();
    auto targets = cleanup::build_targets(cfg);
    bool only = o.experiments || o.checkpoints || o.logs;
    bool aggressive = cfg.boolean("cleanup.aggressive") && !only;
    std::vector<std::string> notes;
    if (only) {
        std::set<std::string> keep;
        for (auto [on, name] :
             {std::pair{o.experiments, "experiments"}, std::pair{o.checkpoints, "checkpoints"},
              std::pair{o.logs, "logs"}}) {
            if (on) {
                keep.insert(name);
            }
        }
        std::erase_if(targets, [&](const auto& t) { return keep.count(t.name) == 0; });
        if (cfg.boolean("cleanup.aggressive")) {
            notes.emplace_back("aggressive steps skipped with --*-only");
        }
    } else if (aggressive) {
        for (auto& t : cleanup::aggressive_targets(cfg.path("cleanup.temp_dir"),
                                                   core::process_environment())) {
            targets.push_back(std::move(t));
        }
    }
    if (cfg.boolean("cleanup.low_priority")) {
        for (auto& n : cleanup::lower_priority()) {
            notes.push_back(std::move(n));
        }
    }
    cleanup::ScanOptions so;
    so.min_age = cfg.duration("cleanup.min_age");
    so.keep_checkpoints = static_cast<std::size_t>(cfg.integer("cleanup.keep_checkpoints"));
    so.protect = cfg.list("cleanup.protect");
    so.checkpoint_patterns = cfg.list("cleanup.checkpoint_patterns");
    so.policy = cleanup::default_root_policy(cfg.path("backup.backup_dir"),
                                             cfg.list("cleanup.allow_roots"));
    auto index = cleanup::OpenWriteIndex::build();
    so.open_files = &index;
    cleanup::Plan plan = cleanup::plan(targets, so);

    cleanup::ReportInput in(plan);
    in.disks = cleanup::disk_space(plan);
    in.breaker =
        cleanup::check_breakers(plan, {static_cast<std::uint64_t>(cfg.integer("cleanup.max_files")),
                                       cfg.size("cleanup.max_bytes")});
    OutcomeAlerts alerts(ctx);
    cleanup::AggressiveOptions ao;
    ao.timeout = cfg.duration("cleanup.tool_timeout");
    cleanup::ExecResult exec;
    int code = 0;
    if (o.dry_run) {
        in.outcome = cleanup::Outcome::kDryRun;
        ao.dry_run = cleanup::DryRun::kYes;
        if (aggressive) {
            in.steps = cleanup::run_external_steps(ao);
        }
    } else if (in.breaker && !o.force) {
        in.outcome = cleanup::Outcome::kBreakerTripped;
        code = 1;
        alert::Alert a;
        a.key = "cleanup_breaker";
        a.check = "cleanup";
        a.severity = alert::Severity::kWarning;
        a.summary = "Cleanup circuit breaker tripped; nothing was deleted";
        a.value = *in.breaker;
        a.action =
            "Check the plan with `mlkeeper cleanup --dry-run`; if it is right, run with --force "
            "or raise cleanup.max_files / cleanup.max_bytes.";
        alerts.fire(a);
        spdlog::error(
            "cleanup circuit breaker: {}; nothing was deleted. Check the plan with --dry-run, "
            "then run with --force or raise cleanup.max_files / cleanup.max_bytes",
            *in.breaker);
    } else if (!confirmed(o, plan, in)) {
        in.outcome = cleanup::Outcome::kNotConfirmed;
    } else {
        in.outcome = cleanup::Outcome::kDeleted;
        // Rebuilt now: a file opened for writing since the scan (or during the prompt) stays.
        auto fresh = cleanup::OpenWriteIndex::build();
        exec = cleanup::execute(plan, {cfg.number("cleanup.rate_limit"), &fresh, {}});
        in.exec = &exec;
        if (aggressive) {
            in.steps = cleanup::run_external_steps(ao);
        }
        cleanup::measure_after(in.disks);
        if (!in.breaker) {
            alerts.resolve("cleanup_breaker", "cleanup", "Cleanup runs within its limits again");
        }
        if (exec.failures() > 0) {
            code = 1;
        }
    }
    for (const auto& t : plan.targets) {
        if (t.status == cleanup::TargetStatus::kRefused ||
            t.status == cleanup::TargetStatus::kError) {
            code = 1;
            spdlog::error("cleanup target {}: {}", t.spec.name, t.note);
        }
    }
    for (const auto& s : in.steps) {
        if (s.status == cleanup::StepStatus::kFailed) {
            code = 1;
        }
    }
    in.notes = notes;
    auto list = o.dry_run ? cleanup::FileList::kYes : cleanup::FileList::kNo;
    ctx.summary() = cleanup::report_json(in, cleanup::FileList::kNo);
    if (o.json) {
        std::cout << cleanup::report_json(in, list).dump(2) << "\n";
    } else {
        std::cout << cleanup::report_text(in, list);
    }
    spdlog::info("cleanup: {}", cleanup::summary_line(in));
    return code;
}

}  // namespace

Command cleanup_command() {
    return Command{
        "cleanup", "Delete old experiments, checkpoints, logs and temp files, safely",
        "/var/log/ml-cleanup.log", Record::kYes, [](CLI::App& app, FlagBindings& flags) {
            auto o = std::make_shared<Opts>();
            app.add_flag("--experiments-only", o->experiments, "Only the experiments target");
            app.add_flag("--checkpoints-only", o->checkpoints, "Only the checkpoints target");
            app.add_flag("--logs-only", o->logs, "Only the logs target");
            app.add_flag("-n,--dry-run", o->dry_run,
                         "List exactly what would be deleted; change nothing");
            app.add_flag("--json", o->json, "Print the report as JSON");
            app.add_flag("-y,--yes", o->yes, "Do not ask for confirmation on a terminal");
            app.add_flag("--force", o->force,
                         "Delete even when a circuit breaker (max_files, max_bytes) trips");
            flags
                .bind(app, "--textfile", "metrics.textfile_dir",
                      "Also write DIR/mlkeeper_cleanup.prom (node_exporter textfile collector)")
                ->type_name("DIR");
            flags.bind_switch(app, "--aggressive", "cleanup.aggressive", "true",
                              "Also prune Docker images, pip and apt caches, /tmp (AGGRESSIVE)");
            flags
                .bind(app, "--experiments-retention", "cleanup.experiments_retention",
                      "Keep experiments this long (EXPERIMENTS_RETENTION, days)")
                ->type_name("DAYS");
            flags
                .bind(app, "--checkpoints-retention", "cleanup.checkpoints_retention",
                      "Keep checkpoints this long (CHECKPOINTS_RETENTION, days)")
                ->type_name("DAYS");
            flags
                .bind(app, "--logs-retention", "cleanup.logs_retention",
                      "Keep logs this long (LOGS_RETENTION, days)")
                ->type_name("DAYS");
            flags
                .bind(app, "--rate-limit", "cleanup.rate_limit",
                      "Deletions per second (0: no limit)")
                ->type_name("N");
            app.footer(R"(
Targets: experiments /opt/ml/experiments/* (whole runs, 30 days), checkpoints
/opt/ml/checkpoints/* (7 days), logs /var/log/ml-* (14 days), temp /tmp/ml-*
(always), plus cleanup.targets. Never deleted: the newest keep_checkpoints
checkpoints of each run, names matching cleanup.protect, anything under a
directory holding .mlkeeper-keep, files open for writing, files changed within
min_age. Symlinks are never followed; other filesystems are never entered.

Exit codes: 0 success, 1 failure or circuit breaker tripped.

Examples:
  mlkeeper cleanup --dry-run
  EXPERIMENTS_RETENTION=60 mlkeeper cleanup --experiments-only --yes
  mlkeeper cleanup --aggressive --dry-run
  mlkeeper cleanup --force --yes          # past the max_files/max_bytes breakers)");
            Handler h;
            h.run = [o](Context& ctx) { return run_cleanup(*o, ctx); };
            return h;
        }};
}

}  // namespace mlk::cli
