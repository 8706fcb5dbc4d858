// A loopback TCP server for tests that need to control the bytes on the wire (model stand-ins,
// misbehaving peers): every accepted connection runs `handler(fd)` on a thread of its own, then
// is shut down so the peer sees the close. The destructor shuts every socket and joins every
// thread. Thread safety: handlers run concurrently; port() and accepted() from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

#include "mlkeeper/homelab/proxy_socket.hpp"

namespace mlk::testing {

class RawTcpServer {
  public:
    // `port` 0 picks a free one; `io_timeout` bounds each recv/send of a connection.
    explicit RawTcpServer(std::function<void(int fd)> handler, int port = 0,
                          std::chrono::milliseconds io_timeout = std::chrono::seconds(5));
    ~RawTcpServer();
    RawTcpServer(const RawTcpServer&) = delete;
    RawTcpServer& operator=(const RawTcpServer&) = delete;

    int port() const { return port_; }
    int accepted();

  private:
    std::function<void(int)> handler_;
    std::chrono::milliseconds io_timeout_;
    int port_ = 0;  // before fd_: listen_tcp() sets it
    homelab::UniqueFd fd_;
    std::mutex mu_;
    int accepted_ = 0;
    std::list<homelab::UniqueFd> conns_;
    std::list<std::thread> threads_;
    std::thread acceptor_;  // last: starts after every member it uses exists
};

}  // namespace mlk::testing
