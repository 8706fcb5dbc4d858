// `mlkeeper backups list|prune`: what is in the backup directory, and retention.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <optional>

#include "mlkeeper/backup/catalog.hpp"
#include "mlkeeper/backup/prune.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

namespace fs = std::filesystem;

int list(const Context& ctx, bool json) {
    auto dest = ctx.config().path("backup.backup_dir");
    std::error_code ec;
    if (!fs::is_directory(dest, ec)) {
        throw Error(fmt::format("backup directory {} does not exist (set BACKUP_DIR or --dest)",
                                dest.string()));
    }
    auto catalog = backup::list_archives(dest);
    if (json) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& c : catalog) {
            arr.push_back(
                {{"archive", c.name},
                 {"created_at", util::iso8601_utc(c.created)},
                 {"size", c.size},
                 {"files", c.manifest ? nlohmann::json(c.manifest->totals.files) : nullptr},
                 {"bytes", c.manifest ? nlohmann::json(c.manifest->totals.bytes) : nullptr},
                 {"kind", backup::to_string(c.kind())},
                 {"parent",
                  c.manifest && c.manifest->parent ? nlohmann::json(*c.manifest->parent) : nullptr},
                 {"verified", c.verified()},
                 {"verified_at", c.manifest && c.manifest->verified_at
                                     ? nlohmann::json(*c.manifest->verified_at)
                                     : nullptr},
                 {"location", "local"},
                 {"manifest_error", c.manifest_error}});
        }
        std::cout << arr.dump(2) << "\n";
        return 0;
    }
    if (catalog.empty()) {
        std::cout << "no backups in " << dest.string() << "\n";
        return 0;
    }
    std::cout << fmt::format("{:<42} {:<19} {:>10} {:>8} {:<11} {:<8} {}\n", "ARCHIVE", "CREATED",
                             "SIZE", "FILES", "KIND", "VERIFIED", "LOCATION");
    for (const auto& c : catalog) {
        std::cout << fmt::format(
            "{:<42} {:<19} {:>10} {:>8} {:<11} {:<8} {}\n", c.name, util::format_local(c.created),
            util::format_bytes(c.size), c.manifest ? std::to_string(c.manifest->totals.files) : "?",
            backup::to_string(c.kind()), c.verified() ? "yes" : (c.manifest ? "no" : "no manifest"),
            "local");
    }
    return 0;
}

int prune(Context& ctx, bool dry_run, bool json) {
    auto dest = ctx.config().path("backup.backup_dir");
    std::optional<util::FileLock> lock;
    if (!dry_run) {
        pid_t holder = 0;
        lock = util::FileLock::try_acquire(dest / ".mlkeeper-backup.lock", &holder);
        if (!lock) {
            throw Error(fmt::format("another `mlkeeper backup` is already running (pid {}) on {}",
                                    holder, dest.string()));
        }
    }
    auto r = backup::prune_destination(dest, backup::policy_from_config(ctx.config()),
                                       std::chrono::system_clock::now(),
                                       dry_run ? backup::DryRun::kYes : backup::DryRun::kNo);
    nlohmann::json decisions = nlohmann::json::array();
    for (const auto& d : r.decisions) {
        decisions.push_back({{"archive", d.name},
                             {"verdict", backup::to_string(d.verdict)},
                             {"reasons", d.reasons},
                             {"warnings", d.warnings}});
    }
    ctx.summary() = {{"dry_run", dry_run}, {"deleted", r.deleted}, {"bytes_freed", r.bytes_freed}};
    if (json) {
        std::cout << nlohmann::json{{"dry_run", dry_run},
                                    {"decisions", decisions},
                                    {"deleted", r.deleted},
                                    {"bytes_freed", r.bytes_freed}}
                         .dump(2)
                  << "\n";
        return 0;
    }
    for (const auto& d : r.decisions) {
        std::cout << fmt::format(
            "{} {}  ({})\n",
            d.verdict == backup::Verdict::kKeep ? "keep  " : (dry_run ? "would delete" : "delete"),
            d.name, util::join(d.reasons, "; "));
        for (const auto& w : d.warnings) {
            std::cout << "       warning: " << w << "\n";
        }
    }
    auto line = fmt::format("{}{} backup{} ({})", dry_run ? "dry run: would delete " : "deleted ",
                            r.deleted.size(), r.deleted.size() == 1 ? "" : "s",
                            util::format_bytes(r.bytes_freed));
    std::cout << line << "\n";
    spdlog::info("{}", line);
    return 0;
}

}  // namespace

Command backups_command() {
    return Command{
        "backups", "List backups, or apply the retention policy (prune)", "/var/log/ml-backup.log",
        Record::kYes, [](CLI::App& app, FlagBindings& flags) {
            struct Opts {
                bool json = false, dry_run = false;
            };
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            flags.bind(app, "--dest", "backup.backup_dir", "Backup directory (BACKUP_DIR)")
                ->type_name("DIR");
            auto* ls =
                app.add_subcommand("list", "Archives with time, size, files, kind, verified");
            ls->add_flag("--json", o->json, "JSON output");
            auto* pr =
                app.add_subcommand("prune", "Delete backups the retention policy does not keep");
            pr->add_flag("-n,--dry-run", o->dry_run, "Show decisions and reasons; delete nothing");
            pr->add_flag("--json", o->json, "JSON output");
            flags.bind(*pr, "--retention-days", "backup.retention_days", "RETENTION_DAYS")
                ->type_name("DAYS");
            flags.bind(*pr, "--keep-min", "backup.keep_min", "Newest verified backups always kept")
                ->type_name("N");
            flags.bind(*pr, "--keep-last", "backup.keep_last", "Keep the N newest")->type_name("N");
            flags.bind(*pr, "--keep-daily", "backup.keep_daily", "Keep one a day for N days")
                ->type_name("N");
            flags.bind(*pr, "--keep-weekly", "backup.keep_weekly", "Keep one a week for N weeks")
                ->type_name("N");
            flags
                .bind(*pr, "--keep-monthly", "backup.keep_monthly", "Keep one a month for N months")
                ->type_name("N");
            app.footer(R"(
Examples:
  mlkeeper backups list
  mlkeeper backups list --json | jq '.[] | select(.verified | not)'
  mlkeeper backups prune --dry-run
  mlkeeper backups prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6)");
            Handler h;
            h.run = [o, ls](Context& ctx) {
                if (ls->parsed()) {
                    return list(ctx, o->json);
                }
                return prune(ctx, o->dry_run, o->json);
            };
            return h;
        }};
}

}  // namespace mlk::cli
