// Aggressive mode (--aggressive, AGGRESSIVE=true): the seeds' extra steps. External tools (docker
// image prune, apt-get clean) run through a replaceable runner with a timeout; a missing tool is a
// note, never a failure. The pip cache and old /tmp files are plain cleanup targets, so they get
// every protection of the scanner and executor.
// Thread safety: run_external_steps() uses only its arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "mlkeeper/cleanup/target_spec.hpp"
#include "mlkeeper/util/process.hpp"

namespace mlk::cleanup {

enum class DryRun { kNo, kYes };

using ProcessRunner =
    std::function<util::RunResult(const std::vector<std::string>&, const util::RunOptions&)>;

struct AggressiveOptions {
    ProcessRunner run = [](const std::vector<std::string>& argv, const util::RunOptions& o) {
        return util::run_process(argv, o);
    };
    // Finds a tool; empty when absent. Default: searches PATH.
    std::function<std::filesystem::path(const std::string&)> find_tool;
    std::chrono::seconds timeout{600};
    std::filesystem::path apt_cache = "/var/cache/apt/archives";
    DryRun dry_run = DryRun::kNo;
};

enum class StepStatus { kRan, kWouldRun, kSkipped, kFailed };
std::string_view to_string(StepStatus s);

struct StepResult {
    std::string name;  // "docker", "apt"
    std::string command;
    StepStatus status = StepStatus::kSkipped;
    std::uint64_t freed = 0;
    std::string note;
};

// Looks `tool` up in the PATH given (colon-separated); empty when not found or not executable.
std::filesystem::path find_in_path(const std::string& tool, const std::string& path_env);

// Runs docker image prune (images unused for 7 days) and apt-get clean.
std::vector<StepResult> run_external_steps(const AggressiveOptions& opts);

// "Total reclaimed space: 1.2GB" -> bytes; 0 when absent.
std::uint64_t parse_docker_reclaimed(const std::string& out);

// The pip cache (PIP_CACHE_DIR, else $XDG_CACHE_HOME/pip, else $HOME/.cache/pip) with retention 0
// and /tmp (temp_dir) files older than 3 days, as targets.
std::vector<TargetSpec> aggressive_targets(const std::filesystem::path& temp_dir,
                                           const std::map<std::string, std::string>& env);

// Apparent size of the regular files under dir (0 if missing); for before/after measurements.
std::uint64_t tree_bytes(const std::filesystem::path& dir);

}  // namespace mlk::cleanup
