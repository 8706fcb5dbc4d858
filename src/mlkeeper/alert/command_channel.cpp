#include "mlkeeper/alert/command_channel.hpp"

#include <stdexcept>

#include "mlkeeper/util/process.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::alert {

namespace {

// A handler that ignores SIGTERM gets this long before SIGKILL; short, because a dispatcher
// thread is waiting on us.
constexpr std::chrono::milliseconds kKillGrace{1000};
constexpr std::size_t kMaxErrorLine = 300;

std::string without_nul(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c != '\0') {
            out.push_back(c);
        }
    }
    return out;
}

std::string env_field_name(std::string_view name) {
    std::string out = "MLKEEPER_FIELD_";
    for (char c : name) {
        if (c >= 'a' && c <= 'z') {
            out.push_back(static_cast<char>(c - 'a' + 'A'));
        } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
            out.push_back(c);
        } else {
            out.push_back('_');
        }
    }
    return out;
}

// The last non-blank line of a handler's stderr, cut to a readable length at a UTF-8 boundary.
std::string last_line(std::string_view err) {
    std::string_view text = util::trim(err);
    std::size_t nl = text.find_last_of('\n');
    std::string_view line = util::trim(nl == std::string_view::npos ? text : text.substr(nl + 1));
    if (line.size() > kMaxErrorLine) {
        std::size_t cut = kMaxErrorLine;
        while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) {
            --cut;
        }
        return std::string(line.substr(0, cut)) + "...";
    }
    return std::string(line);
}

}  // namespace

std::vector<std::string> command_argv(const CommandOptions& opts, const Alert& a) {
    std::vector<std::string> argv = opts.argv;
    argv.emplace_back(a.state == AlertState::kResolved ? std::string_view("resolved")
                                                       : to_string(a.severity));
    argv.push_back(without_nul(a.summary));
    return argv;
}

std::vector<std::pair<std::string, std::string>> command_env(const Alert& a) {
    std::vector<std::pair<std::string, std::string>> env;
    env.reserve(12 + a.fields.size());
    auto set = [&env](std::string name, std::string_view value) {
        env.emplace_back(std::move(name), without_nul(value));
    };
    set("MLKEEPER_ALERT_KEY", a.key);
    set("MLKEEPER_SEVERITY", to_string(a.severity));
    set("MLKEEPER_STATE", a.state == AlertState::kResolved ? "resolved" : "firing");
    set("MLKEEPER_SUMMARY", a.summary);
    set("MLKEEPER_CHECK", a.check);
    set("MLKEEPER_VALUE", a.value);
    set("MLKEEPER_THRESHOLD", a.threshold);
    set("MLKEEPER_ACTION", a.action);
    set("MLKEEPER_HOST", a.host);
    set("MLKEEPER_TIME", util::iso8601_utc(a.time));
    set("MLKEEPER_SUPPRESSED", std::to_string(a.suppressed));
    set("MLKEEPER_OCCURRENCES", std::to_string(a.occurrences));
    for (const auto& [name, value] : a.fields) {
        set(env_field_name(name), value);
    }
    return env;
}

CommandChannel::CommandChannel(CommandOptions opts) : opts_(std::move(opts)) {
    if (opts_.argv.empty() || opts_.argv.front().empty()) {
        throw std::invalid_argument("alert command: no program given");
    }
    if (opts_.timeout.count() <= 0) {
        throw std::invalid_argument("alert command timeout must be positive");
    }
}

void CommandChannel::send(const Alert& alert) {
    util::RunOptions run;
    run.timeout = opts_.timeout;
    run.kill_grace = kKillGrace;
    run.env_set = command_env(alert);
    const util::RunResult r = util::run_process(command_argv(opts_, alert), run);

    const std::string what = "alert command " + util::shell_join(opts_.argv);
    switch (r.kind) {
        case util::ExitKind::kExited:
            if (!r.error.empty()) {
                throw ChannelError(ChannelError::Kind::kTransient, what + ": " + r.error);
            }
            if (r.exit_code != 0) {
                std::string msg = what + " exited with status " + std::to_string(r.exit_code);
                std::string line = last_line(r.err);
                msg += line.empty() ? std::string(" (no stderr output)") : ": " + line;
                throw ChannelError(ChannelError::Kind::kTransient, msg);
            }
            return;
        case util::ExitKind::kSignaled:
            throw ChannelError(ChannelError::Kind::kTransient,
                               what + " was killed by signal " + std::to_string(r.signal));
        case util::ExitKind::kTimedOut: {
            std::string msg = what + " timed out after " + std::to_string(opts_.timeout.count()) +
                              " ms; its process group was killed";
            if (!r.error.empty()) {
                msg += " (" + r.error + ")";
            }
            throw ChannelError(ChannelError::Kind::kTransient, msg);
        }
        case util::ExitKind::kCancelled:
        case util::ExitKind::kFailedToStart:
            break;
    }
    throw ChannelError(ChannelError::Kind::kPermanent, "cannot run " + what + ": " + r.error);
}

}  // namespace mlk::alert
