#include "mlkeeper/util/time.hpp"

#include "support/scoped_tz.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <limits>
#include <optional>
#include <string>

namespace mlk::util {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

using mlk::testing::kEastern;
using mlk::testing::ScopedTz;

// 2026-11-22T14:30:00Z
constexpr std::int64_t kSampleUnix = 1795357800;

Clock::time_point at(std::int64_t unix_seconds, std::int64_t extra_ms = 0) {
    return Clock::time_point(seconds(unix_seconds)) + milliseconds(extra_ms);
}

TEST(FormatLocal, UsesTheLocalZone) {
    {
        ScopedTz tz("UTC");
        EXPECT_EQ(format_local(at(kSampleUnix)), "2026-11-22 14:30:00");
        EXPECT_EQ(format_local(at(kSampleUnix, 999)), "2026-11-22 14:30:00");  // rounds down
    }
    {
        ScopedTz tz(kEastern);
        EXPECT_EQ(format_local(at(kSampleUnix)), "2026-11-22 09:30:00");  // EST, UTC-5
        EXPECT_EQ(format_local(at(kSampleUnix - 150 * 86400)), "2026-06-25 10:30:00");  // EDT
    }
}

TEST(FormatLocal, CustomFormats) {
    ScopedTz tz("UTC");
    EXPECT_EQ(format_local(at(kSampleUnix), "%H:%M"), "14:30");
    EXPECT_EQ(format_local(at(kSampleUnix), "%Y"), "2026");
    EXPECT_EQ(format_local(at(kSampleUnix), ""), "");
    EXPECT_EQ(format_local(at(kSampleUnix), "literal"), "literal");
    // Longer than the first buffer: the output must grow rather than be cut or lost.
    std::string fmt;
    std::string expected;
    for (int i = 0; i < 40; ++i) {
        fmt += "%Y-%m-%d ";
        expected += "2026-11-22 ";
    }
    EXPECT_EQ(format_local(at(kSampleUnix), fmt.c_str()), expected);
}

TEST(FormatLocal, BeforeTheEpochRoundsDown) {
    ScopedTz tz("UTC");
    EXPECT_EQ(format_local(at(-1, 500)), "1969-12-31 23:59:59");
    EXPECT_EQ(format_local(at(0)), "1970-01-01 00:00:00");
}

TEST(Iso8601Utc, MillisecondsAndZulu) {
    ScopedTz tz(kEastern);  // must not matter
    EXPECT_EQ(iso8601_utc(at(kSampleUnix, 123)), "2026-11-22T14:30:00.123Z");
    EXPECT_EQ(iso8601_utc(at(kSampleUnix)), "2026-11-22T14:30:00.000Z");
    EXPECT_EQ(iso8601_utc(at(kSampleUnix) + std::chrono::microseconds(999999)),
              "2026-11-22T14:30:00.999Z");
    EXPECT_EQ(iso8601_utc(at(0)), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(iso8601_utc(at(0, -1)), "1969-12-31T23:59:59.999Z");
    EXPECT_EQ(iso8601_utc(at(951782400)), "2000-02-29T00:00:00.000Z");
}

TEST(FilenameTimestamp, LocalCompactStamp) {
    {
        ScopedTz tz("UTC");
        EXPECT_EQ(filename_timestamp(at(kSampleUnix, 999)), "20261122_143000");
        EXPECT_EQ(filename_timestamp(at(0)), "19700101_000000");
    }
    {
        ScopedTz tz(kEastern);
        EXPECT_EQ(filename_timestamp(at(kSampleUnix)), "20261122_093000");
    }
}

TEST(ParseFilenameTimestamp, InverseOfFilenameTimestamp) {
    for (const char* zone : {"UTC", kEastern}) {
        ScopedTz tz(zone);
        for (std::int64_t t : {std::int64_t{0}, kSampleUnix, kSampleUnix - 150 * 86400,
                               std::int64_t{951782400}, std::int64_t{4102444799}}) {
            const auto parsed = parse_filename_timestamp(filename_timestamp(at(t)));
            ASSERT_TRUE(parsed.has_value()) << zone << ' ' << t;
            EXPECT_EQ(*parsed, at(t)) << zone << ' ' << t;
        }
    }
}

TEST(ParseFilenameTimestamp, ReadsLocalTime) {
    {
        ScopedTz tz("UTC");
        EXPECT_EQ(parse_filename_timestamp("20261122_143000"), at(kSampleUnix));
        EXPECT_EQ(parse_filename_timestamp("19691231_235959"), at(-1));  // mktime's -1 is valid
        EXPECT_EQ(parse_filename_timestamp("20240229_120000"), at(1709208000));
    }
    {
        ScopedTz tz(kEastern);
        EXPECT_EQ(parse_filename_timestamp("20261122_093000"), at(kSampleUnix));
    }
}

TEST(ParseFilenameTimestamp, DstGapMovesForward) {
    ScopedTz tz(kEastern);
    // 2026-03-08 02:30 does not exist in US Eastern; the clock jumps from 02:00 EST to 03:00 EDT.
    const auto parsed = parse_filename_timestamp("20260308_023000");
    ASSERT_TRUE(parsed.has_value());
    const auto before = parse_filename_timestamp("20260308_015959");
    const auto after = parse_filename_timestamp("20260308_033000");
    ASSERT_TRUE(before && after);
    EXPECT_GT(*parsed, *before);
    EXPECT_LE(*parsed, *after);
}

TEST(ParseFilenameTimestamp, RejectsMalformed) {
    ScopedTz tz("UTC");
    for (const char* bad :
         {"", "20261122", "20261122_1430", "20261122_1430000", "20261122-143000", "2026112_2143000",
          "2026-11-22_1430", " 20261122_143000", "20261122_143000 ", "2026112a_143000",
          "20261122_14300x", "+0261122_143000", "models_backup_20261122_143000.tar.gz"}) {
        EXPECT_EQ(parse_filename_timestamp(bad), std::nullopt) << '"' << bad << '"';
    }
}

TEST(ParseFilenameTimestamp, RejectsImpossibleDates) {
    ScopedTz tz("UTC");
    for (const char* bad :
         {"20261322_143000", "20260022_143000", "20261100_143000", "20261131_143000",
          "20260230_120000", "20250229_120000", "19000229_120000", "20261122_243000",
          "20261122_146000", "20261122_143060", "00000101_000000", "99991231_235959",
          "16000101_000000"}) {
        EXPECT_EQ(parse_filename_timestamp(bad), std::nullopt) << bad;
    }
    EXPECT_TRUE(parse_filename_timestamp("20000229_120000").has_value());  // 400-year leap
}

TEST(UnixMs, RoundTrip) {
    EXPECT_EQ(to_unix_ms(at(0)), 0);
    EXPECT_EQ(to_unix_ms(at(kSampleUnix, 123)), kSampleUnix * 1000 + 123);
    EXPECT_EQ(to_unix_ms(at(0, -1)), -1);
    EXPECT_EQ(to_unix_ms(at(0) - std::chrono::microseconds(1)), -1);  // rounds down
    EXPECT_EQ(to_unix_ms(at(0) + std::chrono::microseconds(1999)), 1);
    for (std::int64_t ms : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1},
                            kSampleUnix * 1000 + 123, std::int64_t{-86400000}}) {
        EXPECT_EQ(to_unix_ms(from_unix_ms(ms)), ms);
    }
    const auto now = Clock::now();
    EXPECT_EQ(from_unix_ms(to_unix_ms(now)),
              std::chrono::floor<milliseconds>(now.time_since_epoch()) + Clock::time_point());
}

TEST(UnixMs, ClampsInsteadOfOverflowing) {
    EXPECT_EQ(from_unix_ms(std::numeric_limits<std::int64_t>::max()), Clock::time_point::max());
    EXPECT_EQ(from_unix_ms(std::numeric_limits<std::int64_t>::min()), Clock::time_point::min());
    const std::int64_t biggest = to_unix_ms(Clock::time_point::max());
    EXPECT_LE(from_unix_ms(biggest), Clock::time_point::max());
    EXPECT_EQ(to_unix_ms(from_unix_ms(biggest)), biggest);
    const std::int64_t smallest = to_unix_ms(Clock::time_point::min());
    EXPECT_EQ(from_unix_ms(smallest - 1), Clock::time_point::min());
}

}  // namespace
}  // namespace mlk::util

namespace mlk::util {
namespace {

TEST(Iso8601, RoundTripsAndRejectsJunk) {
    auto tp = from_unix_ms(1'795'000'000'123);
    auto text = iso8601_utc(tp);
    ASSERT_TRUE(parse_iso8601_utc(text).has_value());
    EXPECT_EQ(to_unix_ms(*parse_iso8601_utc(text)), 1'795'000'000'123);
    EXPECT_EQ(to_unix_ms(*parse_iso8601_utc("1970-01-01T00:00:01Z")), 1000);
    for (const char* bad : {"", "2026-11-22", "2026-11-22T14:30:00", "2026-13-01T00:00:00Z",
                            "2026-11-22T14:30:00.Z", "2026-11-22T14:30:00Zjunk"}) {
        EXPECT_FALSE(parse_iso8601_utc(bad).has_value()) << bad;
    }
}

}  // namespace
}  // namespace mlk::util
