// The backups in one destination directory: which archives exist, their
// manifests, and the housekeeping that keeps the directory consistent after
// a crash (stale temp files, orphan manifests, missing checksum lines).
// Thread safety: functions touching the directory need the destination lock.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/backup/manifest.hpp"

namespace mlk::backup {

struct CatalogEntry {
    std::filesystem::path path;
    std::string name;
    std::chrono::system_clock::time_point created;  // manifest time, else the name's timestamp
    std::uint64_t size = 0;
    std::optional<Manifest> manifest;  // header only (no entries): read_manifest_header()
    std::string manifest_error;        // why there is no manifest ("" when present)
    bool verified() const { return manifest && manifest->verified_at.has_value(); }
    BackupKind kind() const { return manifest ? manifest->kind : BackupKind::kFull; }
    // Archives this one needs to restore fully (incremental parents and the
    // archives holding its unchanged files).
    std::vector<std::string> depends_on() const;
};

// "models_backup_YYYYMMDD_HHMMSS[_N].tar.zst|.tar.gz"
bool is_archive_name(std::string_view name);

// The time in an archive name (local time of the backup), or nullopt if it is not one.
std::optional<std::chrono::system_clock::time_point> archive_name_time(std::string_view name);

// Oldest first. Throws std::system_error if `dest` cannot be listed.
std::vector<CatalogEntry> list_archives(const std::filesystem::path& dest);

struct Housekeeping {
    int temps_removed = 0;
    int orphan_manifests_removed = 0;
    int checksums_added = 0;
};

// Removes temp files left by a crashed run and manifests whose archive is
// gone, and restores checksums.txt lines from manifests. Call with the
// destination lock held, so no live writer's temp file is touched.
Housekeeping tidy_destination(const std::filesystem::path& dest);

// Deletes an archive, its manifest and its checksums.txt line.
void delete_archive(const std::filesystem::path& dest, const std::string& name);

}  // namespace mlk::backup
