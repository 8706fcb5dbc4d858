// The off-site copy of a backup destination in S3 (the third copy of 3-2-1): which archives
// are there, uploading the ones that are not, remote retention, and fetching archives (with the
// chain an incremental needs) for restore and verify. Remote layout, under the configured
// prefix: <archive>, <archive>.manifest.json and <archive>.sha256 (a sha256sum line), written in
// that order, so an archive counts as present only once its .sha256 object exists.
// Thread safety: one sync per destination (callers hold the destination lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/backup/prune.hpp"
#include "mlkeeper/backup/retention.hpp"
#include "mlkeeper/storage/s3/s3_client.hpp"
#include "mlkeeper/util/progress.hpp"

namespace mlk::backup {

inline constexpr std::string_view kRemoteChecksumSuffix = ".sha256";

struct RemoteArchive {
    std::string name;  // file name, e.g. models_backup_20261122_020000.tar.zst
    std::string key;   // object key of the archive
    std::uint64_t size = 0;
    std::string storage_class;
    std::chrono::system_clock::time_point created;  // from the name
    bool has_manifest = false;
    bool complete = false;  // the .sha256 object (written last) exists
};

// Archives under the client's prefix, oldest first (complete or not).
std::vector<RemoteArchive> list_remote(storage::s3::S3Client& s3);

// Remote retention: `retention_days` (0 = off) and `keep_min` of [backup.s3].
RetentionPolicy remote_policy_from_config(const core::Config& cfg);

struct SyncOptions {
    DryRun dry_run = DryRun::kNo;
    util::ProgressMode progress = util::ProgressMode::kNever;
    RetentionPolicy policy;
};

struct SyncReport {
    bool dry_run = false;
    std::string remote;                 // s3://bucket/prefix
    std::vector<std::string> uploaded;  // dry run: would upload
    std::vector<std::string> already_remote;
    std::uint64_t bytes_uploaded = 0;
    int retries = 0;
    double seconds = 0;
    std::vector<Decision> retention;             // over the complete remote archives
    std::vector<std::string> deleted;            // remote archives deleted by retention
    std::vector<std::string> leftovers_removed;  // incomplete uploads with no local copy
    std::string error;  // set when the sync failed part-way (what was done is still listed)

    nlohmann::json to_json() const;
    std::string summary_line() const;
};

// Uploads every local archive of `dest` that is not complete remotely (oldest first, so the
// parents of incrementals go first), then applies remote retention, which never deletes the
// newest verified backup when it has no local copy. Throws storage::s3::S3Error (or another
// mlk::Error) when an upload finally fails; the local destination is never changed.
SyncReport sync_to_s3(storage::s3::S3Client& s3, const std::filesystem::path& dest,
                      const SyncOptions& opts);

// Remote retention alone (`backups prune --remote`).
SyncReport prune_remote(storage::s3::S3Client& s3, const std::filesystem::path& dest,
                        const SyncOptions& opts);

struct FetchResult {
    std::filesystem::path archive;  // the downloaded archive, its manifest and chain beside it
    std::vector<std::string> downloaded;
    std::uint64_t bytes = 0;
    double seconds = 0;
};

// Downloads the archive at `key` (with its manifest and checksum, and for an incremental every
// archive of its chain) into `dir`, checking each archive's SHA-256 against its uploaded
// manifest and .sha256 object; writes dir/checksums.txt. Throws mlk::Error (exit 2) when a hash
// does not match, S3Error when an object is missing or a download fails.
FetchResult fetch_from_s3(storage::s3::S3Client& s3, const std::string& key,
                          const std::filesystem::path& dir, util::ProgressMode progress,
                          bool with_chain);

}  // namespace mlk::backup
