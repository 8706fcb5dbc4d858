#include "mlkeeper/homelab/systemd_backend.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "mlkeeper/util/process.hpp"

namespace mlk::homelab {
namespace {

constexpr std::chrono::milliseconds kStopMargin{2000};

std::string first_line(std::string_view s) {
    while (!s.empty() && (s.front() == '\n' || s.front() == ' ')) {
        s.remove_prefix(1);
    }
    s = s.substr(0, s.find('\n'));
    while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) {
        s.remove_suffix(1);
    }
    return std::string(s.substr(0, 300));
}

// `systemctl show -p A -p B` prints A=... lines; returns the value of `key`.
std::optional<std::string> property(std::string_view out, std::string_view key) {
    while (!out.empty()) {
        const auto nl = out.find('\n');
        std::string_view line = out.substr(0, nl);
        if (line.size() > key.size() && line.substr(0, key.size()) == key &&
            line[key.size()] == '=') {
            return std::string(line.substr(key.size() + 1));
        }
        if (nl == std::string_view::npos) {
            break;
        }
        out.remove_prefix(nl + 1);
    }
    return std::nullopt;
}

std::optional<int> to_int(const std::optional<std::string>& s) {
    if (!s || s->empty() || s->size() > 9 ||
        !std::all_of(s->begin(), s->end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return std::nullopt;
    }
    return std::stoi(*s);
}

}  // namespace

SystemdBackend::SystemdBackend(ModelSpec spec, BackendEnv env)
    : spec_(std::move(spec)), env_(std::move(env)) {
    if (!valid_unit_name(spec_.unit)) {
        throw std::invalid_argument("model " + spec_.name + ": invalid systemd unit name \"" +
                                    spec_.unit + "\"");
    }
    if (env_.systemctl.empty() || env_.systemctl.front().empty()) {
        throw std::invalid_argument("model " + spec_.name + ": no systemctl command configured");
    }
}

SystemdBackend::Call SystemdBackend::systemctl(const std::vector<std::string>& args,
                                               std::chrono::milliseconds timeout) const {
    std::vector<std::string> argv = env_.systemctl;
    argv.insert(argv.end(), args.begin(), args.end());
    util::RunOptions opts;
    opts.timeout = timeout;
    opts.kill_grace = std::chrono::milliseconds{1000};
    opts.output_cap = 64 * 1024;
    const auto r = util::run_process(argv, opts);
    Call c;
    c.out = r.out;
    c.err = r.err;
    c.ok = r.ok();
    c.ran = r.kind == util::ExitKind::kExited;
    const std::string what = fmt::format("{} {}", env_.systemctl.front(), args.front());
    switch (r.kind) {
        case util::ExitKind::kExited:
            if (!c.ok) {
                const std::string msg = first_line(r.err.empty() ? r.out : r.err);
                c.why = fmt::format("{} {} exited with code {}{}{}", what, spec_.unit, r.exit_code,
                                    msg.empty() ? "" : ": ", msg);
            }
            break;
        case util::ExitKind::kTimedOut:
            c.why =
                fmt::format("{} {} did not finish within {} ms", what, spec_.unit, timeout.count());
            break;
        case util::ExitKind::kSignaled:
            c.why = fmt::format("{} {} was killed by signal {}", what, spec_.unit, r.signal);
            break;
        case util::ExitKind::kFailedToStart:
            c.why = fmt::format("cannot run {}: {}", env_.systemctl.front(), r.error);
            break;
        case util::ExitKind::kCancelled:
            c.why = fmt::format("{} {} was cancelled", what, spec_.unit);
            break;
    }
    return c;
}

void SystemdBackend::start() {
    std::lock_guard op(op_mu_);
    {
        std::lock_guard lock(mu_);
        ++generation_;
    }
    const auto c = systemctl({"start", spec_.unit},
                             std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::max(spec_.start_timeout, std::chrono::seconds{1})));
    std::lock_guard lock(mu_);
    ++generation_;
    if (!c.ok) {
        last_detail_ = c.why;
        throw std::runtime_error(fmt::format("model {}: {}", spec_.name, c.why));
    }
    seen_running_ = true;
    last_detail_ = "started " + spec_.unit;
}

void SystemdBackend::stop(std::chrono::milliseconds timeout) {
    std::lock_guard op(op_mu_);
    {
        std::lock_guard lock(mu_);
        ++generation_;
        seen_running_ = false;
    }
    auto c = systemctl({"stop", spec_.unit}, timeout + kStopMargin);
    std::string detail = "stopped " + spec_.unit;
    if (!c.ok) {
        // systemd's own stop did not finish (or systemctl failed): force it, then check.
        (void)systemctl({"kill", "--signal=SIGKILL", spec_.unit}, env_.systemctl_timeout);
        const auto a = systemctl({"is-active", spec_.unit}, env_.systemctl_timeout);
        const std::string word = first_line(a.out);
        if (!a.ran || word == "active" || word == "activating" || word == "deactivating" ||
            word == "reloading") {
            std::lock_guard lock(mu_);
            ++generation_;
            last_detail_ = c.why;
            throw std::runtime_error(
                fmt::format("model {}: cannot stop {}: {}", spec_.name, spec_.unit, c.why));
        }
        detail = fmt::format("stopped {} with SIGKILL ({})", spec_.unit, c.why);
    }
    std::lock_guard lock(mu_);
    ++generation_;
    seen_running_ = false;
    last_detail_ = detail;
}

BackendStatus SystemdBackend::raced() const {
    BackendStatus s;
    s.state = seen_running_ ? BackendState::kRunning : BackendState::kStopped;
    s.detail = last_detail_;
    return s;
}

BackendStatus SystemdBackend::status() {
    std::uint64_t gen = 0;
    bool was_running = false;
    {
        std::lock_guard lock(mu_);
        gen = generation_;
        was_running = seen_running_;
    }
    BackendStatus s;
    const auto a = systemctl({"is-active", spec_.unit}, env_.systemctl_timeout);
    const std::string word = first_line(a.out);
    const bool running =
        word == "active" || word == "activating" || word == "deactivating" || word == "reloading";
    const bool stopped = word == "inactive" || word == "failed" || word == "unknown" ||
                         word == "dead";  // "unknown": no such unit loaded
    if (!a.ran || (!running && !stopped)) {
        std::lock_guard lock(mu_);
        s.state = was_running ? BackendState::kRunning : BackendState::kStopped;
        s.detail = a.why.empty()
                       ? fmt::format("systemctl is-active {}: unexpected \"{}\"", spec_.unit, word)
                       : a.why;
        return s;
    }
    if (running) {
        const auto show = systemctl({"show", "-p", "MainPID", spec_.unit}, env_.systemctl_timeout);
        if (auto pid = to_int(property(show.out, "MainPID")); pid && *pid > 0) {
            s.pid = static_cast<pid_t>(*pid);
        }
        s.state = BackendState::kRunning;
        s.detail = fmt::format("{} is {}", spec_.unit, word);
        std::lock_guard lock(mu_);
        if (gen != generation_) {
            return raced();
        }
        seen_running_ = true;
        last_detail_ = s.detail;
        return s;
    }
    {
        std::lock_guard lock(mu_);
        if (gen != generation_) {
            return raced();
        }
        if (!was_running) {
            s.state = BackendState::kStopped;
            s.detail = fmt::format("{} is {}", spec_.unit, word);
            return s;
        }
    }
    // It was running and went away without our stop(): report why, once.
    s.state = BackendState::kExited;
    s.detail = fmt::format("{} is {}", spec_.unit, word);
    const auto show = systemctl(
        {"show", "-p", "ExecMainPID", "-p", "ExecMainCode", "-p", "ExecMainStatus", spec_.unit},
        env_.systemctl_timeout);
    if (auto pid = to_int(property(show.out, "ExecMainPID")); pid && *pid > 0) {
        s.pid = static_cast<pid_t>(*pid);
    }
    // ExecMainCode is the waitid() si_code: 1 CLD_EXITED, 2 CLD_KILLED, 3 CLD_DUMPED.
    const auto code = to_int(property(show.out, "ExecMainCode"));
    const auto st = to_int(property(show.out, "ExecMainStatus"));
    if (code && st) {
        if (*code == 1) {
            s.exit_code = *st;
            s.detail += fmt::format(", exited with code {}", *st);
        } else if (*code == 2 || *code == 3) {
            s.signal = *st;
            s.detail += fmt::format(", killed by signal {}", *st);
        }
    }
    std::lock_guard lock(mu_);
    if (gen != generation_) {
        return raced();
    }
    ++generation_;
    seen_running_ = false;
    last_detail_ = s.detail;
    return s;
}

}  // namespace mlk::homelab
