#include "mlkeeper/sched/job_spec.hpp"

namespace mlk::sched {

namespace {

JobSpec builtin_job(std::string name, std::string description, std::string schedule) {
    JobSpec j;
    j.builtin = name;
    j.name = std::move(name);
    j.description = std::move(description);
    j.kind = TaskKind::kBuiltin;
    j.schedule_kind = ScheduleKind::kCalendar;
    j.schedule = std::move(schedule);
    j.persistent = true;
    return j;
}

}  // namespace

std::vector<JobSpec> default_jobs() {
    using std::chrono::seconds;
    std::vector<JobSpec> jobs;

    // ml-backup.timer/.service. The seed timer also carried "OnCalendar=daily", which made it run
    // at 00:00 as well as 02:00; its own comment says "daily at 2 AM", so only 02:00 is kept.
    // Its "Restart=on-failure, RestartSec=300" had no start limit (retry forever); design-answers
    // Q8 bounds it with StartLimitBurst=3, i.e. two retries.
    JobSpec backup = builtin_job("backup", "ML model backup", "*-*-* 02:00:00");
    backup.randomized_delay = seconds(600);
    backup.retries = 2;
    backup.retry_delay = seconds(300);
    backup.memory_max = std::uint64_t{2} << 30;  // MemoryLimit=2G: systemd's G is 1024^3
    backup.cpu_quota_percent = 50;
    jobs.push_back(std::move(backup));

    // gpu-monitor.timer/.service: every 5 minutes, no delay, no limits.
    jobs.push_back(builtin_job("gpu", "GPU health monitoring", "*:0/5"));

    // ml-cleanup.timer/.service: Sunday 03:00, 30 min delay, CPUQuota=30%, Restart=no.
    JobSpec cleanup = builtin_job("cleanup", "ML artifacts cleanup", "Sun 03:00");
    cleanup.randomized_delay = seconds(1800);
    cleanup.cpu_quota_percent = 30;
    jobs.push_back(std::move(cleanup));

    // ml-maintenance.timer/.service: Sunday 01:00, 30 min delay, TimeoutStartSec=3600.
    JobSpec maintain =
        builtin_job("maintain", "Complete ML infrastructure maintenance", "Sun 01:00");
    maintain.randomized_delay = seconds(1800);
    maintain.timeout = seconds(3600);
    jobs.push_back(std::move(maintain));

    return jobs;
}

}  // namespace mlk::sched
