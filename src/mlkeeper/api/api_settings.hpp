// The REST API's settings ([api] in the config): which listeners to open (the seeds' three ports,
// or one port serving everything under /api/v1), authentication, TLS and the transport limits.
// api_settings_from() checks them all before anything binds a socket.
// Thread safety: plain values and pure functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/api/router.hpp"

namespace mlk::core {
class Config;
}

namespace mlk::api {

struct ListenerSettings {
    std::string name;     // "shutdown", "models", "monitor", or "all" in single-port mode
    std::string address;  // an IP literal: "127.0.0.1", "::1", "0.0.0.0"
    int port = 0;         // 0 = an ephemeral port (tests); see ApiServer::bound_ports()
    std::vector<RouteGroup> groups;
    std::string prefix;  // "" or "/api/v1": stripped before routing
};

struct ApiSettings {
    std::vector<ListenerSettings> listeners;
    std::filesystem::path tokens_file;  // empty: no authentication (loopback listeners only)
    std::filesystem::path tls_cert;     // PEM chain; empty: plain HTTP
    std::filesystem::path tls_key;      // PEM private key; set exactly when tls_cert is
    std::size_t max_body = 64 * 1024;
    std::size_t max_header = 8 * 1024;  // request line plus headers
    // How long a request may take to arrive, from its first byte to its last.
    std::chrono::milliseconds read_timeout{5000};
    // How long one write of a response may wait for the client.
    std::chrono::milliseconds write_timeout{5000};
    // How long an idle keep-alive connection is kept open.
    std::chrono::milliseconds idle_timeout{5000};
    int workers = 8;           // request threads per listener
    int rate_per_minute = 60;  // kAdmin calls per client IP; 0 = no limit
};

// The [api] values as the config holds them (the key names), before any checks.
struct ApiConfigValues {
    std::string listen;  // "" = the three listen_* listeners; else single-port mode
    std::string listen_shutdown = "127.0.0.1:5001";  // "" disables the listener
    std::string listen_models = "127.0.0.1:5002";
    std::string listen_monitor = "127.0.0.1:5003";
    std::string tokens_file;
    std::string tls_cert;
    std::string tls_key;
    std::uint64_t max_body = 64 * 1024;
    std::uint64_t max_header = 8 * 1024;
    std::chrono::seconds read_timeout{5};
    std::chrono::seconds write_timeout{5};
    std::chrono::seconds idle_timeout{5};
    std::int64_t workers = 8;
    std::int64_t rate_per_minute = 60;
};

// Checks the values and builds the listeners. Throws mlk::ConfigError ("api.KEY: problem") for
// an address that is not HOST:PORT with an IP (or localhost) host, a listener off loopback
// without api.tokens_file, tls_cert without tls_key (or the reverse), two listeners on one port,
// or a limit out of range.
ApiSettings api_settings_from(const ApiConfigValues& values);

// The same, reading the [api] keys of a loaded configuration.
ApiSettings api_settings_from(const core::Config& config);

struct HostPort {
    std::string address;  // normalised IP literal, without brackets
    int port = 0;
};

// "127.0.0.1:5001", "[::1]:5001", "localhost:5001". Throws std::invalid_argument saying what is
// wrong (the caller adds the key name).
HostPort parse_host_port(std::string_view text);

// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. `address` is an IP literal.
bool is_loopback(std::string_view address);

}  // namespace mlk::api
