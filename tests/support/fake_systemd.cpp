#include "support/fake_systemd.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <tuple>

#include <fmt/format.h>

#include "support/wait.hpp"

namespace mlk::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kName = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kNoSuchUnit = "org.freedesktop.systemd1.NoSuchUnit";

bool socket_accepts(const std::filesystem::path& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string p = path.string();
    if (p.size() >= sizeof a.sun_path) {
        return false;
    }
    std::memcpy(a.sun_path, p.c_str(), p.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

std::string encode_unit_path(const std::string& unit) {
    char* p = nullptr;
    if (sd_bus_path_encode(FakeSystemd::kUnitPrefix, unit.c_str(), &p) < 0 || p == nullptr) {
        throw std::runtime_error("cannot encode a unit path for " + unit);
    }
    std::string out = p;
    std::free(p);
    return out;
}

std::optional<std::string> decode_unit_path(const char* path) {
    char* name = nullptr;
    if (sd_bus_path_decode(path, FakeSystemd::kUnitPrefix, &name) <= 0 || name == nullptr) {
        return std::nullopt;
    }
    std::string out = name;
    std::free(name);
    return out;
}

std::string job_path(std::uint32_t id) {
    return fmt::format("/org/freedesktop/systemd1/job/{}", id);
}

bool is_up(const FakeUnit& u) {
    return u.active_state == "active" || u.active_state == "activating" ||
           u.active_state == "reloading";
}

const sd_bus_vtable kManagerVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("GetUnit", "s", "o", &FakeSystemd::on_get_unit, 0),
    SD_BUS_METHOD("LoadUnit", "s", "o", &FakeSystemd::on_load_unit, 0),
    SD_BUS_METHOD("StartUnit", "ss", "o", &FakeSystemd::on_start_unit, 0),
    SD_BUS_METHOD("StopUnit", "ss", "o", &FakeSystemd::on_stop_unit, 0),
    SD_BUS_METHOD("KillUnit", "ssi", "", &FakeSystemd::on_kill_unit, 0),
    SD_BUS_METHOD("Subscribe", "", "", &FakeSystemd::on_subscribe, 0),
    SD_BUS_SIGNAL("JobRemoved", "uoss", 0),
    SD_BUS_VTABLE_END,
};

const sd_bus_vtable kUnitVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Id", "s", &FakeSystemd::get_property, 0, 0),
    SD_BUS_PROPERTY("LoadState", "s", &FakeSystemd::get_property, 0, 0),
    SD_BUS_PROPERTY("ActiveState", "s", &FakeSystemd::get_property, 0, 0),
    SD_BUS_PROPERTY("SubState", "s", &FakeSystemd::get_property, 0, 0),
    SD_BUS_VTABLE_END,
};

const sd_bus_vtable kServiceVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("MainPID", "u", &FakeSystemd::get_property, 0, 0),
    SD_BUS_PROPERTY("ExecMainPID", "u", &FakeSystemd::get_property, 0, 0),
    SD_BUS_PROPERTY("ExecMainCode", "i", &FakeSystemd::get_property, 0, 0),
    SD_BUS_PROPERTY("ExecMainStatus", "i", &FakeSystemd::get_property, 0, 0),
    SD_BUS_PROPERTY("Result", "s", &FakeSystemd::get_property, 0, 0),
    SD_BUS_VTABLE_END,
};

}  // namespace

// ---- DbusDaemon ----

DbusDaemon::DbusDaemon() {
    if (::access(kBinary, X_OK) != 0) {
        throw ServerUnavailable(std::string(kBinary) + " is not installed");
    }
    const auto socket = dir_ / "bus";
    address_ = "unix:path=" + socket.string();
    // No <servicedir>: nothing is ever activated; the policy lets anyone own and call anything.
    const auto conf = dir_.write("bus.conf", fmt::format(R"(<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
)",
                                                         socket.string()));
    const auto log = dir_ / "dbus-daemon.log";
    util::RunOptions opts;
    opts.kill_grace = 2s;
    proc_.emplace(util::Subprocess::start(
        {kBinary, "--config-file=" + conf.string(), "--nofork", "--nopidfile", "--nosyslog"}, opts,
        util::Subprocess::Output::kToFile, log));
    bool exited = false;
    const bool ready = wait_until(
        [&] {
            if (proc_->try_wait()) {
                exited = true;
                return true;
            }
            return socket_accepts(socket);
        },
        10s);
    if (exited || !ready) {
        proc_.reset();
        throw std::runtime_error(fmt::format("dbus-daemon {}: {}",
                                             exited ? "exited during startup" : "not ready in 10 s",
                                             slurp(log)));
    }
}

DbusDaemon::~DbusDaemon() {
    proc_.reset();  // SIGTERM, SIGKILL after the grace, reaped
}

void DbusDaemon::kill() {
    if (proc_ && proc_->running()) {
        ::kill(proc_->pid(), SIGKILL);
    }
    proc_.reset();
}

// ---- ScopedBusAddress ----

namespace {

std::optional<std::string> swap_env(const char* name, const std::optional<std::string>& value) {
    std::optional<std::string> old;
    if (const char* v = std::getenv(name)) {
        old = v;
    }
    if (value) {
        ::setenv(name, value->c_str(), 1);
    } else {
        ::unsetenv(name);
    }
    return old;
}

}  // namespace

ScopedBusAddress::ScopedBusAddress(const std::string& address)
    : old_system_(swap_env("DBUS_SYSTEM_BUS_ADDRESS", address)),
      old_session_(swap_env("DBUS_SESSION_BUS_ADDRESS", address)) {}

ScopedBusAddress::~ScopedBusAddress() {
    swap_env("DBUS_SYSTEM_BUS_ADDRESS", old_system_);
    swap_env("DBUS_SESSION_BUS_ADDRESS", old_session_);
}

// ---- FakeSystemd ----

FakeSystemd::FakeSystemd() {
    conn_ = util::open_system_bus(bus_.address());
    sd_bus* c = conn_.get();
    auto add = [&](int r, sd_bus_slot* slot, const char* what) {
        if (r < 0) {
            throw std::system_error(-r, std::generic_category(), what);
        }
        slots_.emplace_back(slot);
    };
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_add_object_vtable(c, &slot, kManagerPath, kManager, kManagerVtable, this);
    add(r, slot, "sd_bus_add_object_vtable Manager");
    slot = nullptr;
    r = sd_bus_add_fallback_vtable(c, &slot, kUnitPrefix, "org.freedesktop.systemd1.Unit",
                                   kUnitVtable, &FakeSystemd::find_unit, this);
    add(r, slot, "sd_bus_add_fallback_vtable Unit");
    slot = nullptr;
    r = sd_bus_add_fallback_vtable(c, &slot, kUnitPrefix, "org.freedesktop.systemd1.Service",
                                   kServiceVtable, &FakeSystemd::find_unit, this);
    add(r, slot, "sd_bus_add_fallback_vtable Service");
    r = sd_bus_request_name(c, kName, 0);
    if (r < 0) {
        throw std::system_error(-r, std::generic_category(), "sd_bus_request_name systemd1");
    }
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
        throw std::system_error(errno, std::generic_category(), "eventfd");
    }
    try {
        thread_ = std::thread([this] { serve(); });
    } catch (...) {
        ::close(wake_fd_);
        throw;
    }
}

FakeSystemd::~FakeSystemd() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    wake();
    thread_.join();
    ::close(wake_fd_);
}

void FakeSystemd::add_unit(const std::string& name, FakeUnit unit) {
    {
        std::lock_guard lock(mu_);
        units_[name] = std::move(unit);
    }
    wake();
}

FakeUnit FakeSystemd::unit(const std::string& name) const {
    std::lock_guard lock(mu_);
    return units_.at(name);
}

std::vector<std::string> FakeSystemd::calls() const {
    std::lock_guard lock(mu_);
    return calls_;
}

bool FakeSystemd::called(const std::string& call) const {
    std::lock_guard lock(mu_);
    return std::find(calls_.begin(), calls_.end(), call) != calls_.end();
}

bool FakeSystemd::wait_for_call(const std::string& call, std::chrono::milliseconds limit) const {
    std::unique_lock lock(mu_);
    return changed_.wait_for(
        lock, limit, [&] { return std::find(calls_.begin(), calls_.end(), call) != calls_.end(); });
}

void FakeSystemd::kill_bus() {
    bus_.kill();
}

void FakeSystemd::wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
}

std::optional<Clock::time_point> FakeSystemd::next_timer() const {
    std::optional<Clock::time_point> t;
    for (const auto& timer : timers_) {
        if (!t || timer.at < *t) {
            t = timer.at;
        }
    }
    return t;
}

void FakeSystemd::serve() {
    sd_bus* c = conn_.get();
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (stopping_) {
                break;
            }
        }
        run_due_timers();
        int r = 0;
        while ((r = sd_bus_process(c, nullptr)) > 0) {
        }
        if (r < 0) {
            break;  // the bus went away (kill_bus)
        }
        auto wait = std::chrono::milliseconds(1000);
        {
            std::lock_guard lock(mu_);
            if (auto t = next_timer()) {
                wait = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(*t - Clock::now()),
                                  0ms, wait);
            }
        }
        std::uint64_t until_us = 0;
        if (sd_bus_get_timeout(c, &until_us) > 0 && until_us != UINT64_MAX) {
            timespec now{};
            ::clock_gettime(CLOCK_MONOTONIC, &now);
            const auto now_us = static_cast<std::uint64_t>(now.tv_sec) * 1000000u +
                                static_cast<std::uint64_t>(now.tv_nsec) / 1000u;
            const auto left = until_us > now_us ? (until_us - now_us + 999) / 1000 : 0;
            wait = std::min(wait, std::chrono::milliseconds(left));
        }
        pollfd fds[2] = {{sd_bus_get_fd(c), static_cast<short>(sd_bus_get_events(c)), 0},
                         {wake_fd_, POLLIN, 0}};
        ::poll(fds, 2, static_cast<int>(wait.count()));
        std::uint64_t drained = 0;
        [[maybe_unused]] const auto n = ::read(wake_fd_, &drained, sizeof drained);
    }
    slots_.clear();
    conn_.reset();
}

void FakeSystemd::run_due_timers() {
    std::vector<Timer> due;
    {
        std::lock_guard lock(mu_);
        const auto now = Clock::now();
        auto it = std::partition(timers_.begin(), timers_.end(),
                                 [&](const Timer& t) { return t.at > now; });
        due.assign(it, timers_.end());
        timers_.erase(it, timers_.end());
        std::sort(due.begin(), due.end(),
                  [](const Timer& a, const Timer& b) { return a.at < b.at; });
    }
    for (const auto& t : due) {
        if (t.job != 0) {
            finish_job(t.job, "");
            continue;
        }
        std::lock_guard lock(mu_);
        auto u = units_.find(t.unit);
        if (u == units_.end() || u->second.active_state != "active" ||
            u->second.main_pid != t.pid) {
            continue;  // stopped or restarted since: that run did not crash
        }
        FakeUnit& unit = u->second;
        unit.active_state = "failed";
        unit.sub_state = "failed";
        unit.result = unit.crash_code == CLD_EXITED ? "exit-code" : "signal";
        unit.exec_main_code = unit.crash_code;
        unit.exec_main_status = unit.crash_status;
        unit.main_pid = 0;
    }
}

// Ends a queued job: `result` "" means the unit's own outcome (start_result; "done" for a stop).
void FakeSystemd::finish_job(std::uint32_t id, const std::string& forced) {
    std::string unit_name, result;
    {
        std::lock_guard lock(mu_);
        auto j = jobs_.find(id);
        if (j == jobs_.end()) {
            return;
        }
        const Job job = j->second;
        jobs_.erase(j);
        unit_name = job.unit;
        FakeUnit& u = units_[job.unit];
        if (job.start) {
            result = forced.empty() ? u.start_result : forced;
            if (result == "done") {
                u.active_state = "active";
                u.sub_state = "running";
                u.result = "success";
                u.main_pid = next_pid_++;
                u.exec_main_pid = u.main_pid;
                u.exec_main_code = 0;
                u.exec_main_status = 0;
                if (u.crash_after) {
                    timers_.push_back({Clock::now() + *u.crash_after, 0, job.unit, u.main_pid});
                }
            } else if (result != "canceled") {
                u.active_state = "failed";
                u.sub_state = "failed";
                u.result = u.fail_result;
                u.exec_main_code = CLD_EXITED;
                u.exec_main_status = u.fail_status;
                u.main_pid = 0;
            }
        } else {
            result = forced.empty() ? "done" : forced;
            if (result == "done" && u.active_state != "failed") {
                u.active_state = "inactive";
                u.sub_state = "dead";
                if (u.main_pid != 0) {
                    u.exec_main_code = CLD_KILLED;  // systemd's SIGTERM
                    u.exec_main_status = SIGTERM;
                }
                u.main_pid = 0;
            }
        }
        if (subscribers_ == 0) {
            return;  // systemd sends job signals only once a client has subscribed
        }
    }
    const std::string path = job_path(id);
    sd_bus_emit_signal(conn_.get(), kManagerPath, kManager, "JobRemoved", "uoss", id, path.c_str(),
                       unit_name.c_str(), result.c_str());
}

int FakeSystemd::queue_job(sd_bus_message* m, bool start) {
    const char* name = nullptr;
    const char* mode = nullptr;
    int r = sd_bus_message_read(m, "ss", &name, &mode);
    if (r < 0) {
        return r;
    }
    std::uint32_t id = 0;
    std::optional<std::uint32_t> replaced;
    {
        std::lock_guard lock(mu_);
        calls_.push_back(fmt::format("{} {} {}", start ? "StartUnit" : "StopUnit", name, mode));
        changed_.notify_all();
        auto it = units_.find(name);
        if (it == units_.end() || it->second.load_state == "not-found") {
            return sd_bus_reply_method_errorf(
                m, kNoSuchUnit, start ? "Unit %s not found." : "Unit %s not loaded.", name);
        }
        FakeUnit& u = it->second;
        for (const auto& [other, job] : jobs_) {
            if (job.unit == name) {
                replaced = other;  // mode "replace": the pending job is cancelled
            }
        }
        id = next_job_++;
        jobs_[id] = Job{id, name, start};
        if (start && u.active_state != "active") {
            u.active_state = "activating";
            u.sub_state = "start";
        } else if (!start && is_up(u)) {
            u.active_state = "deactivating";
            u.sub_state = "stop-sigterm";
        }
        if (!(start ? u.start_hangs : u.stop_hangs)) {
            timers_.push_back({Clock::now() + u.job_delay, id, name, 0});
        }
    }
    if (replaced) {
        finish_job(*replaced, "canceled");
    }
    const std::string path = job_path(id);
    return sd_bus_reply_method_return(m, "o", path.c_str());
}

int FakeSystemd::on_start_unit(sd_bus_message* m, void* self, sd_bus_error*) {
    return static_cast<FakeSystemd*>(self)->queue_job(m, true);
}

int FakeSystemd::on_stop_unit(sd_bus_message* m, void* self, sd_bus_error*) {
    return static_cast<FakeSystemd*>(self)->queue_job(m, false);
}

int FakeSystemd::on_get_unit(sd_bus_message* m, void* self, sd_bus_error*) {
    auto* fake = static_cast<FakeSystemd*>(self);
    const char* name = nullptr;
    int r = sd_bus_message_read(m, "s", &name);
    if (r < 0) {
        return r;
    }
    {
        std::lock_guard lock(fake->mu_);
        fake->calls_.push_back(fmt::format("GetUnit {}", name));
        fake->changed_.notify_all();
        if (fake->units_.count(name) == 0) {
            return sd_bus_reply_method_errorf(m, kNoSuchUnit, "Unit %s not loaded.", name);
        }
    }
    return sd_bus_reply_method_return(m, "o", encode_unit_path(name).c_str());
}

int FakeSystemd::on_load_unit(sd_bus_message* m, void* self, sd_bus_error*) {
    auto* fake = static_cast<FakeSystemd*>(self);
    const char* name = nullptr;
    int r = sd_bus_message_read(m, "s", &name);
    if (r < 0) {
        return r;
    }
    {
        std::lock_guard lock(fake->mu_);
        fake->calls_.push_back(fmt::format("LoadUnit {}", name));
        fake->changed_.notify_all();
        if (fake->units_.count(name) == 0) {
            FakeUnit missing;
            missing.load_state = "not-found";
            fake->units_.emplace(name, missing);
        }
    }
    return sd_bus_reply_method_return(m, "o", encode_unit_path(name).c_str());
}

int FakeSystemd::on_kill_unit(sd_bus_message* m, void* self, sd_bus_error*) {
    auto* fake = static_cast<FakeSystemd*>(self);
    const char* name = nullptr;
    const char* whom = nullptr;
    std::int32_t sig = 0;
    int r = sd_bus_message_read(m, "ssi", &name, &whom, &sig);
    if (r < 0) {
        return r;
    }
    {
        std::lock_guard lock(fake->mu_);
        fake->calls_.push_back(fmt::format("KillUnit {} {} {}", name, whom, sig));
        fake->changed_.notify_all();
        auto it = fake->units_.find(name);
        if (it == fake->units_.end()) {
            return sd_bus_reply_method_errorf(m, kNoSuchUnit, "Unit %s not loaded.", name);
        }
        FakeUnit& u = it->second;
        if (sig == SIGKILL && !u.kill_ignored && (is_up(u) || u.active_state == "deactivating")) {
            u.active_state = "failed";
            u.sub_state = "failed";
            u.result = "signal";
            u.exec_main_code = CLD_KILLED;
            u.exec_main_status = SIGKILL;
            u.main_pid = 0;
            for (const auto& [id, job] : fake->jobs_) {
                if (job.unit == name && !job.start) {
                    fake->timers_.push_back({Clock::now(), id, name, 0});  // the stop job ends
                }
            }
        }
    }
    return sd_bus_reply_method_return(m, "");
}

int FakeSystemd::on_subscribe(sd_bus_message* m, void* self, sd_bus_error*) {
    auto* fake = static_cast<FakeSystemd*>(self);
    {
        std::lock_guard lock(fake->mu_);
        fake->calls_.push_back("Subscribe");
        fake->changed_.notify_all();
        ++fake->subscribers_;
    }
    return sd_bus_reply_method_return(m, "");
}

int FakeSystemd::find_unit(sd_bus*, const char* path, const char*, void* self, void** found,
                           sd_bus_error*) {
    auto* fake = static_cast<FakeSystemd*>(self);
    const auto name = decode_unit_path(path);
    if (!name) {
        return 0;
    }
    std::lock_guard lock(fake->mu_);
    if (fake->units_.count(*name) == 0) {
        return 0;
    }
    *found = fake;
    return 1;
}

int FakeSystemd::get_property(sd_bus*, const char* path, const char*, const char* property,
                              sd_bus_message* reply, void* self, sd_bus_error* e) {
    auto* fake = static_cast<FakeSystemd*>(self);
    const auto name = decode_unit_path(path);
    std::lock_guard lock(fake->mu_);
    auto it = name ? fake->units_.find(*name) : fake->units_.end();
    if (it == fake->units_.end()) {
        return sd_bus_error_setf(e, "org.freedesktop.DBus.Error.UnknownObject", "no unit at %s",
                                 path);
    }
    const FakeUnit& u = it->second;
    const std::string_view p = property;
    if (p == "Id") {
        return sd_bus_message_append(reply, "s", name->c_str());
    }
    if (p == "LoadState") {
        return sd_bus_message_append(reply, "s", u.load_state.c_str());
    }
    if (p == "ActiveState") {
        return sd_bus_message_append(reply, "s", u.active_state.c_str());
    }
    if (p == "SubState") {
        return sd_bus_message_append(reply, "s", u.sub_state.c_str());
    }
    if (p == "Result") {
        return sd_bus_message_append(reply, "s", u.result.c_str());
    }
    if (p == "MainPID") {
        return sd_bus_message_append(reply, "u", u.main_pid);
    }
    if (p == "ExecMainPID") {
        return sd_bus_message_append(reply, "u", u.exec_main_pid);
    }
    if (p == "ExecMainCode") {
        return sd_bus_message_append(reply, "i", u.exec_main_code);
    }
    if (p == "ExecMainStatus") {
        return sd_bus_message_append(reply, "i", u.exec_main_status);
    }
    return sd_bus_error_setf(e, "org.freedesktop.DBus.Error.UnknownProperty", "no property %s",
                             property);
}

}  // namespace mlk::testing
