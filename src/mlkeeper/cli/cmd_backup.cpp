// `mlkeeper backup`: the seeds' backup_models.sh, verified and crash-safe.
#include <unistd.h>

#include <iostream>

#include <spdlog/spdlog.h>

#include "mlkeeper/backup/backup_job.hpp"
#include "mlkeeper/backup/verify.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/outcome_alerts.hpp"
#include "mlkeeper/core/version.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::cli {

Command backup_command() {
    return Command{
        "backup", "Back up the model directory: verified archive, manifest, retention",
        "/var/log/ml-backup.log", Record::kYes, [](CLI::App& app, FlagBindings& flags) {
            struct Opts {
                bool incremental = false, full = false, dry_run = false, json = false;
                std::string verify;
                unsigned threads = 0;
            };
            auto o = std::make_shared<Opts>();
            flags.bind(app, "--source", "backup.model_dir", "Directory to back up (MODEL_DIR)")
                ->type_name("DIR");
            flags.bind(app, "--dest", "backup.backup_dir", "Where archives go (BACKUP_DIR)")
                ->type_name("DIR");
            flags.bind(app, "--compression", "backup.compression", "zstd (default) or gzip")
                ->type_name("CODEC");
            flags
                .bind(app, "--level", "backup.compression_level",
                      "gzip 1-9 (default 6), zstd 1-19 (default 3) (COMPRESSION_LEVEL)")
                ->type_name("N");
            flags
                .bind(app, "--retention-days", "backup.retention_days",
                      "Delete backups older than this (RETENTION_DAYS)")
                ->type_name("DAYS");
            flags.bind_switch(app, "--no-verify", "backup.verify_backup", "false",
                              "Skip verification after writing (VERIFY_BACKUP=false)");
            auto* inc = app.add_flag("--incremental", o->incremental,
                                     "Store only files changed since the last backup");
            app.add_flag("--full", o->full, "Force a full backup")->excludes(inc);
            app.add_flag("-n,--dry-run", o->dry_run,
                         "Show what would be written and deleted; change nothing");
            app.add_flag("--json", o->json, "Print the result as JSON");
            app.add_option("--verify", o->verify,
                           "Verify an existing archive instead of backing up (exit 2 if bad)")
                ->type_name("FILE");
            app.add_option("--threads", o->threads, "Compression threads (default: all cores)");
            app.footer(R"(
Writes <dest>/models_backup_YYYYMMDD_HHMMSS.tar.zst (or .tar.gz) with a
.manifest.json beside it and a line in <dest>/checksums.txt (sha256sum -c works),
verifies it, then deletes backups older than RETENTION_DAYS — but never the
keep_min newest verified ones.

Exit codes: 0 success, 1 backup failed, 2 verification failed.

Examples:
  mlkeeper backup
  MODEL_DIR=/opt/ml/models BACKUP_DIR=/backup/models RETENTION_DAYS=30 mlkeeper backup
  mlkeeper backup --dry-run
  mlkeeper backup --incremental
  mlkeeper backup --compression gzip --level 9
  mlkeeper backup --verify /backup/models/models_backup_20250131_020000.tar.gz)");
            Handler h;
            h.run = [o](Context& ctx) {
                if (!o->verify.empty()) {
                    return run_verify({o->verify}, o->json, ctx);
                }
                backup::BackupRequest req;
                if (o->incremental || o->full) {
                    req.kind = o->incremental ? backup::BackupKind::kIncremental
                                              : backup::BackupKind::kFull;
                }
                req.dry_run = o->dry_run ? backup::DryRun::kYes : backup::DryRun::kNo;
                req.threads = o->threads;
                req.progress = o->json ? util::ProgressMode::kNever : util::ProgressMode::kAuto;
                req.tool_version = core::version();
                OutcomeAlerts alerts(ctx);
                backup::BackupReport rep;
                try {
                    rep = backup::run_backup(ctx.config(), req);
                } catch (const std::exception& e) {
                    alert::Alert a;
                    a.key = "backup_failed";
                    a.check = "backup";
                    a.severity = alert::Severity::kCritical;
                    a.summary = "Model backup failed";
                    a.value = e.what();
                    a.action =
                        "Read the error, fix it and run `mlkeeper backup`; older backups "
                        "are untouched.";
                    alerts.fire(a);
                    throw;
                }
                if (!rep.dry_run) {
                    alerts.resolve("backup_failed", "backup", "Model backups work again");
                    if (rep.exit_code == 2) {
                        alert::Alert a;
                        a.key = "backup_verify_failed";
                        a.check = "backup";
                        a.severity = alert::Severity::kCritical;
                        a.summary = "Verification of " + rep.archive + " failed";
                        a.value = rep.verify_problem;
                        a.action =
                            "Check the disk holding BACKUP_DIR; the archive is kept but not "
                            "counted as verified.";
                        alerts.fire(a);
                    } else if (rep.verified.value_or(false)) {
                        alerts.resolve("backup_verify_failed", "backup", "Backups verify again");
                    }
                }
                ctx.summary() = rep.to_json();
                ctx.summary().erase("retention");
                if (o->json) {
                    std::cout << rep.to_json().dump(2) << "\n";
                } else {
                    std::cout << rep.summary_line() << "\n";
                    if (rep.dry_run) {
                        for (const auto& d : rep.retention) {
                            std::cout
                                << "  "
                                << (d.verdict == backup::Verdict::kKeep ? "keep   " : "delete ")
                                << d.name << "  (" << util::join(d.reasons, "; ") << ")\n";
                        }
                    }
                }
                spdlog::info("{}", rep.summary_line());
                if (rep.exit_code == 2) {
                    spdlog::error("verification of {} failed: {}", rep.archive, rep.verify_problem);
                }
                return rep.exit_code;
            };
            return h;
        }};
}

}  // namespace mlk::cli
