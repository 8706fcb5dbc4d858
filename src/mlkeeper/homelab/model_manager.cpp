#include "mlkeeper/homelab/model_manager.hpp"

#include <algorithm>
#include <deque>
#include <exception>
#include <system_error>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "mlkeeper/core/http_client.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::homelab {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using std::chrono::system_clock;

namespace {

constexpr std::size_t kQuotedNameMax = 64;

// Exception messages and backend details may carry bytes that are not UTF-8 (a path, a child's
// output); the API's JSON writer would refuse them, so stored texts are repaired once, here.
std::string utf8_clean(const std::string& s) {
    const std::string quoted =
        nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return nlohmann::json::parse(quoted).get<std::string>();
}

std::string describe(milliseconds d) {
    if (d.count() > 0 && d.count() % 60000 == 0) {
        return std::to_string(d.count() / 60000) + " min";
    }
    if (d.count() % 1000 == 0) {
        return std::to_string(d.count() / 1000) + " s";
    }
    return std::to_string(d.count()) + " ms";
}

std::string describe_exit(const BackendStatus& st) {
    if (!st.detail.empty()) {
        return st.detail;
    }
    if (st.signal) {
        return "killed by signal " + std::to_string(*st.signal);
    }
    if (st.exit_code) {
        return "exited with code " + std::to_string(*st.exit_code);
    }
    return st.state == BackendState::kStopped ? "stopped unexpectedly" : "exited";
}

std::string what_of(std::exception_ptr p) {
    try {
        std::rethrow_exception(std::move(p));
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

}  // namespace

std::string_view to_string(ModelState s) {
    switch (s) {
        case ModelState::kStopped:
            return "stopped";
        case ModelState::kStarting:
            return "starting";
        case ModelState::kRunning:
            return "running";
        case ModelState::kStopping:
            return "stopping";
        case ModelState::kFailed:
            return "failed";
    }
    return "unknown";
}

std::string_view to_string(OpOutcome o) {
    switch (o) {
        case OpOutcome::kStarted:
            return "started";
        case OpOutcome::kAlreadyRunning:
            return "already_running";
        case OpOutcome::kStarting:
            return "starting";
        case OpOutcome::kStopped:
            return "stopped";
        case OpOutcome::kAlreadyStopped:
            return "already_stopped";
        case OpOutcome::kStopping:
            return "stopping";
        case OpOutcome::kRestarted:
            return "restarted";
    }
    return "unknown";
}

nlohmann::json to_json(const ModelInfo& info) {
    nlohmann::json j = nlohmann::json::object();
    j["name"] = info.name;
    j["backend"] = std::string(to_string(info.backend));
    j["state"] = std::string(to_string(info.state));
    j["pinned"] = info.pinned;
    j["port"] = info.port ? nlohmann::json(*info.port) : nlohmann::json(nullptr);
    j["pid"] =
        info.pid ? nlohmann::json(static_cast<long long>(*info.pid)) : nlohmann::json(nullptr);
    j["since"] = util::iso8601_utc(info.since);
    j["restarts"] = info.restarts;
    j["last_error"] = info.last_error ? nlohmann::json(*info.last_error) : nlohmann::json(nullptr);
    j["health_url"] =
        info.health_url.empty() ? nlohmann::json(nullptr) : nlohmann::json(info.health_url);
    return j;
}

bool http_health_probe(const std::string& url, milliseconds timeout) {
    core::HttpRequest req;
    req.method = "GET";
    req.url = url;
    // 0 means "no limit" to curl; a probe must always be bounded.
    req.timeout = std::max(timeout, milliseconds{1});
    req.connect_timeout = req.timeout;
    try {
        const core::HttpResponse resp = core::http_request(req);
        return resp.status >= 200 && resp.status < 300;
    } catch (const core::HttpError&) {
        return false;
    }
}

std::string quote_name(std::string_view name) {
    std::size_t n = std::min(name.size(), kQuotedNameMax);
    const bool cut = n < name.size();
    // Back up to the first byte of a UTF-8 sequence so the cut does not split a character.
    while (cut && n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) {
        --n;
    }
    std::string out = nlohmann::json(std::string(name.substr(0, n)))
                          .dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    if (cut) {
        out += "...";
    }
    return out;
}

// One start or stop in progress; joiners wait on Entry::cv for `done`. Guarded by Entry::mu.
struct ModelManager::Op {
    bool done = false;
    bool ok = false;
    std::string error;
};

struct ModelManager::Entry {
    ModelSpec spec;                         // immutable
    std::unique_ptr<ModelBackend> backend;  // thread-safe itself; called without `mu`

    mutable std::mutex mu;
    std::condition_variable cv;  // an Op finished
    ModelState state = ModelState::kStopped;
    system_clock::time_point since;
    int restarts = 0;
    std::optional<std::string> last_error;
    std::optional<pid_t> pid;
    std::shared_ptr<Op> start_op;  // the current or last start
    std::shared_ptr<Op> stop_op;   // the current or last stop
    // Bumped on every entry into kRunning, so a status() read without `mu` is applied only to
    // the run it observed.
    std::uint64_t run_gen = 0;
    std::optional<system_clock::time_point> running_since;
    std::deque<system_clock::time_point> restart_times;  // automatic restarts in the window
    milliseconds backoff{0};
    std::optional<system_clock::time_point> restart_at;  // a crash restart is due then
};

ModelManager::ModelManager(std::vector<ModelSpec> specs, BackendFactory make, HealthProbe probe,
                           Clock now)
    : probe_(std::move(probe)), now_(std::move(now)) {
    std::sort(specs.begin(), specs.end(),
              [](const ModelSpec& a, const ModelSpec& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < specs.size(); ++i) {
        if (specs[i].name == specs[i - 1].name) {
            throw std::invalid_argument("model " + quote_name(specs[i].name) +
                                        " is registered twice");
        }
    }
    const auto t = now_();
    entries_.reserve(specs.size());
    for (auto& spec : specs) {
        auto e = std::make_unique<Entry>();
        e->backend = make(spec);
        if (!e->backend) {
            throw std::invalid_argument("no backend for model " + quote_name(spec.name));
        }
        e->since = t;
        e->backoff = spec.restart_backoff_min;
        e->spec = std::move(spec);
        entries_.push_back(std::move(e));
    }
}

ModelManager::~ModelManager() {
    {
        std::lock_guard lk(shutdown_mu_);
        shutting_down_ = true;
    }
    shutdown_cv_.notify_all();
    stop_monitor();
    join_workers();
}

ModelManager::Entry& ModelManager::find(std::string_view name) const {
    const auto it = std::lower_bound(
        entries_.begin(), entries_.end(), name,
        [](const std::unique_ptr<Entry>& e, std::string_view n) { return e->spec.name < n; });
    if (it == entries_.end() || (*it)->spec.name != name) {
        throw ModelError(ModelError::Kind::kNotFound, "no model named " + quote_name(name));
    }
    return **it;
}

ModelInfo ModelManager::snapshot(const Entry& e) const {
    ModelInfo info;
    info.name = e.spec.name;
    info.backend = e.spec.backend;
    info.state = e.state;
    info.pinned = e.spec.pinned;
    info.port = e.spec.port;
    info.pid = e.pid;
    info.since = e.since;
    info.restarts = e.restarts;
    info.last_error = e.last_error;
    info.health_url = e.spec.health_url;
    return info;
}

void ModelManager::set_state(Entry& e, ModelState s) {
    if (e.state != s) {
        spdlog::debug("model {}: {} -> {}", e.spec.name, to_string(e.state), to_string(s));
    }
    e.state = s;
    e.since = now_();
}

std::vector<ModelInfo> ModelManager::list() const {
    std::vector<ModelInfo> out;
    out.reserve(entries_.size());
    for (const auto& e : entries_) {
        std::lock_guard lk(e->mu);
        out.push_back(snapshot(*e));
    }
    return out;
}

std::optional<ModelInfo> ModelManager::get(std::string_view name) const {
    try {
        const Entry& e = find(name);
        std::lock_guard lk(e.mu);
        return snapshot(e);
    } catch (const ModelError&) {
        return std::nullopt;
    }
}

std::shared_ptr<ModelManager::Op> ModelManager::begin_start(Entry& e) {
    auto op = std::make_shared<Op>();
    e.start_op = op;
    e.restart_at.reset();
    set_state(e, ModelState::kStarting);
    return op;
}

OpResult ModelManager::start(std::string_view name, Wait wait, std::optional<seconds> timeout) {
    Entry& e = find(name);
    const milliseconds limit =
        timeout ? milliseconds(*timeout) : milliseconds(e.spec.start_timeout);
    std::unique_lock lk(e.mu);
    switch (e.state) {
        case ModelState::kRunning:
            return {OpOutcome::kAlreadyRunning, snapshot(e)};
        case ModelState::kStopping:
            throw ModelError(
                ModelError::Kind::kConflict,
                "model " + quote_name(e.spec.name) + " is stopping; start it once it has stopped");
        case ModelState::kStarting: {
            if (wait == Wait::kNo) {
                return {OpOutcome::kStarting, snapshot(e)};
            }
            const auto op = e.start_op;
            return finish_start(e, lk, op, OpOutcome::kStarted);
        }
        case ModelState::kStopped:
        case ModelState::kFailed:
            break;
    }
    if (shutting_down_) {
        throw ModelError(ModelError::Kind::kConflict, "model " + quote_name(e.spec.name) +
                                                          " cannot start: the agent is stopping");
    }
    // A start by hand is a fresh beginning: earlier crashes no longer count against it.
    e.restart_times.clear();
    e.backoff = e.spec.restart_backoff_min;
    const auto op = begin_start(e);
    if (wait == Wait::kNo) {
        OpResult r{OpOutcome::kStarting, snapshot(e)};
        lk.unlock();
        launch_start(e, op, limit, Origin::kUser);
        return r;
    }
    lk.unlock();
    run_start(e, op, limit, Origin::kUser);
    lk.lock();
    return finish_start(e, lk, op, OpOutcome::kStarted);
}

OpResult ModelManager::finish_start(Entry& e, std::unique_lock<std::mutex>& lk,
                                    const std::shared_ptr<Op>& op, OpOutcome ok_outcome) {
    e.cv.wait(lk, [&] { return op->done; });
    if (op->ok) {
        return {ok_outcome, snapshot(e)};
    }
    throw ModelError(ModelError::Kind::kStartFailed,
                     "model " + quote_name(e.spec.name) + " failed to start: " + op->error);
}

void ModelManager::launch_start(Entry& e, const std::shared_ptr<Op>& op, milliseconds limit,
                                Origin origin) {
    try {
        spawn_worker([this, &e, op, limit, origin] { run_start(e, op, limit, origin); });
    } catch (const std::exception& ex) {
        complete_start(e, op, std::string("cannot start a worker thread: ") + ex.what(), origin);
    }
}

void ModelManager::run_start(Entry& e, const std::shared_ptr<Op>& op, milliseconds limit,
                             Origin origin) {
    std::optional<std::string> error;
    try {
        bool spawned = false;
        try {
            e.backend->start();
            spawned = true;
        } catch (const std::exception& ex) {
            error = ex.what();
        }
        if (spawned) {
            error = await_healthy(e, limit);
            if (error) {
                // Never leave behind a process the manager reports as not running.
                try {
                    e.backend->stop(cleanup_stop_timeout(e));
                } catch (const std::exception& ex) {
                    *error += std::string("; stopping it failed too: ") + ex.what();
                }
            }
        }
    } catch (...) {
        error = what_of(std::current_exception());
    }
    complete_start(e, op, std::move(error), origin);
}

void ModelManager::complete_start(Entry& e, const std::shared_ptr<Op>& op,
                                  std::optional<std::string> error, Origin origin) {
    std::lock_guard lk(e.mu);
    op->done = true;
    op->ok = !error;
    if (!error) {
        set_state(e, ModelState::kRunning);
        e.last_error.reset();
        e.running_since = e.since;
        ++e.run_gen;
        spdlog::info("model {}: running", e.spec.name);
    } else {
        op->error = utf8_clean(*error);
        e.pid.reset();
        e.running_since.reset();
        spdlog::warn("model {}: start failed: {}", e.spec.name, op->error);
        if (origin == Origin::kSupervisor && !shutting_down_) {
            schedule_restart(e, op->error, std::nullopt);
        } else {
            set_state(e, ModelState::kFailed);
            e.last_error = op->error;
        }
    }
    e.cv.notify_all();
}

std::optional<std::string> ModelManager::await_healthy(Entry& e, milliseconds limit) {
    const std::string& url = e.spec.health_url;
    const auto begin = steady_clock::now();
    const auto deadline = begin + limit;
    std::string last_problem;
    for (;;) {
        if (shutting_down_) {
            return "cancelled: the agent is stopping";
        }
        bool status_known = false;
        try {
            const BackendStatus st = e.backend->status();
            if (st.state != BackendState::kRunning) {
                return describe_exit(st) + " while starting";
            }
            if (st.pid) {
                std::lock_guard lk(e.mu);
                e.pid = st.pid;
            }
            status_known = true;
        } catch (const std::exception& ex) {
            last_problem = std::string("status: ") + ex.what();
        }
        auto now = steady_clock::now();
        if (url.empty()) {
            if (status_known && now - begin >= kNoHealthUpTime) {
                return std::nullopt;
            }
        } else if (now < deadline) {
            const auto left = std::chrono::ceil<milliseconds>(deadline - now);
            try {
                if (probe_(url, std::min(kProbeTimeout, left))) {
                    return std::nullopt;
                }
                last_problem.clear();
            } catch (const std::exception& ex) {
                last_problem = ex.what();
            }
        }
        now = steady_clock::now();
        if (now >= deadline) {
            std::string msg =
                url.empty()
                    ? "not up for " + describe(kNoHealthUpTime) + " within " + describe(limit)
                    : "not healthy within " + describe(limit) + " (" + core::redact_url(url) + ")";
            if (!last_problem.empty()) {
                msg += ": " + last_problem;
            }
            return msg;
        }
        auto nap = std::min(kPollInterval, std::chrono::ceil<milliseconds>(deadline - now));
        if (url.empty()) {
            nap = std::min(nap, std::chrono::ceil<milliseconds>(begin + kNoHealthUpTime - now));
        }
        sleep_unless_shutdown(std::max(nap, milliseconds{1}));
    }
}

OpResult ModelManager::stop(std::string_view name, Wait wait, std::optional<seconds> timeout) {
    Entry& e = find(name);
    const milliseconds limit = timeout ? milliseconds(*timeout) : milliseconds(e.spec.stop_timeout);
    std::unique_lock lk(e.mu);
    switch (e.state) {
        case ModelState::kStopped:
            return {OpOutcome::kAlreadyStopped, snapshot(e)};
        case ModelState::kStarting:
            throw ModelError(ModelError::Kind::kConflict,
                             "model " + quote_name(e.spec.name) +
                                 " is starting; stop it once the start has finished");
        case ModelState::kStopping: {
            if (wait == Wait::kNo) {
                return {OpOutcome::kStopping, snapshot(e)};
            }
            const auto op = e.stop_op;
            return finish_stop(e, lk, op);
        }
        case ModelState::kRunning:
        case ModelState::kFailed:
            // Failed: the process is gone after a crash (stop() is then a no-op), but not
            // after a stop that failed, so the backend is asked either way.
            break;
    }
    e.restart_at.reset();
    auto op = std::make_shared<Op>();
    e.stop_op = op;
    set_state(e, ModelState::kStopping);
    if (wait == Wait::kNo) {
        OpResult r{OpOutcome::kStopping, snapshot(e)};
        lk.unlock();
        try {
            spawn_worker([this, &e, op, limit] { run_stop(e, op, limit); });
        } catch (const std::exception&) {
            run_stop(e, op, limit);  // no thread to be had: stop on this one
        }
        return r;
    }
    lk.unlock();
    run_stop(e, op, limit);
    lk.lock();
    return finish_stop(e, lk, op);
}

void ModelManager::run_stop(Entry& e, const std::shared_ptr<Op>& op, milliseconds limit) {
    std::optional<std::string> error;
    try {
        e.backend->stop(limit);
    } catch (...) {
        error = utf8_clean(what_of(std::current_exception()));
    }
    std::lock_guard lk(e.mu);
    op->done = true;
    op->ok = !error;
    if (!error) {
        e.pid.reset();
        e.running_since.reset();
        set_state(e, ModelState::kStopped);
        spdlog::info("model {}: stopped", e.spec.name);
    } else {
        op->error = *error;
        e.last_error = "stop failed: " + *error;
        set_state(e, ModelState::kFailed);
        spdlog::error("model {}: stop failed: {}", e.spec.name, *error);
    }
    e.cv.notify_all();
}

OpResult ModelManager::finish_stop(Entry& e, std::unique_lock<std::mutex>& lk,
                                   const std::shared_ptr<Op>& op) {
    e.cv.wait(lk, [&] { return op->done; });
    if (op->ok) {
        return {OpOutcome::kStopped, snapshot(e)};
    }
    throw ModelError(ModelError::Kind::kStopFailed,
                     "model " + quote_name(e.spec.name) + " could not be stopped: " + op->error);
}

OpResult ModelManager::restart(std::string_view name, std::optional<seconds> timeout) {
    Entry& e = find(name);
    const milliseconds limit =
        timeout ? milliseconds(*timeout) : milliseconds(e.spec.start_timeout);
    std::unique_lock lk(e.mu);
    if (e.state == ModelState::kStarting || e.state == ModelState::kStopping) {
        throw ModelError(ModelError::Kind::kConflict, "model " + quote_name(e.spec.name) + " is " +
                                                          std::string(to_string(e.state)) +
                                                          "; restart it once that has finished");
    }
    if (shutting_down_) {
        throw ModelError(ModelError::Kind::kConflict, "model " + quote_name(e.spec.name) +
                                                          " cannot restart: the agent is stopping");
    }
    e.restart_times.clear();
    e.backoff = e.spec.restart_backoff_min;
    if (e.state != ModelState::kStopped) {
        e.restart_at.reset();
        auto stop_op = std::make_shared<Op>();
        e.stop_op = stop_op;
        set_state(e, ModelState::kStopping);
        lk.unlock();
        std::optional<std::string> error;
        try {
            e.backend->stop(milliseconds(e.spec.stop_timeout));
        } catch (...) {
            error = utf8_clean(what_of(std::current_exception()));
        }
        lk.lock();
        stop_op->done = true;
        stop_op->ok = !error;
        if (error) {
            stop_op->error = *error;
            e.last_error = "stop failed: " + *error;
            set_state(e, ModelState::kFailed);
            e.cv.notify_all();
            throw ModelError(ModelError::Kind::kStopFailed, "model " + quote_name(e.spec.name) +
                                                                " could not be stopped: " + *error);
        }
        e.pid.reset();
        e.running_since.reset();
        // Straight from stopping to starting under one lock: no one can slip a start or stop in.
    }
    ++e.restarts;
    const auto op = begin_start(e);
    e.cv.notify_all();
    lk.unlock();
    run_start(e, op, limit, Origin::kUser);
    lk.lock();
    return finish_start(e, lk, op, OpOutcome::kRestarted);
}

void ModelManager::on_exit(Entry& e, const BackendStatus& st) {
    const std::string why = utf8_clean(describe_exit(st));
    const bool clean =
        st.state == BackendState::kExited && st.exit_code && *st.exit_code == 0 && !st.signal;
    const auto ran_since = e.running_since;
    e.pid.reset();
    e.running_since.reset();
    const auto policy = e.spec.restart;
    const bool again = !shutting_down_ && (policy == ModelSpec::Restart::kAlways ||
                                           (policy == ModelSpec::Restart::kOnFailure && !clean));
    if (!again) {
        if (clean) {
            set_state(e, ModelState::kStopped);
            spdlog::info("model {}: {}", e.spec.name, why);
        } else {
            e.last_error = why;
            set_state(e, ModelState::kFailed);
            spdlog::error("model {}: {}", e.spec.name, why);
        }
        return;
    }
    schedule_restart(e, why, ran_since);
}

void ModelManager::schedule_restart(Entry& e, const std::string& why,
                                    std::optional<system_clock::time_point> ran_since) {
    const auto now = now_();
    const ModelSpec& s = e.spec;
    const auto healthy = std::max<milliseconds>(kHealthyPeriod, s.restart_backoff_max);
    if (ran_since && now - *ran_since >= healthy) {
        e.backoff = s.restart_backoff_min;
    }
    while (!e.restart_times.empty() && now - e.restart_times.front() >= kRestartWindow) {
        e.restart_times.pop_front();
    }
    if (static_cast<int>(e.restart_times.size()) >= s.max_restarts) {
        e.restart_at.reset();
        e.last_error = why + "; gave up after " + std::to_string(e.restart_times.size()) +
                       " restarts within " + describe(kRestartWindow);
        set_state(e, ModelState::kFailed);
        spdlog::error("model {}: {}", s.name, *e.last_error);
        return;
    }
    const milliseconds delay = std::min(e.backoff, s.restart_backoff_max);
    e.restart_times.push_back(now);
    e.backoff = std::min(std::max(e.backoff * 2, milliseconds{1}), s.restart_backoff_max);
    e.restart_at = now + delay;
    e.last_error = why + "; restarting in " + describe(delay);
    set_state(e, ModelState::kFailed);
    spdlog::warn("model {}: {}", s.name, *e.last_error);
}

void ModelManager::supervise_once() {
    for (const auto& ep : entries_) {
        if (shutting_down_) {
            return;
        }
        Entry& e = *ep;
        std::unique_lock lk(e.mu);
        if (e.state == ModelState::kRunning) {
            const auto gen = e.run_gen;
            lk.unlock();
            BackendStatus st;
            try {
                st = e.backend->status();
            } catch (const std::exception& ex) {
                spdlog::warn("model {}: status unknown: {}", e.spec.name, ex.what());
                continue;
            }
            lk.lock();
            if (e.state != ModelState::kRunning || e.run_gen != gen) {
                continue;  // stopped or restarted meanwhile: `st` is about another run
            }
            if (st.state == BackendState::kRunning) {
                if (st.pid) {
                    e.pid = st.pid;
                }
                continue;
            }
            on_exit(e, st);
        } else if (e.state == ModelState::kFailed && e.restart_at && now_() >= *e.restart_at) {
            ++e.restarts;
            const auto op = begin_start(e);
            lk.unlock();
            spdlog::info("model {}: restarting after a crash", e.spec.name);
            launch_start(e, op, milliseconds(e.spec.start_timeout), Origin::kSupervisor);
        }
    }
}

void ModelManager::start_monitor(milliseconds interval) {
    std::lock_guard g(monitor_mu_);
    halt_monitor();
    if (shutting_down_) {
        return;
    }
    {
        std::lock_guard lk(monitor_wait_mu_);
        monitor_stop_ = false;
    }
    monitor_ = std::thread([this, interval] {
        std::unique_lock lk(monitor_wait_mu_);
        while (!monitor_stop_) {
            lk.unlock();
            try {
                supervise_once();
            } catch (const std::exception& ex) {
                spdlog::error("model monitor: {}", ex.what());
            }
            lk.lock();
            monitor_cv_.wait_for(lk, interval, [this] { return monitor_stop_; });
        }
    });
}

void ModelManager::stop_monitor() {
    std::lock_guard g(monitor_mu_);
    halt_monitor();
}

void ModelManager::halt_monitor() {
    if (!monitor_.joinable()) {
        return;
    }
    {
        std::lock_guard lk(monitor_wait_mu_);
        monitor_stop_ = true;
    }
    monitor_cv_.notify_all();
    monitor_.join();
}

void ModelManager::stop_all(milliseconds budget) {
    const auto deadline = steady_clock::now() + budget;
    {
        std::lock_guard lk(shutdown_mu_);
        shutting_down_ = true;
        shutdown_deadline_ = std::min(shutdown_deadline_, deadline);
    }
    shutdown_cv_.notify_all();
    stop_monitor();
    std::vector<std::thread> threads;
    for (const auto& ep : entries_) {
        Entry& e = *ep;
        try {
            threads.emplace_back([this, &e, deadline] { shutdown_entry(e, deadline); });
        } catch (const std::system_error&) {
            shutdown_entry(e, deadline);
        }
    }
    for (auto& t : threads) {
        t.join();
    }
    join_workers();
}

void ModelManager::shutdown_entry(Entry& e, steady_clock::time_point deadline) {
    std::unique_lock lk(e.mu);
    e.restart_at.reset();
    // A start in progress sees the shutdown and cancels itself; a stop finishes on its own.
    e.cv.wait_until(lk, deadline, [&] {
        return e.state != ModelState::kStarting && e.state != ModelState::kStopping;
    });
    if (e.state != ModelState::kRunning && e.state != ModelState::kFailed) {
        return;
    }
    auto op = std::make_shared<Op>();
    e.stop_op = op;
    set_state(e, ModelState::kStopping);
    lk.unlock();
    const auto left = std::chrono::floor<milliseconds>(deadline - steady_clock::now());
    run_stop(e, op, std::clamp(left, milliseconds{0}, milliseconds(e.spec.stop_timeout)));
}

milliseconds ModelManager::cleanup_stop_timeout(const Entry& e) const {
    const milliseconds own(e.spec.stop_timeout);
    std::lock_guard lk(shutdown_mu_);
    if (shutdown_deadline_ == steady_clock::time_point::max()) {
        return own;
    }
    const auto left = std::chrono::floor<milliseconds>(shutdown_deadline_ - steady_clock::now());
    return std::clamp(left, milliseconds{0}, own);
}

bool ModelManager::sleep_unless_shutdown(milliseconds d) {
    std::unique_lock lk(shutdown_mu_);
    return !shutdown_cv_.wait_for(lk, d, [this] { return shutting_down_.load(); });
}

void ModelManager::spawn_worker(std::function<void()> fn) {
    std::list<Worker> finished;
    {
        std::lock_guard lk(workers_mu_);
        for (auto it = workers_.begin(); it != workers_.end();) {
            auto next = std::next(it);
            if (*it->done) {
                finished.splice(finished.end(), workers_, it);
            }
            it = next;
        }
    }
    for (auto& w : finished) {
        w.thread.join();
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread t([fn = std::move(fn), done] {
        try {
            fn();
        } catch (const std::exception& ex) {
            spdlog::error("model worker: {}", ex.what());
        }
        *done = true;
    });
    std::lock_guard lk(workers_mu_);
    workers_.push_back(Worker{std::move(t), std::move(done)});
}

void ModelManager::join_workers() {
    for (;;) {
        std::list<Worker> batch;
        {
            std::lock_guard lk(workers_mu_);
            batch.swap(workers_);
        }
        if (batch.empty()) {
            return;
        }
        for (auto& w : batch) {
            w.thread.join();
        }
    }
}

}  // namespace mlk::homelab
