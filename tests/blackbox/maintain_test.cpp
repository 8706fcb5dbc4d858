// Black-box tests of `mlkeeper maintain` on a small workspace: the four tasks in order, cleanup
// held back by a failed backup, skips by flag and environment, one run at a time, the heartbeat
// ping (against a real HTTP server), dry run.
#include <gtest/gtest.h>
#include <utime.h>

#include <chrono>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/file_lock.hpp"
#include "support/http_test_server.hpp"
#include "support/mlkeeper_runner.hpp"

namespace mlk::testing {
namespace {

namespace fs = std::filesystem;

void age(const fs::path& p, int days) {
    const auto t = std::time(nullptr) - static_cast<time_t>(days) * 86400;
    utimbuf times{t, t};
    ASSERT_EQ(::utime(p.c_str(), &times), 0) << p;
}

class MaintainTest : public ::testing::Test {
  protected:
    void SetUp() override {
        const auto& d = mk.dir();
        d.write("ws/models/resnet/model.pt", std::string(100000, 'x'));
        d.write("ws/models/bert/config.json", "{}");
        old_run = d.path() / "ws/experiments/run_old";
        d.write("ws/experiments/run_old/metrics.json", "{}");
        age(old_run / "metrics.json", 40);
        age(old_run, 40);
        d.write("ws/experiments/run_new/metrics.json", "{}");
        fs::create_directories(d.path() / "ws/backups");
        fs::create_directories(d.path() / "ws/checkpoints");
        fs::create_directories(d.path() / "ws/logs");
        fs::create_directories(d.path() / "ws/tmp");
        write_config("");
    }

    void write_config(const std::string& extra) {
        const auto ws = (mk.dir().path() / "ws").string();
        std::ofstream(mk.dir().path() / "m.toml") << R"([backup]
model_dir = ")" << ws << R"(/models"
backup_dir = ")" << ws << R"(/backups"
[gpu]
metrics_file = ")" << ws << R"(/logs/gpu-metrics.csv"
nvml_library = "/nonexistent/libnvidia-ml.so.1"
[cleanup]
experiments_dir = ")" << ws << R"(/experiments"
checkpoints_dir = ")" << ws << R"(/checkpoints"
logs_dir = ")" << ws << R"(/logs"
temp_dir = ")" << ws << R"(/tmp"
[health]
services_to_check = []
network = false
check_errors = false
disk_warn_threshold = 100
disk_crit_threshold = 100
mem_warn_threshold = 100
mem_crit_threshold = 100
swap_warn_threshold = 100
swap_crit_threshold = 100
load_warn_threshold = 1000
load_crit_threshold = 1000
)" << extra;
    }

    util::RunResult maintain(std::vector<std::string> args,
                             const std::map<std::string, std::string>& env = {}) {
        args.insert(args.begin(), {"--config", (mk.dir().path() / "m.toml").string(), "maintain"});
        return mk.run(args, env);
    }

    static std::map<std::string, std::string> statuses(const util::RunResult& r) {
        std::map<std::string, std::string> out;
        const auto j = nlohmann::json::parse(r.out, nullptr, false);
        if (j.is_object()) {
            for (const auto& t : j["tasks"]) {
                out[t["task"].get<std::string>()] = t["status"].get<std::string>();
            }
        }
        return out;
    }

    std::size_t archives() const {
        std::size_t n = 0;
        for (const auto& e : fs::directory_iterator(mk.dir().path() / "ws/backups")) {
            n += e.path().string().ends_with(".tar.zst") ? 1 : 0;
        }
        return n;
    }

    MlkeeperRunner mk;
    fs::path old_run;
};

TEST_F(MaintainTest, RunsHealthGpuBackupCleanupInOrder) {
    const auto r = maintain({"--json"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    std::vector<std::string> order;
    for (const auto& t : j["tasks"]) {
        order.push_back(t["task"]);
        EXPECT_TRUE(t["status"] == "ok" || t["status"] == "warning") << t.dump();
    }
    EXPECT_EQ(order, (std::vector<std::string>{"health", "gpu", "backup", "cleanup"}));
    EXPECT_EQ(j["tasks"][1]["figures"], "no GPU");
    EXPECT_NE(j["tasks"][2]["figures"].get<std::string>().find("full backup, 2 files"),
              std::string::npos)
        << j["tasks"][2].dump();
    EXPECT_EQ(archives(), 1u);
    EXPECT_FALSE(fs::exists(old_run)) << "the 40-day-old run should be cleaned up";
    EXPECT_TRUE(fs::exists(mk.dir().path() / "ws/experiments/run_new"));

    const auto text = maintain({});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_NE(text.out.find("TASK      STATUS"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("maintenance finished"), std::string::npos) << text.out;
    const auto hist = mk.run({"history", "--command", "maintain", "--json"});
    EXPECT_EQ(nlohmann::json::parse(hist.out).size(), 2u) << hist.out;
}

TEST_F(MaintainTest, AFailedBackupKeepsCleanupFromRunning) {
    write_config("");
    fs::remove_all(mk.dir().path() / "ws/models");  // nothing to back up: backup fails
    const auto r = maintain({"--json", "--continue-on-error"});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    auto s = statuses(r);
    EXPECT_EQ(s["backup"], "failed");
    EXPECT_EQ(s["cleanup"], "skipped");
    EXPECT_TRUE(fs::exists(old_run)) << "cleanup ran after a failed backup";

    const auto forced = maintain({"--json", "--continue-on-error", "--force-cleanup"});
    EXPECT_EQ(forced.exit_code, 1);
    EXPECT_EQ(statuses(forced)["cleanup"], "ok") << forced.out;
    EXPECT_FALSE(fs::exists(old_run));
}

TEST_F(MaintainTest, WithoutContinueOnErrorTheRunStopsAtTheFirstFailure) {
    fs::remove_all(mk.dir().path() / "ws/models");
    const auto r = maintain({"--json"});
    EXPECT_EQ(r.exit_code, 1);
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_NE(j["tasks"][3]["reason"].get<std::string>().find("earlier task failed"),
              std::string::npos)
        << r.out;
}

TEST_F(MaintainTest, SkipFlagsAndEnvironmentAndDryRun) {
    auto r = maintain({"--json", "--skip-gpu", "--skip-backup", "--dry-run"},
                      {{"RUN_CLEANUP", "true"}, {"RUN_HEALTH_CHECK", "false"}});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    auto s = statuses(r);
    EXPECT_EQ(s["health"], "skipped");
    EXPECT_EQ(s["gpu"], "skipped");
    EXPECT_EQ(s["backup"], "skipped");
    EXPECT_EQ(s["cleanup"], "ok");
    EXPECT_TRUE(fs::exists(old_run)) << "a dry run deleted something";
    r = maintain({"--json", "--dry-run", "--skip-cleanup"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(archives(), 0u) << "a dry run wrote a backup";
}

TEST_F(MaintainTest, OneRunAtATime) {
    pid_t holder = 0;
    auto lock = util::FileLock::try_acquire(mk.state_dir() / "maintain.lock", &holder);
    ASSERT_TRUE(lock);
    const auto r = maintain({});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("a maintenance run is already running (pid"), std::string::npos) << r.err;
    EXPECT_EQ(archives(), 0u);
}

TEST_F(MaintainTest, HeartbeatIsPingedAndNeverFailsTheRun) {
    std::mutex mu;
    std::vector<std::string> paths;
    TestServer server([&](httplib::Server& s) {
        s.Get(R"(/hb.*)", [&](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mu);
            paths.push_back(req.path);
            res.set_content("OK", "text/plain");
        });
    });
    write_config("[maintain]\nheartbeat_url = \"" + server.url("/hb/abc") + "\"\n");
    EXPECT_EQ(maintain({"--skip-backup", "--skip-cleanup"}).exit_code, 0);
    fs::remove_all(mk.dir().path() / "ws/models");
    EXPECT_EQ(maintain({"--skip-cleanup"}).exit_code, 1);
    {
        std::lock_guard lock(mu);
        EXPECT_EQ(paths, (std::vector<std::string>{"/hb/abc", "/hb/abc/fail"}));
    }
    // An unreachable heartbeat is a warning in the log, not a failed run.
    RefusingPort refused;
    write_config("[maintain]\nheartbeat_url = \"http://127.0.0.1:" +
                 std::to_string(refused.port()) + "/hb\"\nheartbeat_timeout = 2\n");
    const auto r = maintain({"--skip-backup", "--skip-cleanup"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("heartbeat failed"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mlk::testing
