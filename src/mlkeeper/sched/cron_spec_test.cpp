#include "mlkeeper/sched/cron_spec.hpp"

#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace mlk::sched {
namespace {

using mlk::util::TimeZone;
using std::chrono::days;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using std::chrono::sys_days;
using std::chrono::sys_seconds;

sys_seconds utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
    return sys_days{std::chrono::year{y} / static_cast<unsigned>(mo) / static_cast<unsigned>(d)} +
           hours{h} + minutes{mi} + seconds{s};
}

std::string show(sys_seconds t) {
    const std::time_t tt = t.time_since_epoch().count();
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::string show(const std::optional<sys_seconds>& t) {
    return t ? show(*t) : "none";
}

std::vector<std::string> next_n(const CronSpec& spec, sys_seconds base, const TimeZone& zone,
                                int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
        const auto next = spec.next_after(base, zone);
        if (!next) {
            out.emplace_back("none");
            break;
        }
        out.push_back(show(*next));
        base = *next;
    }
    return out;
}

std::vector<std::string> next_n(std::string_view expr, sys_seconds base, int n) {
    return next_n(CronSpec::parse(expr), base, TimeZone::utc(), n);
}

std::vector<std::string> shows(std::initializer_list<sys_seconds> ts) {
    std::vector<std::string> out;
    for (auto t : ts) {
        out.push_back(show(t));
    }
    return out;
}

TimeZone zone(const char* name) {
    std::optional<TimeZone> z = TimeZone::load(name);
    if (!z) {
        throw std::runtime_error(std::string("zone not installed: ") + name);
    }
    return *z;
}

std::string error_of(std::string_view expr) {
    try {
        (void)CronSpec::parse(expr);
    } catch (const CronError& e) {
        return e.what();
    }
    return "(no error)";
}

// ---- parsing and the normalized form ----

TEST(CronSpecParse, NormalizesNamesStepsAndMacros) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"*/15 9-17 * * mon-fri", "*/15 9-17 * * 1-5"},
        {"0 0 1 jan *", "0 0 1 1 *"},
        {"0 0 * JAN-Mar SUN", "0 0 * 1-3 0"},
        {"5/15 * * * *", "5-59/15 * * * *"},
        {"0 0 * * 1/2", "0 0 * * 1-7/2"},
        {"0 0 * feb/3 *", "0 0 * 2-12/3 *"},
        {"* * * * 7", "* * * * 0"},
        {"* * * * 7-7", "* * * * 0"},
        {"* * * * fri-sun", "* * * * 5-7"},
        {"* * * * 5-0", "* * * * 5-7"},
        {"0 0 */2 * *", "0 0 1-31/2 * *"},
        {"0 0 * * */2", "0 0 * * 0-6/2"},
        {"0 0 1-31 * 1", "0 0 * * 1"},
        {"0 0 * * 0-6", "0 0 * * *"},
        {"0 0 * * 0-7", "0 0 * * *"},
        {"0 0 * * sun-sat", "0 0 * * *"},
        {"0 0 * 1-12 *", "0 0 * * *"},
        {"*/1 * * * *", "* * * * *"},
        {"*,5 * * * *", "* * * * *"},
        {"0-59 * * * *", "0-59 * * * *"},  // not "*": it is a fixed-time job for DST
        {"*/15,7 * * * *", "*/15,7 * * * *"},
        {"1-1 2-10/1 * * *", "1 2-10 * * *"},
        {"007 01 * * *", "7 1 * * *"},
        {"1-10/15 * * * *", "1 * * * *"},
        {"*/100 * * * *", "*/100 * * * *"},  // the leading '*' decides the DST class
        {"0 0 */40 * *", "0 0 1 * *"},
        {"0 0 * * 6/3", "0 0 * * 6"},
        {"  0\t0  *   * *  ", "0 0 * * *"},
        {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"},
        {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"},
        {"@daily", "0 0 * * *"},
        {"@midnight", "0 0 * * *"},
        {"@HOURLY", "0 * * * *"},
        {" @Daily ", "0 0 * * *"},
    };
    for (const auto& [in, want] : cases) {
        EXPECT_EQ(CronSpec::parse(in).normalized(), want) << in;
        EXPECT_FALSE(CronSpec::parse(in).is_reboot()) << in;
    }
}

TEST(CronSpecParse, NormalizedFormMeansTheSame) {
    const sys_seconds base = utc(2024, 2, 27, 22, 58, 7);
    for (const char* expr : {"*/15 9-17 * * mon-fri", "5/15 * * * *", "0 0 */2 * 1", "0 0 1-31 * 1",
                             "0 12 * * fri-sun", "0 0 * * 1/2", "30 4 1,15 * 5", "@weekly",
                             "0 0 13 * fri", "*/7 */5 * feb-apr *"}) {
        const CronSpec a = CronSpec::parse(expr);
        const CronSpec b = CronSpec::parse(a.normalized());
        EXPECT_EQ(b.normalized(), a.normalized()) << expr;
        EXPECT_EQ(next_n(a, base, TimeZone::utc(), 12), next_n(b, base, TimeZone::utc(), 12))
            << expr;
    }
}

TEST(CronSpecParse, Reboot) {
    const CronSpec s = CronSpec::parse("@reboot");
    EXPECT_TRUE(s.is_reboot());
    EXPECT_EQ(s.normalized(), "@reboot");
    EXPECT_EQ(s.next_after(utc(2024, 1, 1), TimeZone::utc()), std::nullopt);
    EXPECT_TRUE(CronSpec::parse("@REBOOT").is_reboot());
}

TEST(CronSpecParse, ErrorMessagesNameFieldAndToken) {
    EXPECT_EQ(error_of("61 * * * *"), "cron: minute field '61' out of range 0-59");
    EXPECT_EQ(error_of("60 * * * *"), "cron: minute field '60' out of range 0-59");
    EXPECT_EQ(error_of("0 24 * * *"), "cron: hour field '24' out of range 0-23");
    EXPECT_EQ(error_of("0 0 0 * *"), "cron: day-of-month field '0' out of range 1-31");
    EXPECT_EQ(error_of("0 0 32 * *"), "cron: day-of-month field '32' out of range 1-31");
    EXPECT_EQ(error_of("0 0 * 13 *"), "cron: month field '13' out of range 1-12");
    EXPECT_EQ(error_of("0 0 * 0 *"), "cron: month field '0' out of range 1-12");
    EXPECT_EQ(error_of("0 0 * * 8"), "cron: day-of-week field '8' out of range 0-7");
    EXPECT_EQ(error_of("1-61 * * * *"), "cron: minute field '61' out of range 0-59");
    EXPECT_EQ(error_of("5,99999999999 * * * *"),
              "cron: minute field '99999999999' out of range 0-59");
    EXPECT_EQ(error_of("*/0 * * * *"),
              "cron: minute field '*/0' has step 0 (the step must be at least 1)");
    EXPECT_EQ(error_of("0 1-5/0 * * *"),
              "cron: hour field '1-5/0' has step 0 (the step must be at least 1)");
    EXPECT_EQ(error_of("5-2 * * * *"),
              "cron: minute field '5-2' is a reversed range (5 is after 2)");
    EXPECT_EQ(error_of("0 0 * * thu-mon"),
              "cron: day-of-week field 'thu-mon' is a reversed range (4 is after 1)");
    EXPECT_EQ(error_of("0 0 * dec-jan *"),
              "cron: month field 'dec-jan' is a reversed range (12 is after 1)");
    EXPECT_EQ(error_of("0 0 * foo *"), "cron: month field 'foo' is not a month name (jan..dec)");
    EXPECT_EQ(error_of("0 0 * january *"),
              "cron: month field 'january' is not a month name (jan..dec)");
    EXPECT_EQ(error_of("0 0 * * monday"),
              "cron: day-of-week field 'monday' is not a weekday name (sun..sat)");
    EXPECT_EQ(error_of("0 0 * * mon-xyz"),
              "cron: day-of-week field 'xyz' is not a weekday name (sun..sat)");
    EXPECT_EQ(error_of("abc * * * *"),
              "cron: minute field 'abc' is not a number (names are allowed only for month and "
              "day-of-week)");
    EXPECT_EQ(error_of("0 0 mon * *"),
              "cron: day-of-month field 'mon' is not a number (names are allowed only for month "
              "and day-of-week)");
    EXPECT_EQ(error_of("5x * * * *"), "cron: minute field '5x' is not a number");
    EXPECT_EQ(error_of("0 0 * 1x *"), "cron: month field '1x' is not a number");
    EXPECT_EQ(error_of("5# * * * *"), "cron: minute field '5#' has an unexpected character '#'");
    EXPECT_EQ(error_of("0 0 * * 5#2"),
              "cron: day-of-week field '5#2' has an unexpected character '#'");
    EXPECT_EQ(error_of("1.5 * * * *"), "cron: minute field '1.5' has an unexpected character '.'");
    EXPECT_EQ(error_of("1,,2 * * * *"), "cron: minute field '1,,2' has an empty list element");
    EXPECT_EQ(error_of(",1 * * * *"), "cron: minute field ',1' has an empty list element");
    EXPECT_EQ(error_of("1, * * * *"), "cron: minute field '1,' has an empty list element");
    EXPECT_EQ(error_of("1-2-3 * * * *"),
              "cron: minute field '1-2-3' is malformed (expected N, N-M, *, */S, N-M/S or N/S)");
    EXPECT_EQ(error_of("0 0 1,*/5/2 * *"),
              "cron: day-of-month field '*/5/2' is malformed (expected N, N-M, *, */S, N-M/S or "
              "N/S)");
    for (const char* bad :
         {"5- * * * *", "-5 * * * *", "*5 * * * *", "/5 * * * *", "*-5 * * * *", "5-* * * * *",
          "*/x * * * *", "*/ * * * *", "** * * * *", "*/-1 * * * *", "1-/2 * * * *"}) {
        EXPECT_NE(error_of(bad).find("cron: minute field '"), std::string::npos) << bad;
        EXPECT_NE(error_of(bad).find("malformed"), std::string::npos)
            << bad << ": " << error_of(bad);
    }
}

TEST(CronSpecParse, ErrorsForLineShapeAndMacros) {
    EXPECT_EQ(error_of(""), "cron: empty expression");
    EXPECT_EQ(error_of(" \t "), "cron: empty expression");
    EXPECT_EQ(error_of("0 0 * *"),
              "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4 in "
              "'0 0 * *'");
    // croniter's 6-field (seconds) form is not crontab syntax.
    EXPECT_EQ(error_of("0 0 * * * *"),
              "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 6 in "
              "'0 0 * * * *'");
    EXPECT_EQ(error_of("@often"),
              "cron: unknown macro '@often' (expected @reboot, @yearly, @annually, @monthly, "
              "@weekly, @daily, @midnight or @hourly)");
    EXPECT_NE(error_of("@").find("unknown macro '@'"), std::string::npos);
    EXPECT_EQ(error_of("@daily /bin/true"),
              "cron: macro '@daily' must stand alone, got '@daily /bin/true'");
    // croniter extensions that cron does not have.
    EXPECT_NE(error_of("0 0 L * *").find("day-of-month field 'L'"), std::string::npos);
    EXPECT_NE(error_of("H * * * *").find("minute field 'H'"), std::string::npos);
    EXPECT_NE(error_of("0 0 * * 5L").find("day-of-week field '5L'"), std::string::npos);
    // The exception type is the documented one.
    EXPECT_THROW((void)CronSpec::parse("61 * * * *"), CronError);
    EXPECT_THROW((void)CronSpec::parse("61 * * * *"), std::runtime_error);
}

// ---- next_after in UTC ----

TEST(CronSpecNext, StrictlyAfterBaseAtWholeMinutes) {
    EXPECT_EQ(next_n("* * * * *", utc(2024, 5, 1, 12, 0, 30), 2),
              shows({utc(2024, 5, 1, 12, 1), utc(2024, 5, 1, 12, 2)}));
    EXPECT_EQ(next_n("* * * * *", utc(2024, 5, 1, 12, 0, 0), 1), shows({utc(2024, 5, 1, 12, 1)}));
    EXPECT_EQ(next_n("0 12 * * *", utc(2024, 5, 1, 12, 0, 0), 1), shows({utc(2024, 5, 2, 12, 0)}));
    EXPECT_EQ(next_n("0 12 * * *", utc(2024, 5, 1, 11, 59, 59), 1),
              shows({utc(2024, 5, 1, 12, 0)}));
    EXPECT_EQ(next_n("*/15 9-17 * * mon-fri", utc(2024, 5, 3, 17, 50), 3),  // a Friday
              shows({utc(2024, 5, 6, 9, 0), utc(2024, 5, 6, 9, 15), utc(2024, 5, 6, 9, 30)}));
}

TEST(CronSpecNext, CalendarEdges) {
    // Feb 29 only in leap years; 2100 is not one.
    EXPECT_EQ(next_n("0 0 29 2 *", utc(2024, 3, 1), 2),
              shows({utc(2028, 2, 29), utc(2032, 2, 29)}));
    EXPECT_EQ(next_n("0 0 29 2 *", utc(2096, 3, 1), 1), shows({utc(2104, 2, 29)}));
    // The 31st skips the short months.
    EXPECT_EQ(next_n("0 0 31 * *", utc(2024, 1, 31), 4),
              shows({utc(2024, 3, 31), utc(2024, 5, 31), utc(2024, 7, 31), utc(2024, 8, 31)}));
    // Year boundaries.
    EXPECT_EQ(next_n("59 23 31 12 *", utc(2024, 12, 31, 23, 59), 1),
              shows({utc(2025, 12, 31, 23, 59)}));
    EXPECT_EQ(next_n("@yearly", utc(2024, 12, 31, 23, 59, 59), 2),
              shows({utc(2025, 1, 1), utc(2026, 1, 1)}));
    EXPECT_EQ(next_n("* * * * *", utc(1999, 12, 31, 23, 59, 59), 1), shows({utc(2000, 1, 1)}));
    // Before 1970 and past 2038.
    EXPECT_EQ(next_n("30 6 * * *", utc(1969, 12, 31, 7), 1), shows({utc(1970, 1, 1, 6, 30)}));
    EXPECT_EQ(next_n("0 0 1 * *", utc(2038, 1, 19, 3, 14, 8), 1), shows({utc(2038, 2, 1)}));
}

// Cases croniter 1.3.5 gets wrong, so the golden test leaves them out.
TEST(CronSpecNext, WhereCroniterIsWrong) {
    // croniter: Mar 15 (it jumps from Feb 16 by 15 days towards "the 31st" and skips Mar 1).
    EXPECT_EQ(next_n("0 0 1,15,31 * *", utc(2024, 2, 15), 3),
              shows({utc(2024, 3, 1), utc(2024, 3, 15), utc(2024, 3, 31)}));
    EXPECT_EQ(next_n("0 0 */10 * *", utc(2024, 2, 28, 23, 59, 30), 2),  // 1,11,21,31
              shows({utc(2024, 3, 1), utc(2024, 3, 11)}));
    // croniter: no date at all (the day-of-month half of the OR never matches, and it gives up).
    EXPECT_EQ(next_n("0 0 30 2 1", utc(2024, 2, 27), 2),
              shows({utc(2025, 2, 3), utc(2025, 2, 10)}));
}

TEST(CronSpecNext, ImpossibleDatesGiveNone) {
    for (const char* expr :
         {"0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *", "* * 31 apr *"}) {
        EXPECT_EQ(CronSpec::parse(expr).next_after(utc(2024, 1, 1), TimeZone::utc()), std::nullopt)
            << expr;
    }
    // With a weekday too, the OR rule makes them possible again: every Monday in February.
    EXPECT_EQ(next_n("0 0 30 2 mon", utc(2024, 1, 1), 2),
              shows({utc(2024, 2, 5), utc(2024, 2, 12)}));
}

TEST(CronSpecNext, DayOfMonthOrDayOfWeek) {
    // Both restricted: the 13th OR any Friday.
    EXPECT_EQ(next_n("0 0 13 * fri", utc(2024, 9, 1), 4),
              shows({utc(2024, 9, 6), utc(2024, 9, 13), utc(2024, 9, 20), utc(2024, 9, 27)}));
    // One of them '*': the other alone decides.
    EXPECT_EQ(next_n("0 0 * * fri", utc(2024, 9, 1), 2),
              shows({utc(2024, 9, 6), utc(2024, 9, 13)}));
    EXPECT_EQ(next_n("0 0 13 * *", utc(2024, 9, 1), 2),
              shows({utc(2024, 9, 13), utc(2024, 10, 13)}));
    // "*/2" counts as restricted (croniter; cronie would AND here): odd days OR Mondays.
    EXPECT_EQ(next_n("0 0 */2 * 1", utc(2024, 1, 1), 4),  // 2024-01-01 is a Monday
              shows({utc(2024, 1, 3), utc(2024, 1, 5), utc(2024, 1, 7), utc(2024, 1, 8)}));
    // A list of all days counts as unrestricted (croniter; cronie would run daily): Mondays.
    EXPECT_EQ(next_n("0 0 1-31 * 1", utc(2024, 1, 1), 2),
              shows({utc(2024, 1, 8), utc(2024, 1, 15)}));
    EXPECT_EQ(next_n("0 0 1 * 0-6", utc(2024, 1, 1), 2), shows({utc(2024, 2, 1), utc(2024, 3, 1)}));
    // 7 and 0 are both Sunday; names work in lists.
    EXPECT_EQ(next_n("0 0 * * 7", utc(2024, 1, 1), 1), shows({utc(2024, 1, 7)}));
    EXPECT_EQ(next_n("0 0 * * sat,7", utc(2024, 1, 1), 2),
              shows({utc(2024, 1, 6), utc(2024, 1, 7)}));
    EXPECT_EQ(next_n("0 0 * * fri-sun", utc(2024, 1, 1), 3),
              shows({utc(2024, 1, 5), utc(2024, 1, 6), utc(2024, 1, 7)}));
    // With a month restriction the OR still applies only inside those months.
    EXPECT_EQ(next_n("0 0 1 jun mon", utc(2024, 1, 1), 3),
              shows({utc(2024, 6, 1), utc(2024, 6, 3), utc(2024, 6, 10)}));
}

TEST(CronSpecNext, MacrosAndSteps) {
    EXPECT_EQ(next_n("@hourly", utc(2024, 1, 1, 10, 30), 2),
              shows({utc(2024, 1, 1, 11), utc(2024, 1, 1, 12)}));
    EXPECT_EQ(next_n("@weekly", utc(2024, 1, 1), 2), shows({utc(2024, 1, 7), utc(2024, 1, 14)}));
    EXPECT_EQ(next_n("@monthly", utc(2024, 1, 15), 2), shows({utc(2024, 2, 1), utc(2024, 3, 1)}));
    EXPECT_EQ(next_n("5/20 * * * *", utc(2024, 1, 1, 0, 46), 3),
              shows({utc(2024, 1, 1, 1, 5), utc(2024, 1, 1, 1, 25), utc(2024, 1, 1, 1, 45)}));
    EXPECT_EQ(next_n("0 0 * * 1/2", utc(2024, 1, 1), 3),  // 1,3,5,7: Mon, Wed, Fri, Sun
              shows({utc(2024, 1, 3), utc(2024, 1, 5), utc(2024, 1, 7)}));
    EXPECT_EQ(next_n("0 0 1 */5 *", utc(2024, 1, 1), 3),
              shows({utc(2024, 6, 1), utc(2024, 11, 1), utc(2025, 1, 1)}));
}

// An independent oracle: random explicit lists, matched day by day and minute by minute.
struct RandomSpec {
    std::string text;
    std::set<int> min, hour, dom, mon, dow;
    bool dom_all = false, dow_all = false;
};

std::set<int> pick(std::mt19937& rng, int lo, int hi, int max_count) {
    std::uniform_int_distribution<int> count(1, max_count);
    std::uniform_int_distribution<int> val(lo, hi);
    std::set<int> s;
    for (int n = count(rng); n > 0; --n) {
        s.insert(val(rng));
    }
    return s;
}

std::string list_of(const std::set<int>& s) {
    std::string out;
    for (int v : s) {
        out += (out.empty() ? "" : ",") + std::to_string(v);
    }
    return out;
}

RandomSpec random_spec(std::mt19937& rng) {
    RandomSpec r;
    std::uniform_int_distribution<int> coin(0, 9);
    const auto field = [&](std::set<int>& set, int lo, int hi, int max_count, bool& all) {
        if (coin(rng) < 4) {
            all = true;
            for (int v = lo; v <= hi; ++v) {
                set.insert(v);
            }
            return std::string("*");
        }
        set = pick(rng, lo, hi, max_count);
        return list_of(set);
    };
    bool unused = false;
    std::string m = field(r.min, 0, 59, 4, unused);
    std::string h = field(r.hour, 0, 23, 4, unused);
    std::string dom = field(r.dom, 1, 31, 3, r.dom_all);
    std::string mon = field(r.mon, 1, 12, 3, unused);
    std::string dow = field(r.dow, 0, 7, 2, r.dow_all);
    if (r.dow.count(7)) {
        r.dow.insert(0);
    }
    if (!r.dow_all && r.dow.size() >= 7) {
        r.dow_all = true;  // e.g. 0-7 listed in full
    }
    if (!r.dom_all && r.dom.size() == 31) {
        r.dom_all = true;
    }
    r.text = m + " " + h + " " + dom + " " + mon + " " + dow;
    return r;
}

std::optional<sys_seconds> brute_next(const RandomSpec& r, sys_seconds base) {
    const sys_days day0 = std::chrono::floor<days>(base);
    for (sys_days d = day0; d < day0 + days{9 * 366}; d += days{1}) {
        const std::chrono::year_month_day ymd{d};
        const int wd = static_cast<int>(std::chrono::weekday{d}.c_encoding());
        const bool dom_ok = r.dom.count(static_cast<int>(static_cast<unsigned>(ymd.day()))) > 0;
        const bool dow_ok = r.dow.count(wd) > 0;
        const bool day_ok = (!r.dom_all && !r.dow_all) ? (dom_ok || dow_ok) : (dom_ok && dow_ok);
        if (!day_ok || !r.mon.count(static_cast<int>(static_cast<unsigned>(ymd.month())))) {
            continue;
        }
        for (int h : r.hour) {
            for (int m : r.min) {
                const sys_seconds t = d + hours{h} + minutes{m};
                if (t > base) {
                    return t;
                }
            }
        }
    }
    return std::nullopt;
}

TEST(CronSpecNext, AgreesWithBruteForceOnRandomLists) {
    std::mt19937 rng(20241122);
    std::uniform_int_distribution<std::int64_t> when(utc(1995, 1, 1).time_since_epoch().count(),
                                                     utc(2105, 1, 1).time_since_epoch().count());
    int none = 0;
    for (int i = 0; i < 400; ++i) {
        const RandomSpec r = random_spec(rng);
        const CronSpec spec = CronSpec::parse(r.text);
        sys_seconds base{seconds{when(rng)}};
        for (int k = 0; k < 3; ++k) {
            const auto want = brute_next(r, base);
            const auto got = spec.next_after(base, TimeZone::utc());
            ASSERT_EQ(show(got), show(want)) << r.text << " after " << show(base);
            if (!want) {
                ++none;
                break;
            }
            base = *want;
        }
    }
    RecordProperty("never_matching", none);
}

TEST(CronSpecNext, FarBasesAreBounded) {
    const CronSpec s = CronSpec::parse("* * * * *");
    EXPECT_EQ(s.next_after(sys_seconds{seconds{std::int64_t{1} << 60}}, TimeZone::utc()),
              std::nullopt);
    EXPECT_EQ(s.next_after(sys_seconds{seconds{-(std::int64_t{1} << 60)}}, TimeZone::utc()),
              std::nullopt);
    EXPECT_EQ(next_n("0 0 1 1 *", utc(9999, 6, 1), 1), shows({utc(10000, 1, 1)}));
}

TEST(CronSpecNext, NeverMatchingIsFast) {
    const CronSpec s = CronSpec::parse("0 0 31 2 *");
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20000; ++i) {
        ASSERT_EQ(s.next_after(utc(2024, 1, 1) + seconds{i}, TimeZone::utc()), std::nullopt);
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

// ---- time zones and DST (cronie's rules; see the header) ----

TEST(CronSpecZone, FixedOffsets) {
    const TimeZone kolkata = zone("Asia/Kolkata");  // +05:30, no DST
    EXPECT_EQ(next_n(CronSpec::parse("0 9 * * *"), utc(2024, 1, 1), kolkata, 2),
              shows({utc(2024, 1, 1, 3, 30), utc(2024, 1, 2, 3, 30)}));
    // The day and weekday are the local ones: Monday 00:30 in Kolkata is Sunday 19:00 UTC.
    EXPECT_EQ(next_n(CronSpec::parse("30 0 * * mon"), utc(2024, 1, 1), kolkata, 1),
              shows({utc(2024, 1, 7, 19, 0)}));
}

// New York, 2024-03-10: 02:00 EST (07:00 UTC) jumps to 03:00 EDT.
TEST(CronSpecZone, SpringForwardFixedTimeJobsRunAfterTheChange) {
    const TimeZone ny = zone("America/New_York");
    EXPECT_EQ(next_n(CronSpec::parse("30 2 * * *"), utc(2024, 3, 9, 12), ny, 3),
              shows({utc(2024, 3, 10, 7, 0), utc(2024, 3, 11, 6, 30), utc(2024, 3, 12, 6, 30)}));
    // Two skipped runs collapse into one.
    EXPECT_EQ(next_n(CronSpec::parse("15,45 2 * * *"), utc(2024, 3, 10, 6), ny, 2),
              shows({utc(2024, 3, 10, 7, 0), utc(2024, 3, 11, 6, 15)}));
    EXPECT_EQ(next_n(CronSpec::parse("0 3 * * *"), utc(2024, 3, 10, 5), ny, 2),
              shows({utc(2024, 3, 10, 7, 0), utc(2024, 3, 11, 7, 0)}));
    EXPECT_EQ(next_n(CronSpec::parse("0 2 * * *"), utc(2024, 3, 9, 12), ny, 2),
              shows({utc(2024, 3, 10, 7, 0), utc(2024, 3, 11, 6, 0)}));
    // From the change itself the skipped run is over.
    EXPECT_EQ(next_n(CronSpec::parse("30 2 * * *"), utc(2024, 3, 10, 7), ny, 1),
              shows({utc(2024, 3, 11, 6, 30)}));
    EXPECT_EQ(next_n(CronSpec::parse("30 2 * * *"), utc(2024, 3, 10, 6, 59, 59), ny, 1),
              shows({utc(2024, 3, 10, 7, 0)}));
}

TEST(CronSpecZone, SpringForwardWildcardJobsSkipTheGap) {
    const TimeZone ny = zone("America/New_York");
    EXPECT_EQ(next_n(CronSpec::parse("*/30 * * * *"), utc(2024, 3, 10, 6), ny, 3),
              shows({utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 0), utc(2024, 3, 10, 7, 30)}));
    EXPECT_EQ(next_n(CronSpec::parse("30 * * * *"), utc(2024, 3, 10, 6), ny, 2),
              shows({utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 30)}));
    EXPECT_EQ(next_n(CronSpec::parse("* 2 * * *"), utc(2024, 3, 10, 6), ny, 1),
              shows({utc(2024, 3, 11, 6, 0)}));
    EXPECT_EQ(next_n(CronSpec::parse("@hourly"), utc(2024, 3, 10, 6), ny, 2),
              shows({utc(2024, 3, 10, 7, 0), utc(2024, 3, 10, 8, 0)}));
}

// New York, 2024-11-03: 02:00 EDT (06:00 UTC) falls back to 01:00 EST; 01:xx happens twice.
TEST(CronSpecZone, FallBackFixedTimeJobsRunOnce) {
    const TimeZone ny = zone("America/New_York");
    EXPECT_EQ(next_n(CronSpec::parse("30 1 * * *"), utc(2024, 11, 2, 12), ny, 3),
              shows({utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30), utc(2024, 11, 5, 6, 30)}));
    // From inside either pass the repeated run does not come back.
    EXPECT_EQ(next_n(CronSpec::parse("30 1 * * *"), utc(2024, 11, 3, 6, 10), ny, 1),
              shows({utc(2024, 11, 4, 6, 30)}));
    EXPECT_EQ(next_n(CronSpec::parse("15 1 * * *"), utc(2024, 11, 3, 5, 20), ny, 1),
              shows({utc(2024, 11, 4, 6, 15)}));
    EXPECT_EQ(next_n(CronSpec::parse("0 1 * * *"), utc(2024, 11, 3, 4, 59, 59), ny, 2),
              shows({utc(2024, 11, 3, 5, 0), utc(2024, 11, 4, 6, 0)}));
    EXPECT_EQ(next_n(CronSpec::parse("0 2 * * *"), utc(2024, 11, 3, 5), ny, 1),
              shows({utc(2024, 11, 3, 7, 0)}));
}

TEST(CronSpecZone, FallBackWildcardJobsRunInBothPasses) {
    const TimeZone ny = zone("America/New_York");
    EXPECT_EQ(next_n(CronSpec::parse("30 * * * *"), utc(2024, 11, 3, 4), ny, 4),
              shows({utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30),
                     utc(2024, 11, 3, 7, 30)}));
    // From late in the first pass the next run is early in the second one, at an earlier
    // local time than the base.
    EXPECT_EQ(next_n(CronSpec::parse("0 * * * *"), utc(2024, 11, 3, 5, 45), ny, 2),
              shows({utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 7, 0)}));
    EXPECT_EQ(next_n(CronSpec::parse("*/20 * * * *"), utc(2024, 11, 3, 5, 50), ny, 4),
              shows({utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 6, 20), utc(2024, 11, 3, 6, 40),
                     utc(2024, 11, 3, 7, 0)}));
    EXPECT_EQ(next_n(CronSpec::parse("15 * * * *"), utc(2024, 11, 3, 5, 20), ny, 1),
              shows({utc(2024, 11, 3, 6, 15)}));
    EXPECT_EQ(next_n(CronSpec::parse("@hourly"), utc(2024, 11, 3, 5, 30), ny, 2),
              shows({utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 7, 0)}));
}

// Lord Howe moves by 30 minutes: 2024-10-06 02:00 -> 02:30 (+10:30 -> +11, at 15:30 UTC the day
// before) and 2024-04-07 02:00 -> 01:30 (+11 -> +10:30, at 15:00 UTC the day before).
TEST(CronSpecZone, HalfHourChanges) {
    const TimeZone lh = zone("Australia/Lord_Howe");
    EXPECT_EQ(next_n(CronSpec::parse("15 2 * * *"), utc(2024, 10, 5), lh, 2),
              shows({utc(2024, 10, 5, 15, 30), utc(2024, 10, 6, 15, 15)}));
    EXPECT_EQ(
        next_n(CronSpec::parse("*/15 * * * *"), utc(2024, 10, 5, 15), lh, 3),
        shows({utc(2024, 10, 5, 15, 15), utc(2024, 10, 5, 15, 30), utc(2024, 10, 5, 15, 45)}));
    EXPECT_EQ(next_n(CronSpec::parse("45 1 * * *"), utc(2024, 4, 6), lh, 2),
              shows({utc(2024, 4, 6, 14, 45), utc(2024, 4, 7, 15, 15)}));
    EXPECT_EQ(next_n(CronSpec::parse("45 * * * *"), utc(2024, 4, 6, 14), lh, 3),
              shows({utc(2024, 4, 6, 14, 45), utc(2024, 4, 6, 15, 15), utc(2024, 4, 6, 16, 15)}));
}

// Kathmandu, 1986-01-01 00:00 -> 00:15 (+05:30 -> +05:45, at 18:30 UTC the day before).
TEST(CronSpecZone, QuarterHourGap) {
    const TimeZone ktm = zone("Asia/Kathmandu");
    EXPECT_EQ(next_n(CronSpec::parse("5 0 * * *"), utc(1985, 12, 31), ktm, 2),
              shows({utc(1985, 12, 31, 18, 30), utc(1986, 1, 1, 18, 20)}));
    // From 23:45 +05:30: 23:50, then 00:00 and 00:10 fall in the gap; 00:20 +05:45.
    EXPECT_EQ(
        next_n(CronSpec::parse("*/10 * * * *"), utc(1985, 12, 31, 18, 15), ktm, 3),
        shows({utc(1985, 12, 31, 18, 20), utc(1985, 12, 31, 18, 35), utc(1985, 12, 31, 18, 45)}));
}

// Jumps of 3 hours or more are clock corrections to cronie: nothing is caught up or held back.
TEST(CronSpecZone, LargeJumps) {
    // Samoa skipped 2011-12-30 (-10 -> +14 at 10:00 UTC): that day's noon run is lost.
    EXPECT_EQ(next_n(CronSpec::parse("0 12 * * *"), utc(2011, 12, 29), zone("Pacific/Apia"), 2),
              shows({utc(2011, 12, 29, 22, 0), utc(2011, 12, 30, 22, 0)}));
    // Vostok went from +07 to +00 at 1994-01-31 17:00 UTC and lived 17:00-23:59 twice: the 20:00
    // run happens in both passes.
    EXPECT_EQ(next_n(CronSpec::parse("0 20 * * *"), utc(1994, 1, 31), zone("Antarctica/Vostok"), 3),
              shows({utc(1994, 1, 31, 13, 0), utc(1994, 1, 31, 20, 0), utc(1994, 2, 1, 20, 0)}));
}

// A second oracle for DST: cronie's main loop (cron.c) run minute by minute over the days around
// each change, for random jobs, against chains of next_after().
struct SimJob {
    std::string text;
    std::set<int> min, hour;
    bool wildcard;
};

bool sim_matches(const SimJob& j, std::int64_t local_minute) {
    const std::int64_t day = local_minute >= 0 ? local_minute / 1440 : (local_minute - 1439) / 1440;
    const int rem = static_cast<int>(local_minute - day * 1440);
    return j.hour.count(rem / 60) && j.min.count(rem % 60);
}

std::vector<std::int64_t> simulate_cronie(const SimJob& job, const std::vector<std::int64_t>& wake,
                                          const std::vector<std::int64_t>& clock) {
    std::vector<std::int64_t> runs;
    const auto run = [&](std::int64_t t) {
        if (runs.empty() || runs.back() != t) {
            runs.push_back(t);
        }
    };
    std::int64_t virtual_time = clock[0];
    std::int64_t time_running = clock[0];
    for (std::size_t i = 1; i < wake.size(); ++i) {
        if (clock[i] == time_running) {
            continue;
        }
        time_running = clock[i];
        const std::int64_t diff = time_running - virtual_time;
        const std::int64_t t = wake[i];
        if (diff == 1) {
            virtual_time = time_running;
            if (sim_matches(job, virtual_time)) {
                run(t);
            }
        } else if (diff > 180 || diff < -180) {
            virtual_time = time_running;
            if (sim_matches(job, time_running)) {
                run(t);
            }
        } else if (diff > 5) {
            if (job.wildcard && sim_matches(job, time_running)) {
                run(t);
            }
            do {
                ++virtual_time;
                if (!job.wildcard && sim_matches(job, virtual_time)) {
                    run(t);
                }
            } while (virtual_time < time_running);
        } else if (diff > 0) {
            do {
                ++virtual_time;
                if (sim_matches(job, virtual_time)) {
                    run(t);
                }
            } while (virtual_time < time_running);
        } else if (job.wildcard && sim_matches(job, time_running)) {
            run(t);
        }
    }
    return runs;
}

// A zone file of our own for jumps that no real zone has had lately: +3 minutes at
// 2030-01-01 00:00 UTC (cronie catches up every job) and +10 minutes more at 2030-01-02 12:00 UTC
// (fixed-time jobs only).
class SmallJumpZone {
  public:
    SmallJumpZone() {
        std::string tmpl = ::testing::TempDir() + "mlk_cron_tz_XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        dir_ = tmpl;
        path_ = dir_ + "/Jumps";
        std::string data = "TZif";
        data.append(16, '\0');
        const auto be32 = [&](std::uint32_t v) {
            for (int shift = 24; shift >= 0; shift -= 8) {
                data.push_back(static_cast<char>((v >> shift) & 0xFF));
            }
        };
        for (std::uint32_t count : {0u, 0u, 0u, 2u, 3u, 4u}) {  // ut, std, leap, time, type, char
            be32(count);
        }
        be32(static_cast<std::uint32_t>(utc(2030, 1, 1).time_since_epoch().count()));
        be32(static_cast<std::uint32_t>(utc(2030, 1, 2, 12).time_since_epoch().count()));
        data.push_back('\1');
        data.push_back('\2');
        for (std::uint32_t off : {0u, 180u, 780u}) {
            be32(off);
            data.push_back('\0');  // not DST
            data.push_back('\0');  // abbreviation index
        }
        data.append("TST", 4);
        std::FILE* f = std::fopen(path_.c_str(), "wb");
        if (f == nullptr) {
            throw std::runtime_error("cannot write " + path_);
        }
        std::fwrite(data.data(), 1, data.size(), f);
        std::fclose(f);
    }
    ~SmallJumpZone() {
        std::remove(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    SmallJumpZone(const SmallJumpZone&) = delete;
    SmallJumpZone& operator=(const SmallJumpZone&) = delete;

    TimeZone load() const {
        std::optional<TimeZone> z = TimeZone::from_file(path_, "Test/Jumps");
        if (!z) {
            throw std::runtime_error("test zone file not accepted");
        }
        return *z;
    }

  private:
    std::string dir_;
    std::string path_;
};

TEST(CronSpecZone, SmallJumps) {
    const SmallJumpZone file;
    const TimeZone z = file.load();
    // +3 minutes: even a wildcard job's skipped minute runs at the change.
    EXPECT_EQ(next_n(CronSpec::parse("1 * * * *"), utc(2029, 12, 31, 23, 30), z, 2),
              shows({utc(2030, 1, 1, 0, 0), utc(2030, 1, 1, 0, 58)}));
    // +10 minutes: only fixed-time jobs are caught up (local 12:03 -> 12:13).
    EXPECT_EQ(next_n(CronSpec::parse("5 * * * *"), utc(2030, 1, 2, 11, 30), z, 1),
              shows({utc(2030, 1, 2, 12, 52)}));
    EXPECT_EQ(next_n(CronSpec::parse("5 12 * * *"), utc(2030, 1, 2, 11, 30), z, 1),
              shows({utc(2030, 1, 2, 12, 0)}));
}

TEST(CronSpecZone, AgreesWithCronieMainLoopAroundChanges) {
    const SmallJumpZone jumps;
    struct Window {
        std::string label;
        TimeZone zone;
        sys_seconds from;
    };
    std::vector<Window> windows;
    for (const auto& [name, from] : std::vector<std::pair<const char*, sys_seconds>>{
             {"America/New_York", utc(2024, 3, 9, 12)},
             {"America/New_York", utc(2024, 11, 2, 12)},
             {"Europe/Berlin", utc(2024, 3, 30, 12)},
             {"Europe/Berlin", utc(2024, 10, 26, 12)},
             {"Australia/Lord_Howe", utc(2024, 10, 5)},
             {"Australia/Lord_Howe", utc(2024, 4, 6)},
             {"Asia/Kathmandu", utc(1985, 12, 31)},
             {"Pacific/Apia", utc(2011, 12, 29, 12)},
             {"Antarctica/Vostok", utc(1994, 1, 31)},
             {"Antarctica/Casey", utc(2009, 10, 17)},
             {"Antarctica/Casey", utc(2010, 3, 4, 6)},
         }) {
        windows.push_back({name, zone(name), from});
    }
    windows.push_back({"Test/Jumps", jumps.load(), utc(2029, 12, 31, 12)});
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> coin(0, 9);
    std::vector<SimJob> jobs;
    for (int i = 0; i < 24; ++i) {
        SimJob j;
        std::string m;
        std::string h;
        const int mk = coin(rng);
        if (mk < 1) {
            m = "*";
        } else if (mk < 4) {
            const int step = std::uniform_int_distribution<int>(5, 30)(rng);
            m = "*/" + std::to_string(step);
            for (int v = 0; v < 60; v += step) {
                j.min.insert(v);
            }
        } else {
            j.min = pick(rng, 0, 59, 3);
            m = list_of(j.min);
        }
        if (m == "*") {
            for (int v = 0; v < 60; ++v) {
                j.min.insert(v);
            }
        }
        if (coin(rng) < 3) {
            h = "*";
            for (int v = 0; v < 24; ++v) {
                j.hour.insert(v);
            }
        } else {
            j.hour = pick(rng, 0, 4, 2);  // near the usual change times
            for (int v : pick(rng, 0, 23, 2)) {
                j.hour.insert(v);
            }
            h = list_of(j.hour);
        }
        j.text = m + " " + h + " * * *";
        j.wildcard = m[0] == '*' || h[0] == '*';
        jobs.push_back(j);
    }
    jobs.push_back({"30 2 * * *", {30}, {2}, false});
    jobs.push_back({"30 * * * *", {30}, {}, true});
    for (int v = 0; v < 24; ++v) {
        jobs.back().hour.insert(v);
    }

    for (const Window& w : windows) {
        const TimeZone& z = w.zone;
        std::vector<std::int64_t> wake;
        std::vector<std::int64_t> clock;
        const sys_seconds to = w.from + hours{36};
        ASSERT_NE(z.at(w.from).utc_offset, z.at(to).utc_offset) << w.label << ": no change";
        for (sys_seconds t = w.from; t <= to; t += minutes{1}) {
            wake.push_back(t.time_since_epoch().count());
            const std::int64_t local = wake.back() + z.at(t).utc_offset.count();
            clock.push_back(local >= 0 ? local / 60 : (local - 59) / 60);
        }
        for (const SimJob& job : jobs) {
            const std::vector<std::int64_t> want = simulate_cronie(job, wake, clock);
            std::vector<std::int64_t> got;
            const CronSpec spec = CronSpec::parse(job.text);
            sys_seconds t = w.from;
            while (true) {
                const auto next = spec.next_after(t, z);
                if (!next || next->time_since_epoch().count() > wake.back()) {
                    break;
                }
                got.push_back(next->time_since_epoch().count());
                t = *next;
            }
            ASSERT_EQ(got, want) << job.text << " in " << w.label << " from " << show(w.from);
        }
    }
}

}  // namespace
}  // namespace mlk::sched
