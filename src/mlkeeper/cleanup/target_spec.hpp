// What one cleanup target is (a root directory, which of its entries belong to the target, the
// retention and the filters) and how targets are built: the seeds' four defaults from [cleanup],
// adjusted or extended by `cleanup.targets` items such as
//   name=models path=/data/runs/* retention=10d pattern=*.pt,*.ckpt min_size=1M delete=files
// Thread safety: pure functions on their arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlk::core {
class Config;
}

namespace mlk::cleanup {

// files: old files one by one; runs: a whole run directory (top-level entry) once nothing in it
// is newer than the retention; both: a file goes when it or its run is old.
enum class DeleteMode { kFiles, kRuns, kBoth };
std::string_view to_string(DeleteMode m);

struct TargetSpec {
    std::string name;
    std::filesystem::path root;  // the directory the target lives in; never deleted itself
    std::string entry_glob;      // shell glob over root's entries ("*", "ml-*"); "" = all
    std::chrono::seconds retention{0};
    std::vector<std::string> patterns{"*"};  // basenames of the files that may go
    std::uint64_t min_size = 0;
    DeleteMode mode = DeleteMode::kFiles;
    bool enabled = true;

    std::string display_path() const;  // "/opt/ml/experiments/*"
};

// One parsed `cleanup.targets` item: only the fields it names.
struct TargetItem {
    std::string name;
    std::optional<std::string> path;
    std::optional<std::chrono::seconds> retention;
    std::optional<std::vector<std::string>> patterns;
    std::optional<std::uint64_t> min_size;
    std::optional<DeleteMode> mode;
    std::optional<bool> enabled;
};

// Parses `key=value` fields separated by spaces (values may be "double quoted"). Keys: name
// (required), path, retention (plain number = days), pattern (comma list), min_size, delete
// (files|runs|both), enabled. Throws mlk::ConfigError "cleanup.targets item N: ...".
TargetItem parse_target_item(std::string_view text, std::size_t index);

// "/opt/ml/experiments/*" -> {"/opt/ml/experiments", "*"}; "/data/scratch" -> {"/data/scratch",
// ""}. Glob characters are allowed only in the last component; the path must be absolute.
// Throws std::invalid_argument with the reason.
std::pair<std::filesystem::path, std::string> split_target_path(std::string_view path);

// Applies items to the defaults: an item named like an existing target changes only the fields it
// names; a new name adds a target (path and retention then required). Throws mlk::ConfigError.
std::vector<TargetSpec> merge_targets(std::vector<TargetSpec> defaults,
                                      const std::vector<std::string>& items);

// The seeds' targets (experiments, checkpoints, logs, temp) from the [cleanup] keys, merged with
// cleanup.targets. Disabled targets are kept (reports name them) with enabled=false.
std::vector<TargetSpec> build_targets(const core::Config& cfg);

// fnmatch() against any of the patterns (no FNM_PERIOD: dotfiles match "*").
bool matches_any(const std::vector<std::string>& patterns, const char* name);

}  // namespace mlk::cleanup
