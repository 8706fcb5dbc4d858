// Golden comparison with systemd itself: runs `systemd-analyze calendar` and `systemd-analyze
// timestamp` (systemd 252, the version we reproduce) over a broad generated set of expressions,
// base times and local zones, and requires our output to be identical. Skipped where
// systemd-analyze is missing or another version.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mlkeeper/sched/calendar_report.hpp"
#include "mlkeeper/util/process.hpp"

namespace mlk::sched {
namespace {

using std::chrono::microseconds;

Usec real_now() {
    return std::chrono::duration_cast<microseconds>(
        std::chrono::system_clock::now().time_since_epoch());
}

std::optional<std::string> find_on_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            ::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
    }
    return std::nullopt;
}

// systemd-analyze, if it is the systemd 252 whose output we reproduce; skip message otherwise.
std::optional<std::string> systemd_analyze(std::string* why) {
    const std::optional<std::string> exe = find_on_path("systemd-analyze");
    if (!exe) {
        *why = "systemd-analyze not on PATH";
        return std::nullopt;
    }
    util::RunOptions opts;
    opts.timeout = std::chrono::milliseconds(10000);
    const util::RunResult r = util::run_process({*exe, "--version"}, opts);
    if (!r.ok() || r.out.rfind("systemd 252 ", 0) != 0) {
        *why = "systemd-analyze is not systemd 252: " + r.out.substr(0, r.out.find('\n'));
        return std::nullopt;
    }
    return exe;
}

util::RunResult run_analyze(const std::string& exe, const std::string& tz,
                            std::vector<std::string> args) {
    args.insert(args.begin(), exe);
    util::RunOptions opts;
    opts.timeout = std::chrono::milliseconds(30000);
    opts.output_cap = 64 << 20;
    // Plain text on stderr, whatever the environment of the test says (a journal stream, a
    // debug log level, colours).
    opts.env_set = {{"TZ", tz},
                    {"LC_ALL", "C"},
                    {"SYSTEMD_COLORS", "0"},
                    {"SYSTEMD_PAGER", ""},
                    {"SYSTEMD_LOG_TARGET", "console"},
                    {"SYSTEMD_LOG_LEVEL", "info"},
                    {"SYSTEMD_LOG_COLOR", "0"},
                    {"SYSTEMD_LOG_LOCATION", "0"},
                    {"SYSTEMD_LOG_TIME", "0"},
                    {"JOURNAL_STREAM", ""}};
    return util::run_process(args, opts);
}

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> lines;
    std::stringstream in(s);
    std::string line;
    while (std::getline(in, line)) {
        lines.push_back(line);
    }
    return lines;
}

// A small deterministic generator (the same sequence on every platform).
class Rng {
  public:
    explicit Rng(std::uint64_t seed) : s_(seed) {}
    std::uint64_t next() {
        s_ = s_ * 6364136223846793005ULL + 1442695040888963407ULL;
        return s_ >> 33;
    }
    int range(int lo, int hi) { return lo + static_cast<int>(next() % (hi - lo + 1)); }
    bool chance(int percent) { return range(0, 99) < percent; }

  private:
    std::uint64_t s_;
};

std::string two(int v, bool pad) {
    std::string s = std::to_string(v);
    return pad && s.size() < 2 ? "0" + s : s;
}

// One list element: N, N..M, N/R, N..M/R (usually valid, sometimes not).
std::string gen_list(Rng& rng, int lo, int hi) {
    std::string out;
    const int n = rng.chance(70) ? 1 : rng.range(2, 3);
    for (int i = 0; i < n; ++i) {
        if (i > 0) {
            out += ',';
        }
        const int a = rng.range(lo, hi);
        const bool pad = rng.chance(50);
        switch (rng.range(0, 5)) {
            case 0:
            case 1:
                out += two(a, pad);
                break;
            case 2: {
                const int b = rng.chance(85) ? rng.range(a, hi) : rng.range(lo, hi);
                out += two(a, pad) + ".." + two(b, pad);
                break;
            }
            case 3:
            case 4: {
                const int repeat = rng.range(1, std::max(1, (hi - lo) / 3));
                out += two(a, pad) + "/" + std::to_string(repeat);
                break;
            }
            default: {
                const int b = rng.range(a, hi);
                const int repeat = rng.range(1, 4);
                out += two(a, pad) + ".." + two(b, pad) + "/" + std::to_string(repeat);
            }
        }
    }
    return out;
}

std::string gen_field(Rng& rng, int lo, int hi, int star_percent) {
    return rng.chance(star_percent) ? "*" : gen_list(rng, lo, hi);
}

std::string gen_expression(Rng& rng) {
    static const char* const kDays[] = {"Mon", "Tue",    "Wed",    "Thu",    "Fri",    "Sat",
                                        "Sun", "Monday", "sunday", "FRIDAY", "Sat,Sun"};
    static const char* const kZones[] = {" Europe/Berlin", " America/New_York", " UTC",
                                         " Australia/Lord_Howe", " Asia/Kolkata"};
    std::string s;
    if (rng.chance(25)) {
        s += kDays[rng.range(0, 10)];
        if (rng.chance(40)) {
            s += rng.chance(70) ? ".." : ",";
            s += kDays[rng.range(0, 6)];
        }
        s += ' ';
    }
    // One rng call per statement: the order of evaluation inside an expression is unspecified,
    // and every compiler must generate the same list.
    const int shape = rng.range(0, 9);
    if (shape < 6) {
        const bool eom = rng.chance(15);
        const std::string year = rng.chance(25) ? gen_list(rng, 2024, 2032) : "*";
        const std::string month = gen_field(rng, 1, 12, 50);
        const std::string day = eom ? gen_field(rng, 1, 7, 10) : gen_field(rng, 1, 31, 40);
        s += year + "-" + month + (eom ? "~" : "-") + day + " ";
    } else if (shape < 7) {
        const std::string month = gen_field(rng, 1, 12, 30);
        const std::string day = gen_field(rng, 1, 31, 30);
        s += month + "-" + day + " ";
    }
    const std::string hour = gen_field(rng, 0, 23, 25);
    const std::string minute = gen_field(rng, 0, 59, 15);
    s += hour + ":" + minute;
    if (rng.chance(45)) {
        switch (rng.range(0, 3)) {
            case 0:
                s += ":*";
                break;
            case 1:
                s += ":" + two(rng.range(0, 59), true);
                break;
            case 2: {
                const int whole = rng.range(0, 59);
                const int fraction = rng.range(0, 999999);
                s += ":" + std::to_string(whole) + "." + std::to_string(fraction);
                break;
            }
            default: {
                const int start = rng.range(0, 30);
                const int repeat = rng.range(1, 20);
                s += ":" + std::to_string(start) + "/" + std::to_string(repeat);
            }
        }
    }
    if (rng.chance(35)) {
        s += kZones[rng.range(0, 4)];
    }
    return s;
}

// Every syntax form, the invalid ones systemd rejects (and why), DST days in Berlin and New
// York, leap years, '~' days, the 31st of short months, never-elapsing dates.
const std::vector<std::string>& fixed_expressions() {
    static const std::vector<std::string> kList = {
        // shorthands
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "anually",
        "quarterly",
        "semiannually",
        "semi-annually",
        "biannually",
        "bi-annually",
        "DAILY",
        "Weekly",
        "daily UTC",
        "daily utc",
        "daily Europe/Berlin",
        "weekly America/New_York",
        "hourly Australia/Lord_Howe",
        // weekdays
        "Sun *-*-* 03:00:00",
        "Mon..Fri *-*-* 09:00:00",
        "Sat,Sun *-*-* 10:00",
        "Mon,Wed,Fri 12:00",
        "Monday..Friday 08:30",
        "mon-wed",
        "Mon..Wed,",
        "Mon..Sun",
        "Sun..Mon",
        "Mon.. 12:00",
        "Mon-Wed-Fri",
        "Mon.Wed",
        "Mon,,Wed",
        "Mon, Wed",
        "Mo",
        "Monx",
        "Wed..Sat,Tue 12-10-15 1:2:3",
        "Mon,Sun 12-*-* 2,1:23",
        "Tue,Thu *-*-* 18:00",
        "Sat..Sun 00:00",
        "Fri *-*-13 00:00",
        // times, lists, ranges, repetitions, fractions
        "*-*-* 02:00:00",
        "*:0/5",
        "*:0/15",
        "*:*:0/10",
        "*-*-* *:00/5:00",
        "*:2/3",
        "*-*-* 00:00:1..2",
        "*-*-* 00:00:1..1",
        "*-*-* 00:00:1.5..2",
        "*-*-* 00:00:1.5..2/0.5",
        "*-*-* *:*:0.5",
        "00:00:00.000001",
        "*-*-* 00:00:00.0000005",
        "Sat,Sun 2017-*-* *:*:00/15.5",
        "*-*-* *:*:*",
        "*-*-* 23:59:59.999999",
        "*-*-* 24:00",
        "*-*-* 23:60",
        "*-*-* 23:59:60",
        "*-*-* 23:59:59.9999995",
        "8..17:00",
        "9..17/2:30",
        "*-*-* 8,12,18:00",
        "*-*-* 00:00:00,30",
        "*-*-* 1..3,5:0",
        // dates
        "5..5-*",
        "*-*-1..7/3",
        "*-*-1..3/5",
        "*-1..12/2-1",
        "*-*-01,15 12:00",
        "*-02-29",
        "*-02-30",
        "*-02-31",
        "*-04-31",
        "*-06-31",
        "*-09-31",
        "*-11-31",
        "*-*-31",
        "*-*-30 03:00",
        "*-*-29 00:00",
        "Mon *-02-29",
        "2026-12-25 08:00",
        "2027-01-01..2027-01-03",
        "2026..2030-01-01",
        "2026/2-01-01",
        "2024..2032/4-02-29",
        // '~': days counted from the end of the month
        "*-02~1",
        "*-02~01",
        "*-*~07/1",
        "*-*~1",
        "*-*~3..1",
        "*-*~1..3",
        "*-*~28",
        "*-*~29",
        "*-*~0",
        "*-*~1/28",
        "*-*~1/27",
        "*-*~28/27",
        "*-*~1,2",
        "*-*~28,1",
        "*-*~1,5,10",
        "*~*",
        "*-*~*",
        "*-*-*~1",
        "2026-02~1",
        "2027-*~1",
        "2028-02~1..3",
        "Fri *-*~7..1",
        "2026-02-28..29",
        // @epoch
        "@1234",
        "@1795305600",
        "@ 5",
        "@-1",
        "@-0",
        "@+86400",
        "@99999999999999999",
        "@999999999999999999999",
        "@1900000000",
        "@1900000000 UTC",
        // years
        "2003-03-05 05:40",
        "2020-*-*",
        "1970-1-1",
        "2199-12-31",
        "2200-01-01",
        "69-01-01",
        "70-01-01",
        "99-12-31",
        "26-05-01",
        // malformed and out of range
        "*-*-* 99999999999:00",
        "*-*-* 2147483648:00",
        "*-*-* 00:00:4294.967296",
        "*-*-* 00:00:2147",
        "*-*-* 00:00:2148",
        "*-*-* 00:00/0",
        "*-*-* 00:00:00/0",
        "*-*-* 00:00:00/0.0000001",
        "*-*-*",
        "*-*",
        "*",
        "12",
        "12-",
        "2026",
        "2026-*",
        "Mon 12:00:00:00",
        "1-2-3-4",
        "0-0-0",
        "  daily",
        "daily  ",
        "*-*-*  12:00",
        "*-*-* 12:00 ",
        "Mon  *-*-*   12:00",
        "bogus",
        "5h",
        "now",
        "today",
        "",
        "12:00 Europe/Nowhere",
        "12:00 Etc/UTC",
        "12:00 GMT",
        "12:00 CET",
        "12:00 EST5EDT",
        "12:00 Asia/Kolkata",
        "12:00 ../UTC",
        "12:00 Europe//Berlin",
        // DST: Berlin (2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00)
        "02:30 Europe/Berlin",
        "*-03-29 02:30 Europe/Berlin",
        "*-10-25 02:30 Europe/Berlin",
        "*-*-* 02:00..03:00 Europe/Berlin",
        "*-*-* 02:*:00 Europe/Berlin",
        "*-*-* 01..03:30 Europe/Berlin",
        "Sun *-*-* 02:30 Europe/Berlin",
        "Sun *-*-* 03:00:00 Europe/Berlin",
        "Sun *-*~7..1 02:30 Europe/Berlin",
        "*-*~1 02:30 Europe/Berlin",
        "*-*-* *:00 Europe/Berlin",
        "*-*-* 02:59:59 Europe/Berlin",
        // DST: New York (2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00)
        "*-*-* 02:30 America/New_York",
        "*-03-08 02:30 America/New_York",
        "*-11-01 01:30 America/New_York",
        "*-*-* 01:30 America/New_York",
        "*-*-* *:30 America/New_York",
        "Sun *-*-* 01:59 America/New_York",
        // other zones: half-hour DST, midnight changes
        "*-*-* 00:00 Australia/Lord_Howe",
        "*-*-* 02:15 Australia/Lord_Howe",
        "*-*-* 00:00 America/Santiago",
        "*-*-* 00:00 America/Havana",
        "*-*-* 00:30 Asia/Kolkata",
        // an open repeat overshooting midnight into the day of a DST change: systemd's search
        // cycles until its 1000-round limit (EDEADLK) in Berlin
        "17,10/4:31",
        "*-*-* 10/4:31 Europe/Berlin",
    };
    return kList;
}

struct Mismatch {
    std::size_t count = 0;
    std::string first;
};

void compare_outputs(const std::string& what, const std::string& ours_before,
                     const std::string& ours_after, const std::string& theirs, Mismatch& m) {
    const std::vector<std::string> a = split_lines(theirs);
    const std::vector<std::string> b = split_lines(ours_before);
    const std::vector<std::string> c = split_lines(ours_after);
    const std::size_t n = std::max(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        const std::string sa = i < a.size() ? a[i] : "<missing>";
        const std::string sb = i < b.size() ? b[i] : "<missing>";
        const std::string sc = i < c.size() ? c[i] : "<missing>";
        // "From now:" uses systemd's own clock, read between our two.
        if (sa == sb || (sa.find("From now:") != std::string::npos && sa == sc)) {
            continue;
        }
        if (m.count++ == 0) {
            m.first = what + " line " + std::to_string(i + 1) + "\n  systemd: " + sa +
                      "\n  ours:    " + sb;
        }
    }
}

struct GoldenRun {
    std::string tz;
    std::string base;
};

TEST(CalendarGolden, MatchesSystemdAnalyzeCalendar) {
    std::string why;
    const std::optional<std::string> exe = systemd_analyze(&why);
    if (!exe) {
        GTEST_SKIP() << why;
    }
    if (!util::TimeZone::load("Europe/Berlin") || !util::TimeZone::load("America/New_York")) {
        GTEST_SKIP() << "tzdata not installed";
    }
    std::vector<std::string> exprs = fixed_expressions();
    Rng rng(20261122);
    for (int i = 0; i < 300; ++i) {
        exprs.push_back(gen_expression(rng));
    }

    const std::vector<GoldenRun> runs = {
        {"UTC", "2026-03-28 00:00:00 UTC"},       {"UTC", "2026-10-24 12:00 UTC"},
        {"UTC", "2028-02-27 22:00:00 UTC"},       {"UTC", "2026-03-08 06:59:59 UTC"},
        {"UTC", "2031-12-31 23:59:59.5 UTC"},     {"Europe/Berlin", "2026-03-28 12:00"},
        {"Europe/Berlin", "2026-10-24 22:00:00"}, {"America/New_York", "2026-03-07 12:00"},
        {"America/New_York", "2026-10-31 23:30"},
    };
    std::size_t compared = 0;
    Mismatch m;
    for (const GoldenRun& run : runs) {
        std::optional<util::TimeZone> zone = util::TimeZone::load(run.tz);
        ASSERT_TRUE(zone) << run.tz;
        std::vector<std::string> args = {
            "--no-pager", "calendar", "--iterations", "5", "--base-time", run.base, "--"};
        args.insert(args.end(), exprs.begin(), exprs.end());
        const Usec before = real_now();
        const util::RunResult theirs = run_analyze(*exe, run.tz, args);
        const Usec after = real_now();
        ASSERT_EQ(theirs.kind, util::ExitKind::kExited) << theirs.error;

        CalendarReportOptions opts;
        opts.iterations = 5;
        opts.zone = *zone;
        opts.now = before;
        opts.base = parse_timestamp(run.base, before, *zone);
        const CalendarReport ours_before = calendar_report(exprs, opts);
        opts.now = after;
        const CalendarReport ours_after = calendar_report(exprs, opts);

        const std::string what = "TZ=" + run.tz + " base '" + run.base + "'";
        compare_outputs(what + " stdout", ours_before.out, ours_after.out, theirs.out, m);
        compare_outputs(what + " stderr", ours_before.err, ours_before.err, theirs.err, m);
        EXPECT_EQ(ours_before.exit_code, theirs.exit_code) << what;
        compared += exprs.size();
    }
    EXPECT_EQ(m.count, 0U) << m.first;
    RecordProperty("golden_cases", static_cast<int>(compared));
    std::printf("[ golden   ] %zu expression evaluations compared with systemd-analyze\n",
                compared);
}

// Absolute and relative timestamps as --base-time takes them.
TEST(CalendarGolden, MatchesSystemdAnalyzeTimestamp) {
    std::string why;
    const std::optional<std::string> exe = systemd_analyze(&why);
    if (!exe) {
        GTEST_SKIP() << why;
    }
    if (!util::TimeZone::load("Europe/Berlin") || !util::TimeZone::load("America/New_York")) {
        GTEST_SKIP() << "tzdata not installed";
    }
    const std::vector<std::string> inputs = {
        "2026-02-31",
        "2026-01-01 25:00",
        "2026-01-01 23:59:60",
        "@1234.5",
        "+5h",
        "-1d",
        "1d ago",
        "5min left",
        "tomorrow UTC",
        "Sun 2026-11-22",
        "Mon 2026-11-22",
        "26-01-01",
        "2026-1-1 1:2:3",
        " 2026-01-01",
        "2026-01-01  10:00",
        "2026-01-01 10:00:00.5",
        "12:00",
        "2026-01-01T10:00",
        "2026-01-01 10:00 +02",
        "now UTC",
        "@0",
        "1969-12-31 23:00 UTC",
        "2026-01-01 10:00 utc",
        "2026-01-01 10:00 Europe/Nowhere",
        "99999-01-01",
        "Nov 22 10:00",
        "Nov 22 10:00:00.5",
        "November 22 10:00:00",
        "nov  22 10:00:00",
        "Sun Nov 22 10:00:00",
        "Feb 30 10:00:00",
        "Nov 22",
        "2026-01-0110:00",
        "2026- 01-01",
        "2026-01-01 10:00:00 Z",
        "1 day  ago",
        " 1 day ago",
        "today UTC",
        "TODAY",
        "now+5h",
        "+5h ago",
        "5h",
        "@1.5",
        "@infinity",
        "+infinity",
        "2026-1-1 1:2",
        "26-1-1 1:2:3",
        "2026-01-01 1:2:3.",
        "2026-01-01 1:2:3.x",
        "10:00:00.123456789",
        "00:00",
        "2026-01-01 10:00 UTC ",
        "Sunday 2026-11-22",
        "sun 2026-11-22 UTC",
        "sun  2026-11-22",
        "Sun2026-11-22",
        "-5min",
        "+5 min 3 s",
        "+5.5.5s",
        "+5.5 .5s",
        "+1.",
        "+.5s",
        "+5x",
        "+5\xc2\xb5s",
        "+5 weeks",
        "+5M",
        "@ 5",
        "@-1",
        "@1e3",
        "@5s",
        "@5min",
        "@253402214399",
        "@253402214400",
        "9999-12-30 23:59:59",
        "9999-12-31 00:00",
        "1970-01-01",
        "70-01-01",
        "69-12-31",
        "68-01-01",
        "2026-13-01",
        "2026-00-10",
        "2026-01-00",
        "2026-01-32",
        "2026-01-01 24:00",
        "2026-01-01 23:60",
        "2026-01-01 23:59:61",
        "2026-01-01 23:59:62",
        "2026-01-01 10:00:00.",
        "2026-01-01 10:00:00.1234567",
        "10:00:00.123",
        "2026-01-01 10:00:00.5 UTC",
        "yesterday",
        "tomorrow",
        "today",
        "now",
        "2026-11-22 10:00 CEST",
        "2026-07-22 10:00 CEST",
        "2026-07-22 10:00 EDT",
        "2026-01-22 10:00 EDT",
        "",
    };
    // Local times in a DST gap or fold resolve through glibc's mktime(), whose answer depends on
    // the offset its previous call left behind; in a fresh process (as for --base-time) that is
    // 0. These run one per systemd-analyze process, the rest all in one.
    const std::vector<std::string> dst_inputs = {"2026-03-29 02:30", "2026-10-25 02:30",
                                                 "2026-03-08 02:30", "2026-11-01 01:30",
                                                 "2026-10-25 02:30 CEST"};
    std::vector<std::vector<std::string>> batches = {inputs};
    for (const std::string& input : dst_inputs) {
        batches.push_back({input});
    }
    std::size_t compared = 0;
    for (const std::string tz : {"UTC", "Europe/Berlin", "America/New_York"}) {
        for (const std::vector<std::string>& batch : batches) {
            std::optional<util::TimeZone> zone = util::TimeZone::load(tz);
            ASSERT_TRUE(zone) << tz;
            std::vector<std::string> args = {"--no-pager", "timestamp", "--"};
            args.insert(args.end(), batch.begin(), batch.end());
            const Usec before = real_now();
            const util::RunResult r = run_analyze(*exe, tz, args);
            const Usec after = real_now();
            ASSERT_EQ(r.kind, util::ExitKind::kExited) << r.error;
            // One block per input, blank-line separated; a rejected input leaves an empty block.
            const std::vector<std::string> lines = split_lines(r.out);
            std::size_t line = 0;
            for (const std::string& input : batch) {
                std::optional<std::uint64_t> theirs;
                for (; line < lines.size() && !lines[line].empty(); ++line) {
                    const std::string& l = lines[line];
                    const std::size_t at = l.find("UNIX seconds: @");
                    if (at == std::string::npos) {
                        continue;
                    }
                    const std::string num = l.substr(at + 15);
                    const std::size_t dot = num.find('.');
                    std::uint64_t v = std::stoull(num.substr(0, dot)) * 1000000;
                    if (dot != std::string::npos) {
                        v += std::stoull(num.substr(dot + 1, 6));
                    }
                    theirs = v;
                }
                ++line;  // the separator
                auto ours = [&](Usec now) -> std::optional<std::uint64_t> {
                    try {
                        const Usec v = parse_timestamp(input, now, *zone);
                        return v == kUsecInfinity ? UINT64_MAX
                                                  : static_cast<std::uint64_t>(v.count());
                    } catch (const TimestampError&) {
                        return std::nullopt;
                    }
                };
                const std::optional<std::uint64_t> lo = ours(before);
                const std::optional<std::uint64_t> hi = ours(after);
                const std::string what = "TZ=" + tz + " '" + input + "'";
                EXPECT_EQ(theirs.has_value(), lo.has_value()) << what;
                if (theirs && lo && hi) {
                    // Relative forms count from systemd's own clock, read between our two.
                    EXPECT_TRUE(*lo <= *theirs && *theirs <= *hi)
                        << what << " systemd " << *theirs << " ours " << *lo << ".." << *hi;
                }
                ++compared;
            }
        }
    }
    std::printf("[ golden   ] %zu timestamps compared with systemd-analyze\n", compared);
}

}  // namespace
}  // namespace mlk::sched
