#include "mlkeeper/homelab/systemd_backend.hpp"

#include <signal.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mlkeeper/util/process.hpp"

namespace mlk::homelab {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kStopMargin{2000};
constexpr const char* kSystemd = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kUnitIface = "org.freedesktop.systemd1.Unit";
constexpr const char* kServiceIface = "org.freedesktop.systemd1.Service";
constexpr const char* kNoSuchUnit = "org.freedesktop.systemd1.NoSuchUnit";

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

bool running_word(std::string_view w) {
    return w == "active" || w == "activating" || w == "deactivating" || w == "reloading";
}

bool stopped_word(std::string_view w) {
    return w == "inactive" || w == "failed" || w == "unknown" ||
           w == "dead";  // "unknown": systemctl's word for no such unit loaded
}

// Collects JobRemoved signals on one connection; Subscribe makes systemd send them. Matching is
// by job object path, which is only known once StartUnit/StopUnit has answered, so every signal
// is kept (those that arrive while the call waits for its reply are queued by sd-bus until
// sd_bus_process()).
class JobWatch {
  public:
    explicit JobWatch(sd_bus* bus) : bus_(bus) {
        sd_bus_slot* slot = nullptr;
        const int r = sd_bus_match_signal(bus, &slot, kSystemd, kManagerPath, kManager,
                                          "JobRemoved", &JobWatch::on_removed, this);
        if (r < 0) {
            throw util::BusError(r, util::BusErrorGuard{}, "AddMatch JobRemoved");
        }
        slot_.reset(slot);
        (void)util::call_method(bus, kSystemd, kManagerPath, kManager, "Subscribe", "");
    }

    // The job's result ("done", "failed", "timeout", "canceled", ...), or nullopt when `deadline`
    // passed first. Throws util::BusError when the connection is lost.
    std::optional<std::string> wait(const std::string& job, Clock::time_point deadline) {
        for (;;) {
            int r = 0;
            while ((r = sd_bus_process(bus_, nullptr)) > 0) {
            }
            if (r < 0) {
                lost(r);
            }
            for (const auto& [path, result] : removed_) {
                if (path == job) {
                    return result;
                }
            }
            const auto now = Clock::now();
            if (now >= deadline) {
                return std::nullopt;
            }
            const auto left = std::chrono::ceil<std::chrono::microseconds>(deadline - now);
            r = sd_bus_wait(bus_, static_cast<std::uint64_t>(left.count()));
            if (r < 0) {
                lost(r);
            }
        }
    }

  private:
    static int on_removed(sd_bus_message* m, void* self, sd_bus_error*) {
        std::uint32_t id = 0;
        const char* path = nullptr;
        const char* unit = nullptr;
        const char* result = nullptr;
        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) > 0 && path && result) {
            static_cast<JobWatch*>(self)->removed_.emplace_back(path, result);
        }
        return 0;
    }
    [[noreturn]] void lost(int r) const {
        throw util::BusError(r, util::BusErrorGuard{}, "waiting for the job");
    }

    sd_bus* bus_;
    util::BusSlotPtr slot_;
    std::vector<std::pair<std::string, std::string>> removed_;  // job path, result
};

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
    if (env_.systemctl.size() == 1) {
        bus_ = Bus::kSystem;
    } else if (env_.systemctl.size() == 2 && env_.systemctl[1] == "--user") {
        bus_ = Bus::kUser;
    } else {
        bus_ = Bus::kNone;
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

std::string SystemdBackend::bus_name() const {
    return bus_ == Bus::kUser ? "the user bus" : "the system bus";
}

std::string SystemdBackend::failure(sd_bus* bus, const util::BusError& e) const {
    if (sd_bus_is_open(bus) <= 0) {
        return fmt::format("the connection to {} was lost ({})", bus_name(), e.what());
    }
    return e.what();
}

util::BusPtr SystemdBackend::connect_bus() const {
    std::string why;
    if (bus_ == Bus::kNone) {
        why = "the systemctl arguments cannot be expressed over D-Bus";
    } else {
        try {
            auto bus = bus_ == Bus::kUser ? util::open_user_bus() : util::open_system_bus();
            util::set_call_timeout(bus.get(), env_.systemctl_timeout);
            const auto reply =
                util::call_method(bus.get(), "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                  "org.freedesktop.DBus", "NameHasOwner", "s", kSystemd);
            int has_owner = 0;
            if (sd_bus_message_read(reply.get(), "b", &has_owner) > 0 && has_owner) {
                return bus;
            }
            why = "no systemd on " + bus_name();
        } catch (const std::system_error& e) {
            why = e.what();
        }
    }
    if (!fallback_logged_.exchange(true)) {
        spdlog::warn("model {}: {}; controlling {} with {} instead of D-Bus", spec_.name, why,
                     spec_.unit, env_.systemctl.front());
    }
    return nullptr;
}

std::string SystemdBackend::unit_path(sd_bus* bus) const {
    try {
        return util::read_object_path(util::call_method(bus, kSystemd, kManagerPath, kManager,
                                                        "GetUnit", "s", spec_.unit.c_str())
                                          .get());
    } catch (const util::BusError& e) {
        if (e.error_name() != kNoSuchUnit) {
            throw;
        }
    }
    // Not loaded: LoadUnit gives it an object (LoadState tells whether the file exists).
    return util::read_object_path(util::call_method(bus, kSystemd, kManagerPath, kManager,
                                                    "LoadUnit", "s", spec_.unit.c_str())
                                      .get());
}

std::string SystemdBackend::unit_state(sd_bus* bus) const {
    try {
        const auto path = unit_path(bus);
        const auto p = path.c_str();
        return fmt::format("ActiveState={}, SubState={}, Result={}",
                           util::get_property_string(bus, kSystemd, p, kUnitIface, "ActiveState"),
                           util::get_property_string(bus, kSystemd, p, kUnitIface, "SubState"),
                           util::get_property_string(bus, kSystemd, p, kServiceIface, "Result"));
    } catch (const util::BusError& e) {
        return "state unknown: " + std::string(e.what());
    }
}

SystemdBackend::Outcome SystemdBackend::start_bus(sd_bus* bus,
                                                  std::chrono::milliseconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    try {
        JobWatch watch(bus);
        const auto job = util::read_object_path(util::call_method(bus, kSystemd, kManagerPath,
                                                                  kManager, "StartUnit", "ss",
                                                                  spec_.unit.c_str(), "replace")
                                                    .get());
        const auto result = watch.wait(job, deadline);
        if (result == "done") {
            return {true, "started " + spec_.unit};
        }
        if (!result) {
            return {false, fmt::format("start of {} did not finish within {} ms ({}); the job is "
                                       "left to systemd",
                                       spec_.unit, timeout.count(), unit_state(bus))};
        }
        return {false,
                fmt::format("start job of {} finished with result \"{}\" ({}); see `journalctl "
                            "-u {}`",
                            spec_.unit, *result, unit_state(bus), spec_.unit)};
    } catch (const util::BusError& e) {
        return {false, fmt::format("cannot start {}: {}", spec_.unit, failure(bus, e))};
    }
}

SystemdBackend::Outcome SystemdBackend::start_systemctl(std::chrono::milliseconds timeout) const {
    const auto c = systemctl({"start", spec_.unit}, timeout);
    if (!c.ok) {
        return {false, c.why};
    }
    return {true, "started " + spec_.unit};
}

void SystemdBackend::start() {
    std::lock_guard op(op_mu_);
    const Busy busy(*this);
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(spec_.start_timeout, std::chrono::seconds{1}));
    const auto bus = connect_bus();
    const auto r = bus ? start_bus(bus.get(), timeout) : start_systemctl(timeout);
    std::lock_guard lock(mu_);
    last_detail_ = r.text;
    if (!r.ok) {
        throw std::runtime_error(fmt::format("model {}: {}", spec_.name, r.text));
    }
    seen_running_ = true;
}

SystemdBackend::Outcome SystemdBackend::stop_bus(sd_bus* bus,
                                                 std::chrono::milliseconds timeout) const {
    const auto limit = timeout + kStopMargin;
    try {
        JobWatch watch(bus);
        std::string job;
        try {
            job = util::read_object_path(util::call_method(bus, kSystemd, kManagerPath, kManager,
                                                           "StopUnit", "ss", spec_.unit.c_str(),
                                                           "replace")
                                             .get());
        } catch (const util::BusError& e) {
            if (e.error_name() == kNoSuchUnit) {
                return {true, spec_.unit + " is not loaded"};  // nothing runs
            }
            throw;
        }
        const auto result = watch.wait(job, Clock::now() + limit);
        if (result == "done") {
            return {true, "stopped " + spec_.unit};
        }
        std::string why =
            result ? fmt::format("the stop job finished with result \"{}\"", *result)
                   : fmt::format("the stop job did not finish within {} ms", limit.count());
        bool killed = false;
        if (!result) {
            // systemd's own stop (TimeoutStopSec) did not finish: force it.
            try {
                (void)util::call_method(bus, kSystemd, kManagerPath, kManager, "KillUnit", "ssi",
                                        spec_.unit.c_str(), "all", std::int32_t{SIGKILL});
                killed = true;
                // The stop job ends once systemd has seen the processes go.
                (void)watch.wait(job, Clock::now() + env_.systemctl_timeout);
            } catch (const util::BusError& e) {
                if (sd_bus_is_open(bus) <= 0) {
                    throw;  // the connection itself failed
                }
                why += fmt::format("; {}", e.what());
            }
        }
        const auto path = unit_path(bus);
        const auto active =
            util::get_property_string(bus, kSystemd, path.c_str(), kUnitIface, "ActiveState");
        if (running_word(active)) {
            return {false, fmt::format("{}; {} is still {}", why, spec_.unit, active)};
        }
        return {true,
                fmt::format("stopped {}{} ({})", spec_.unit, killed ? " with SIGKILL" : "", why)};
    } catch (const util::BusError& e) {
        return {false, failure(bus, e)};
    }
}

SystemdBackend::Outcome SystemdBackend::stop_systemctl(std::chrono::milliseconds timeout) const {
    const auto c = systemctl({"stop", spec_.unit}, timeout + kStopMargin);
    if (c.ok) {
        return {true, "stopped " + spec_.unit};
    }
    // systemd's own stop did not finish (or systemctl failed): force it, then check.
    (void)systemctl({"kill", "--signal=SIGKILL", spec_.unit}, env_.systemctl_timeout);
    const auto a = systemctl({"is-active", spec_.unit}, env_.systemctl_timeout);
    const std::string word = first_line(a.out);
    if (!a.ran || running_word(word)) {
        return {false, c.why};
    }
    return {true, fmt::format("stopped {} with SIGKILL ({})", spec_.unit, c.why)};
}

void SystemdBackend::stop(std::chrono::milliseconds timeout) {
    std::lock_guard op(op_mu_);
    const Busy busy(*this);
    {
        std::lock_guard lock(mu_);
        seen_running_ = false;
    }
    const auto bus = connect_bus();
    const auto r = bus ? stop_bus(bus.get(), timeout) : stop_systemctl(timeout);
    std::lock_guard lock(mu_);
    last_detail_ = r.text;
    if (!r.ok) {
        throw std::runtime_error(
            fmt::format("model {}: cannot stop {}: {}", spec_.name, spec_.unit, r.text));
    }
    seen_running_ = false;
}

SystemdBackend::Busy::Busy(SystemdBackend& b) : b_(b) {
    std::lock_guard lock(b_.mu_);
    ++b_.generation_;
    b_.busy_ = true;
}

SystemdBackend::Busy::~Busy() {
    std::lock_guard lock(b_.mu_);
    ++b_.generation_;
    b_.busy_ = false;
}

BackendStatus SystemdBackend::raced() const {
    BackendStatus s;
    s.state = seen_running_ ? BackendState::kRunning : BackendState::kStopped;
    s.detail = last_detail_;
    return s;
}

SystemdBackend::Look SystemdBackend::look_bus(sd_bus* bus) const {
    Look l;
    try {
        l.path = unit_path(bus);
        const auto p = l.path.c_str();
        l.active = util::get_property_string(bus, kSystemd, p, kUnitIface, "ActiveState");
        const auto sub = util::get_property_string(bus, kSystemd, p, kUnitIface, "SubState");
        const auto load = util::get_property_string(bus, kSystemd, p, kUnitIface, "LoadState");
        l.shown = fmt::format("{} is {} ({})", spec_.unit, l.active, sub);
        if (load != "loaded") {
            l.shown += ", unit " + load;  // not-found, masked, error
        }
        if (running_word(l.active)) {
            const auto pid = util::get_property_u32(bus, kSystemd, p, kServiceIface, "MainPID");
            if (pid > 0) {
                l.pid = static_cast<pid_t>(pid);
            }
        }
        l.ran = true;
    } catch (const util::BusError& e) {
        l.why =
            fmt::format("cannot read the state of {} on {}: {}", spec_.unit, bus_name(), e.what());
    }
    return l;
}

SystemdBackend::Look SystemdBackend::look_systemctl() const {
    Look l;
    const auto a = systemctl({"is-active", spec_.unit}, env_.systemctl_timeout);
    l.active = first_line(a.out);
    l.ran = a.ran;
    l.why = a.why;
    l.shown = fmt::format("{} is {}", spec_.unit, l.active);
    if (a.ran && running_word(l.active)) {
        const auto show = systemctl({"show", "-p", "MainPID", spec_.unit}, env_.systemctl_timeout);
        if (auto pid = to_int(property(show.out, "MainPID")); pid && *pid > 0) {
            l.pid = static_cast<pid_t>(*pid);
        }
    }
    return l;
}

SystemdBackend::ExitInfo SystemdBackend::exit_info_bus(sd_bus* bus, const std::string& path) const {
    ExitInfo x;
    try {
        const auto p = path.c_str();
        const auto pid = util::get_property_u32(bus, kSystemd, p, kServiceIface, "ExecMainPID");
        if (pid > 0) {
            x.pid = static_cast<pid_t>(pid);
        }
        x.code = util::get_property_i32(bus, kSystemd, p, kServiceIface, "ExecMainCode");
        x.status = util::get_property_i32(bus, kSystemd, p, kServiceIface, "ExecMainStatus");
    } catch (const util::BusError&) {
        // Still an exit, only without the code: status() says what it knows.
    }
    return x;
}

SystemdBackend::ExitInfo SystemdBackend::exit_info_systemctl() const {
    ExitInfo x;
    const auto show = systemctl(
        {"show", "-p", "ExecMainPID", "-p", "ExecMainCode", "-p", "ExecMainStatus", spec_.unit},
        env_.systemctl_timeout);
    if (auto pid = to_int(property(show.out, "ExecMainPID")); pid && *pid > 0) {
        x.pid = static_cast<pid_t>(*pid);
    }
    x.code = to_int(property(show.out, "ExecMainCode"));
    x.status = to_int(property(show.out, "ExecMainStatus"));
    return x;
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
    const auto bus = connect_bus();
    const auto look = bus ? look_bus(bus.get()) : look_systemctl();
    const bool running = running_word(look.active);
    const bool stopped = stopped_word(look.active);
    if (!look.ran || (!running && !stopped)) {
        std::lock_guard lock(mu_);
        s.state = was_running ? BackendState::kRunning : BackendState::kStopped;
        s.detail =
            !look.why.empty() ? look.why
            : bus
                ? fmt::format("{} has an unexpected ActiveState \"{}\"", spec_.unit, look.active)
                : fmt::format("systemctl is-active {}: unexpected \"{}\"", spec_.unit, look.active);
        return s;
    }
    if (running) {
        s.pid = look.pid;
        s.state = BackendState::kRunning;
        s.detail = look.shown;
        std::lock_guard lock(mu_);
        if (gen != generation_ || busy_) {
            return raced();
        }
        seen_running_ = true;
        last_detail_ = s.detail;
        return s;
    }
    {
        std::lock_guard lock(mu_);
        if (gen != generation_ || busy_) {
            return raced();
        }
        if (!was_running) {
            s.state = BackendState::kStopped;
            s.detail = look.shown;
            return s;
        }
    }
    // It was running and went away without our stop(): report why, once.
    s.state = BackendState::kExited;
    s.detail = look.shown;
    const auto x = bus ? exit_info_bus(bus.get(), look.path) : exit_info_systemctl();
    s.pid = x.pid;
    // ExecMainCode is the waitid() si_code: 1 CLD_EXITED, 2 CLD_KILLED, 3 CLD_DUMPED.
    if (x.code && x.status) {
        if (*x.code == CLD_EXITED) {
            s.exit_code = *x.status;
            s.detail += fmt::format(", exited with code {}", *x.status);
        } else if (*x.code == CLD_KILLED || *x.code == CLD_DUMPED) {
            s.signal = *x.status;
            s.detail += fmt::format(", killed by signal {}", *x.status);
        }
    }
    std::lock_guard lock(mu_);
    if (gen != generation_ || busy_) {
        return raced();
    }
    ++generation_;
    seen_running_ = false;
    last_detail_ = s.detail;
    return s;
}

}  // namespace mlk::homelab
