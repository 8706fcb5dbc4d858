#include "mlkeeper/cleanup/safety.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "support/cleanup_tree.hpp"

namespace mlk::cleanup {
namespace {

using testing::TempTree;

RootPolicy policy_for(const TempTree& t, std::vector<std::string> allow = {}) {
    std::ofstream(t / "passwd") << "root:x:0:0:root:/root:/bin/bash\n"
                                << "alice:x:1000:1000::" << (t / "homes/alice").string()
                                << ":/bin/bash\n"
                                << "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"
                                << "broken line\n";
    return default_root_policy(t / "backup", allow, t / "passwd");
}

TEST(Safety, RefusesSystemRoots) {
    TempTree t;
    auto p = policy_for(t);
    for (const char* d :
         {"/", "/etc", "/usr", "/var", "/home", "/root", "/boot", "/usr/share", "/etc/ssl"}) {
        auto r = resolve_root(d, p);
        if (r.missing) {
            continue;  // not present in this container
        }
        EXPECT_FALSE(r.refusal.empty()) << d;
    }
    EXPECT_TRUE(resolve_root("/var/log", p).refusal.empty());
    // /tmp holds this test's fake homes and backup dir, so it is refused here, rightly;
    // with the real passwd file it is fine.
    EXPECT_FALSE(resolve_root("/tmp", p).refusal.empty());
    auto real = default_root_policy("/backup/models", {});
    EXPECT_TRUE(resolve_root("/tmp", real).refusal.empty());
}

TEST(Safety, DotDotAndSymlinksAreResolvedFirst) {
    TempTree t;
    auto p = policy_for(t);
    t.dir("a/b");
    auto r = resolve_root(t / "a/b/../../../../../../../etc", p);
    EXPECT_EQ(r.resolved, "/etc");
    EXPECT_NE(r.refusal.find("resolves to /etc"), std::string::npos) << r.refusal;
    std::filesystem::create_directory_symlink("/etc", t / "exp");
    auto r2 = resolve_root(t / "exp", p);
    EXPECT_FALSE(r2.refusal.empty());
    EXPECT_EQ(r2.resolved, "/etc");
    EXPECT_FALSE(resolve_root("relative/dir", p).refusal.empty());
}

TEST(Safety, HomesBackupDirAndAllowList) {
    TempTree t;
    t.dir("homes/alice");
    t.dir("backup/models");
    auto p = policy_for(t);
    EXPECT_FALSE(resolve_root(t / "homes/alice", p).refusal.empty());
    EXPECT_FALSE(resolve_root(t / "homes", p).refusal.empty());  // contains a home
    EXPECT_FALSE(resolve_root(t.root(), p).refusal.empty());     // contains both
    EXPECT_FALSE(resolve_root(t / "backup", p).refusal.empty());
    EXPECT_FALSE(resolve_root(t / "backup/models", p).refusal.empty());  // inside the backups
    t.dir("homes/alice/exp");
    EXPECT_TRUE(resolve_root(t / "homes/alice/exp", p).refusal.empty());
    auto allowed = policy_for(t, {(t / "homes/alice").string()});
    EXPECT_TRUE(resolve_root(t / "homes/alice", allowed).refusal.empty());
    EXPECT_FALSE(resolve_root(t / "homes", allowed).refusal.empty());
}

TEST(Safety, MissingRootIsNotAnError) {
    TempTree t;
    auto r = resolve_root(t / "nope", policy_for(t));
    EXPECT_TRUE(r.missing);
    EXPECT_TRUE(r.refusal.empty());
}

TEST(Safety, OpenDirNofollowRefusesSymlinkComponents) {
    TempTree t;
    t.dir("real/sub");
    std::filesystem::create_directory_symlink(t / "real", t / "link");
    EXPECT_TRUE(open_dir_nofollow(t / "real/sub").valid());
    EXPECT_THROW(open_dir_nofollow(t / "link/sub"), std::system_error);
    EXPECT_THROW(open_dir_nofollow(t / "link"), std::system_error);
    EXPECT_THROW(open_dir_nofollow("relative"), std::system_error);
}

TEST(Safety, IsWithin) {
    EXPECT_TRUE(is_within("/a/b", "/a"));
    EXPECT_TRUE(is_within("/a", "/a"));
    EXPECT_TRUE(is_within("/a", "/"));
    EXPECT_FALSE(is_within("/ab", "/a"));
    EXPECT_FALSE(is_within("/a", "/a/b"));
}

TEST(Safety, HomeDirsSkipsJunk) {
    TempTree t;
    policy_for(t);
    auto h = home_dirs(t / "passwd");
    ASSERT_EQ(h.size(), 2u);
    EXPECT_EQ(h[0], "/root");
    EXPECT_TRUE(home_dirs(t / "missing").empty());
}

}  // namespace
}  // namespace mlk::cleanup
