// The deleting phase of cleanup: the circuit breakers, then execute(plan), which walks to each
// planned file through directory fds opened with O_NOFOLLOW and re-checked by dev+inode, re-stats
// the file relative to that fd and unlinks it only if dev, inode, size, mtime and type still match
// the plan (otherwise "changed"). A path swapped for a symlink mid-run cannot redirect deletion.
// Thread safety: one execute() per plan at a time; lower_priority() affects the whole process.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/cleanup/scanner.hpp"

namespace mlk::cleanup {

struct BreakerLimits {
    std::uint64_t max_files = 1000;                         // 0 = no limit
    std::uint64_t max_bytes = 500ULL * 1024 * 1024 * 1024;  // 0 = no limit
};

// Why the plan must not run (without --force), or nullopt when it is within the limits.
std::optional<std::string> check_breakers(const Plan& plan, const BreakerLimits& limits);

struct ExecOptions {
    double rate_limit = 0;  // deletions per second; 0 = as fast as possible
    // A fresh index built just before execution: files opened for writing since the scan stay.
    const OpenWriteIndex* open_files = nullptr;
    // Called after each successful unlink with the full path (dry-run comparison, verbose lists).
    std::function<void(const std::filesystem::path&)> on_deleted;
};

struct TargetResult {
    std::uint64_t files = 0, dirs = 0, bytes = 0;
    Counts counts;                    // only what execution found (changed, open, denied ...)
    std::vector<std::string> errors;  // the first kMaxErrors problems
};

struct ExecResult {
    std::vector<TargetResult> targets;  // parallel to Plan::targets
    std::uint64_t files() const;
    std::uint64_t bytes() const;
    std::uint64_t dirs() const;
    std::uint64_t failures() const;  // permission denied and other errors
};

ExecResult execute(const Plan& plan, const ExecOptions& opts);

// nice 10 (never lowers an already higher niceness) and the idle I/O class, so cleanup never
// competes with training. Returns one note per step that failed (empty: both applied).
std::vector<std::string> lower_priority();

}  // namespace mlk::cleanup
