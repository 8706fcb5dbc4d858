// Network checks and the socket primitives probes share: default route from
// /proc/net/route and /proc/net/ipv6_route, DNS lookups with a bounded wait,
// and TCP connects with a timeout (non-blocking connect + poll).
// Thread safety: all functions are safe from many threads.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/health/check.hpp"

namespace mlk::health {

// An owned file descriptor (closed on destruction).
class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd();

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() noexcept;

  private:
    int fd_ = -1;
};

struct HostPort {
    std::string host;  // without IPv6 brackets
    int port = 0;
};

// "host:port" or "[v6addr]:port"; nullopt when malformed or the port is not 1-65535.
std::optional<HostPort> parse_host_port(const std::string& text);

// One getaddrinfo(3) lookup that gives up after `timeout` (the lookup runs on
// a detached thread, since glibc cannot cancel one in flight). Numeric
// addresses are converted without a thread.
struct Resolution {
    std::vector<std::string> addresses;  // numeric, in getaddrinfo order
    std::string error;                   // empty on success
    bool timed_out = false;
};
Resolution resolve_host(const std::string& host, std::chrono::milliseconds timeout);

enum class ConnectFailure { kNone, kDns, kRefused, kTimeout, kOther };

struct TcpConnection {
    UniqueFd fd;  // connected, blocking mode off (O_NONBLOCK); invalid on failure
    ConnectFailure failure = ConnectFailure::kNone;
    std::string error;  // "connection refused", "timed out after 3 s", ...
    std::chrono::milliseconds elapsed{0};
    bool ok() const { return fd.valid(); }
};

// Resolves and connects, trying each address until one answers or the whole
// `timeout` (lookup included) is spent.
TcpConnection tcp_connect(const std::string& host, int port, std::chrono::milliseconds timeout);

// Sends all of `data` and reads until `done(received)` returns true, the peer
// closes, or the deadline passes. Returns what was received; `error` set on
// failure or timeout.
std::string exchange(int fd, const std::string& data,
                     std::chrono::steady_clock::time_point deadline,
                     bool (*done)(const std::string&), std::string& error);

// "Default route": pass when an IPv4 or IPv6 default route is up.
CheckResult check_default_route(const HealthEnv& env);

// "DNS <name>": one lookup per name, each bounded by `timeout`; run in parallel.
std::vector<CheckResult> check_dns(const std::vector<std::string>& names,
                                   std::chrono::milliseconds timeout);

// "TCP <host:port>": one connect per target, in parallel.
std::vector<CheckResult> check_tcp_targets(const std::vector<std::string>& targets,
                                           std::chrono::milliseconds timeout);

}  // namespace mlk::health
