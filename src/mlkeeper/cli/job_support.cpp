#include "mlkeeper/cli/job_support.hpp"

#include <unistd.h>

#include <array>

#include <fmt/format.h>

#include "mlkeeper/cli/outcome_alerts.hpp"

namespace mlk::cli {
std::string self_exe() {
    std::array<char, 4096> buf{};
    const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
    return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : "/proc/self/exe";
}

std::vector<std::string> job_argv(const Context& ctx, const sched::JobSpec& job) {
    if (job.kind == sched::TaskKind::kCommand) {
        return job.argv;
    }
    std::vector<std::string> argv{self_exe()};
    if (const auto& file = ctx.config().file()) {
        argv.push_back("--config");
        argv.push_back(std::filesystem::absolute(*file).string());
    }
    argv.push_back(job.builtin);
    argv.insert(argv.end(), job.argv.begin(), job.argv.end());
    return argv;
}

std::filesystem::path job_lock_dir(const Context& ctx) {
    return ctx.state_dir() / "jobs";
}

std::string describe(const sched::JobRun& run) {
    switch (run.outcome) {
        case sched::JobOutcome::kSuccess:
            return "succeeded";
        case sched::JobOutcome::kFailed:
            return run.exit_kind == util::ExitKind::kSignaled
                       ? fmt::format("killed by signal {}", run.signal)
                       : fmt::format("failed with exit code {}", run.exit_code);
        case sched::JobOutcome::kTimedOut:
            return "timed out";
        case sched::JobOutcome::kCancelled:
            return "was stopped";
        case sched::JobOutcome::kFailedToStart:
            return "could not start: " + run.error;
    }
    return "ended";
}

void report_job_outcome(OutcomeAlerts& alerts, const sched::JobSpec& job,
                        const sched::JobRun& run) {
    const std::string key = "job_" + job.name;
    if (run.ok()) {
        alerts.resolve(key, "schedule", fmt::format("job {} succeeded again", job.name));
        return;
    }
    if (!job.alert_on_failure || run.outcome == sched::JobOutcome::kCancelled) {
        return;
    }
    alert::Alert a;
    a.key = key;
    a.severity = alert::Severity::kCritical;
    a.check = "schedule";
    a.summary = fmt::format("scheduled job {} {} after {} attempt(s)", job.name, describe(run),
                            run.attempts);
    a.value = describe(run);
    a.action =
        fmt::format("see `mlkeeper schedule list` and `mlkeeper schedule history {}`", job.name);
    a.fields["job"] = job.name;
    a.fields["attempts"] = std::to_string(run.attempts);
    if (!run.output_tail.empty()) {
        const auto cut = run.output_tail.size() > 1000 ? run.output_tail.size() - 1000 : 0;
        a.fields["output_tail"] = run.output_tail.substr(cut);
    }
    alerts.fire(std::move(a));
}

}  // namespace mlk::cli
