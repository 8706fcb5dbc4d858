// Controls a model that runs as a systemd service (the unit named in the registry) over D-Bus:
// org.freedesktop.systemd1.Manager StartUnit/StopUnit and the job's JobRemoved signal, KillUnit,
// and the unit's properties, on the system bus (the user bus for {"systemctl", "--user"}). When
// that bus cannot be reached or has no systemd on it, through `systemctl start|stop|kill|
// is-active|show` (argv only, never a shell), which is logged once. Every call and wait is bounded.
// Thread safety: SystemdBackend's methods may be called from any thread at once (each call opens
// its own bus connection).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/homelab/model_backend.hpp"
#include "mlkeeper/util/sd_bus.hpp"

namespace mlk::homelab {

class SystemdBackend final : public ModelBackend {
  public:
    // Throws std::invalid_argument if spec.unit is not a valid service name or env.systemctl
    // is empty. The bus: env.systemctl {"systemctl"} -> the system bus (sd-bus honours
    // DBUS_SYSTEM_BUS_ADDRESS), {"systemctl", "--user"} -> the user bus; other extra systemctl
    // arguments (--host, --machine) cannot be said over D-Bus, so such a backend uses systemctl.
    SystemdBackend(ModelSpec spec, BackendEnv env);

    // D-Bus: Subscribe, StartUnit(unit, "replace"), then waits for that job's JobRemoved, bounded
    // by spec.start_timeout (at least 1 s): "done" is success; another result, an error reply or
    // no result in time throws std::runtime_error with the result and the unit's
    // ActiveState/SubState/Result (a job that ran out of time is left to systemd). systemctl:
    // `systemctl start UNIT` bounded the same way; throws with systemctl's message.
    void start() override;
    // D-Bus: StopUnit(unit, "replace") and its JobRemoved, bounded by timeout + 2 s (the unit's
    // TimeoutStopSec does the SIGTERM/SIGKILL); if that runs out, KillUnit(unit, "all", SIGKILL)
    // (systemctl: `systemctl stop`, then `systemctl kill --signal=SIGKILL`). A unit that is not
    // loaded is already stopped. Throws std::runtime_error if the unit is still active afterwards
    // or the bus went away.
    void stop(std::chrono::milliseconds timeout) override;
    // The unit's ActiveState (D-Bus: GetUnit, or LoadUnit for a unit not loaded, then the Unit's
    // ActiveState/SubState/LoadState and the Service's MainPID; systemctl: `is-active` + `show
    // -p MainPID`): active, activating, deactivating and reloading are kRunning; a unit seen
    // running that is now inactive or failed without our stop() is kExited once (exit code /
    // signal from ExecMainCode and ExecMainStatus). When the look fails the last known state is
    // kept and detail says why; while a start() or stop() runs, the state is the one it left
    // last (a stop passing through "deactivating" is never reported as a run and then an exit).
    // Each call tries the bus again, so systemctl is used only while the bus is unreachable.
    BackendStatus status() override;

  private:
    enum class Bus { kSystem, kUser, kNone };
    struct Call {
        bool ok = false;   // exited 0
        bool ran = false;  // started and finished in time
        std::string out, err;
        std::string why;  // a one-line reason when !ok
    };
    // What status() needs from systemd, by either path.
    struct Look {
        bool ran = false;  // false: why says what failed
        std::string why;
        std::string active;  // ActiveState / is-active's word
        std::string shown;   // "llama.service is active (running)"
        std::optional<pid_t> pid;
        std::string path;  // D-Bus: the unit's object path
    };
    struct ExitInfo {
        std::optional<pid_t> pid;
        std::optional<int> code, status;  // ExecMainCode (CLD_*), ExecMainStatus
    };
    struct Outcome {
        bool ok = false;
        std::string text;  // ok: the detail; else why it failed
    };

    // Marks a start() or stop() under way for its whole life, however it ends: status() then
    // leaves the state to it (a stop passes through "deactivating", which alone would read as
    // running and then as an exit).
    class Busy {
      public:
        explicit Busy(SystemdBackend& b);
        ~Busy();
        Busy(const Busy&) = delete;
        Busy& operator=(const Busy&) = delete;

      private:
        SystemdBackend& b_;
    };
    // What status() reports when a start() or stop() ran (or runs) while it asked systemd: their
    // view is newer. mu_ held.
    BackendStatus raced() const;
    Call systemctl(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const;
    // A connection to systemd's bus, or nullptr (logged once) when systemctl must do.
    util::BusPtr connect_bus() const;
    std::string bus_name() const;
    // A bus error for a message; a lost connection says so.
    std::string failure(sd_bus* bus, const util::BusError& e) const;
    std::string unit_path(sd_bus* bus) const;   // GetUnit, or LoadUnit when not loaded
    std::string unit_state(sd_bus* bus) const;  // "ActiveState=failed, SubState=..., Result=..."

    Outcome start_bus(sd_bus* bus, std::chrono::milliseconds timeout) const;
    Outcome start_systemctl(std::chrono::milliseconds timeout) const;
    Outcome stop_bus(sd_bus* bus, std::chrono::milliseconds timeout) const;
    Outcome stop_systemctl(std::chrono::milliseconds timeout) const;
    Look look_bus(sd_bus* bus) const;
    Look look_systemctl() const;
    ExitInfo exit_info_bus(sd_bus* bus, const std::string& path) const;
    ExitInfo exit_info_systemctl() const;

    const ModelSpec spec_;
    const BackendEnv env_;
    Bus bus_ = Bus::kSystem;
    mutable std::atomic<bool> fallback_logged_{false};

    std::mutex op_mu_;  // serialises start() and stop()
    mutable std::mutex mu_;
    bool seen_running_ = false;     // the last look (or our start) found it running
    std::uint64_t generation_ = 0;  // bumped by start()/stop(): a status() begun before is stale
    bool busy_ = false;             // a start() or stop() is under way
    std::string last_detail_ = "unknown";
};

}  // namespace mlk::homelab
