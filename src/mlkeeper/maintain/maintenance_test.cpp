#include "mlkeeper/maintain/maintenance.hpp"

#include <gtest/gtest.h>

#include <map>

namespace mlk::maintain {
namespace {

// A fake runner: each task (argv[0]) exits with the code given, printing `out` as its JSON.
struct Fake {
    std::map<std::string, int> codes;
    std::map<std::string, std::string> outs;
    std::vector<std::string> ran;

    MaintainOptions options() {
        MaintainOptions o;
        o.run = [this](const std::vector<std::string>& argv) {
            ran.push_back(argv.at(0));
            util::RunResult r;
            r.kind = util::ExitKind::kExited;
            r.exit_code = codes.count(argv[0]) != 0 ? codes[argv[0]] : 0;
            r.out = outs.count(argv[0]) != 0 ? outs[argv[0]] : "{}";
            r.err = r.exit_code != 0 ? "mlkeeper: " + argv[0] + " went wrong\n" : "";
            return r;
        };
        return o;
    }
};

std::vector<TaskPlan> all() {
    return {{Task::kHealth, true, {"health"}},
            {Task::kGpu, true, {"gpu"}},
            {Task::kBackup, true, {"backup"}},
            {Task::kCleanup, true, {"cleanup"}}};
}

TEST(Maintenance, RunsEveryTaskInTheSeedsOrder) {
    Fake f;
    const auto rep = run_maintenance(all(), f.options());
    EXPECT_EQ(f.ran, (std::vector<std::string>{"health", "gpu", "backup", "cleanup"}));
    EXPECT_EQ(rep.ok, 4);
    EXPECT_EQ(rep.exit_code(), 0);
}

TEST(Maintenance, WarningsDoNotStopTheRunButCriticalHealthDoes) {
    Fake f;
    f.codes["health"] = 1;
    f.codes["gpu"] = 1;
    auto rep = run_maintenance(all(), f.options());
    EXPECT_EQ(rep.warnings, 2);
    EXPECT_EQ(rep.exit_code(), 0);
    EXPECT_EQ(f.ran.size(), 4u);

    Fake g;
    g.codes["health"] = 2;
    rep = run_maintenance(all(), g.options());
    EXPECT_EQ(g.ran, std::vector<std::string>{"health"});
    EXPECT_EQ(rep.failed, 1);
    EXPECT_EQ(rep.skipped, 3);
    EXPECT_EQ(rep.exit_code(), 1);
    EXPECT_NE(rep.tasks[0].reason.find("health went wrong"), std::string::npos);
    EXPECT_NE(rep.tasks[1].reason.find("earlier task failed"), std::string::npos);
}

TEST(Maintenance, CleanupNeverFollowsAFailedBackupUnlessForced) {
    Fake f;
    f.codes["backup"] = 1;
    auto o = f.options();
    o.on_error = OnError::kContinue;
    auto rep = run_maintenance(all(), o);
    EXPECT_EQ(f.ran, (std::vector<std::string>{"health", "gpu", "backup"}));
    EXPECT_EQ(rep.tasks[3].status, Status::kSkipped);
    EXPECT_NE(rep.tasks[3].reason.find("--force-cleanup"), std::string::npos);
    EXPECT_EQ(rep.exit_code(), 1);

    Fake g;
    g.codes["backup"] = 1;
    auto forced = g.options();
    forced.on_error = OnError::kContinue;
    forced.cleanup_after_failed_backup = CleanupAfterFailedBackup::kRun;
    rep = run_maintenance(all(), forced);
    EXPECT_EQ(g.ran.back(), "cleanup");
}

TEST(Maintenance, ContinueOnErrorGoesOnAfterAFailedHealthCheck) {
    Fake f;
    f.codes["health"] = 2;
    auto o = f.options();
    o.on_error = OnError::kContinue;
    const auto rep = run_maintenance(all(), o);
    EXPECT_EQ(f.ran.size(), 4u);
    EXPECT_EQ(rep.failed, 1);
    EXPECT_EQ(rep.ok, 3);
}

TEST(Maintenance, DisabledTasksAreSkippedAndCrashesAndTimeoutsFail) {
    auto plans = all();
    plans[1].enabled = false;
    MaintainOptions o;
    o.on_error = OnError::kContinue;
    o.run = [](const std::vector<std::string>& argv) {
        util::RunResult r;
        if (argv[0] == "backup") {
            r.kind = util::ExitKind::kSignaled;
            r.signal = 9;
        } else if (argv[0] == "cleanup") {
            r.kind = util::ExitKind::kTimedOut;
        } else {
            r.kind = util::ExitKind::kExited;
            r.exit_code = 0;
        }
        return r;
    };
    plans[3].task = Task::kCleanup;
    o.cleanup_after_failed_backup = CleanupAfterFailedBackup::kRun;
    const auto rep = run_maintenance(plans, o);
    EXPECT_EQ(rep.tasks[1].status, Status::kSkipped);
    EXPECT_EQ(rep.tasks[1].reason, "disabled");
    EXPECT_EQ(rep.tasks[2].status, Status::kFailed);
    EXPECT_NE(rep.tasks[2].reason.find("signal 9"), std::string::npos);
    EXPECT_EQ(rep.tasks[3].status, Status::kFailed);
    EXPECT_NE(rep.tasks[3].reason.find("timed out"), std::string::npos);
}

TEST(Maintenance, KeyFiguresComeFromEachTasksJson) {
    EXPECT_EQ(
        key_figures(Task::kHealth, nlohmann::json::parse(R"({"summary":{"total":12,"passed":11,
                          "warnings":1,"failed":0,"health_score":91.67}})")),
        "12 checks, 1 warning(s), 0 failed, score 91.67");
    EXPECT_EQ(key_figures(Task::kGpu, nlohmann::json::parse(R"({"gpu_count":0})")), "no GPU");
    EXPECT_EQ(key_figures(Task::kBackup, nlohmann::json::parse(
                                             R"({"kind":"full","files":3,"bytes_in":2048,
                                             "bytes_out":1024,"verified":true})")),
              "full backup, 3 files, 2.0 KiB -> 1.0 KiB, verified");
    EXPECT_EQ(
        key_figures(Task::kCleanup, nlohmann::json::parse(R"({"dry_run":false,"deleted":{"files":5,
                          "bytes":1048576}})")),
        "freed 1.0 MiB in 5 files");
    const auto j = run_maintenance(all(), Fake{}.options()).to_json();
    EXPECT_EQ(j["tasks"].size(), 4u);
    EXPECT_EQ(j["summary"]["ok"], 4);
    EXPECT_EQ(j["exit_code"], 0);
}

}  // namespace
}  // namespace mlk::maintain
