#include "mlkeeper/cleanup/aggressive.hpp"

#include <gtest/gtest.h>

#include "support/cleanup_tree.hpp"

namespace mlk::cleanup {
namespace {

using namespace std::chrono_literals;
using testing::TempTree;

struct Fake {
    std::vector<std::vector<std::string>> calls;
    std::vector<std::string> present{"docker", "apt-get"};
    util::RunResult next;

    AggressiveOptions options() {
        AggressiveOptions o;
        o.run = [this](const std::vector<std::string>& argv, const util::RunOptions& ro) {
            EXPECT_GT(ro.timeout.count(), 0);
            calls.push_back(argv);
            return next;
        };
        o.find_tool = [this](const std::string& t) {
            for (const auto& p : present) {
                if (p == t) {
                    return std::filesystem::path("/fake/bin") / t;
                }
            }
            return std::filesystem::path();
        };
        o.apt_cache = "/nonexistent/apt";
        return o;
    }
};

TEST(Aggressive, RunsDockerAndAptWithFullPaths) {
    Fake f;
    f.next.kind = util::ExitKind::kExited;
    f.next.exit_code = 0;
    f.next.out = "Deleted Images:\nuntagged: x\n\nTotal reclaimed space: 1.5GB\n";
    auto steps = run_external_steps(f.options());
    ASSERT_EQ(steps.size(), 2u);
    ASSERT_EQ(f.calls.size(), 2u);
    EXPECT_EQ(f.calls[0], (std::vector<std::string>{"/fake/bin/docker", "image", "prune", "-a",
                                                    "-f", "--filter", "until=168h"}));
    EXPECT_EQ(f.calls[1], (std::vector<std::string>{"/fake/bin/apt-get", "clean"}));
    EXPECT_EQ(steps[0].status, StepStatus::kRan);
    EXPECT_EQ(steps[0].freed, 1'500'000'000u);
}

TEST(Aggressive, MissingToolIsANoteAndDryRunRunsNothing) {
    Fake f;
    f.present = {"apt-get"};
    auto o = f.options();
    o.dry_run = DryRun::kYes;
    auto steps = run_external_steps(o);
    EXPECT_TRUE(f.calls.empty());
    EXPECT_EQ(steps[0].status, StepStatus::kSkipped);
    EXPECT_EQ(steps[0].note, "docker not installed");
    EXPECT_EQ(steps[1].status, StepStatus::kWouldRun);
    EXPECT_EQ(steps[1].command, "apt-get clean");
}

TEST(Aggressive, FailuresAndTimeoutsAreReported) {
    Fake f;
    f.next.kind = util::ExitKind::kExited;
    f.next.exit_code = 1;
    f.next.err = "Cannot connect to the Docker daemon\n";
    auto steps = run_external_steps(f.options());
    EXPECT_EQ(steps[0].status, StepStatus::kFailed);
    EXPECT_NE(steps[0].note.find("Docker daemon"), std::string::npos);
    f.next.kind = util::ExitKind::kTimedOut;
    auto o = f.options();
    o.timeout = 5s;
    steps = run_external_steps(o);
    EXPECT_EQ(steps[1].note, "timed out after 5s");
}

TEST(Aggressive, RealRunnerWithAStubTool) {
    TempTree t;
    auto stub = t / "apt-get";
    std::ofstream(stub) << "#!/bin/sh\nrm -f \"$APT_DIR\"/*.deb\n";
    ::chmod(stub.c_str(), 0755);
    t.file("apt/a.deb", 0s, 4096);
    AggressiveOptions o;
    o.find_tool = [&](const std::string& name) {
        return name == "apt-get" ? stub : std::filesystem::path();
    };
    o.apt_cache = t / "apt";
    o.run = [&](const std::vector<std::string>& argv, const util::RunOptions& ro) {
        auto r2 = ro;
        r2.env_set.emplace_back("APT_DIR", (t / "apt").string());
        return util::run_process(argv, r2);
    };
    auto steps = run_external_steps(o);
    EXPECT_EQ(steps[1].status, StepStatus::kRan) << steps[1].note;
    EXPECT_EQ(steps[1].freed, 4096u);
}

TEST(Aggressive, TargetsAndHelpers) {
    auto t = aggressive_targets("/tmp", {{"HOME", "/home/u"}});
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].root, "/home/u/.cache/pip");
    EXPECT_EQ(t[1].root, "/tmp");
    EXPECT_EQ(t[1].retention, std::chrono::hours(72));
    EXPECT_EQ(aggressive_targets("/tmp", {{"PIP_CACHE_DIR", "/c/pip"}, {"HOME", "/h"}})[0].root,
              "/c/pip");
    EXPECT_EQ(aggressive_targets("/tmp", {{"XDG_CACHE_HOME", "/x"}})[0].root, "/x/pip");
    EXPECT_EQ(aggressive_targets("/tmp", {}).size(), 1u);
    EXPECT_EQ(parse_docker_reclaimed("Total reclaimed space: 0B"), 0u);
    EXPECT_EQ(parse_docker_reclaimed("Total reclaimed space: 12.5MB"), 12'500'000u);
    EXPECT_EQ(parse_docker_reclaimed("nothing"), 0u);
    EXPECT_EQ(find_in_path("sh", "/nonexistent:/bin:/usr/bin").filename(), "sh");
    EXPECT_TRUE(find_in_path("no-such-tool-xyz", "/bin:/usr/bin").empty());
}

}  // namespace
}  // namespace mlk::cleanup
