// A per-client token bucket for the REST API's state-changing routes: each client (keyed by its
// IP address) may make `per_minute` calls a minute, in bursts of up to `per_minute`. Memory stays
// bounded: buckets that have refilled are dropped, and once `max_clients` clients are tracked the
// rest share one overflow bucket. Thread safety: check() may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mlk::api {

class RateLimiter {
  public:
    using Clock = std::chrono::steady_clock;
    using Now = std::function<Clock::time_point()>;

    struct Decision {
        bool allowed = true;
        std::chrono::seconds retry_after{0};  // when refused: whole seconds until one call fits
    };

    // per_minute 0 disables the limit. `now` is the clock (tests pass a fake one).
    explicit RateLimiter(int per_minute, Now now = Clock::now, std::size_t max_clients = 10000);

    // Takes one call from `client`'s bucket if it has one.
    Decision check(std::string_view client);

    // Clients with a bucket of their own (for tests and metrics).
    std::size_t tracked() const;

  private:
    struct Bucket {
        double tokens;
        Clock::time_point last;
    };
    void refill(Bucket& b, Clock::time_point now) const;
    void drop_refilled(Clock::time_point now);

    const double capacity_;
    const double per_second_;
    const Now now_;
    const std::size_t max_clients_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, Bucket> buckets_;
    Bucket overflow_;
    Clock::time_point next_sweep_;
};

}  // namespace mlk::api
