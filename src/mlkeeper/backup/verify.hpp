// Verifying an archive: its SHA-256 against checksums.txt and its manifest,
// and every entry (type, size, content hash, link target) against the
// manifest, with nothing missing and nothing extra. An archive without a
// manifest (e.g. one written by the old backup script) gets a full
// decompress-and-parse integrity check only.
// Thread safety: stateless; verifying different archives in parallel is fine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "mlkeeper/backup/manifest.hpp"
#include "mlkeeper/crypto/age_stream.hpp"
#include "mlkeeper/util/progress.hpp"

namespace mlk::backup {

// kChecksumOnly: an encrypted archive verified without its key: the file's SHA-256 only.
enum class VerifyLevel { kFull, kIntegrityOnly, kChecksumOnly };

struct VerifyResult {
    bool ok = false;
    VerifyLevel level = VerifyLevel::kFull;
    std::string problem;  // the first problem found, naming the entry
    std::uint64_t entries = 0;
    std::uint64_t bytes = 0;  // content bytes checked
    std::uint64_t archive_bytes = 0;
    std::string archive_sha256;
    double seconds = 0;
};

VerifyResult verify_archive(const std::filesystem::path& archive,
                            util::ProgressMode progress = util::ProgressMode::kNever,
                            const crypto::DecryptWith* keys = nullptr);

// Verifies an archive just written and not yet in place: `file` (its temp file) against the
// manifest in memory (whose `archive` names it and whose archive_sha256/size it must match),
// reading neither the manifest file nor checksums.txt. Lets a backup check its archive while the
// file's fsync is still running.
VerifyResult verify_written(const std::filesystem::path& file, const Manifest& manifest,
                            const crypto::DecryptWith* keys = nullptr);

// After a passed verification: records verified_at in the manifest.
void mark_verified(const std::filesystem::path& archive);

}  // namespace mlk::backup
