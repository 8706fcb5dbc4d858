#include "mlkeeper/backup/offsite.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mlkeeper/backup/catalog.hpp"
#include "mlkeeper/backup/checksums.hpp"
#include "mlkeeper/backup/manifest.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/sha256.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using storage::s3::S3Client;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kManifestSuffix = ".manifest.json";

std::string content_type_for(std::string_view name) {
    return name.ends_with(".age")   ? "application/octet-stream"
           : name.ends_with(".zst") ? "application/zstd"
                                    : "application/gzip";
}

// The archive's SHA-256 as recorded locally: manifest, else checksums.txt, else computed.
std::string local_sha256(const fs::path& dest, const CatalogEntry& c) {
    if (c.manifest && !c.manifest->archive_sha256.empty()) {
        return c.manifest->archive_sha256;
    }
    try {
        auto sums = read_checksums(dest / kChecksumsFileName);
        if (auto it = sums.find(c.name); it != sums.end()) {
            return it->second;
        }
    } catch (const std::exception& e) {
        spdlog::warn("{}: {}", (dest / kChecksumsFileName).string(), e.what());
    }
    return util::sha256_file_hex(c.path);
}

// The first field of a sha256sum line.
std::string hash_of_line(const std::string& line) {
    std::string_view v = line;
    if (!v.empty() && v.front() == '\\') {
        v.remove_prefix(1);
    }
    auto h = std::string(v.substr(0, std::min<std::size_t>(64, v.size())));
    std::transform(h.begin(), h.end(), h.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    return h;
}

std::string ordinal_list(const std::vector<std::string>& names) {
    return names.empty() ? "none" : util::join(names, ", ");
}

}  // namespace

std::vector<RemoteArchive> list_remote(S3Client& s3) {
    const std::string& prefix = s3.settings().prefix;
    std::map<std::string, RemoteArchive> by_name;
    std::set<std::string> manifests, sums;
    for (const auto& o : s3.list(prefix)) {
        std::string_view rest = std::string_view(o.key).substr(prefix.size());
        if (rest.find('/') != std::string_view::npos) {
            continue;  // another host's or a user's "subdirectory"
        }
        if (is_archive_name(rest)) {
            RemoteArchive a;
            a.name = std::string(rest);
            a.key = o.key;
            a.size = o.size;
            a.storage_class = o.storage_class;
            a.created = archive_name_time(rest).value_or(std::chrono::system_clock::time_point{});
            by_name[a.name] = a;
        } else if (rest.ends_with(kManifestSuffix)) {
            manifests.insert(std::string(rest.substr(0, rest.size() - kManifestSuffix.size())));
        } else if (rest.ends_with(kRemoteChecksumSuffix)) {
            sums.insert(std::string(rest.substr(0, rest.size() - kRemoteChecksumSuffix.size())));
        }
    }
    std::vector<RemoteArchive> out;
    for (auto& [name, a] : by_name) {
        a.has_manifest = manifests.contains(name);
        a.complete = sums.contains(name);
        out.push_back(std::move(a));
    }
    std::sort(out.begin(), out.end(), [](const RemoteArchive& a, const RemoteArchive& b) {
        return a.created != b.created ? a.created < b.created : a.name < b.name;
    });
    return out;
}

RetentionPolicy remote_policy_from_config(const core::Config& cfg) {
    RetentionPolicy p;
    p.max_age = std::chrono::seconds(cfg.integer("backup.s3.retention_days") * 86400);
    p.keep_min = static_cast<int>(cfg.integer("backup.s3.keep_min"));
    return p;
}

nlohmann::json SyncReport::to_json() const {
    nlohmann::json decisions = nlohmann::json::array();
    for (const auto& d : retention) {
        decisions.push_back(
            {{"archive", d.name}, {"verdict", to_string(d.verdict)}, {"reasons", d.reasons}});
    }
    return {{"remote", remote},
            {"dry_run", dry_run},
            {"uploaded", uploaded},
            {"already_remote", already_remote.size()},
            {"bytes_uploaded", bytes_uploaded},
            {"retries", retries},
            {"seconds", seconds},
            {"retention", decisions},
            {"deleted", deleted},
            {"leftovers_removed", leftovers_removed},
            {"error", error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error)}};
}

std::string SyncReport::summary_line() const {
    if (dry_run) {
        return fmt::format("s3 dry run: would upload {} archive{} to {}; would delete {} remote",
                           uploaded.size(), uploaded.size() == 1 ? "" : "s", remote,
                           deleted.size());
    }
    return fmt::format(
        "s3: uploaded {} archive{} ({}) to {} in {:.1f}s{}; {} already there; "
        "deleted {} remote",
        uploaded.size(), uploaded.size() == 1 ? "" : "s", util::format_bytes(bytes_uploaded),
        remote, seconds, retries > 0 ? fmt::format(" ({} retries)", retries) : "",
        already_remote.size(), deleted.size());
}

namespace {

// Remote retention over a listing the caller already has (`remote`: complete archives only;
// `local`: names present in `dest`).
SyncReport prune_listed(S3Client& s3, const fs::path& dest, std::vector<RemoteArchive> remote,
                        const std::set<std::string>& local, const SyncOptions& opts) {
    std::error_code ec;
    SyncReport rep;
    rep.dry_run = opts.dry_run == DryRun::kYes;
    rep.remote = storage::s3::s3_url(s3.settings().bucket, s3.settings().prefix);
    std::vector<ArchiveInfo> infos;
    std::optional<std::size_t> newest_verified;
    for (const auto& r : remote) {
        ArchiveInfo a;
        a.name = r.name;
        a.created = r.created;
        if (r.has_manifest) {
            try {
                const fs::path here = dest / (r.name + std::string(kManifestSuffix));
                Manifest m =
                    fs::exists(here, ec)
                        ? read_manifest_header(here)
                        : parse_manifest_header(s3.get_bytes(r.key + std::string(kManifestSuffix)));
                a.verified = m.verified_at.has_value();
                a.depends_on = m.depends_on;
                if (auto t = util::parse_iso8601_utc(m.created_at)) {
                    a.created = *t;
                }
            } catch (const ManifestError& e) {
                spdlog::warn("remote manifest of {}: {}", r.name, e.what());
            }
        }
        if (a.verified && (!newest_verified || a.created >= infos[*newest_verified].created)) {
            newest_verified = infos.size();
        }
        infos.push_back(std::move(a));
    }
    RetentionPolicy policy = opts.policy;
    if (newest_verified && !local.contains(infos[*newest_verified].name) && policy.keep_min < 1) {
        // The only remaining copy of the newest verified backup is never deleted.
        policy.keep_min = 1;
    }
    rep.retention = plan_retention(infos, policy, std::chrono::system_clock::now());
    for (std::size_t i = 0; i < rep.retention.size(); ++i) {
        if (rep.retention[i].verdict != Verdict::kDelete) {
            continue;
        }
        rep.deleted.push_back(remote[i].name);
        if (!rep.dry_run) {
            // The checksum object first: without it the archive no longer counts as present.
            s3.remove(remote[i].key + std::string(kRemoteChecksumSuffix));
            s3.remove(remote[i].key);
            s3.remove(remote[i].key + std::string(kManifestSuffix));
            spdlog::info("deleted remote backup {} ({})", remote[i].name,
                         util::join(rep.retention[i].reasons, "; "));
        }
    }
    return rep;
}

}  // namespace

SyncReport prune_remote(S3Client& s3, const fs::path& dest, const SyncOptions& opts) {
    std::set<std::string> local;
    std::error_code ec;
    if (fs::is_directory(dest, ec)) {
        for (const auto& c : list_archives(dest)) {
            local.insert(c.name);
        }
    }
    std::vector<RemoteArchive> remote;
    for (auto& r : list_remote(s3)) {
        if (r.complete) {
            remote.push_back(std::move(r));
        }
    }
    return prune_listed(s3, dest, std::move(remote), local, opts);
}

SyncReport sync_to_s3(S3Client& s3, const fs::path& dest, const SyncOptions& opts) {
    const auto start = Clock::now();
    const int retries_before = s3.retries();
    SyncReport rep;
    rep.dry_run = opts.dry_run == DryRun::kYes;
    rep.remote = storage::s3::s3_url(s3.settings().bucket, s3.settings().prefix);
    const auto remote = list_remote(s3);
    std::set<std::string> complete;
    for (const auto& r : remote) {
        if (r.complete) {
            complete.insert(r.name);
        }
    }
    const auto catalog = list_archives(dest);
    std::set<std::string> local;
    for (const auto& c : catalog) {
        local.insert(c.name);
        if (complete.contains(c.name)) {
            rep.already_remote.push_back(c.name);
            continue;
        }
        rep.uploaded.push_back(c.name);
        if (rep.dry_run) {
            rep.bytes_uploaded += c.size;
            continue;
        }
        const std::string key = s3.settings().prefix + c.name;
        const std::string sha = local_sha256(dest, c);
        util::Progress progress("upload " + c.name, c.size, opts.progress);
        storage::s3::ByteProgress on_bytes = [&](std::uint64_t n) { progress.advance(n); };
        auto st = s3.upload_file(key, c.path, content_type_for(c.name), on_bytes);
        progress.finish();
        const fs::path manifest = manifest_path_for(c.path);
        if (std::error_code mec; fs::exists(manifest, mec)) {
            s3.put_bytes(key + std::string(kManifestSuffix), util::read_file(manifest),
                         "application/json");
        }
        s3.put_bytes(key + std::string(kRemoteChecksumSuffix), format_checksum_line(c.name, sha),
                     "text/plain");
        rep.bytes_uploaded += st.bytes;
        spdlog::info("uploaded {} ({}, {} part{}) to {}", c.name, util::format_bytes(st.bytes),
                     st.parts, st.parts == 1 ? "" : "s",
                     storage::s3::s3_url(s3.settings().bucket, key));
    }
    for (const auto& r : remote) {
        if (!r.complete && !local.contains(r.name)) {
            rep.leftovers_removed.push_back(r.name);
            if (!rep.dry_run) {
                s3.remove(r.key);
                s3.remove(r.key + std::string(kManifestSuffix));
            }
        }
    }
    // Retention over the listing as it is now: what was complete before plus what was just
    // uploaded (a dry run plans as if the uploads had happened). No second LIST.
    std::vector<RemoteArchive> now;
    for (const auto& r : remote) {
        if (r.complete) {
            now.push_back(r);
        }
    }
    for (const auto& c : catalog) {
        if (std::find(rep.uploaded.begin(), rep.uploaded.end(), c.name) != rep.uploaded.end()) {
            RemoteArchive a;
            a.name = c.name;
            a.key = s3.settings().prefix + c.name;
            a.size = c.size;
            a.created = archive_name_time(c.name).value_or(c.created);
            a.has_manifest = c.manifest.has_value();
            a.complete = true;
            now.push_back(std::move(a));
        }
    }
    auto pruned = prune_listed(s3, dest, std::move(now), local, opts);
    rep.retention = std::move(pruned.retention);
    rep.deleted = std::move(pruned.deleted);
    rep.retries = s3.retries() - retries_before;
    rep.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return rep;
}

FetchResult fetch_from_s3(S3Client& s3, const std::string& key, const fs::path& dir,
                          util::ProgressMode progress, bool with_chain) {
    const auto start = Clock::now();
    FetchResult res;
    const auto slash = key.rfind('/');
    const std::string key_dir = slash == std::string::npos ? "" : key.substr(0, slash + 1);
    const std::string first = slash == std::string::npos ? key : key.substr(slash + 1);
    if (!is_archive_name(first)) {
        throw Error(fmt::format("{} is not a backup archive (models_backup_*.tar.zst|.tar.gz)",
                                storage::s3::s3_url(s3.settings().bucket, key)));
    }
    std::vector<std::string> todo = {first};
    std::set<std::string> seen;
    while (!todo.empty()) {
        const std::string name = todo.back();
        todo.pop_back();
        if (!seen.insert(name).second) {
            continue;
        }
        const std::string k = key_dir + name;
        const std::string url = storage::s3::s3_url(s3.settings().bucket, k);
        std::optional<Manifest> manifest;
        if (auto text = s3.get_bytes_if_exists(k + std::string(kManifestSuffix))) {
            try {
                manifest = parse_manifest_header(*text);
            } catch (const std::exception& e) {
                throw Error(ExitCode::kCritical,
                            fmt::format("{}{}: {}", url, kManifestSuffix, e.what()));
            }
            util::write_file_atomic(dir / (name + std::string(kManifestSuffix)), *text);
        }
        std::string expected;
        if (auto line = s3.get_bytes_if_exists(k + std::string(kRemoteChecksumSuffix))) {
            expected = hash_of_line(*line);
        }
        if (manifest && !manifest->archive_sha256.empty()) {
            if (!expected.empty() && expected != manifest->archive_sha256) {
                throw Error(ExitCode::kCritical,
                            fmt::format("{}: the uploaded checksum {} and manifest {} disagree",
                                        url, expected, manifest->archive_sha256));
            }
            expected = manifest->archive_sha256;
        }
        const auto size = s3.head(k);
        if (!size) {
            throw storage::s3::S3Error(fmt::format("{}: no such backup", url), 404, "NoSuchKey");
        }
        if (expected.empty()) {
            throw Error(ExitCode::kCritical,
                        fmt::format("{}: no manifest and no {} object: the download could not be "
                                    "checked (an upload that never finished?)",
                                    url, kRemoteChecksumSuffix));
        }
        const fs::path file = dir / name;
        util::Progress bar("download " + name, *size, progress);
        storage::s3::ByteProgress on_bytes = [&](std::uint64_t n) { bar.advance(n); };
        // A scratch copy (removed when the command ends): no fsync.
        auto st = s3.download_file(k, file, S3Client::FileSync::kNo, on_bytes, size);
        bar.finish();
        const std::string& got = st.sha256;
        if (got != expected) {
            throw Error(ExitCode::kCritical,
                        fmt::format("{}: downloaded SHA-256 {} does not match the uploaded {}", url,
                                    got, expected));
        }
        upsert_checksum(dir / kChecksumsFileName, name, got);
        res.downloaded.push_back(name);
        res.bytes += st.bytes;
        if (with_chain && manifest) {
            for (const auto& d : manifest->depends_on) {
                todo.push_back(d);
            }
        }
    }
    res.archive = dir / first;
    res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    spdlog::info("downloaded {} ({}) from {}", ordinal_list(res.downloaded),
                 util::format_bytes(res.bytes), storage::s3::s3_url(s3.settings().bucket, key));
    return res;
}

}  // namespace mlk::backup
