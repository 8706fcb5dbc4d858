// Wall-clock formatting and parsing: local display times, ISO 8601 UTC stamps for JSON and logs,
// the "YYYYMMDD_HHMMSS" stamps in backup file names, and Unix milliseconds for the state store.
// Thread safety: safe from any thread (localtime_r/gmtime_r/mktime); the local functions read the
// process time zone, so a concurrent setenv("TZ")/tzset() changes their results.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mlk::util {

using Clock = std::chrono::system_clock;

// `tp` (whole seconds, rounded down) in the local time zone through strftime(3). Throws
// std::system_error if the time cannot be represented as a calendar date.
std::string format_local(Clock::time_point tp, const char* strftime_fmt = "%Y-%m-%d %H:%M:%S");

// "2026-11-22T14:30:00.123Z": UTC with milliseconds (rounded down), for machine-read output.
// Throws std::system_error if the time cannot be represented as a calendar date.
std::string iso8601_utc(Clock::time_point tp);

// Local "YYYYMMDD_HHMMSS", the stamp in backup names (models_backup_20261122_143000.tar.gz).
std::string filename_timestamp(Clock::time_point tp);

// Inverse of filename_timestamp(): exactly 15 characters "YYYYMMDD_HHMMSS" read as local time,
// nullopt for anything else (other lengths, non-digits, month 13, Feb 30, hour 24, second 60)
// and for dates the Clock cannot hold (before 1678 or after 2261 with a nanosecond clock).
// A time that falls in a DST gap is shifted forward as mktime(3) does; a repeated hour at the
// end of DST resolves as mktime(3) chooses.
std::optional<Clock::time_point> parse_filename_timestamp(std::string_view text);

// Milliseconds since the Unix epoch (rounded down, also before 1970).
std::int64_t to_unix_ms(Clock::time_point tp);

// The inverse of to_unix_ms(); values beyond what Clock can hold (about +-292 years around 1970
// with nanosecond clocks) are clamped to Clock::time_point::min()/max().
Clock::time_point from_unix_ms(std::int64_t ms);

}  // namespace mlk::util

namespace mlk::util {
// Inverse of iso8601_utc(): "2026-11-22T14:30:00Z" or with ".123" milliseconds.
std::optional<Clock::time_point> parse_iso8601_utc(std::string_view text);
}  // namespace mlk::util
