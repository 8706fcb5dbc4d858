#include "mlkeeper/backup/backup_job.hpp"

#include <sys/statvfs.h>

#include <future>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mlkeeper/backup/catalog.hpp"
#include "mlkeeper/backup/codec.hpp"
#include "mlkeeper/backup/create.hpp"
#include "mlkeeper/backup/encryption.hpp"
#include "mlkeeper/backup/verify.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;

std::uint64_t free_bytes(fs::path p) {
    while (!p.empty() && !fs::exists(p)) {
        p = p.parent_path();
    }
    struct statvfs vfs {};
    if (p.empty() || ::statvfs(p.c_str(), &vfs) != 0) {
        return UINT64_MAX;  // cannot tell: do not block the backup on it
    }
    return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

bool is_within(const fs::path& inner, const fs::path& outer) {
    auto i = fs::weakly_canonical(inner);
    auto o = fs::weakly_canonical(outer);
    auto [end, _] = std::mismatch(o.begin(), o.end(), i.begin(), i.end());
    return end == o.end();
}

// The archive the next incremental builds on: the newest backup of the same
// source that has a manifest (and passed verification, when we verify).
const CatalogEntry* find_parent(const std::vector<CatalogEntry>& catalog, const std::string& source,
                                bool need_verified) {
    for (auto it = catalog.rbegin(); it != catalog.rend(); ++it) {
        if (it->manifest && it->manifest->source == source && (!need_verified || it->verified())) {
            return &*it;
        }
    }
    return nullptr;
}

const CatalogEntry* chain_full(const std::vector<CatalogEntry>& catalog, const CatalogEntry* e) {
    for (int guard = 0; e != nullptr && guard < 100000; ++guard) {
        if (e->kind() == BackupKind::kFull || !e->manifest->parent) {
            return e;
        }
        const auto& parent = *e->manifest->parent;
        auto it = std::find_if(catalog.begin(), catalog.end(),
                               [&](const CatalogEntry& c) { return c.name == parent; });
        e = it == catalog.end() || !it->manifest ? nullptr : &*it;
    }
    return nullptr;
}

double observed_ratio(const std::vector<CatalogEntry>& catalog) {
    for (auto it = catalog.rbegin(); it != catalog.rend(); ++it) {
        if (it->manifest && it->manifest->totals.stored_bytes > (1 << 20)) {
            double r = static_cast<double>(it->manifest->archive_size) /
                       static_cast<double>(it->manifest->totals.stored_bytes);
            return std::clamp(r, 0.01, 1.1);
        }
    }
    return 1.0;  // unknown: assume incompressible, as model weights mostly are
}

}  // namespace

nlohmann::json BackupReport::to_json() const {
    nlohmann::json ret = nlohmann::json::array();
    for (const auto& d : retention) {
        ret.push_back(
            {{"archive", d.name}, {"verdict", to_string(d.verdict)}, {"reasons", d.reasons}});
    }
    double ratio =
        bytes_read > 0 ? static_cast<double>(bytes_out) / static_cast<double>(bytes_read) : 0;
    return {
        {"archive", archive},
        {"kind", to_string(kind)},
        {"kind_reason", kind_reason},
        {"dry_run", dry_run},
        {"files", files},
        {"unchanged_files", unchanged_files},
        {"bytes_in", bytes_in},
        {"bytes_read", bytes_read},
        {"bytes_out", dry_run ? estimated_bytes_out : bytes_out},
        {"ratio", ratio},
        {"seconds", seconds},
        {"sha256", sha256},
        {"verified", verified ? nlohmann::json(*verified) : nlohmann::json(nullptr)},
        {"verify_problem", verify_problem},
        {"changed_during_backup", changed_during_backup},
        {"skipped", skipped},
        {"retention", ret},
        {"deleted", deleted},
        {"stale_temp_files_removed", temps_removed},
        {"exit_code", exit_code},
    };
}

std::string BackupReport::summary_line() const {
    std::string kind_text = std::string(to_string(kind));
    if (kind == BackupKind::kIncremental) {
        kind_text += fmt::format(", {} unchanged", unchanged_files);
    }
    if (dry_run) {
        return fmt::format(
            "dry run: would write {} ({}): {} files, read {}, about {}; would delete {} old "
            "backup{}",
            archive, kind_text, files, util::format_bytes(bytes_read),
            util::format_bytes(estimated_bytes_out), deleted.size(),
            deleted.size() == 1 ? "" : "s");
    }
    std::string line =
        fmt::format("backup {} ({}): {} files, {} read -> {}", archive, kind_text, files,
                    util::format_bytes(bytes_read), util::format_bytes(bytes_out));
    if (bytes_read > 0) {
        line += fmt::format(
            " ({:.0f}%)", 100.0 * static_cast<double>(bytes_out) / static_cast<double>(bytes_read));
    }
    line += fmt::format(" in {:.1f}s", seconds);
    if (seconds > 0 && bytes_read > 0) {
        line += fmt::format(" ({})", util::format_rate(static_cast<double>(bytes_read) / seconds));
    }
    line += verified ? (*verified ? "; verified" : "; VERIFICATION FAILED: " + verify_problem)
                     : "; not verified (VERIFY_BACKUP=false)";
    if (!changed_during_backup.empty()) {
        line += fmt::format("; {} file{} changed while read", changed_during_backup.size(),
                            changed_during_backup.size() == 1 ? "" : "s");
    }
    if (!deleted.empty()) {
        line += fmt::format("; deleted {} old backup{}", deleted.size(),
                            deleted.size() == 1 ? "" : "s");
    }
    return line;
}

BackupReport run_backup(const core::Config& cfg, const BackupRequest& req) {
    BackupReport rep;
    rep.dry_run = req.dry_run == DryRun::kYes;
    const fs::path source = fs::absolute(cfg.path("backup.model_dir")).lexically_normal();
    const fs::path dest = fs::absolute(cfg.path("backup.backup_dir")).lexically_normal();
    const auto codec = *codec_from_name(cfg.str("backup.compression"));
    const int level = static_cast<int>(cfg.integer("backup.compression_level"));
    const bool verify = cfg.boolean("backup.verify_backup");

    std::error_code ec;
    if (!fs::is_directory(source, ec)) {
        throw Error(
            fmt::format("source directory {} does not exist or is not a directory (set "
                        "MODEL_DIR, [backup] model_dir or --source)",
                        source.string()));
    }
    if (is_within(dest, source)) {
        throw Error(
            fmt::format("backup directory {} is inside the source {}: the backup would "
                        "contain itself; choose another BACKUP_DIR",
                        dest.string(), source.string()));
    }

    std::optional<util::FileLock> lock;
    if (!rep.dry_run) {
        fs::create_directories(dest, ec);
        if (ec) {
            throw Error(
                fmt::format("cannot create backup directory {}: {}", dest.string(), ec.message()));
        }
        pid_t holder = 0;
        try {
            lock = util::FileLock::try_acquire(dest / ".mlkeeper-backup.lock", &holder);
        } catch (const std::system_error& e) {
            throw Error(fmt::format("cannot lock backup directory: {}", e.what()));
        }
        if (!lock) {
            throw Error(fmt::format("another `mlkeeper backup` is already running (pid {}) on {}",
                                    holder, dest.string()));
        }
        auto h = tidy_destination(dest);
        rep.temps_removed = h.temps_removed;
        if (h.temps_removed + h.orphan_manifests_removed + h.checksums_added > 0) {
            spdlog::info(
                "tidied {} after an interrupted run: {} temp file(s) and {} orphan "
                "manifest(s) removed, {} checksum line(s) restored",
                dest.string(), h.temps_removed, h.orphan_manifests_removed, h.checksums_added);
        }
    }
    auto catalog = fs::is_directory(dest, ec) ? list_archives(dest) : std::vector<CatalogEntry>{};

    // Full or incremental?
    bool want_incremental =
        req.kind ? *req.kind == BackupKind::kIncremental : cfg.boolean("backup.incremental");
    const CatalogEntry* parent = nullptr;
    auto now = std::chrono::system_clock::now();
    if (want_incremental) {
        parent = find_parent(catalog, source.string(), verify);
        const CatalogEntry* full = chain_full(catalog, parent);
        if (parent == nullptr) {
            rep.kind_reason = "no previous verified backup of " + source.string();
        } else if (full == nullptr) {
            rep.kind_reason = "the previous backup chain is incomplete";
            parent = nullptr;
        } else if (now - full->created > cfg.duration("backup.full_every")) {
            rep.kind_reason =
                fmt::format("the last full backup is older than {}",
                            util::format_duration_setting(cfg.duration("backup.full_every")));
            parent = nullptr;
        }
    }
    // The catalog holds manifest headers; the parent's entries (a JSON parse of about 1 MB per
    // 3,000 files) are read on a thread of their own while the tree is walked (mostly the
    // kernel's stat work).
    std::future<Manifest> parent_read;
    if (parent != nullptr) {
        parent_read = std::async(std::launch::async, [path = manifest_path_for(parent->path)] {
            return read_manifest(path);
        });
    }
    ScanResult scan;
    try {
        scan = walk_source(source);
    } catch (const std::exception& e) {
        throw Error(fmt::format("cannot read source directory: {}", e.what()));
    }
    std::optional<Manifest> parent_manifest;
    if (parent != nullptr) {
        try {
            parent_manifest = parent_read.get();
        } catch (const std::exception& e) {
            rep.kind_reason = fmt::format("cannot read the previous manifest: {}", e.what());
            parent = nullptr;
        }
    }
    rep.kind = parent != nullptr ? BackupKind::kIncremental : BackupKind::kFull;
    match_parent(scan, parent_manifest ? &*parent_manifest : nullptr);
    rep.files = scan.files;
    rep.unchanged_files = scan.unchanged_files;
    rep.bytes_in = scan.bytes_total;
    rep.skipped = scan.skipped;
    for (const auto& s : scan.skipped) {
        spdlog::warn("skipped {}", s);
    }

    rep.estimated_bytes_out = static_cast<std::uint64_t>(static_cast<double>(scan.bytes_to_read) *
                                                         observed_ratio(catalog)) +
                              scan.items.size() * 1536 + (64 << 10);
    auto avail = free_bytes(dest);
    if (rep.estimated_bytes_out > avail) {
        throw Error(fmt::format(
            "not enough space in {}: this backup needs about {} but only {} is "
            "free; free some space or lower RETENTION_DAYS",
            dest.string(), util::format_bytes(rep.estimated_bytes_out), util::format_bytes(avail)));
    }

    const auto encrypt = encryption_from_config(cfg);  // bad keys: exit 78 before any work
    auto archive = next_archive_path(dest, codec, now, encrypt ? Encrypted::kYes : Encrypted::kNo);
    rep.archive = archive.filename().string();
    auto policy = policy_from_config(cfg);
    if (rep.dry_run) {
        rep.bytes_read = scan.bytes_to_read;
        CatalogEntry planned;
        planned.name = rep.archive;
        planned.created = now;
        Manifest m;
        m.verified_at = "pending";
        planned.manifest = m;
        catalog.push_back(planned);
        rep.retention = plan_for(catalog, policy, now);
        for (const auto& d : rep.retention) {
            if (d.verdict == Verdict::kDelete) {
                rep.deleted.push_back(d.name);
            }
        }
        return rep;
    }

    CreateOptions opts;
    opts.source = source;
    opts.dest = dest;
    opts.codec = codec;
    opts.level = level;
    opts.threads = req.threads;
    opts.kind = rep.kind;
    opts.parent = parent_manifest ? &*parent_manifest : nullptr;
    opts.parent_archive = parent != nullptr ? parent->name : std::string();
    opts.progress = req.progress;
    opts.tool_version = req.tool_version;
    opts.encrypt = encrypt ? &*encrypt : nullptr;
    opts.verify = verify ? CreateOptions::Verify::kYes : CreateOptions::Verify::kNo;
    CreateResult created;
    try {
        created = create_archive(opts, scan, archive, now);
    } catch (const std::exception& e) {
        throw Error(
            fmt::format("backup failed, nothing was written to {}: {}", dest.string(), e.what()));
    }
    rep.bytes_read = created.bytes_read;
    rep.bytes_out = created.manifest.archive_size;
    rep.sha256 = created.manifest.archive_sha256;
    rep.seconds = created.seconds;
    rep.changed_during_backup = created.manifest.changed_during_backup;
    for (const auto& p : rep.changed_during_backup) {
        spdlog::warn("{} changed while it was read; the archive holds it as read", p);
    }

    if (created.verification) {
        rep.verified = created.verification->ok;
        if (!created.verification->ok) {
            rep.verify_problem = created.verification->problem;
            rep.exit_code = 2;
            return rep;  // keep older backups: retention only after a good one
        }
    }
    // The catalog read before the backup, plus the new archive: no second
    // parse of every manifest in the directory.
    CatalogEntry fresh;
    fresh.path = archive;
    fresh.name = rep.archive;
    fresh.created = now;
    fresh.size = rep.bytes_out;
    fresh.manifest = std::move(created.manifest);
    fresh.manifest->entries.clear();  // like the rest of the catalog: header only
    fresh.manifest->entries.shrink_to_fit();
    catalog.push_back(std::move(fresh));
    auto pruned = prune_catalog(dest, catalog, policy, now, DryRun::kNo);
    rep.retention = std::move(pruned.decisions);
    rep.deleted = std::move(pruned.deleted);
    return rep;
}

}  // namespace mlk::backup
