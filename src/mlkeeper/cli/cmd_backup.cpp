// `mlkeeper backup`: the seeds' backup_models.sh, verified and crash-safe.
#include <unistd.h>

#include <iostream>
#include <optional>

#include <fmt/format.h>

#include <spdlog/spdlog.h>

#include "mlkeeper/backup/backup_job.hpp"
#include "mlkeeper/backup/offsite.hpp"
#include "mlkeeper/backup/verify.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/outcome_alerts.hpp"
#include "mlkeeper/cli/s3_support.hpp"
#include "mlkeeper/core/version.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::cli {

namespace {

// The --s3-sync step after a good backup. Never throws: a failure is reported in the result
// (and alerted), and the local backup stays whatever happens.
backup::SyncReport upload_offsite(Context& ctx, storage::s3::S3Client& s3, backup::DryRun dry_run,
                                  bool json, OutcomeAlerts& alerts) {
    backup::SyncOptions opts;
    opts.dry_run = dry_run;
    opts.progress = json ? util::ProgressMode::kNever : util::ProgressMode::kAuto;
    opts.policy = backup::remote_policy_from_config(ctx.config());
    const auto dest = ctx.config().path("backup.backup_dir");
    backup::SyncReport rep;
    rep.dry_run = dry_run == backup::DryRun::kYes;
    rep.remote = storage::s3::s3_url(s3.settings().bucket, s3.settings().prefix);
    try {
        std::optional<util::FileLock> lock;
        if (!rep.dry_run) {
            pid_t holder = 0;
            lock = util::FileLock::try_acquire(dest / ".mlkeeper-backup.lock", &holder);
            if (!lock) {
                throw Error(
                    fmt::format("another `mlkeeper backup` is already running (pid {})", holder));
            }
        }
        rep = backup::sync_to_s3(s3, dest, opts);
        spdlog::info("{}", rep.summary_line());
        if (!rep.dry_run) {
            alerts.resolve("backup_offsite_failed", "backup", "Off-site backups work again");
        }
    } catch (const std::exception& e) {
        rep.error = e.what();
        spdlog::error("off-site copy to {} failed: {}", rep.remote, rep.error);
        if (!rep.dry_run) {
            alert::Alert a;
            a.key = "backup_offsite_failed";
            a.check = "backup";
            a.severity = alert::Severity::kCritical;
            a.summary = "Upload of the off-site backup copy failed";
            a.value = rep.error;
            a.action =
                "The local backup is kept. Fix the cause (credentials, bucket, network) and "
                "run `mlkeeper backup --s3-sync`: it uploads every archive still missing.";
            alerts.fire(a);
        }
    }
    return rep;
}

}  // namespace

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
                .bind(app, "--textfile", "metrics.textfile_dir",
                      "Also write DIR/mlkeeper_backup.prom (node_exporter textfile collector)")
                ->type_name("DIR");
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
            auto* sync = flags.bind_switch(
                app, "--s3-sync", "backup.s3.sync", "true",
                "Then upload every archive not yet in S3 and apply remote retention (S3_BUCKET)");
            flags
                .bind_switch(app, "--no-s3-sync", "backup.s3.sync", "false",
                             "Do not upload, even with [backup.s3] sync = true")
                ->excludes(sync);
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

With --s3-sync (or [backup.s3] sync = true) it then uploads every local archive
not yet in s3://S3_BUCKET/S3_PREFIX (parts in parallel, each checked by the
server), with its manifest and checksum line, and applies the remote retention
([backup.s3] retention_days, keep_min). A failed upload leaves the local backup
in place and exits 1. Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or
~/.aws/credentials (AWS_PROFILE), as the aws CLI finds them.

Exit codes: 0 success, 1 backup or upload failed, 2 verification failed.

Examples:
  mlkeeper backup
  MODEL_DIR=/opt/ml/models BACKUP_DIR=/backup/models RETENTION_DAYS=30 mlkeeper backup
  mlkeeper backup --dry-run
  mlkeeper backup --incremental
  mlkeeper backup --compression gzip --level 9
  S3_BUCKET=my-ml-backups S3_STORAGE_CLASS=GLACIER mlkeeper backup --s3-sync
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
                const bool offsite = ctx.config().boolean("backup.s3.sync");
                std::optional<storage::s3::S3Client> s3;
                if (offsite) {
                    s3.emplace(s3_settings(ctx));  // bucket or credentials missing: exit 78
                }
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
                std::optional<backup::SyncReport> sync_rep;
                if (s3 && rep.exit_code == 0) {
                    sync_rep = upload_offsite(ctx, *s3, req.dry_run, o->json, alerts);
                }
                ctx.summary() = rep.to_json();
                ctx.summary().erase("retention");
                auto json = rep.to_json();
                if (sync_rep) {
                    json["offsite"] = sync_rep->to_json();
                    ctx.summary()["offsite"] = sync_rep->to_json();
                    ctx.summary()["offsite"].erase("retention");
                }
                if (o->json) {
                    std::cout << json.dump(2) << "\n";
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
                if (sync_rep && sync_rep->error.empty() && !o->json) {
                    std::cout << sync_rep->summary_line() << "\n";
                }
                if (sync_rep && !sync_rep->error.empty()) {
                    std::cerr << "mlkeeper: error: off-site copy failed: " << sync_rep->error
                              << (rep.dry_run ? "" : " (the local backup is kept)") << "\n";
                    return rep.exit_code == 0 ? 1 : rep.exit_code;
                }
                return rep.exit_code;
            };
            return h;
        }};
}

}  // namespace mlk::cli
