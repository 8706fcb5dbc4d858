// Counts the XID errors (driver-reported GPU faults: 13 graphics exception, 31 page fault, 48
// double-bit ECC, 79 fallen off the bus, ...) that NVML delivers as events, on a thread of its
// own. Thread safety: counts(), supported() and unsupported_reason() may be called from any
// thread; start/stop/destroy from one thread; `on_xid` runs on the watcher's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mlkeeper/gpu/nvml_api.hpp"

namespace mlk::gpu {

// The XID errors of one GPU since the watcher was created.
struct XidCount {
    unsigned int gpu = 0;
    std::string uuid, name;  // empty when the GPU could not be opened
    std::uint64_t count = 0;
    std::uint64_t last_xid = 0;  // 0: none yet
    std::optional<std::chrono::system_clock::time_point> last_at;
};

class XidWatcher {
  public:
    // Loads NVML from `library` (its own instance: nvmlInit is reference counted, so it can sit
    // beside a Sampler) and registers every GPU for XID events. Throws nvml::NvmlError like
    // Sampler when NVML cannot be loaded at all; a driver without events, or GPUs that refuse
    // them, only make supported() false.
    explicit XidWatcher(const std::string& library,
                        std::function<void(const XidCount&)> on_xid = {});
    ~XidWatcher();  // stop()
    XidWatcher(const XidWatcher&) = delete;
    XidWatcher& operator=(const XidWatcher&) = delete;

    // Starts the thread when supported(); otherwise does nothing. Call once.
    void start();
    // Returns within about one NVML wait (200 ms). Idempotent.
    void stop();

    // False: the library has no event calls, or no GPU accepted the registration.
    bool supported() const { return supported_; }
    // Why supported() is false (or which GPUs could not be registered), for the log.
    const std::string& unsupported_reason() const { return unsupported_reason_; }
    // One per GPU NVML lists, in index order.
    std::vector<XidCount> counts() const;

  private:
    void run();
    void warn(const std::string& message);
    // Sleeps `d` unless stop() comes first; false when stopping.
    bool pause(std::chrono::milliseconds d);

    std::unique_ptr<nvml::Nvml> nvml_;
    nvml::EventSet set_;                 // after nvml_: freed before NVML shuts down
    std::vector<nvml::Device> handles_;  // by index; nullptr where the GPU could not be opened
    std::function<void(const XidCount&)> on_xid_;
    bool supported_ = false;
    std::string unsupported_reason_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<XidCount> counts_;  // mu_
    bool stop_ = false;             // mu_

    // Only the watcher thread touches these.
    std::chrono::steady_clock::time_point last_warn_{};
    bool warned_ = false;
    unsigned suppressed_warnings_ = 0;

    std::thread thread_;
};

}  // namespace mlk::gpu
