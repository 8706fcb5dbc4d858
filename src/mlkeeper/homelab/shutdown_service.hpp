// Schedules one power-off of this machine (the seeds' shutdown service): schedule, replace,
// cancel, and a timer thread that runs the configured command (systemctl poweroff) when it is
// due. The schedule is kept in the state store, so an agent restart keeps it; one left from
// before a reboot is dropped, and one whose time passed while the agent was down runs at once.
// Thread safety: every public member may be called from any thread (one mutex); the power-off
// command runs on the timer thread without the lock held.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mlkeeper/util/process.hpp"

namespace mlk::core {
class Config;
class StateStore;
}  // namespace mlk::core

namespace mlk::homelab {

using SysTime = std::chrono::system_clock::time_point;

struct ShutdownSettings {
    std::vector<std::string> command{"systemctl", "poweroff"};  // argv, never through a shell
    std::chrono::minutes max_delay{7 * 24 * 60};
    // The command gets this long; systemctl poweroff only queues the job and returns at once.
    std::chrono::milliseconds command_timeout{60000};
};

// [shutdown] command and max_delay (keys listed in keys-shutdown.txt). Throws ConfigError for an
// empty command or a max_delay under one minute.
ShutdownSettings shutdown_settings_from(const core::Config& cfg);

inline constexpr std::size_t kMaxReasonChars = 200;
inline constexpr const char* kShutdownStateKey = "shutdown.scheduled";

// One scheduled power-off. Times are whole seconds.
struct ScheduledShutdown {
    SysTime at;
    std::chrono::minutes delay{0};
    std::string reason;
    std::string requested_by;  // token name, or the client address without authentication
    SysTime created_at;
    // Which boot it was made in, to drop it after a reboot: the kernel's boot id (exact) and the
    // boot time (the fallback when no boot id could be read).
    std::string boot_id;
    std::optional<SysTime> boot_time;

    bool operator==(const ScheduledShutdown&) const = default;
};

// The state store's JSON form ({"version": 1, "at": "...", ...}), and back. from_state_json
// throws std::invalid_argument for a document it cannot use.
std::string to_state_json(const ScheduledShutdown& s);
ScheduledShutdown from_state_json(std::string_view text);

// Why `delay`/`reason` would be refused ("delay_minutes must be between 0 and 10080 ..."), or
// nullopt when they are fine.
// A reason is at most kMaxReasonChars characters of valid UTF-8 with no control characters.
std::optional<std::string> validate_request(std::chrono::minutes delay, std::string_view reason,
                                            std::chrono::minutes max_delay);

enum class Replace { kNo, kYes };

struct ScheduleResult {
    enum class Status { kScheduled, kReplaced, kConflict };
    Status status = Status::kScheduled;
    // kScheduled/kReplaced: the new schedule; kConflict: the one already there (left as it was).
    ScheduledShutdown shutdown;
    std::optional<ScheduledShutdown> replaced;  // kReplaced: the schedule it replaced
};

// Which boot this is: the kernel's boot id and the boot time, each nullopt when unreadable.
struct BootIdentity {
    std::optional<std::string> boot_id;
    std::optional<SysTime> boot_time;
};

// The OS seams of a ShutdownService; empty members get the real ones (system clock,
// util::run_process, /proc).
struct ShutdownSeams {
    std::function<SysTime()> now;
    // Runs the power-off command. `opts` carries the timeout and a cancel flag that is set
    // when the service is destroyed.
    std::function<util::RunResult(const std::vector<std::string>& argv,
                                  const util::RunOptions& opts)>
        power_off;
    std::function<BootIdentity()> boot;
    // The timer re-reads the clock at least this often, so a wall-clock step (NTP, resume
    // from suspend) or a test's fake clock moves the power-off with it.
    std::chrono::milliseconds max_sleep{5000};
};

class ShutdownService {
  public:
    // Loads a schedule a previous agent left in `store` (may be nullptr: no persistence), drops
    // it if the machine rebooted since it was made, and starts the timer thread. A schedule
    // already due runs at once, on the timer thread.
    ShutdownService(ShutdownSettings settings, core::StateStore* store, ShutdownSeams seams = {});
    // Stops the timer thread; a power-off command still running is cancelled.
    ~ShutdownService();
    ShutdownService(const ShutdownService&) = delete;
    ShutdownService& operator=(const ShutdownService&) = delete;

    // Schedules a power-off `delay` from now. Throws std::invalid_argument (the message of
    // validate_request) for a value out of range, and whatever the state store throws when the
    // schedule cannot be saved (then nothing changed). An existing schedule is a kConflict
    // unless `replace` is kYes.
    ScheduleResult schedule(std::chrono::minutes delay, std::string reason,
                            std::string requested_by, Replace replace = Replace::kNo);
    // Cancels the schedule; nullopt when there was none. Never throws for the state store: the
    // power-off is cancelled in memory regardless, and a failed save is logged as an error.
    std::optional<ScheduledShutdown> cancel();
    std::optional<ScheduledShutdown> current() const;

    const ShutdownSettings& settings() const { return settings_; }

    // How many times the timer ran the power-off command (tests, metrics).
    std::size_t power_offs() const { return power_offs_.load(); }

  private:
    void load();
    void persist_locked(const std::optional<ScheduledShutdown>& s);  // throws
    void run_timer();
    void fire(const ScheduledShutdown& s);
    SysTime now_seconds() const;

    ShutdownSettings settings_;
    core::StateStore* store_;
    ShutdownSeams seams_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::optional<ScheduledShutdown> current_;
    bool stop_ = false;
    std::atomic<bool> cancel_run_{false};
    std::atomic<std::size_t> power_offs_{0};
    std::thread timer_;  // last: started once every member above exists
};

}  // namespace mlk::homelab
