#include "mlkeeper/api/rate_limit.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

namespace mlk::api {
namespace {

constexpr auto kSweepInterval = std::chrono::seconds(60);

}  // namespace

RateLimiter::RateLimiter(int per_minute, Now now, std::size_t max_clients)
    : capacity_(std::max(per_minute, 0)),
      per_second_(std::max(per_minute, 0) / 60.0),
      now_(std::move(now)),
      max_clients_(std::max<std::size_t>(max_clients, 1)),
      overflow_{capacity_, now_()},
      next_sweep_(overflow_.last + kSweepInterval) {}

void RateLimiter::refill(Bucket& b, Clock::time_point now) const {
    if (now > b.last) {
        const double elapsed = std::chrono::duration<double>(now - b.last).count();
        b.tokens = std::min(capacity_, b.tokens + elapsed * per_second_);
    }
    // A clock that went backwards gives nothing back; `last` only moves forward.
    b.last = std::max(b.last, now);
}

void RateLimiter::drop_refilled(Clock::time_point now) {
    // A full bucket behaves exactly like a missing one, so forgetting it changes nothing.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        refill(it->second, now);
        it = it->second.tokens >= capacity_ ? buckets_.erase(it) : std::next(it);
    }
}

RateLimiter::Decision RateLimiter::check(std::string_view client) {
    if (capacity_ <= 0) {
        return {};
    }
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = now_();
    if (now >= next_sweep_) {
        drop_refilled(now);
        next_sweep_ = now + kSweepInterval;
    }
    Bucket* bucket = nullptr;
    if (auto it = buckets_.find(std::string(client)); it != buckets_.end()) {
        bucket = &it->second;
    } else {
        if (buckets_.size() >= max_clients_) {
            drop_refilled(now);
        }
        if (buckets_.size() >= max_clients_) {
            // Too many clients at once (a flood from many addresses): newcomers share one bucket
            // rather than grow the table or be refused outright.
            bucket = &overflow_;
        } else {
            bucket = &buckets_.emplace(std::string(client), Bucket{capacity_, now}).first->second;
        }
    }
    refill(*bucket, now);
    if (bucket->tokens >= 1.0) {
        bucket->tokens -= 1.0;
        return {};
    }
    const double wait = (1.0 - bucket->tokens) / per_second_;
    const auto seconds = std::max<long long>(1, static_cast<long long>(std::ceil(wait)));
    return {false, std::chrono::seconds(seconds)};
}

std::size_t RateLimiter::tracked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return buckets_.size();
}

}  // namespace mlk::api
