// Servers for tests that talk HTTP: a cpp-httplib server on an ephemeral
// 127.0.0.1 port run on its own thread and always stopped, and a port that
// refuses connections. Thread safety: handlers run on the server's threads.
#pragma once

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace mlk::testing {

using namespace std::chrono_literals;

// A cpp-httplib server on an ephemeral 127.0.0.1 port, run on its own thread. Handlers that
// block call block_for() so the destructor can let them go.
class TestServer {
  public:
    explicit TestServer(const std::function<void(httplib::Server&)>& setup) {
        setup(server_);
        server_.set_keep_alive_timeout(1);
        port_ = server_.bind_to_any_port("127.0.0.1");
        if (port_ <= 0) {
            throw std::runtime_error("test server: bind_to_any_port failed");
        }
        thread_ = std::thread([this] {
            server_.listen_after_bind();
            done_ = true;
        });
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!server_.is_running() && !done_ && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(1ms);
        }
        if (!server_.is_running()) {
            shutdown();
            throw std::runtime_error("test server did not start within 5 s");
        }
    }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;
    ~TestServer() { shutdown(); }

    int port() const { return port_; }
    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }

    // For handlers: sleeps up to `limit`, returning early once the server is shutting down.
    void block_for(std::chrono::milliseconds limit) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, limit, [this] { return released_; });
    }

  private:
    void shutdown() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            released_ = true;
        }
        cv_.notify_all();
        // stop() only acts on a running server, so repeat it until listen_after_bind() returns.
        while (!done_) {
            server_.stop();
            std::this_thread::sleep_for(2ms);
        }
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
    std::atomic<bool> done_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    bool released_ = false;
};

// A 127.0.0.1 port that refuses connections: bound (so nobody else takes it) but not listening.
class RefusingPort {
  public:
    RefusingPort() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            throw std::system_error(errno, std::generic_category(), "socket");
        }
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof(addr);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            const int err = errno;
            ::close(fd_);
            throw std::system_error(err, std::generic_category(), "bind 127.0.0.1:0");
        }
        port_ = ntohs(addr.sin_port);
    }
    RefusingPort(const RefusingPort&) = delete;
    RefusingPort& operator=(const RefusingPort&) = delete;
    ~RefusingPort() { ::close(fd_); }
    int port() const { return port_; }

  private:
    int fd_ = -1;
    int port_ = 0;
};

}  // namespace mlk::testing
