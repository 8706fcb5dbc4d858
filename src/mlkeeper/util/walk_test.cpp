#include "mlkeeper/util/walk.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace mlk::util {
namespace {

TEST(Walk, PreOrderSortedNeverFollowsSymlinks) {
    mlk::testing::TempDir t;
    t.write("root/b/z.txt", "z");
    t.write("root/a.txt", "a");
    t.write("root/c/d/e.bin", "e");
    std::filesystem::create_symlink(t / "root" / "c", t / "root" / "link-to-c");
    std::filesystem::create_symlink("/", t / "root" / "link-to-slash");
    std::vector<std::string> seen;
    std::vector<WalkError> errors;
    walk_tree(
        t / "root", "root",
        [&](const WalkEntry& e) {
            seen.push_back(e.rel + (S_ISLNK(e.st.st_mode) ? "@" : ""));
            return WalkAction::kContinue;
        },
        [&](const WalkError& e) { errors.push_back(e); });
    std::vector<std::string> want{"root",           "root/a.txt",      "root/b",
                                  "root/b/z.txt",   "root/c",          "root/c/d",
                                  "root/c/d/e.bin", "root/link-to-c@", "root/link-to-slash@"};
    EXPECT_EQ(seen, want);
    EXPECT_TRUE(errors.empty());
}

TEST(Walk, SkipSubtreeAndDepth) {
    mlk::testing::TempDir t;
    t.write("r/skip/inner.txt", "x");
    t.write("r/keep/inner.txt", "x");
    std::vector<std::string> seen;
    walk_tree(
        t / "r", "r",
        [&](const WalkEntry& e) {
            seen.push_back(e.rel + ":" + std::to_string(e.depth));
            return e.rel == "r/skip" ? WalkAction::kSkipSubtree : WalkAction::kContinue;
        },
        [](const WalkError&) {});
    EXPECT_EQ(seen,
              (std::vector<std::string>{"r:0", "r/keep:1", "r/keep/inner.txt:2", "r/skip:1"}));
}

TEST(Walk, UnreadableDirectoryIsReportedAndTheWalkGoesOn) {
    if (::geteuid() == 0) {
        GTEST_SKIP() << "root reads every directory";
    }
    mlk::testing::TempDir t;
    t.write("r/locked/secret", "x");
    t.write("r/open/file", "x");
    std::filesystem::permissions(t / "r" / "locked", std::filesystem::perms::none);
    std::vector<std::string> seen;
    std::vector<WalkError> errors;
    walk_tree(
        t / "r", "r",
        [&](const WalkEntry& e) {
            seen.push_back(e.rel);
            return WalkAction::kContinue;
        },
        [&](const WalkError& e) { errors.push_back(e); });
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].error, EACCES);
    EXPECT_EQ(seen.back(), "r/open/file");
}

// Entries are lstat'ed relative to their directory's open fd down to a depth, by path below it:
// a very deep tree is walked whole, in order, without holding an fd per level.
TEST(Walk, AVeryDeepTreeIsWalkedWholeWithBoundedFds) {
    mlk::testing::TempDir t;
    constexpr int kDepth = 150;
    std::filesystem::path p = t / "root";
    std::filesystem::create_directories(p);
    for (int i = 0; i < kDepth; ++i) {
        std::ofstream(p / "f") << i;
        p /= "d";
        std::filesystem::create_directory(p);
    }
    const auto open_fds = [] {
        return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                             std::filesystem::directory_iterator{});
    };
    const auto before = open_fds();
    long most = 0;
    int files = 0;
    int dirs = 0;
    int deepest = 0;
    walk_tree(
        t / "root", "root",
        [&](const WalkEntry& e) {
            if (S_ISREG(e.st.st_mode)) {
                ++files;
                EXPECT_EQ(e.st.st_size, static_cast<off_t>(std::to_string(e.depth - 1).size()))
                    << e.rel;
            } else {
                ++dirs;
            }
            deepest = std::max(deepest, e.depth);
            most = std::max<long>(most, open_fds() - before);
            return WalkAction::kContinue;
        },
        [](const WalkError& err) { ADD_FAILURE() << err.path << ": " << err.error; });
    EXPECT_EQ(files, kDepth);
    EXPECT_EQ(dirs, kDepth + 1);
    EXPECT_EQ(deepest, kDepth);
    EXPECT_LE(most, 70);
    EXPECT_EQ(open_fds(), before);
}

TEST(Walk, MissingRootThrows) {
    mlk::testing::TempDir t;
    EXPECT_THROW(walk_tree(
                     t / "absent", "absent", [](const WalkEntry&) { return WalkAction::kContinue; },
                     [](const WalkError&) {}),
                 std::system_error);
}

}  // namespace
}  // namespace mlk::util
