// Local health checks read in-process from /proc, /sys and statvfs(3): disk
// space and inodes, memory and swap, load per CPU, uptime, reboot-required
// and OOM kills. Nothing is spawned, so a full set takes well under a
// millisecond. Thread safety: stateless functions; safe from many threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/health/check.hpp"

namespace mlk::health {

struct MountEntry {
    std::string device;
    std::string mount_point;  // octal escapes (\040) decoded
    std::string fs_type;
};

// Parses /proc/self/mounts text; malformed lines are ignored.
std::vector<MountEntry> parse_mounts(const std::string& text);

// Pseudo and in-memory filesystems skipped unless included: proc, sysfs,
// tmpfs, devtmpfs, overlay, cgroup, ...
bool is_pseudo_fs(const std::string& fs_type);

struct DiskOptions {
    Thresholds usage{80, 90};
    Thresholds inodes{80, 90};
    std::vector<std::string> include_mounts;   // checked whatever their type
    std::vector<std::string> include_fstypes;  // e.g. "tmpfs" to check /dev/shm
    std::vector<std::string> exclude_mounts;
};

// One "Disk usage M" and one "Inode usage M" result per real filesystem in
// <proc_root>/self/mounts, deduplicated by device id (first mount wins).
std::vector<CheckResult> check_disks(const HealthEnv& env, const DiskOptions& opts);

// Space and inodes of one path (statvfs), for check_disks and tests.
std::vector<CheckResult> check_filesystem(const std::string& mount_point, const DiskOptions& opts);

struct MemoryOptions {
    Thresholds memory{85, 95};
    Thresholds swap{50, 80};
};

// "Memory usage" (MemTotal - MemAvailable) and "Swap usage" from <proc_root>/meminfo.
std::vector<CheckResult> check_memory(const HealthEnv& env, const MemoryOptions& opts);

// Number of online CPUs from <sys_root>/devices/system/cpu/online ("0-3,8"),
// else sysconf(_SC_NPROCESSORS_ONLN).
unsigned online_cpus(const HealthEnv& env);

// "CPU load": the 1-minute load average per CPU in percent (100% = one
// runnable task per CPU); the message shows all three averages.
CheckResult check_cpu_load(const HealthEnv& env, const Thresholds& per_cpu_pct);

// "Uptime" (always passes) from <proc_root>/uptime.
CheckResult check_uptime(const HealthEnv& env);

// "Reboot required": warns while env.reboot_required_file exists, naming the
// packages of its .pkgs companion (Debian/Ubuntu's update-notifier files).
CheckResult check_reboot_required(const HealthEnv& env);

// oom_kill from <proc_root>/vmstat; nullopt when the kernel has no counter.
std::optional<std::uint64_t> read_oom_kill_counter(const HealthEnv& env);

// "OOM kills": warns when the counter rose since `previous` (a value saved by
// the last run; a smaller counter means a reboot, so all kills count), or
// since boot when there is no previous value.
CheckResult check_oom(const HealthEnv& env, std::optional<std::uint64_t> previous,
                      std::optional<std::uint64_t>* current = nullptr);

}  // namespace mlk::health
