#include "mlkeeper/cleanup/target_spec.hpp"

#include <gtest/gtest.h>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"

namespace mlk::cleanup {
namespace {

std::string error_of(const std::string& item) {
    try {
        parse_target_item(item, 1);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

TEST(TargetSpec, ParsesAllFields) {
    auto t = parse_target_item(
        "name=models path=\"/data/my runs/*\" retention=10 pattern=*.pt,*.ckpt min_size=1M "
        "delete=both enabled=yes",
        0);
    EXPECT_EQ(t.name, "models");
    EXPECT_EQ(*t.path, "/data/my runs/*");
    EXPECT_EQ(t.retention->count(), 10 * 86400);
    EXPECT_EQ(*t.patterns, (std::vector<std::string>{"*.pt", "*.ckpt"}));
    EXPECT_EQ(*t.min_size, 1'000'000u);
    EXPECT_EQ(*t.mode, DeleteMode::kBoth);
    EXPECT_TRUE(*t.enabled);
}

TEST(TargetSpec, RejectsBadItemsWithClearErrors) {
    EXPECT_NE(error_of("name=a retension=3d").find("did you mean \"retention\""),
              std::string::npos);
    EXPECT_NE(error_of("name=a retension=3d").find("cleanup.targets item 2"), std::string::npos);
    EXPECT_NE(error_of("path=/x/*").find("missing name"), std::string::npos);
    EXPECT_NE(error_of("name=a retention=soon").find("soon"), std::string::npos);
    EXPECT_NE(error_of("name=a delete=everything").find("files, runs or both"), std::string::npos);
    EXPECT_NE(error_of("name=a path=/data/*/runs").find("last component"), std::string::npos);
    EXPECT_NE(error_of("name=a path=data/*").find("absolute"), std::string::npos);
    EXPECT_NE(error_of("name=a path=\"/x").find("quote"), std::string::npos);
    EXPECT_NE(error_of("name=a name=b").find("twice"), std::string::npos);
    EXPECT_NE(error_of("name=a min_size=-1").find("min_size"), std::string::npos);
    EXPECT_NE(error_of("name=a pattern=a/b").find("without /"), std::string::npos);
    EXPECT_NE(error_of("name=a/b").find("letters"), std::string::npos);
    EXPECT_NE(error_of("name=a junk").find("key=value"), std::string::npos);
    EXPECT_NE(error_of("name=a path=").find("empty"), std::string::npos);
}

TEST(TargetSpec, SplitsPathIntoRootAndGlob) {
    auto [r1, g1] = split_target_path("/opt/ml/experiments/*");
    EXPECT_EQ(r1, "/opt/ml/experiments");
    EXPECT_EQ(g1, "*");
    auto [r2, g2] = split_target_path("/data/scratch/");
    EXPECT_EQ(r2, "/data/scratch");
    EXPECT_EQ(g2, "");
    auto [r3, g3] = split_target_path("/ml-*");
    EXPECT_EQ(r3, "/");
    EXPECT_EQ(g3, "ml-*");
    EXPECT_THROW(split_target_path(""), std::invalid_argument);
    EXPECT_THROW(split_target_path("/a/[x]/b"), std::invalid_argument);
}

TEST(TargetSpec, DefaultsFromConfigAndOverrides) {
    core::ConfigInputs in;
    in.default_file = "/nonexistent/mlkeeper.toml";
    in.env = {{"EXPERIMENTS_DIR", "/srv/exp"}, {"LOGS_RETENTION", "3"}};
    auto cfg = core::Config::load(in);
    auto t = build_targets(cfg);
    ASSERT_EQ(t.size(), 4u);
    EXPECT_EQ(t[0].name, "experiments");
    EXPECT_EQ(t[0].display_path(), "/srv/exp/*");
    EXPECT_EQ(t[0].mode, DeleteMode::kRuns);
    EXPECT_EQ(t[1].retention.count(), 7 * 86400);
    EXPECT_EQ(t[2].display_path(), "/var/log/ml-*");
    EXPECT_EQ(t[2].retention.count(), 3 * 86400);
    EXPECT_EQ(t[3].display_path(), "/tmp/ml-*");
    EXPECT_EQ(t[3].retention.count(), 0);

    auto m = merge_targets(t, {"name=logs retention=1d", "name=scratch path=/data/s/* retention=2",
                               "name=temp enabled=false"});
    ASSERT_EQ(m.size(), 5u);
    EXPECT_EQ(m[2].retention.count(), 86400);
    EXPECT_EQ(m[2].entry_glob, "ml-*");  // inherited
    EXPECT_FALSE(m[3].enabled);
    EXPECT_EQ(m[4].root, "/data/s");
    EXPECT_THROW(merge_targets(t, {"name=new path=/x/*"}), ConfigError);  // no retention
    EXPECT_THROW(merge_targets(t, {"name=logs", "name=logs"}), ConfigError);
}

TEST(TargetSpec, PatternsMatchDotfiles) {
    EXPECT_TRUE(matches_any({"*"}, ".hidden"));
    EXPECT_TRUE(matches_any({"*.pt", "*best*"}, "model_best.bin"));
    EXPECT_FALSE(matches_any({"*.pt"}, "model.ckpt"));
}

}  // namespace
}  // namespace mlk::cleanup
