// A nonblocking socket on an EventLoop (util/event_loop): reads, whole writes and a connect's
// completion as coroutines, each bounded by a deadline. A read or write tries the socket first
// and waits only when it would block, so a busy connection costs no epoll call per operation.
// Thread safety: use a socket on its loop's thread only.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string_view>

#include "mlkeeper/util/co_task.hpp"
#include "mlkeeper/util/event_loop.hpp"

namespace mlk::util {

class AsyncSocket {
  public:
    using Clock = EventLoop::Clock;

    AsyncSocket() = default;
    // Takes `fd`, makes it nonblocking and registers it with `loop`. On failure closes `fd` and
    // throws std::system_error.
    AsyncSocket(EventLoop& loop, int fd);
    // Closes the socket.
    ~AsyncSocket();
    AsyncSocket(AsyncSocket&& o) noexcept;
    AsyncSocket& operator=(AsyncSocket&& o) noexcept;
    AsyncSocket(const AsyncSocket&) = delete;
    AsyncSocket& operator=(const AsyncSocket&) = delete;

    int fd() const { return watch_ ? watch_->fd : -1; }
    explicit operator bool() const { return static_cast<bool>(watch_); }
    // Unregisters the socket and hands its fd (still nonblocking) to the caller.
    int release();
    void close();

    // One read: > 0 bytes, 0 at EOF, -1 with errno set: EAGAIN when `deadline` passed first,
    // ECANCELED when the loop stops, else recv()'s error.
    Task<ssize_t> recv(char* buf, std::size_t n, Clock::time_point deadline);
    // Writes all of `data` (MSG_NOSIGNAL); false with errno as for recv().
    Task<bool> send_all(std::string_view data, Clock::time_point deadline);
    // For a socket whose nonblocking connect() returned EINPROGRESS: 0 once connected, else the
    // error (ETIMEDOUT at the deadline, ECANCELED when the loop stops, SO_ERROR's value).
    Task<int> connected(Clock::time_point deadline);

  private:
    EventLoop* loop_ = nullptr;
    std::unique_ptr<EventLoop::Watch> watch_;  // on the heap: epoll holds its address
};

}  // namespace mlk::util
