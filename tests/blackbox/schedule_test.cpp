// Black-box tests of `mlkeeper calendar`, `schedule` and `agent`: the real binary, real child
// processes, real signals and the real systemd-analyze where it is installed. Jobs run every
// second or two so that each test finishes in a few seconds; every wait is bounded.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/process.hpp"
#include "support/mlkeeper_runner.hpp"
#include "support/wait.hpp"

namespace mlk::testing {
namespace {

using namespace std::chrono_literals;

bool have(const std::string& program) {
    return util::run_process({"/bin/sh", "-c", "command -v " + program}).ok();
}

class ScheduleTest : public ::testing::Test {
  protected:
    std::filesystem::path config(const std::string& jobs) {
        const auto path = mk.dir().path() / "mlkeeper.toml";
        std::ofstream(path) << "[schedule]\ndefault_jobs = false\nstop_timeout = 2\n\n" << jobs;
        return path;
    }

    nlohmann::json history(const std::string& job = "") {
        // No --config: the run log does not depend on it, and some tests break the file.
        std::vector<std::string> args{"schedule", "history", "-n", "1000", "--json"};
        if (!job.empty()) {
            args.push_back(job);
        }
        const auto r = mk.run(args);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        EXPECT_TRUE(j.is_array()) << r.out.substr(0, 500) << r.err;
        return j.is_array() ? j : nlohmann::json::array();
    }

    int count(const nlohmann::json& runs, const std::string& outcome) {
        int n = 0;
        for (const auto& r : runs) {
            n += r["outcome"].is_string() && r["outcome"] == outcome ? 1 : 0;
        }
        return n;
    }

    util::Subprocess start_agent(const std::vector<std::string>& extra = {},
                                 const std::map<std::string, std::string>& env = {}) {
        std::vector<std::string> args{"--config", (mk.dir().path() / "mlkeeper.toml").string(),
                                      "agent"};
        args.insert(args.end(), extra.begin(), extra.end());
        util::RunOptions o;
        o.kill_grace = 5000ms;
        return util::Subprocess::start(mk.command_line(args, env), o,
                                       util::Subprocess::Output::kToFile, agent_log());
    }

    std::filesystem::path agent_log() const { return mk.dir().path() / "agent.log"; }
    std::string read(const std::filesystem::path& p) const {
        std::ifstream in(p);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }

    MlkeeperRunner mk;
};

TEST_F(ScheduleTest, CalendarPrintsWhatSystemdAnalyzePrints) {
    if (!have("systemd-analyze")) {
        GTEST_SKIP() << "systemd-analyze not installed";
    }
    const std::vector<std::string> args{"--iterations",
                                        "3",
                                        "--base-time",
                                        "2026-03-28 00:00:00 UTC",
                                        "Sun *-*-* 02:30 Europe/Berlin",
                                        "Mon..Fri 09:00",
                                        "*-02-29 12:00",
                                        "weekly"};
    std::vector<std::string> sd{"/usr/bin/env", "TZ=UTC", "systemd-analyze", "calendar"};
    sd.insert(sd.end(), args.begin(), args.end());
    const auto theirs = util::run_process(sd);
    std::vector<std::string> ours_args{"calendar"};
    ours_args.insert(ours_args.end(), args.begin(), args.end());
    const auto ours = mk.run(ours_args, {{"TZ", "UTC"}});
    ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
    EXPECT_EQ(ours.exit_code, 0) << ours.err;
    auto without_from_now = [](const std::string& text) {
        std::string out, line;
        std::istringstream in(text);
        while (std::getline(in, line)) {
            if (line.find("From now:") == std::string::npos) {
                out += line + "\n";
            }
        }
        return out;
    };
    EXPECT_EQ(without_from_now(ours.out), without_from_now(theirs.out));

    const auto bad = mk.run({"calendar", "every tuesday"});
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_NE(bad.err.find("Failed to parse calendar specification 'every tuesday'"),
              std::string::npos)
        << bad.err;
    const auto cron = mk.run({"calendar", "--cron", "--iterations", "2", "--base-time",
                              "2026-01-01 00:00:00 UTC", "30 2 * * mon"},
                             {{"TZ", "UTC"}});
    EXPECT_EQ(cron.exit_code, 0) << cron.err;
    EXPECT_NE(cron.out.find("Next elapse: Mon 2026-01-05 02:30:00 UTC"), std::string::npos)
        << cron.out;
    EXPECT_NE(cron.out.find("Iter. #2: Mon 2026-01-12 02:30:00 UTC"), std::string::npos)
        << cron.out;
}

TEST_F(ScheduleTest, ListShowsTheSeedsJobsByDefault) {
    const auto r = mk.run({"schedule", "list", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto jobs = nlohmann::json::parse(r.out);
    std::set<std::string> names;
    for (const auto& j : jobs) {
        names.insert(j["job"].get<std::string>());
        EXPECT_TRUE(j["next"].is_string()) << j.dump();
    }
    EXPECT_EQ(names, (std::set<std::string>{"backup", "gpu", "cleanup", "maintain"}));
    const auto text = mk.run({"schedule", "list"});
    EXPECT_NE(text.out.find("NEXT"), std::string::npos);
    EXPECT_NE(text.out.find("backup"), std::string::npos);
}

TEST_F(ScheduleTest, BadJobConfigIsRejectedWithItsPlace) {
    config("[schedule.jobs.x]\ntask = \"gpu\"\non_calendar = \"every tuesday\"\n");
    const auto r =
        mk.run({"--config", (mk.dir().path() / "mlkeeper.toml").string(), "schedule", "list"});
    EXPECT_EQ(r.exit_code, 78);
    EXPECT_NE(r.err.find("mlkeeper.toml:7:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("every tuesday"), std::string::npos) << r.err;
    const auto check =
        mk.run({"--config", (mk.dir().path() / "mlkeeper.toml").string(), "config", "check"});
    EXPECT_EQ(check.exit_code, 78) << check.out;
    EXPECT_NE(check.err.find("every tuesday"), std::string::npos) << check.err;
}

TEST_F(ScheduleTest, ExportedUnitsPassSystemdAnalyzeVerify) {
    const auto dir = mk.dir().path() / "units";
    const auto r = mk.run({"schedule", "export", "--systemd", dir.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const auto* name : {"mlkeeper-backup.service", "mlkeeper-backup.timer",
                             "mlkeeper-gpu.timer", "mlkeeper-alert@.service"}) {
        EXPECT_TRUE(std::filesystem::exists(dir / name)) << name;
    }
    const auto timer = read(dir / "mlkeeper-backup.timer");
    EXPECT_NE(timer.find("OnCalendar=*-*-* 02:00:00"), std::string::npos) << timer;
    EXPECT_NE(timer.find("RandomizedDelaySec=600"), std::string::npos) << timer;
    if (have("systemd-analyze")) {
        std::vector<std::string> argv{"systemd-analyze", "verify"};
        for (const auto& e : std::filesystem::directory_iterator(dir)) {
            if (e.path().filename().string().find('@') == std::string::npos) {
                argv.push_back(e.path().string());
            }
        }
        const auto v = util::run_process(argv);
        EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
        EXPECT_EQ(v.err.find("Unknown"), std::string::npos) << v.err;

        // The agent's own unit, pointed at this build's binary.
        std::ifstream in(std::filesystem::path(MLK_SOURCE_DIR) /
                         "packaging/systemd/mlkeeper-agent.service");
        std::string unit(std::istreambuf_iterator<char>(in), {});
        ASSERT_FALSE(unit.empty());
        const auto at = unit.find("/usr/bin/mlkeeper ");
        ASSERT_NE(at, std::string::npos);
        unit.replace(at, std::string("/usr/bin/mlkeeper").size(), MLK_BINARY);
        const auto agent_unit = mk.dir().path() / "mlkeeper-agent.service";
        std::ofstream(agent_unit) << unit;
        const auto va = util::run_process({"systemd-analyze", "verify", agent_unit.string()});
        EXPECT_EQ(va.exit_code, 0) << va.out << va.err;
        EXPECT_EQ(va.err.find("Unknown"), std::string::npos) << va.err;
    }
    const auto cron = mk.run({"schedule", "export", "--cron"});
    ASSERT_EQ(cron.exit_code, 0) << cron.err;
    EXPECT_NE(cron.out.find("flock -n"), std::string::npos) << cron.out;
    EXPECT_NE(cron.out.find("0 2 * * *"), std::string::npos) << cron.out;
    EXPECT_EQ(mk.run({"schedule", "export"}).exit_code, 64);
}

TEST_F(ScheduleTest, RunNowRecordsRetriesAndAlertsOnFailure) {
    const auto alerts = mk.dir().path() / "alerts.log";
    config(
        "[schedule.jobs.flaky]\ncommand = [\"/bin/sh\", \"-c\", \"echo trying; exit 3\"]\n"
        "on_calendar = \"daily\"\nretries = 1\nretry_delay = 0\n\n[alerts]\ncommand = "
        "[\"/bin/sh\", \"-c\", \"echo \\\"$@\\\" >> " +
        alerts.string() + "\", \"sh\"]\n");
    const auto cfg = (mk.dir().path() / "mlkeeper.toml").string();
    const auto r = mk.run({"--config", cfg, "schedule", "run", "flaky"});
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    EXPECT_NE(r.out.find("attempt 2 of 2"), std::string::npos) << r.out;
    const auto runs = history("flaky");
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0]["outcome"], "failed");
    EXPECT_EQ(runs[0]["trigger"], "manual");
    EXPECT_EQ(runs[0]["attempts"], 2);
    EXPECT_NE(read(alerts).find("scheduled job flaky failed with exit code 3"), std::string::npos)
        << read(alerts);
    const auto missing = mk.run({"--config", cfg, "schedule", "run", "nope"});
    EXPECT_EQ(missing.exit_code, 64);
    EXPECT_NE(missing.err.find("no job named \"nope\" (jobs: flaky)"), std::string::npos)
        << missing.err;
}

TEST_F(ScheduleTest, AgentRunsJobsSkipsOverlapsKillsTimeoutsAndRetries) {
    config(R"(
[schedule.jobs.tick]
command = ["/bin/sh", "-c", "echo tick"]
on_calendar = "*:*:*"
[schedule.jobs.long]
command = ["/bin/sleep", "2.5"]
on_calendar = "*:*:*"
[schedule.jobs.hang]
command = ["/bin/sleep", "60"]
on_calendar = "*:*:0/5"
timeout = 1
[schedule.jobs.retry]
command = ["/bin/sh", "-c", "echo no; exit 4"]
on_calendar = "*:*:0/5"
retries = 1
retry_delay = 1
)");
    // hang and retry fire every 5 s; wait until each has finished once.
    auto agent = start_agent();
    ASSERT_TRUE(testing::wait_until(
        [&] {
            const auto h = history();
            return count(history("tick"), "success") >= 4 && count(h, "timeout") >= 1 &&
                   count(history("retry"), "failed") >= 1;
        },
        45s))
        << history().dump(1) << read(agent_log());
    ::kill(agent.pid(), SIGTERM);
    ASSERT_TRUE(agent.wait_for(10s)) << "agent did not stop";
    const auto longs = history("long");
    EXPECT_GE(count(longs, "skipped"), 1) << longs.dump(1);
    EXPECT_GE(count(longs, "success"), 1) << longs.dump(1);
    const auto hang = history("hang");
    EXPECT_EQ(hang[hang.size() - 1]["outcome"], "timeout");
    const auto retry = history("retry");
    EXPECT_EQ(retry[retry.size() - 1]["attempts"], 2);
    EXPECT_EQ(retry[retry.size() - 1]["exit_code"], 4);
}

TEST_F(ScheduleTest, AgentKeepsItsConfigWhenAReloadIsBadAndTakesAGoodOne) {
    config("[schedule.jobs.tick]\ncommand = [\"/bin/true\"]\non_calendar = \"*:*:*\"\n");
    auto agent = start_agent();
    ASSERT_TRUE(testing::wait_until([&] { return count(history("tick"), "success") >= 1; }, 10s))
        << read(agent_log());
    std::ofstream(mk.dir().path() / "mlkeeper.toml") << "[schedule\nbroken = ";
    ::kill(agent.pid(), SIGHUP);
    ASSERT_TRUE(testing::wait_until(
        [&] { return read(agent_log()).find("reload failed") != std::string::npos; }, 10s))
        << read(agent_log());
    const int before = count(history("tick"), "success");
    ASSERT_TRUE(
        testing::wait_until([&] { return count(history("tick"), "success") >= before + 2; }, 10s))
        << "the old jobs stopped after a bad reload\n"
        << read(agent_log());
    config("[schedule.jobs.tock]\ncommand = [\"/bin/true\"]\non_calendar = \"*:*:*\"\n");
    ::kill(agent.pid(), SIGHUP);
    ASSERT_TRUE(testing::wait_until([&] { return count(history("tock"), "success") >= 1; }, 10s))
        << read(agent_log());
    ::kill(agent.pid(), SIGTERM);
    ASSERT_TRUE(agent.wait_for(10s));
    EXPECT_EQ(WEXITSTATUS(*agent.try_wait()), 0);
}

TEST_F(ScheduleTest, AgentStopsRunningJobsOnSigterm) {
    config(
        "[schedule.jobs.sleepy]\ncommand = [\"/bin/sleep\", \"60\"]\non_calendar = "
        "\"*:*:*\"\n");
    auto agent = start_agent();
    ASSERT_TRUE(testing::wait_until(
        [&] {
            const auto h = history("sleepy");
            return std::any_of(h.begin(), h.end(),
                               [](const nlohmann::json& r) { return r["outcome"].is_null(); });
        },
        10s))
        << read(agent_log());
    const auto t0 = std::chrono::steady_clock::now();
    ::kill(agent.pid(), SIGTERM);
    ASSERT_TRUE(agent.wait_for(15s)) << "agent did not stop";
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
    const auto h = history("sleepy");
    EXPECT_EQ(count(h, "cancelled"), 1) << h.dump(1);
    EXPECT_EQ(count(h, "skipped") + 1, static_cast<int>(h.size())) << h.dump(1);
    EXPECT_EQ(util::run_process({"pgrep", "-f", "^/bin/sleep 60$"}).exit_code, 1)
        << "the job outlived the agent";
}

TEST_F(ScheduleTest, AgentKilledMidJobNeitherLosesNorDoublesTheRun) {
    const auto marks = mk.dir().path() / "marks";
    config("[schedule.jobs.work]\ncommand = [\"/bin/sh\", \"-c\", \"echo start >> " +
           marks.string() + "; sleep 3; echo end >> " + marks.string() +
           "\"]\non_calendar = \"*:*:*\"\n");
    auto first = start_agent();
    // Killed once the run and its pid are recorded (the window before that is milliseconds).
    ASSERT_TRUE(testing::wait_until(
        [&] {
            const auto h = history("work");
            return std::any_of(h.begin(), h.end(), [](const nlohmann::json& r) {
                return r["outcome"].is_null() && r["pid"].is_number();
            });
        },
        10s))
        << read(agent_log());
    ::kill(first.pid(), SIGKILL);
    (void)first.wait_for(5s);
    // The job survives its agent (it leads its own process group); a new agent must wait for it.
    auto second = start_agent();
    ASSERT_TRUE(
        testing::wait_until([&] { return count(history("work"), "interrupted") >= 1; }, 15s))
        << history("work").dump(1) << read(agent_log());
    ASSERT_TRUE(testing::wait_until([&] { return count(history("work"), "success") >= 1; }, 15s))
        << history("work").dump(1) << read(agent_log());
    ::kill(second.pid(), SIGTERM);
    ASSERT_TRUE(second.wait_for(10s));
    // Never two at once: every "start" is followed by its "end" before the next "start".
    std::istringstream in(read(marks));
    std::string line, prev = "end";
    while (std::getline(in, line)) {
        if (line == "start") {
            EXPECT_EQ(prev, "end") << read(marks);
        }
        prev = line;
    }
    const auto h = history("work");
    const auto& interrupted = *std::find_if(
        h.begin(), h.end(), [](const nlohmann::json& r) { return r["outcome"] == "interrupted"; });
    for (const auto& r : h) {
        if (r["id"].get<int>() > interrupted["id"].get<int>() && r["outcome"] != "skipped") {
            EXPECT_GE(r["started_at"].get<std::string>(),
                      interrupted["ended_at"].get<std::string>())
                << h.dump(1);
        }
    }
}

TEST_F(ScheduleTest, PersistentJobCatchesUpAfterTheAgentWasDown) {
    config(
        "[schedule.jobs.nightly]\ncommand = [\"/bin/true\"]\non_calendar = \"*:*:0/3\"\n"
        "persistent = true\n");
    auto first = start_agent({"--exit-after-runs", "1"});
    ASSERT_TRUE(first.wait_for(10s));
    std::this_thread::sleep_for(3500ms);  // an elapse passes while no agent runs
    const auto t0 = std::chrono::system_clock::now();
    auto second = start_agent({"--exit-after-runs", "1"});
    ASSERT_TRUE(second.wait_for(10s));
    const auto h = history("nightly");
    ASSERT_EQ(h.size(), 2u) << h.dump(1);
    EXPECT_EQ(h[0]["trigger"], "catch-up") << h.dump(1);
    EXPECT_EQ(h[1]["trigger"], "scheduled") << h.dump(1);
    (void)t0;
}

TEST_F(ScheduleTest, AgentTalksToSystemdNotifySocket) {
    config("[schedule.jobs.tick]\ncommand = [\"/bin/true\"]\non_calendar = \"*:*:*\"\n");
    const auto sock_path = mk.dir().path() / "notify.sock";
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{0, 200000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto agent =
        start_agent({}, {{"NOTIFY_SOCKET", sock_path.string()}, {"WATCHDOG_USEC", "1000000"}});
    std::string got;
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < end && (got.find("READY=1") == std::string::npos ||
                                                      got.find("WATCHDOG=1") == std::string::npos ||
                                                      got.find("STATUS=") == std::string::npos)) {
        char buf[4096];
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            got.append(buf, static_cast<std::size_t>(n)).push_back('\n');
        }
    }
    ::kill(agent.pid(), SIGTERM);
    EXPECT_TRUE(agent.wait_for(10s));
    ::close(fd);
    EXPECT_NE(got.find("READY=1"), std::string::npos) << got;
    EXPECT_NE(got.find("STATUS=1 jobs"), std::string::npos) << got;
    EXPECT_NE(got.find("WATCHDOG=1"), std::string::npos) << got;
}

}  // namespace
}  // namespace mlk::testing
