// The staging directory a restore writes into, so that a restore that fails half-way (a
// tampered or truncated archive, a wrong hash, a full disk) leaves nothing in the target: the
// files go into a hidden directory inside the target (same file system, so moving them out is a
// rename) and are moved into place only once every one of them has been checked.
// Thread safety: one StagingDir per target directory.
#pragma once

#include <sys/stat.h>

#include <filesystem>

#include "mlkeeper/backup/restore.hpp"

namespace mlk::backup {

class StagingDir {
  public:
    // Creates `target` if it is missing (remembered, so a failed restore removes it again if it
    // is still empty) and "<target>/.mlkeeper-restore.<pid>" inside it. Staging directories left
    // by restores that were killed (their pid no longer runs) are removed first.
    explicit StagingDir(const std::filesystem::path& target);
    // Without commit(): removes the staging directory and everything in it.
    ~StagingDir();
    StagingDir(const StagingDir&) = delete;
    StagingDir& operator=(const StagingDir&) = delete;

    const std::filesystem::path& path() const { return staging_; }
    const std::filesystem::path& target() const { return target_; }

    // Moves everything staged into the target, merging into directories that already exist.
    // With Overwrite::kNo any path that already exists (other than a directory where the
    // archive also has a directory) is refused before anything is moved. Throws RestoreError
    // (kRefused) or std::system_error.
    void commit(Overwrite overwrite);

  private:
    std::filesystem::path target_;
    std::filesystem::path staging_;
    struct timespec target_times_[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    bool created_target_ = false;
    bool committed_ = false;
};

// The name prefix of staging directories (followed by the pid), for listings that skip them.
inline constexpr const char* kStagingPrefix = ".mlkeeper-restore.";

}  // namespace mlk::backup
