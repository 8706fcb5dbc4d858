// The backup manifest "<archive>.manifest.json": every path an archive holds, with hashes and
// metadata, for verification, restore and incremental chains (docs/formats/backup-manifest.md).
// Thread safety: value types and pure functions, safe from any thread; a ManifestIndex is
// immutable after construction, so lookups may run concurrently.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/fs_ops.hpp"

namespace mlk::backup {

inline constexpr std::string_view kManifestFormat = "mlkeeper-backup-manifest";
// The newest version this code reads and the one it writes. Readers ignore unknown fields; a
// change in the meaning of an existing field needs a new version (and a migration).
inline constexpr int kManifestVersion = 1;

enum class EntryType { kFile, kDir, kSymlink, kHardlink };
enum class BackupKind { kFull, kIncremental };

std::string_view to_string(EntryType type);   // "file", "dir", "symlink", "hardlink"
std::string_view to_string(BackupKind kind);  // "full", "incremental"
std::optional<EntryType> parse_entry_type(std::string_view text);
std::optional<BackupKind> parse_backup_kind(std::string_view text);

// One path in the backup. Strings holding paths and names are raw bytes from the filesystem
// (not necessarily UTF-8); the JSON form switches such a field to "<key>_b64".
struct ManifestEntry {
    std::string path;  // relative: Manifest::root or "<root>/..." as stored in the tar
    EntryType type = EntryType::kFile;
    std::uint64_t size = 0;  // files only: bytes of content
    std::string sha256;      // files only: 64 hex digits of the content
    std::uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (st_mode & 07777)
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::string user;  // owner names at backup time; empty when unknown
    std::string group;
    std::int64_t mtime_ns = 0;  // nanoseconds since the Unix epoch
    std::uint64_t dev = 0;      // st_dev and st_ino at backup time (change detection only)
    std::uint64_t ino = 0;
    std::string target;   // symlink: the link's contents; hardlink: path of the entry it shares
    bool sparse = false;  // files only: stored as a sparse file in the tar
    // Files only: nullopt when the content is in this archive; for an unchanged file of an
    // incremental backup, the file name of the earlier archive whose tar holds the content.
    std::optional<std::string> stored_in;

    bool operator==(const ManifestEntry&) const = default;
};

struct Manifest {
    struct Tool {
        std::string name = "mlkeeper";
        std::string version;
        bool operator==(const Tool&) const = default;
    };
    struct Compression {
        std::string codec;  // "zstd", "gzip", "none"
        int level = 0;
        bool operator==(const Compression&) const = default;
    };
    struct Totals {
        std::uint64_t files = 0;
        std::uint64_t dirs = 0;
        std::uint64_t symlinks = 0;
        std::uint64_t hardlinks = 0;
        std::uint64_t bytes = 0;         // sum of all file sizes (the tree as restored)
        std::uint64_t stored_files = 0;  // files whose content is in this archive
        std::uint64_t stored_bytes = 0;
        bool operator==(const Totals&) const = default;
    };

    // Set when the archive is encrypted (an age v1 file wrapping the compressed tar). Only
    // public information: the recipients' public keys and whether a passphrase opens it.
    struct Encryption {
        std::string format = "age-v1";
        std::vector<std::string> recipients;  // "age1..." public keys
        bool passphrase = false;
        bool operator==(const Encryption&) const = default;
    };

    std::string archive;  // file name of the archive, no directory
    std::uint64_t archive_size = 0;
    std::string archive_sha256;
    std::string created_at;  // util::iso8601_utc() of the backup start
    std::string host;
    Tool tool;
    std::string source;  // the directory that was backed up, e.g. "/opt/ml/models"
    std::string root;    // the single top-level name inside the archive, e.g. "models"
    Compression compression;
    std::optional<Encryption> encryption;  // absent for plain archives
    BackupKind kind = BackupKind::kFull;
    std::optional<std::string> parent;       // incremental only: the previous archive's file name
    std::optional<std::string> verified_at;  // ISO 8601 UTC time of the last passed verification
    std::vector<ManifestEntry> entries;
    std::vector<std::string> changed_during_backup;  // paths whose content moved while read
    // The archives a full restore of this one also reads (the parent and every
    // entry's stored_in), sorted. Derived from `entries` like `totals`; stored in
    // the file before the entries, so read_manifest_header() can skip them.
    std::vector<std::string> depends_on;
    // Derived from `entries`. Readers fill it (after checking the stored totals agree); writers
    // ignore this member and write compute_totals(entries), so it can never be stale on disk.
    Totals totals;

    bool operator==(const Manifest&) const = default;
};

// A manifest that is invalid: bad JSON types, missing required fields, an unsupported version,
// or values that break the format's rules. The message is one line: "manifest <what>: <problem>"
// (read_manifest() prefixes the file name).
class ManifestError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Counts by type; stored_* count only files with !stored_in.
Manifest::Totals compute_totals(const std::vector<ManifestEntry>& entries);
std::vector<std::string> compute_depends_on(const Manifest& m);

// Checks the rules every manifest must meet (see the format document): required values,
// relative paths under `root` without "." or ".." parts, unique paths, hex digests, mode
// <= 07777, `parent` set exactly for incremental backups, no `stored_in` in a full backup.
// Throws ManifestError. Called by every writer and reader below.
void validate_manifest(const Manifest& m);

// The JSON document as a DOM (keys sorted, as nlohmann::json keeps them), for API responses.
// Throws ManifestError if `m` is invalid. Slow for huge manifests: use serialize_manifest().
nlohmann::json to_json(const Manifest& m);
// Throws ManifestError on anything invalid; unknown fields are ignored.
Manifest manifest_from_json(const nlohmann::json& j);

// The exact text write_manifest() writes: fixed key order, one line per entry. Throws
// ManifestError if `m` is invalid.
std::string serialize_manifest(const Manifest& m);
// Parses manifest text with a streaming (SAX) parser, without building a DOM. Throws
// ManifestError for invalid JSON and everything manifest_from_json() rejects.
Manifest parse_manifest(std::string_view text);

// Writes the manifest atomically (util::AtomicFileWriter), streaming entries. Throws
// ManifestError if `m` is invalid, std::system_error naming the path on I/O failure.
void write_manifest(const std::filesystem::path& file, const Manifest& m, mode_t mode = 0644,
                    const util::FsOps& ops = util::real_fs_ops(),
                    util::Durability durability = util::Durability::kFsync);

// Throws std::system_error naming the file when it cannot be read (ENOENT for a missing one),
// ManifestError "<file>: manifest ..." / "<file>: invalid JSON ..." when it is corrupt.
Manifest read_manifest(const std::filesystem::path& file,
                       const util::FsOps& ops = util::real_fs_ops());

// The header only (everything but `entries`, which stays empty), reading the
// file only up to its "entries" key: what catalogs and `backups list` need,
// without the cost of thousands of entries per archive. The entries' checks
// are skipped; a manifest without "depends_on" (written by an earlier
// version) is read in full instead. Throws as read_manifest().
Manifest read_manifest_header(const std::filesystem::path& file,
                              const util::FsOps& ops = util::real_fs_ops());
Manifest parse_manifest_header(std::string_view text);

// "<archive>.manifest.json" beside the archive.
std::filesystem::path manifest_path_for(const std::filesystem::path& archive);

// Lookup of entries by path in O(1). Keeps pointers into `m`: the Manifest must outlive the
// index and its entries must not change while the index is in use.
class ManifestIndex {
  public:
    // Throws ManifestError on a duplicate path (validated manifests have none).
    explicit ManifestIndex(const Manifest& m);
    explicit ManifestIndex(Manifest&&) = delete;  // the index would dangle

    const ManifestEntry* find(std::string_view path) const;
    std::size_t size() const { return by_path_.size(); }

  private:
    std::unordered_map<std::string_view, const ManifestEntry*> by_path_;
};

}  // namespace mlk::backup
