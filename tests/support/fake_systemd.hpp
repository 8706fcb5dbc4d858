// A private D-Bus system bus with a fake systemd on it, for tests of code that controls units
// over D-Bus (systemd itself cannot run in this container). DbusDaemon is a real dbus-daemon on
// a unix socket in a temporary directory; FakeSystemd owns one and serves a fake
// org.freedesktop.systemd1 Manager (GetUnit, LoadUnit, StartUnit, StopUnit, KillUnit, Subscribe,
// the JobRemoved signal) and unit objects (Unit and Service properties) from its own thread with
// sd-bus. Only systemd is faked: the bus, the wire protocol and sd-bus are real.
// Constructors throw ServerUnavailable when dbus-daemon is not installed (tests GTEST_SKIP).
// Thread safety: FakeSystemd's public methods may be called from any thread while it serves.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mlkeeper/util/process.hpp"
#include "mlkeeper/util/sd_bus.hpp"
#include "support/servers.hpp"
#include "support/temp_dir.hpp"

namespace mlk::testing {

// dbus-daemon with a generated minimal config (listen on unix:path=<tmpdir>/bus, allow
// everything, no service activation); ready once the socket accepts. The destructor stops it
// (SIGTERM, then SIGKILL) and reaps it.
class DbusDaemon {
  public:
    static constexpr const char* kBinary = "/usr/bin/dbus-daemon";
    DbusDaemon();
    ~DbusDaemon();
    DbusDaemon(const DbusDaemon&) = delete;
    DbusDaemon& operator=(const DbusDaemon&) = delete;

    const std::string& address() const { return address_; }  // "unix:path=..."
    // SIGKILL now and reap: every connection sees the bus go away. Idempotent.
    void kill();

  private:
    TempDir dir_;
    std::string address_;
    std::optional<util::Subprocess> proc_;
};

// Points sd-bus's default buses (DBUS_SYSTEM_BUS_ADDRESS and DBUS_SESSION_BUS_ADDRESS) at
// `address` for the guard's lifetime, then restores them. Changes process-wide state: create it
// on the test thread while no other thread opens a bus.
class ScopedBusAddress {
  public:
    explicit ScopedBusAddress(const std::string& address);
    ~ScopedBusAddress();
    ScopedBusAddress(const ScopedBusAddress&) = delete;
    ScopedBusAddress& operator=(const ScopedBusAddress&) = delete;

  private:
    std::optional<std::string> old_system_, old_session_;
};

// One unit of the fake systemd and how it behaves. Properties as systemd names them.
struct FakeUnit {
    std::string load_state = "loaded";
    std::string active_state = "inactive";
    std::string sub_state = "dead";
    std::string result = "success";  // Service.Result
    std::uint32_t main_pid = 0;
    std::uint32_t exec_main_pid = 0;
    std::int32_t exec_main_code = 0;  // CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3
    std::int32_t exec_main_status = 0;

    // Knobs.
    std::chrono::milliseconds job_delay{20};  // from StartUnit/StopUnit to JobRemoved
    std::string start_result = "done";        // the start job's result: "failed", "timeout", ...
    std::string fail_result = "exit-code";    // Service.Result after a failed start
    std::int32_t fail_status = 1;             // ExecMainStatus after a failed start
    bool start_hangs = false;                 // a start job that never finishes (activating)
    bool stop_hangs = false;    // a stop job that finishes only when KillUnit sends SIGKILL
    bool kill_ignored = false;  // KillUnit does not end a hanging stop
    // Once started, the unit dies this long afterwards on its own: failed with
    // ExecMainCode/ExecMainStatus = crash_code/crash_status.
    std::optional<std::chrono::milliseconds> crash_after;
    std::int32_t crash_code = 1;
    std::int32_t crash_status = 3;
};

class FakeSystemd {
  public:
    static constexpr const char* kUnitPrefix = "/org/freedesktop/systemd1/unit";

    // Starts the bus, takes the name org.freedesktop.systemd1 and serves until destroyed.
    FakeSystemd();
    ~FakeSystemd();
    FakeSystemd(const FakeSystemd&) = delete;
    FakeSystemd& operator=(const FakeSystemd&) = delete;

    const std::string& address() const { return bus_.address(); }

    // Defines (or replaces) a loaded unit. Units never defined are unknown: GetUnit and
    // StartUnit answer NoSuchUnit, LoadUnit makes a "not-found" one, as systemd does.
    void add_unit(const std::string& name, FakeUnit unit = {});
    // A copy of the unit's current state; throws std::out_of_range if unknown.
    FakeUnit unit(const std::string& name) const;
    // The method calls received so far, one a line: "StartUnit llama.service replace".
    std::vector<std::string> calls() const;
    bool called(const std::string& call) const;
    // Waits (at most `limit`) until `call` has been received.
    bool wait_for_call(const std::string& call, std::chrono::milliseconds limit) const;
    // Kills the dbus-daemon: the bus goes away under every client (and this fake).
    void kill_bus();

    // sd-bus callbacks, public only so that the vtables can name them.
    static int on_get_unit(sd_bus_message* m, void* self, sd_bus_error* e);
    static int on_load_unit(sd_bus_message* m, void* self, sd_bus_error* e);
    static int on_start_unit(sd_bus_message* m, void* self, sd_bus_error* e);
    static int on_stop_unit(sd_bus_message* m, void* self, sd_bus_error* e);
    static int on_kill_unit(sd_bus_message* m, void* self, sd_bus_error* e);
    static int on_subscribe(sd_bus_message* m, void* self, sd_bus_error* e);
    static int find_unit(sd_bus* bus, const char* path, const char* interface, void* self,
                         void** found, sd_bus_error* e);
    static int get_property(sd_bus* bus, const char* path, const char* interface,
                            const char* property, sd_bus_message* reply, void* self,
                            sd_bus_error* e);

  private:
    struct Timer {
        std::chrono::steady_clock::time_point at;
        std::uint32_t job = 0;  // 0: a crash of `unit`
        std::string unit;
        std::uint32_t pid = 0;  // a crash: the run (MainPID) that crashes
    };
    struct Job {
        std::uint32_t id = 0;
        std::string unit;
        bool start = false;
    };

    void serve();
    void run_due_timers();
    void finish_job(std::uint32_t id, const std::string& result);
    std::optional<std::chrono::steady_clock::time_point> next_timer() const;  // mu_ held
    void wake();

    int queue_job(sd_bus_message* m, bool start);

    DbusDaemon bus_;
    util::BusPtr conn_;  // used only by the serving thread once it runs
    std::vector<util::BusSlotPtr> slots_;
    int wake_fd_ = -1;

    mutable std::mutex mu_;
    mutable std::condition_variable changed_;
    std::map<std::string, FakeUnit> units_;
    std::vector<std::string> calls_;
    std::vector<Timer> timers_;
    std::map<std::uint32_t, Job> jobs_;  // queued, not yet removed
    std::uint32_t next_job_ = 1;
    std::uint32_t next_pid_ = 4000;
    int subscribers_ = 0;
    bool stopping_ = false;

    std::thread thread_;
};

}  // namespace mlk::testing
