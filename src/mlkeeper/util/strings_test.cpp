#include "mlkeeper/util/strings.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace mlk::util {
namespace {

using Strings = std::vector<std::string>;

TEST(Trim, RemovesAsciiWhitespaceAtBothEnds) {
    EXPECT_EQ(trim("  a b \t\r\n"), "a b");
    EXPECT_EQ(trim("\f\vx\v"), "x");
    EXPECT_EQ(trim("abc"), "abc");
}

TEST(Trim, AllWhitespaceAndEmptyGiveEmpty) {
    EXPECT_EQ(trim(""), "");
    EXPECT_EQ(trim(" \t\n "), "");
}

TEST(Trim, ResultViewsTheInput) {
    const std::string s = "  hello  ";
    const std::string_view t = trim(s);
    EXPECT_EQ(t.data(), s.data() + 2);
    EXPECT_EQ(t.size(), 5u);
}

TEST(Split, KeepsEmptyFields) {
    EXPECT_EQ(split("a,,b", ','), (Strings{"a", "", "b"}));
    EXPECT_EQ(split(",a,", ','), (Strings{"", "a", ""}));
    EXPECT_EQ(split("", ','), (Strings{""}));
    EXPECT_EQ(split("abc", ','), (Strings{"abc"}));
    EXPECT_EQ(split(",", ','), (Strings{"", ""}));
}

TEST(SplitWs, SplitsOnRunsAndDropsEmpty) {
    EXPECT_EQ(split_ws("  a \t b\n\nc  "), (Strings{"a", "b", "c"}));
    EXPECT_EQ(split_ws(""), Strings{});
    EXPECT_EQ(split_ws(" \t\n"), Strings{});
    EXPECT_EQ(split_ws("one"), (Strings{"one"}));
}

TEST(Join, JoinsWithSeparator) {
    EXPECT_EQ(join({}, ", "), "");
    EXPECT_EQ(join({"a"}, ", "), "a");
    EXPECT_EQ(join({"a", "b", "c"}, ", "), "a, b, c");
    EXPECT_EQ(join({"", ""}, "-"), "-");
    EXPECT_EQ(join(split("x,y,,z", ','), ","), "x,y,,z");
}

TEST(ToLower, AsciiOnly) {
    EXPECT_EQ(to_lower("HeLLo-World_42"), "hello-world_42");
    EXPECT_EQ(to_lower("\xC3\x84"), "\xC3\x84");  // UTF-8 bytes untouched
    EXPECT_EQ(to_lower(""), "");
}

TEST(Levenshtein, KnownDistances) {
    EXPECT_EQ(levenshtein("", ""), 0u);
    EXPECT_EQ(levenshtein("abc", ""), 3u);
    EXPECT_EQ(levenshtein("", "abc"), 3u);
    EXPECT_EQ(levenshtein("kitten", "sitting"), 3u);
    EXPECT_EQ(levenshtein("sitting", "kitten"), 3u);
    EXPECT_EQ(levenshtein("flaw", "lawn"), 2u);
    EXPECT_EQ(levenshtein("status", "stauts"), 2u);
    EXPECT_EQ(levenshtein("same", "same"), 0u);
    EXPECT_EQ(levenshtein("Same", "same"), 1u);  // case-sensitive
}

TEST(ClosestMatch, SuggestsNearestCandidate) {
    const Strings commands = {"backup", "restore", "status", "health", "cleanup"};
    EXPECT_EQ(closest_match("stauts", commands), "status");
    EXPECT_EQ(closest_match("bakup", commands), "backup");
    EXPECT_EQ(closest_match("RESTOR", commands), "restore");  // case-insensitive
    EXPECT_EQ(closest_match("frobnicate", commands), std::nullopt);
}

TEST(ClosestMatch, PrefersSmallestDistanceThenFirst) {
    EXPECT_EQ(closest_match("abcd", {"abxx", "abcx"}), "abcx");
    EXPECT_EQ(closest_match("abcd", {"abcx", "abcy"}), "abcx");
    EXPECT_EQ(closest_match("abcd", {"abcy", "abcx"}), "abcy");
}

TEST(ClosestMatch, RespectsMaxDistance) {
    EXPECT_EQ(closest_match("abcdef", {"abcxyz"}, 3), "abcxyz");
    EXPECT_EQ(closest_match("abcdef", {"abcxyz"}, 2), std::nullopt);
    EXPECT_EQ(closest_match("abcdef", {"abcdef"}, 0), "abcdef");
}

TEST(ClosestMatch, NeverRewritesAWholeShortWord) {
    EXPECT_EQ(closest_match("ab", {"xyz"}), std::nullopt);  // distance 3 >= length 2
    EXPECT_EQ(closest_match("x", {"ls"}), std::nullopt);
    EXPECT_EQ(closest_match("lst", {"list"}), "list");
    EXPECT_EQ(closest_match("", {"", "a"}), std::nullopt);
    EXPECT_EQ(closest_match("abc", {}), std::nullopt);
}

TEST(ParseBool, AcceptsAllSpellingsCaseInsensitively) {
    for (const char* t : {"true", "TRUE", "True", "yes", "Yes", "on", "ON", "1"}) {
        EXPECT_EQ(parse_bool(t), true) << t;
    }
    for (const char* f : {"false", "FALSE", "no", "NO", "off", "Off", "0"}) {
        EXPECT_EQ(parse_bool(f), false) << f;
    }
}

TEST(ParseBool, RejectsEverythingElse) {
    for (const char* bad :
         {"", " true", "true ", "2", "-1", "y", "n", "t", "enable", "00", "yess"}) {
        EXPECT_EQ(parse_bool(bad), std::nullopt) << '"' << bad << '"';
    }
}

TEST(ShellQuote, LeavesSafeWordsAlone) {
    EXPECT_EQ(shell_quote("tar"), "tar");
    EXPECT_EQ(shell_quote("/var/lib/mlkeeper/a-b_c.tar.gz"), "/var/lib/mlkeeper/a-b_c.tar.gz");
    EXPECT_EQ(shell_quote("--level=3"), "--level=3");
    EXPECT_EQ(shell_quote("user@host:1,2%+"), "user@host:1,2%+");
}

TEST(ShellQuote, QuotesEverythingElse) {
    EXPECT_EQ(shell_quote(""), "''");
    EXPECT_EQ(shell_quote("a b"), "'a b'");
    EXPECT_EQ(shell_quote("$HOME"), "'$HOME'");
    EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
    EXPECT_EQ(shell_quote("'"), "''\\'''");
    EXPECT_EQ(shell_quote("a;rm -rf /"), "'a;rm -rf /'");
    EXPECT_EQ(shell_quote("x\ny"), "'x\ny'");
    EXPECT_EQ(shell_quote("*"), "'*'");
}

TEST(ShellJoin, QuotesEachArgument) {
    EXPECT_EQ(shell_join({}), "");
    EXPECT_EQ(shell_join({"echo", "hello world", "it's", ""}), "echo 'hello world' 'it'\\''s' ''");
}

TEST(ParseInt64, ParsesWholeNumbers) {
    EXPECT_EQ(parse_int64("0"), 0);
    EXPECT_EQ(parse_int64("42"), 42);
    EXPECT_EQ(parse_int64("-42"), -42);
    EXPECT_EQ(parse_int64("+42"), 42);
    EXPECT_EQ(parse_int64("-0"), 0);
    EXPECT_EQ(parse_int64("007"), 7);
    EXPECT_EQ(parse_int64("9223372036854775807"), std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(parse_int64("-9223372036854775808"), std::numeric_limits<std::int64_t>::min());
}

TEST(ParseInt64, RejectsJunkAndOverflow) {
    for (const char* bad : {"", " ", "+", "-", "+-5", "-+5", "++5", "--5", " 5", "5 ", "5x", "x5",
                            "1.0", "1e3", "0x10", "1_000", "9223372036854775808",
                            "-9223372036854775809", "99999999999999999999999"}) {
        EXPECT_EQ(parse_int64(bad), std::nullopt) << '"' << bad << '"';
    }
}

TEST(ParseInt64, DoesNotReadPastTheView) {
    const std::string s = "12345";
    EXPECT_EQ(parse_int64(std::string_view(s).substr(0, 2)), 12);
}

}  // namespace
}  // namespace mlk::util

namespace mlk::util {
namespace {

TEST(PercentDecode, EscapesPlusAndBadEscapes) {
    EXPECT_EQ(percent_decode("a%20b%2Fc"), "a b/c");
    EXPECT_EQ(percent_decode("a+b"), "a+b");
    EXPECT_EQ(percent_decode("a+b", PlusIs::kSpace), "a b");
    EXPECT_EQ(percent_decode("100%"), "100%");
    EXPECT_EQ(percent_decode("%zz%4"), "%zz%4");
    EXPECT_EQ(percent_decode("%41%6a"), "Aj");
    EXPECT_THROW(percent_decode("%4", PlusIs::kPlus, BadEscape::kThrow), std::invalid_argument);
    EXPECT_EQ(hex_digit('f'), 15);
    EXPECT_EQ(hex_digit('G'), -1);
}

TEST(EscapeForLog, ControlAndNonAsciiBytesBecomeHex) {
    EXPECT_EQ(escape_for_log("GET /models"), "GET /models");
    EXPECT_EQ(escape_for_log("a\nb\\c\xc3\xbc"), "a\\x0ab\\x5cc\\xc3\\xbc");
}

}  // namespace
}  // namespace mlk::util
