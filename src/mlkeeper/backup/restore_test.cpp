#include "mlkeeper/backup/restore.hpp"

#include <gtest/gtest.h>

namespace mlk::backup {
namespace {

TEST(Restore, SafeRelativePaths) {
    EXPECT_TRUE(is_safe_relative("models/a.bin"));
    EXPECT_TRUE(is_safe_relative("models/./a.bin"));
    EXPECT_TRUE(is_safe_relative("models/..a/b"));
    EXPECT_FALSE(is_safe_relative(""));
    EXPECT_FALSE(is_safe_relative("/etc/passwd"));
    EXPECT_FALSE(is_safe_relative("../x"));
    EXPECT_FALSE(is_safe_relative("models/../../x"));
    EXPECT_FALSE(is_safe_relative("models/.."));
}

TEST(Restore, LinksMustStayInside) {
    EXPECT_TRUE(link_stays_inside("models/latest", "resnet50"));
    EXPECT_TRUE(link_stays_inside("models/a/b", "../c"));
    EXPECT_TRUE(link_stays_inside("models/a/b", "../../models"));
    EXPECT_FALSE(link_stays_inside("models/a/b", "../../../etc"));
    EXPECT_FALSE(link_stays_inside("models/x", "/etc"));
    EXPECT_FALSE(link_stays_inside("models/x", ""));
    EXPECT_FALSE(link_stays_inside("top", ".."));
    EXPECT_TRUE(link_stays_inside("models/x", "./y/../z"));
}

}  // namespace
}  // namespace mlk::backup
