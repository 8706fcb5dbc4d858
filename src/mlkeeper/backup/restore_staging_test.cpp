#include "mlkeeper/backup/restore_staging.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "support/temp_dir.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using testing::slurp;

mode_t mode_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
}

TEST(StagingDir, CommitMergesIntoExistingDirectories) {
    testing::TempDir tmp;
    tmp.write("to/models/old.txt", "kept");
    ::chmod((tmp / "to/models").c_str(), 0750);
    {
        StagingDir s(tmp / "to");
        EXPECT_EQ(s.path().parent_path(), fs::canonical(tmp / "to"));
        fs::create_directories(s.path() / "models" / "sub");
        std::ofstream(s.path() / "models" / "new.txt") << "new";
        std::ofstream(s.path() / "models" / "sub" / "deep.txt") << "deep";
        ::chmod((s.path() / "models").c_str(), 0555);  // read-only in the archive
        s.commit(Overwrite::kNo);
    }
    EXPECT_EQ(slurp(tmp / "to/models/old.txt"), "kept");
    EXPECT_EQ(slurp(tmp / "to/models/new.txt"), "new");
    EXPECT_EQ(slurp(tmp / "to/models/sub/deep.txt"), "deep");
    EXPECT_EQ(mode_of(tmp / "to/models"), 0555u) << "the archive's permissions win";
    ::chmod((tmp / "to/models").c_str(), 0755);
    for (const auto& e : fs::directory_iterator(tmp / "to")) {
        EXPECT_EQ(e.path().filename(), "models") << "nothing else is left in the target";
    }
}

TEST(StagingDir, WithoutOverwriteAConflictMovesNothing) {
    testing::TempDir tmp;
    tmp.write("to/models/b.txt", "old");
    StagingDir s(tmp / "to");
    fs::create_directories(s.path() / "models");
    std::ofstream(s.path() / "models" / "a.txt") << "a";
    std::ofstream(s.path() / "models" / "b.txt") << "new";
    try {
        s.commit(Overwrite::kNo);
        FAIL() << "expected a refusal";
    } catch (const RestoreError& e) {
        EXPECT_EQ(e.kind(), RestoreError::Kind::kRefused);
        EXPECT_NE(std::string(e.what()).find("models/b.txt"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(tmp / "to/models/a.txt")) << "checked before anything moved";
    EXPECT_EQ(slurp(tmp / "to/models/b.txt"), "old");
}

TEST(StagingDir, OverwriteReplacesFilesLinksAndDirectories) {
    testing::TempDir tmp;
    tmp.write("to/models/file.txt", "old");
    tmp.write("to/models/was_dir/x", "x");
    fs::create_symlink("elsewhere", tmp / "to/models/link");
    {
        StagingDir s(tmp / "to");
        fs::create_directories(s.path() / "models");
        std::ofstream(s.path() / "models" / "file.txt") << "new";
        std::ofstream(s.path() / "models" / "was_dir") << "now a file";
        fs::create_symlink("file.txt", s.path() / "models" / "link");
        s.commit(Overwrite::kYes);
    }
    EXPECT_EQ(slurp(tmp / "to/models/file.txt"), "new");
    EXPECT_EQ(slurp(tmp / "to/models/was_dir"), "now a file");
    EXPECT_EQ(fs::read_symlink(tmp / "to/models/link"), "file.txt");
}

TEST(StagingDir, WithoutCommitNothingIsLeftAndANewTargetIsRemoved) {
    testing::TempDir tmp;
    fs::path staged;
    {
        StagingDir s(tmp / "new" / "target");
        staged = s.path();
        fs::create_directories(s.path() / "models" / "ro");
        std::ofstream(s.path() / "models" / "ro" / "f") << "f";
        ::chmod((s.path() / "models" / "ro").c_str(), 0500);
        ::chmod((s.path() / "models").c_str(), 0500);
    }
    EXPECT_FALSE(fs::exists(staged));
    EXPECT_FALSE(fs::exists(tmp / "new" / "target")) << "it did not exist before";

    tmp.write("existing/keep.txt", "k");
    { StagingDir s(tmp / "existing"); }
    EXPECT_EQ(slurp(tmp / "existing/keep.txt"), "k");
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "existing"), fs::directory_iterator()), 1);
}

TEST(StagingDir, StagingLeftByAKilledRestoreIsRemoved) {
    testing::TempDir tmp;
    // A pid that cannot be running (above the kernel's pid_max limit) and one that is (ours).
    const fs::path dead = tmp / "to" / (std::string(kStagingPrefix) + "99999999");
    const fs::path live = tmp / "to" / (std::string(kStagingPrefix) + std::to_string(::getppid()));
    tmp.write((dead / "models" / "half.bin").lexically_relative(tmp.path()).string(), "half");
    fs::create_directories(live);
    tmp.write("to/.mlkeeper-restore.notapid/x", "x");
    { StagingDir s(tmp / "to"); }
    EXPECT_FALSE(fs::exists(dead));
    EXPECT_TRUE(fs::exists(live)) << "a running restore's staging is left alone";
    EXPECT_TRUE(fs::exists(tmp / "to/.mlkeeper-restore.notapid/x"));
}

}  // namespace
}  // namespace mlk::backup
