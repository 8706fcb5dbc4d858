// The planning phase of cleanup: scans each target with openat/fdopendir/fstatat (never following
// a symlink, never leaving the root's filesystem), applies retention and every protection rule,
// and records each file to delete with the identity (dev, inode, size, mtime) the executor
// re-checks before unlinking. Scanning changes nothing on disk.
// Thread safety: plan_target() may run for different targets on different threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mlkeeper/cleanup/safety.hpp"
#include "mlkeeper/cleanup/target_spec.hpp"

namespace mlk::cleanup {

class OpenWriteIndex;

inline constexpr const char* kKeepMarker = ".mlkeeper-keep";

enum class Reason : std::uint8_t { kFileAge, kRunAge };

struct DirNode {
    std::uint32_t parent = 0;  // index into TargetPlan::dirs; the root (0) is its own parent
    std::string name;
    dev_t dev = 0;
    ino_t ino = 0;
    bool remove = false;  // empty once the planned files are gone: removed after them
};

struct Victim {
    std::uint32_t dir = 0;  // index into TargetPlan::dirs
    std::string name;
    dev_t dev = 0;
    ino_t ino = 0;
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    mode_t type = 0;  // S_IFREG or S_IFLNK (a symlink is removed itself, never followed)
    Reason reason = Reason::kFileAge;
};

// Why entries were kept. Planning fills the protected_* and most skipped_* fields; execution adds
// skipped_changed (and more skipped_open / skipped_permission found at deletion time).
struct Counts {
    std::uint64_t protected_pattern = 0;  // name matched cleanup.protect
    std::uint64_t protected_marker = 0;   // a directory holding .mlkeeper-keep (not entered)
    std::uint64_t protected_newest = 0;   // among the newest keep_checkpoints of a run
    std::uint64_t skipped_open = 0;       // open for writing by some process
    std::uint64_t skipped_new = 0;        // modified within min_age (or in the future)
    std::uint64_t skipped_other_fs = 0;   // another filesystem mounted inside the target
    std::uint64_t skipped_changed = 0;    // not what was planned any more (race), or vanished
    std::uint64_t skipped_permission = 0;
    std::uint64_t skipped_other = 0;  // sockets, fifos, devices, too deep, I/O errors
};

enum class TargetStatus { kOk, kDisabled, kMissing, kRefused, kError };
std::string_view to_string(TargetStatus s);

struct TargetPlan {
    TargetSpec spec;
    TargetStatus status = TargetStatus::kOk;
    std::string note;            // why a target was refused / missing / failed
    std::filesystem::path root;  // resolved
    std::vector<DirNode> dirs;   // dirs[0] is the root; parents come before children
    std::vector<Victim> victims;
    std::uint64_t bytes = 0;
    std::uint64_t dirs_to_remove = 0;
    Counts counts;
    std::vector<std::string> errors;  // the first kMaxErrors problems, one line each

    std::filesystem::path dir_path(std::uint32_t dir) const;
    std::filesystem::path path_of(const Victim& v) const;
};

inline constexpr std::size_t kMaxErrors = 50;

struct Plan {
    std::vector<TargetPlan> targets;
    std::uint64_t files() const;
    std::uint64_t bytes() const;
    std::uint64_t dirs() const;
};

struct ScanOptions {
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
    std::chrono::seconds min_age{3600};
    std::size_t keep_checkpoints = 3;
    std::vector<std::string> protect{"*best*", "*final*", "*.keep"};
    std::vector<std::string> checkpoint_patterns{"*.pt",  "*.pth", "*.ckpt", "*.safetensors",
                                                 "*.bin", "*.h5",  "*.pkl",  "*.npz"};
    const OpenWriteIndex* open_files = nullptr;  // nullptr: no open-file check (tests)
    RootPolicy policy;
};

TargetPlan plan_target(const TargetSpec& spec, const ScanOptions& opts);
// Targets in order; a file reached through two overlapping targets is planned once.
Plan plan(const std::vector<TargetSpec>& specs, const ScanOptions& opts);

}  // namespace mlk::cleanup
