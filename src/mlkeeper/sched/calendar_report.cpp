#include "mlkeeper/sched/calendar_report.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <system_error>
#include <utility>

#include "mlkeeper/sched/calendar_spec.hpp"
#include "mlkeeper/sched/civil_time.hpp"

namespace mlk::sched {

namespace {

using U64 = std::uint64_t;

constexpr U64 kUsecInf = UINT64_MAX;  // systemd's USEC_INFINITY
constexpr U64 kUsecPerMsec = 1000ULL;
constexpr U64 kUsecPerSec = 1000000ULL;
constexpr U64 kUsecPerMinute = 60ULL * kUsecPerSec;
constexpr U64 kUsecPerHour = 60ULL * kUsecPerMinute;
constexpr U64 kUsecPerDay = 24ULL * kUsecPerHour;
constexpr U64 kUsecPerWeek = 7ULL * kUsecPerDay;
constexpr U64 kUsecPerMonth = 2629800ULL * kUsecPerSec;  // 30.44 days
constexpr U64 kUsecPerYear = 31557600ULL * kUsecPerSec;  // 365.25 days
// systemd's USEC_TIMESTAMP_FORMATTABLE_MAX: 9999-12-30 23:59:59 UTC.
constexpr U64 kTimestampFormattableMax = 253402214399000000ULL;

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool is_space(char c) {  // isspace() in the C locale
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool is_whitespace(char c) {  // systemd's WHITESPACE
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equal_no_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii_lower(x) == ascii_lower(y);
           });
}

// Where `suffix` starts in `s` (ASCII case-insensitive), or npos.
std::size_t ends_with_no_case(std::string_view s, std::string_view suffix) {
    if (s.size() < suffix.size() || !equal_no_case(s.substr(s.size() - suffix.size()), suffix)) {
        return std::string_view::npos;
    }
    return s.size() - suffix.size();
}

Usec to_usec(U64 v) {
    return v > static_cast<U64>(INT64_MAX) ? kUsecInfinity : Usec{static_cast<std::int64_t>(v)};
}

// Usec (kUsecInfinity and negatives included) as systemd's unsigned usec_t.
U64 from_usec(Usec v) {
    if (v == kUsecInfinity) {
        return kUsecInf;
    }
    return static_cast<U64>(v.count());  // negatives wrap, as they would in C
}

// ---------------------------------------------------------------------------------------------
// parse_sec()

// strtoll(p, &end, 10) as glibc: white space, a sign, digits; ERANGE on overflow. With no digits
// *end = p and 0 is returned.
int parse_ll(const char* p, const char** end, long long* out) {
    const char* s = p;
    while (is_space(*s)) {
        ++s;
    }
    bool negative = false;
    if (*s == '+' || *s == '-') {
        negative = *s == '-';
        ++s;
    }
    if (!is_digit(*s)) {
        *end = p;
        *out = 0;
        return 0;
    }
    U64 value = 0;
    bool overflow = false;
    const U64 limit = negative ? static_cast<U64>(LLONG_MAX) + 1 : static_cast<U64>(LLONG_MAX);
    while (is_digit(*s)) {
        const U64 digit = static_cast<U64>(*s - '0');
        if (value > (limit - digit) / 10) {
            overflow = true;
        } else {
            value = value * 10 + digit;
        }
        ++s;
    }
    *end = s;
    if (overflow) {
        return -ERANGE;
    }
    *out = negative ? static_cast<long long>(0 - value) : static_cast<long long>(value);
    return 0;
}

const char* extract_multiplier(const char* p, U64* multiplier) {
    static constexpr struct {
        std::string_view suffix;
        U64 usec;
    } kTable[] = {
        {"seconds", kUsecPerSec},
        {"second", kUsecPerSec},
        {"sec", kUsecPerSec},
        {"s", kUsecPerSec},
        {"minutes", kUsecPerMinute},
        {"minute", kUsecPerMinute},
        {"min", kUsecPerMinute},
        {"months", kUsecPerMonth},
        {"month", kUsecPerMonth},
        {"M", kUsecPerMonth},
        {"msec", kUsecPerMsec},
        {"ms", kUsecPerMsec},
        {"m", kUsecPerMinute},
        {"hours", kUsecPerHour},
        {"hour", kUsecPerHour},
        {"hr", kUsecPerHour},
        {"h", kUsecPerHour},
        {"days", kUsecPerDay},
        {"day", kUsecPerDay},
        {"d", kUsecPerDay},
        {"weeks", kUsecPerWeek},
        {"week", kUsecPerWeek},
        {"w", kUsecPerWeek},
        {"years", kUsecPerYear},
        {"year", kUsecPerYear},
        {"y", kUsecPerYear},
        {"usec", 1},
        {"us", 1},
        {"\xce\xbcs", 1} /* U+03BC */,
        {"\xc2\xb5s", 1} /* U+00B5 */,
    };
    for (const auto& entry : kTable) {
        if (std::strncmp(p, entry.suffix.data(), entry.suffix.size()) == 0) {
            *multiplier = entry.usec;
            return p + entry.suffix.size();
        }
    }
    return p;
}

// systemd's parse_time(t, &usec, USEC_PER_SEC): 0 or -EINVAL/-ERANGE.
int parse_sec(const char* t, U64* ret) {
    const char* p = t;
    while (is_whitespace(*p)) {
        ++p;
    }
    if (std::strncmp(p, "infinity", 8) == 0) {
        const char* s = p + 8;
        while (is_whitespace(*s)) {
            ++s;
        }
        if (*s != '\0') {
            return -EINVAL;
        }
        *ret = kUsecInf;
        return 0;
    }
    U64 r = 0;
    bool something = false;
    for (;;) {
        U64 multiplier = kUsecPerSec;
        while (is_whitespace(*p)) {
            ++p;
        }
        if (*p == '\0') {
            if (!something) {
                return -EINVAL;
            }
            break;
        }
        if (*p == '-') {  // no "-0"
            return -ERANGE;
        }
        const char* e = nullptr;
        long long l = 0;
        if (int err = parse_ll(p, &e, &l); err < 0) {
            return err;
        }
        if (l < 0) {
            return -ERANGE;
        }
        if (*e == '.') {
            p = e + 1;
            while (is_digit(*p)) {
                ++p;
            }
        } else if (e == p) {
            return -EINVAL;
        } else {
            p = e;
        }
        const char* after_ws = p;
        while (is_whitespace(*after_ws)) {
            ++after_ws;
        }
        const char* s = extract_multiplier(after_ws, &multiplier);
        if (s == p && *s != '\0') {  // "12.34.56" is not a time span; "12.34 .56" is
            return -EINVAL;
        }
        p = s;
        if (static_cast<U64>(l) >= kUsecInf / multiplier) {
            return -ERANGE;
        }
        U64 k = static_cast<U64>(l) * multiplier;
        if (k >= kUsecInf - r) {
            return -ERANGE;
        }
        r += k;
        something = true;
        if (*e == '.') {
            U64 m = multiplier / 10;
            const char* b = e + 1;
            for (; is_digit(*b); ++b, m /= 10) {
                k = static_cast<U64>(*b - '0') * m;
                if (k >= kUsecInf - r) {
                    return -ERANGE;
                }
                r += k;
            }
            if (b == e + 1) {  // "3.sec", "0.-0"
                return -EINVAL;
            }
        }
    }
    *ret = r;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// parse_timestamp()

// The subset of glibc's strptime() systemd's formats use: %y %Y %m %d %H %M %S %b, white space
// (any amount, also none) and literal characters. Returns the end of the match or nullptr.
const char* strptime_like(const char* rp, const char* fmt, Tm& tm) {
    bool want_xday = false;
    while (*fmt != '\0') {
        if (is_space(*fmt)) {
            while (is_space(*rp)) {
                ++rp;
            }
            ++fmt;
            continue;
        }
        if (*fmt != '%') {
            if (*fmt++ != *rp++) {
                return nullptr;
            }
            continue;
        }
        ++fmt;
        int val = 0;
        // glibc's get_number(): skips white space, reads at most n digits, and stops early
        // when another digit would exceed `to`.
        auto get_number = [&](int from, int to, int n) {
            while (is_space(*rp)) {
                ++rp;
            }
            if (!is_digit(*rp)) {
                return false;
            }
            val = 0;
            do {
                val = val * 10 + (*rp++ - '0');
            } while (--n > 0 && val * 10 <= to && is_digit(*rp));
            return val >= from && val <= to;
        };
        switch (*fmt++) {
            case 'y':
                if (!get_number(0, 99, 2)) {
                    return nullptr;
                }
                tm.year = val >= 69 ? val : val + 100;
                want_xday = true;
                break;
            case 'Y':
                if (!get_number(0, 9999, 4)) {
                    return nullptr;
                }
                tm.year = val - 1900;
                want_xday = true;
                break;
            case 'm':
                if (!get_number(1, 12, 2)) {
                    return nullptr;
                }
                tm.mon = val - 1;
                want_xday = true;
                break;
            case 'd':
                if (!get_number(1, 31, 2)) {
                    return nullptr;
                }
                tm.mday = val;
                want_xday = true;
                break;
            case 'H':
                if (!get_number(0, 23, 2)) {
                    return nullptr;
                }
                tm.hour = val;
                break;
            case 'M':
                if (!get_number(0, 59, 2)) {
                    return nullptr;
                }
                tm.min = val;
                break;
            case 'S':
                if (!get_number(0, 61, 2)) {
                    return nullptr;
                }
                tm.sec = val;
                break;
            case 'b': {
                static constexpr std::string_view kFull[] = {
                    "January", "February", "March",     "April",   "May",      "June",
                    "July",    "August",   "September", "October", "November", "December"};
                std::size_t best_len = 0;
                int best = -1;
                const std::size_t avail = std::strlen(rp);
                for (int m = 0; m < 12; ++m) {
                    for (std::string_view name : {kFull[m], kFull[m].substr(0, 3)}) {
                        if (name.size() <= avail && name.size() > best_len &&
                            equal_no_case(std::string_view(rp, name.size()), name)) {
                            best_len = name.size();
                            best = m;
                        }
                    }
                }
                if (best < 0) {
                    return nullptr;
                }
                rp += best_len;
                tm.mon = best;
                want_xday = true;
                break;
            }
            default:
                return nullptr;
        }
    }
    if (want_xday && tm.year >= -1900) {
        const std::int64_t days =
            days_from_civil(std::int64_t{tm.year} + 1900, tm.mon + 1, 1) + tm.mday - 1;
        tm.wday = static_cast<int>(((days + 4) % 7 + 7) % 7);
    }
    return rp;
}

// systemd 252's parse_timestamp_impl(). `zone` is the zone local times are read in (the local
// zone, or the suffix zone when with_tz).
int parse_timestamp_impl(std::string t, bool with_tz, const util::TimeZone& zone, U64 now,
                         U64* out) {
    static constexpr struct {
        std::string_view name;
        int nr;
    } kDays[] = {{"Sunday", 0}, {"Sun", 0},       {"Monday", 1},   {"Mon", 1},      {"Tuesday", 2},
                 {"Tue", 2},    {"Wednesday", 3}, {"Wed", 3},      {"Thursday", 4}, {"Thu", 4},
                 {"Friday", 5}, {"Fri", 5},       {"Saturday", 6}, {"Sat", 6}};

    if (!t.empty() && t[0] == '@' && !with_tz) {
        return parse_sec(t.c_str() + 1, out);
    }
    U64 ret = now;
    U64 plus = 0;
    U64 minus = 0;
    bool utc = false;
    int dst = -1;
    U64 x_usec = 0;

    auto finish = [&]() {
        if (ret + plus < ret) {
            return -EINVAL;
        }
        ret += plus;
        if (ret > kTimestampFormattableMax) {
            return -EINVAL;
        }
        if (ret < minus) {
            return -EINVAL;
        }
        *out = ret - minus;
        return 0;
    };

    if (!with_tz) {
        if (t == "now") {
            return finish();
        }
        if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
            if (int r = parse_sec(t.c_str() + 1, t[0] == '+' ? &plus : &minus); r < 0) {
                return r;
            }
            return finish();
        }
        for (const auto& [suffix, target] : {std::pair<std::string_view, U64*>{" ago", &minus},
                                             std::pair<std::string_view, U64*>{" left", &plus}}) {
            if (t.size() >= suffix.size() && t.compare(t.size() - suffix.size(), suffix.size(),
                                                       suffix.data(), suffix.size()) == 0) {
                const std::string head = t.substr(0, t.size() - suffix.size());
                if (int r = parse_sec(head.c_str(), target); r < 0) {
                    return r;
                }
                return finish();
            }
        }
        if (const std::size_t u = ends_with_no_case(t, " UTC"); u != std::string::npos) {
            utc = true;
            t.resize(u);
        } else {
            const ZoneNames names = zone_names(zone);
            for (int j = 0; j <= 1; ++j) {
                const std::string& name = j == 0 ? names.standard : names.daylight;
                if (name.empty()) {
                    continue;
                }
                const std::size_t e = ends_with_no_case(t, name);
                if (e == std::string::npos || e == 0 || t[e - 1] != ' ') {
                    continue;
                }
                t.resize(e - 1);
                dst = j;
                break;
            }
        }
    }

    const ZonePtr tz = utc ? nullptr : &zone;
    Tm tm = to_tm(static_cast<std::int64_t>(ret / kUsecPerSec), tz);
    tm.isdst = dst;

    bool matched = false;
    int weekday = -1;
    if (t == "today" || t == "yesterday" || t == "tomorrow") {
        tm.mday += t == "today" ? 0 : (t == "yesterday" ? -1 : 1);
        tm.sec = tm.min = tm.hour = 0;
        matched = true;
    }
    const char* s = t.c_str();
    if (!matched) {
        for (const auto& day : kDays) {
            if (t.size() > day.name.size() && t[day.name.size()] == ' ' &&
                equal_no_case(std::string_view(t).substr(0, day.name.size()), day.name)) {
                weekday = day.nr;
                s += day.name.size() + 1;
                break;
            }
        }
        // The formats in the order systemd 252 tries them; `frac` marks those that may end in
        // ".fraction", `clear` what a format without seconds (or time) sets to zero.
        static constexpr struct {
            const char* fmt;
            bool frac;
            int clear;  // 0: nothing, 1: seconds, 3: hours, minutes and seconds
        } kFormats[] = {
            {"%y-%m-%d %H:%M:%S", true, 0},
            {"%Y-%m-%d %H:%M:%S", true, 0},
            {"%b %d %H:%M:%S", true, 0},
            {"%y-%m-%d %H:%M", false, 1},
            {"%Y-%m-%d %H:%M", false, 1},
            {"%y-%m-%d", false, 3},
            {"%Y-%m-%d", false, 3},
            {"%H:%M:%S", true, 0},
            {"%H:%M", false, 1},
        };
        const Tm copy = tm;
        for (const auto& f : kFormats) {
            tm = copy;
            const char* k = strptime_like(s, f.fmt, tm);
            if (k == nullptr) {
                continue;
            }
            if (f.frac && *k == '.') {
                ++k;
                unsigned add = 0;
                if (parse_fractional_part(&k, 6, &add) < 0 || *k != '\0') {
                    return -EINVAL;
                }
                x_usec = add;
                matched = true;
                break;
            }
            if (*k == '\0') {
                if (f.clear >= 1) {
                    tm.sec = 0;
                }
                if (f.clear >= 3) {
                    tm.min = tm.hour = 0;
                }
                matched = true;
                break;
            }
        }
        if (!matched) {
            return -EINVAL;
        }
    }

    if (weekday >= 0 && tm.wday != weekday) {
        return -EINVAL;
    }
    MktimeState state;  // a fresh process: glibc's offset guess starts at 0
    const std::int64_t x = make_time(tm, tz, state);
    if (x < 0) {
        return -EINVAL;
    }
    ret = static_cast<U64>(x) * kUsecPerSec + x_usec;
    if (ret > kTimestampFormattableMax) {
        return -EINVAL;
    }
    return finish();
}

enum class ZoneSuffix { kAccept, kReject };

// systemd's parse_timestamp(): the zone suffix, then the parse proper.
int parse_timestamp_full(std::string_view text, U64 now, const util::TimeZone& local,
                         ZoneSuffix zones, U64* out) {
    std::string t(text.substr(0, text.find('\0')));
    const std::size_t last_space = t.rfind(' ');
    std::optional<util::TimeZone> suffix_zone;
    if (last_space != std::string::npos) {
        suffix_zone = load_systemd_timezone(std::string_view(t).substr(last_space + 1));
    }
    if (!suffix_zone || ends_with_no_case(t, " UTC") != std::string::npos) {
        return parse_timestamp_impl(std::move(t), false, local, now, out);
    }
    if (zones == ZoneSuffix::kReject) {
        return -EINVAL;  // what systemd 252 does with any IANA suffix
    }
    // Read the rest in that zone; its own abbreviation ("CET") selects standard or DST time.
    const std::string tz_name = t.substr(last_space + 1);
    const ZoneNames names = zone_names(*suffix_zone);
    if (tz_name == names.standard || tz_name == names.daylight) {
        return parse_timestamp_impl(std::move(t), false, *suffix_zone, now, out);
    }
    t.resize(last_space);
    return parse_timestamp_impl(std::move(t), true, *suffix_zone, now, out);
}

// ---------------------------------------------------------------------------------------------
// Formatting

std::string format_usec_fmt(const char* fmt, U64 a, const char* unit_a, U64 b, const char* unit_b,
                            const char* suffix) {
    char buf[128];
    std::snprintf(buf, sizeof buf, fmt, static_cast<unsigned long long>(a), unit_a,
                  static_cast<unsigned long long>(b), unit_b, suffix);
    return buf;
}

std::string format_one(const char* fmt, U64 a, const char* suffix) {
    char buf[128];
    std::snprintf(buf, sizeof buf, fmt, static_cast<unsigned long long>(a), suffix);
    return buf;
}

}  // namespace

TimestampError::TimestampError(std::string what_kind, std::string text, int code)
    : std::runtime_error("Failed to parse " + what_kind + " '" + text +
                         "': " + std::generic_category().message(code)),
      text_(std::move(text)),
      code_(code) {}

Usec parse_timespan(std::string_view text) {
    const std::string t(text.substr(0, text.find('\0')));
    U64 v = 0;
    if (int r = parse_sec(t.c_str(), &v); r < 0) {
        throw TimestampError("time span", std::string(text), -r);
    }
    return to_usec(v);
}

Usec parse_timestamp(std::string_view text, Usec now, const util::TimeZone& local) {
    U64 v = 0;
    if (int r = parse_timestamp_full(text, from_usec(now), local, ZoneSuffix::kAccept, &v); r < 0) {
        throw TimestampError("timestamp", std::string(text), -r);
    }
    return to_usec(v);
}

std::string format_timestamp(Usec t, const util::TimeZone& zone, TimestampZone style) {
    static constexpr const char* kWeekdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    const bool utc = style == TimestampZone::kUtc;
    const U64 u = from_usec(t);
    if (u == 0 || u == kUsecInf) {
        return "-";  // systemd's tables show unset timestamps so
    }
    if (u > kTimestampFormattableMax) {
        return utc ? "--- XXXX-XX-XX XX:XX:XX UTC" : "--- XXXX-XX-XX XX:XX:XX";
    }
    const std::int64_t sec = static_cast<std::int64_t>(u / kUsecPerSec);
    const Tm tm = to_tm(sec, utc ? nullptr : &zone);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s %d-%02d-%02d %02d:%02d:%02d", kWeekdays[tm.wday],
                  tm.year + 1900, tm.mon + 1, tm.mday, tm.hour, tm.min, tm.sec);
    std::string out = buf;
    if (utc) {
        out += " UTC";
    } else {
        const std::string abbrev =
            zone.at(std::chrono::sys_seconds{std::chrono::seconds{sec}}).abbrev;
        // systemd's buffer holds 38 bytes; a longer zone name is left out rather than cut.
        if (!abbrev.empty() && out.size() + 1 + abbrev.size() + 1 <= 38) {
            out += ' ';
            out += abbrev;
        }
    }
    return out;
}

std::string format_timestamp_relative(Usec t, Usec now) {
    const U64 tu = from_usec(t);
    if (tu == 0 || tu == kUsecInf) {
        return "-";
    }
    const U64 n = from_usec(now);
    U64 d = 0;
    const char* s = nullptr;
    if (n > tu) {
        d = n - tu;
        s = " ago";
    } else {
        d = tu - n;
        s = " left";
    }
    if (d >= kUsecPerYear) {
        const U64 years = d / kUsecPerYear;
        const U64 months = (d % kUsecPerYear) / kUsecPerMonth;
        return format_usec_fmt("%llu %s %llu %s%s", years, years == 1 ? "year" : "years", months,
                               months == 1 ? "month" : "months", s);
    }
    if (d >= kUsecPerMonth) {
        const U64 months = d / kUsecPerMonth;
        const U64 days = (d % kUsecPerMonth) / kUsecPerDay;
        return format_usec_fmt("%llu %s %llu %s%s", months, months == 1 ? "month" : "months", days,
                               days == 1 ? "day" : "days", s);
    }
    if (d >= kUsecPerWeek) {
        const U64 weeks = d / kUsecPerWeek;
        const U64 days = (d % kUsecPerWeek) / kUsecPerDay;
        return format_usec_fmt("%llu %s %llu %s%s", weeks, weeks == 1 ? "week" : "weeks", days,
                               days == 1 ? "day" : "days", s);
    }
    if (d >= 2 * kUsecPerDay) {
        return format_one("%llu days%s", d / kUsecPerDay, s);
    }
    if (d >= 25 * kUsecPerHour) {
        return format_one("1 day %lluh%s", (d - kUsecPerDay) / kUsecPerHour, s);
    }
    if (d >= 6 * kUsecPerHour) {
        return format_one("%lluh%s", d / kUsecPerHour, s);
    }
    if (d >= kUsecPerHour) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "%lluh %llumin%s",
                      static_cast<unsigned long long>(d / kUsecPerHour),
                      static_cast<unsigned long long>((d % kUsecPerHour) / kUsecPerMinute), s);
        return buf;
    }
    if (d >= 5 * kUsecPerMinute) {
        return format_one("%llumin%s", d / kUsecPerMinute, s);
    }
    if (d >= kUsecPerMinute) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "%llumin %llus%s",
                      static_cast<unsigned long long>(d / kUsecPerMinute),
                      static_cast<unsigned long long>((d % kUsecPerMinute) / kUsecPerSec), s);
        return buf;
    }
    if (d >= kUsecPerSec) {
        return format_one("%llus%s", d / kUsecPerSec, s);
    }
    if (d >= kUsecPerMsec) {
        return format_one("%llums%s", d / kUsecPerMsec, s);
    }
    if (d > 0) {
        return format_one("%lluus%s", d, s);
    }
    return "now";
}

bool is_utc_like(const util::TimeZone& zone) {
    return is_utc_zone(zone);
}

CalendarReport calendar_report(const std::vector<std::string>& expressions,
                               const CalendarReportOptions& options) {
    CalendarReport report;
    const Usec base = options.base && *options.base != kUsecInfinity ? *options.base : options.now;
    const bool show_utc = !is_utc_zone(options.zone);

    for (std::size_t idx = 0; idx < expressions.size(); ++idx) {
        const std::string& expr = expressions[idx];
        std::vector<std::pair<std::string, std::string>> rows;
        bool failed = false;
        std::optional<CalendarSpec> spec;
        try {
            spec = CalendarSpec::parse(expr, options.zone);
            const std::string normalized = spec->normalized();
            if (normalized != expr) {
                rows.emplace_back("Original form", expr);
            }
            rows.emplace_back("Normalized form", normalized);
            Usec n = base;
            for (unsigned i = 0; i < options.iterations; ++i) {
                const std::optional<Usec> next = spec->next_after(n);
                if (!next) {
                    if (i == 0) {
                        rows.emplace_back("Next elapse", "never");
                    }
                    break;
                }
                rows.emplace_back(
                    i == 0 ? std::string("Next elapse") : "Iter. #" + std::to_string(i + 1),
                    format_timestamp(*next, options.zone));
                if (show_utc) {
                    rows.emplace_back("(in UTC)",
                                      format_timestamp(*next, options.zone, TimestampZone::kUtc));
                }
                rows.emplace_back("From now", format_timestamp_relative(*next, options.now));
                n = *next;
            }
        } catch (const CalendarError& e) {
            failed = true;
            report.exit_code = 1;
            // systemd logs its search giving up before the error itself, except where it
            // searched in a child process (zone suffix), whose log goes nowhere.
            if (e.code() == EDEADLK && spec && spec->timezone_name().empty()) {
                report.err += "Infinite loop in calendar calculation: " + spec->normalized() + "\n";
            }
            report.err += e.what();
            report.err += '\n';
            if (options.hints && e.stage() == CalendarError::Stage::kParse) {
                U64 ignored = 0;
                if (parse_timestamp_full(expr, from_usec(options.now), options.zone,
                                         ZoneSuffix::kReject, &ignored) >= 0) {
                    report.err +=
                        "Hint: this expression is a valid timestamp. Use "
                        "'systemd-analyze timestamp \"" +
                        expr + "\"' instead?\n";
                }
                const std::string t(expr.substr(0, expr.find('\0')));
                if (parse_sec(t.c_str(), &ignored) >= 0) {
                    report.err +=
                        "Hint: this expression is a valid timespan. Use "
                        "'systemd-analyze timespan \"" +
                        expr + "\"' instead?\n";
                }
            }
        }
        if (!failed) {
            // systemd's vertical table: labels right-aligned with a colon, one space, the value.
            std::size_t width = 0;
            for (const auto& row : rows) {
                width = std::max(width, row.first.size() + 1);
            }
            for (const auto& [label, value] : rows) {
                report.out.append(width - label.size() - 1, ' ');
                report.out += label;
                report.out += ": ";
                report.out += value;
                report.out += '\n';
            }
        }
        if (idx + 1 < expressions.size()) {
            report.out += '\n';
        }
    }
    return report;
}

}  // namespace mlk::sched
