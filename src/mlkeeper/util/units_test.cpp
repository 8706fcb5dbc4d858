#include "mlkeeper/util/units.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mlk::util {
namespace {

using std::chrono::seconds;

// The message of the std::invalid_argument that `f` throws, or "" if it throws nothing.
template <typename F>
std::string error_of(F f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

TEST(ParseDuration, SingleUnits) {
    EXPECT_EQ(parse_duration("90"), seconds(90));
    EXPECT_EQ(parse_duration("90s"), seconds(90));
    EXPECT_EQ(parse_duration("10m"), seconds(600));
    EXPECT_EQ(parse_duration("2h"), seconds(7200));
    EXPECT_EQ(parse_duration("30d"), seconds(30 * 86400));
    EXPECT_EQ(parse_duration("1w"), seconds(604800));
    EXPECT_EQ(parse_duration("0"), seconds(0));
    EXPECT_EQ(parse_duration("0s"), seconds(0));
}

TEST(ParseDuration, LongUnitNames) {
    EXPECT_EQ(parse_duration("30 days"), seconds(30 * 86400));
    EXPECT_EQ(parse_duration("1day"), seconds(86400));
    EXPECT_EQ(parse_duration("10min"), seconds(600));
    EXPECT_EQ(parse_duration("5 minutes"), seconds(300));
    EXPECT_EQ(parse_duration("2 hours"), seconds(7200));
    EXPECT_EQ(parse_duration("1hr"), seconds(3600));
    EXPECT_EQ(parse_duration("3 sec"), seconds(3));
    EXPECT_EQ(parse_duration("1 second"), seconds(1));
    EXPECT_EQ(parse_duration("2 weeks"), seconds(2 * 604800));
}

TEST(ParseDuration, CompoundsAndSpaces) {
    EXPECT_EQ(parse_duration("1h30m"), seconds(5400));
    EXPECT_EQ(parse_duration("1h 30m"), seconds(5400));
    EXPECT_EQ(parse_duration("  1 h  30 m  "), seconds(5400));
    EXPECT_EQ(parse_duration("1d2h3m4s"), seconds(86400 + 7200 + 180 + 4));
    EXPECT_EQ(parse_duration("\t10 m"), seconds(600));
    EXPECT_EQ(parse_duration("30m1h"), seconds(5400));  // order does not matter; parts add up
}

TEST(ParseDuration, Fractions) {
    EXPECT_EQ(parse_duration("1.5h"), seconds(5400));
    EXPECT_EQ(parse_duration("0.5m"), seconds(30));
    EXPECT_EQ(parse_duration("2.25d"), seconds(2 * 86400 + 6 * 3600));
    EXPECT_EQ(parse_duration("1.000000000000000000000s"), seconds(1));  // zeros beyond 18 digits
    EXPECT_EQ(parse_duration("1.5", DurationUnit::kDays), seconds(129600));
}

TEST(ParseDuration, PlainNumberUsesPlainUnit) {
    EXPECT_EQ(parse_duration("30", DurationUnit::kDays), seconds(30 * 86400));
    EXPECT_EQ(parse_duration("3", DurationUnit::kHours), seconds(3 * 3600));
    EXPECT_EQ(parse_duration("5", DurationUnit::kMinutes), seconds(300));
    EXPECT_EQ(parse_duration(" 7 ", DurationUnit::kSeconds), seconds(7));
    EXPECT_EQ(parse_duration("30s", DurationUnit::kDays), seconds(30));  // explicit unit wins
}

TEST(ParseDuration, RejectsMalformedWithHelpfulMessage) {
    EXPECT_EQ(error_of([] { parse_duration("3x"); }),
              "invalid duration \"3x\": expected a number with an optional unit s, m, h, d or w "
              "(e.g. 30d, 10m, 90s)");
    for (const char* bad : {"",   "   ",      "-5",    "-5m",  "+5m",    "m",   "5mm",  "1.5.h",
                            "1.", ".5h",      "1..5h", "1h30", "30 1h",  "5 5", "1e3s", "5M",
                            "5H", "10m junk", "0x10",  "5,5h", "1h-30m", "NaN", "inf",  "5\n"}) {
        const std::string message = error_of([&] { parse_duration(bad); });
        EXPECT_NE(message.find("invalid duration \"" + std::string(bad) + "\": expected"),
                  std::string::npos)
            << '"' << bad << "\" -> " << message;
    }
}

TEST(ParseDuration, RejectsFractionalSeconds) {
    for (const char* bad :
         {"0.5s", "1.5", "1.01m", "1.0000000000000000001s", "0.0000000000000000000001h"}) {
        EXPECT_NE(error_of([&] { parse_duration(bad); }).find("whole number of seconds"),
                  std::string::npos)
            << bad;
    }
}

TEST(ParseDuration, RejectsOverflow) {
    EXPECT_EQ(parse_duration("36525d"), kMaxDuration);
    EXPECT_EQ(parse_duration("36524d 86400s"), kMaxDuration);
    for (const char* bad :
         {"36525d1s", "36526d", "99999999999999999999999w", "18446744073709551616",
          "9223372036854775807s", "5000000w", "36525d 36525d"}) {
        EXPECT_NE(error_of([&] { parse_duration(bad); }).find("too large"), std::string::npos)
            << bad;
    }
}

TEST(ParseSize, PlainAndDecimalUnits) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("1024"), 1024u);
    EXPECT_EQ(parse_size("1024B"), 1024u);
    EXPECT_EQ(parse_size("100k"), 100000u);
    EXPECT_EQ(parse_size("100KB"), 100000u);
    EXPECT_EQ(parse_size("500GB"), 500'000'000'000u);
    EXPECT_EQ(parse_size("500 gb"), 500'000'000'000u);
    EXPECT_EQ(parse_size("1.5T"), 1'500'000'000'000u);
    EXPECT_EQ(parse_size("2P"), 2'000'000'000'000'000u);
    EXPECT_EQ(parse_size("3E"), 3'000'000'000'000'000'000u);
    EXPECT_EQ(parse_size("7M"), 7'000'000u);
}

TEST(ParseSize, BinaryUnits) {
    EXPECT_EQ(parse_size("2GiB"), 2ULL << 30);
    EXPECT_EQ(parse_size("10 MiB"), 10ULL << 20);
    EXPECT_EQ(parse_size("10mib"), 10ULL << 20);
    EXPECT_EQ(parse_size("1Ki"), 1024u);
    EXPECT_EQ(parse_size("1.5KiB"), 1536u);
    EXPECT_EQ(parse_size("1TiB"), 1ULL << 40);
    EXPECT_EQ(parse_size("1PiB"), 1ULL << 50);
    EXPECT_EQ(parse_size("15EiB"), 15ULL << 60);
    EXPECT_EQ(parse_size("1.5EiB"), 3ULL << 59);  // exact, no floating point
    EXPECT_EQ(parse_size(" 4 KiB "), 4096u);
}

TEST(ParseSize, TruncatesFractionalBytes) {
    EXPECT_EQ(parse_size("0.5KiB"), 512u);
    EXPECT_EQ(parse_size("1.0001K"), 1000u);
    EXPECT_EQ(parse_size("0.3KiB"), 307u);  // 307.2
    EXPECT_EQ(parse_size("1.5"), 1u);
}

TEST(ParseSize, RejectsMalformedWithHelpfulMessage) {
    EXPECT_EQ(error_of([] { parse_size("3x"); }),
              "invalid size \"3x\": expected a number with an optional unit B, K, M, G, T, P, E "
              "(powers of 1000) or KiB, MiB, GiB, TiB, PiB, EiB (powers of 1024) (e.g. 500GB, "
              "2GiB, 100M)");
    for (const char* bad : {"", " ", "GB", "-1", "-1GB", "+1", "1.", ".5G", "1 2", "1GBB", "1iB",
                            "1KK", "1Z", "1 GB x", "1e9", "0x10", "1,5G", "1GiB5"}) {
        const std::string message = error_of([&] { parse_size(bad); });
        EXPECT_NE(message.find("invalid size \"" + std::string(bad) + "\": expected"),
                  std::string::npos)
            << '"' << bad << "\" -> " << message;
    }
}

TEST(ParseSize, RejectsOverflow) {
    EXPECT_EQ(parse_size("18446744073709551615"), std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(parse_size("15.999999999999999999EiB"), 18446744073709551614u);
    for (const char* bad : {"18446744073709551616", "16EiB", "19E", "99999999999999999999999",
                            "18446744073709551615K"}) {
        EXPECT_NE(error_of([&] { parse_size(bad); }).find("too large"), std::string::npos) << bad;
    }
}

TEST(FormatBytes, BinaryUnitsWithOneDecimal) {
    EXPECT_EQ(format_bytes(0), "0 B");
    EXPECT_EQ(format_bytes(512), "512 B");
    EXPECT_EQ(format_bytes(1023), "1023 B");
    EXPECT_EQ(format_bytes(1024), "1.0 KiB");
    EXPECT_EQ(format_bytes(1536), "1.5 KiB");
    EXPECT_EQ(format_bytes(2ULL << 30), "2.0 GiB");
    EXPECT_EQ(format_bytes((5ULL << 40) / 2), "2.5 TiB");
    EXPECT_EQ(format_bytes(std::numeric_limits<std::uint64_t>::max()), "16.0 EiB");
}

TEST(FormatBytes, RoundingMovesToTheNextUnit) {
    EXPECT_EQ(format_bytes((1ULL << 20) - 1), "1.0 MiB");  // not "1024.0 KiB"
    EXPECT_EQ(format_bytes((1ULL << 30) - 1), "1.0 GiB");
    EXPECT_EQ(format_bytes(1024 * 1023), "1023.0 KiB");
}

TEST(FormatRate, UsesBinaryUnitsPerSecond) {
    EXPECT_EQ(format_rate(0), "0 B/s");
    EXPECT_EQ(format_rate(512), "512 B/s");
    EXPECT_EQ(format_rate(512.4), "512 B/s");
    EXPECT_EQ(format_rate(1023.7), "1.0 KiB/s");
    EXPECT_EQ(format_rate(120.5 * 1024 * 1024), "120.5 MiB/s");
    EXPECT_EQ(format_rate(3.0 * (1ULL << 30)), "3.0 GiB/s");
    EXPECT_EQ(format_rate(1e30), "867361737988.4 EiB/s");
}

TEST(FormatRate, BadInputIsZero) {
    EXPECT_EQ(format_rate(-5), "0 B/s");
    EXPECT_EQ(format_rate(std::nan("")), "0 B/s");
    EXPECT_EQ(format_rate(std::numeric_limits<double>::infinity()), "0 B/s");
}

TEST(FormatDuration, TwoMostSignificantUnits) {
    EXPECT_EQ(format_duration(seconds(0)), "0s");
    EXPECT_EQ(format_duration(seconds(45)), "45s");
    EXPECT_EQ(format_duration(seconds(125)), "2m 5s");
    EXPECT_EQ(format_duration(seconds(120)), "2m");
    EXPECT_EQ(format_duration(seconds(3600 + 120 + 5)), "1h 2m");
    EXPECT_EQ(format_duration(seconds(3600 + 5)), "1h");  // 0m: the seconds are not shown
    EXPECT_EQ(format_duration(seconds(3 * 86400 + 4 * 3600 + 59)), "3d 4h");
    EXPECT_EQ(format_duration(seconds(400 * 86400)), "400d");
    EXPECT_EQ(format_duration(seconds(-125)), "-2m 5s");
    EXPECT_EQ(format_duration(seconds(std::numeric_limits<std::int64_t>::min())),
              "-106751991167300d 15h");
}

TEST(FormatDurationSetting, ShortestExactForm) {
    EXPECT_EQ(format_duration_setting(seconds(0)), "0s");
    EXPECT_EQ(format_duration_setting(seconds(90)), "90s");
    EXPECT_EQ(format_duration_setting(seconds(30 * 86400)), "30d");
    EXPECT_EQ(format_duration_setting(seconds(5400)), "90m");
    EXPECT_EQ(format_duration_setting(seconds(604800)), "1w");  // ties: larger unit
    EXPECT_EQ(format_duration_setting(seconds(14 * 86400)), "2w");
    EXPECT_EQ(format_duration_setting(seconds(86401)), "1d1s");
    EXPECT_EQ(format_duration_setting(seconds(7261)), "7261s");  // beats "2h1m1s"
    EXPECT_EQ(format_duration_setting(seconds(2 * 604800 + 1)), "2w1s");
    EXPECT_EQ(format_duration_setting(seconds(3600)), "1h");
    EXPECT_EQ(format_duration_setting(seconds(-60)), "-1m");
}

TEST(FormatDurationSetting, RoundTripsThroughParse) {
    const std::int64_t samples[] = {
        0,      1,      59,      60,      61,       3599,      3600,
        3601,   5400,   86399,   86400,   86401,    90061,     604799,
        604800, 604801, 1209600, 2592000, 31536000, 123456789, kMaxDuration.count()};
    for (std::int64_t v : samples) {
        const std::string text = format_duration_setting(seconds(v));
        EXPECT_EQ(parse_duration(text), seconds(v)) << v << " -> " << text;
    }
    for (std::int64_t v = 0; v < 200000; v += 37) {
        const std::string text = format_duration_setting(seconds(v));
        ASSERT_EQ(parse_duration(text), seconds(v)) << v << " -> " << text;
        ASSERT_LE(text.size(), std::to_string(v).size() + 1) << v << " -> " << text;
    }
}

}  // namespace
}  // namespace mlk::util
