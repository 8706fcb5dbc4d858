// "Recent errors": log entries of priority err or worse in the last window,
// read in-process from the systemd journal (sd-journal), or from a syslog
// file where the machine keeps no journal. Thread safety: stateless
// functions; safe from many threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "mlkeeper/health/check.hpp"

namespace mlk::health {

struct ErrorsOptions {
    std::chrono::seconds window{3600};
    Thresholds count{10, 100};  // warn above 10 errors in the window, fail above 100
    // Syslog file used when there is no journal; empty = /var/log/syslog,
    // else /var/log/messages.
    std::filesystem::path syslog_file;
    // Only this many bytes at the end of a syslog file are read, so a huge
    // log cannot slow the check down (entries older than the window are
    // near the start anyway).
    std::size_t syslog_tail_bytes = 8u << 20;
};

// Whether journal files exist under <run_root>/log/journal or /var/log/journal.
bool has_journal(const HealthEnv& env);

// The timestamp at the start of a syslog line: RFC 3339
// ("2025-01-31T14:30:00.123+01:00") or BSD ("Jan 31 14:30:00", current year,
// local time). nullopt when the line starts with neither.
std::optional<std::chrono::system_clock::time_point> syslog_line_time(
    std::string_view line, std::chrono::system_clock::time_point now);

// Whether a syslog line reports an error: "<3>"-style priorities 0-3, or the
// words error, failed, fatal, critical, panic, segfault, "out of memory"
// (case-insensitive); file logs carry no priority field.
bool syslog_line_is_error(std::string_view line);

// Counts error lines of `file` inside the window ending at `now`.
CheckResult check_syslog_errors(const std::filesystem::path& file, const ErrorsOptions& opts,
                                std::chrono::system_clock::time_point now);

// A configured syslog_file, else the journal when there is one, else
// /var/log/syslog or /var/log/messages, else skipped.
CheckResult check_recent_errors(const HealthEnv& env, const ErrorsOptions& opts);

}  // namespace mlk::health
