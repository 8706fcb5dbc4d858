#include "mlkeeper/homelab/systemd_backend.hpp"

#include <sys/stat.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using mlk::testing::slurp;
using mlk::testing::TempDir;

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

class FakeSystemctl {
  public:
    FakeSystemctl() {
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

}  // namespace
}  // namespace mlk::homelab
