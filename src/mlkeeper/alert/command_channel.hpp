// Alert channel that runs a user's handler program (the seeds' custom-alert.sh for PagerDuty,
// Opsgenie, ...) as `argv... SEVERITY SUMMARY` with the alert in MLKEEPER_* environment
// variables. Runs it without a shell, so alert text can never become a command.
// Thread safety: CommandChannel is immutable after construction and util::run_process may run
// on several threads at once, so concurrent send() calls are safe.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/alert/alert.hpp"
#include "mlkeeper/alert/channel.hpp"

namespace mlk::alert {

struct CommandOptions {
    // Program and fixed arguments, e.g. {"/opt/ml-automation/handlers/custom-alert.sh"}. A
    // program without '/' is looked up in PATH.
    std::vector<std::string> argv;
    // After this the handler's whole process group is terminated (SIGTERM, then SIGKILL).
    std::chrono::milliseconds timeout{30000};
};

// opts.argv + {"info"/"warning"/"critical"/"emergency" or "resolved", summary}. NUL bytes,
// which cannot pass through execve, are dropped from the summary.
std::vector<std::string> command_argv(const CommandOptions& opts, const Alert& a);

// MLKEEPER_ALERT_KEY, MLKEEPER_SEVERITY ("critical", also for a resolved alert),
// MLKEEPER_STATE ("firing"/"resolved"), MLKEEPER_SUMMARY, MLKEEPER_CHECK, MLKEEPER_VALUE,
// MLKEEPER_THRESHOLD, MLKEEPER_ACTION, MLKEEPER_HOST, MLKEEPER_TIME (ISO 8601 UTC),
// MLKEEPER_SUPPRESSED, MLKEEPER_OCCURRENCES (always set, possibly empty, so a handler never
// sees a stale value inherited from our own environment), then MLKEEPER_FIELD_<NAME> per extra
// field (name upper-cased, bytes outside [A-Z0-9_] replaced by '_'). NUL bytes are dropped.
std::vector<std::pair<std::string, std::string>> command_env(const Alert& a);

class CommandChannel : public Channel {
  public:
    // Throws std::invalid_argument for an empty argv or program name, or a non-positive timeout.
    explicit CommandChannel(CommandOptions opts);

    std::string name() const override { return "command"; }

    // Throws ChannelError: permanent when the program cannot be started (missing, not
    // executable); transient for a non-zero exit (with the code and the last line of stderr),
    // death by a signal, or a timeout.
    void send(const Alert& alert) override;

    const CommandOptions& options() const { return opts_; }

  private:
    CommandOptions opts_;
};

}  // namespace mlk::alert
