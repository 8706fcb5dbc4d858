#include "support/raw_tcp_server.hpp"

#include <sys/socket.h>

namespace mlk::testing {

RawTcpServer::RawTcpServer(std::function<void(int fd)> handler, int port,
                           std::chrono::milliseconds io_timeout)
    : handler_(std::move(handler)),
      io_timeout_(io_timeout),
      fd_(homelab::listen_tcp("127.0.0.1", port, 128, port_)),
      acceptor_([this] {
          for (;;) {
              const int c = ::accept(fd_.get(), nullptr, nullptr);
              if (c < 0) {
                  return;
              }
              homelab::tune_socket(c, io_timeout_, io_timeout_);
              std::lock_guard lk(mu_);
              ++accepted_;
              conns_.emplace_back(c);
              threads_.emplace_back([this, c] {
                  handler_(c);
                  ::shutdown(c, SHUT_RDWR);  // the peer sees the close now
              });
          }
      }) {}

RawTcpServer::~RawTcpServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    acceptor_.join();
    std::lock_guard lk(mu_);
    for (auto& c : conns_) {
        ::shutdown(c.get(), SHUT_RDWR);
    }
    for (auto& t : threads_) {
        t.join();
    }
}

int RawTcpServer::accepted() {
    std::lock_guard lk(mu_);
    return accepted_;
}

}  // namespace mlk::testing
