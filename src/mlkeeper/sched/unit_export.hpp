// Turns scheduled jobs into systemd .service/.timer files and an /etc/cron.d crontab, for hosts
// that schedule with systemd or cron instead of `mlkeeper agent`, and converts schedules between
// the two languages for the forms both can express. Pure text generation: the caller writes the
// files (atomically) wherever it wants.
// Thread safety: pure functions on their arguments; safe from any thread.
//
// Errors: a job that cannot be exported (bad name, a schedule the other language cannot express,
// retries that do not fit between two runs) throws mlk::ConfigError("schedule.jobs.NAME: ...");
// bad ExportOptions (relative paths, empty user) throw mlk::UsageError.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/sched/job_spec.hpp"

namespace mlk::sched {

struct ExportOptions {
    // The mlkeeper executable that built-in jobs and the alert hook run. Absolute.
    std::filesystem::path binary = "/usr/bin/mlkeeper";
    // Passed as `--config FILE` before the subcommand; absolute. Unset: mlkeeper's own default.
    std::optional<std::filesystem::path> config;
    // The dedicated account every job runs as (User=/Group=, the crontab's user column).
    std::string user = "mlkeeper";
    std::string group = "mlkeeper";

    // Job name -> every path the job writes (backup dir, state dir, log dir, ...). Under
    // ProtectSystem=strict these become the job's only writable places (ReadWritePaths=), so the
    // list must be complete. Absolute paths.
    std::map<std::string, std::vector<std::filesystem::path>> writes;
    // Job name -> paths the job only reads (model dir, ...). They stay readable anyway; with the
    // program and the config file they decide whether /home may be hidden (ProtectHome=yes rather
    // than read-only) and whether /tmp may be private (PrivateTmp=yes).
    std::map<std::string, std::vector<std::filesystem::path>> reads;
    // What the OnFailure= alert hook (`mlkeeper alert send`) writes: the state dir holding the
    // alert cooldown store, the log dir.
    std::vector<std::filesystem::path> alert_writes;

    // Jobs that never use the network. Every other job gets Wants=/After=network-online.target:
    // every built-in task may deliver its outcome alerts by webhook or SMTP and backup uploads to
    // S3, so the network is the safe default.
    std::set<std::string> offline_jobs;

    // The systemd the units are for. From 254 on a failing service passes through "failed" before
    // each automatic restart, so OnFailure= would fire per attempt; for >= 254 the units add
    // RestartMode=direct (unknown to, and warned about by, older versions).
    int systemd_version = 252;

    // crontab(): where the flock lock files and the per-job logs (<log_dir>/<job>.log) go, and
    // where cron mails what escapes the logs (empty: MAILTO="", no mail).
    std::filesystem::path lock_dir = "/run/lock";
    std::filesystem::path log_dir = "/var/log/mlkeeper";
    std::string mailto = "root";
};

struct UnitFile {
    std::string filename;  // "mlkeeper-backup.service": a bare file name, no directory
    std::string content;
};

// Per job "mlkeeper-<name>.service" (Type=oneshot, the job's limits, priority, timeout, retries and
// hardening) and "mlkeeper-<name>.timer" (OnCalendar=, Persistent=, RandomizedDelaySec=), plus one
// "mlkeeper-alert@.service" template when any job alerts on failure (OnFailure= hook that runs
// `mlkeeper alert send` for the failed unit). Services have no [Install] section: enable the
// timers. Cron-kind jobs are converted with cron_to_on_calendar().
//
// Retries (Restart=on-failure is allowed for Type=oneshot; RestartSec= is the job's retry_delay;
// systemd before 254 cannot double it): systemd has no "at most N restarts" setting, only the start
// rate limit, so the unit gets StartLimitBurst=retries+1 within a StartLimitIntervalSec= long
// enough for all attempts (retries x retry_delay plus, per attempt, the timeout + 90 s of stop
// time, or 1 h when the job has no timeout) but, when the schedule's shortest gap between two runs
// is known, shorter than that gap minus the randomized delay, AccuracySec= and (for gaps of 2 h or
// more) 1 h of DST slack, so that ordinary timer starts never hit the limit. The refused extra
// start marks the unit failed and fires OnFailure= once. A job whose retry delays alone do not fit
// between two runs is an error. Without a timeout, failures slower than the assumed hour may be
// retried more often than configured.
std::vector<UnitFile> systemd_units(const std::vector<JobSpec>& jobs, const ExportOptions& opts);

// An /etc/cron.d file (user column; install as /etc/cron.d/mlkeeper, no dot in the name) with a
// SHELL/PATH/MAILTO header and one line per job:
//   M H DOM MON DOW USER [sleep $((...)) &&] flock -n LOCK [timeout -k 90 T] [nice -n N]
//       [ionice -c C [-n L]] COMMAND >> LOG_DIR/NAME.log 2>&1
// The randomized delay uses od(1) on /dev/urandom because cron's /bin/sh (dash) has no $RANDOM
// and every host must draw a different delay. Calendar-kind jobs are converted with
// calendar_to_cron(). A comment above each line lists what cron cannot enforce (Persistent=
// catch-up, memory/CPU limits, retries). Failure alerts come from mlkeeper's own outcome alerts
// ([alerts]); there is no OnFailure= equivalent for crashes or timeouts.
std::string crontab(const std::vector<JobSpec>& jobs, const ExportOptions& opts);

// The argv a job runs: built-in -> {binary, [--config, FILE,] builtin, argv...}; command -> argv.
std::vector<std::string> job_argv(const JobSpec& job, const ExportOptions& opts);

// A 5-field crontab expression or macro (@hourly .. @yearly, @midnight) as OnCalendar= lines in
// systemd's normalized form ("*/5 * * * *" -> {"*-*-* *:00/5:00"}). One line normally; two when
// both day-of-month and day-of-week are restricted, because cron then runs on days matching
// EITHER while one OnCalendar= requires both, and systemd ORs several OnCalendar= lines.
// "Restricted" means "not every value", as croniter and sched::CronSpec decide. Accepts numbers,
// names (jan..dec, sun..sat), lists, ranges, */S, N-M/S and N/S (= N-max/S); 0 and 7 are Sunday.
// Throws mlk::ConfigError for anything else (6 fields, @reboot, L/W/#/H extensions, bad values).
std::vector<std::string> cron_to_on_calendar(std::string_view cron);

// The 5 crontab fields for an OnCalendar= expression ("Sun 03:00" -> "0 3 * * 0"). Handles the
// shorthands (minutely .. yearly, quarterly, semiannually), weekday names, lists and ranges
// ("Mon..Fri", "Mon,Wed"), date and time components with lists, ranges (A..B) and repetitions
// (A/N, A..B/N). Throws mlk::ConfigError for what cron cannot express: seconds other than 0, a
// year, '~' (last days of the month), a time zone, both a weekday and a day-of-month restriction
// (cron would OR them).
std::string calendar_to_cron(std::string_view on_calendar);

enum class Specifiers { kEscape, kKeep };

// One ExecStart= word, quoted per systemd.syntax(7) so systemd hands it to the program unchanged:
// '$' -> "$$" (no variable expansion), '%' -> "%%" unless Specifiers::kKeep (for %i, %n in
// templates), and a word with whitespace, quotes, backslashes or control characters, an empty word
// or a lone ";" is put in double quotes with C escapes.
std::string systemd_quote(std::string_view word, Specifiers specifiers = Specifiers::kEscape);

// One word of a crontab command, for /bin/sh: unchanged when it only has safe characters, else in
// single quotes ("'" written as '"'"'); every '%' becomes "\%" because cron turns a bare '%' into a
// newline. Throws mlk::ConfigError for backslashes (cron implementations disagree on them) and
// control characters.
std::string cron_quote(std::string_view word);

}  // namespace mlk::sched
