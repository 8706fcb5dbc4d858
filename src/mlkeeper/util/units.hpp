// Parsing and display of the sizes, durations and rates users type into config files and flags
// ("30d", "500GB", "2GiB") and read in output ("1.5 GiB", "2m 5s", "120.0 MiB/s").
// Thread safety: pure functions on their arguments; safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace mlk::util {

// The unit assumed for a number written without one (retention "30" means days, a timeout "30"
// means seconds).
enum class DurationUnit { kSeconds, kMinutes, kHours, kDays };

// The largest duration parse_duration() accepts: 36525 days (100 years). Anything longer is a
// typo, and the cap keeps "now + duration" arithmetic in every clock free of overflow.
inline constexpr std::chrono::seconds kMaxDuration{36525LL * 86400};

// Accepts "90", "90s", "10m", "2h", "30d", "1w", "1h30m", "1h 30m", "1.5h", " 10 m ": one or more
// <number><unit> parts, summed. Units are s, m, h, d, w and the long forms sec(s), second(s),
// min(s), minute(s), hr(s), hour(s), day(s), week(s); lower case only, so "6M" is rejected rather
// than guessed to be minutes or months. A number without a unit is allowed only on its own and is
// read in `plain_unit`. Fractions are allowed if each part is a whole number of seconds ("1.5h",
// "0.5m"; not "0.5s"). Throws std::invalid_argument naming the text and what was expected for
// negative, empty, malformed, fractional-second and too large (> kMaxDuration) input.
std::chrono::seconds parse_duration(std::string_view text,
                                    DurationUnit plain_unit = DurationUnit::kSeconds);

// Accepts "1024", "500GB", "500 gb", "2GiB", "1.5T", "10 MiB", "100k": a number and an optional
// unit, case-insensitive, "B" optional. K/M/G/T/P/E are decimal (10^3 ...), KiB/MiB/... (or
// Ki/Mi/...) are binary (2^10 ...). Fractional byte counts are truncated ("0.5KiB" is 512,
// "1.0001K" is 1000). Throws std::invalid_argument for negative, empty, malformed input and
// values above 2^64-1.
std::uint64_t parse_size(std::string_view text);

// Binary units with one decimal from KiB up: "512 B", "1.5 KiB", "2.0 GiB", "16.0 EiB".
std::string format_bytes(std::uint64_t bytes);

// The two most significant non-zero units for humans: "45s", "2m 5s", "2m", "1h 2m", "3d 4h".
// Zero is "0s"; negative values get a leading '-'.
std::string format_duration(std::chrono::seconds s);

// The shortest text that parse_duration() reads back to exactly `s` (default plain unit), for
// showing config values: "30d", "90s", "90m", "1w", "1d1s", "7261s". Candidates are every set of
// units filled largest-first; ties go to fewer parts, then to larger units. Zero is "0s";
// negative values get a leading '-' (which does not parse back).
std::string format_duration_setting(std::chrono::seconds s);

// Like format_bytes() with "/s": "512 B/s", "120.5 MiB/s". Negative, NaN and infinite rates
// (e.g. from a zero elapsed time) are shown as "0 B/s".
std::string format_rate(double bytes_per_sec);

}  // namespace mlk::util
