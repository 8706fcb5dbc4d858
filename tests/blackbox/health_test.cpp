// Black-box tests of `mlkeeper health`: the seeds' JSON shape, exit codes,
// a real tmpfs filled to the brim, Nagios and Prometheus output (promtool),
// and probes against real nginx and redis servers started here.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/mlkeeper_runner.hpp"
#include "support/servers.hpp"
#include "support/tmpfs.hpp"

namespace mlk {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class HealthCli : public ::testing::Test {
  protected:
    void SetUp() override {
        // Deterministic on any machine: lenient limits for what the test does
        // not control, no journal, no reboot flag, no services.
        auto& e = m_.env();
        e["DISK_WARN_THRESHOLD"] = "99";
        e["DISK_CRIT_THRESHOLD"] = "99.5";
        e["MEM_WARN_THRESHOLD"] = "99";
        e["MEM_CRIT_THRESHOLD"] = "100";
        e["SWAP_WARN_THRESHOLD"] = "99";
        e["SWAP_CRIT_THRESHOLD"] = "100";
        e["LOAD_WARN_THRESHOLD"] = "9000";
        e["LOAD_CRIT_THRESHOLD"] = "10000";
        e["SERVICES_TO_CHECK"] = "";
        e["HEALTH_SYSLOG_FILE"] = (m_.dir() / "syslog").string();
        e["HEALTH_REBOOT_REQUIRED_FILE"] = (m_.dir() / "reboot-required").string();
        e["MLKEEPER_NVML_LIBRARY"] = (m_.dir() / "no-nvml.so").string();
        std::ofstream(m_.dir() / "syslog") << "";
    }
    util::RunResult health(std::vector<std::string> args) {
        args.insert(args.begin(), "health");
        return m_.run(args);
    }
    testing::MlkeeperRunner m_;
};

TEST_F(HealthCli, JsonHasTheSeedsShape) {
    auto r = health({"--no-network", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j["timestamp"].is_string());
    EXPECT_TRUE(j["hostname"].is_string());
    ASSERT_TRUE(j["checks"].is_array());
    ASSERT_FALSE(j["checks"].empty());
    for (const auto& c : j["checks"]) {
        EXPECT_TRUE(c["check"].is_string()) << c;
        EXPECT_THAT(c["status"].get<std::string>(), MatchesRegex("pass|warn|fail")) << c;
        EXPECT_TRUE(c["message"].is_string()) << c;
        EXPECT_TRUE(c.contains("value") && c.contains("threshold") && c.contains("unit")) << c;
    }
    const auto& s = j["summary"];
    EXPECT_EQ(s["total"].get<int>(), static_cast<int>(j["checks"].size()));
    EXPECT_EQ(s["passed"].get<int>() + s["warnings"].get<int>() + s["failed"].get<int>(),
              s["total"].get<int>());
    EXPECT_DOUBLE_EQ(s["health_score"].get<double>(), 100.0);
}

TEST_F(HealthCli, AFullDiskIsCriticalAndNamedInEveryFormat) {
    const auto tmpfs = testing::ScopedTmpfs::mount(m_.dir() / "full", "1m");
    if (!tmpfs) {
        GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
    }
    const auto mnt = tmpfs->path();
    {
        std::ofstream f(mnt / "fill", std::ios::binary);
        std::string block(4096, 'x');
        for (int i = 0; i < 1024 && f.write(block.data(), block.size()); ++i) {
        }
    }
    m_.env()["HEALTH_INCLUDE_MOUNTS"] = mnt.string();

    auto r = health({"--no-network", "--json"});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out);
    bool found = false;
    for (const auto& c : j["checks"]) {
        if (c["message"].get<std::string>().find(mnt.string()) != std::string::npos &&
            c["status"] == "fail") {
            found = true;
        }
    }
    EXPECT_TRUE(found) << r.out;
    EXPECT_LT(j["summary"]["health_score"].get<double>(), 100.0);

    auto nagios = health({"--no-network", "--format", "nagios"});
    EXPECT_EQ(nagios.exit_code, 2);
    EXPECT_EQ(nagios.out.rfind("HEALTH CRITICAL - ", 0), 0u) << nagios.out;
    EXPECT_THAT(nagios.out, HasSubstr(" | "));  // performance data follows

    if (std::filesystem::exists("/usr/bin/promtool")) {
        auto dir = m_.dir() / "textfile";
        std::filesystem::create_directories(dir);
        auto p = health({"--no-network", "--textfile", dir.string()});
        EXPECT_EQ(p.exit_code, 2);
        auto check = util::run_process(
            {"/bin/sh", "-c",
             "promtool check metrics < " + (dir / "mlkeeper_health.prom").string()});
        EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    }
}

TEST_F(HealthCli, ThresholdFlagsBeatTheEnvironment) {
    auto r = health({"--no-network", "--mem-warn", "0", "--json"});
    EXPECT_EQ(r.exit_code, 1) << r.out;  // any memory use is above 0 %
    auto bad = health({"--disk-warn", "95", "--disk-crit", "90"});
    EXPECT_EQ(bad.exit_code, 78) << bad.err;  // warn above crit: a configuration error
    EXPECT_THAT(bad.err, HasSubstr("disk_warn_threshold"));
}

TEST_F(HealthCli, ProbesAgainstRealServers) {
    std::optional<testing::NginxServer> nginx;
    std::optional<testing::RedisServer> redis;
    try {
        nginx.emplace();
        redis.emplace();
    } catch (const testing::ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    const int closed = testing::free_port();
    m_.env()["HEALTH_PROBES"] = nginx->url("/health") + " name=model-api\n" +
                                "redis://127.0.0.1:" + std::to_string(redis->port()) +
                                " name=cache\n" + "tcp://127.0.0.1:" + std::to_string(closed) +
                                " name=gone timeout=1s\n";
    auto r = health({"--json"});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out);
    std::map<std::string, std::string> status;
    for (const auto& c : j["checks"]) {
        status[c["check"].get<std::string>()] = c["status"].get<std::string>();
    }
    auto find = [&](const std::string& name) {
        for (const auto& [k, v] : status) {
            if (k.find(name) != std::string::npos)
                return v;
        }
        return std::string("missing");
    };
    EXPECT_EQ(find("model-api"), "pass") << r.out;
    EXPECT_EQ(find("cache"), "pass") << r.out;
    EXPECT_EQ(find("gone"), "fail") << r.out;
}

}  // namespace
}  // namespace mlk
