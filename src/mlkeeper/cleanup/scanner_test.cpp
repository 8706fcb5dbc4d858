#include "mlkeeper/cleanup/scanner.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <set>

#include "mlkeeper/cleanup/open_files.hpp"
#include "support/cleanup_tree.hpp"

namespace mlk::cleanup {
namespace {

using namespace std::chrono_literals;
using testing::kDay;
using testing::TempTree;

ScanOptions opts(const TempTree& t) {
    ScanOptions o;
    o.now = t.now();
    return o;
}

TargetSpec spec(const std::filesystem::path& root, DeleteMode mode = DeleteMode::kFiles,
                std::chrono::seconds retention = 30 * kDay, std::string glob = "*") {
    return TargetSpec{"t", root, std::move(glob), retention, {"*"}, 0, mode, true};
}

std::set<std::string> names(const TargetPlan& p) {
    std::set<std::string> s;
    for (const auto& v : p.victims) {
        s.insert(p.path_of(v).lexically_relative(p.root).string());
    }
    return s;
}

TEST(Scanner, RetentionPatternSizeAndMinAge) {
    TempTree t;
    t.file("exp/run1/old.log", 40 * kDay, 100);
    t.file("exp/run1/young.log", 10 * kDay);
    t.file("exp/run1/tiny.dat", 40 * kDay, 1);
    t.file("exp/run1/future.log", -5 * kDay);
    t.file("exp/.hidden_run/old.log", 40 * kDay);  // the shell's * skips dotfiles
    t.file("exp/stray.txt", 40 * kDay);
    auto s = spec(t / "exp");
    s.min_size = 5;
    auto p = plan_target(s, opts(t));
    ASSERT_EQ(p.status, TargetStatus::kOk) << p.note;
    EXPECT_EQ(names(p), (std::set<std::string>{"run1/old.log", "stray.txt"}));
    EXPECT_EQ(p.bytes, 110u);
    EXPECT_EQ(p.counts.skipped_new, 1u);  // future mtime
    s.patterns = {"*.txt"};
    EXPECT_EQ(names(plan_target(s, opts(t))), (std::set<std::string>{"stray.txt"}));
    s.min_size = 0;
    s.patterns = {"*"};
    s.retention = 0s;  // "always": still not within min_age
    t.file("exp/run1/fresh.log", 10min);
    auto p2 = plan_target(s, opts(t));
    EXPECT_EQ(p2.victims.size(), 4u);  // all but future.log, fresh.log and the dot run
    EXPECT_EQ(p2.counts.skipped_new, 2u);
}

TEST(Scanner, SymlinkEscapeDeletesTheLinkAtMost) {
    TempTree t;
    t.file("outside/precious.pt", 90 * kDay);
    t.dir("exp/run1");
    std::filesystem::create_directory_symlink(t / "outside", t / "exp/run1/escape");
    std::filesystem::create_directory_symlink(t / "outside", t / "exp/run2");
    t.set_age(t / "exp/run1/escape", 90 * kDay);
    t.set_age(t / "exp/run2", 90 * kDay);
    auto p = plan_target(spec(t / "exp", DeleteMode::kBoth), opts(t));
    EXPECT_EQ(names(p), (std::set<std::string>{"run1/escape", "run2"}));
    for (const auto& v : p.victims) {
        EXPECT_EQ(v.type, S_IFLNK);
    }
}

TEST(Scanner, NeverEntersAnotherFilesystem) {
    TempTree t;
    t.file("exp/run1/old.log", 40 * kDay);
    if (!t.mount_tmpfs("exp/run1/mnt")) {
        GTEST_SKIP() << "cannot mount tmpfs here";
    }
    t.file("exp/run1/mnt/old_on_tmpfs.log", 40 * kDay);
    auto p = plan_target(spec(t / "exp"), opts(t));
    EXPECT_EQ(names(p), (std::set<std::string>{"run1/old.log"}));
    EXPECT_EQ(p.counts.skipped_other_fs, 1u);
}

TEST(Scanner, SkipsFilesOpenForWriting) {
    TempTree t;
    auto f = t.file("exp/run1/train.log", 40 * kDay);
    t.file("exp/run1/other.log", 40 * kDay);
    int fd = ::open(f.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    auto idx = OpenWriteIndex::build();
    ::close(fd);
    auto o = opts(t);
    o.open_files = &idx;
    auto p = plan_target(spec(t / "exp"), o);
    EXPECT_EQ(names(p), (std::set<std::string>{"run1/other.log"}));
    EXPECT_EQ(p.counts.skipped_open, 1u);
}

TEST(Scanner, KeepsNewestCheckpointsOfEachRun) {
    TempTree t;
    for (int i = 1; i <= 6; ++i) {
        t.file("ck/run1/checkpoints/ckpt_" + std::to_string(i) + ".pt", (60 - i) * kDay);
        t.file("ck/run2/ckpt_" + std::to_string(i) + ".safetensors", (60 - i) * kDay);
    }
    t.file("ck/run3/ckpt_1.pt", 50 * kDay);
    auto p = plan_target(spec(t / "ck", DeleteMode::kFiles, 7 * kDay), opts(t));
    EXPECT_EQ(names(p),
              (std::set<std::string>{"run1/checkpoints/ckpt_1.pt", "run1/checkpoints/ckpt_2.pt",
                                     "run1/checkpoints/ckpt_3.pt", "run2/ckpt_1.safetensors",
                                     "run2/ckpt_2.safetensors", "run2/ckpt_3.safetensors"}));
    EXPECT_EQ(p.counts.protected_newest, 7u);
    auto o = opts(t);
    o.keep_checkpoints = 0;
    EXPECT_EQ(plan_target(spec(t / "ck", DeleteMode::kFiles, 7 * kDay), o).victims.size(), 13u);
}

TEST(Scanner, MarkersAndProtectPatterns) {
    TempTree t;
    t.file("exp/run1/model_best.pt", 90 * kDay);
    t.file("exp/run1/final/weights.bin", 90 * kDay);
    t.file("exp/run1/notes.keep", 90 * kDay);
    t.file("exp/run1/junk.tmp", 90 * kDay);
    t.file("exp/run2/.mlkeeper-keep", 90 * kDay);
    t.file("exp/run2/deep/junk.tmp", 90 * kDay);
    t.file("exp/run3/sub/.mlkeeper-keep", 90 * kDay);
    t.file("exp/run3/sub/junk.tmp", 90 * kDay);
    t.file("exp/run3/junk.tmp", 90 * kDay);
    auto o = opts(t);
    o.keep_checkpoints = 0;
    auto p = plan_target(spec(t / "exp", DeleteMode::kBoth), o);
    EXPECT_EQ(names(p), (std::set<std::string>{"run1/junk.tmp", "run3/junk.tmp"}));
    EXPECT_EQ(p.counts.protected_pattern, 3u);
    EXPECT_EQ(p.counts.protected_marker, 2u);
    EXPECT_EQ(p.dirs_to_remove, 0u);  // every run keeps something
    // A marker at the root protects the whole target.
    t.file("exp/.mlkeeper-keep", 0s);
    auto p2 = plan_target(spec(t / "exp"), o);
    EXPECT_TRUE(p2.victims.empty());
    EXPECT_EQ(p2.counts.protected_marker, 1u);
}

TEST(Scanner, RunsModeDeletesOnlyWhollyOldRuns) {
    TempTree t;
    t.file("exp/old_run/a.log", 40 * kDay);
    t.file("exp/old_run/sub/b.json", 35 * kDay);
    t.file("exp/active_run/config.yaml", 60 * kDay);
    t.file("exp/active_run/step.log", 2 * kDay);
    t.set_age(t / "exp/old_run/sub", 35 * kDay);
    t.set_age(t / "exp/old_run", 35 * kDay);
    auto o = opts(t);
    auto p = plan_target(spec(t / "exp", DeleteMode::kRuns), o);
    EXPECT_EQ(names(p), (std::set<std::string>{"old_run/a.log", "old_run/sub/b.json"}));
    EXPECT_EQ(p.dirs_to_remove, 2u);  // old_run/sub and old_run; never the root
    for (const auto& v : p.victims) {
        EXPECT_EQ(v.reason, Reason::kRunAge);
    }
    // files mode takes the old config out of the active run; runs mode never does.
    auto pf = plan_target(spec(t / "exp", DeleteMode::kFiles), o);
    EXPECT_EQ(pf.victims.size(), 3u);
}

TEST(Scanner, RootStatuses) {
    TempTree t;
    EXPECT_EQ(plan_target(spec(t / "missing"), opts(t)).status, TargetStatus::kMissing);
    auto o = opts(t);
    o.policy.refused.push_back(t / "exp/x");
    t.dir("exp/x");
    auto p = plan_target(spec(t / "exp"), o);
    EXPECT_EQ(p.status, TargetStatus::kRefused);
    EXPECT_NE(p.note.find("allow_roots"), std::string::npos);
    auto s = spec(t / "exp");
    s.enabled = false;
    EXPECT_EQ(plan_target(s, opts(t)).status, TargetStatus::kDisabled);
}

TEST(Scanner, OverlappingTargetsPlanAFileOnce) {
    TempTree t;
    t.file("tmp/ml-a/x.log", 5 * kDay, 7);
    t.file("tmp/other.log", 5 * kDay, 3);
    auto o = opts(t);
    auto p = plan({spec(t / "tmp", DeleteMode::kFiles, 0s, "ml-*"),
                   spec(t / "tmp", DeleteMode::kFiles, 3 * kDay, "")},
                  o);
    EXPECT_EQ(p.targets[0].victims.size(), 1u);
    EXPECT_EQ(p.targets[1].victims.size(), 1u);
    EXPECT_EQ(p.files(), 2u);
    EXPECT_EQ(p.bytes(), 10u);
}

TEST(Scanner, TenThousandFiles) {
    TempTree t;
    for (int r = 0; r < 100; ++r) {
        for (int f = 0; f < 100; ++f) {
            t.file("exp/run_" + std::to_string(r) + "/logs/f" + std::to_string(f) + ".log",
                   (r % 2 == 0 ? 40 : 10) * kDay, 1);
        }
    }
    auto start = std::chrono::steady_clock::now();
    auto p = plan_target(spec(t / "exp"), opts(t));
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(p.victims.size(), 5000u);
    EXPECT_EQ(p.dirs_to_remove, 100u);  // 50 runs x (logs + run dir)
    EXPECT_LT(took, 10s);
}

}  // namespace
}  // namespace mlk::cleanup
