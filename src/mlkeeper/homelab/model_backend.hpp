// How a model's server is started, stopped and observed: a child process of the agent
// (ProcessBackend) or a systemd unit (SystemdBackend), behind one interface for ModelManager.
// Thread safety: every ModelBackend method may be called from any thread at any time (the manager
// calls status() from its monitor thread while a request thread is in start() or stop()).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/homelab/model_registry.hpp"

namespace mlk::homelab {

enum class BackendState { kStopped, kRunning, kExited };

struct BackendStatus {
    BackendState state = BackendState::kStopped;
    std::optional<pid_t> pid;      // kRunning (if known), kExited: the process that ran
    std::optional<int> exit_code;  // kExited by exit()
    std::optional<int> signal;     // kExited by a signal
    std::string detail;            // one line for humans: "exited with code 1", "failed", ...
};

class ModelBackend {
  public:
    virtual ~ModelBackend() = default;

    // Spawns the process / `systemctl start`s the unit; returns once it was started (not once it
    // is healthy). Already running: no-op. Throws std::runtime_error naming the model and the
    // reason (missing binary, systemctl failure).
    virtual void start() = 0;
    // Blocks until stopped: process: SIGTERM to its process group, SIGKILL after `timeout`,
    // reaped. systemd: `systemctl stop`, bounded by `timeout` plus a margin (then SIGKILL via
    // `systemctl kill`). Not running: no-op. Throws std::runtime_error only when it could not stop.
    virtual void stop(std::chrono::milliseconds timeout) = 0;
    // Does not wait for the model (systemd: one bounded systemctl call). A process that exited on
    // its own (not by stop()) is reported kExited exactly once, then kStopped.
    virtual BackendStatus status() = 0;
};

struct BackendEnv {
    std::filesystem::path log_dir;  // <log_dir>/<name>.log for process models; created if needed
    std::uint64_t log_max_size = 10 * 1000 * 1000;  // 0 = never rotate
    int log_keep = 3;
    std::vector<std::string> systemctl = {"systemctl"};  // e.g. {"systemctl", "--user"}, or a fake
    std::chrono::milliseconds systemctl_timeout{10000};  // bounds is-active, show and kill
};

// A ProcessBackend or SystemdBackend for spec.backend. Throws std::invalid_argument for a spec the
// registry would have rejected (empty command, bad unit or name).
std::unique_ptr<ModelBackend> make_backend(const ModelSpec& spec, const BackendEnv& env);

}  // namespace mlk::homelab
