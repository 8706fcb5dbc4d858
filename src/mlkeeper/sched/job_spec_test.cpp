#include "mlkeeper/sched/job_spec.hpp"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "mlkeeper/util/strings.hpp"

namespace mlk::sched {
namespace {

using std::chrono::seconds;

const JobSpec& find(const std::vector<JobSpec>& jobs, const std::string& name) {
    for (const auto& j : jobs) {
        if (j.name == name) {
            return j;
        }
    }
    throw std::runtime_error("no job " + name);
}

TEST(DefaultJobs, AreTheSeedsFourTimers) {
    auto jobs = default_jobs();
    ASSERT_EQ(jobs.size(), 4u);
    std::set<std::string> names;
    for (const auto& j : jobs) {
        names.insert(j.name);
        EXPECT_EQ(j.kind, TaskKind::kBuiltin) << j.name;
        EXPECT_EQ(j.builtin, j.name) << j.name;
        EXPECT_TRUE(j.argv.empty()) << j.name;
        EXPECT_EQ(j.schedule_kind, ScheduleKind::kCalendar) << j.name;
        EXPECT_TRUE(j.persistent) << j.name;
        EXPECT_TRUE(j.alert_on_failure) << j.name;
        EXPECT_FALSE(j.description.empty()) << j.name;
        EXPECT_EQ(j.nice, 0) << j.name;
        EXPECT_EQ(j.io_class, IoClass::kNone) << j.name;
    }
    EXPECT_EQ(names, (std::set<std::string>{"backup", "gpu", "cleanup", "maintain"}));
}

TEST(DefaultJobs, BackupIsDailyAtTwoWithTheSeedLimits) {
    const auto jobs = default_jobs();
    const auto& b = find(jobs, "backup");
    EXPECT_EQ(b.schedule, "*-*-* 02:00:00");
    EXPECT_EQ(b.randomized_delay, seconds(600));
    ASSERT_TRUE(b.memory_max.has_value());
    EXPECT_EQ(*b.memory_max, 2ull * 1024 * 1024 * 1024);
    EXPECT_EQ(b.cpu_quota_percent, std::optional<int>(50));
    EXPECT_EQ(b.timeout, seconds(0));
    EXPECT_EQ(b.retries, 2);  // Restart=on-failure, bounded as in design-answers Q8
    EXPECT_EQ(b.retry_delay, seconds(300));
}

TEST(DefaultJobs, GpuEveryFiveMinutesWithoutDelayOrLimits) {
    const auto jobs = default_jobs();
    const auto& g = find(jobs, "gpu");
    EXPECT_EQ(g.schedule, "*:0/5");
    EXPECT_EQ(g.randomized_delay, seconds(0));
    EXPECT_FALSE(g.memory_max.has_value());
    EXPECT_FALSE(g.cpu_quota_percent.has_value());
    EXPECT_EQ(g.retries, 0);
}

TEST(DefaultJobs, CleanupAndMaintainOnSunday) {
    const auto jobs = default_jobs();
    const auto& c = find(jobs, "cleanup");
    EXPECT_EQ(c.schedule, "Sun 03:00");
    EXPECT_EQ(c.randomized_delay, seconds(1800));
    EXPECT_EQ(c.cpu_quota_percent, std::optional<int>(30));
    EXPECT_EQ(c.retries, 0);  // the seed unit says Restart=no
    const auto& m = find(jobs, "maintain");
    EXPECT_EQ(m.schedule, "Sun 01:00");
    EXPECT_EQ(m.randomized_delay, seconds(1800));
    EXPECT_EQ(m.timeout, seconds(3600));
    EXPECT_EQ(m.retries, 0);
}

TEST(DefaultJobs, EachCallReturnsFreshValues) {
    auto a = default_jobs();
    a[0].schedule = "changed";
    EXPECT_NE(default_jobs()[0].schedule, "changed");
}

// systemd itself must accept every default schedule and normalize it to what the seeds mean.
TEST(DefaultJobs, SchedulesAreValidForSystemd) {
    if (std::system("command -v systemd-analyze >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "systemd-analyze not installed";
    }
    const std::map<std::string, std::string> normalized = {
        {"backup", "*-*-* 02:00:00"},
        {"gpu", "*-*-* *:00/5:00"},
        {"cleanup", "Sun *-*-* 03:00:00"},
        {"maintain", "Sun *-*-* 01:00:00"},
    };
    for (const auto& j : default_jobs()) {
        std::string cmd =
            "timeout 30 systemd-analyze calendar " + util::shell_quote(j.schedule) + " 2>&1";
        FILE* p = ::popen(cmd.c_str(), "r");
        ASSERT_NE(p, nullptr);
        std::string out;
        char buf[512];
        while (std::fgets(buf, sizeof buf, p) != nullptr) {
            out += buf;
        }
        int status = ::pclose(p);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << j.name << ": " << out;
        EXPECT_NE(out.find("Normalized form: " + normalized.at(j.name) + "\n"), std::string::npos)
            << j.name << ": " << out;
    }
}

}  // namespace
}  // namespace mlk::sched
