#include "mlkeeper/gpu/watch.hpp"

#include <pthread.h>

#include <cerrno>
#include <system_error>

namespace mlk::gpu {

StopSignals::StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    if (int err = ::pthread_sigmask(SIG_BLOCK, &set_, &old_); err != 0) {
        throw std::system_error(err, std::generic_category(), "cannot block SIGINT/SIGTERM");
    }
}

StopSignals::~StopSignals() {
    // Consume what we blocked so that unblocking does not deliver it (and kill the process)
    // after the loop already stopped cleanly. Signals blocked before we came stay pending.
    sigset_t mine;
    sigemptyset(&mine);
    for (int s : {SIGINT, SIGTERM}) {
        if (sigismember(&old_, s) == 0) {
            sigaddset(&mine, s);
        }
    }
    const timespec zero{};
    while (::sigtimedwait(&mine, nullptr, &zero) > 0) {
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

bool StopSignals::wait(std::chrono::milliseconds timeout) {
    if (signal_ != 0) {
        return true;
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() < 0) {
            left = std::chrono::nanoseconds(0);
        }
        timespec ts{};
        ts.tv_sec = static_cast<time_t>(left.count() / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(left.count() % 1'000'000'000);
        int s = ::sigtimedwait(&set_, nullptr, &ts);
        if (s > 0) {
            signal_ = s;
            return true;
        }
        if (errno == EAGAIN || left.count() == 0) {
            return false;
        }
        // EINTR: another signal's handler ran; wait for the rest of the time.
    }
}

}  // namespace mlk::gpu
