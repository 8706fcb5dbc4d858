// A single-threaded epoll event loop that runs coroutines (util/co_task): a registered fd is
// watched edge-triggered for input and output for its whole life (one epoll_ctl), a coroutine
// waits for readiness with a deadline, blocking work runs on a thread of its own and resumes on
// the loop, and other threads post work or ask the loop to stop (every wait then ends with
// kCancelled). One loop serves many connections per thread with one wake-up for many ready
// sockets, where a thread per connection sleeps and wakes for each read.
// Thread safety: run() on one thread; post(), stop(), stopping() and tasks() from any thread;
// everything else on the loop's thread (or before run()).
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include "mlkeeper/util/co_task.hpp"

namespace mlk::util {

enum class WaitResult { kReady, kTimedOut, kCancelled };
enum class Direction { kRead, kWrite };

class EventLoop {
  public:
    using Clock = std::chrono::steady_clock;
    static constexpr Clock::time_point kNoDeadline = Clock::time_point::max();

    struct Waiter;
    // One registered fd. Its address is what epoll reports, so it must not move while
    // registered. `readable`/`writable`: not known to be drained or full; an operation tries
    // first and waits only after EAGAIN (edge-triggered: an edge comes only after that).
    struct Watch {
        int fd = -1;
        bool readable = true;
        bool writable = true;
        bool hangup = false;  // the peer closed or the socket failed: reads never wait again
        Waiter* reader = nullptr;
        Waiter* writer = nullptr;
    };
    // A suspended wait; lives in the waiting coroutine's frame.
    struct Waiter {
        std::coroutine_handle<> handle;
        Clock::time_point deadline = kNoDeadline;
        WaitResult result = WaitResult::kReady;
        Watch* watch = nullptr;
        Direction dir = Direction::kRead;
        Waiter* prev = nullptr;
        Waiter* next = nullptr;
    };

    // Throws std::system_error when epoll or the wake-up eventfd cannot be made.
    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Runs until stop() was called and every spawned task has finished.
    void run();
    // Any thread: ends every wait (now and later) with kCancelled, and run() once the tasks end.
    void stop();
    bool stopping() const { return stopping_.load(std::memory_order_acquire); }
    // Starts `task` at once (it runs until its first wait). An exception it lets escape is
    // dropped: a task handles its own errors.
    void spawn(Task<void> task);
    // Any thread: runs `fn` on the loop's thread soon.
    void post(std::function<void()> fn);
    // Spawned tasks not finished yet.
    std::size_t tasks() const { return tasks_.load(std::memory_order_acquire); }

    // Runs `fn` on a new thread and resumes the awaiting coroutine on the loop when it returns
    // (its exception is rethrown there). For rare blocking work (a model's cold start).
    Task<void> run_blocking(std::function<void()> fn);

    // Registration (for AsyncSocket). add() throws std::system_error; remove() before the fd is
    // handed to another owner (closing it removes it too).
    void add(Watch& w);
    void remove(Watch& w);

    class WaitAwaiter {
      public:
        WaitAwaiter(EventLoop& loop, Watch& w, Direction d, Clock::time_point deadline)
            : loop_(loop) {
            waiter_.watch = &w;
            waiter_.dir = d;
            waiter_.deadline = deadline;
        }
        bool await_ready() noexcept;
        void await_suspend(std::coroutine_handle<> h) noexcept;
        WaitResult await_resume() const noexcept { return waiter_.result; }

      private:
        EventLoop& loop_;
        Waiter waiter_;
    };
    // co_await loop.wait(watch, Direction::kRead, deadline): kReady when an edge came (or the
    // socket hung up), kTimedOut at the deadline, kCancelled once the loop stops.
    WaitAwaiter wait(Watch& w, Direction d, Clock::time_point deadline) {
        return WaitAwaiter(*this, w, d, deadline);
    }

  private:
    void link(Waiter& w);
    void unlink(Waiter& w);
    void make_ready(Waiter& w, WaitResult r);
    void resume_ready();
    void run_posted();
    void expire(Clock::time_point now);
    void cancel_all();
    int timeout_ms(Clock::time_point now) const;

    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    std::atomic<bool> stopping_{false};
    bool cancelled_ = false;
    std::atomic<std::size_t> tasks_{0};
    Waiter* waiting_ = nullptr;  // every waiter with a deadline or a watch, unordered
    Clock::time_point earliest_ = kNoDeadline;  // no waiter's deadline is before this
    std::vector<Waiter*> ready_;
    std::vector<Waiter*> batch_;  // the ready waiters being resumed
    std::mutex posted_mu_;
    std::vector<std::function<void()>> posted_;
    std::list<std::thread> helpers_;  // run_blocking threads, joined as they finish
};

}  // namespace mlk::util
