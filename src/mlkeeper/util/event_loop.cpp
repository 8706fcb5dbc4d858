#include "mlkeeper/util/event_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <system_error>

namespace mlk::util {
namespace {

// A coroutine that starts at once and frees itself when done: the owner of a spawned task.
struct Detached {
    struct promise_type {
        Detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept {}
    };
};

Detached run_detached(Task<void> task, std::function<void()> on_done) {
    try {
        co_await std::move(task);
    } catch (...) {  // NOLINT(bugprone-empty-catch): a task handles its own errors
    }
    on_done();
}

}  // namespace

EventLoop::EventLoop() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
        throw std::system_error(errno, std::generic_category(), "epoll_create1");
    }
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
        const int err = errno;
        ::close(epoll_fd_);
        throw std::system_error(err, std::generic_category(), "eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
        const int err = errno;
        ::close(wake_fd_);
        ::close(epoll_fd_);
        throw std::system_error(err, std::generic_category(), "epoll_ctl eventfd");
    }
}

EventLoop::~EventLoop() {
    for (auto& t : helpers_) {
        if (t.joinable()) {
            t.join();
        }
    }
    ::close(wake_fd_);
    ::close(epoll_fd_);
}

void EventLoop::add(Watch& w) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &w;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, w.fd, &ev) != 0) {
        throw std::system_error(errno, std::generic_category(), "epoll_ctl add");
    }
}

void EventLoop::remove(Watch& w) {
    epoll_event ev{};
    (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, w.fd, &ev);
}

void EventLoop::stop() {
    stopping_.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
}

void EventLoop::post(std::function<void()> fn) {
    bool was_empty;
    {
        std::lock_guard lk(posted_mu_);
        was_empty = posted_.empty();
        posted_.push_back(std::move(fn));
    }
    if (was_empty) {
        const std::uint64_t one = 1;
        (void)!::write(wake_fd_, &one, sizeof one);
    }
}

void EventLoop::spawn(Task<void> task) {
    tasks_.fetch_add(1, std::memory_order_acq_rel);
    run_detached(std::move(task), [this] { tasks_.fetch_sub(1, std::memory_order_acq_rel); });
}

Task<void> EventLoop::run_blocking(std::function<void()> fn) {
    struct Awaiter {
        EventLoop& loop;
        std::function<void()>& fn;
        std::exception_ptr error;

        bool await_ready() noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            auto it = loop.helpers_.emplace(loop.helpers_.end());
            try {
                *it = std::thread([this, h, it] {
                    try {
                        fn();
                    } catch (...) {
                        error = std::current_exception();
                    }
                    EventLoop& l = loop;
                    l.post([&l, h, it] {
                        it->join();
                        l.helpers_.erase(it);
                        h.resume();
                    });
                });
            } catch (...) {
                loop.helpers_.erase(it);
                throw;
            }
        }
        void await_resume() const {
            if (error) {
                std::rethrow_exception(error);
            }
        }
    };
    Awaiter awaiter{*this, fn, nullptr};
    co_await awaiter;
}

bool EventLoop::WaitAwaiter::await_ready() noexcept {
    if (loop_.stopping()) {
        waiter_.result = WaitResult::kCancelled;
        return true;
    }
    return false;
}

void EventLoop::WaitAwaiter::await_suspend(std::coroutine_handle<> h) noexcept {
    waiter_.handle = h;
    waiter_.result = WaitResult::kReady;
    Watch& w = *waiter_.watch;
    (waiter_.dir == Direction::kRead ? w.reader : w.writer) = &waiter_;
    loop_.link(waiter_);
}

void EventLoop::link(Waiter& w) {
    w.prev = nullptr;
    w.next = waiting_;
    if (waiting_ != nullptr) {
        waiting_->prev = &w;
    }
    waiting_ = &w;
    earliest_ = std::min(earliest_, w.deadline);
}

void EventLoop::unlink(Waiter& w) {
    if (w.prev != nullptr) {
        w.prev->next = w.next;
    } else {
        waiting_ = w.next;
    }
    if (w.next != nullptr) {
        w.next->prev = w.prev;
    }
    w.prev = w.next = nullptr;
}

void EventLoop::make_ready(Waiter& w, WaitResult r) {
    unlink(w);
    if (w.watch != nullptr) {
        (w.dir == Direction::kRead ? w.watch->reader : w.watch->writer) = nullptr;
    }
    w.result = r;
    ready_.push_back(&w);
}

void EventLoop::resume_ready() {
    while (!ready_.empty()) {
        batch_.swap(ready_);
        for (Waiter* w : batch_) {
            w->handle.resume();
        }
        batch_.clear();
    }
}

void EventLoop::run_posted() {
    std::vector<std::function<void()>> work;
    {
        std::lock_guard lk(posted_mu_);
        if (posted_.empty()) {
            return;
        }
        work.swap(posted_);
    }
    for (auto& fn : work) {
        fn();
    }
}

void EventLoop::expire(Clock::time_point now) {
    Clock::time_point earliest = kNoDeadline;
    for (Waiter* w = waiting_; w != nullptr;) {
        Waiter* next = w->next;
        if (w->deadline <= now) {
            make_ready(*w, WaitResult::kTimedOut);
        } else {
            earliest = std::min(earliest, w->deadline);
        }
        w = next;
    }
    earliest_ = earliest;
}

void EventLoop::cancel_all() {
    while (waiting_ != nullptr) {
        make_ready(*waiting_, WaitResult::kCancelled);
    }
    earliest_ = kNoDeadline;
}

int EventLoop::timeout_ms(Clock::time_point now) const {
    if (earliest_ == kNoDeadline) {
        return -1;
    }
    if (earliest_ <= now) {
        return 0;
    }
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(earliest_ - now).count();
    return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

void EventLoop::run() {
    std::array<epoll_event, 128> events{};
    for (;;) {
        run_posted();
        if (stopping() && !cancelled_) {
            cancelled_ = true;
            cancel_all();
        }
        resume_ready();
        if (stopping() && tasks() == 0) {
            run_posted();  // what is left only frees what it holds
            return;
        }
        // No look at the posted queue here: post() writes the eventfd whenever the queue was
        // empty, so work posted since run_posted() makes epoll_wait return at once.
        const int timeout = timeout_ms(Clock::now());
        const int n =
            ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
        if (n < 0 && errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "epoll_wait");
        }
        // First every event is noted and its waiters queued; only then is anything resumed, so a
        // coroutine that closes a socket cannot free a Watch a later event still points to.
        for (int i = 0; i < n; ++i) {
            const auto ev = events[static_cast<std::size_t>(i)].events;
            auto* w = static_cast<Watch*>(events[static_cast<std::size_t>(i)].data.ptr);
            if (w == nullptr) {
                std::uint64_t count = 0;
                (void)!::read(wake_fd_, &count, sizeof count);
                continue;
            }
            if ((ev & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0) {
                w->hangup = true;
            }
            if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0) {
                w->readable = true;
                if (w->reader != nullptr) {
                    make_ready(*w->reader, WaitResult::kReady);
                }
            }
            if ((ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) {
                w->writable = true;
                if (w->writer != nullptr) {
                    make_ready(*w->writer, WaitResult::kReady);
                }
            }
        }
        if (earliest_ != kNoDeadline) {
            const auto now = Clock::now();
            if (earliest_ <= now) {
                expire(now);
            }
        }
    }
}

}  // namespace mlk::util
