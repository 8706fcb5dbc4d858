// `mlkeeper calendar`: what `systemd-analyze calendar` prints for OnCalendar expressions (the
// same lines, the same errors), and with --cron the next runs of a crontab schedule, so a user
// can check a job's schedule before the agent or an exported timer uses it.
#include <iostream>

#include <fmt/format.h>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/sched/calendar_report.hpp"
#include "mlkeeper/sched/cron_spec.hpp"

namespace mlk::cli {
namespace {

using sched::Usec;

Usec now_usec() {
    return std::chrono::duration_cast<Usec>(std::chrono::system_clock::now().time_since_epoch());
}

int cron_report(const std::vector<std::string>& exprs, unsigned iterations, Usec base, Usec now,
                const util::TimeZone& zone) {
    int rc = 0;
    bool first = true;
    for (const auto& e : exprs) {
        std::optional<sched::CronSpec> parsed;
        try {
            parsed = sched::CronSpec::parse(e);
        } catch (const sched::CronError& err) {
            std::cerr << fmt::format("Failed to parse cron expression '{}': {}\n", e, err.what());
            rc = 1;
            continue;
        }
        const auto& spec = *parsed;
        if (!first) {
            std::cout << "\n";
        }
        first = false;
        if (spec.normalized() != e) {
            std::cout << fmt::format("  Original form: {}\n", e);
        }
        std::cout << fmt::format("Normalized form: {}\n", spec.normalized());
        auto t = std::chrono::sys_seconds{std::chrono::floor<std::chrono::seconds>(base)};
        for (unsigned i = 1; i <= iterations; ++i) {
            const auto next = spec.next_after(t, zone);
            const std::string label =
                i == 1 ? "    Next elapse" : fmt::format("       Iter. #{}", i);
            if (!next) {
                std::cout << fmt::format("{}: never\n", label);
                break;
            }
            const Usec u = std::chrono::duration_cast<Usec>(next->time_since_epoch());
            std::cout << fmt::format("{}: {}\n", label, sched::format_timestamp(u, zone));
            if (!sched::is_utc_like(zone)) {
                std::cout << fmt::format(
                    "       (in UTC): {}\n",
                    sched::format_timestamp(u, zone, sched::TimestampZone::kUtc));
            }
            std::cout << fmt::format("       From now: {}\n",
                                     sched::format_timestamp_relative(u, now));
            t = *next;
        }
    }
    return rc;
}

}  // namespace

Command calendar_command() {
    return Command{
        "calendar", "Show when an OnCalendar (systemd) or cron expression elapses", "", Record::kNo,
        [](CLI::App& app, FlagBindings&) {
            struct Opts {
                std::vector<std::string> exprs;
                unsigned iterations = 1;
                std::string base_time;
                bool cron = false;
            };
            auto o = std::make_shared<Opts>();
            app.add_option("EXPR", o->exprs, "Calendar expressions (or cron lines with --cron)")
                ->required();
            app.add_option("--iterations", o->iterations, "Show this many next elapses")
                ->check(CLI::Range(1u, 100000u))
                ->capture_default_str();
            app.add_option("--base-time", o->base_time,
                           "Compute elapses after this time instead of now (systemd timestamp "
                           "syntax, e.g. '2026-01-01 00:00:00 UTC', '@1767225600', '+1d')");
            app.add_flag("--cron", o->cron, "Read the expressions as crontab schedules");
            app.footer(R"(
Output matches `systemd-analyze calendar` line for line (exit 1 if any
expression is invalid).

Examples:
  mlkeeper calendar daily 'Mon..Fri 09:00' '*:0/5'
  mlkeeper calendar --iterations 5 'Sun 03:00 Europe/Berlin'
  mlkeeper calendar --base-time '2026-03-28 00:00:00 UTC' '*-*-* 02:30'
  mlkeeper calendar --cron '*/15 * * * *' '@weekly')");
            Handler h;
            h.run = [o](Context&) {
                const auto zone = util::TimeZone::local();
                const Usec now = now_usec();
                std::optional<Usec> base;
                if (!o->base_time.empty()) {
                    try {
                        base = sched::parse_timestamp(o->base_time, now, zone);
                    } catch (const sched::TimestampError& e) {
                        throw UsageError(e.what());
                    }
                }
                if (o->cron) {
                    return cron_report(o->exprs, o->iterations, base.value_or(now), now, zone);
                }
                sched::CalendarReportOptions ro;
                ro.iterations = o->iterations;
                ro.base = base;
                ro.now = now;
                ro.zone = zone;
                const auto report = sched::calendar_report(o->exprs, ro);
                std::cout << report.out << std::flush;
                std::cerr << report.err;
                return report.exit_code;
            };
            return h;
        }};
}

}  // namespace mlk::cli
