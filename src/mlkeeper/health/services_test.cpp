#include "mlkeeper/health/services.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

namespace mlk::health {
namespace {

namespace fs = std::filesystem;

struct TempRun {
    TempRun() {
        std::string tmpl = (fs::temp_directory_path() / "mlk-run-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp");
        path = tmpl;
    }
    ~TempRun() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path path;
};

TEST(Services, UnitNames) {
    EXPECT_EQ(unit_name("docker"), "docker.service");
    EXPECT_EQ(unit_name("docker.socket"), "docker.socket");
    EXPECT_EQ(unit_name("ml-backup.timer"), "ml-backup.timer");
    EXPECT_EQ(unit_name("nginx.service"), "nginx.service");
    EXPECT_EQ(unit_name(".service"), ".service.service");
}

TEST(Services, GradesUnitStates) {
    EXPECT_EQ(grade_unit("docker", "loaded", "active", "running").status, Status::kPass);
    EXPECT_EQ(grade_unit("docker", "loaded", "activating", "start").status, Status::kWarn);
    EXPECT_EQ(grade_unit("docker", "loaded", "reloading", "running").status, Status::kWarn);
    auto f = grade_unit("docker", "loaded", "failed", "failed");
    EXPECT_EQ(f.status, Status::kFail);
    EXPECT_EQ(f.message, "Service docker: failed (failed) - not running");
    EXPECT_EQ(grade_unit("docker", "loaded", "inactive", "dead").status, Status::kFail);
    auto nf = grade_unit("nope", "not-found", "inactive", "dead");
    EXPECT_EQ(nf.status, Status::kFail);
    EXPECT_EQ(nf.message, "Service nope: unit nope.service not found");
    EXPECT_EQ(nf.key, "service_nope");
}

// This machine (and the fake run root) has no systemd: skipped with the reason.
TEST(Services, SkippedWhenSystemdIsNotRunning) {
    TempRun run;
    HealthEnv env;
    env.run_root = run.path;
    auto r = check_services(env, {"docker", "nginx"}, std::chrono::milliseconds(500));
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].status, Status::kPass);
    EXPECT_EQ(r[0].ran, Ran::kSkipped);
    EXPECT_EQ(r[0].message, "Service docker: skipped: systemd not running: cannot check docker");
    EXPECT_EQ(r[1].check, "Service nginx");
    if (!fs::exists("/run/systemd/system")) {
        auto real = check_services(HealthEnv{}, {"docker"}, std::chrono::milliseconds(500));
        EXPECT_EQ(real[0].ran, Ran::kSkipped);
    }
}

TEST(Services, NoServicesNoResults) {
    EXPECT_TRUE(check_services(HealthEnv{}, {}, std::chrono::milliseconds(500)).empty());
}

// systemd "running" but the bus is unreachable: an error result, not a pass.
TEST(Services, UnreachableBusIsAnError) {
    TempRun run;
    fs::create_directories(run.path / "systemd/system");
    HealthEnv env;
    env.run_root = run.path;
    env.system_bus_address = "unix:path=" + (run.path / "no-such-bus").string();
    const auto start = std::chrono::steady_clock::now();
    auto r = check_services(env, {"docker"}, std::chrono::milliseconds(500));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].ran, Ran::kError);
    EXPECT_EQ(r[0].status, Status::kWarn);
    EXPECT_NE(r[0].message.find("cannot connect to unix:path="), std::string::npos) << r[0].message;
}

}  // namespace
}  // namespace mlk::health
