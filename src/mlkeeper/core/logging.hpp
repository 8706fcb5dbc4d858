// Process-wide logging on spdlog: stderr (colour on a TTY) or journald when
// stderr is the journal, an optional log file that SIGHUP reopens (so
// logrotate's postrotate can signal us), and optional syslog. Text or JSON
// lines. Logs never go to stdout, which belongs to --json output.
// Thread safety: init_logging() once at start-up; logging itself is thread-safe.
#pragma once

#include <filesystem>
#include <string>

#include <spdlog/spdlog.h>

namespace mlk::core {

enum class LogFormat { kText, kJson };
enum class ColorMode { kAuto, kNever };
// What reaches stderr on a terminal or pipe (the journal always gets `level`):
// kQuiet errors only, kNormal warnings and errors (a command's result goes
// to stdout, its info lines to the log file), kVerbose everything at `level`.
enum class StderrMode { kQuiet, kNormal, kVerbose };

struct LogOptions {
    spdlog::level::level_enum level = spdlog::level::info;
    LogFormat format = LogFormat::kText;
    ColorMode color = ColorMode::kAuto;
    StderrMode stderr_mode = StderrMode::kNormal;
    std::filesystem::path file;  // empty: no log file
    bool syslog = false;
    std::string ident = "mlkeeper";  // syslog/journal identifier
    std::string command;             // added to JSON lines and the journal
};

// Replaces the default logger. An unwritable log file is a warning on
// stderr, not a failure. Returns false if the file could not be opened.
bool init_logging(const LogOptions& opts);

// Makes every log file sink reopen its file before the next line. Safe to
// call from a signal handler.
void request_log_reopen();

// Installs a SIGHUP handler that calls request_log_reopen().
void install_sighup_reopen();

spdlog::level::level_enum parse_log_level(std::string_view name);

}  // namespace mlk::core
