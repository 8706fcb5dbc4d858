// What a scheduled job is: the task it runs, when (systemd OnCalendar or cron), and how (delay,
// timeout, retries, priority, limits, alerting). Shared by the agent, `schedule list|run` and the
// systemd/cron exporters. default_jobs() reproduces the seeds' timers.
// Thread safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mlk::sched {

enum class TaskKind {
    kBuiltin,  // an mlkeeper subcommand: "backup", "gpu", "cleanup", "health", "maintain"
    kCommand,  // an external program, argv without a shell
};

enum class ScheduleKind { kCalendar, kCron };

enum class IoClass { kNone, kRealtime, kBestEffort, kIdle };  // ioprio classes (ionice -c)

struct JobSpec {
    std::string name;  // [schedule.jobs.NAME]; [a-z0-9_-]+
    std::string description;

    TaskKind kind = TaskKind::kBuiltin;
    std::string builtin;            // for kBuiltin: the subcommand
    std::vector<std::string> argv;  // kCommand: the program and its arguments; kBuiltin: extra args

    ScheduleKind schedule_kind = ScheduleKind::kCalendar;
    std::string schedule;  // "Sun *-*-* 03:00:00" or "0 3 * * 0"

    bool persistent = true;  // catch up one missed run after downtime (systemd Persistent=)
    std::chrono::seconds randomized_delay{0};  // RandomizedDelaySec=
    std::chrono::seconds timeout{0};           // 0 = none (TimeoutStartSec=)
    int retries = 0;                           // extra attempts after a failure
    std::chrono::seconds retry_delay{30};      // RestartSec=; doubles per attempt
    int nice = 0;                              // -20..19
    IoClass io_class = IoClass::kNone;
    int io_level = 4;                         // 0..7 for realtime/best-effort
    std::optional<std::uint64_t> memory_max;  // bytes (MemoryMax=)
    std::optional<int> cpu_quota_percent;     // CPUQuota=, 1..(100 * cores)
    bool alert_on_failure = true;             // OnFailure= alert hook
};

// The seeds' schedule: backup daily 02:00 (10 min random delay, CPUQuota 50%, MemoryMax 2G),
// gpu every 5 minutes, cleanup Sun 03:00 (30 min delay, CPUQuota 30%), maintain Sun 01:00
// (30 min delay, timeout 1 h). All persistent.
std::vector<JobSpec> default_jobs();

}  // namespace mlk::sched
