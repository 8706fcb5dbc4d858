#include "mlkeeper/homelab/cold_start.hpp"

#include <thread>

namespace mlk::homelab {

using Clock = std::chrono::steady_clock;

std::variant<int, ProxyRefusal> ColdStartGate::running_port(const std::string& name,
                                                            const ModelInfo& seen) {
    if (!seen.port) {
        return ProxyRefusal{502, "bad_gateway",
                            "model " + quote_name(name) +
                                " has no port to forward to (set its port in the config)"};
    }
    if (seen.state == ModelState::kRunning) {
        return *seen.port;
    }
    {
        std::lock_guard lk(mu_);
        auto& n = waiting_[name];
        if (n >= queue_limit_) {
            queue_full_++;
            return ProxyRefusal{503, "unavailable",
                                "model " + quote_name(name) + " is starting and " +
                                    std::to_string(n) + " requests already wait for it",
                                kRetryAfter};
        }
        ++n;
    }
    cold_waits_++;
    auto result = wait_for_start(name);
    std::lock_guard lk(mu_);
    if (const auto it = waiting_.find(name); it != waiting_.end() && --it->second == 0) {
        waiting_.erase(it);
    }
    return result;
}

std::variant<int, ProxyRefusal> ColdStartGate::wait_for_start(const std::string& name) {
    const auto model = "model " + quote_name(name);
    const auto stopping_until = Clock::now() + stopping_wait_;
    bool waited = false;  // a start (ours or another request's) was seen in progress
    for (;;) {
        if (cancel_) {
            return ProxyRefusal{503, "unavailable", "the model proxy is stopping", 1};
        }
        const auto info = models_.get(name);
        if (!info) {
            return ProxyRefusal{404, "not_found", "no model named " + quote_name(name)};
        }
        switch (info->state) {
            case ModelState::kRunning:
                if (!info->port) {
                    return ProxyRefusal{502, "bad_gateway", model + " has no port to forward to"};
                }
                return *info->port;
            case ModelState::kStarting:
                waited = true;
                break;
            case ModelState::kStopping:
                if (Clock::now() >= stopping_until) {
                    return ProxyRefusal{503, "unavailable", model + " is still stopping",
                                        kRetryAfter};
                }
                break;
            case ModelState::kFailed:
            case ModelState::kStopped:
                if (waited) {
                    // The start this request waited for ended without the model running.
                    return ProxyRefusal{502, "start_failed",
                                        model + " failed to start: " +
                                            info->last_error.value_or("it stopped meanwhile")};
                }
                try {
                    models_.start(name, Wait::kNo, std::nullopt);
                    waited = true;
                } catch (const ModelError& e) {
                    if (e.kind() != ModelError::Kind::kConflict) {
                        return ProxyRefusal{502, "start_failed", e.what()};
                    }
                    // A stop began meanwhile (waited out above), or the agent is stopping.
                    const auto now = models_.get(name);
                    if (!now || now->state != ModelState::kStopping) {
                        return ProxyRefusal{503, "unavailable", e.what(), kRetryAfter};
                    }
                }
                continue;
        }
        std::this_thread::sleep_for(kPoll);
    }
}

}  // namespace mlk::homelab
