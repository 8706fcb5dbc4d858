#include "mlkeeper/api/api_settings.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/config_schema.hpp"
#include "mlkeeper/core/error.hpp"

namespace mlk::api {
namespace {

using namespace std::chrono_literals;

// The ConfigError message for `v`, or "" when it is accepted.
std::string error_of(const ApiConfigValues& v) {
    try {
        api_settings_from(v);
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.code(), ExitCode::kConfig);
        return e.what();
    }
    return "";
}

TEST(ApiSettings, DefaultsAreTheSeedsThreePorts) {
    const auto s = api_settings_from(ApiConfigValues{});
    ASSERT_EQ(s.listeners.size(), 3u);
    EXPECT_EQ(s.listeners[0].name, "shutdown");
    EXPECT_EQ(s.listeners[0].address, "127.0.0.1");
    EXPECT_EQ(s.listeners[0].port, 5001);
    EXPECT_EQ(s.listeners[0].groups,
              (std::vector<RouteGroup>{RouteGroup::kShutdown, RouteGroup::kCommon}));
    EXPECT_EQ(s.listeners[0].prefix, "");
    EXPECT_EQ(s.listeners[1].name, "models");
    EXPECT_EQ(s.listeners[1].port, 5002);
    EXPECT_EQ(s.listeners[1].groups,
              (std::vector<RouteGroup>{RouteGroup::kModels, RouteGroup::kCommon}));
    EXPECT_EQ(s.listeners[2].name, "monitor");
    EXPECT_EQ(s.listeners[2].port, 5003);
    EXPECT_EQ(s.listeners[2].groups,
              (std::vector<RouteGroup>{RouteGroup::kMonitor, RouteGroup::kCommon}));
    EXPECT_TRUE(s.tokens_file.empty());
    EXPECT_TRUE(s.tls_cert.empty());
    EXPECT_EQ(s.max_body, 64u * 1024);
    EXPECT_EQ(s.max_header, 8u * 1024);
    EXPECT_EQ(s.read_timeout, 5s);
    EXPECT_EQ(s.write_timeout, 5s);
    EXPECT_EQ(s.idle_timeout, 5s);
    EXPECT_EQ(s.workers, 8);
    EXPECT_EQ(s.rate_per_minute, 60);
}

TEST(ApiSettings, SinglePortModeServesEverythingUnderApiV1) {
    ApiConfigValues v;
    v.listen = "127.0.0.1:8080";
    const auto s = api_settings_from(v);
    ASSERT_EQ(s.listeners.size(), 1u);
    EXPECT_EQ(s.listeners[0].name, "all");
    EXPECT_EQ(s.listeners[0].port, 8080);
    EXPECT_EQ(s.listeners[0].prefix, "/api/v1");
    EXPECT_EQ(s.listeners[0].groups.size(), 4u);
}

TEST(ApiSettings, EmptyListenerIsDisabled) {
    ApiConfigValues v;
    v.listen_shutdown = "";
    v.listen_monitor = "  ";
    const auto s = api_settings_from(v);
    ASSERT_EQ(s.listeners.size(), 1u);
    EXPECT_EQ(s.listeners[0].name, "models");

    v.listen_models = "";
    EXPECT_TRUE(api_settings_from(v).listeners.empty());
}

TEST(ApiSettings, ParsesHostPortForms) {
    auto hp = parse_host_port("[::1]:5001");
    EXPECT_EQ(hp.address, "::1");
    EXPECT_EQ(hp.port, 5001);
    hp = parse_host_port("[0:0:0:0:0:0:0:1]:80");
    EXPECT_EQ(hp.address, "::1");
    hp = parse_host_port("localhost:65535");
    EXPECT_EQ(hp.address, "127.0.0.1");
    EXPECT_EQ(hp.port, 65535);
    hp = parse_host_port("0.0.0.0:1");
    EXPECT_EQ(hp.address, "0.0.0.0");
    for (const char* bad :
         {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+80",
          "127.0.0.1:-1", "127.0.0.1:80x", "127.0.0.1: 80", ":5001", "::1:5001", "[::1]",
          "[::1]5001", "[::1:5001", "[127.0.0.1]:5001", "[localhost]:1", "example.com:80",
          "256.0.0.1:80", "127.1:80x"}) {
        EXPECT_THROW(parse_host_port(bad), std::invalid_argument) << bad;
    }
}

TEST(ApiSettings, Loopback) {
    EXPECT_TRUE(is_loopback("127.0.0.1"));
    EXPECT_TRUE(is_loopback("127.255.0.9"));
    EXPECT_TRUE(is_loopback("::1"));
    EXPECT_TRUE(is_loopback("::ffff:127.0.0.1"));
    EXPECT_FALSE(is_loopback("0.0.0.0"));
    EXPECT_FALSE(is_loopback("::"));
    EXPECT_FALSE(is_loopback("10.0.0.1"));
    EXPECT_FALSE(is_loopback("128.0.0.1"));
    EXPECT_FALSE(is_loopback("::ffff:10.0.0.1"));
    EXPECT_FALSE(is_loopback("localhost"));
}

TEST(ApiSettings, BadAddressNamesTheKey) {
    ApiConfigValues v;
    v.listen_models = "127.0.0.1";
    EXPECT_EQ(error_of(v).rfind("api.listen_models: '127.0.0.1' has no port", 0), 0u)
        << error_of(v);
    v = {};
    v.listen = "[::1]:99999";
    EXPECT_EQ(error_of(v).rfind("api.listen: port '99999'", 0), 0u) << error_of(v);
}

TEST(ApiSettings, NonLoopbackNeedsATokensFile) {
    ApiConfigValues v;
    v.listen_monitor = "0.0.0.0:5003";
    const auto msg = error_of(v);
    EXPECT_EQ(msg.rfind("api.listen_monitor: 0.0.0.0:5003 is not a loopback address", 0), 0u)
        << msg;
    EXPECT_NE(msg.find("api.tokens_file"), std::string::npos);
    v.tokens_file = "/etc/mlkeeper/api-tokens";
    EXPECT_EQ(error_of(v), "");
    EXPECT_EQ(api_settings_from(v).tokens_file, "/etc/mlkeeper/api-tokens");

    v = {};
    v.listen = "[::]:8080";
    EXPECT_NE(error_of(v).find("not a loopback"), std::string::npos);
    v.listen = "[::1]:8080";
    EXPECT_EQ(error_of(v), "");
}

TEST(ApiSettings, CertAndKeyGoTogether) {
    ApiConfigValues v;
    v.tls_cert = "/etc/ssl/api.pem";
    EXPECT_EQ(error_of(v).rfind("api.tls_key:", 0), 0u) << error_of(v);
    v = {};
    v.tls_key = "/etc/ssl/api.key";
    EXPECT_EQ(error_of(v).rfind("api.tls_cert:", 0), 0u) << error_of(v);
    v.tls_cert = "/etc/ssl/api.pem";
    const auto s = api_settings_from(v);
    EXPECT_EQ(s.tls_cert, "/etc/ssl/api.pem");
    EXPECT_EQ(s.tls_key, "/etc/ssl/api.key");
}

TEST(ApiSettings, TwoListenersOnOnePortAreRefused) {
    ApiConfigValues v;
    v.listen_models = "127.0.0.1:5001";
    EXPECT_EQ(error_of(v).rfind("api.listen_models: 127.0.0.1:5001 is the port api.listen_shutdown "
                                "already uses",
                                0),
              0u)
        << error_of(v);
    v = {};
    v.tokens_file = "/t";
    v.listen_monitor = "0.0.0.0:5001";  // overlaps 127.0.0.1:5001
    EXPECT_NE(error_of(v).find("already uses"), std::string::npos);
    v.listen_monitor = "[::1]:5001";  // another address: fine
    EXPECT_EQ(error_of(v), "");
}

TEST(ApiSettings, LimitsAreRangeChecked) {
    struct Case {
        void (*set)(ApiConfigValues&);
        const char* key;
    };
    for (const auto& c : std::vector<Case>{
             {[](ApiConfigValues& v) { v.max_body = 10; }, "api.max_body:"},
             {[](ApiConfigValues& v) { v.max_body = 1ull << 40; }, "api.max_body:"},
             {[](ApiConfigValues& v) { v.max_header = 100; }, "api.max_header:"},
             {[](ApiConfigValues& v) { v.read_timeout = 0s; }, "api.read_timeout:"},
             {[](ApiConfigValues& v) { v.write_timeout = 301s; }, "api.write_timeout:"},
             {[](ApiConfigValues& v) { v.idle_timeout = 0s; }, "api.idle_timeout:"},
             {[](ApiConfigValues& v) { v.workers = 0; }, "api.workers:"},
             {[](ApiConfigValues& v) { v.workers = 100000; }, "api.workers:"},
             {[](ApiConfigValues& v) { v.rate_per_minute = -1; }, "api.rate_per_minute:"},
         }) {
        ApiConfigValues v;
        c.set(v);
        EXPECT_EQ(error_of(v).rfind(c.key, 0), 0u) << c.key << " -> " << error_of(v);
    }
    ApiConfigValues v;
    v.rate_per_minute = 0;
    v.workers = 1;
    v.read_timeout = 1s;
    const auto s = api_settings_from(v);
    EXPECT_EQ(s.rate_per_minute, 0);
    EXPECT_EQ(s.workers, 1);
    EXPECT_EQ(s.read_timeout, 1s);
}

// Runs once the [api] keys of /work/helper-notes/keys-api.txt are in config_schema.cpp: the
// defaults there must give the same listeners as ApiConfigValues{}.
TEST(ApiSettings, ConfigDefaultsMatchWhenTheKeysExist) {
    if (core::find_key("api.listen") == nullptr) {
        GTEST_SKIP() << "[api] keys are not in the config schema yet";
    }
    const auto s = api_settings_from(core::Config::defaults());
    const auto want = api_settings_from(ApiConfigValues{});
    ASSERT_EQ(s.listeners.size(), want.listeners.size());
    for (std::size_t i = 0; i < s.listeners.size(); ++i) {
        EXPECT_EQ(s.listeners[i].address, want.listeners[i].address);
        EXPECT_EQ(s.listeners[i].port, want.listeners[i].port);
    }
    EXPECT_EQ(s.max_body, want.max_body);
    EXPECT_EQ(s.max_header, want.max_header);
    EXPECT_EQ(s.read_timeout, want.read_timeout);
    EXPECT_EQ(s.write_timeout, want.write_timeout);
    EXPECT_EQ(s.idle_timeout, want.idle_timeout);
    EXPECT_EQ(s.workers, want.workers);
    EXPECT_EQ(s.rate_per_minute, want.rate_per_minute);
}

}  // namespace
}  // namespace mlk::api
