// The shipped example configs stay in step with the key table: every key is
// documented in examples/mlkeeper.toml, and uncommenting it all is valid.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>
#include "mlkeeper/core/config_schema.hpp"

#include "support/mlkeeper_runner.hpp"

namespace mlk {
namespace {

std::string example() {
    return testing::slurp(std::string(MLK_SOURCE_DIR) + "/examples/mlkeeper.toml");
}

TEST(Examples, EveryKeyIsInTheExampleUnderItsSection) {
    auto text = example();
    for (const auto& k : core::config_keys()) {
        auto section = text.find("[" + std::string(k.section) + "]");
        ASSERT_NE(section, std::string::npos) << k.section;
        auto next = text.find("\n[", section + 1);
        auto body =
            text.substr(section, next == std::string::npos ? std::string::npos : next - section);
        EXPECT_NE(body.find("# " + std::string(k.name) + " = "), std::string::npos)
            << k.section << "." << k.name;
        if (!k.env.empty()) {
            EXPECT_NE(body.find("(env " + std::string(k.env) + ")"), std::string::npos) << k.env;
        }
    }
}

TEST(Examples, UncommentedExampleIsValidAndEqualsTheDefaults) {
    std::istringstream in(example());
    std::string line, out;
    std::regex setting(R"(^# ([a-z_0-9]+ = .*)$)");
    std::smatch m;
    while (std::getline(in, line)) {
        out += (std::regex_match(line, m, setting) ? m[1].str() : line) + "\n";
    }
    testing::MlkeeperRunner r;
    auto file = r.dir().write("all.toml", out);
    auto check = r.run({"config", "check", file.string()});
    EXPECT_EQ(check.exit_code, 0) << check.err;
    auto with_file = r.run({"--config", file.string(), "config", "show", "--json"});
    auto defaults = r.run({"config", "show", "--json"});
    ASSERT_EQ(with_file.exit_code, 0) << with_file.err;
    auto a = nlohmann::json::parse(with_file.out)["settings"];
    auto b = nlohmann::json::parse(defaults.out)["settings"];
    for (auto& [section, keys] : b.items()) {
        for (auto& [name, v] : keys.items()) {
            EXPECT_EQ(a[section][name]["value"], v["value"]) << section << "." << name;
        }
    }
}

TEST(Examples, DemoConfigIsValid) {
    auto demo = testing::slurp(std::string(MLK_SOURCE_DIR) + "/examples/demo.toml");
    testing::MlkeeperRunner r;
    auto file = r.dir().write(
        "demo.toml", std::regex_replace(demo, std::regex("@DEMO@"), r.dir().path().string()));
    auto check = r.run({"config", "check", file.string()});
    EXPECT_EQ(check.exit_code, 0) << check.err;
}

}  // namespace
}  // namespace mlk
