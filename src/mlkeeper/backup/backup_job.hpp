// One `mlkeeper backup` run, independent of the CLI so the maintenance run
// can call it too: lock the destination, tidy after crashed runs, choose
// full or incremental, check free space, write, verify, apply retention.
// Thread safety: one job per destination (enforced by a lock file).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/backup/manifest.hpp"
#include "mlkeeper/backup/prune.hpp"
#include "mlkeeper/core/config.hpp"
#include "mlkeeper/util/progress.hpp"

namespace mlk::backup {

struct BackupRequest {
    std::optional<BackupKind> kind;  // --full / --incremental; else [backup] incremental
    DryRun dry_run = DryRun::kNo;
    util::ProgressMode progress = util::ProgressMode::kAuto;
    unsigned threads = 0;
    std::string tool_version;
};

struct BackupReport {
    int exit_code = 0;  // 0 ok, 1 failed, 2 verification failed
    std::string archive;
    BackupKind kind = BackupKind::kFull;
    std::string kind_reason;  // why full when incremental was asked
    std::uint64_t files = 0;
    std::uint64_t unchanged_files = 0;
    std::uint64_t bytes_in = 0;    // tree size
    std::uint64_t bytes_read = 0;  // content actually read
    std::uint64_t bytes_out = 0;
    std::uint64_t estimated_bytes_out = 0;  // dry-run
    double seconds = 0;
    std::string sha256;
    std::optional<bool> verified;  // nullopt: not run
    std::string verify_problem;
    std::vector<std::string> changed_during_backup;
    std::vector<std::string> skipped;
    std::vector<Decision> retention;  // decisions over the destination
    std::vector<std::string> deleted;
    int temps_removed = 0;
    bool dry_run = false;

    nlohmann::json to_json() const;
    std::string summary_line() const;
};

// Throws mlk::Error for failures before or while writing (exit 1).
BackupReport run_backup(const core::Config& cfg, const BackupRequest& req);

}  // namespace mlk::backup
