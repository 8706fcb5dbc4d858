#include "mlkeeper/sched/job_config.hpp"

#include <gtest/gtest.h>

#include "mlkeeper/core/error.hpp"

namespace mlk::sched {
namespace {

const JobSpec* find(const std::vector<JobSpec>& jobs, const std::string& name) {
    for (const auto& j : jobs) {
        if (j.name == name) {
            return &j;
        }
    }
    return nullptr;
}

std::string error_of(const std::string& toml) {
    try {
        (void)parse_jobs(toml, "f.toml", default_jobs());
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

TEST(JobConfig, NoTablesGivesTheDefaults) {
    const auto jobs = parse_jobs("[backup]\nmodel_dir = \"/m\"\n", "f.toml", default_jobs());
    ASSERT_EQ(jobs.size(), default_jobs().size());
    EXPECT_NE(find(jobs, "backup"), nullptr);
}

TEST(JobConfig, TablesChangeDisableAndAddJobs) {
    const auto jobs = parse_jobs(R"(
[schedule.jobs.backup]
on_calendar = "03:30"
retries = 2
retry_delay = "1m"
memory_max = "4G"
cpu_quota = "150%"

[schedule.jobs.gpu]
enabled = false

[schedule.jobs.sync-models]
command = ["/usr/bin/rsync", "-a", "/models/", "nas:/models/"]
cron = "*/15 * * * *"
timeout = "10m"
nice = 10
io_class = "idle"
persistent = false
)",
                                 "f.toml", default_jobs());
    EXPECT_EQ(find(jobs, "gpu"), nullptr);
    const auto* b = find(jobs, "backup");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->schedule, "03:30");
    EXPECT_EQ(b->builtin, "backup");  // kept from the default
    EXPECT_EQ(b->retries, 2);
    EXPECT_EQ(b->retry_delay, std::chrono::seconds(60));
    EXPECT_EQ(b->memory_max, 4000000000ULL);
    EXPECT_EQ(b->cpu_quota_percent, 150);
    const auto* s = find(jobs, "sync-models");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->kind, TaskKind::kCommand);
    EXPECT_EQ(s->argv.size(), 4u);
    EXPECT_EQ(s->schedule_kind, ScheduleKind::kCron);
    EXPECT_EQ(s->timeout, std::chrono::seconds(600));
    EXPECT_EQ(s->io_class, IoClass::kIdle);
    EXPECT_FALSE(s->persistent);
}

TEST(JobConfig, EveryProblemIsReportedWithItsPlace) {
    const auto msg = error_of(R"(
[schedule.jobs.backup]
on_calendar = "every tuesday"
retries = -1
colour = "red"

[schedule.jobs.new]
task = "dance"

[schedule.jobs."Bad Name"]
task = "gpu"
)");
    EXPECT_NE(msg.find("f.toml:3:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("every tuesday"), std::string::npos) << msg;
    EXPECT_NE(msg.find("`retries` must be a whole number from 0 to 100"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unknown key `colour`"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unknown task \"dance\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("job name \"Bad Name\""), std::string::npos) << msg;
}

TEST(JobConfig, NewJobsNeedAProgramAndOneSchedule) {
    EXPECT_NE(error_of("[schedule.jobs.x]\non_calendar = \"daily\"\n").find("set `task`"),
              std::string::npos);
    EXPECT_NE(error_of("[schedule.jobs.x]\ntask = \"gpu\"\n").find("set `on_calendar`"),
              std::string::npos);
    EXPECT_NE(
        error_of("[schedule.jobs.x]\ntask = \"gpu\"\non_calendar = \"daily\"\ncron = \"@daily\"\n")
            .find("not both"),
        std::string::npos);
    EXPECT_NE(error_of("[schedule.jobs.x]\ncommand = []\non_calendar = \"daily\"\n")
                  .find("at least the program"),
              std::string::npos);
    EXPECT_NE(error_of("[schedule]\njobs = 3\n").find("must be tables"), std::string::npos);
    EXPECT_NE(error_of("[schedule.jobs.x]\ntask = \"gpu\"\ncron = \"61 * * * *\"\n").find("61"),
              std::string::npos);
    EXPECT_NE(error_of("[schedule.jobs.x\n").find("f.toml:1:"), std::string::npos);
}

TEST(JobConfig, BuiltinArgsAreExtraArguments) {
    const auto jobs = parse_jobs(
        "[schedule.jobs.health]\ntask = \"health\"\nargs = [\"--no-network\"]\non_calendar = "
        "\"hourly\"\n",
        "f.toml", {});
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_EQ(jobs[0].builtin, "health");
    EXPECT_EQ(jobs[0].argv, std::vector<std::string>{"--no-network"});
}

}  // namespace
}  // namespace mlk::sched
