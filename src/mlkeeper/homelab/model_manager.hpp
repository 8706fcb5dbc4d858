// Starts, stops and supervises the registered models: one ModelBackend each, a state machine
// stopped -> starting -> running -> stopping -> stopped (and failed, with the reason), health
// polling after a start, and crash restarts with exponential backoff from a monitor thread.
// Thread safety: every public member may be called from any number of threads at once. Each model
// has its own lock, never held while a backend starts, stops or is probed, so operations on
// different models run in parallel and list()/get() never wait for a slow start.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mlkeeper/homelab/model_backend.hpp"
#include "mlkeeper/homelab/model_registry.hpp"

namespace mlk::homelab {

enum class ModelState { kStopped, kStarting, kRunning, kStopping, kFailed };
std::string_view to_string(ModelState s);  // "stopped", "starting", ...

// A snapshot of one model: the "model object" of the REST API.
struct ModelInfo {
    std::string name;
    ModelSpec::Backend backend = ModelSpec::Backend::kProcess;
    ModelState state = ModelState::kStopped;
    bool pinned = false;
    std::optional<int> port;
    std::optional<pid_t> pid;                     // known while starting/running/stopping
    std::chrono::system_clock::time_point since;  // when it entered `state`
    int restarts = 0;                       // automatic restarts after a crash plus restart() calls
    std::optional<std::string> last_error;  // why it last failed; kept until it runs again
    std::string health_url;                 // "" = none (JSON null)

    bool operator==(const ModelInfo&) const = default;
};

// {"name", "backend", "state", "pinned", "port", "pid", "since", "restarts", "last_error",
//  "health_url"} with null for absent values and `since` as RFC 3339 UTC.
nlohmann::json to_json(const ModelInfo& info);

// Whether an operation returns when it is done or as soon as it was begun (on a worker thread).
enum class Wait { kYes, kNo };

enum class OpOutcome {
    kStarted,
    kAlreadyRunning,
    kStarting,  // Wait::kNo: begun (or joined) a start
    kStopped,
    kAlreadyStopped,
    kStopping,  // Wait::kNo: begun (or joined) a stop
    kRestarted,
};
// The API's "result" word: "started", "already_running", "starting", "stopped", ...
std::string_view to_string(OpOutcome o);

struct OpResult {
    OpOutcome outcome = OpOutcome::kStarted;
    ModelInfo model;  // the state right after the operation (or after it was begun)
};

// An operation that could not be done. The message is one line that names the model (quoted by
// quote_name(), so it is safe to show whatever the caller typed).
class ModelError : public std::runtime_error {
  public:
    enum class Kind {
        kNotFound,     // no such model in the registry
        kConflict,     // the model is busy the other way (start while stopping, ...)
        kStartFailed,  // could not spawn, exited while starting, or never became healthy
        kStopFailed,   // the backend could not stop it
    };
    ModelError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const { return kind_; }

  private:
    Kind kind_;
};

using BackendFactory = std::function<std::unique_ptr<ModelBackend>(const ModelSpec&)>;
// true when `url` answers healthy within `timeout`; may throw (the start then fails with the
// exception's message if the model never becomes healthy).
using HealthProbe = std::function<bool(const std::string& url, std::chrono::milliseconds timeout)>;

// GET `url` through core::http_request bounded by `timeout`: 2xx = healthy, any other status or a
// transport failure (refused, timeout) = not healthy. Throws only if libcurl cannot be loaded.
bool http_health_probe(const std::string& url, std::chrono::milliseconds timeout);

// `name` as a JSON string literal for messages: at most its first 64 bytes (cut at a UTF-8
// character boundary, "..." appended when cut), non-ASCII and control characters as \u escapes
// and invalid UTF-8 replaced, so a hostile name cannot forge log lines or break JSON.
std::string quote_name(std::string_view name);

class ModelManager {
  public:
    using Clock = std::function<std::chrono::system_clock::time_point()>;

    // Health polling during a start: one probe per interval, each bounded by kProbeTimeout.
    static constexpr std::chrono::milliseconds kPollInterval{250};
    static constexpr std::chrono::milliseconds kProbeTimeout{2000};
    // A model without a health URL counts as running once its process stayed up this long.
    static constexpr std::chrono::milliseconds kNoHealthUpTime{1000};
    // The crash backoff falls back to restart_backoff_min after the model ran this long (or
    // restart_backoff_max, if that is longer) without crashing.
    static constexpr std::chrono::seconds kHealthyPeriod{60};

    // One backend per spec from `make` (its exceptions propagate). Throws std::invalid_argument
    // for two specs with the same name. `now` stamps `since` and times the crash backoff and the
    // restart window (tests pass a fake); waits during a start use the steady clock.
    ModelManager(
        std::vector<ModelSpec> specs, BackendFactory make, HealthProbe probe = http_health_probe,
        Clock now = [] { return std::chrono::system_clock::now(); });
    // Stops the monitor, cancels starts in progress (their processes are stopped) and joins every
    // worker thread. Running models are left to their backends' destructors; call stop_all()
    // first to stop them in an orderly way.
    ~ModelManager();
    ModelManager(const ModelManager&) = delete;
    ModelManager& operator=(const ModelManager&) = delete;

    // Every registered model, sorted by name.
    std::vector<ModelInfo> list() const;
    std::optional<ModelInfo> get(std::string_view name) const;

    // Starts the backend and waits until the health URL answers 2xx (probed every kPollInterval)
    // or `timeout` (default: the spec's start_timeout) runs out; the process exiting meanwhile
    // fails the start at once. A failed start stops what was spawned and leaves the model failed
    // with last_error set (ModelError kStartFailed). Running: kAlreadyRunning. Starting: joins the
    // start in progress (same outcome; `timeout` is the first caller's). Stopping, or after
    // stop_all(): kConflict. Wait::kNo returns kStarting at once and runs the start on a worker.
    OpResult start(std::string_view name, Wait wait, std::optional<std::chrono::seconds> timeout);
    // Stops the backend, giving it `timeout` (default: the spec's stop_timeout) between SIGTERM
    // and SIGKILL. Stopped: kAlreadyStopped. Failed: the backend is asked too (a stop that failed
    // may have left the process), a pending crash restart is cancelled, kStopped. Stopping: joins.
    // Starting: kConflict. A backend that cannot stop leaves the model failed (ModelError
    // kStopFailed). Wait::kNo: kStopping at once.
    OpResult stop(std::string_view name, Wait wait, std::optional<std::chrono::seconds> timeout);
    // Stop (if running) then start, waiting for both; `timeout` bounds the start. Starting or
    // stopping: kConflict. Counts as a restart.
    OpResult restart(std::string_view name, std::optional<std::chrono::seconds> timeout);

    // One pass of supervision: a running model whose backend reports kExited is a crash. Policy
    // kAlways, or kOnFailure with a non-zero exit or a signal, restarts it after a backoff that
    // doubles from restart_backoff_min up to restart_backoff_max; once max_restarts restarts
    // happened within kRestartWindow the model stays failed. Otherwise a clean exit is stopped
    // and a crash failed. Due restarts are started on worker threads.
    void supervise_once();
    // Runs supervise_once() every `interval` on a thread of its own (restarts it if running).
    void start_monitor(std::chrono::milliseconds interval);
    void stop_monitor();

    // Agent shutdown: no new starts or restarts from now on; starts in progress are cancelled and
    // every model that runs is stopped, in parallel, each given min(stop_timeout, what is left
    // of `budget`) before SIGKILL.
    void stop_all(std::chrono::milliseconds budget);

  private:
    struct Op;
    struct Entry;
    enum class Origin { kUser, kSupervisor };

    Entry& find(std::string_view name) const;   // throws ModelError kNotFound
    ModelInfo snapshot(const Entry& e) const;   // e.mu held
    void set_state(Entry& e, ModelState s);     // e.mu held
    std::shared_ptr<Op> begin_start(Entry& e);  // e.mu held
    void run_start(Entry& e, const std::shared_ptr<Op>& op, std::chrono::milliseconds timeout,
                   Origin origin);
    // Runs the start on a worker thread (on failure to get one, fails the start).
    void launch_start(Entry& e, const std::shared_ptr<Op>& op, std::chrono::milliseconds timeout,
                      Origin origin);
    void complete_start(Entry& e, const std::shared_ptr<Op>& op, std::optional<std::string> error,
                        Origin origin);
    // nullopt once healthy, else why not.
    std::optional<std::string> await_healthy(Entry& e, std::chrono::milliseconds timeout);
    void run_stop(Entry& e, const std::shared_ptr<Op>& op, std::chrono::milliseconds timeout);
    void on_exit(Entry& e, const BackendStatus& st);  // e.mu held
    void schedule_restart(Entry& e, const std::string& why,
                          std::optional<std::chrono::system_clock::time_point> ran_since);
    OpResult finish_start(Entry& e, std::unique_lock<std::mutex>& lk, const std::shared_ptr<Op>& op,
                          OpOutcome ok_outcome);
    OpResult finish_stop(Entry& e, std::unique_lock<std::mutex>& lk, const std::shared_ptr<Op>& op);
    void shutdown_entry(Entry& e, std::chrono::steady_clock::time_point deadline);
    std::chrono::milliseconds cleanup_stop_timeout(const Entry& e) const;
    // Sleeps up to `d`; false when shutdown began meanwhile.
    bool sleep_unless_shutdown(std::chrono::milliseconds d);
    void halt_monitor();  // monitor_mu_ held
    void spawn_worker(std::function<void()> fn);
    void join_workers();

    std::vector<std::unique_ptr<Entry>> entries_;  // sorted by name; fixed after construction
    HealthProbe probe_;
    Clock now_;

    std::atomic<bool> shutting_down_{false};
    mutable std::mutex shutdown_mu_;
    std::condition_variable shutdown_cv_;
    std::chrono::steady_clock::time_point shutdown_deadline_ =
        std::chrono::steady_clock::time_point::max();  // shutdown_mu_

    std::mutex monitor_mu_;  // serializes start_monitor()/stop_monitor()
    std::mutex monitor_wait_mu_;
    std::condition_variable monitor_cv_;
    bool monitor_stop_ = false;  // monitor_wait_mu_
    std::thread monitor_;

    struct Worker {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;
    };
    std::mutex workers_mu_;
    std::list<Worker> workers_;
};

}  // namespace mlk::homelab
