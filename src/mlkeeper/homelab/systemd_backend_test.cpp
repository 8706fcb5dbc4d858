#include "mlkeeper/homelab/systemd_backend.hpp"

#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "support/fake_systemd.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using mlk::testing::DbusDaemon;
using mlk::testing::FakeSystemd;
using mlk::testing::FakeUnit;
using mlk::testing::ScopedBusAddress;
using mlk::testing::ServerUnavailable;
using mlk::testing::slurp;
using mlk::testing::TempDir;
using mlk::testing::wait_until;

// A stand-in for systemctl: appends its argv (one call a line, arguments separated by '|') to
// `calls`, keeps the unit's state in `state`, and misbehaves when the test drops files such as
// `start_fails` or `stop_hangs` beside it.
constexpr const char* kFakeSystemctl = R"(#!/bin/sh
d=$(dirname "$0")
line=""
for a in "$@"; do line="$line|$a"; done
echo "$line" >> "$d/calls"
[ "$1" = "--user" ] && shift
cmd=$1
eval "unit=\${$#}"
state=$(cat "$d/state" 2>/dev/null || echo inactive)
case "$cmd" in
  start)
    if [ -e "$d/start_fails" ]; then
      echo "Job for $unit failed because the control process exited with error code." >&2
      exit 1
    fi
    echo active > "$d/state" ;;
  stop)
    if [ -e "$d/stop_hangs" ]; then sleep 30; fi
    echo inactive > "$d/state" ;;
  kill)
    if [ -e "$d/kill_fails" ]; then exit 1; fi
    echo failed > "$d/state" ;;
  is-active)
    echo "$state"
    [ "$state" = active ] && exit 0
    exit 3 ;;
  show)
    if [ "$state" = active ]; then echo "MainPID=4242"; else echo "MainPID=0"; fi
    echo "ExecMainPID=4242"
    cat "$d/exec_main" 2>/dev/null || printf 'ExecMainCode=1\nExecMainStatus=7\n' ;;
  *) echo "unknown command $cmd" >&2; exit 1 ;;
esac
exit 0
)";

// The systemctl path: sd-bus's default buses point at a socket that does not exist, so the backend
// falls back to the fake systemctl (and never reaches a real systemd on a developer's machine).
class FakeSystemctl {
  public:
    FakeSystemctl() : no_bus_("unix:path=" + (dir_ / "no-bus").string()) {
        script_ = dir_.write("systemctl", kFakeSystemctl);
        ::chmod(script_.c_str(), 0755);
    }
    BackendEnv env() const {
        BackendEnv e;
        e.log_dir = dir_ / "logs";
        e.systemctl = {script_.string()};
        e.systemctl_timeout = 5000ms;
        return e;
    }
    std::string calls() const { return slurp(dir_ / "calls"); }
    void set_state(const std::string& s) const { dir_.write("state", s + "\n"); }
    void touch(const std::string& name, const std::string& content = "") const {
        dir_.write(name, content);
    }
    const TempDir& dir() const { return dir_; }

  private:
    TempDir dir_;
    ScopedBusAddress no_bus_;
    std::filesystem::path script_;
};

ModelSpec unit_model(const std::string& unit = "llama.service") {
    ModelSpec s;
    s.name = "llama";
    s.backend = ModelSpec::Backend::kSystemd;
    s.unit = unit;
    s.start_timeout = 5s;
    return s;
}

TEST(SystemdBackend, StartStatusStop) {
    FakeSystemctl fake;
    SystemdBackend b(unit_model(), fake.env());
    auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);
    EXPECT_EQ(s.detail, "llama.service is inactive");
    b.start();
    s = b.status();
    EXPECT_EQ(s.state, BackendState::kRunning);
    EXPECT_EQ(s.pid, 4242);
    EXPECT_EQ(s.detail, "llama.service is active");
    b.stop(1000ms);
    s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);  // our stop is not an exit
    EXPECT_EQ(fake.calls(),
              "|is-active|llama.service\n"
              "|start|llama.service\n"
              "|is-active|llama.service\n"
              "|show|-p|MainPID|llama.service\n"
              "|stop|llama.service\n"
              "|is-active|llama.service\n");
}

TEST(SystemdBackend, AUnitThatDiesIsReportedOnceAsExited) {
    FakeSystemctl fake;
    SystemdBackend b(unit_model(), fake.env());
    b.start();
    ASSERT_EQ(b.status().state, BackendState::kRunning);
    fake.set_state("failed");
    auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kExited);
    EXPECT_EQ(s.exit_code, 7);
    EXPECT_FALSE(s.signal.has_value());
    EXPECT_EQ(s.pid, 4242);
    EXPECT_EQ(s.detail, "llama.service is failed, exited with code 7");
    s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);
    EXPECT_NE(fake.calls().find("|show|-p|ExecMainPID|-p|ExecMainCode|-p|ExecMainStatus|"
                                "llama.service\n"),
              std::string::npos);
}

TEST(SystemdBackend, AKilledUnitReportsTheSignal) {
    FakeSystemctl fake;
    fake.touch("exec_main", "ExecMainCode=2\nExecMainStatus=9\n");
    SystemdBackend b(unit_model(), fake.env());
    b.start();
    ASSERT_EQ(b.status().state, BackendState::kRunning);
    fake.set_state("inactive");
    const auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kExited);
    EXPECT_EQ(s.signal, 9);
    EXPECT_FALSE(s.exit_code.has_value());
}

TEST(SystemdBackend, AUnitStartedElsewhereIsSeenRunning) {
    FakeSystemctl fake;
    fake.set_state("active");
    SystemdBackend b(unit_model(), fake.env());
    EXPECT_EQ(b.status().state, BackendState::kRunning);
    fake.set_state("activating");
    EXPECT_EQ(b.status().state, BackendState::kRunning);
    fake.set_state("inactive");
    EXPECT_EQ(b.status().state, BackendState::kExited);
    EXPECT_EQ(b.status().state, BackendState::kStopped);
}

TEST(SystemdBackend, StartFailureCarriesSystemctlsMessage) {
    FakeSystemctl fake;
    fake.touch("start_fails");
    SystemdBackend b(unit_model(), fake.env());
    try {
        b.start();
        FAIL() << "start() should throw";
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("model llama: "), std::string::npos) << msg;
        EXPECT_NE(msg.find("start llama.service exited with code 1: Job for llama.service failed"),
                  std::string::npos)
            << msg;
    }
    EXPECT_EQ(b.status().state, BackendState::kStopped);
}

TEST(SystemdBackend, MissingSystemctlFailsClearly) {
    FakeSystemctl fake;
    auto env = fake.env();
    env.systemctl = {(fake.dir() / "no-such-systemctl").string()};
    SystemdBackend b(unit_model(), env);
    try {
        b.start();
        FAIL() << "start() should throw";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot run "), std::string::npos) << e.what();
    }
    const auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);
    EXPECT_NE(s.detail.find("cannot run "), std::string::npos) << s.detail;
}

TEST(SystemdBackend, AHangingStopIsBoundedThenForced) {
    FakeSystemctl fake;
    SystemdBackend b(unit_model(), fake.env());
    b.start();
    fake.touch("stop_hangs");
    const auto t0 = Clock::now();
    b.stop(100ms);  // + the 2 s margin, then `systemctl kill`
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 2000ms);
    EXPECT_LT(took, 8000ms);
    EXPECT_NE(fake.calls().find("|kill|--signal=SIGKILL|llama.service\n"), std::string::npos);
    EXPECT_EQ(b.status().state, BackendState::kStopped);
}

TEST(SystemdBackend, AStopThatCannotStopThrows) {
    FakeSystemctl fake;
    SystemdBackend b(unit_model(), fake.env());
    b.start();
    fake.touch("stop_hangs");
    fake.touch("kill_fails");
    try {
        b.stop(100ms);
        FAIL() << "stop() should throw";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot stop llama.service"), std::string::npos)
            << e.what();
    }
}

TEST(SystemdBackend, ExtraSystemctlArgumentsAndOddUnitNamesStayArguments) {
    FakeSystemctl fake;
    auto env = fake.env();
    env.systemctl.push_back("--user");
    SystemdBackend b(unit_model("model@8001:a_b.service"), env);
    b.start();
    EXPECT_EQ(fake.calls(), "|--user|start|model@8001:a_b.service\n");
}

TEST(SystemdBackend, RejectsBadUnitNames) {
    FakeSystemctl fake;
    for (const char* unit : {"", "llama", "a;b.service", "-H.service", "a b.service",
                             "$(reboot).service", "../x.service"}) {
        EXPECT_THROW(SystemdBackend(unit_model(unit), fake.env()), std::invalid_argument) << unit;
    }
    auto env = fake.env();
    env.systemctl.clear();
    EXPECT_THROW(SystemdBackend(unit_model(), env), std::invalid_argument);
    EXPECT_EQ(fake.calls(), "");  // nothing ran
}

TEST(SystemdBackend, StatusFromAnotherThreadDuringStopNeverSaysExited) {
    FakeSystemctl fake;
    SystemdBackend b(unit_model(), fake.env());
    for (int i = 0; i < 3; ++i) {
        b.start();
        std::atomic<bool> done{false};
        std::thread monitor([&] {
            while (!done) {
                EXPECT_NE(b.status().state, BackendState::kExited);
            }
        });
        b.stop(1000ms);
        done = true;
        monitor.join();
        EXPECT_EQ(b.status().state, BackendState::kStopped);
    }
}

TEST(SystemdBackend, FallsBackToSystemctlAndSaysSoOnce) {
    FakeSystemctl fake;
    auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(32);
    const auto old = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    {
        SystemdBackend b(unit_model(), fake.env());
        b.start();
        EXPECT_EQ(b.status().state, BackendState::kRunning);
        b.stop(1000ms);
    }
    spdlog::set_default_logger(old);
    const auto lines = sink->last_formatted();
    int fallbacks = 0;
    for (const auto& l : lines) {
        if (l.find("instead of D-Bus") != std::string::npos) {
            ++fallbacks;
            EXPECT_NE(l.find("model llama: cannot connect to the system bus"), std::string::npos)
                << l;
        }
    }
    EXPECT_EQ(fallbacks, 1);
    EXPECT_NE(fake.calls().find("|start|llama.service\n"), std::string::npos);
}

// A bus that is up but has no systemd on it (a container with dbus only): systemctl as well.
TEST(SystemdBackend, FallsBackToSystemctlWhenTheBusHasNoSystemd) {
    std::optional<DbusDaemon> bus;
    try {
        bus.emplace();
    } catch (const ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    FakeSystemctl fake;
    ScopedBusAddress to_bus(bus->address());
    SystemdBackend b(unit_model(), fake.env());
    b.start();
    EXPECT_EQ(fake.calls(), "|start|llama.service\n");
}

// ---- over D-Bus, against a fake systemd on a private dbus-daemon ----

class SystemdBackendBus : public ::testing::Test {
  protected:
    void SetUp() override {
        try {
            fake_.emplace();
        } catch (const ServerUnavailable& e) {
            GTEST_SKIP() << e.what();
        }
        address_.emplace(fake_->address());
    }
    void TearDown() override {
        address_.reset();
        fake_.reset();
    }
    // systemctl that fails loudly: over D-Bus it must never run.
    BackendEnv env() const {
        BackendEnv e;
        e.log_dir = dir_ / "logs";
        e.systemctl = {(dir_ / "no-systemctl-here").string()};
        e.systemctl_timeout = 3000ms;  // bounds each bus call; generous for loaded CI machines
        return e;
    }
    static std::string start_error(SystemdBackend& b) {
        try {
            b.start();
        } catch (const std::runtime_error& e) {
            return e.what();
        }
        return "start() did not throw";
    }

    TempDir dir_;
    std::optional<FakeSystemd> fake_;
    std::optional<ScopedBusAddress> address_;
};

TEST_F(SystemdBackendBus, StartStatusStop) {
    fake_->add_unit("llama.service");
    SystemdBackend b(unit_model(), env());
    auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);
    EXPECT_EQ(s.detail, "llama.service is inactive (dead)");
    const auto t0 = Clock::now();
    b.start();
    EXPECT_LT(Clock::now() - t0, 1000ms);
    EXPECT_EQ(fake_->unit("llama.service").active_state, "active");
    s = b.status();
    EXPECT_EQ(s.state, BackendState::kRunning);
    EXPECT_EQ(s.pid, 4000);
    EXPECT_EQ(s.detail, "llama.service is active (running)");
    b.stop(1000ms);
    EXPECT_EQ(fake_->unit("llama.service").active_state, "inactive");
    s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);  // our stop is not an exit
    EXPECT_TRUE(fake_->called("Subscribe"));
    EXPECT_TRUE(fake_->called("StartUnit llama.service replace"));
    EXPECT_TRUE(fake_->called("StopUnit llama.service replace"));
    EXPECT_FALSE(fake_->called("KillUnit llama.service all 9"));
    EXPECT_FALSE(std::filesystem::exists(dir_ / "logs"));  // no systemctl, no log
}

TEST_F(SystemdBackendBus, AFailedStartNamesTheResultAndTheUnitState) {
    for (const char* result : {"failed", "timeout", "dependency"}) {
        FakeUnit u;
        u.start_result = result;
        u.fail_result = "exit-code";
        fake_->add_unit("llama.service", u);
        SystemdBackend b(unit_model(), env());
        const auto msg = start_error(b);
        EXPECT_NE(msg.find("model llama: start job of llama.service finished with result \"" +
                           std::string(result) + "\""),
                  std::string::npos)
            << msg;
        EXPECT_NE(msg.find("ActiveState=failed, SubState=failed, Result=exit-code"),
                  std::string::npos)
            << msg;
        EXPECT_NE(msg.find("journalctl -u llama.service"), std::string::npos) << msg;
        const auto s = b.status();
        EXPECT_EQ(s.state, BackendState::kStopped);  // it never ran: not an exit
        EXPECT_EQ(s.detail, "llama.service is failed (failed)");
    }
}

TEST_F(SystemdBackendBus, AHangingStartIsBoundedByTheStartTimeout) {
    FakeUnit u;
    u.start_hangs = true;
    fake_->add_unit("llama.service", u);
    auto spec = unit_model();
    spec.start_timeout = 1s;
    SystemdBackend b(spec, env());
    const auto t0 = Clock::now();
    const auto msg = start_error(b);
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 1000ms);
    EXPECT_LT(took, 3000ms);
    EXPECT_NE(msg.find("start of llama.service did not finish within 1000 ms (ActiveState="
                       "activating, SubState=start"),
              std::string::npos)
        << msg;
    // Still starting: a later look says so.
    EXPECT_EQ(b.status().state, BackendState::kRunning);
}

TEST_F(SystemdBackendBus, AHangingStopIsBoundedThenKilled) {
    FakeUnit u;
    u.stop_hangs = true;
    fake_->add_unit("llama.service", u);
    SystemdBackend b(unit_model(), env());
    b.start();
    const auto t0 = Clock::now();
    b.stop(100ms);  // + the 2 s margin, then KillUnit
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 2100ms);
    EXPECT_LT(took, 4000ms);
    EXPECT_TRUE(fake_->called("KillUnit llama.service all 9"));
    EXPECT_EQ(fake_->unit("llama.service").active_state, "failed");
    const auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);  // killed by our stop: not an exit
}

TEST_F(SystemdBackendBus, AStopThatCannotStopThrows) {
    FakeUnit u;
    u.stop_hangs = true;
    u.kill_ignored = true;
    fake_->add_unit("llama.service", u);
    auto short_env = env();
    short_env.systemctl_timeout = 1000ms;  // also bounds the wait for the killed stop job
    SystemdBackend b(unit_model(), short_env);
    b.start();
    const auto t0 = Clock::now();
    try {
        b.stop(100ms);
        FAIL() << "stop() should throw";
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("model llama: cannot stop llama.service: the stop job did not finish "
                           "within 2100 ms; llama.service is still deactivating"),
                  std::string::npos)
            << msg;
    }
    // 2.1 s for the stop job, then at most systemctl_timeout for the killed one.
    EXPECT_LT(Clock::now() - t0, 5000ms);
    EXPECT_TRUE(fake_->called("KillUnit llama.service all 9"));
}

TEST_F(SystemdBackendBus, AUnitThatCrashesLaterIsReportedOnceAsExited) {
    struct Case {
        std::int32_t code, status;
        bool by_signal;
    };
    for (const Case c : {Case{CLD_EXITED, 3, false}, Case{CLD_KILLED, SIGSEGV, true}}) {
        FakeUnit u;
        u.crash_after = 100ms;
        u.crash_code = c.code;
        u.crash_status = c.status;
        fake_->add_unit("llama.service", u);
        SystemdBackend b(unit_model(), env());
        b.start();
        std::optional<BackendStatus> seen;
        ASSERT_TRUE(wait_until(
            [&] {
                auto s = b.status();
                if (s.state == BackendState::kRunning) {
                    return false;
                }
                seen = s;
                return true;
            },
            3000ms));
        EXPECT_EQ(seen->state, BackendState::kExited);
        ASSERT_TRUE(seen->pid.has_value());
        EXPECT_GE(*seen->pid, 4000);
        if (c.by_signal) {
            EXPECT_EQ(seen->signal, SIGSEGV);
            EXPECT_FALSE(seen->exit_code.has_value());
            EXPECT_EQ(seen->detail, "llama.service is failed (failed), killed by signal 11");
        } else {
            EXPECT_EQ(seen->exit_code, 3);
            EXPECT_FALSE(seen->signal.has_value());
            EXPECT_EQ(seen->detail, "llama.service is failed (failed), exited with code 3");
        }
        EXPECT_EQ(b.status().state, BackendState::kStopped);  // once
    }
}

TEST_F(SystemdBackendBus, AnUnknownUnit) {
    SystemdBackend b(unit_model("nope.service"), env());
    auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);
    EXPECT_EQ(s.detail, "nope.service is inactive (dead), unit not-found");
    EXPECT_TRUE(fake_->called("GetUnit nope.service"));
    EXPECT_TRUE(fake_->called("LoadUnit nope.service"));
    const auto msg = start_error(b);
    EXPECT_EQ(msg,
              "model llama: cannot start nope.service: StartUnit: Unit nope.service not found.");
    EXPECT_NO_THROW(b.stop(100ms));  // nothing runs: nothing to stop
    EXPECT_EQ(b.status().state, BackendState::kStopped);
}

TEST_F(SystemdBackendBus, TheBusGoingAwayMidCallIsAClearError) {
    FakeUnit u;
    u.start_hangs = true;
    fake_->add_unit("llama.service", u);
    auto spec = unit_model();
    spec.start_timeout = 30s;
    SystemdBackend b(spec, env());
    std::thread killer([&] {
        if (fake_->wait_for_call("StartUnit llama.service replace", 5000ms)) {
            fake_->kill_bus();
        }
    });
    const auto t0 = Clock::now();
    const auto msg = start_error(b);
    killer.join();
    EXPECT_LT(Clock::now() - t0, 5000ms);  // not the 30 s start timeout
    EXPECT_NE(msg.find("model llama: cannot start llama.service: the connection to the system "
                       "bus was lost ("),
              std::string::npos)
        << msg;
    // Later calls find no bus and fall back to systemctl (missing here): the last state stays.
    const auto s = b.status();
    EXPECT_EQ(s.state, BackendState::kStopped);
    EXPECT_NE(s.detail.find("cannot run "), std::string::npos) << s.detail;
}

// {"systemctl", "--user"} is the user's manager: the user bus (DBUS_SESSION_BUS_ADDRESS).
TEST_F(SystemdBackendBus, SystemctlUserMeansTheUserBus) {
    fake_->add_unit("llama.service");
    ScopedBusAddress nowhere("unix:path=" + (dir_ / "no-bus").string());
    ::setenv("DBUS_SESSION_BUS_ADDRESS", fake_->address().c_str(), 1);  // restored by `nowhere`
    auto e = env();
    e.systemctl.push_back("--user");
    SystemdBackend b(unit_model(), e);
    b.start();
    EXPECT_TRUE(fake_->called("StartUnit llama.service replace"));
    EXPECT_EQ(b.status().state, BackendState::kRunning);
}

// While our stop runs, the unit passes through "deactivating" (running) to "inactive": read alone,
// that is a run and then an exit. status() leaves the state to the stop instead.
TEST_F(SystemdBackendBus, StatusDuringAStopLeavesTheStateToTheStop) {
    FakeUnit u;
    u.job_delay = 300ms;
    fake_->add_unit("llama.service", u);
    SystemdBackend b(unit_model(), env());
    b.start();
    ASSERT_EQ(b.status().state, BackendState::kRunning);
    std::thread stopper([&] { b.stop(1000ms); });
    const bool deactivating = wait_until(
        [&] { return fake_->unit("llama.service").active_state == "deactivating"; }, 2000ms);
    const auto during = b.status();
    stopper.join();
    ASSERT_TRUE(deactivating);
    EXPECT_EQ(during.state, BackendState::kStopped) << during.detail;
    EXPECT_EQ(b.status().state, BackendState::kStopped);
}

TEST_F(SystemdBackendBus, StatusFromAnotherThreadDuringStopNeverSaysExited) {
    fake_->add_unit("llama.service");
    SystemdBackend b(unit_model(), env());
    for (int i = 0; i < 3; ++i) {
        b.start();
        std::atomic<bool> done{false};
        std::thread monitor([&] {
            while (!done) {
                const auto s = b.status();
                EXPECT_NE(s.state, BackendState::kExited) << s.detail;
                std::this_thread::sleep_for(1ms);  // a new bus connection each time
            }
        });
        b.stop(1000ms);
        done = true;
        monitor.join();
        EXPECT_EQ(b.status().state, BackendState::kStopped);
    }
}

}  // namespace
}  // namespace mlk::homelab
