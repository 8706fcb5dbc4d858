#include "mlkeeper/health/services.hpp"

#include <unistd.h>

#include <memory>
#include <optional>

#include <gtest/gtest.h>

#include "support/fake_systemd.hpp"

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

// ---- through a real bus, against a fake systemd on a private dbus-daemon ----

std::unique_ptr<testing::FakeSystemd> fake_systemd(std::string& why) {
    std::unique_ptr<testing::FakeSystemd> fake;
    try {
        fake = std::make_unique<testing::FakeSystemd>();
        testing::FakeUnit up;
        up.active_state = "active";
        up.sub_state = "running";
        fake->add_unit("docker.service", up);
        testing::FakeUnit down;
        down.active_state = "failed";
        down.sub_state = "failed";
        fake->add_unit("crashy.service", down);
        testing::FakeUnit starting;
        starting.active_state = "activating";
        starting.sub_state = "start-pre";
        fake->add_unit("slow.service", starting);
    } catch (const testing::ServerUnavailable& e) {
        why = e.what();
        fake.reset();
    }
    return fake;
}

TEST(Services, GradesUnitsThroughTheBus) {
    std::string why;
    auto fake = fake_systemd(why);
    if (!fake) {
        GTEST_SKIP() << why;
    }
    TempRun run;
    fs::create_directories(run.path / "systemd/system");
    HealthEnv env;
    env.run_root = run.path;
    env.system_bus_address = fake->address();
    auto r = check_services(env, {"docker", "crashy.service", "slow", "nope"},
                            std::chrono::milliseconds(2000));
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r[0].ran, Ran::kYes);
    EXPECT_EQ(r[0].status, Status::kPass);
    EXPECT_EQ(r[0].message, "Service docker: active (running)");
    EXPECT_EQ(r[1].status, Status::kFail);
    EXPECT_EQ(r[1].message, "Service crashy.service: failed (failed) - not running");
    EXPECT_EQ(r[2].status, Status::kWarn);
    EXPECT_EQ(r[2].message, "Service slow: activating (start-pre)");
    EXPECT_EQ(r[3].ran, Ran::kYes);
    EXPECT_EQ(r[3].status, Status::kFail);
    EXPECT_EQ(r[3].message, "Service nope: unit nope.service not found");
    EXPECT_TRUE(fake->called("LoadUnit nope.service"));
}

// No address configured: sd-bus's default system bus, which DBUS_SYSTEM_BUS_ADDRESS overrides.
TEST(Services, TheDefaultBusHonoursDbusSystemBusAddress) {
    std::string why;
    auto fake = fake_systemd(why);
    if (!fake) {
        GTEST_SKIP() << why;
    }
    testing::ScopedBusAddress address(fake->address());
    TempRun run;
    fs::create_directories(run.path / "systemd/system");
    HealthEnv env;
    env.run_root = run.path;
    auto r = check_services(env, {"docker"}, std::chrono::milliseconds(2000));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status, Status::kPass) << r[0].message;
}

// The bus is up but systemd is not on it (or went away): an error naming the unit, in bounded time.
TEST(Services, ABusWithoutSystemdIsAnError) {
    std::optional<testing::DbusDaemon> bus;
    try {
        bus.emplace();
    } catch (const testing::ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    TempRun run;
    fs::create_directories(run.path / "systemd/system");
    HealthEnv env;
    env.run_root = run.path;
    env.system_bus_address = bus->address();
    const auto start = std::chrono::steady_clock::now();
    auto r = check_services(env, {"docker"}, std::chrono::milliseconds(500));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].ran, Ran::kError);
    EXPECT_NE(r[0].message.find("cannot load unit docker.service: "), std::string::npos)
        << r[0].message;
}

}  // namespace
}  // namespace mlk::health
