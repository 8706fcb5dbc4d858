// `mlkeeper backups list|prune`: what is in the backup directory, and retention.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <optional>

#include "mlkeeper/backup/catalog.hpp"
#include "mlkeeper/backup/offsite.hpp"
#include "mlkeeper/backup/prune.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/s3_support.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

namespace fs = std::filesystem;

// One row of `backups list`: a local archive, a remote one, or both.
struct Row {
    std::string name;
    std::optional<backup::CatalogEntry> local;
    std::optional<backup::RemoteArchive> remote;
    std::optional<backup::Manifest> remote_manifest;  // header only; rows with no local copy

    const backup::Manifest* manifest() const {
        if (local && local->manifest) {
            return &*local->manifest;
        }
        return remote_manifest ? &*remote_manifest : nullptr;
    }
    bool verified() const {
        const auto* m = manifest();
        return m != nullptr && m->verified_at.has_value();
    }
    std::string location() const { return local && remote ? "both" : local ? "local" : "remote"; }
};

std::vector<Row> merge(const std::vector<backup::CatalogEntry>& local,
                       const std::vector<backup::RemoteArchive>& remote) {
    std::map<std::string, Row> rows;
    for (const auto& c : local) {
        rows[c.name].local = c;
    }
    for (const auto& r : remote) {
        if (r.complete) {
            rows[r.name].remote = r;
        }
    }
    std::vector<Row> out;
    for (auto& [name, row] : rows) {
        row.name = name;
        out.push_back(std::move(row));
    }
    std::sort(out.begin(), out.end(), [](const Row& a, const Row& b) {
        auto t = [](const Row& r) { return r.local ? r.local->created : r.remote->created; };
        return t(a) != t(b) ? t(a) < t(b) : a.name < b.name;
    });
    return out;
}

nlohmann::json row_json(const Row& r) {
    const auto* c = r.local ? &*r.local : nullptr;
    const auto* m = r.manifest();
    return {{"archive", r.name},
            {"created_at", util::iso8601_utc(c ? c->created : r.remote->created)},
            {"size", c ? c->size : r.remote->size},
            {"files", m ? nlohmann::json(m->totals.files) : nullptr},
            {"bytes", m ? nlohmann::json(m->totals.bytes) : nullptr},
            {"kind", m ? nlohmann::json(backup::to_string(m->kind)) : nullptr},
            {"parent", m && m->parent ? nlohmann::json(*m->parent) : nullptr},
            {"verified", m ? nlohmann::json(r.verified()) : nullptr},
            {"verified_at", m && m->verified_at ? nlohmann::json(*m->verified_at) : nullptr},
            {"location", r.location()},
            {"remote_key", r.remote ? nlohmann::json(r.remote->key) : nullptr},
            {"storage_class", r.remote ? nlohmann::json(r.remote->storage_class) : nullptr},
            {"manifest_error", c ? nlohmann::json(c->manifest_error) : nullptr}};
}

int list(const Context& ctx, bool json, bool remote_only) {
    auto dest = ctx.config().path("backup.backup_dir");
    const bool s3 = storage::s3::s3_configured(ctx.config());
    if (remote_only && !s3) {
        throw ConfigError(
            "backups list --remote: no bucket configured (set S3_BUCKET or "
            "[backup.s3] bucket)");
    }
    std::error_code ec;
    std::vector<backup::CatalogEntry> catalog;
    if (!remote_only) {
        if (fs::is_directory(dest, ec)) {
            catalog = backup::list_archives(dest);
        } else if (!s3) {
            throw Error(fmt::format("backup directory {} does not exist (set BACKUP_DIR or --dest)",
                                    dest.string()));
        }
    }
    std::vector<backup::RemoteArchive> remote;
    std::string remote_error;
    std::string where = dest.string();
    std::optional<storage::s3::S3Client> client;
    if (s3) {
        client.emplace(s3_settings(ctx));
        where = storage::s3::s3_url(client->settings().bucket, client->settings().prefix);
        try {
            remote = backup::list_remote(*client);
        } catch (const storage::s3::S3Error& e) {
            if (remote_only) {
                throw;
            }
            remote_error = e.what();
            std::cerr << "mlkeeper: warning: cannot list the off-site copy: " << e.what() << "\n";
        }
    }
    auto rows = merge(catalog, remote);
    for (auto& r : rows) {
        if (!r.local && r.remote && r.remote->has_manifest) {
            try {
                r.remote_manifest = backup::parse_manifest_header(
                    client->get_bytes(r.remote->key + ".manifest.json"));
            } catch (const std::exception& e) {
                spdlog::warn("remote manifest of {}: {}", r.name, e.what());
            }
        }
    }
    if (json) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& r : rows) {
            arr.push_back(row_json(r));
        }
        std::cout << arr.dump(2) << "\n";
        return remote_error.empty() ? 0 : 1;
    }
    if (rows.empty()) {
        std::cout << "no backups in " << (remote_only ? where : dest.string()) << "\n";
        return remote_error.empty() ? 0 : 1;
    }
    std::cout << fmt::format("{:<42} {:<19} {:>10} {:>8} {:<11} {:<8} {}\n", "ARCHIVE", "CREATED",
                             "SIZE", "FILES", "KIND", "VERIFIED", "LOCATION");
    for (const auto& r : rows) {
        const auto* c = r.local ? &*r.local : nullptr;
        const auto* m = r.manifest();
        std::cout << fmt::format("{:<42} {:<19} {:>10} {:>8} {:<11} {:<8} {}\n", r.name,
                                 util::format_local(c ? c->created : r.remote->created),
                                 util::format_bytes(c ? c->size : r.remote->size),
                                 m ? std::to_string(m->totals.files) : "?",
                                 m ? std::string(backup::to_string(m->kind)) : "?",
                                 r.verified() ? "yes" : (m ? "no" : "no manifest"), r.location());
    }
    return remote_error.empty() ? 0 : 1;
}

int prune_remote(Context& ctx, bool dry_run, bool json) {
    storage::s3::S3Client client(s3_settings(ctx));
    backup::SyncOptions opts;
    opts.dry_run = dry_run ? backup::DryRun::kYes : backup::DryRun::kNo;
    opts.policy = backup::remote_policy_from_config(ctx.config());
    auto r = backup::prune_remote(client, ctx.config().path("backup.backup_dir"), opts);
    ctx.summary() = {{"dry_run", dry_run}, {"remote", r.remote}, {"deleted", r.deleted}};
    if (json) {
        std::cout << r.to_json().dump(2) << "\n";
        return 0;
    }
    for (const auto& d : r.retention) {
        std::cout << fmt::format(
            "{} {}  ({})\n",
            d.verdict == backup::Verdict::kKeep ? "keep  " : (dry_run ? "would delete" : "delete"),
            d.name, util::join(d.reasons, "; "));
    }
    std::cout << fmt::format("{}{} remote backup{} in {}\n",
                             dry_run ? "dry run: would delete " : "deleted ", r.deleted.size(),
                             r.deleted.size() == 1 ? "" : "s", r.remote);
    return 0;
}

int prune(Context& ctx, bool dry_run, bool json, bool remote) {
    if (remote) {
        return prune_remote(ctx, dry_run, json);
    }
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
                bool json = false, dry_run = false, remote = false;
            };
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            flags.bind(app, "--dest", "backup.backup_dir", "Backup directory (BACKUP_DIR)")
                ->type_name("DIR");
            auto* ls =
                app.add_subcommand("list", "Archives with time, size, files, kind, verified");
            ls->add_flag("--json", o->json, "JSON output");
            ls->add_flag("--remote", o->remote,
                         "Only the off-site copy in s3://S3_BUCKET/S3_PREFIX");
            auto* pr =
                app.add_subcommand("prune", "Delete backups the retention policy does not keep");
            pr->add_flag("-n,--dry-run", o->dry_run, "Show decisions and reasons; delete nothing");
            pr->add_flag("--json", o->json, "JSON output");
            pr->add_flag("--remote", o->remote,
                         "Apply [backup.s3] retention_days/keep_min to the off-site copy");
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
  mlkeeper backups prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6
  mlkeeper backups list --remote
  mlkeeper backups prune --remote --dry-run

With [backup.s3] bucket set, `list` also shows the archives in S3 and LOCATION
says local, remote or both.)");
            Handler h;
            h.run = [o, ls](Context& ctx) {
                if (ls->parsed()) {
                    return list(ctx, o->json, o->remote);
                }
                return prune(ctx, o->dry_run, o->json, o->remote);
            };
            return h;
        }};
}

}  // namespace mlk::cli
