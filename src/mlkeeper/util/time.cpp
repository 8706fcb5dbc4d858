#include "mlkeeper/util/time.hpp"

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <system_error>

namespace mlk::util {

namespace {

std::time_t to_time_t_floor(Clock::time_point tp) {
    // floor, not duration_cast: 1969-12-31T23:59:59.5 belongs to second -1, not 0.
    return static_cast<std::time_t>(
        std::chrono::floor<std::chrono::seconds>(tp.time_since_epoch()).count());
}

std::string strftime_string(const std::tm& tm, const char* fmt) {
    if (fmt == nullptr || *fmt == '\0') {
        return "";
    }
    // strftime reports "did not fit" and "empty result" both as 0, so grow a bounded number of
    // times and accept an empty result after that.
    for (std::size_t size = 64; size <= 64 * 1024; size *= 4) {
        std::string out(size, '\0');
        const std::size_t n = std::strftime(out.data(), out.size(), fmt, &tm);
        if (n > 0) {
            out.resize(n);
            return out;
        }
    }
    return "";
}

bool is_leap(int year) {
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(int year, int month) {
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : kDays[month - 1];
}

}  // namespace

std::string format_local(Clock::time_point tp, const char* strftime_fmt) {
    const std::time_t t = to_time_t_floor(tp);
    std::tm tm{};
    if (localtime_r(&t, &tm) == nullptr) {
        throw std::system_error(errno, std::generic_category(),
                                "localtime_r of " + std::to_string(t));
    }
    return strftime_string(tm, strftime_fmt);
}

std::string iso8601_utc(Clock::time_point tp) {
    const auto ms = std::chrono::floor<std::chrono::milliseconds>(tp.time_since_epoch());
    const auto secs = std::chrono::floor<std::chrono::seconds>(ms);
    const std::time_t t = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    if (gmtime_r(&t, &tm) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "gmtime_r of " + std::to_string(t));
    }
    char millis[8];
    std::snprintf(millis, sizeof millis, ".%03d", static_cast<int>((ms - secs).count()));
    return strftime_string(tm, "%Y-%m-%dT%H:%M:%S") + millis + "Z";
}

std::string filename_timestamp(Clock::time_point tp) {
    return format_local(tp, "%Y%m%d_%H%M%S");
}

std::optional<Clock::time_point> parse_filename_timestamp(std::string_view text) {
    if (text.size() != 15 || text[8] != '_') {
        return std::nullopt;
    }
    int fields[15] = {};
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (i == 8) {
            continue;
        }
        if (text[i] < '0' || text[i] > '9') {
            return std::nullopt;
        }
        fields[i] = text[i] - '0';
    }
    const auto number = [&](std::size_t from, std::size_t count) {
        int v = 0;
        for (std::size_t i = from; i < from + count; ++i) {
            v = v * 10 + fields[i];
        }
        return v;
    };
    const int year = number(0, 4);
    const int month = number(4, 2);
    const int day = number(6, 2);
    const int hour = number(9, 2);
    const int minute = number(11, 2);
    const int second = number(13, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour > 23 || minute > 59 || second > 59) {
        return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    tm.tm_isdst = -1;  // let the zone rules decide
    // mktime returns -1 both on failure and for 1969-12-31 23:59:59 UTC; tm_wday tells them apart
    // because mktime only fills it in on success.
    tm.tm_wday = -1;
    const std::time_t t = std::mktime(&tm);
    if (t == static_cast<std::time_t>(-1) && tm.tm_wday == -1) {
        return std::nullopt;
    }
    // A nanosecond system_clock spans only the years 1677-2262.
    using std::chrono::seconds;
    constexpr auto kMax = std::chrono::floor<seconds>(Clock::time_point::max().time_since_epoch());
    constexpr auto kMin = std::chrono::ceil<seconds>(Clock::time_point::min().time_since_epoch());
    if (t > kMax.count() || t < kMin.count()) {
        return std::nullopt;
    }
    return Clock::time_point(std::chrono::duration_cast<Clock::duration>(seconds(t)));
}

std::int64_t to_unix_ms(Clock::time_point tp) {
    return std::chrono::floor<std::chrono::milliseconds>(tp.time_since_epoch()).count();
}

Clock::time_point from_unix_ms(std::int64_t ms) {
    using std::chrono::milliseconds;
    constexpr auto kMax =
        std::chrono::floor<milliseconds>(Clock::time_point::max().time_since_epoch());
    constexpr auto kMin =
        std::chrono::ceil<milliseconds>(Clock::time_point::min().time_since_epoch());
    if (ms > kMax.count()) {
        return Clock::time_point::max();
    }
    if (ms < kMin.count()) {
        return Clock::time_point::min();
    }
    return Clock::time_point(std::chrono::duration_cast<Clock::duration>(milliseconds(ms)));
}

}  // namespace mlk::util

namespace mlk::util {

std::optional<Clock::time_point> parse_iso8601_utc(std::string_view text) {
    std::string s(text);
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, consumed = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
                    &consumed) != 6 ||
        consumed != 19) {
        return std::nullopt;
    }
    std::string_view rest = std::string_view(s).substr(19);
    std::int64_t ms = 0;
    if (!rest.empty() && rest.front() == '.') {
        std::size_t i = 1;
        int digits = 0;
        for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9'; ++i, ++digits) {
            if (digits < 3) {
                ms = ms * 10 + (rest[i] - '0');
            }
        }
        if (digits == 0) {
            return std::nullopt;
        }
        for (int k = digits; k < 3; ++k) {
            ms *= 10;
        }
        rest = rest.substr(i);
    }
    if (rest != "Z" || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    std::time_t t = ::timegm(&tm);
    return from_unix_ms(static_cast<std::int64_t>(t) * 1000 + ms);
}

}  // namespace mlk::util
