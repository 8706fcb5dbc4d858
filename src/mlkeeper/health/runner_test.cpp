#include "mlkeeper/health/runner.hpp"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "mlkeeper/core/error.hpp"

namespace mlk::health {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct TempDir {
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "mlk-runner-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp");
        path = tmpl;
    }
    ~TempDir() { fs::remove_all(path); }
    fs::path write(const std::string& name, const std::string& text) const {
        fs::create_directories((path / name).parent_path());
        std::ofstream(path / name) << text;
        return path / name;
    }
    fs::path path;
};

core::Config load(const std::string& toml, std::map<std::string, std::string> env,
                  std::vector<core::ConfigInputs::Override> flags = {}) {
    TempDir d;
    core::ConfigInputs in;
    in.file = d.write("mlkeeper.toml", toml);
    in.env = std::move(env);
    in.flags = std::move(flags);
    return core::Config::load(in);
}

TEST(Options, DefaultsMatchTheSeeds) {
    auto o = options_from_config(core::Config::defaults());
    EXPECT_DOUBLE_EQ(o.disk.usage.warn, 80);
    EXPECT_DOUBLE_EQ(o.disk.usage.crit, 90);
    EXPECT_DOUBLE_EQ(o.disk.inodes.crit, 90);
    EXPECT_DOUBLE_EQ(o.memory.memory.warn, 85);
    EXPECT_DOUBLE_EQ(o.gpu.temp_c.warn, 75);
    EXPECT_DOUBLE_EQ(o.gpu.temp_c.crit, 85);
    EXPECT_EQ(o.services, std::vector<std::string>{"docker"});
    EXPECT_EQ(o.network, Network::kCheck);
    EXPECT_TRUE(o.probes.empty());
}

TEST(Options, FlagBeatsEnvBeatsFile) {
    const std::string toml =
        "[health]\ndisk_warn_threshold = 60\ndisk_crit_threshold = 95\n"
        "services_to_check = [\"nginx\"]\n";
    auto o = options_from_config(load(toml, {}));
    EXPECT_DOUBLE_EQ(o.disk.usage.warn, 60);
    EXPECT_EQ(o.services, std::vector<std::string>{"nginx"});
    o = options_from_config(
        load(toml, {{"DISK_WARN_THRESHOLD", "70"}, {"SERVICES_TO_CHECK", "docker nginx docker"}}));
    EXPECT_DOUBLE_EQ(o.disk.usage.warn, 70);
    EXPECT_EQ(o.services, (std::vector<std::string>{"docker", "nginx"}));  // deduplicated
    o = options_from_config(load(toml, {{"DISK_WARN_THRESHOLD", "70"}},
                                 {{"health.disk_warn_threshold", "75", "--disk-warn"},
                                  {"health.network", "false", "--no-network"}}));
    EXPECT_DOUBLE_EQ(o.disk.usage.warn, 75);
    EXPECT_DOUBLE_EQ(o.disk.usage.crit, 95);
    EXPECT_EQ(o.network, Network::kSkip);
}

TEST(Options, InvalidCombinationsAndProbesListEveryProblem) {
    const std::string toml =
        "[health]\n"
        "tcp_targets = [\"nohost\"]\n"
        "probes = [\"http://127.0.0.1:8000/health expect=200\", \"ftp://x/\", \"tcp://h\"]\n";
    try {
        options_from_config(load(toml, {}));
        FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("health.tcp_targets: \"nohost\" is not host:port"), std::string::npos);
        EXPECT_NE(m.find("health.probes[1] \"ftp://x/\": unknown scheme"), std::string::npos) << m;
        EXPECT_NE(m.find("health.probes[2]"), std::string::npos);
        EXPECT_EQ(m.find("probes[0]"), std::string::npos);
    }
}

TEST(Options, WarnAboveCritIsRefusedWhenTheConfigLoads) {
    try {
        (void)load("[health]\nmem_warn_threshold = 96\nmem_crit_threshold = 95\n", {});
        FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find(
                      "mem_warn_threshold (96) must not be above mem_crit_threshold (95"),
                  std::string::npos)
            << e.what();
    }
}

// A whole run against a fake /proc: order, content, and no network when skipped.
TEST(Runner, FullRunOnFakeProc) {
    TempDir d;
    d.write("proc/meminfo", "MemTotal: 1000000 kB\nMemAvailable: 100000 kB\nSwapTotal: 0 kB\n");
    d.write("proc/loadavg", "0.50 0.40 0.30 1/100 1\n");
    d.write("proc/uptime", "100.0 50.0\n");
    d.write("proc/vmstat", "oom_kill 3\n");
    d.write("proc/self/mounts", "/dev/vda / ext4 rw 0 0\n");
    d.write("sys/devices/system/cpu/online", "0-1\n");
    d.write("syslog", "");
    HealthEnv env;
    env.proc_root = d.path / "proc";
    env.sys_root = d.path / "sys";
    env.run_root = d.path / "run";
    env.reboot_required_file = d.path / "reboot-required";
    HealthOptions o;
    o.network = Network::kSkip;
    o.errors.syslog_file = d.path / "syslog";
    o.previous_oom_kills = 1;
    o.gpu_source = [] {
        return std::optional(std::vector<GpuReading>{{0, "A100", 80.0, 10.0, 0ull, false}});
    };
    const auto start = std::chrono::steady_clock::now();
    auto run = run_health(o, env);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    std::vector<std::string> names;
    for (const auto& c : run.report.checks)
        names.push_back(c.check);
    EXPECT_EQ(names, (std::vector<std::string>{"Disk usage /", "Inode usage /", "Memory usage",
                                               "Swap usage", "CPU load", "Service docker", "GPU 0",
                                               "Recent errors", "OOM kills", "Uptime",
                                               "Reboot required"}));
    EXPECT_EQ(run.oom_kills, 3u);
    auto s = summarize(run.report.checks);
    EXPECT_EQ(s.warnings, 3);  // memory 90%, GPU 80°C, 2 OOM kills
    EXPECT_EQ(exit_code(run.report.checks, Format::kText), 1);
    EXPECT_FALSE(run.report.hostname.empty());

    o.network = Network::kCheck;  // default route from the fake tree (missing: error)
    run = run_health(o, env);
    bool route = false;
    for (const auto& c : run.report.checks)
        route |= c.check == "Default route";
    EXPECT_TRUE(route);
}

}  // namespace
}  // namespace mlk::health
