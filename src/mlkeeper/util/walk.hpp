// Depth-first walk of a directory tree that never follows symlinks and visits
// children in byte order, so archives and reports are deterministic. Errors
// (a directory that cannot be read, a file that vanished) are reported to a
// handler and the walk goes on. Thread safety: stateless; one walk per call.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <string>

namespace mlk::util {

struct WalkEntry {
    std::filesystem::path path;  // on disk
    std::string rel;             // "<root name>/a/b", as stored in an archive
    struct stat st {};           // lstat
    int depth = 0;               // 0 for the root itself
};

enum class WalkAction { kContinue, kSkipSubtree };
enum class CrossMounts { kYes, kNo };

struct WalkError {
    std::filesystem::path path;
    int error = 0;  // errno
};

using WalkVisitor = std::function<WalkAction(const WalkEntry&)>;
using WalkErrorHandler = std::function<void(const WalkError&)>;

// Visits `root` (as `root_rel`) and everything below it, parents before
// children. Throws std::system_error if `root` itself cannot be lstat'ed.
void walk_tree(const std::filesystem::path& root, const std::string& root_rel,
               const WalkVisitor& visit, const WalkErrorHandler& on_error,
               CrossMounts cross = CrossMounts::kYes);

}  // namespace mlk::util
