#include "mlkeeper/sched/cron_spec.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <vector>

namespace mlk::sched {

namespace {

using std::int64_t;

constexpr int64_t kMinutesPerDay = 24 * 60;
// Past this the calendar arithmetic is still exact, but no schedule needs it and the bound keeps
// every intermediate value far from overflow.
constexpr int64_t kMaxBaseSeconds = int64_t{3'155'695'200'000};  // ~ year 100000
// Feb 29 recurs at most 8 years apart and every other day pattern yearly, so 28 years (a full
// weekday/leap cycle) only ends a search that DST oddities kept from matching.
constexpr int64_t kSearchMinutes = int64_t{28} * 366 * kMinutesPerDay;
// cronie's thresholds (cron.c): |jump| > 3 h is a clock correction, a forward jump of <= 5
// minutes of virtual time (4 skipped minutes) catches up every job.
constexpr int64_t kLargeJumpSeconds = 3 * 3600;
constexpr int64_t kSmallJumpSeconds = 4 * 60;
// Further than any UTC offset (-12 h .. +14 h, LMT up to ~15 h) from a local wall-clock time.
constexpr int64_t kOffsetReachSeconds = 30 * 3600;
// The longest backward jump in local time that we look ahead for.
constexpr int64_t kFoldLookaheadSeconds = 26 * 3600;

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        --q;
    }
    return q;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
constexpr int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2 ? 1 : 0;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

struct Civil {
    int64_t year;
    int month;
    int day;
};

constexpr Civil civil_from_days(int64_t z) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    const int day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
    const int month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
    return {yoe + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

static_assert(days_from_civil(1970, 1, 1) == 0);
static_assert(days_from_civil(2000, 3, 1) == 11017);
static_assert(civil_from_days(11017).year == 2000 && civil_from_days(11017).month == 3);

int weekday_from_days(int64_t z) {  // 0 = Sunday; 1970-01-01 was a Thursday
    const int64_t w = (z + 4) % 7;
    return static_cast<int>(w < 0 ? w + 7 : w);
}

bool is_leap(int64_t y) {
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

int days_in_month(int64_t y, int m) {
    static constexpr std::array<int, 13> kDays = {0,  31, 28, 31, 30, 31, 30,
                                                  31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : kDays[static_cast<std::size_t>(m)];
}

// ---- parsing ----

enum class Field { kMinute, kHour, kDom, kMonth, kDow };

struct FieldDef {
    Field id;
    const char* name;
    int lo;
    int hi;
};

constexpr std::array<FieldDef, 5> kFields = {{
    {Field::kMinute, "minute", 0, 59},
    {Field::kHour, "hour", 0, 23},
    {Field::kDom, "day-of-month", 1, 31},
    {Field::kMonth, "month", 1, 12},
    {Field::kDow, "day-of-week", 0, 7},
}};

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kDowNames = {"sun", "mon", "tue", "wed",
                                                       "thu", "fri", "sat"};

[[noreturn]] void fail(const FieldDef& f, std::string_view token, std::string_view problem) {
    throw CronError("cron: " + std::string(f.name) + " field '" + std::string(token) + "' " +
                    std::string(problem));
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

// Digits saturate at INT_MAX, which is out of range for every value and as a step still means
// "only the first value".
int parse_digits(std::string_view s) {
    int64_t v = 0;
    for (char c : s) {
        v = std::min<int64_t>(v * 10 + (c - '0'), INT_MAX);
    }
    return static_cast<int>(v);
}

// One value of a range or list: a number or (month, day-of-week) a three-letter name.
int parse_value(const FieldDef& f, std::string_view text) {
    if (text.empty()) {
        return -1;  // the caller reports the malformed element
    }
    if (std::all_of(text.begin(), text.end(), is_digit)) {
        const int v = parse_digits(text);
        if (v < f.lo || v > f.hi) {
            fail(f, text, "out of range " + std::to_string(f.lo) + "-" + std::to_string(f.hi));
        }
        return v;
    }
    if (!std::all_of(text.begin(), text.end(), is_alpha)) {
        fail(f, text, "is not a number");
    }
    if (f.id == Field::kMonth) {
        for (std::size_t i = 0; i < kMonthNames.size(); ++i) {
            if (iequals(text, kMonthNames[i])) {
                return static_cast<int>(i) + 1;
            }
        }
        fail(f, text, "is not a month name (jan..dec)");
    }
    if (f.id == Field::kDow) {
        for (std::size_t i = 0; i < kDowNames.size(); ++i) {
            if (iequals(text, kDowNames[i])) {
                return static_cast<int>(i);
            }
        }
        fail(f, text, "is not a weekday name (sun..sat)");
    }
    fail(f, text, "is not a number (names are allowed only for month and day-of-week)");
}

struct ParsedField {
    std::uint64_t bits = 0;  // bit v for value v (day-of-week: 7 folded into 0)
    std::string text;        // normalized
};

ParsedField parse_field(const FieldDef& f, std::string_view token) {
    for (char c : token) {
        if (!is_digit(c) && !is_alpha(c) && c != '*' && c != '/' && c != ',' && c != '-') {
            fail(f, token, std::string("has an unexpected character '") + c + "'");
        }
    }
    ParsedField out;
    std::vector<std::string> parts;
    std::size_t pos = 0;
    while (true) {
        const std::size_t comma = token.find(',', pos);
        const std::string_view elem = token.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        if (elem.empty()) {
            fail(f, token, "has an empty list element");
        }
        const auto malformed = [&]() {
            fail(f, elem, "is malformed (expected N, N-M, *, */S, N-M/S or N/S)");
        };

        const std::size_t slash = elem.find('/');
        const std::string_view base = elem.substr(0, slash);
        int step = 1;
        const bool has_step = slash != std::string_view::npos;
        if (has_step) {
            const std::string_view step_text = elem.substr(slash + 1);
            if (step_text.empty() || !std::all_of(step_text.begin(), step_text.end(), is_digit)) {
                malformed();
            }
            step = parse_digits(step_text);
            if (step == 0) {
                fail(f, elem, "has step 0 (the step must be at least 1)");
            }
        }

        // The effective upper end of "*" and of "N/S": 7 for day-of-week, as cronie and croniter.
        int lo = 0;
        int hi = 0;
        enum class Kind { kStar, kSingle, kOpen, kRange } kind = Kind::kSingle;
        if (base == "*") {
            kind = Kind::kStar;
            lo = f.lo;
            hi = f.hi;
        } else {
            if (base.find('*') != std::string_view::npos) {
                malformed();
            }
            const std::size_t dash = base.find('-');
            if (dash == std::string_view::npos) {
                lo = parse_value(f, base);
                if (lo < 0) {
                    malformed();
                }
                kind = has_step ? Kind::kOpen : Kind::kSingle;
                hi = has_step ? f.hi : lo;
            } else {
                const std::string_view a = base.substr(0, dash);
                const std::string_view b = base.substr(dash + 1);
                if (a.empty() || b.empty() || b.find('-') != std::string_view::npos) {
                    malformed();
                }
                lo = parse_value(f, a);
                hi = parse_value(f, b);
                if (lo > hi) {
                    if (f.id == Field::kDow && hi == 0) {
                        hi = 7;  // "fri-sun", "5-0": to Sunday at the end of the week
                    } else {
                        fail(f, elem,
                             "is a reversed range (" + std::to_string(lo) + " is after " +
                                 std::to_string(hi) + ")");
                    }
                }
                kind = Kind::kRange;
            }
        }

        for (int64_t v = lo; v <= hi; v += step) {
            out.bits |= std::uint64_t{1} << (f.id == Field::kDow && v == 7 ? 0 : v);
        }

        // The normalized element; cronie must read it the same way (see the header).
        const std::string s_lo = std::to_string(lo);
        const std::string s_hi = std::to_string(hi);
        const std::string s_step = std::to_string(step);
        std::string norm;
        switch (kind) {
            case Kind::kStar:
                if (step == 1) {
                    norm = "*";
                } else if (f.id != Field::kMinute && f.id != Field::kHour && step > hi - lo) {
                    norm = s_lo;  // only the first value
                } else if (f.id == Field::kDom) {
                    norm = "1-31/" + s_step;
                } else if (f.id == Field::kDow) {
                    norm = "0-6/" + s_step;  // same days as 0-7/S since 0 is always included
                } else {
                    norm = "*/" + s_step;
                }
                break;
            case Kind::kSingle:
                norm = f.id == Field::kDow && lo == 7 ? "0" : s_lo;
                break;
            case Kind::kOpen:
            case Kind::kRange:
                if (lo == hi || lo + int64_t{step} > hi) {  // a single value
                    norm = f.id == Field::kDow && lo == 7 ? "0" : s_lo;
                } else {
                    norm = s_lo + "-" + s_hi;
                    if (step != 1) {
                        norm += "/" + s_step;
                    }
                }
                break;
        }
        parts.push_back(std::move(norm));

        if (comma == std::string_view::npos) {
            break;
        }
        pos = comma + 1;
    }

    std::uint64_t all = 0;
    for (int v = f.lo; v <= (f.id == Field::kDow ? 6 : f.hi); ++v) {
        all |= std::uint64_t{1} << v;
    }
    const bool star_led = token.front() == '*';
    const bool keeps_class = f.id == Field::kMinute || f.id == Field::kHour;
    if (out.bits == all && (star_led || !keeps_class)) {
        out.text = "*";
    } else {
        for (std::size_t i = 0; i < parts.size(); ++i) {
            out.text += (i ? "," : "") + parts[i];
        }
    }
    return out;
}

std::vector<std::string_view> split_blanks(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_blank(s[i])) {
            ++i;
        }
        std::size_t j = i;
        while (j < s.size() && !is_blank(s[j])) {
            ++j;
        }
        if (j > i) {
            out.push_back(s.substr(i, j - i));
        }
        i = j;
    }
    return out;
}

struct Macro {
    std::string_view name;
    std::string_view expansion;  // empty for @reboot
};

constexpr std::array<Macro, 8> kMacros = {{
    {"reboot", ""},
    {"yearly", "0 0 1 1 *"},
    {"annually", "0 0 1 1 *"},
    {"monthly", "0 0 1 * *"},
    {"weekly", "0 0 * * 0"},
    {"daily", "0 0 * * *"},
    {"midnight", "0 0 * * *"},
    {"hourly", "0 * * * *"},
}};

}  // namespace

CronSpec CronSpec::parse(std::string_view text) {
    const std::vector<std::string_view> tokens = split_blanks(text);
    if (tokens.empty()) {
        throw CronError("cron: empty expression");
    }
    if (tokens[0].front() == '@') {
        if (tokens.size() != 1) {
            throw CronError("cron: macro '" + std::string(tokens[0]) + "' must stand alone, got '" +
                            std::string(text) + "'");
        }
        const std::string_view name = tokens[0].substr(1);
        for (const Macro& m : kMacros) {
            if (iequals(name, m.name)) {
                if (m.expansion.empty()) {
                    CronSpec spec;
                    spec.reboot_ = true;
                    spec.normalized_ = "@reboot";
                    return spec;
                }
                return parse(m.expansion);
            }
        }
        throw CronError("cron: unknown macro '" + std::string(tokens[0]) +
                        "' (expected @reboot, @yearly, @annually, @monthly, @weekly, @daily, "
                        "@midnight or @hourly)");
    }
    if (tokens.size() != kFields.size()) {
        throw CronError(
            "cron: expected 5 fields (minute hour day-of-month month day-of-week), got " +
            std::to_string(tokens.size()) + " in '" + std::string(text) + "'");
    }

    CronSpec spec;
    std::array<ParsedField, 5> fields;
    for (std::size_t i = 0; i < kFields.size(); ++i) {
        fields[i] = parse_field(kFields[i], tokens[i]);
        spec.normalized_ += (i ? " " : "") + fields[i].text;
    }
    spec.minutes_ = fields[0].bits;
    spec.hours_ = static_cast<std::uint32_t>(fields[1].bits);
    spec.days_ = static_cast<std::uint32_t>(fields[2].bits);
    spec.months_ = static_cast<std::uint32_t>(fields[3].bits);
    spec.weekdays_ = static_cast<std::uint32_t>(fields[4].bits);
    spec.wildcard_ = tokens[0].front() == '*' || tokens[1].front() == '*';
    spec.dom_restricted_ = spec.days_ != 0xFFFFFFFEu;
    spec.dow_restricted_ = spec.weekdays_ != 0x7Fu;

    for (int first = 0; first < 7; ++first) {
        std::uint32_t mask = 0;
        for (int d = 1; d <= 31; ++d) {
            if (spec.weekdays_ >> ((first + d - 1) % 7) & 1u) {
                mask |= 1u << d;
            }
        }
        spec.dow_by_first_[first] = mask;
    }

    // Only a day-of-month list on its own can be impossible: a restricted weekday always matches
    // within a week.
    if (!spec.dow_restricted_) {
        bool possible = false;
        for (int m = 1; m <= 12 && !possible; ++m) {
            const int max_day = m == 2 ? 29 : days_in_month(2001, m);
            const std::uint32_t valid =
                static_cast<std::uint32_t>((std::uint64_t{1} << (max_day + 1)) - 2);
            possible = (spec.months_ >> m & 1u) && (spec.days_ & valid) != 0;
        }
        spec.never_ = !possible;
    }
    return spec;
}

std::uint32_t CronSpec::day_mask(int year, int month) const {
    const int dim = days_in_month(year, month);
    const auto valid = static_cast<std::uint32_t>((std::uint64_t{1} << (dim + 1)) - 2);
    const std::uint32_t by_dow =
        dow_by_first_[static_cast<std::size_t>(weekday_from_days(days_from_civil(year, month, 1)))];
    const std::uint32_t days =
        dom_restricted_ && dow_restricted_ ? (days_ | by_dow) : (days_ & by_dow);
    return days & valid;
}

// The first local wall-clock minute >= `from` (minutes since 1970-01-01 00:00 local) that the
// fields match, field by field from the month down; nullopt past `limit`.
std::optional<int64_t> CronSpec::next_local_minute(int64_t from, int64_t limit) const {
    const int64_t day0 = floor_div(from, kMinutesPerDay);
    const int rem = static_cast<int>(from - day0 * kMinutesPerDay);
    const Civil c = civil_from_days(day0);
    const int64_t limit_year = civil_from_days(floor_div(limit, kMinutesPerDay)).year;
    int64_t year = c.year;
    int month = c.month;
    int day = c.day;
    int hour = rem / 60;
    int minute = rem % 60;

    while (year <= limit_year) {
        if (!(months_ >> month & 1u)) {
            const std::uint32_t later = months_ & (~0u << (month + 1));
            if (later != 0) {
                month = std::countr_zero(later);
            } else {
                ++year;
                month = std::countr_zero(months_);
            }
            day = 1;
            hour = 0;
            minute = 0;
            continue;
        }
        const std::uint32_t days =
            day > 31 ? 0u : day_mask(static_cast<int>(year), month) & (~0u << day);
        if (days == 0) {
            if (++month > 12) {
                month = 1;
                ++year;
            }
            day = 1;
            hour = 0;
            minute = 0;
            continue;
        }
        if (const int d = std::countr_zero(days); d != day) {
            day = d;
            hour = 0;
            minute = 0;
        }
        const std::uint32_t hours = hours_ & (~0u << hour);
        if (hours == 0) {
            ++day;
            hour = 0;
            minute = 0;
            continue;
        }
        if (const int h = std::countr_zero(hours); h != hour) {
            hour = h;
            minute = 0;
        }
        const std::uint64_t minutes = minutes_ & (~std::uint64_t{0} << minute);
        if (minutes == 0) {
            minute = 0;
            if (++hour == 24) {
                hour = 0;
                ++day;
            }
            continue;
        }
        minute = std::countr_zero(minutes);
        const int64_t result =
            days_from_civil(year, month, day) * kMinutesPerDay + hour * 60 + minute;
        if (result > limit) {
            return std::nullopt;
        }
        return result;
    }
    return std::nullopt;
}

namespace {

struct MinuteRun {
    std::optional<int64_t> run;  // the first run after `base` for this local minute
    int64_t resume;              // the next local minute worth looking at
};

// When the job whose fields match local minute `local_min` runs, if after `base` (seconds).
MinuteRun run_instant(int64_t local_min, int64_t base, bool wildcard,
                      const mlk::util::TimeZone& zone) {
    const int64_t local = local_min * 60;
    const std::vector<std::chrono::sys_seconds> at =
        zone.from_local(std::chrono::local_seconds{std::chrono::seconds{local}});
    if (!at.empty()) {
        // In a repeated hour fixed-time jobs run in the first pass only (cronie: "running the same
        // job twice is avoided"); wildcard jobs, and everything after a large jump, run in both.
        const int64_t first = at.front().time_since_epoch().count();
        const int64_t last = at.back().time_since_epoch().count();
        const bool once = !wildcard && last - first <= kLargeJumpSeconds;
        for (const auto& t : at) {
            const int64_t s = t.time_since_epoch().count();
            if (s > base) {
                return {s, local_min + 1};
            }
            if (once) {
                break;
            }
        }
        return {std::nullopt, local_min + 1};
    }

    // A gap: find the offsets on either side and the instant of the change.
    const auto offset_at = [&](int64_t s) {
        return zone.at(std::chrono::sys_seconds{std::chrono::seconds{s}}).utc_offset.count();
    };
    const int64_t before = offset_at(local - kOffsetReachSeconds);
    const int64_t after = offset_at(local + kOffsetReachSeconds);
    if (after <= before) {
        return {std::nullopt, local_min + 1};  // not a simple gap; no run rather than a guess
    }
    int64_t lo = local - after;   // still on the old offset
    int64_t hi = local - before;  // already on the new one
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        (offset_at(mid) == before ? lo : hi) = mid;
    }
    const int64_t jump = after - before;
    const bool catch_up = jump <= kSmallJumpSeconds || (!wildcard && jump < kLargeJumpSeconds);
    const int64_t gap_end = floor_div(hi + after + 59, 60);  // first local minute after the gap
    if (!catch_up) {
        return {std::nullopt, std::max(gap_end, local_min + 1)};
    }
    const int64_t run = floor_div(hi + 59, 60) * 60;  // the first cron wake-up after the change
    return {run > base ? std::optional<int64_t>(run) : std::nullopt, local_min + 1};
}

}  // namespace

std::optional<std::chrono::sys_seconds> CronSpec::next_after(
    std::chrono::sys_seconds base, const mlk::util::TimeZone& zone) const {
    if (reboot_ || never_) {
        return std::nullopt;
    }
    const int64_t b = base.time_since_epoch().count();
    if (b > kMaxBaseSeconds || b < -kMaxBaseSeconds) {
        return std::nullopt;
    }
    const auto offset_at = [&](int64_t s) {
        return zone.at(std::chrono::sys_seconds{std::chrono::seconds{s}}).utc_offset.count();
    };
    const int64_t off0 = offset_at(b);
    const int64_t local0 = b + off0;
    const int64_t start = floor_div(local0, 60) + 1;
    const int64_t limit = start + kSearchMinutes;

    // Runs come in local-time order, so the first matching minute after local0 that yields a run
    // is the answer...
    std::optional<int64_t> best;
    for (int64_t from = start;;) {
        const std::optional<int64_t> m = next_local_minute(from, limit);
        if (!m) {
            break;
        }
        const MinuteRun r = run_instant(*m, b, wildcard_, zone);
        if ((best = r.run)) {
            break;
        }
        from = r.resume;
    }
    // ...unless the clock goes back soon after `base` and the job runs in the second pass too
    // (wildcard jobs, large jumps): then local times at or before local0 come round again, after
    // the change. They beat `best` only if `best` itself is past the change.
    const int64_t later = offset_at(b + kFoldLookaheadSeconds);
    const int64_t shift = off0 - later;
    if (shift > 0 && (wildcard_ || shift > kLargeJumpSeconds) && offset_at(b + shift) < off0 &&
        (!best || offset_at(*best) < off0)) {
        int64_t lo = b;          // before the change
        int64_t hi = b + shift;  // after it
        while (hi - lo > 1) {
            const int64_t mid = lo + (hi - lo) / 2;
            (offset_at(mid) == off0 ? lo : hi) = mid;
        }
        // The repeated local times from the change up to local0; the first that runs is the
        // earliest, since their first pass is over and second passes come in local-time order.
        const int64_t repeat_from = floor_div(hi + offset_at(hi) + 59, 60);
        for (int64_t from = repeat_from;;) {
            const std::optional<int64_t> m = next_local_minute(from, start - 1);
            if (!m) {
                break;
            }
            const MinuteRun r = run_instant(*m, b, wildcard_, zone);
            if (r.run) {
                best = best ? std::min(*best, *r.run) : *r.run;
                break;
            }
            from = r.resume;
        }
    }
    if (!best) {
        return std::nullopt;
    }
    return std::chrono::sys_seconds{std::chrono::seconds{*best}};
}

}  // namespace mlk::sched
