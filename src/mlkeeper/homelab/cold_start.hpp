// On-demand start for the model proxy: a request for a model that is not running waits in that
// model's queue (bounded) while the ModelManager starts it; concurrent requests share the one start
// the manager runs, a stop in progress is waited out, and a failed start is reported with its
// reason (the next request tries again). Thread safety: any number of threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <variant>

#include "mlkeeper/homelab/model_manager.hpp"

namespace mlk::homelab {

// What the proxy answers instead of forwarding: status, error code, message, Retry-After seconds.
struct ProxyRefusal {
    int status = 502;
    std::string code;
    std::string message;
    int retry_after = 0;  // 0 = no Retry-After
};

class ColdStartGate {
  public:
    // How often a waiting request looks at the model's state.
    static constexpr std::chrono::milliseconds kPoll{10};
    // Seconds a client is told to wait (Retry-After) when a queue is full.
    static constexpr int kRetryAfter = 5;

    // `cancel` (the proxy stopping) ends every wait with 503. A stop in progress is waited out
    // for at most `stopping_wait`.
    ColdStartGate(ModelManager& models, std::size_t queue_limit,
                  std::chrono::milliseconds stopping_wait, const std::atomic<bool>& cancel)
        : models_(models),
          queue_limit_(queue_limit),
          stopping_wait_(stopping_wait),
          cancel_(cancel) {}

    // The port to forward to once the model runs: at once when `seen` (a fresh snapshot) says it
    // runs, else after a start through the manager (Wait::kNo, polled, so that `cancel` is
    // honoured; the manager bounds the start by the model's start_timeout). Refusals: 502 no port
    // or a failed start (ModelError's reason), 503 + Retry-After for a full queue, a stop that
    // lasts too long or the proxy or agent stopping.
    std::variant<int, ProxyRefusal> running_port(const std::string& name, const ModelInfo& seen);

    std::uint64_t cold_waits() const { return cold_waits_; }
    std::uint64_t queue_full() const { return queue_full_; }

  private:
    std::variant<int, ProxyRefusal> wait_for_start(const std::string& name);

    ModelManager& models_;
    std::size_t queue_limit_;
    std::chrono::milliseconds stopping_wait_;
    const std::atomic<bool>& cancel_;
    std::mutex mu_;
    std::map<std::string, std::size_t, std::less<>> waiting_;  // requests in each model's queue
    std::atomic<std::uint64_t> cold_waits_{0};
    std::atomic<std::uint64_t> queue_full_{0};
};

}  // namespace mlk::homelab
