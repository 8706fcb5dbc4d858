// Creating one backup archive: scan the source tree (deciding, for an
// incremental backup, which files are unchanged since the parent), then
// stream it into `<dest>/<name>` through tar + compression, hashing as it
// goes, and publish archive, manifest and checksum line crash-safely.
// Thread safety: one backup per destination at a time (the caller locks).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/backup/codec.hpp"
#include "mlkeeper/backup/manifest.hpp"
#include "mlkeeper/backup/verify.hpp"
#include "mlkeeper/crypto/age_stream.hpp"
#include "mlkeeper/util/progress.hpp"
#include "mlkeeper/util/walk.hpp"

namespace mlk::backup {

struct ScanItem {
    util::WalkEntry entry;
    const ManifestEntry* unchanged = nullptr;  // incremental: the parent's entry for this file
};

struct ScanResult {
    std::vector<ScanItem> items;
    std::uint64_t files = 0;
    std::uint64_t bytes_total = 0;    // all regular file bytes in the tree
    std::uint64_t bytes_to_read = 0;  // what this backup must read (changed files only)
    std::uint64_t unchanged_files = 0;
    std::vector<std::string> skipped;  // "path: reason" (special files, vanished entries)
};

// Walks `source` (stored as its own base name). For an incremental scan,
// `parent` is the previous manifest of the same source. Throws std::system_error if the source
// cannot be read at all.
ScanResult scan_source(const std::filesystem::path& source, const Manifest* parent);
// The two halves of scan_source(), so that the parent manifest can be read while the tree is
// walked: walk_source() lists the tree (every file still to read), then match_parent() marks the
// files unchanged since `parent` (none when it is null). Call match_parent() once.
ScanResult walk_source(const std::filesystem::path& source);
void match_parent(ScanResult& scan, const Manifest* parent);

struct CreateOptions {
    std::filesystem::path source;
    std::filesystem::path dest;
    Codec codec = Codec::kZstd;
    int level = 3;
    unsigned threads = 0;  // 0: all cores
    BackupKind kind = BackupKind::kFull;
    const Manifest* parent = nullptr;  // required for kIncremental
    std::string parent_archive;
    util::ProgressMode progress = util::ProgressMode::kAuto;
    std::string tool_version;
    const crypto::EncryptTo* encrypt = nullptr;  // set: an age-encrypted archive
    // kYes: the archive is verified (verify_written) while its fsync runs, before it is put in
    // place; the manifest then records verified_at when it passed.
    enum class Verify { kNo, kYes } verify = Verify::kNo;
};

struct CreateResult {
    std::filesystem::path archive;
    Manifest manifest;
    std::uint64_t bytes_read = 0;
    double seconds = 0;
    // Encrypted archives: the file key, so the backup can verify what it wrote without the
    // recipients' identities. Never stored.
    std::optional<crypto::SecretBytes<crypto::kAgeFileKeySize>> file_key;
    // With CreateOptions::Verify::kYes. A failed verification still leaves the archive in place
    // (without verified_at), for inspection; retention counts only verified archives.
    std::optional<VerifyResult> verification;
};

enum class Encrypted { kNo, kYes };

// "models_backup_YYYYMMDD_HHMMSS" + extension; a "_N" suffix is added when
// that name is taken (two backups within one second).
std::filesystem::path next_archive_path(const std::filesystem::path& dest, Codec codec,
                                        std::chrono::system_clock::time_point now,
                                        Encrypted encrypted = Encrypted::kNo);

// Writes the archive at `archive` (atomically), then its manifest and the
// checksums.txt line. On any failure nothing new is left in `dest` (a failed verification is not
// a failure here: see CreateResult::verification).
CreateResult create_archive(const CreateOptions& opts, const ScanResult& scan,
                            const std::filesystem::path& archive,
                            std::chrono::system_clock::time_point now);

}  // namespace mlk::backup
