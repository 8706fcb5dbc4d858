#include "mlkeeper/util/sd_bus.hpp"

#include <cerrno>
#include <chrono>
#include <memory>
#include <sstream>  // gtest prints std::chrono durations through ostringstream

#include <gtest/gtest.h>

#include "support/fake_systemd.hpp"
#include "support/temp_dir.hpp"

namespace mlk::util {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using mlk::testing::DbusDaemon;
using mlk::testing::FakeSystemd;
using mlk::testing::ScopedBusAddress;
using mlk::testing::ServerUnavailable;
using mlk::testing::TempDir;

constexpr const char* kDbus = "org.freedesktop.DBus";
constexpr const char* kSystemd = "org.freedesktop.systemd1";

TEST(SdBus, AMissingSocketIsASystemErrorNamingTheAddress) {
    TempDir dir;
    const std::string address = "unix:path=" + (dir / "no-bus").string();
    try {
        open_system_bus(address);
        FAIL() << "open_system_bus should throw";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOENT);
        EXPECT_NE(std::string(e.what()).find("cannot connect to " + address), std::string::npos)
            << e.what();
    }
    ScopedBusAddress nowhere(address);
    try {
        open_system_bus();
        FAIL() << "open_system_bus() should throw";
    } catch (const std::system_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot connect to the system bus"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(open_user_bus(), std::system_error);
}

TEST(SdBus, AGarbageAddressIsASystemError) {
    EXPECT_THROW(open_system_bus("no-such-transport:x=y"), std::system_error);
}

TEST(SdBus, ErrorGuardTextFallsBackToStrerror) {
    BusErrorGuard e;
    EXPECT_EQ(e.name(), "");
    EXPECT_EQ(e.text(-ENOENT), "No such file or directory");
    sd_bus_error_set(e.get(), "org.example.Broken", "it broke");
    EXPECT_EQ(e.name(), "org.example.Broken");
    EXPECT_EQ(e.text(-EIO), "it broke");
    const BusError err(-EIO, e, "Frob");
    EXPECT_STREQ(err.what(), "Frob: it broke");
    EXPECT_EQ(err.error_name(), "org.example.Broken");
    EXPECT_EQ(err.code().value(), EIO);
}

TEST(SdBus, CallsAndPropertiesOnARealBus) {
    std::unique_ptr<FakeSystemd> fake;
    try {
        fake = std::make_unique<FakeSystemd>();
    } catch (const ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    testing::FakeUnit u;
    u.active_state = "active";
    u.sub_state = "running";
    u.main_pid = 77;
    u.exec_main_status = -5;
    fake->add_unit("a.service", u);

    auto bus = open_system_bus(fake->address());
    set_call_timeout(bus.get(), 2s);
    const auto reply = call_method(bus.get(), kSystemd, "/org/freedesktop/systemd1",
                                   "org.freedesktop.systemd1.Manager", "GetUnit", "s", "a.service");
    const auto path = read_object_path(reply.get());
    EXPECT_EQ(path, "/org/freedesktop/systemd1/unit/a_2eservice");
    const auto p = path.c_str();
    EXPECT_EQ(
        get_property_string(bus.get(), kSystemd, p, "org.freedesktop.systemd1.Unit", "ActiveState"),
        "active");
    EXPECT_EQ(
        get_property_u32(bus.get(), kSystemd, p, "org.freedesktop.systemd1.Service", "MainPID"),
        77u);
    EXPECT_EQ(get_property_i32(bus.get(), kSystemd, p, "org.freedesktop.systemd1.Service",
                               "ExecMainStatus"),
              -5);

    // A D-Bus error reply: the name and the peer's message.
    try {
        call_method(bus.get(), kSystemd, "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager", "GetUnit", "s", "b.service");
        FAIL() << "GetUnit b.service should throw";
    } catch (const BusError& e) {
        EXPECT_EQ(e.error_name(), "org.freedesktop.systemd1.NoSuchUnit");
        EXPECT_STREQ(e.what(), "GetUnit: Unit b.service not loaded.");
    }
    // A property of the wrong type, or of an object that does not exist.
    EXPECT_THROW(
        get_property_u32(bus.get(), kSystemd, p, "org.freedesktop.systemd1.Unit", "ActiveState"),
        BusError);
    EXPECT_THROW(get_property_string(bus.get(), kSystemd, "/org/freedesktop/systemd1/unit/zz",
                                     "org.freedesktop.systemd1.Unit", "ActiveState"),
                 BusError);
    // A reply that holds no object path.
    const auto id = call_method(bus.get(), kDbus, "/org/freedesktop/DBus", kDbus, "GetId", "");
    EXPECT_THROW(read_object_path(id.get()), BusError);
    // A name nobody owns.
    try {
        call_method(bus.get(), "org.example.Nobody", "/", "org.example.X", "Y", "");
        FAIL() << "a call to an unowned name should throw";
    } catch (const BusError& e) {
        EXPECT_EQ(e.error_name(), "org.freedesktop.DBus.Error.ServiceUnknown");
    }
}

TEST(SdBus, DefaultBusesHonourTheEnvironment) {
    std::unique_ptr<DbusDaemon> daemon;
    try {
        daemon = std::make_unique<DbusDaemon>();
    } catch (const ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    ScopedBusAddress address(daemon->address());
    for (auto* bus : {open_system_bus().release(), open_user_bus().release()}) {
        BusPtr owned(bus);
        const char* unique = nullptr;
        ASSERT_GE(sd_bus_get_unique_name(owned.get(), &unique), 0);
        EXPECT_EQ(std::string(unique).substr(0, 1), ":");
    }
}

// A peer that owns its name but never answers: the call timeout bounds the wait.
TEST(SdBus, TheCallTimeoutBoundsASilentPeer) {
    std::unique_ptr<DbusDaemon> daemon;
    try {
        daemon = std::make_unique<DbusDaemon>();
    } catch (const ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    auto silent = open_system_bus(daemon->address());
    ASSERT_GE(sd_bus_request_name(silent.get(), "org.example.Silent", 0), 0);
    auto bus = open_system_bus(daemon->address());
    set_call_timeout(bus.get(), 200ms);
    const auto t0 = Clock::now();
    try {
        call_method(bus.get(), "org.example.Silent", "/", "org.example.X", "Y", "");
        FAIL() << "the call should time out";
    } catch (const BusError& e) {
        EXPECT_EQ(e.code().value(), ETIMEDOUT);
        EXPECT_EQ(e.error_name(), "org.freedesktop.DBus.Error.Timeout");
    }
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 2000ms);
}

TEST(SdBus, ALostConnectionFailsTheNextCall) {
    std::unique_ptr<DbusDaemon> daemon;
    try {
        daemon = std::make_unique<DbusDaemon>();
    } catch (const ServerUnavailable& e) {
        GTEST_SKIP() << e.what();
    }
    auto bus = open_system_bus(daemon->address());
    set_call_timeout(bus.get(), 2s);
    (void)call_method(bus.get(), kDbus, "/org/freedesktop/DBus", kDbus, "GetId", "");
    daemon->kill();
    try {
        call_method(bus.get(), kDbus, "/org/freedesktop/DBus", kDbus, "GetId", "");
        FAIL() << "a call on a dead bus should throw";
    } catch (const BusError& e) {
        EXPECT_NE(e.code().value(), 0);
        EXPECT_NE(std::string(e.what()).find("GetId: "), std::string::npos) << e.what();
    }
    EXPECT_LE(sd_bus_is_open(bus.get()), 0);
}

}  // namespace
}  // namespace mlk::util
