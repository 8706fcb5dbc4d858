// Real peers for integration tests, each started on a free 127.0.0.1 port
// in its own temporary directory and always stopped by its destructor:
// nginx, redis-server, PostgreSQL, a server that accepts but never answers
// and one whose accept queue is full (connects hang). Each constructor waits
// a bounded time for readiness and throws ServerUnavailable (binary missing:
// tests GTEST_SKIP) or std::runtime_error (it failed to start, with its log).
// Thread safety: one per test.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mlkeeper/util/process.hpp"
#include "support/temp_dir.hpp"

namespace mlk::testing {

// The peer's binary is not installed: the test should skip, not fail.
class ServerUnavailable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A 127.0.0.1 TCP port that was free a moment ago (bind to port 0, close).
int free_port();

// Waits up to `limit` until a TCP connect to 127.0.0.1:port succeeds.
bool wait_for_port(int port, std::chrono::milliseconds limit);

// A main nginx.conf for an nginx run with `-p prefix`: one worker, pid file and every temp path
// under `prefix`, no access log, and `http_body` inside http {} (server blocks, includes).
std::string nginx_main_conf(const std::string& prefix, const std::string& http_body);

// nginx serving /health (200 "ok") and /broken (500), with -p prefix, daemon
// off, pid file and error log in its temp dir.
class NginxServer {
  public:
    static constexpr const char* kBinary = "/usr/sbin/nginx";
    NginxServer();
    int port() const { return port_; }
    std::string url(const std::string& path) const;

  private:
    TempDir dir_;
    int port_ = 0;
    std::optional<util::Subprocess> proc_;
};

// redis-server without persistence, optionally with --requirepass.
class RedisServer {
  public:
    static constexpr const char* kBinary = "/usr/bin/redis-server";
    explicit RedisServer(std::string password = {});
    int port() const { return port_; }

  private:
    TempDir dir_;
    int port_ = 0;
    std::optional<util::Subprocess> proc_;
};

// A throwaway PostgreSQL cluster: initdb (trust auth, no fsync) and the
// postmaster run as the postgres user via setpriv, because initdb refuses
// root; the unix socket lives in the temp dir.
class PostgresServer {
  public:
    PostgresServer();
    int port() const { return port_; }
    // "postgresql://postgres@127.0.0.1:PORT/postgres"
    std::string uri() const;
    static std::filesystem::path bin_dir();  // /usr/lib/postgresql/<newest>/bin, or empty

  private:
    TempDir dir_;
    int port_ = 0;
    std::optional<util::Subprocess> proc_;
};

// Accepts connections and reads, but never writes: probes must time out.
class SilentServer {
  public:
    SilentServer();
    ~SilentServer();
    SilentServer(const SilentServer&) = delete;
    SilentServer& operator=(const SilentServer&) = delete;
    int port() const { return port_; }

  private:
    int listen_fd_ = -1;
    int wake_[2] = {-1, -1};
    int port_ = 0;
    std::thread thread_;
};

// listen(fd, 0) with its one-slot accept queue already taken and never
// accepted: the kernel drops further SYNs, so connect() hangs until the
// caller's timeout.
class BlackholeServer {
  public:
    BlackholeServer();
    ~BlackholeServer();
    BlackholeServer(const BlackholeServer&) = delete;
    BlackholeServer& operator=(const BlackholeServer&) = delete;
    int port() const { return port_; }

  private:
    int listen_fd_ = -1;
    std::vector<int> fillers_;
    int port_ = 0;
};

}  // namespace mlk::testing
