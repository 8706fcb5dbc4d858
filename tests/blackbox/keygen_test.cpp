// Black-box tests of `mlkeeper keygen`: identity files the standard age tools read, written
// with mode 0600 and never overwritten by accident.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/mlkeeper_runner.hpp"
#include "support/shell.hpp"

namespace mlk {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::MlkeeperRunner;
using ::testing::Not;
using ::testing::StartsWith;

using testing::run_shell;

TEST(Keygen, WritesAnIdentityTheAgeToolsReadAndNeverOverwritesIt) {
    MlkeeperRunner m;
    const fs::path key = m.dir() / "key.txt";
    auto r = m.run({"keygen", "-o", key.string(), "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    const std::string recipient = j["recipient"];
    EXPECT_THAT(recipient, StartsWith("age1"));
    struct stat st {};
    ASSERT_EQ(::stat(key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    std::ifstream in(key);
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    EXPECT_THAT(text, HasSubstr("# public key: " + recipient));
    EXPECT_THAT(r.out, Not(HasSubstr("AGE-SECRET-KEY")));

    auto again = m.run({"keygen", "-o", key.string()});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_THAT(again.err, HasSubstr("already exists"));
    std::ifstream in2(key);
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in2)), {}), text) << "overwritten";

    auto y = m.run({"keygen", "-y", key.string()});
    ASSERT_EQ(y.exit_code, 0) << y.err;
    EXPECT_EQ(y.out, recipient + "\n");
    auto bad = m.run({"keygen", "-y", (m.dir() / "missing.txt").string()});
    EXPECT_EQ(bad.exit_code, 1);

    if (!fs::exists("/usr/bin/age") || !fs::exists("/usr/bin/age-keygen")) {
        GTEST_SKIP() << "the age tools are not installed";
    }
    EXPECT_EQ(run_shell("age-keygen -y '" + key.string() + "'").out, recipient + "\n");
    auto trip = run_shell("echo secret-payload | age -r " + recipient + " | age -d -i '" +
                          key.string() + "'");
    EXPECT_EQ(trip.exit_code, 0) << trip.err;
    EXPECT_EQ(trip.out, "secret-payload\n");
}

TEST(Keygen, ToStdoutLikeAgeKeygen) {
    MlkeeperRunner m;
    auto r = m.run({"keygen"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("AGE-SECRET-KEY-1"));
    EXPECT_THAT(r.err, HasSubstr("Public key: age1"));
}

}  // namespace
}  // namespace mlk
