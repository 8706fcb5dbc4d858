#include "mlkeeper/cleanup/executor.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "mlkeeper/cleanup/open_files.hpp"
#include "support/cleanup_tree.hpp"

namespace mlk::cleanup {
namespace {

using namespace std::chrono_literals;
using testing::exists_nofollow;
using testing::kDay;
using testing::TempTree;

ScanOptions opts(const TempTree& t) {
    ScanOptions o;
    o.now = t.now();
    return o;
}

TargetSpec spec(const std::filesystem::path& root, DeleteMode mode = DeleteMode::kFiles) {
    return TargetSpec{"t", root, "*", 30 * kDay, {"*"}, 0, mode, true};
}

std::set<std::string> planned(const Plan& p) {
    std::set<std::string> s;
    for (const auto& t : p.targets) {
        for (const auto& v : t.victims) {
            s.insert(t.path_of(v).string());
        }
    }
    return s;
}

void make_mixed_tree(const TempTree& t) {
    for (int r = 0; r < 20; ++r) {
        auto run = "exp/run_" + std::to_string(r) + "/";
        for (int c = 0; c < 6; ++c) {
            t.file(run + "checkpoints/ckpt_" + std::to_string(c) + ".pt", (r * 3 + c) * kDay, 50);
        }
        t.file(run + "logs/train.log", (r * 3) * kDay, 20);
        t.file(run + "metrics.json", (r * 3) * kDay, 5);
    }
    t.file("exp/run_0/model_final.pt", 90 * kDay);
}

TEST(Executor, DryRunEqualsRealRun) {
    TempTree t;
    make_mixed_tree(t);
    auto o = opts(t);
    Plan dry = plan({spec(t / "exp", DeleteMode::kBoth)}, o);
    ASSERT_FALSE(dry.files() == 0);
    Plan again = plan({spec(t / "exp", DeleteMode::kBoth)}, o);
    EXPECT_EQ(planned(dry), planned(again));
    std::set<std::string> deleted;
    ExecOptions eo;
    eo.on_deleted = [&](const std::filesystem::path& p) { deleted.insert(p.string()); };
    auto r = execute(again, eo);
    EXPECT_EQ(deleted, planned(dry));
    EXPECT_EQ(r.files(), dry.files());
    EXPECT_EQ(r.bytes(), dry.bytes());
    EXPECT_EQ(r.dirs(), dry.dirs());
    EXPECT_EQ(r.failures(), 0u);
    for (const auto& p : deleted) {
        EXPECT_FALSE(exists_nofollow(p)) << p;
    }
    EXPECT_TRUE(exists_nofollow(t / "exp/run_0/model_final.pt"));
    EXPECT_TRUE(exists_nofollow(t / "exp"));
    // The plan after the run is empty: nothing planned was left behind.
    EXPECT_EQ(plan({spec(t / "exp", DeleteMode::kBoth)}, o).files(), 0u);
}

TEST(Executor, RemovesEmptiedDirectoriesButNeverTheRoot) {
    TempTree t;
    t.file("exp/run1/a/b/c.log", 40 * kDay);
    t.file("exp/run2/keep.log", 1 * kDay);
    t.file("exp/run2/old/x.log", 40 * kDay);
    t.dir("exp/empty_before");  // not ours: was empty already
    auto p = plan({spec(t / "exp")}, opts(t));
    auto r = execute(p, {});
    EXPECT_EQ(r.dirs(), 4u);  // run1/a/b, run1/a, run1, run2/old
    EXPECT_FALSE(exists_nofollow(t / "exp/run1"));
    EXPECT_TRUE(exists_nofollow(t / "exp/run2/keep.log"));
    EXPECT_FALSE(exists_nofollow(t / "exp/run2/old"));
    EXPECT_TRUE(exists_nofollow(t / "exp/empty_before"));
    EXPECT_TRUE(exists_nofollow(t / "exp"));
}

TEST(Executor, DirectoryReplacedBySymlinkBetweenPlanAndExecute) {
    TempTree t;
    t.file("exp/run1/ckpts/a.log", 40 * kDay);
    t.file("exp/run1/ckpts/b.log", 40 * kDay);
    t.file("outside/ckpts/a.log", 40 * kDay);
    t.file("outside/ckpts/b.log", 40 * kDay);
    auto p = plan({spec(t / "exp")}, opts(t));
    ASSERT_EQ(p.files(), 2u);
    // The race: run1 swapped for a symlink to a tree with the same names.
    std::filesystem::rename(t / "exp/run1", t / "moved");
    std::filesystem::create_directory_symlink(t / "outside", t / "exp/run1");
    auto r = execute(p, {});
    EXPECT_EQ(r.files(), 0u);
    EXPECT_EQ(r.targets[0].counts.skipped_changed, 2u);
    EXPECT_TRUE(exists_nofollow(t / "outside/ckpts/a.log"));
    EXPECT_TRUE(exists_nofollow(t / "outside/ckpts/b.log"));
    EXPECT_TRUE(exists_nofollow(t / "moved/ckpts/a.log"));
    ASSERT_FALSE(r.targets[0].errors.empty());
    EXPECT_NE(r.targets[0].errors[0].find("changed since the scan"), std::string::npos);
}

TEST(Executor, ChangedFilesAreSkipped) {
    TempTree t;
    auto grown = t.file("exp/run1/grown.log", 40 * kDay);
    auto swapped = t.file("exp/run1/swapped.log", 40 * kDay);
    auto gone = t.file("exp/run1/gone.log", 40 * kDay);
    auto fine = t.file("exp/run1/fine.log", 40 * kDay);
    auto p = plan({spec(t / "exp")}, opts(t));
    ASSERT_EQ(p.files(), 4u);
    std::ofstream(grown, std::ios::app) << "more";
    t.set_age(grown, 40 * kDay);
    t.file("exp/run1/swapped.new", 40 * kDay);  // same name, new inode
    std::filesystem::rename(t / "exp/run1/swapped.new", swapped);
    std::filesystem::remove(gone);
    auto r = execute(p, {});
    EXPECT_EQ(r.files(), 1u);
    EXPECT_EQ(r.targets[0].counts.skipped_changed, 3u);
    EXPECT_TRUE(exists_nofollow(grown));
    EXPECT_TRUE(exists_nofollow(swapped));
    EXPECT_FALSE(exists_nofollow(fine));
}

TEST(Executor, FileOpenedForWritingAfterThePlanStays) {
    TempTree t;
    auto f = t.file("exp/run1/train.log", 40 * kDay);
    auto p = plan({spec(t / "exp")}, opts(t));
    ASSERT_EQ(p.files(), 1u);
    OpenWriteIndex fresh;
    struct stat st {};
    ::stat(f.c_str(), &st);
    fresh.add(st.st_dev, st.st_ino);
    ExecOptions eo;
    eo.open_files = &fresh;
    auto r = execute(p, eo);
    EXPECT_EQ(r.files(), 0u);
    EXPECT_EQ(r.targets[0].counts.skipped_open, 1u);
    EXPECT_TRUE(exists_nofollow(f));
}

TEST(Executor, Breakers) {
    TempTree t;
    for (int i = 0; i < 12; ++i) {
        t.file("exp/r/f" + std::to_string(i), 40 * kDay, 1000);
    }
    auto p = plan({spec(t / "exp")}, opts(t));
    EXPECT_FALSE(check_breakers(p, {100, 1'000'000}));
    auto by_count = check_breakers(p, {10, 0});
    ASSERT_TRUE(by_count);
    EXPECT_NE(by_count->find("12 files"), std::string::npos);
    auto by_bytes = check_breakers(p, {0, 11'999});
    ASSERT_TRUE(by_bytes);
    EXPECT_NE(by_bytes->find("max_bytes"), std::string::npos);
    EXPECT_FALSE(check_breakers(p, {12, 12'000}));  // at the limit is fine
    EXPECT_FALSE(check_breakers(p, {0, 0}));
}

TEST(Executor, RateLimitPacesDeletions) {
    TempTree t;
    for (int i = 0; i < 11; ++i) {
        t.file("exp/r/f" + std::to_string(i), 40 * kDay);
    }
    auto p = plan({spec(t / "exp")}, opts(t));
    ExecOptions eo;
    eo.rate_limit = 50;  // 12 deletions (11 files + r) -> at least 11 intervals of 20 ms
    auto start = std::chrono::steady_clock::now();
    auto r = execute(p, eo);
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.files(), 11u);
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 5s);
}

TEST(Executor, PermissionDeniedIsReportedAndTheRunGoesOn) {
    TempTree t;
    const uid_t nobody = 65534;
    t.file("exp/run_ok/a.log", 40 * kDay);
    t.file("exp/run_locked/b.log", 40 * kDay);  // dir stays root's 0755: nobody cannot unlink
    t.file("exp/run_hidden/c.log", 40 * kDay);
    ASSERT_EQ(::chown((t / "exp").c_str(), nobody, nobody), 0);
    ASSERT_EQ(::chown((t / "exp/run_ok").c_str(), nobody, nobody), 0);
    ::chmod((t / "exp/run_hidden").c_str(), 0700);
    pid_t pid = ::fork();
    if (pid == 0) {
        alarm(20);
        if (::setresgid(nobody, nobody, nobody) != 0 || ::setresuid(nobody, nobody, nobody) != 0) {
            ::_exit(77);
        }
        auto p = plan({spec(t / "exp")}, opts(t));
        auto r = execute(p, {});
        int code = 0;
        code |= p.targets[0].counts.skipped_permission == 1 ? 0 : 1;  // run_hidden unreadable
        code |= r.files() == 1 ? 0 : 2;                               // run_ok/a.log
        code |= r.targets[0].counts.skipped_permission == 1 ? 0 : 4;  // run_locked/b.log
        code |= r.targets[0].errors.size() == 1 ? 0 : 8;
        ::_exit(code);
    }
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        GTEST_SKIP() << "cannot drop privileges here";
    }
    EXPECT_EQ(WEXITSTATUS(st), 0);
    EXPECT_FALSE(exists_nofollow(t / "exp/run_ok/a.log"));
    EXPECT_TRUE(exists_nofollow(t / "exp/run_locked/b.log"));
    EXPECT_TRUE(exists_nofollow(t / "exp/run_hidden/c.log"));
}

TEST(Executor, LowerPriorityApplies) {
    // Runs in a child so the test process keeps its priority.
    pid_t pid = ::fork();
    if (pid == 0) {
        auto notes = lower_priority();
        ::_exit(notes.empty() && ::getpriority(PRIO_PROCESS, 0) >= 10 ? 0 : 1);
    }
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

}  // namespace
}  // namespace mlk::cleanup
