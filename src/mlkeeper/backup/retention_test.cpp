#include "mlkeeper/backup/retention.hpp"

#include "support/scoped_tz.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace mlk::backup {
namespace {

using Clock = std::chrono::system_clock;
using std::chrono::days;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;

using mlk::testing::kEastern;
using mlk::testing::ScopedTz;

Clock::time_point utc(int y, unsigned m, unsigned d, int h = 0, int mi = 0) {
    const std::chrono::sys_days day = std::chrono::year{y} / m / d;
    return Clock::time_point(day) + hours(h) + minutes(mi);
}

// The test clock: 2026-11-22 12:00 UTC.
const Clock::time_point kNow = utc(2026, 11, 22, 12);

enum class Verified { kNo, kYes };

ArchiveInfo archive(std::string name, Clock::time_point created, Verified v = Verified::kYes,
                    std::vector<std::string> deps = {}) {
    ArchiveInfo a;
    a.name = std::move(name);
    a.created = created;
    a.verified = v == Verified::kYes;
    a.depends_on = std::move(deps);
    return a;
}

// Only the rules a test names: no age rule, no keep_min.
RetentionPolicy bare_policy() {
    RetentionPolicy p;
    p.max_age = seconds(0);
    p.keep_min = 0;
    return p;
}

std::map<std::string, Decision> by_name(const std::vector<Decision>& ds) {
    std::map<std::string, Decision> m;
    for (const auto& d : ds) {
        m.emplace(d.name, d);
    }
    return m;
}

std::set<std::string> kept_names(const std::vector<Decision>& ds) {
    std::set<std::string> s;
    for (const auto& d : ds) {
        if (d.verdict == Verdict::kKeep) {
            s.insert(d.name);
        }
    }
    return s;
}

bool has_reason(const Decision& d, const std::string& reason) {
    return std::find(d.reasons.begin(), d.reasons.end(), reason) != d.reasons.end();
}

class Retention : public ::testing::Test {
  protected:
    ScopedTz tz_{"UTC"};
};

TEST_F(Retention, EmptyListGivesEmptyPlan) {
    EXPECT_TRUE(plan_retention({}, RetentionPolicy{}, kNow).empty());
}

TEST_F(Retention, VerdictNames) {
    EXPECT_EQ(to_string(Verdict::kKeep), "keep");
    EXPECT_EQ(to_string(Verdict::kDelete), "delete");
}

TEST_F(Retention, SingleOldUnverifiedArchiveIsKeptAsTheNewest) {
    const auto ds =
        plan_retention({archive("a", kNow - days(400), Verified::kNo)}, RetentionPolicy{}, kNow);
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(ds[0].verdict, Verdict::kKeep);
    EXPECT_THAT(ds[0].reasons, ElementsAre("newest archive (always kept)"));
}

TEST_F(Retention, SafetyNetHoldsEvenWithEveryRuleOff) {
    const auto ds = plan_retention(
        {archive("old", kNow - days(9), Verified::kNo), archive("new", kNow - days(8))},
        bare_policy(), kNow);
    const auto m = by_name(ds);
    EXPECT_EQ(m.at("new").verdict, Verdict::kKeep);
    EXPECT_EQ(m.at("old").verdict, Verdict::kDelete);
    EXPECT_THAT(m.at("old").reasons, ElementsAre("no keep rule matched"));
}

TEST_F(Retention, AllOldNoneVerifiedKeepsOnlyTheNewest) {
    // A month of failed backups: the seeds' `find -mtime +30 -delete` would remove all of them.
    std::vector<ArchiveInfo> in;
    for (int i = 0; i < 5; ++i) {
        in.push_back(archive("a" + std::to_string(i), kNow - days(40 + i), Verified::kNo));
    }
    const auto ds = plan_retention(in, RetentionPolicy{}, kNow);
    EXPECT_EQ(kept_names(ds), (std::set<std::string>{"a0"}));
    for (std::size_t i = 1; i < ds.size(); ++i) {
        EXPECT_EQ(ds[i].verdict, Verdict::kDelete) << ds[i].name;
        EXPECT_THAT(ds[i].reasons, ElementsAre("older than 30d")) << ds[i].name;
    }
}

TEST_F(Retention, AllOldAllVerifiedKeepsExactlyKeepMin) {
    std::vector<ArchiveInfo> in;
    for (int i = 0; i < 6; ++i) {
        in.push_back(archive("a" + std::to_string(i), kNow - days(31 + i)));
    }
    const auto ds = plan_retention(in, RetentionPolicy{}, kNow);
    EXPECT_EQ(kept_names(ds), (std::set<std::string>{"a0", "a1", "a2"}));
    EXPECT_THAT(ds[0].reasons,
                ElementsAre("newest archive (always kept)", "keep_min: newest verified"));
    EXPECT_THAT(ds[1].reasons, ElementsAre("keep_min: 2nd newest verified"));
    EXPECT_THAT(ds[2].reasons, ElementsAre("keep_min: 3rd newest verified"));
    EXPECT_THAT(ds[3].reasons, ElementsAre("older than 30d"));

    RetentionPolicy five;
    five.keep_min = 5;
    EXPECT_EQ(kept_names(plan_retention(in, five, kNow)).size(), 5u);
    RetentionPolicy more_than_there_are;
    more_than_there_are.keep_min = 100;
    EXPECT_EQ(kept_names(plan_retention(in, more_than_there_are, kNow)).size(), 6u);
}

TEST_F(Retention, OnlyVerifiedArchivesCountTowardKeepMin) {
    const std::vector<ArchiveInfo> in = {
        archive("u0", kNow - days(31), Verified::kNo),  // newest: kept by the safety net
        archive("u1", kNow - days(32), Verified::kNo),
        archive("v0", kNow - days(33)),
        archive("u2", kNow - days(34), Verified::kNo),
        archive("v1", kNow - days(35)),
        archive("v2", kNow - days(36)),
        archive("v3", kNow - days(37)),
    };
    const auto ds = plan_retention(in, RetentionPolicy{}, kNow);
    EXPECT_EQ(kept_names(ds), (std::set<std::string>{"u0", "v0", "v1", "v2"}));
    const auto m = by_name(ds);
    EXPECT_THAT(m.at("u0").reasons, ElementsAre("newest archive (always kept)"));
    EXPECT_THAT(m.at("v0").reasons, ElementsAre("keep_min: newest verified"));
    EXPECT_THAT(m.at("v2").reasons, ElementsAre("keep_min: 3rd newest verified"));
}

TEST_F(Retention, YoungArchivesAreKeptWhateverTheirState) {
    const std::vector<ArchiveInfo> in = {
        archive("young-unverified", kNow - days(29), Verified::kNo),
        archive("young", kNow - days(1)),
        archive("old", kNow - days(31), Verified::kNo),
    };
    RetentionPolicy p;
    p.keep_min = 0;
    const auto m = by_name(plan_retention(in, p, kNow));
    EXPECT_EQ(m.at("young-unverified").verdict, Verdict::kKeep);
    EXPECT_THAT(m.at("young-unverified").reasons, ElementsAre("within 30d retention"));
    EXPECT_EQ(m.at("old").verdict, Verdict::kDelete);
}

TEST_F(Retention, AgeBoundaryIsInclusive) {
    RetentionPolicy p;
    p.keep_min = 0;
    const std::vector<ArchiveInfo> in = {
        archive("newest", kNow),
        archive("exactly", kNow - days(30)),
        archive("just-over", kNow - days(30) - milliseconds(1)),
    };
    const auto m = by_name(plan_retention(in, p, kNow));
    EXPECT_EQ(m.at("exactly").verdict, Verdict::kKeep);
    EXPECT_EQ(m.at("just-over").verdict, Verdict::kDelete);
}

TEST_F(Retention, ReasonsNameTheConfiguredAge) {
    RetentionPolicy p;
    p.max_age = hours(36);
    p.keep_min = 0;
    const auto ds =
        plan_retention({archive("a", kNow - hours(1)), archive("b", kNow - hours(37))}, p, kNow);
    EXPECT_TRUE(has_reason(ds[0], "within 36h retention"));
    EXPECT_THAT(ds[1].reasons, ElementsAre("older than 36h"));
}

TEST_F(Retention, KeepLastCountsUnverifiedArchives) {
    RetentionPolicy p = bare_policy();
    p.keep_last = 3;
    std::vector<ArchiveInfo> in;
    for (int i = 0; i < 5; ++i) {
        in.push_back(archive("a" + std::to_string(i), kNow - days(100 + i),
                             i % 2 == 0 ? Verified::kNo : Verified::kYes));
    }
    const auto ds = plan_retention(in, p, kNow);
    EXPECT_EQ(kept_names(ds), (std::set<std::string>{"a0", "a1", "a2"}));
    EXPECT_THAT(ds[0].reasons, ElementsAre("newest archive (always kept)", "keep_last: newest"));
    EXPECT_THAT(ds[2].reasons, ElementsAre("keep_last: 3rd newest"));
    EXPECT_THAT(ds[3].reasons, ElementsAre("no keep_* rule matched"));
}

TEST_F(Retention, KeepDailyKeepsTheNewestOfEachDay) {
    RetentionPolicy p = bare_policy();
    p.keep_daily = 3;
    const std::vector<ArchiveInfo> in = {
        archive("d20-02", utc(2026, 11, 20, 2)),      archive("d20-14", utc(2026, 11, 20, 14)),
        archive("d20-23", utc(2026, 11, 20, 23, 59)), archive("d19-08", utc(2026, 11, 19, 8)),
        archive("d19-20", utc(2026, 11, 19, 20)),     archive("d18-01", utc(2026, 11, 18, 1)),
        archive("d17-12", utc(2026, 11, 17, 12)),     archive("d17-00", utc(2026, 11, 17, 0)),
    };
    const auto ds = plan_retention(in, p, kNow);
    EXPECT_EQ(kept_names(ds), (std::set<std::string>{"d20-23", "d19-20", "d18-01"}));
    const auto m = by_name(ds);
    EXPECT_THAT(m.at("d20-23").reasons,
                ElementsAre("newest archive (always kept)", "daily 2026-11-20"));
    EXPECT_THAT(m.at("d19-20").reasons, ElementsAre("daily 2026-11-19"));
    EXPECT_THAT(m.at("d18-01").reasons, ElementsAre("daily 2026-11-18"));
    EXPECT_EQ(m.at("d20-14").verdict, Verdict::kDelete);
    EXPECT_EQ(m.at("d17-12").verdict, Verdict::kDelete);
}

TEST_F(Retention, KeepDailyCountsOnlyDaysThatHaveArchives) {
    // Like restic: "the last 2 days" are the 2 newest days with archives, not 2 calendar days.
    RetentionPolicy p = bare_policy();
    p.keep_daily = 2;
    const std::vector<ArchiveInfo> in = {
        archive("nov01", utc(2026, 11, 1, 3)),
        archive("oct20", utc(2026, 10, 20, 3)),
        archive("sep01", utc(2026, 9, 1, 3)),
    };
    EXPECT_EQ(kept_names(plan_retention(in, p, kNow)), (std::set<std::string>{"nov01", "oct20"}));
}

TEST_F(Retention, KeepWeeklyUsesIsoWeeksAcrossTheYearBoundary) {
    RetentionPolicy p = bare_policy();
    p.keep_weekly = 3;
    // 2026 has 53 ISO weeks: Mon 2026-12-28 to Sun 2027-01-03 is 2026-W53. A calendar-year week
    // number would split it in two.
    const std::vector<ArchiveInfo> in = {
        archive("2027-01-04-mon", utc(2027, 1, 4, 1)),    // 2027-W01
        archive("2027-01-03-sun", utc(2027, 1, 3, 1)),    // 2026-W53, newest of that week
        archive("2027-01-01-fri", utc(2027, 1, 1, 1)),    // 2026-W53
        archive("2026-12-28-mon", utc(2026, 12, 28, 1)),  // 2026-W53
        archive("2026-12-27-sun", utc(2026, 12, 27, 1)),  // 2026-W52
        archive("2026-12-21-mon", utc(2026, 12, 21, 1)),  // 2026-W52, older
    };
    const Clock::time_point now = utc(2027, 1, 5);
    const auto ds = plan_retention(in, p, now);
    EXPECT_EQ(kept_names(ds),
              (std::set<std::string>{"2027-01-04-mon", "2027-01-03-sun", "2026-12-27-sun"}));
    const auto m = by_name(ds);
    EXPECT_TRUE(has_reason(m.at("2027-01-04-mon"), "weekly 2027-W01"));
    EXPECT_THAT(m.at("2027-01-03-sun").reasons, ElementsAre("weekly 2026-W53"));
    EXPECT_THAT(m.at("2026-12-27-sun").reasons, ElementsAre("weekly 2026-W52"));

    // And the other way round: Mon 2024-12-30 already belongs to 2025-W01.
    const std::vector<ArchiveInfo> in2 = {
        archive("2025-01-02", utc(2025, 1, 2, 1)),
        archive("2024-12-30", utc(2024, 12, 30, 1)),
        archive("2024-12-29", utc(2024, 12, 29, 1)),
    };
    p.keep_weekly = 2;
    const auto m2 = by_name(plan_retention(in2, p, utc(2025, 1, 3)));
    EXPECT_TRUE(has_reason(m2.at("2025-01-02"), "weekly 2025-W01"));
    EXPECT_EQ(m2.at("2024-12-30").verdict, Verdict::kDelete);
    EXPECT_THAT(m2.at("2024-12-29").reasons, ElementsAre("weekly 2024-W52"));
}

TEST_F(Retention, KeepMonthlyKeepsTheNewestOfEachMonth) {
    RetentionPolicy p = bare_policy();
    p.keep_monthly = 2;
    const std::vector<ArchiveInfo> in = {
        archive("nov-20", utc(2026, 11, 20)),         archive("nov-01", utc(2026, 11, 1)),
        archive("oct-31", utc(2026, 10, 31, 23, 59)), archive("oct-01", utc(2026, 10, 1)),
        archive("sep-30", utc(2026, 9, 30)),
    };
    const auto ds = plan_retention(in, p, kNow);
    EXPECT_EQ(kept_names(ds), (std::set<std::string>{"nov-20", "oct-31"}));
    EXPECT_TRUE(has_reason(by_name(ds).at("oct-31"), "monthly 2026-10"));
}

TEST_F(Retention, RulesCombineAndEachGivesItsReason) {
    RetentionPolicy p;  // 30d age, keep_min 3
    p.keep_daily = 1;
    p.keep_monthly = 3;
    const std::vector<ArchiveInfo> in = {
        archive("a", utc(2026, 11, 21, 2)),
        archive("b", utc(2026, 11, 20, 2)),
        archive("c", utc(2026, 10, 15, 2)),
        archive("d", utc(2026, 10, 10, 2)),
        archive("e", utc(2026, 9, 10, 2), Verified::kNo),
        archive("f", utc(2026, 8, 10, 2)),
    };
    const auto m = by_name(plan_retention(in, p, kNow));
    EXPECT_THAT(m.at("a").reasons,
                ElementsAre("newest archive (always kept)", "within 30d retention",
                            "keep_min: newest verified", "daily 2026-11-21", "monthly 2026-11"));
    // Not picked by keep_daily (1 day) nor keep_monthly (November is taken by "a"): the age rule
    // still keeps it.
    EXPECT_THAT(m.at("b").reasons,
                ElementsAre("within 30d retention", "keep_min: 2nd newest verified"));
    EXPECT_THAT(m.at("c").reasons, ElementsAre("keep_min: 3rd newest verified", "monthly 2026-10"));
    EXPECT_THAT(m.at("d").reasons, ElementsAre("older than 30d", "no keep_* rule matched"));
    EXPECT_THAT(m.at("e").reasons, ElementsAre("monthly 2026-09"));  // unverified still counts
    EXPECT_EQ(m.at("f").verdict, Verdict::kDelete);
}

TEST_F(Retention, AgeRuleKeepsArchivesTheKeepRulesSkip) {
    RetentionPolicy p;
    p.keep_min = 0;
    p.keep_last = 1;
    std::vector<ArchiveInfo> in;
    for (int i = 0; i < 10; ++i) {
        in.push_back(archive("a" + std::to_string(i), kNow - days(i * 5)));
    }
    const auto ds = plan_retention(in, p, kNow);
    // Ages 0..30 days (a0..a6) are young; a7..a9 are older and keep_last takes only a0.
    EXPECT_EQ(kept_names(ds).size(), 7u);
    EXPECT_EQ(ds[7].verdict, Verdict::kDelete);
}

TEST_F(Retention, UnlimitedKeepsEveryBucket) {
    RetentionPolicy p = bare_policy();
    p.keep_daily = kUnlimited;
    std::vector<ArchiveInfo> in;
    for (int i = 0; i < 50; ++i) {
        in.push_back(archive("a" + std::to_string(i), kNow - days(i) - hours(1)));
        in.push_back(archive("b" + std::to_string(i), kNow - days(i) - hours(2)));
    }
    const auto ds = plan_retention(in, p, kNow);
    const auto kept = kept_names(ds);
    EXPECT_EQ(kept.size(), 50u);
    for (int i = 0; i < 50; ++i) {
        EXPECT_TRUE(kept.count("a" + std::to_string(i))) << i;
    }

    RetentionPolicy all_last = bare_policy();
    all_last.keep_last = kUnlimited;
    EXPECT_EQ(kept_names(plan_retention(in, all_last, kNow)).size(), in.size());
}

TEST_F(Retention, IncrementalChainOfAKeptArchiveIsKept) {
    RetentionPolicy p;
    p.keep_min = 1;
    const std::string inc2 = "models_backup_20261122_020000.tar.zst";
    const std::vector<ArchiveInfo> in = {
        archive("full", kNow - days(60)),
        archive("inc1", kNow - days(50), Verified::kYes, {"full"}),
        archive(inc2, kNow - days(40), Verified::kYes, {"inc1", "full"}),
        archive("older-full", kNow - days(70)),
    };
    const auto m = by_name(plan_retention(in, p, kNow));
    EXPECT_EQ(m.at(inc2).verdict, Verdict::kKeep);
    EXPECT_EQ(m.at("inc1").verdict, Verdict::kKeep);
    EXPECT_THAT(m.at("inc1").reasons, ElementsAre("needed by " + inc2));
    EXPECT_EQ(m.at("full").verdict, Verdict::kKeep);
    // Newest dependent first.
    EXPECT_THAT(m.at("full").reasons, ElementsAre("needed by " + inc2, "needed by inc1"));
    EXPECT_EQ(m.at("older-full").verdict, Verdict::kDelete);
}

TEST_F(Retention, DependenciesAreFollowedTransitively) {
    // Only direct parents listed: full <- inc1 <- inc2 <- inc3.
    RetentionPolicy p;
    p.keep_min = 1;
    const std::vector<ArchiveInfo> in = {
        archive("inc3", kNow - days(40), Verified::kYes, {"inc2"}),
        archive("inc2", kNow - days(41), Verified::kNo, {"inc1"}),
        archive("inc1", kNow - days(42), Verified::kNo, {"full"}),
        archive("full", kNow - days(43), Verified::kNo),
    };
    const auto ds = plan_retention(in, p, kNow);
    EXPECT_EQ(kept_names(ds).size(), 4u);
    const auto m = by_name(ds);
    EXPECT_THAT(m.at("inc2").reasons, ElementsAre("needed by inc3"));
    EXPECT_THAT(m.at("inc1").reasons, ElementsAre("needed by inc2"));
    EXPECT_THAT(m.at("full").reasons, ElementsAre("needed by inc1"));
}

TEST_F(Retention, AKeptDependencyGetsNeededByToo) {
    const std::vector<ArchiveInfo> in = {
        archive("inc", kNow - days(1), Verified::kYes, {"full"}),
        archive("full", kNow - days(2)),
    };
    const auto m = by_name(plan_retention(in, RetentionPolicy{}, kNow));
    EXPECT_TRUE(has_reason(m.at("full"), "within 30d retention"));
    EXPECT_TRUE(has_reason(m.at("full"), "needed by inc"));
}

TEST_F(Retention, ChainWithDeletedHeadGoesEntirely) {
    RetentionPolicy p;
    p.keep_min = 1;
    const std::vector<ArchiveInfo> in = {
        archive("new-full", kNow - days(35)),
        archive("inc2", kNow - days(40), Verified::kYes, {"inc1", "full"}),
        archive("inc1", kNow - days(45), Verified::kYes, {"full"}),
        archive("full", kNow - days(50)),
    };
    const auto ds = plan_retention(in, p, kNow);
    EXPECT_EQ(kept_names(ds), (std::set<std::string>{"new-full"}));
    for (const auto& d : ds) {
        EXPECT_TRUE(d.warnings.empty()) << d.name;
        if (d.verdict == Verdict::kDelete) {
            EXPECT_THAT(d.reasons, ElementsAre("older than 30d")) << d.name;
        }
    }
}

TEST_F(Retention, ADeletedIncrementalDoesNotPinItsParent) {
    // The parent is young and kept; the old incremental on top of an old full is deleted, and the
    // old full is NOT kept for its sake.
    RetentionPolicy p;
    p.keep_min = 0;
    const std::vector<ArchiveInfo> in = {
        archive("young", kNow - days(1)),
        archive("old-inc", kNow - days(40), Verified::kYes, {"old-full"}),
        archive("old-full", kNow - days(41)),
    };
    EXPECT_EQ(kept_names(plan_retention(in, p, kNow)), (std::set<std::string>{"young"}));
}

TEST_F(Retention, MissingDependencyIsReportedNotFatal) {
    const std::vector<ArchiveInfo> in = {
        archive("inc", kNow - days(1), Verified::kYes, {"gone-full", "gone-full"}),
        archive("old-inc", kNow - days(90), Verified::kYes, {"also-gone"}),
    };
    RetentionPolicy p;
    p.keep_min = 1;
    const auto m = by_name(plan_retention(in, p, kNow));
    EXPECT_EQ(m.at("inc").verdict, Verdict::kKeep);
    EXPECT_THAT(m.at("inc").warnings,
                ElementsAre("depends on gone-full, which is not in the list"));  // once
    EXPECT_EQ(m.at("old-inc").verdict, Verdict::kDelete);
    EXPECT_THAT(m.at("old-inc").warnings,
                ElementsAre("depends on also-gone, which is not in the list"));
}

TEST_F(Retention, CyclesAndSelfDependenciesTerminate) {
    RetentionPolicy p;
    p.keep_min = 1;
    const std::vector<ArchiveInfo> in = {
        archive("a", kNow - days(40), Verified::kYes, {"b", "a"}),
        archive("b", kNow - days(41), Verified::kNo, {"c"}),
        archive("c", kNow - days(42), Verified::kNo, {"a"}),
        archive("d", kNow - days(43), Verified::kNo),
    };
    const auto m = by_name(plan_retention(in, p, kNow));
    EXPECT_EQ(m.at("a").verdict, Verdict::kKeep);
    EXPECT_EQ(m.at("b").verdict, Verdict::kKeep);
    EXPECT_EQ(m.at("c").verdict, Verdict::kKeep);
    EXPECT_EQ(m.at("d").verdict, Verdict::kDelete);
    EXPECT_THAT(m.at("a").warnings, ElementsAre("lists itself as a dependency"));
    EXPECT_TRUE(has_reason(m.at("a"), "needed by c"));
    EXPECT_FALSE(has_reason(m.at("a"), "needed by a"));
}

TEST_F(Retention, TiesInTimeAreBrokenByNameWhateverTheInputOrder) {
    const Clock::time_point t = kNow - days(40);
    std::vector<ArchiveInfo> in = {
        archive("b", t),
        archive("d", t),
        archive("a", t),
        archive("c", t),
    };
    RetentionPolicy p;
    p.keep_min = 2;
    std::sort(in.begin(), in.end(),
              [](const ArchiveInfo& x, const ArchiveInfo& y) { return x.name < y.name; });
    do {
        const auto ds = plan_retention(in, p, kNow);
        ASSERT_EQ(kept_names(ds), (std::set<std::string>{"c", "d"}));
        EXPECT_TRUE(has_reason(by_name(ds).at("d"), "newest archive (always kept)"));
        EXPECT_TRUE(has_reason(by_name(ds).at("c"), "keep_min: 2nd newest verified"));
    } while (std::next_permutation(
        in.begin(), in.end(),
        [](const ArchiveInfo& x, const ArchiveInfo& y) { return x.name < y.name; }));
}

TEST_F(Retention, UnsortedInputKeepsInputOrderInTheOutput) {
    const std::vector<ArchiveInfo> in = {
        archive("mid", kNow - days(45)),
        archive("oldest", kNow - days(60)),
        archive("newest", kNow - days(31)),
        archive("older", kNow - days(50)),
    };
    RetentionPolicy p;
    p.keep_min = 2;
    const auto ds = plan_retention(in, p, kNow);
    ASSERT_EQ(ds.size(), 4u);
    EXPECT_EQ(ds[0].name, "mid");
    EXPECT_EQ(ds[0].verdict, Verdict::kKeep);
    EXPECT_EQ(ds[1].name, "oldest");
    EXPECT_EQ(ds[1].verdict, Verdict::kDelete);
    EXPECT_EQ(ds[2].name, "newest");
    EXPECT_EQ(ds[2].verdict, Verdict::kKeep);
    EXPECT_EQ(ds[3].name, "older");
    EXPECT_EQ(ds[3].verdict, Verdict::kDelete);
}

TEST_F(Retention, BigOrdinals) {
    RetentionPolicy p = bare_policy();
    p.keep_min = 25;
    std::vector<ArchiveInfo> in;
    for (int i = 0; i < 25; ++i) {
        in.push_back(archive("a" + std::to_string(i), kNow - days(100 + i)));
    }
    const auto ds = plan_retention(in, p, kNow);
    EXPECT_THAT(ds[10].reasons, ElementsAre("keep_min: 11th newest verified"));
    EXPECT_THAT(ds[11].reasons, ElementsAre("keep_min: 12th newest verified"));
    EXPECT_THAT(ds[12].reasons, ElementsAre("keep_min: 13th newest verified"));
    EXPECT_THAT(ds[20].reasons, ElementsAre("keep_min: 21st newest verified"));
    EXPECT_THAT(ds[21].reasons, ElementsAre("keep_min: 22nd newest verified"));
    EXPECT_THAT(ds[22].reasons, ElementsAre("keep_min: 23rd newest verified"));
    EXPECT_THAT(ds[23].reasons, ElementsAre("keep_min: 24th newest verified"));
}

TEST_F(Retention, FutureTimestampsAreKeptAndFlagged) {
    const auto ds =
        plan_retention({archive("future", kNow + days(2)), archive("past", kNow - days(1))},
                       RetentionPolicy{}, kNow);
    EXPECT_EQ(ds[0].verdict, Verdict::kKeep);
    ASSERT_EQ(ds[0].warnings.size(), 1u);
    EXPECT_NE(ds[0].warnings[0].find("in the future (2026-11-24T12:00:00.000Z)"),
              std::string::npos);
    EXPECT_TRUE(ds[1].warnings.empty());
}

TEST_F(Retention, ExtremeTimesDoNotOverflow) {
    RetentionPolicy p;
    p.keep_min = 0;
    const std::vector<ArchiveInfo> in = {
        archive("max", Clock::time_point::max(), Verified::kNo),
        archive("min", Clock::time_point::min(), Verified::kNo),
        archive("epoch", Clock::time_point{}, Verified::kNo),
    };
    const auto m = by_name(plan_retention(in, p, kNow));
    EXPECT_EQ(m.at("max").verdict, Verdict::kKeep);
    EXPECT_EQ(m.at("min").verdict, Verdict::kDelete);
    EXPECT_EQ(m.at("epoch").verdict, Verdict::kDelete);

    RetentionPolicy forever;
    forever.max_age = seconds(std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(kept_names(plan_retention(in, forever, kNow)).size(), 3u);
}

TEST_F(Retention, InvalidInputThrows) {
    const std::vector<ArchiveInfo> dup = {archive("a", kNow), archive("a", kNow - days(1))};
    EXPECT_THROW(plan_retention(dup, RetentionPolicy{}, kNow), std::invalid_argument);

    const std::vector<ArchiveInfo> one = {archive("a", kNow)};
    RetentionPolicy p;
    p.max_age = seconds(-1);
    EXPECT_THROW(plan_retention(one, p, kNow), std::invalid_argument);
    p = RetentionPolicy{};
    p.keep_min = -1;
    EXPECT_THROW(plan_retention(one, p, kNow), std::invalid_argument);
    p = RetentionPolicy{};
    p.keep_daily = -2;
    EXPECT_THROW(plan_retention(one, p, kNow), std::invalid_argument);
    p = RetentionPolicy{};
    p.keep_last = -5;
    EXPECT_THROW(plan_retention(one, p, kNow), std::invalid_argument);
    // An invalid policy is rejected even for an empty list, so a config typo shows up early.
    EXPECT_THROW(plan_retention({}, p, kNow), std::invalid_argument);
}

TEST(RetentionTz, DayBucketsFollowTheLocalZone) {
    // 03:00Z and 06:00Z on Nov 20: the same UTC day, but 22:00 Nov 19 and 01:00 Nov 20 in
    // New York.
    const std::vector<ArchiveInfo> in = {
        archive("late", utc(2026, 11, 20, 6)),
        archive("early", utc(2026, 11, 20, 3)),
    };
    RetentionPolicy p = bare_policy();
    p.keep_daily = 5;
    {
        ScopedTz tz("UTC");
        EXPECT_EQ(kept_names(plan_retention(in, p, kNow)), (std::set<std::string>{"late"}));
    }
    {
        ScopedTz tz(kEastern);
        const auto ds = plan_retention(in, p, kNow);
        EXPECT_EQ(kept_names(ds), (std::set<std::string>{"late", "early"}));
        EXPECT_TRUE(has_reason(ds[0], "daily 2026-11-20"));
        EXPECT_THAT(ds[1].reasons, ElementsAre("daily 2026-11-19"));
    }
}

// Invariants over many random lists: whatever the mix, the newest archive, the keep_min newest
// verified and every dependency of a kept archive survive, and every decision has a reason.
TEST_F(Retention, RandomListsKeepTheInvariants) {
    std::mt19937 rng(12345);
    for (int round = 0; round < 300; ++round) {
        const int n = static_cast<int>(rng() % 20);
        std::vector<ArchiveInfo> in;
        for (int i = 0; i < n; ++i) {
            ArchiveInfo a =
                archive("a" + std::to_string(i), kNow - hours(static_cast<int>(rng() % (24 * 90))),
                        rng() % 3 == 0 ? Verified::kNo : Verified::kYes);
            if (i > 0 && rng() % 2 == 0) {
                a.depends_on.push_back("a" + std::to_string(rng() % i));
            }
            if (rng() % 10 == 0) {
                a.depends_on.push_back("missing");
            }
            in.push_back(std::move(a));
        }
        RetentionPolicy p;
        p.max_age = days(rng() % 40);
        p.keep_min = static_cast<int>(rng() % 4);
        p.keep_last = static_cast<int>(rng() % 3);
        p.keep_daily = static_cast<int>(rng() % 4);
        p.keep_weekly = static_cast<int>(rng() % 3);
        p.keep_monthly = static_cast<int>(rng() % 3);
        const auto ds = plan_retention(in, p, kNow);
        ASSERT_EQ(ds.size(), in.size());
        if (in.empty()) {
            continue;
        }
        std::vector<std::size_t> order(in.size());
        for (std::size_t i = 0; i < order.size(); ++i) {
            order[i] = i;
        }
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return in[a].created != in[b].created ? in[a].created > in[b].created
                                                  : in[a].name > in[b].name;
        });
        EXPECT_EQ(ds[order[0]].verdict, Verdict::kKeep);
        int verified = 0;
        for (const std::size_t i : order) {
            if (in[i].verified && verified++ < p.keep_min) {
                EXPECT_EQ(ds[i].verdict, Verdict::kKeep) << "round " << round;
            }
        }
        for (std::size_t i = 0; i < in.size(); ++i) {
            EXPECT_EQ(ds[i].name, in[i].name);
            EXPECT_FALSE(ds[i].reasons.empty());
            if (ds[i].verdict != Verdict::kKeep) {
                continue;
            }
            for (const auto& dep : in[i].depends_on) {
                for (const auto& d : ds) {
                    if (d.name == dep) {
                        EXPECT_EQ(d.verdict, Verdict::kKeep) << "round " << round;
                    }
                }
            }
        }
    }
}

}  // namespace
}  // namespace mlk::backup
