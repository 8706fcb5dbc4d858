#include "mlkeeper/sched/civil_time.hpp"

#include "support/scoped_tz.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <optional>
#include <random>
#include <string>

namespace mlk::sched {
namespace {

using mlk::testing::ScopedTz;

std::tm to_libc(const Tm& t) {
    std::tm r{};
    r.tm_sec = t.sec;
    r.tm_min = t.min;
    r.tm_hour = t.hour;
    r.tm_mday = t.mday;
    r.tm_mon = t.mon;
    r.tm_year = t.year;
    r.tm_isdst = t.isdst;
    return r;
}

void expect_same(const Tm& ours, const std::tm& libc, const std::string& what) {
    EXPECT_EQ(ours.year, libc.tm_year) << what;
    EXPECT_EQ(ours.mon, libc.tm_mon) << what;
    EXPECT_EQ(ours.mday, libc.tm_mday) << what;
    EXPECT_EQ(ours.hour, libc.tm_hour) << what;
    EXPECT_EQ(ours.min, libc.tm_min) << what;
    EXPECT_EQ(ours.sec, libc.tm_sec) << what;
    EXPECT_EQ(ours.wday, libc.tm_wday) << what;
    EXPECT_EQ(ours.yday, libc.tm_yday) << what;
    EXPECT_EQ(ours.isdst, libc.tm_isdst) << what;
    EXPECT_EQ(ours.gmtoff, libc.tm_gmtoff) << what;
}

TEST(CivilTime, DaysRoundTrip) {
    EXPECT_EQ(days_from_civil(1970, 1, 1), 0);
    EXPECT_EQ(days_from_civil(2000, 3, 1), 11017);
    EXPECT_EQ(days_from_civil(1969, 12, 31), -1);
    for (std::int64_t d = -800000; d <= 800000; d += 37) {
        const CivilDate c = civil_from_days(d);
        ASSERT_EQ(days_from_civil(c.year, c.month, c.day), d);
    }
    const CivilDate leap = civil_from_days(days_from_civil(2028, 2, 29));
    EXPECT_EQ(leap.year, 2028);
    EXPECT_EQ(leap.month, 2);
    EXPECT_EQ(leap.day, 29);
}

TEST(CivilTime, UtcMatchesGmtimeAndTimegm) {
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<std::int64_t> dist(-2000000000LL, 8000000000LL);
    for (int i = 0; i < 20000; ++i) {
        const std::int64_t t = dist(rng);
        const std::time_t tt = t;
        std::tm g{};
        ASSERT_NE(::gmtime_r(&tt, &g), nullptr);
        expect_same(to_tm(t, nullptr), g, "gmtime " + std::to_string(t));
    }
    // Out-of-range fields normalise as timegm() does.
    std::uniform_int_distribution<int> field(-100, 100);
    MktimeState state;
    for (int i = 0; i < 20000; ++i) {
        Tm req;
        req.year = 100 + field(rng);
        req.mon = field(rng);
        req.mday = field(rng);
        req.hour = field(rng);
        req.min = field(rng);
        req.sec = field(rng);
        std::tm libc = to_libc(req);
        const std::time_t expect = ::timegm(&libc);
        Tm ours = req;
        ASSERT_EQ(make_time(ours, nullptr, state), expect);
        expect_same(ours, libc, "timegm");
    }
}

// Drives our mktime and glibc's through the same sequence of requests in `zone`, so that glibc's
// hidden offset guess and ours evolve alike; every result and normalised tm must agree.
void compare_mktime(const std::string& zone_name, std::uint64_t seed, int requests = 20000,
                    int day_step = 1) {
    const std::optional<util::TimeZone> zone = util::TimeZone::load(zone_name);
    if (!zone) {
        GTEST_SKIP() << zone_name << " not installed";
    }
    ScopedTz tz((":" + zone_name).c_str());

    // Synchronise the guesses on an unambiguous instant (noon, mid-January).
    MktimeState state;
    {
        Tm req;
        req.year = 126;
        req.mday = 15;
        req.hour = 12;
        req.isdst = -1;
        std::tm libc = to_libc(req);
        ASSERT_EQ(make_time(req, &*zone, state), ::mktime(&libc));
    }

    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::int64_t> instant(0, 4102444800LL);  // 1970..2100
    std::uniform_int_distribution<int> isdst_dist(-1, 1);
    std::uniform_int_distribution<int> minute_dist(0, 59);
    std::uniform_int_distribution<int> jitter(-1, 1);
    for (int i = 0; i < requests; ++i) {
        const std::int64_t t = instant(rng);
        const std::time_t tt = t;
        std::tm lt{};
        ASSERT_NE(::localtime_r(&tt, &lt), nullptr);
        expect_same(to_tm(t, &*zone), lt, zone_name + " localtime " + std::to_string(t));

        // Requests near this instant's local time, biased towards the hours where clocks change
        // (spring-forward gaps, fall-back folds) and with every tm_isdst request.
        Tm req;
        req.year = lt.tm_year;
        req.mon = lt.tm_mon;
        req.mday = lt.tm_mday + jitter(rng);
        req.hour = (i % 3 == 0) ? 2 : lt.tm_hour;
        req.min = minute_dist(rng);
        req.sec = (i % 50 == 0) ? 60 : lt.tm_sec;
        req.isdst = isdst_dist(rng);
        std::tm libc = to_libc(req);
        const std::time_t expect = ::mktime(&libc);
        Tm ours = req;
        const std::int64_t got = make_time(ours, &*zone, state);
        ASSERT_EQ(got, expect) << zone_name << " request " << req.year + 1900 << "-" << req.mon + 1
                               << "-" << req.mday << " " << req.hour << ":" << req.min << ":"
                               << req.sec << " isdst=" << req.isdst;
        if (expect != -1) {
            expect_same(ours, libc, zone_name + " mktime");
        }
    }

    // Every local time around this zone's changes in 2026, each with each tm_isdst request.
    for (int day = 1; day <= 366; day += day_step) {
        for (int hour = 0; hour < 5; ++hour) {
            for (int isdst = -1; isdst <= 1; ++isdst) {
                Tm req;
                req.year = 126;
                req.mday = day;
                req.hour = hour;
                req.min = 30;
                req.isdst = isdst;
                std::tm libc = to_libc(req);
                const std::time_t expect = ::mktime(&libc);
                Tm ours = req;
                ASSERT_EQ(make_time(ours, &*zone, state), expect)
                    << zone_name << " day " << day << " hour " << hour << " isdst " << isdst;
            }
        }
    }
}

TEST(CivilTime, MktimeMatchesGlibcBerlin) {
    compare_mktime("Europe/Berlin", 1);
}

TEST(CivilTime, MktimeMatchesGlibcNewYork) {
    compare_mktime("America/New_York", 2);
}

TEST(CivilTime, MktimeMatchesGlibcLordHowe) {
    compare_mktime("Australia/Lord_Howe", 3);  // 30-minute DST shifts
}

TEST(CivilTime, MktimeMatchesGlibcTokyo) {
    // No DST since 1951: a tm_isdst=1 request probes years back and forth, then assumes an hour.
    compare_mktime("Asia/Tokyo", 4, 3000, 5);
}

TEST(CivilTime, SpringForwardGapAndFold) {
    const std::optional<util::TimeZone> berlin = util::TimeZone::load("Europe/Berlin");
    if (!berlin) {
        GTEST_SKIP() << "Europe/Berlin not installed";
    }
    MktimeState state;
    // 2026-03-29 02:30 does not exist in Berlin.
    Tm gap;
    gap.year = 126;
    gap.mon = 2;
    gap.mday = 29;
    gap.hour = 2;
    gap.min = 30;
    gap.isdst = -1;
    const std::int64_t t = make_time(gap, &*berlin, state);
    EXPECT_NE(t, -1);
    EXPECT_TRUE(gap.hour == 1 || gap.hour == 3) << gap.hour;
    // 2026-10-25 02:30 exists twice; isdst selects which.
    Tm summer;
    summer.year = 126;
    summer.mon = 9;
    summer.mday = 25;
    summer.hour = 2;
    summer.min = 30;
    summer.isdst = 1;
    Tm winter = summer;
    winter.isdst = 0;
    EXPECT_EQ(make_time(summer, &*berlin, state), 1792888200);  // 00:30 UTC
    EXPECT_EQ(make_time(winter, &*berlin, state), 1792891800);  // 01:30 UTC
    EXPECT_EQ(summer.isdst, 1);
    EXPECT_EQ(winter.isdst, 0);
}

}  // namespace
}  // namespace mlk::sched
