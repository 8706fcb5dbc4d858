#include "mlkeeper/sched/calendar_spec.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mlkeeper/sched/civil_time.hpp"

namespace mlk::sched {
namespace {

using Usec = CalendarSpec::Usec;

// Seconds since the epoch of a UTC wall-clock time, as microseconds.
Usec utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
    const std::int64_t days = days_from_civil(y, mo, d);
    return Usec{((days * 24 + h) * 60 + mi) * 60 * 1000000LL + s * 1000000LL};
}

std::optional<util::TimeZone> zone(const std::string& name) {
    return util::TimeZone::load(name);
}

CalendarSpec parse_utc(const std::string& text) {
    return CalendarSpec::parse(text, util::TimeZone::utc());
}

// The first `n` elapses after `base`.
std::vector<Usec> elapses(const CalendarSpec& spec, Usec base, int n) {
    std::vector<Usec> out;
    for (int i = 0; i < n; ++i) {
        const std::optional<Usec> next = spec.next_after(base);
        if (!next) {
            break;
        }
        out.push_back(*next);
        base = *next;
    }
    return out;
}

#define SKIP_WITHOUT_ZONE(z, name)                      \
    const std::optional<util::TimeZone> z = zone(name); \
    if (!z) {                                           \
        GTEST_SKIP() << name << " not installed";       \
    }

TEST(CalendarSpec, NormalizedFormsMatchSystemd) {
    // Every pair was printed by `systemd-analyze calendar` (systemd 252).
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"minutely", "*-*-* *:*:00"},
        {"hourly", "*-*-* *:00:00"},
        {"daily", "*-*-* 00:00:00"},
        {"DAILY", "*-*-* 00:00:00"},
        {"weekly", "Mon *-*-* 00:00:00"},
        {"monthly", "*-*-01 00:00:00"},
        {"yearly", "*-01-01 00:00:00"},
        {"annually", "*-01-01 00:00:00"},
        {"anually", "*-01-01 00:00:00"},
        {"quarterly", "*-01,04,07,10-01 00:00:00"},
        {"semiannually", "*-01,07-01 00:00:00"},
        {"bi-annually", "*-01,07-01 00:00:00"},
        {"daily utc", "*-*-* 00:00:00 UTC"},
        {"*-*-* 02:00:00", "*-*-* 02:00:00"},
        {"Sun *-*-* 03:00:00", "Sun *-*-* 03:00:00"},
        {"Mon..Fri *-*-* 09:00:00", "Mon..Fri *-*-* 09:00:00"},
        {"Monday..Friday", "Mon..Fri *-*-* 00:00:00"},
        {"mon-wed", "Mon..Wed *-*-* 00:00:00"},
        {"Mon..Wed,", "Mon..Wed *-*-* 00:00:00"},
        {"Mon..Sun", "*-*-* 00:00:00"},
        {"Mon,Tue,Wed,Thu,Fri,Sat,Sun 12:00", "*-*-* 12:00:00"},
        {"Wed..Sat,Tue 12-10-15 1:2:3", "Tue..Sat 2012-10-15 01:02:03"},
        {"Mon,Sun 12-*-* 2,1:23", "Mon,Sun 2012-*-* 01,02:23:00"},
        {"Sat,Sun *-*-* 10:00", "Sat,Sun *-*-* 10:00:00"},
        {"Mon  *-*-*   12:00", "Mon *-*-* 12:00:00"},
        {"*:0/5", "*-*-* *:00/5:00"},
        {"*:2/3", "*-*-* *:02/3:00"},
        {"*-*-* 00:00:1..2", "*-*-* 00:00:01..02"},
        {"*-*-* 00:00:1.5..2/0.5", "*-*-* 00:00:01.500000..02/0.500000"},
        {"*-*-* *:*:0.5", "*-*-* *:*:00.500000"},
        {"00:00:00.000001", "*-*-* 00:00:00.000001"},
        {"*-*-* 00:00:00.0000005", "*-*-* 00:00:00.000001"},
        {"Sat,Sun 2017-*-* *:*:00/15.5", "Sat,Sun 2017-*-* *:*:00/15.500000"},
        {"5..5-*", "*-05-* 00:00:00"},
        {"*-*-1..7/3", "*-*-01..07/3 00:00:00"},
        {"*-*-1..3/5", "*-*-01 00:00:00"},
        {"*-02-30", "*-02-30 00:00:00"},
        {"*-02~1", "*-02~01 00:00:00"},
        {"*-*~07/1", "*-*~07/1 00:00:00"},
        {"*-*~1..3", "*-*~01..03 00:00:00"},
        {"*-*~28/27", "*-*~28/27 00:00:00"},
        {"*~*", "*-*-* 00:00:00"},
        {"*-*~*", "*-*-* 00:00:00"},
        {"*-*-*", "*-*-* 00:00:00"},
        {"*-*", "*-*-* 00:00:00"},
        {"@1234", "1970-01-01 00:20:34 UTC"},
        {"@ 5", "1970-01-01 00:00:05 UTC"},
        {"@-0", "1970-01-01 00:00:00 UTC"},
        {"@+86400", "1970-01-02 00:00:00 UTC"},
        {"2003-03-05 05:40", "2003-03-05 05:40:00"},
        {"1970-1-1", "1970-01-01 00:00:00"},
        {"69-01-01", "2069-01-01 00:00:00"},
        {"99-12-31", "1999-12-31 00:00:00"},
        {"*-*-* 8,12,18:00", "*-*-* 08,12,18:00:00"},
        {"*-*-* 18,8,12,8:00", "*-*-* 08,12,18:00:00"},
        {"12:00 Europe/Berlin", "*-*-* 12:00:00 Europe/Berlin"},
        {"daily Etc/UTC", "*-*-* 00:00:00 Etc/UTC"},
    };
    for (const auto& [input, normalized] : cases) {
        try {
            const CalendarSpec spec = parse_utc(input);
            EXPECT_EQ(spec.normalized(), normalized) << input;
            EXPECT_EQ(spec.text(), input);
        } catch (const CalendarError& e) {
            ADD_FAILURE() << input << ": " << e.what();
        }
    }
}

TEST(CalendarSpec, RejectsWhatSystemdRejects) {
    const std::vector<std::pair<std::string, int>> cases = {
        {"", EINVAL},
        {"bogus", EINVAL},
        {"5h", EINVAL},
        {"now", EINVAL},
        {"*", EINVAL},
        {"12", EINVAL},
        {"2026", EINVAL},
        {"2026-*", EINVAL},
        {"1-2-3-4", EINVAL},
        {"0-0-0", EINVAL},
        {"Mon 12:00:00:00", EINVAL},
        {"  daily", EINVAL},
        {"daily  ", EINVAL},
        {"*-*-* 12:00 ", EINVAL},
        {"Sun..Mon", EINVAL},
        {"Mon.. 12:00", EINVAL},
        {"Mon-Wed-Fri", EINVAL},
        {"Mon.Wed", EINVAL},
        {"Mon,,Wed", EINVAL},
        {"Mon, Wed", EINVAL},
        {"Mo", EINVAL},
        {"Monx", EINVAL},
        {"*-*-* 24:00", EINVAL},
        {"*-*-* 23:60", EINVAL},
        {"*-*-* 23:59:60", EINVAL},
        {"*-*-* 23:59:59.9999995", EINVAL},
        {"*-*-* 00:00:1..1", EINVAL},
        {"*-*-* 00:00:1.5..2", EINVAL},
        {"*-*~3..1", EINVAL},
        {"*-*~29", EINVAL},
        {"*-*~0", EINVAL},
        {"*-*~1/28", EINVAL},
        {"*-*~28,1", EINVAL},  // systemd narrows the bound for every further '~' element
        {"*-*-*~1", EINVAL},
        {"2200-01-01", EINVAL},
        {"@-1", EINVAL},
        {"12:00 Europe/Nowhere", EINVAL},
        {"12:00 ../UTC", EINVAL},
        {"*-*-* 99999999999:00", ERANGE},
        {"*-*-* 2147483648:00", ERANGE},
        {"*-*-* 00:00:4294.967296", ERANGE},
        {"*-*-* 00:00:2147", EINVAL},
        {"*-*-* 00:00:2148", ERANGE},
        {"*-*-* 00:00/0", ERANGE},
        {"*-*-* 00:00:00/0.0000001", ERANGE},
        {"@99999999999999999", ERANGE},
        {"@999999999999999999999", ERANGE},
    };
    for (const auto& [input, code] : cases) {
        try {
            const CalendarSpec spec = parse_utc(input);
            ADD_FAILURE() << "accepted '" << input << "' as " << spec.normalized();
        } catch (const CalendarError& e) {
            EXPECT_EQ(e.code(), code) << input << ": " << e.what();
            EXPECT_EQ(e.stage(), CalendarError::Stage::kParse);
            EXPECT_EQ(e.expression(), input);
        }
    }
}

TEST(CalendarSpec, ErrorMessagesReadLikeSystemd) {
    try {
        (void)parse_utc("bogus");
        FAIL() << "accepted";
    } catch (const CalendarError& e) {
        EXPECT_STREQ(e.what(), "Failed to parse calendar specification 'bogus': Invalid argument");
    }
    try {
        (void)parse_utc("*-*-* 00:00/0");
        FAIL() << "accepted";
    } catch (const CalendarError& e) {
        EXPECT_STREQ(e.what(),
                     "Failed to parse calendar specification '*-*-* 00:00/0': Numerical result "
                     "out of range");
    }
    // More than 240 list elements: systemd's recursion limit.
    std::string many = "*-*-* 00:";
    for (int i = 0; i < 245; ++i) {
        many += (i ? "," : "") + std::to_string(i % 60);
    }
    try {
        (void)parse_utc(many);
        FAIL() << "accepted";
    } catch (const CalendarError& e) {
        EXPECT_EQ(e.code(), ENOBUFS);
    }
}

TEST(CalendarSpec, NextElapseInUtc) {
    const Usec base = utc(2026, 3, 28);
    EXPECT_EQ(elapses(parse_utc("daily"), base, 2),
              (std::vector<Usec>{utc(2026, 3, 29), utc(2026, 3, 30)}));
    EXPECT_EQ(elapses(parse_utc("*:0/5"), base, 3),
              (std::vector<Usec>{utc(2026, 3, 28, 0, 5), utc(2026, 3, 28, 0, 10),
                                 utc(2026, 3, 28, 0, 15)}));
    EXPECT_EQ(elapses(parse_utc("Sun *-*-* 03:00:00"), base, 2),
              (std::vector<Usec>{utc(2026, 3, 29, 3), utc(2026, 4, 5, 3)}));
    EXPECT_EQ(elapses(parse_utc("weekly"), base, 1), (std::vector<Usec>{utc(2026, 3, 30)}));
    EXPECT_EQ(elapses(parse_utc("quarterly"), base, 2),
              (std::vector<Usec>{utc(2026, 4, 1), utc(2026, 7, 1)}));
    // Strictly after the base: a base on an elapse gets the following one.
    EXPECT_EQ(parse_utc("daily").next_after(utc(2026, 3, 29)), utc(2026, 3, 30));
    EXPECT_EQ(parse_utc("daily").next_after(utc(2026, 3, 29) - Usec{1}), utc(2026, 3, 29));
    // Fractional seconds.
    EXPECT_EQ(parse_utc("*:*:0.5").next_after(base), base + Usec{500000});
}

TEST(CalendarSpec, LeapYearsShortMonthsAndMonthEnds) {
    const Usec base = utc(2026, 3, 28);
    EXPECT_EQ(elapses(parse_utc("*-02-29"), base, 2),
              (std::vector<Usec>{utc(2028, 2, 29), utc(2032, 2, 29)}));
    EXPECT_EQ(elapses(parse_utc("Mon *-02-29"), base, 2),
              (std::vector<Usec>{utc(2044, 2, 29), utc(2072, 2, 29)}));
    // The 31st only in months that have one.
    EXPECT_EQ(elapses(parse_utc("*-*-31"), base, 3),
              (std::vector<Usec>{utc(2026, 3, 31), utc(2026, 5, 31), utc(2026, 7, 31)}));
    // '~': counted from the end of the month.
    EXPECT_EQ(elapses(parse_utc("*-02~1"), base, 3),
              (std::vector<Usec>{utc(2027, 2, 28), utc(2028, 2, 29), utc(2029, 2, 28)}));
    EXPECT_EQ(elapses(parse_utc("*-*~1"), base, 2),
              (std::vector<Usec>{utc(2026, 3, 31), utc(2026, 4, 30)}));
    EXPECT_EQ(elapses(parse_utc("*-*~07/1"), base, 2),
              (std::vector<Usec>{utc(2026, 3, 29), utc(2026, 3, 30)}));
    EXPECT_EQ(elapses(parse_utc("*-*~28"), base, 2),
              (std::vector<Usec>{utc(2026, 4, 3), utc(2026, 5, 4)}));
    EXPECT_EQ(elapses(parse_utc("*-*~28/27"), base, 2),
              (std::vector<Usec>{utc(2026, 3, 31), utc(2026, 4, 3)}));
}

TEST(CalendarSpec, NeverElapsing) {
    const Usec base = utc(2026, 3, 28);
    for (const char* text : {"*-02-30", "*-02-31", "*-04-31", "2020-*-*", "2026-02~1", "@1234",
                             "Mon,Sun 12-*-* 2,1:23", "2003-03-05 05:40"}) {
        EXPECT_EQ(parse_utc(text).next_after(base), std::nullopt) << text;
    }
    EXPECT_EQ(parse_utc("2199-12-31").next_after(base), utc(2199, 12, 31));
    EXPECT_EQ(parse_utc("2199-12-31").next_after(utc(2199, 12, 31)), std::nullopt);
    EXPECT_EQ(parse_utc("@1795305600").next_after(base), utc(2026, 11, 22));
}

TEST(CalendarSpec, NextElapseErrors) {
    const CalendarSpec daily = parse_utc("daily");
    try {
        (void)daily.next_after(Usec{-1});
        FAIL() << "negative base accepted";
    } catch (const CalendarError& e) {
        EXPECT_EQ(e.stage(), CalendarError::Stage::kNextElapse);
        EXPECT_EQ(e.code(), EINVAL);
        EXPECT_STREQ(e.what(), "Failed to determine next elapse for 'daily': Invalid argument");
    }
    EXPECT_THROW((void)daily.next_after(Usec{253402214399000001LL}), CalendarError);
    EXPECT_EQ(daily.next_after(Usec{253402214399000000LL}), std::nullopt);
}

TEST(CalendarSpec, SpringForwardGapIsSkipped) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    // 2026-03-29 02:30 does not exist in Berlin: systemd moves on to the next Sunday.
    const CalendarSpec spec = parse_utc("Sun *-*-* 02:30 Europe/Berlin");
    EXPECT_EQ(spec.normalized(), "Sun *-*-* 02:30:00 Europe/Berlin");
    EXPECT_EQ(spec.next_after(utc(2026, 3, 28)), utc(2026, 4, 5, 0, 30));
    EXPECT_EQ(elapses(parse_utc("*-03-29 02:30 Europe/Berlin"), utc(2026, 3, 28, 12), 4),
              (std::vector<Usec>{utc(2027, 3, 29, 0, 30), utc(2028, 3, 29, 0, 30),
                                 utc(2029, 3, 29, 0, 30), utc(2030, 3, 29, 1, 30)}));
    EXPECT_EQ(elapses(parse_utc("*-*-* *:30 Europe/Berlin"), utc(2026, 3, 29), 3),
              (std::vector<Usec>{utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30),
                                 utc(2026, 3, 29, 2, 30)}));
    // Hours 02 and 03 on the day of the change: systemd finds 02:00 missing and skips the day.
    EXPECT_EQ(elapses(parse_utc("*-*-* 02:00..03:00 Europe/Berlin"), utc(2026, 3, 28, 12), 2),
              (std::vector<Usec>{utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 1)}));
}

TEST(CalendarSpec, FallBackFoldElapsesOnce) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    SKIP_WITHOUT_ZONE(new_york, "America/New_York");
    // 02:30 happens twice on 2026-10-25 in Berlin; systemd fires at the first (CEST) one only.
    EXPECT_EQ(elapses(parse_utc("*-*-* 02:30 Europe/Berlin"), utc(2026, 10, 24, 12), 3),
              (std::vector<Usec>{utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30),
                                 utc(2026, 10, 27, 1, 30)}));
    // New York repeats 01:00-02:00 on 2026-11-01: the second 01:30 (06:30 UTC) is skipped.
    EXPECT_EQ(elapses(parse_utc("*-*-* *:30 America/New_York"), utc(2026, 11, 1, 4), 4),
              (std::vector<Usec>{utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5, 30),
                                 utc(2026, 11, 1, 7, 30), utc(2026, 11, 1, 8, 30)}));
    EXPECT_EQ(elapses(parse_utc("*-*-* 01:30 America/New_York"), utc(2026, 10, 31, 12), 2),
              (std::vector<Usec>{utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)}));
}

TEST(CalendarSpec, SearchLimitLikeSystemd) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    // From 22:31 CET on the eve of the change, "10/4" overshoots to hour 26 = 02:00, which does
    // not exist; systemd's normalisation then cycles and it gives up after 1000 rounds.
    const CalendarSpec spec = parse_utc("*-*-* 10/4:31 Europe/Berlin");
    EXPECT_EQ(spec.next_after(utc(2026, 3, 28, 20)), utc(2026, 3, 28, 21, 31));
    try {
        (void)spec.next_after(utc(2026, 3, 28, 21, 31));
        FAIL() << "no error";
    } catch (const CalendarError& e) {
        EXPECT_EQ(e.code(), EDEADLK);
        EXPECT_EQ(e.stage(), CalendarError::Stage::kNextElapse);
    }
    // A closed range does not overshoot.
    EXPECT_EQ(parse_utc("*-*-* 10..22/4:31 Europe/Berlin").next_after(utc(2026, 3, 28, 21, 31)),
              utc(2026, 3, 29, 8, 31));
}

TEST(CalendarSpec, LocalZoneIsTheParseZone) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    // Without a suffix the expression runs in the zone given to parse(), like the suffix form.
    const CalendarSpec local = CalendarSpec::parse("*-*-* *:30", *berlin);
    const CalendarSpec suffixed = parse_utc("*-*-* *:30 Europe/Berlin");
    EXPECT_EQ(local.normalized(), "*-*-* *:30:00");
    EXPECT_FALSE(local.is_utc());
    EXPECT_EQ(elapses(local, utc(2026, 3, 29), 5), elapses(suffixed, utc(2026, 3, 29), 5));
    EXPECT_EQ(parse_utc("daily").next_after(utc(2026, 7, 1, 12)), utc(2026, 7, 2));
    EXPECT_EQ(CalendarSpec::parse("daily", *berlin).next_after(utc(2026, 7, 1, 12)),
              utc(2026, 7, 1, 22));
    // " UTC" overrides the local zone.
    const CalendarSpec in_utc = CalendarSpec::parse("daily UTC", *berlin);
    EXPECT_TRUE(in_utc.is_utc());
    EXPECT_EQ(in_utc.next_after(utc(2026, 7, 1, 12)), utc(2026, 7, 2));
}

TEST(CalendarSpec, LocalAbbreviationSuffixForcesStandardOrDaylightTime) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    // systemd (TZ=Europe/Berlin): "Mon 02:00 CEST" from July elapses at 02:00 CEST; "CET" is
    // read as standard time all year, which never matches a summer Monday's normalised time
    // and, in systemd's search, never elapses at all.
    const CalendarSpec cest = CalendarSpec::parse("Mon 02:00 CEST", *berlin);
    EXPECT_EQ(cest.normalized(), "Mon *-*-* 02:00:00 CEST");
    EXPECT_EQ(elapses(cest, utc(2026, 7, 1, 12), 2),
              (std::vector<Usec>{utc(2026, 7, 6), utc(2026, 7, 13)}));
    const CalendarSpec cet = CalendarSpec::parse("Mon 02:00 CET", *berlin);
    EXPECT_EQ(cet.normalized(), "Mon *-*-* 02:00:00 CET");
    EXPECT_EQ(cet.next_after(utc(2026, 7, 1, 12)), std::nullopt);
    EXPECT_EQ(cet.next_after(utc(2026, 11, 22, 8)), utc(2026, 11, 23, 1));
    // In a UTC process "CET" is a zone name, not an abbreviation.
    EXPECT_EQ(parse_utc("Mon 02:00 CET").normalized(), "Mon *-*-* 02:00:00 CET");
}

TEST(CalendarSpec, TextAfterNulIsIgnoredLikeACString) {
    const CalendarSpec spec = parse_utc(std::string("daily\0garbage", 13));
    EXPECT_EQ(spec.normalized(), "*-*-* 00:00:00");
}

TEST(CalendarSpec, ConcurrentNextAfterAgrees) {
    SKIP_WITHOUT_ZONE(berlin, "Europe/Berlin");
    const CalendarSpec spec = parse_utc("Sun *-*-* 03:00:00 Europe/Berlin");
    const std::vector<Usec> expect = elapses(spec, utc(2026, 1, 1), 60);
    std::vector<std::vector<Usec>> got(4);
    std::vector<std::thread> threads;
    for (auto& g : got) {
        threads.emplace_back([&spec, &g] { g = elapses(spec, utc(2026, 1, 1), 60); });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    for (const auto& g : got) {
        EXPECT_EQ(g, expect);
    }
}

}  // namespace
}  // namespace mlk::sched
