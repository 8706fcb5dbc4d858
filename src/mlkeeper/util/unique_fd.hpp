// An owned file descriptor: closed when the owner goes away, movable, never copied. The one fd
// wrapper the project's sockets, directories and pipes share.
// Thread safety: one owner at a time, like the fd itself.
#pragma once

#include <unistd.h>

#include <utility>

namespace mlk::util {

class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) {
            reset(std::exchange(o.fd_, -1));
        }
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    // Gives the fd up without closing it.
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1) {
        if (fd_ >= 0) {
            ::close(fd_);  // EINTR on Linux still closes the fd, so no retry
        }
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

}  // namespace mlk::util
