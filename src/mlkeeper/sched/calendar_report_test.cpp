#include "mlkeeper/sched/calendar_report.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/sched/civil_time.hpp"

namespace mlk::sched {
namespace {

constexpr std::int64_t kSec = 1000000;

Usec utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
    const std::int64_t days = days_from_civil(y, mo, d);
    return Usec{((days * 24 + h) * 60 + mi) * 60 * kSec + s * kSec};
}

#define SKIP_WITHOUT_ZONE(z, name)                                      \
    const std::optional<util::TimeZone> z = util::TimeZone::load(name); \
    if (!z) {                                                           \
        GTEST_SKIP() << name << " not installed";                       \
    }

TEST(CalendarReport, FormatsTimestampsLikeSystemd) {
    const util::TimeZone u = util::TimeZone::utc();
    EXPECT_EQ(format_timestamp(utc(2026, 11, 22, 3), u), "Sun 2026-11-22 03:00:00 UTC");
    EXPECT_EQ(format_timestamp(utc(2026, 11, 22, 3) + Usec{999999}, u),
              "Sun 2026-11-22 03:00:00 UTC");
    EXPECT_EQ(format_timestamp(Usec{0}, u), "-");
    EXPECT_EQ(format_timestamp(kUsecInfinity, u), "-");
    EXPECT_EQ(format_timestamp(Usec{253402214400LL * kSec}, u), "--- XXXX-XX-XX XX:XX:XX");
    EXPECT_EQ(format_timestamp(Usec{253402214399LL * kSec}, u), "Thu 9999-12-30 23:59:59 UTC");
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    EXPECT_EQ(format_timestamp(utc(2026, 11, 22, 3), *berlin), "Sun 2026-11-22 04:00:00 CET");
    EXPECT_EQ(format_timestamp(utc(2026, 7, 1, 3), *berlin), "Wed 2026-07-01 05:00:00 CEST");
    EXPECT_EQ(format_timestamp(utc(2026, 7, 1, 3), *berlin, TimestampZone::kUtc),
              "Wed 2026-07-01 03:00:00 UTC");
}

TEST(CalendarReport, RelativeTimesFollowSystemdsRules) {
    const Usec now = utc(2026, 11, 22, 8);
    const std::vector<std::pair<Usec, std::string>> left = {
        {Usec{0}, "now"},
        {Usec{500}, "500us left"},
        {Usec{5000}, "5ms left"},
        {Usec{59 * kSec}, "59s left"},
        {Usec{61 * kSec}, "1min 1s left"},
        {Usec{299 * kSec}, "4min 59s left"},
        {Usec{300 * kSec}, "5min left"},
        {Usec{3600 * kSec}, "1h 0min left"},
        {Usec{(5 * 3600 + 30 * 60) * kSec}, "5h 30min left"},
        {Usec{6 * 3600 * kSec}, "6h left"},
        {Usec{24 * 3600 * kSec}, "24h left"},
        {Usec{26 * 3600 * kSec}, "1 day 2h left"},
        {Usec{2 * 86400 * kSec}, "2 days left"},
        {Usec{7 * 86400 * kSec}, "1 week 0 days left"},
        {Usec{(7 * 86400 + 17 * 3600) * kSec}, "1 week 0 days left"},
        {Usec{(15 * 86400) * kSec}, "2 weeks 1 day left"},
        {Usec{2629800 * kSec}, "1 month 0 days left"},
        {Usec{(2629800LL * 7 + 18 * 86400) * kSec}, "7 months 18 days left"},
        {Usec{31557600 * kSec}, "1 year 0 months left"},
        {Usec{(31557600LL * 56 + 2629800LL * 10) * kSec}, "56 years 10 months left"},
    };
    for (const auto& [delta, text] : left) {
        EXPECT_EQ(format_timestamp_relative(now + delta, now), text);
    }
    EXPECT_EQ(format_timestamp_relative(now - Usec{26 * 3600 * kSec}, now), "1 day 2h ago");
    EXPECT_EQ(format_timestamp_relative(now - Usec{(2629800LL + 86400) * kSec}, now),
              "1 month 1 day ago");
    EXPECT_EQ(format_timestamp_relative(Usec{0}, now), "-");
}

TEST(CalendarReport, ParsesTimeSpans) {
    EXPECT_EQ(parse_timespan("5min"), Usec{300 * kSec});
    EXPECT_EQ(parse_timespan("1h 30s"), Usec{3630 * kSec});
    EXPECT_EQ(parse_timespan("2.5h"), Usec{9000 * kSec});
    EXPECT_EQ(parse_timespan("90"), Usec{90 * kSec});
    EXPECT_EQ(parse_timespan(" 5 min 3 s"), Usec{303 * kSec});
    EXPECT_EQ(parse_timespan(".5s"), Usec{kSec / 2});
    EXPECT_EQ(parse_timespan("5.5 .5s"), Usec{6 * kSec});
    EXPECT_EQ(parse_timespan("1M"), Usec{2629800 * kSec});
    EXPECT_EQ(parse_timespan("1y"), Usec{31557600 * kSec});
    EXPECT_EQ(parse_timespan("2w"), Usec{14 * 86400 * kSec});
    EXPECT_EQ(parse_timespan("100ms"), Usec{100000});
    EXPECT_EQ(parse_timespan("7us"), Usec{7});
    EXPECT_EQ(parse_timespan("7\xc2\xb5s"), Usec{7});
    EXPECT_EQ(parse_timespan("infinity"), kUsecInfinity);
    for (const char* bad : {"", "5x", "12.34.56", "3.sec", "1.", "abc", "5 h x"}) {
        EXPECT_THROW((void)parse_timespan(bad), TimestampError) << bad;
    }
    try {
        (void)parse_timespan("-5s");
        FAIL() << "negative span accepted";
    } catch (const TimestampError& e) {
        EXPECT_EQ(e.code(), ERANGE);
        EXPECT_STREQ(e.what(), "Failed to parse time span '-5s': Numerical result out of range");
    }
}

TEST(CalendarReport, ParsesAbsoluteTimestamps) {
    const util::TimeZone u = util::TimeZone::utc();
    const Usec now = utc(2026, 11, 22, 8, 0, 47);
    EXPECT_EQ(parse_timestamp("2026-01-01 00:00:00 UTC", now, u), utc(2026, 1, 1));
    EXPECT_EQ(parse_timestamp("2026-01-01 10:00 utc", now, u), utc(2026, 1, 1, 10));
    EXPECT_EQ(parse_timestamp("2026-01-01", now, u), utc(2026, 1, 1));
    EXPECT_EQ(parse_timestamp("26-01-01", now, u), utc(2026, 1, 1));
    EXPECT_EQ(parse_timestamp("68-01-01", now, u), utc(2068, 1, 1));
    EXPECT_EQ(parse_timestamp("2026-1-1 1:2:3", now, u), utc(2026, 1, 1, 1, 2, 3));
    EXPECT_EQ(parse_timestamp(" 2026-01-01", now, u), utc(2026, 1, 1));
    EXPECT_EQ(parse_timestamp("2026-01-01 10:00:00.5", now, u), utc(2026, 1, 1, 10) + Usec{500000});
    EXPECT_EQ(parse_timestamp("2026-01-01 10:00:00.1234567", now, u),
              utc(2026, 1, 1, 10) + Usec{123457});
    EXPECT_EQ(parse_timestamp("2026-02-31", now, u), utc(2026, 3, 3));
    EXPECT_EQ(parse_timestamp("2026-01-01 23:59:60", now, u), utc(2026, 1, 2));
    EXPECT_EQ(parse_timestamp("Sun 2026-11-22", now, u), utc(2026, 11, 22));
    EXPECT_EQ(parse_timestamp("sunday 2026-11-22 UTC", now, u), utc(2026, 11, 22));
    EXPECT_EQ(parse_timestamp("Nov 22 10:00:00", now, u), utc(2026, 11, 22, 10));
    EXPECT_EQ(parse_timestamp("12:00", now, u), utc(2026, 11, 22, 12));
    EXPECT_EQ(parse_timestamp("@1234.5", now, u), Usec{1234500000});
    EXPECT_EQ(parse_timestamp("@5min", now, u), Usec{300 * kSec});
    EXPECT_EQ(parse_timestamp("@infinity", now, u), kUsecInfinity);
    EXPECT_EQ(parse_timestamp("9999-12-30 23:59:59", now, u), Usec{253402214399LL * kSec});
}

TEST(CalendarReport, ParsesRelativeTimestamps) {
    const util::TimeZone u = util::TimeZone::utc();
    const Usec now = utc(2026, 11, 22, 8, 0, 47) + Usec{123};
    EXPECT_EQ(parse_timestamp("now", now, u), now);
    EXPECT_EQ(parse_timestamp("+5h", now, u), now + Usec{5 * 3600 * kSec});
    EXPECT_EQ(parse_timestamp("-1d", now, u), now - Usec{86400 * kSec});
    EXPECT_EQ(parse_timestamp("1d ago", now, u), now - Usec{86400 * kSec});
    EXPECT_EQ(parse_timestamp("5min left", now, u), now + Usec{300 * kSec});
    EXPECT_EQ(parse_timestamp("today", now, u), utc(2026, 11, 22));
    EXPECT_EQ(parse_timestamp("yesterday", now, u), utc(2026, 11, 21));
    EXPECT_EQ(parse_timestamp("tomorrow UTC", now, u), utc(2026, 11, 23));
}

TEST(CalendarReport, RejectsTimestampsSystemdRejects) {
    const util::TimeZone u = util::TimeZone::utc();
    const Usec now = utc(2026, 11, 22, 8);
    for (const char* bad : {"",
                            "garbage",
                            "2026-01-01 25:00",
                            "2026-01-01T10:00",
                            "now UTC",
                            "1969-12-31 23:00 UTC",
                            "99999-01-01",
                            "Mon 2026-11-22",
                            "TODAY",
                            "now+5h",
                            "5h",
                            "+infinity",
                            "@-1",
                            "2026-13-01",
                            "2026-01-32",
                            "2026-01-01 23:59:62",
                            "2026-01-01 10:00:00.",
                            "9999-12-31 00:00",
                            "Nov 22",
                            "69-12-31",
                            "2026-01-01 10:00 Europe/Nowhere",
                            "2026-01-01 10:00 +02",
                            "today "}) {
        EXPECT_THROW((void)parse_timestamp(bad, now, u), TimestampError) << bad;
    }
    try {
        (void)parse_timestamp("garbage", now, u);
    } catch (const TimestampError& e) {
        EXPECT_STREQ(e.what(), "Failed to parse timestamp 'garbage': Invalid argument");
        EXPECT_EQ(e.text(), "garbage");
    }
}

TEST(CalendarReport, TimestampsInLocalAndSuffixZones) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    const Usec now = utc(2026, 11, 22, 8);
    EXPECT_EQ(parse_timestamp("2026-07-01 12:00", now, *berlin), utc(2026, 7, 1, 10));
    EXPECT_EQ(parse_timestamp("2026-07-01 12:00 CEST", now, *berlin), utc(2026, 7, 1, 10));
    EXPECT_EQ(parse_timestamp("today", now, *berlin), utc(2026, 11, 21, 23));
    // DST gap and fold, resolved as glibc's mktime() does in a fresh process (systemd 252).
    EXPECT_EQ(parse_timestamp("2026-03-29 02:30", now, *berlin), Usec{1774747800LL * kSec});
    EXPECT_EQ(parse_timestamp("2026-10-25 02:30", now, *berlin), Usec{1792891800LL * kSec});
    // An IANA zone suffix (accepted as systemd 253+ does).
    const util::TimeZone u = util::TimeZone::utc();
    EXPECT_EQ(parse_timestamp("2026-07-01 12:00 Europe/Berlin", now, u), utc(2026, 7, 1, 10));
    EXPECT_EQ(parse_timestamp("today Europe/Berlin", now, u), utc(2026, 11, 21, 23));
    EXPECT_THROW((void)parse_timestamp("+5h Europe/Berlin", now, u), TimestampError);
}

// The first output of `systemd-analyze calendar --iterations 3 --base-time '2026-03-28 00:00:00
// UTC' 'Sun *-*-* 02:30 Europe/Berlin' daily bogus '*:0/5'` (TZ=UTC), run at
// 2026-11-22 07:59:36 UTC.
TEST(CalendarReport, ReproducesSystemdAnalyzeOutput) {
    CalendarReportOptions opts;
    opts.iterations = 3;
    opts.now = utc(2026, 11, 22, 7, 59, 36);
    opts.base = utc(2026, 3, 28);
    const CalendarReport r =
        calendar_report({"Sun *-*-* 02:30 Europe/Berlin", "daily", "bogus", "*:0/5"}, opts);
    EXPECT_EQ(r.out,
              "  Original form: Sun *-*-* 02:30 Europe/Berlin\n"
              "Normalized form: Sun *-*-* 02:30:00 Europe/Berlin\n"
              "    Next elapse: Sun 2026-04-05 00:30:00 UTC\n"
              "       From now: 7 months 18 days ago\n"
              "       Iter. #2: Sun 2026-04-12 00:30:00 UTC\n"
              "       From now: 7 months 11 days ago\n"
              "       Iter. #3: Sun 2026-04-19 00:30:00 UTC\n"
              "       From now: 7 months 4 days ago\n"
              "\n"
              "  Original form: daily\n"
              "Normalized form: *-*-* 00:00:00\n"
              "    Next elapse: Sun 2026-03-29 00:00:00 UTC\n"
              "       From now: 7 months 25 days ago\n"
              "       Iter. #2: Mon 2026-03-30 00:00:00 UTC\n"
              "       From now: 7 months 24 days ago\n"
              "       Iter. #3: Tue 2026-03-31 00:00:00 UTC\n"
              "       From now: 7 months 23 days ago\n"
              "\n"
              "\n"
              "  Original form: *:0/5\n"
              "Normalized form: *-*-* *:00/5:00\n"
              "    Next elapse: Sat 2026-03-28 00:05:00 UTC\n"
              "       From now: 7 months 26 days ago\n"
              "       Iter. #2: Sat 2026-03-28 00:10:00 UTC\n"
              "       From now: 7 months 26 days ago\n"
              "       Iter. #3: Sat 2026-03-28 00:15:00 UTC\n"
              "       From now: 7 months 26 days ago\n");
    EXPECT_EQ(r.err, "Failed to parse calendar specification 'bogus': Invalid argument\n");
    EXPECT_EQ(r.exit_code, 1);
}

// TZ=Europe/Berlin systemd-analyze calendar --iterations 2 'Mon 02:00 CET' daily, at
// 2026-11-22 07:59:36 UTC.
TEST(CalendarReport, ShowsUtcLinesInOtherZones) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    CalendarReportOptions opts;
    opts.iterations = 2;
    opts.now = utc(2026, 11, 22, 7, 59, 36);
    opts.zone = *berlin;
    const CalendarReport r = calendar_report({"Mon 02:00 CET", "daily"}, opts);
    EXPECT_EQ(r.out,
              "  Original form: Mon 02:00 CET\n"
              "Normalized form: Mon *-*-* 02:00:00 CET\n"
              "    Next elapse: Mon 2026-11-23 02:00:00 CET\n"
              "       (in UTC): Mon 2026-11-23 01:00:00 UTC\n"
              "       From now: 17h left\n"
              "       Iter. #2: Mon 2026-11-30 02:00:00 CET\n"
              "       (in UTC): Mon 2026-11-30 01:00:00 UTC\n"
              "       From now: 1 week 0 days left\n"
              "\n"
              "  Original form: daily\n"
              "Normalized form: *-*-* 00:00:00\n"
              "    Next elapse: Mon 2026-11-23 00:00:00 CET\n"
              "       (in UTC): Sun 2026-11-22 23:00:00 UTC\n"
              "       From now: 15h left\n"
              "       Iter. #2: Tue 2026-11-24 00:00:00 CET\n"
              "       (in UTC): Mon 2026-11-23 23:00:00 UTC\n"
              "       From now: 1 day 15h left\n");
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(r.exit_code, 0);
}

TEST(CalendarReport, NeverIterationsAndLabels) {
    CalendarReportOptions opts;
    opts.iterations = 11;
    opts.now = utc(2026, 11, 22, 8);
    opts.base = utc(2026, 3, 28);
    const CalendarReport r = calendar_report({"2020-*-*", "minutely"}, opts);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("  Original form: 2020-*-*\n"
                         "Normalized form: 2020-*-* 00:00:00\n"
                         "    Next elapse: never\n\n"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("       Iter. #9: Sat 2026-03-28 00:09:00 UTC\n"), std::string::npos);
    EXPECT_NE(r.out.find("      Iter. #10: Sat 2026-03-28 00:10:00 UTC\n"), std::string::npos);
    EXPECT_NE(r.out.find("      Iter. #11: Sat 2026-03-28 00:11:00 UTC\n"), std::string::npos);

    // "Original form" only when the text differs from the normalized form; 0 iterations.
    opts.iterations = 0;
    const CalendarReport plain = calendar_report({"*-*-* 00:00:00"}, opts);
    EXPECT_EQ(plain.out, "Normalized form: *-*-* 00:00:00\n");
}

TEST(CalendarReport, BaseDefaultsToNow) {
    CalendarReportOptions opts;
    opts.now = utc(2026, 11, 22, 7, 59, 36);
    const std::string expect =
        "  Original form: daily\n"
        "Normalized form: *-*-* 00:00:00\n"
        "    Next elapse: Mon 2026-11-23 00:00:00 UTC\n"
        "       From now: 16h left\n";
    EXPECT_EQ(calendar_report({"daily"}, opts).out, expect);
    opts.base = kUsecInfinity;  // systemd treats --base-time=@infinity as no base time
    EXPECT_EQ(calendar_report({"daily"}, opts).out, expect);
}

TEST(CalendarReport, NextElapseFailureDropsTheTable) {
    CalendarReportOptions opts;
    opts.now = utc(2026, 11, 22, 8);
    opts.base = Usec{253402214399LL * kSec + 1};  // beyond what systemd can format
    const CalendarReport r = calendar_report({"daily", "hourly"}, opts);
    EXPECT_EQ(r.out, "\n");
    EXPECT_EQ(r.err,
              "Failed to determine next elapse for 'daily': Invalid argument\n"
              "Failed to determine next elapse for 'hourly': Invalid argument\n");
    EXPECT_EQ(r.exit_code, 1);
}

// An open repeat ("10/4": 10, 14, 18, 22, then 26 = 02:00 next day) that overshoots into the
// night of a DST change makes systemd's search cycle until it gives up; systemd logs that only
// when it searched in-process (no zone suffix).
TEST(CalendarReport, SearchLimitIsReportedLikeSystemd) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    CalendarReportOptions opts;
    opts.iterations = 5;
    opts.now = utc(2026, 11, 22, 8);
    opts.zone = *berlin;
    opts.base = utc(2026, 3, 28, 11);
    const CalendarReport r = calendar_report({"17,10/4:31", "*-*-* 10/4:31 Europe/Berlin"}, opts);
    EXPECT_EQ(r.out, "\n");
    EXPECT_EQ(r.err,
              "Infinite loop in calendar calculation: *-*-* 10/4,17:31:00\n"
              "Failed to determine next elapse for '17,10/4:31': Resource deadlock avoided\n"
              "Failed to determine next elapse for '*-*-* 10/4:31 Europe/Berlin': Resource "
              "deadlock avoided\n");
    EXPECT_EQ(r.exit_code, 1);
}

TEST(CalendarReport, HintsForTimestampsAndTimeSpans) {
    CalendarReportOptions opts;
    opts.now = utc(2026, 11, 22, 8);
    const CalendarReport r = calendar_report({"5h", "now", "2200-01-01", "bogus"}, opts);
    EXPECT_EQ(r.err,
              "Failed to parse calendar specification '5h': Invalid argument\n"
              "Hint: this expression is a valid timespan. Use 'systemd-analyze timespan \"5h\"' "
              "instead?\n"
              "Failed to parse calendar specification 'now': Invalid argument\n"
              "Hint: this expression is a valid timestamp. Use 'systemd-analyze timestamp "
              "\"now\"' instead?\n"
              "Failed to parse calendar specification '2200-01-01': Invalid argument\n"
              "Hint: this expression is a valid timestamp. Use 'systemd-analyze timestamp "
              "\"2200-01-01\"' instead?\n"
              "Failed to parse calendar specification 'bogus': Invalid argument\n");
    EXPECT_EQ(r.out, "\n\n\n");
    opts.hints = false;
    EXPECT_EQ(calendar_report({"5h"}, opts).err,
              "Failed to parse calendar specification '5h': Invalid argument\n");
}

TEST(CalendarReport, UtcLikeZones) {
    EXPECT_TRUE(is_utc_like(util::TimeZone::utc()));
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    EXPECT_FALSE(is_utc_like(*berlin));
    SKIP_WITHOUT_ZONE(london, "Europe/London");
    EXPECT_FALSE(is_utc_like(*london));  // no offset in winter, but DST
    SKIP_WITHOUT_ZONE(abidjan, "Africa/Abidjan");
    EXPECT_TRUE(is_utc_like(*abidjan));
}

}  // namespace
}  // namespace mlk::sched
