#include "mlkeeper/homelab/uptime.hpp"

#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <system_error>

namespace mlk::homelab {
namespace {

constexpr const char* kStat =
    "cpu  2255 34 2290 22625563 6290 127 456 0 0 0\n"
    "cpu0 1132 34 1441 11311718 3675 127 438 0 0 0\n"
    "intr 114930548 113199788 3 0 5 263 0 4 [... 50 more ...]\n"
    "ctxt 1990473\n"
    "btime 1700000000\n"
    "processes 2915\n"
    "procs_running 1\n";

TEST(ProcUptime, ParsesProcUptime) {
    EXPECT_DOUBLE_EQ(parse_proc_uptime("12345.67 54321.00\n"), 12345.67);
    EXPECT_DOUBLE_EQ(parse_proc_uptime("0.00 0.00"), 0.0);
    EXPECT_DOUBLE_EQ(parse_proc_uptime("  42 1\n"), 42.0);
}

TEST(ProcUptime, RejectsBadProcUptime) {
    for (const char* bad :
         {"", "\n", "abc 1", "-5.0 3", "inf 1", "nan 1", "1e5 2", "0x10 1", ". 1", "1.2.3x 4"}) {
        EXPECT_THROW(parse_proc_uptime(bad), std::invalid_argument) << bad;
    }
}

TEST(ProcUptime, ParsesBtime) {
    EXPECT_EQ(parse_proc_stat_btime(kStat), SysTime(std::chrono::seconds(1700000000)));
    EXPECT_EQ(parse_proc_stat_btime("btime 1"), SysTime(std::chrono::seconds(1)));
}

TEST(ProcUptime, RejectsMissingOrBadBtime) {
    for (const char* bad :
         {"", "cpu 1 2 3\nctxt 5\n", "btime\n", "btime abc\n", "btime 0\n", "btime -5\n",
          "btime 1 2\n", "btime 99999999999999999999\n", "btimes 1700000000\n"}) {
        EXPECT_THROW(parse_proc_stat_btime(bad), std::invalid_argument) << bad;
    }
}

TEST(ProcUptime, ParsesLoadavg) {
    auto l = parse_proc_loadavg("0.52 0.58 0.59 2/1234 56789\n");
    EXPECT_DOUBLE_EQ(l[0], 0.52);
    EXPECT_DOUBLE_EQ(l[1], 0.58);
    EXPECT_DOUBLE_EQ(l[2], 0.59);
    l = parse_proc_loadavg("12.00 3.5 0");
    EXPECT_DOUBLE_EQ(l[0], 12.0);
    EXPECT_DOUBLE_EQ(l[2], 0.0);
}

TEST(ProcUptime, RejectsBadLoadavg) {
    for (const char* bad : {"", "0.5 0.6", "a b c", "0.5 -0.6 0.7", "0.5 nan 0.7"}) {
        EXPECT_THROW(parse_proc_loadavg(bad), std::invalid_argument) << bad;
    }
}

// A /proc made of strings; a name not in the map fails to read like a missing file.
ProcReader fake_proc(std::map<std::string, std::string> files) {
    return ProcReader("/fakeproc", [files](const std::filesystem::path& p) {
        const auto it = files.find(p.string());
        if (it == files.end()) {
            throw std::system_error(ENOENT, std::generic_category(), "cannot open " + p.string());
        }
        return it->second;
    });
}

TEST(ProcUptime, ReaderCombinesTheFiles) {
    auto proc = fake_proc(
        {{"/fakeproc/uptime", "100.25 50.00\n"},
         {"/fakeproc/stat", kStat},
         {"/fakeproc/loadavg", "1.00 2.00 3.00 1/100 1\n"},
         {"/fakeproc/sys/kernel/random/boot_id", "0f2c7a1e-3b7e-4a0c-9d1e-5b6c7d8e9f00\n"}});
    const auto info = proc.uptime();
    EXPECT_DOUBLE_EQ(info.uptime_seconds, 100.25);
    EXPECT_EQ(info.boot_time, SysTime(std::chrono::seconds(1700000000)));
    EXPECT_DOUBLE_EQ(info.load_average[1], 2.0);
    EXPECT_EQ(proc.boot_id(), "0f2c7a1e-3b7e-4a0c-9d1e-5b6c7d8e9f00");
}

TEST(ProcUptime, ReaderNamesTheFileThatFailed) {
    auto missing = fake_proc({{"/fakeproc/stat", kStat}});
    try {
        (void)missing.uptime();
        FAIL() << "expected a throw";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("/fakeproc/uptime"), std::string::npos) << e.what();
    }
    auto garbled = fake_proc(
        {{"/fakeproc/stat", kStat}, {"/fakeproc/uptime", "1 1"}, {"/fakeproc/loadavg", "x y z"}});
    try {
        (void)garbled.uptime();
        FAIL() << "expected a throw";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot parse /fakeproc/loadavg"), std::string::npos)
            << e.what();
    }
    auto no_btime = fake_proc({{"/fakeproc/stat", "cpu 1\n"}});
    EXPECT_THROW((void)no_btime.boot_time(), std::runtime_error);
    EXPECT_EQ(no_btime.boot_id(), std::nullopt);
    EXPECT_EQ(fake_proc({{"/fakeproc/sys/kernel/random/boot_id", " \n"}}).boot_id(), std::nullopt);
}

TEST(ProcUptime, ReadsThisMachine) {
    ProcReader proc;
    const auto info = proc.uptime();
    EXPECT_GT(info.uptime_seconds, 0.0);
    EXPECT_LT(info.boot_time, std::chrono::system_clock::now());
    for (double l : info.load_average) {
        EXPECT_GE(l, 0.0);
    }
    ASSERT_TRUE(proc.boot_id().has_value());
    EXPECT_EQ(proc.boot_id()->size(), 36u);
}

}  // namespace
}  // namespace mlk::homelab
