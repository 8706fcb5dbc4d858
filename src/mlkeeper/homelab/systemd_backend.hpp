// Controls a model that runs as a systemd service: `systemctl start|stop|is-active|show` on the
// unit named in the registry (argv only, never a shell; each call bounded by a timeout).
// Thread safety: SystemdBackend's methods may be called from any thread at once.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/homelab/model_backend.hpp"

namespace mlk::homelab {

class SystemdBackend final : public ModelBackend {
  public:
    // Throws std::invalid_argument if spec.unit is not a valid service name or env.systemctl
    // is empty.
    SystemdBackend(ModelSpec spec, BackendEnv env);

    // `systemctl start UNIT`, bounded by spec.start_timeout (systemctl waits for the unit's own
    // start-up, e.g. Type=notify). Throws std::runtime_error with systemctl's message on failure.
    void start() override;
    // `systemctl stop UNIT`, bounded by timeout + 2 s (the unit's TimeoutStopSec does the
    // SIGTERM/SIGKILL); if that runs out, `systemctl kill --signal=SIGKILL UNIT`. Throws
    // std::runtime_error if the unit is still active afterwards.
    void stop(std::chrono::milliseconds timeout) override;
    // `systemctl is-active UNIT` (+ `show -p MainPID ...`): active, activating, deactivating and
    // reloading are kRunning; a unit seen running that is now inactive or failed without our
    // stop() is kExited once (exit code / signal from ExecMainCode and ExecMainStatus). When
    // systemctl itself fails the last known state is kept and detail says why.
    BackendStatus status() override;

  private:
    struct Call {
        bool ok = false;   // exited 0
        bool ran = false;  // started and finished in time
        std::string out, err;
        std::string why;  // a one-line reason when !ok
    };
    // What status() reports when a start() or stop() ran while it asked systemctl: their view
    // is newer. mu_ held.
    BackendStatus raced() const;
    Call systemctl(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const;

    const ModelSpec spec_;
    const BackendEnv env_;

    std::mutex op_mu_;  // serialises start() and stop()
    mutable std::mutex mu_;
    bool seen_running_ = false;     // the last look (or our start) found it running
    std::uint64_t generation_ = 0;  // bumped by stop(): a status() begun before it is stale
    std::string last_detail_ = "unknown";
};

}  // namespace mlk::homelab
