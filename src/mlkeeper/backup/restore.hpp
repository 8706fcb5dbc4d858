// Restoring an archive (and, for an incremental one, the files it takes
// from earlier archives of its chain) into a directory: only safe paths (no
// absolute paths, no "..", nothing written through a symlink, no link that
// escapes the target), nothing overwritten unless asked, every file's hash
// checked against the manifest as it is written. Everything goes into a staging directory
// inside the target first and is moved into place only when all of it checked out, so a failed
// restore (tampered, truncated or wrong-key archive, disk full) leaves the target as it was.
// Thread safety: one restore per target directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mlkeeper/crypto/age_stream.hpp"
#include "mlkeeper/util/progress.hpp"

namespace mlk::backup {

enum class Overwrite { kNo, kYes };
enum class ExternalLinks { kRefuse, kAllow };

struct RestoreOptions {
    std::filesystem::path archive;
    std::filesystem::path to;
    std::vector<std::string> patterns;  // fnmatch patterns; a match selects a whole subtree
    Overwrite overwrite = Overwrite::kNo;
    ExternalLinks external_links = ExternalLinks::kRefuse;
    util::ProgressMode progress = util::ProgressMode::kNever;
    const crypto::DecryptWith* keys = nullptr;  // for encrypted archives (".age")
};

struct RestoreResult {
    std::uint64_t entries = 0;
    std::uint64_t files = 0;
    std::uint64_t bytes = 0;
    std::vector<std::string> archives_read;
    bool verified = false;  // hashes checked (false for archives without a manifest)
    double seconds = 0;
};

// Throws RestoreError (with the exit code category) on refusal or mismatch.
class RestoreError : public std::runtime_error {
  public:
    enum class Kind { kRefused, kCorrupt };
    RestoreError(Kind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
    Kind kind() const { return kind_; }

  private:
    Kind kind_;
};

RestoreResult restore_archive(const RestoreOptions& opts);

// Whether `path` (as stored in an archive) is a safe relative path: not
// absolute, no "..", not empty.
bool is_safe_relative(std::string_view path);

// Whether a symlink stored at `link_path` with contents `target` stays
// inside the restore root.
bool link_stays_inside(std::string_view link_path, std::string_view target);

}  // namespace mlk::backup
