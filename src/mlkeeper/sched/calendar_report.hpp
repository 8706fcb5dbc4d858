// The text `systemd-analyze calendar [--iterations N] [--base-time T] EXPR...` prints (systemd
// 252), for `mlkeeper calendar`; and the pieces it is made of, reusable by `schedule list`:
// systemd's timestamp display ("Sun 2026-11-22 03:00:00 UTC"), its relative display
// ("5h 30min left", "7 months 18 days ago") and its parsers for timestamps (--base-time) and
// time spans ("5min", "1h 30s").
// Thread safety: pure functions of their arguments (the zones are immutable).
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/util/tz.hpp"

namespace mlk::sched {

// Microseconds since the Unix epoch, systemd's usec_t. kUsecInfinity stands for its
// USEC_INFINITY ("@infinity", or no time at all).
using Usec = std::chrono::microseconds;
inline constexpr Usec kUsecInfinity = Usec::max();

// A timestamp or time span systemd would not accept. what() reads
// "Failed to parse timestamp 'X': Invalid argument"; code() is systemd's errno (EINVAL, ERANGE).
class TimestampError : public std::runtime_error {
  public:
    TimestampError(std::string what_kind, std::string text, int code);
    const std::string& text() const { return text_; }
    int code() const { return code_; }

  private:
    std::string text_;
    int code_;
};

// systemd's parse_sec(): "5min", "1h 30s", "2.5h", "1 week", "100ms", "infinity"; a bare number is
// seconds. Throws TimestampError. "infinity" gives kUsecInfinity.
Usec parse_timespan(std::string_view text);

// systemd's parse_timestamp() as `systemd-analyze timestamp` and `--base-time` accept it:
// "2026-01-01 00:00:00 UTC", "2026-01-01 10:00", "26-01-01", "2026-01-01 10:00:00.5",
// "Sun 2026-11-22", "Nov 22 10:00:00", "12:00" (today), "now", "today", "yesterday", "tomorrow",
// "+5h", "-1d", "5min ago", "2h left", "@1700000000", each optionally followed by " UTC" or by
// the local zone's abbreviation ("CET"/"CEST"). Times are read in `local` unless " UTC" is given.
// Relative forms count from `now`. An IANA zone suffix ("... Europe/Berlin") reads the time in
// that zone, as systemd 253 and later do (systemd 252 rejects every such suffix).
// Throws TimestampError. "@infinity" gives kUsecInfinity.
Usec parse_timestamp(std::string_view text, Usec now, const util::TimeZone& local);

// systemd's format_timestamp(): "Sun 2026-11-22 03:00:00 CET" in `zone` (its abbreviation), or
// "Sun 2026-11-22 02:00:00 UTC" with `utc`; "-" for 0 and kUsecInfinity, X's beyond year 9999.
enum class TimestampZone { kLocal, kUtc };
std::string format_timestamp(Usec t, const util::TimeZone& zone,
                             TimestampZone style = TimestampZone::kLocal);

// systemd's format_timestamp_relative(): "5h 30min left", "1 day 2h left", "7 months 18 days
// ago", "now"; "-" for 0 and kUsecInfinity.
std::string format_timestamp_relative(Usec t, Usec now);

// glibc's view of whether `zone` is UTC (no offset, no DST): then systemd-analyze leaves out the
// "(in UTC):" lines.
bool is_utc_like(const util::TimeZone& zone);

struct CalendarReportOptions {
    unsigned iterations = 1;   // --iterations
    std::optional<Usec> base;  // --base-time; unset (or kUsecInfinity) means `now`
    Usec now{0};               // the current time, for "From now:" (and the default base)
    util::TimeZone zone = util::TimeZone::utc();  // the local zone: parsing and display
    bool hints = true;  // systemd's "Hint: this expression is a valid timestamp..." lines
};

struct CalendarReport {
    std::string out;    // stdout
    std::string err;    // stderr: one "Failed to ..." line per bad expression (and hints)
    int exit_code = 0;  // 1 when any expression failed, as systemd-analyze
};

// What `systemd-analyze calendar` prints for `expressions`: per expression "  Original form:"
// (when it differs), "Normalized form:", "    Next elapse:", "       (in UTC):" (unless the zone
// is UTC), "       From now:", then "       Iter. #2:"... up to `iterations`; "Next elapse:
// never" for one that never elapses; a blank line between expressions. A bad expression gets its
// error on `err` and the others are still shown.
CalendarReport calendar_report(const std::vector<std::string>& expressions,
                               const CalendarReportOptions& options);

}  // namespace mlk::sched
