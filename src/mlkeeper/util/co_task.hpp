// Task<T>: a lazily started C++20 coroutine. `co_await task` runs it and resumes the awaiting
// coroutine when it finishes (symmetric transfer, so long chains of awaits do not grow the stack);
// what it co_returns is the value of the co_await, and an exception it throws is rethrown there.
// Used with util/event_loop.
// GCC 12 miscompiles a co_await inside an if-condition (`if (co_await f())` resumes into an
// invalid state: a SIGILL under the sanitizers, a silently lost coroutine without them): await
// into a variable first. Loop conditions, co_return and plain expressions are fine. It also
// destroys temporaries of a co_await's full expression wrongly (a std::string in a braced
// argument is freed from the frame): pass named objects, not temporaries with destructors
// (string literals as std::string_view are fine).
// Thread safety: a task runs on whichever thread resumes it; a Task
// object has one owner.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace mlk::util {

template <typename T = void>
class Task;

namespace detail {

struct TaskPromiseBase {
    std::coroutine_handle<> continuation = std::noop_coroutine();
    std::exception_ptr error;

    std::suspend_always initial_suspend() noexcept { return {}; }
    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        template <typename Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) noexcept {
            return h.promise().continuation;
        }
        void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <typename T>
struct TaskPromise : TaskPromiseBase {
    std::optional<T> value;
    Task<T> get_return_object() noexcept;
    template <typename U>
    void return_value(U&& v) {
        value.emplace(std::forward<U>(v));
    }
    T take() {
        if (error) {
            std::rethrow_exception(error);
        }
        return std::move(*value);
    }
};

template <>
struct TaskPromise<void> : TaskPromiseBase {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void take() {
        if (error) {
            std::rethrow_exception(error);
        }
    }
};

}  // namespace detail

template <typename T>
class [[nodiscard]] Task {
  public:
    using promise_type = detail::TaskPromise<T>;
    using Handle = std::coroutine_handle<promise_type>;

    Task() = default;
    explicit Task(Handle h) noexcept : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept {
        if (this != &o) {
            if (h_) {
                h_.destroy();
            }
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    ~Task() {
        if (h_) {
            h_.destroy();
        }
    }

    struct Awaiter {
        Handle h;
        bool await_ready() const noexcept { return !h || h.done(); }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
            h.promise().continuation = awaiting;
            return h;
        }
        T await_resume() { return h.promise().take(); }
    };
    // Runs the task; valid once (the task is consumed when the full expression ends).
    Awaiter operator co_await() && noexcept { return Awaiter{h_}; }

  private:
    Handle h_;
};

namespace detail {
template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
    return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
    return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}
}  // namespace detail

}  // namespace mlk::util
