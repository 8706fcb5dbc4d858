#include "mlkeeper/util/async_socket.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace mlk::util {

AsyncSocket::AsyncSocket(EventLoop& loop, int fd) : loop_(&loop) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        const int err = errno;
        ::close(fd);
        throw std::system_error(err, std::generic_category(), "fcntl O_NONBLOCK");
    }
    auto w = std::make_unique<EventLoop::Watch>();
    w->fd = fd;
    try {
        loop.add(*w);
    } catch (...) {
        ::close(fd);
        throw;
    }
    watch_ = std::move(w);
}

AsyncSocket::~AsyncSocket() {
    close();
}

AsyncSocket::AsyncSocket(AsyncSocket&& o) noexcept
    : loop_(std::exchange(o.loop_, nullptr)), watch_(std::move(o.watch_)) {}

AsyncSocket& AsyncSocket::operator=(AsyncSocket&& o) noexcept {
    if (this != &o) {
        close();
        loop_ = std::exchange(o.loop_, nullptr);
        watch_ = std::move(o.watch_);
    }
    return *this;
}

int AsyncSocket::release() {
    if (!watch_) {
        return -1;
    }
    loop_->remove(*watch_);
    const int fd = watch_->fd;
    watch_.reset();
    return fd;
}

void AsyncSocket::close() {
    if (watch_) {
        ::close(watch_->fd);  // closing removes it from the epoll set
        watch_.reset();
    }
}

Task<ssize_t> AsyncSocket::recv(char* buf, std::size_t n, Clock::time_point deadline) {
    EventLoop::Watch& w = *watch_;
    for (;;) {
        if (w.readable || w.hangup) {
            const ssize_t r = ::recv(w.fd, buf, n, 0);
            if (r > 0) {
                // A short read emptied the socket: whatever arrives next brings an edge.
                if (static_cast<std::size_t>(r) < n) {
                    w.readable = false;
                }
                co_return r;
            }
            if (r == 0) {
                co_return 0;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                co_return -1;
            }
            w.readable = false;
            if (w.hangup) {
                co_return 0;
            }
        }
        const WaitResult got = co_await loop_->wait(w, Direction::kRead, deadline);
        if (got != WaitResult::kReady) {
            errno = got == WaitResult::kTimedOut ? EAGAIN : ECANCELED;
            co_return -1;
        }
    }
}

Task<bool> AsyncSocket::send_all(std::string_view data, Clock::time_point deadline) {
    EventLoop::Watch& w = *watch_;
    while (!data.empty()) {
        if (w.writable) {
            const ssize_t r = ::send(w.fd, data.data(), data.size(), MSG_NOSIGNAL);
            if (r > 0) {
                data.remove_prefix(static_cast<std::size_t>(r));
                continue;
            }
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                co_return false;
            }
            w.writable = false;
        }
        const WaitResult got = co_await loop_->wait(w, Direction::kWrite, deadline);
        if (got != WaitResult::kReady) {
            errno = got == WaitResult::kTimedOut ? EAGAIN : ECANCELED;
            co_return false;
        }
    }
    co_return true;
}

Task<int> AsyncSocket::connected(Clock::time_point deadline) {
    EventLoop::Watch& w = *watch_;
    w.writable = false;  // not until the connect completes
    const WaitResult got = co_await loop_->wait(w, Direction::kWrite, deadline);
    if (got != WaitResult::kReady) {
        co_return got == WaitResult::kTimedOut ? ETIMEDOUT : ECANCELED;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(w.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        co_return errno;
    }
    co_return err;
}

}  // namespace mlk::util
