#include "mlkeeper/sched/scheduler.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace mlk::sched {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

TimePoint at(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
    return time_point_cast<microseconds>(sys_days{year{y} / mo / d} + hours{h} + minutes{mi} +
                                         seconds{s});
}

ScheduledJob job(const std::string& name, const std::string& calendar, bool persistent = true,
                 seconds delay = 0s, std::optional<TimePoint> last = std::nullopt) {
    JobSpec spec;
    spec.name = name;
    spec.schedule = calendar;
    spec.persistent = persistent;
    spec.randomized_delay = delay;
    return ScheduledJob{spec, Schedule::parse(ScheduleKind::kCalendar, calendar), last};
}

Scheduler::Random no_delay() {
    return [](microseconds) { return 0us; };
}

TEST(Scheduler, FiresAtTheNextElapseAndReplans) {
    Scheduler s({job("backup", "*-*-* 02:00:00 UTC")}, no_delay());
    s.start(at(2026, 11, 22, 1, 0));
    ASSERT_EQ(s.next_wake(), at(2026, 11, 22, 2, 0));
    EXPECT_TRUE(s.take_due(at(2026, 11, 22, 1, 59, 59)).empty());
    auto due = s.take_due(at(2026, 11, 22, 2, 0));
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].trigger, Trigger::kScheduled);
    EXPECT_EQ(due[0].elapse, at(2026, 11, 22, 2, 0));
    EXPECT_EQ(s.next_wake(), at(2026, 11, 23, 2, 0));
}

TEST(Scheduler, PersistentJobCatchesUpOnceAfterDowntime) {
    // Down for three days: three daily elapses missed, one catch-up run.
    Scheduler s({job("backup", "*-*-* 02:00:00 UTC", true, 0s, at(2026, 11, 19, 2, 0))},
                no_delay());
    const auto now = at(2026, 11, 22, 12, 0);
    s.start(now);
    EXPECT_EQ(s.plan(0).trigger, Trigger::kCatchUp);
    auto due = s.take_due(now);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].trigger, Trigger::kCatchUp);
    EXPECT_EQ(due[0].elapse, at(2026, 11, 20, 2, 0));  // the first elapse missed
    EXPECT_TRUE(s.take_due(now).empty());
    EXPECT_EQ(s.next_wake(), at(2026, 11, 23, 2, 0));
}

TEST(Scheduler, NoCatchUpWhenNotPersistentOrNeverRunOrNothingMissed) {
    const auto now = at(2026, 11, 22, 12, 0);
    Scheduler s({job("a", "*-*-* 02:00:00 UTC", false, 0s, at(2026, 11, 19, 2, 0)),
                 job("b", "*-*-* 02:00:00 UTC", true, 0s, std::nullopt),
                 job("c", "*-*-* 02:00:00 UTC", true, 0s, at(2026, 11, 22, 2, 0))},
                no_delay());
    s.start(now);
    EXPECT_TRUE(s.take_due(now).empty());
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(s.plan(i).trigger, Trigger::kScheduled) << i;
        EXPECT_EQ(s.plan(i).fire_at, at(2026, 11, 23, 2, 0)) << i;
    }
}

TEST(Scheduler, RandomizedDelayStaysWithinItsBound) {
    const auto now = at(2026, 11, 22, 0, 0);
    microseconds asked{-1};
    Scheduler fixed({job("backup", "*-*-* 02:00:00 UTC", true, 600s)}, [&](microseconds max) {
        asked = max;
        return max;
    });
    fixed.start(now);
    EXPECT_EQ(asked, microseconds(600s));
    EXPECT_EQ(fixed.plan(0).fire_at, at(2026, 11, 22, 2, 10));

    // The real random source: every draw within [elapse, elapse + 600 s], and not all equal.
    std::optional<TimePoint> lo, hi;
    for (int i = 0; i < 500; ++i) {
        Scheduler s({job("backup", "*-*-* 02:00:00 UTC", true, 600s)});
        s.start(now);
        const auto f = *s.plan(0).fire_at;
        ASSERT_GE(f, at(2026, 11, 22, 2, 0));
        ASSERT_LE(f, at(2026, 11, 22, 2, 10));
        lo = lo ? std::min(*lo, f) : f;
        hi = hi ? std::max(*hi, f) : f;
    }
    EXPECT_GT(*hi - *lo, duration_cast<microseconds>(300s));  // spread over most of the window
}

TEST(Scheduler, LateWakeUpCollapsesMissedElapsesIntoOneFiring) {
    Scheduler s({job("gpu", "*:0/5 UTC")}, no_delay());
    s.start(at(2026, 11, 22, 0, 1));
    auto due = s.take_due(at(2026, 11, 22, 1, 2));  // slept through 12 elapses
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(s.next_wake(), at(2026, 11, 22, 1, 5));
}

TEST(Scheduler, ADayOfFiveMinuteJobsAndAWeekOfDailiesInVirtualTime) {
    Scheduler s({job("gpu", "*:0/5 UTC"), job("backup", "*-*-* 02:00:00 UTC", true, 600s),
                 job("cleanup", "Sun *-*-* 03:00:00 UTC", true, 1800s)});
    const auto start = at(2026, 11, 22, 0, 0, 30);  // a Sunday
    s.start(start);
    std::map<std::string, int> count;
    for (auto now = *s.next_wake(); now < start + days{7}; now = *s.next_wake()) {
        for (const auto& f : s.take_due(now)) {
            ++count[s.jobs()[f.job].spec.name];
            s.triggered(f.job, now);
        }
    }
    EXPECT_EQ(count["gpu"], 7 * 288);
    EXPECT_EQ(count["backup"], 7);
    EXPECT_EQ(count["cleanup"], 1);
}

TEST(Scheduler, NeverElapsingScheduleHasNoWake) {
    Scheduler s({job("old", "2020-01-01 00:00:00 UTC")}, no_delay());
    s.start(at(2026, 11, 22));
    EXPECT_FALSE(s.next_wake());
    EXPECT_TRUE(s.take_due(at(2030, 1, 1)).empty());
}

TEST(Scheduler, CronSchedulesWorkTheSameWay) {
    JobSpec spec;
    spec.name = "nightly";
    spec.schedule_kind = ScheduleKind::kCron;
    spec.schedule = "30 2 * * *";
    Scheduler s({ScheduledJob{spec, Schedule::parse(ScheduleKind::kCron, "30 2 * * *"), {}}},
                no_delay());
    s.start(at(2026, 11, 22, 0, 0));
    const auto local = util::TimeZone::local();
    const auto next = *s.next_wake();
    const auto wall = local.to_local(floor<seconds>(next));
    const auto tod = wall - floor<days>(wall);
    EXPECT_EQ(tod, hours{2} + minutes{30});
}

TEST(Schedule, BadExpressionsAreOneLineErrors) {
    EXPECT_THROW((void)Schedule::parse(ScheduleKind::kCalendar, "every tuesday"), ScheduleError);
    EXPECT_THROW((void)Schedule::parse(ScheduleKind::kCron, "61 * * * *"), ScheduleError);
    try {
        (void)Schedule::parse(ScheduleKind::kCron, "61 * * * *");
    } catch (const ScheduleError& e) {
        EXPECT_NE(std::string(e.what()).find("61"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace mlk::sched
