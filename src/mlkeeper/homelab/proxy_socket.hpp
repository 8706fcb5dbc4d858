// Sockets under the model proxy (homelab/model_proxy): an owning fd, blocking reads and writes
// bounded by socket timeouts, a bounded loopback connect, the listening socket, the pool of idle
// upstream keep-alive connections, and listen-address parsing. Thread safety: UpstreamPool may be
// used from any number of threads; a UniqueFd belongs to one owner; the rest are functions.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/util/unique_fd.hpp"

namespace mlk::homelab {

using util::UniqueFd;

// One recv(): > 0 bytes, 0 at EOF, -1 on error with errno set (EAGAIN: the socket's receive
// timeout passed). Retries EINTR.
ssize_t recv_some(int fd, char* buf, std::size_t n);
// Writes everything (MSG_NOSIGNAL); false on an error or when the send timeout passed.
bool send_all(int fd, std::string_view data);
// TCP_NODELAY: replies of a few bytes must not wait.
void set_nodelay(int fd);
// SO_RCVTIMEO / SO_SNDTIMEO (0 = none) and TCP_NODELAY.
void tune_socket(int fd, std::chrono::milliseconds recv_timeout,
                 std::chrono::milliseconds send_timeout);
// An idle kept-alive connection the peer has neither closed nor written to (a peek, no wait).
bool still_open(int fd);

// A blocking TCP connection to 127.0.0.1:port (tuned with io_timeout both ways), or an empty
// UniqueFd with `error` set ("connection refused", "timed out", ...).
UniqueFd connect_loopback(int port, std::chrono::milliseconds connect_timeout,
                          std::chrono::milliseconds io_timeout, std::string& error);

// A nonblocking TCP socket with a connect to 127.0.0.1:port begun (TCP_NODELAY set): `err` is 0
// when it is already connected, EINPROGRESS when it is under way (wait for it to be writable),
// else the failure (and the UniqueFd is empty).
UniqueFd begin_connect_loopback(int port, int& err);

// A listening TCP socket on address:port (an IP literal; port 0 = any), SO_REUSEADDR; the port
// it got in `bound_port`. Throws std::system_error naming the address.
UniqueFd listen_tcp(const std::string& address, int port, int backlog, int& bound_port);

// "127.0.0.1:5080", "[::1]:5080", "localhost:5080" (-> 127.0.0.1), "0.0.0.0:5080" ->
// {address, port}. Throws std::invalid_argument saying what is wrong.
std::pair<std::string, int> parse_listen_address(std::string_view text);

// "OK", "Not Found", ... for the statuses the proxy writes itself.
std::string_view reason_phrase(int status);

// Idle upstream connections by model and port, newest first out (the likeliest to be alive).
class UpstreamPool {
  public:
    explicit UpstreamPool(std::size_t per_model) : per_model_(per_model) {}

    // A pooled connection to model:port that still looks open, or an empty UniqueFd; stale
    // ones met on the way are closed.
    UniqueFd take(std::string_view model, int port);
    // Keeps `fd` unless the model already has per_model idle connections (then closes it).
    void put(const std::string& model, int port, UniqueFd fd);
    std::size_t idle() const;

  private:
    struct Idle {
        int port;
        UniqueFd fd;
    };
    std::size_t per_model_;
    mutable std::mutex mu_;
    std::map<std::string, std::vector<Idle>, std::less<>> idle_;
};

}  // namespace mlk::homelab
