#include "mlkeeper/cleanup/report.hpp"

#include <gtest/gtest.h>

#include "support/cleanup_tree.hpp"

namespace mlk::cleanup {
namespace {

using testing::kDay;
using testing::TempTree;

TEST(Report, DryRunJsonAndText) {
    TempTree t;
    t.file("exp/run1/old.log", 40 * kDay, 2048);
    t.file("exp/run1/model_best.pt", 40 * kDay);
    ScanOptions o;
    o.now = t.now();
    Plan p = plan(
        {TargetSpec{"experiments", t / "exp", "*", 30 * kDay, {"*"}, 0, DeleteMode::kFiles, true},
         TargetSpec{"logs", t / "nope", "ml-*", kDay, {"*"}, 0, DeleteMode::kFiles, true}},
        o);
    ReportInput in(p);
    in.disks = disk_space(p);
    in.steps.push_back(StepResult{"docker", "docker image prune", StepStatus::kSkipped, 0,
                                  "docker not installed"});
    auto j = report_json(in, FileList::kYes);
    EXPECT_EQ(j["outcome"], "dry-run");
    EXPECT_EQ(j["planned"]["files"], 1);
    EXPECT_EQ(j["planned"]["bytes"], 2048);
    EXPECT_EQ(j["targets"][0]["protected"]["pattern"], 1);
    EXPECT_EQ(j["targets"][0]["files"][0]["path"], (t / "exp/run1/old.log").string());
    EXPECT_EQ(j["targets"][0]["files"][0]["reason"], "file-age");
    EXPECT_EQ(j["targets"][1]["status"], "missing");
    EXPECT_EQ(j["disk"].size(), 1u);
    EXPECT_EQ(j["aggressive"][0]["status"], "skipped");
    EXPECT_FALSE(report_json(in, FileList::kNo)["targets"][0].contains("files"));
    auto text = report_text(in, FileList::kYes);
    EXPECT_NE(text.find("would delete 1 files (2.0 KiB)"), std::string::npos) << text;
    EXPECT_NE(text.find("delete " + (t / "exp/run1/old.log").string()), std::string::npos);
    EXPECT_NE(text.find("missing:"), std::string::npos);
    EXPECT_NE(text.find("docker not installed"), std::string::npos);
}

TEST(Report, DeletedAndBreakerOutcomes) {
    TempTree t;
    t.file("exp/run1/old.log", 40 * kDay, 100);
    ScanOptions o;
    o.now = t.now();
    Plan p = plan(
        {TargetSpec{"experiments", t / "exp", "*", 30 * kDay, {"*"}, 0, DeleteMode::kFiles, true}},
        o);
    ReportInput in(p);
    in.disks = disk_space(p);
    ExecResult r = execute(p, {});
    in.exec = &r;
    in.outcome = Outcome::kDeleted;
    measure_after(in.disks);
    auto j = report_json(in, FileList::kNo);
    EXPECT_EQ(j["deleted"]["files"], 1);
    EXPECT_EQ(j["deleted"]["dirs"], 1);
    EXPECT_FALSE(j["disk"][0]["free_after"].is_null());
    EXPECT_EQ(summary_line(in).rfind("deleted 1 files (100 B), 1 directories", 0), 0u);
    ReportInput b(p);
    b.outcome = Outcome::kBreakerTripped;
    b.breaker = "would delete 5000 files, more than max_files 1000";
    EXPECT_NE(report_text(b, FileList::kNo).find("circuit breaker tripped"), std::string::npos);
    EXPECT_EQ(report_json(b, FileList::kNo)["breaker"], *b.breaker);
}

}  // namespace
}  // namespace mlk::cleanup
