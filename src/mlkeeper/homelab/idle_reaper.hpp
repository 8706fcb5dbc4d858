// The idle-model reaper of the seeds' model monitor: every interval, a running model that is not
// pinned, has an idle_timeout, has no request in flight and has been idle longer than that
// timeout is stopped through ModelManager, with one log line saying why.
// Thread safety: every public member may be called from any thread; passes are serialized.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mlkeeper/homelab/activity.hpp"
#include "mlkeeper/homelab/model_manager.hpp"
#include "mlkeeper/homelab/model_registry.hpp"

namespace mlk::core {
class Config;
}

namespace mlk::homelab {

struct ReaperSettings {
    std::chrono::milliseconds interval{60000};
    std::size_t history = 50;  // stops remembered for the API
};

// [models] reaper_interval (keys-activity.txt).
ReaperSettings reaper_settings_from(const core::Config& cfg);

// One stop the reaper made (or tried).
struct ReaperStop {
    std::string name;
    SysTime at;
    std::string reason;  // "idle for 31m12s > idle_timeout 30m"
    std::chrono::seconds idle{0};
    std::chrono::seconds idle_timeout{0};
    std::optional<std::string> error;  // the stop failed (the model is then failed or busy)
};

// "31m12s", "30m", "1h2m", "45s", "2d3h": whole seconds, largest units first, no zero parts.
std::string format_idle(std::chrono::seconds s);

class IdleReaper {
  public:
    using Clock = std::function<SysTime()>;
    using OnStop = std::function<void(const ReaperStop&)>;

    // `specs` give pinned and idle_timeout per model (a name missing there is never stopped).
    // `on_stop` runs after every stop or failed stop, on the reaper's thread (alerts). `models`
    // and `activity` must outlive the reaper.
    IdleReaper(
        ReaperSettings settings, ModelManager& models, const ActivityTracker& activity,
        const std::vector<ModelSpec>& specs, OnStop on_stop = {},
        Clock now = [] { return std::chrono::system_clock::now(); });
    // stop().
    ~IdleReaper();
    IdleReaper(const IdleReaper&) = delete;
    IdleReaper& operator=(const IdleReaper&) = delete;

    // One pass over the running models; returns what it stopped (or tried to). A model is idle
    // since its last request or since it entered running, whichever is later. Right before a
    // stop the in-flight count, the last request and the model's state are read again, so a
    // request that arrived meanwhile keeps it running. Never throws for a model's failure.
    std::vector<ReaperStop> run_once();

    // Runs run_once() every interval on a thread of its own (a second start() does nothing).
    void start();
    // Stops and joins the thread (a stop in progress finishes first). Safe to call twice.
    void stop();

    // The last `history` stops, newest first.
    std::vector<ReaperStop> recent() const;
    std::optional<SysTime> last_run() const;
    const ReaperSettings& settings() const { return settings_; }
    // The idle_timeout of `name` as the reaper applies it: nullopt when pinned, without a
    // timeout or not registered.
    std::optional<std::chrono::seconds> timeout_of(const std::string& name) const;

  private:
    struct Policy {
        bool pinned = false;
        std::optional<std::chrono::seconds> idle_timeout;
    };
    // The stop this model is due for now, or nullopt.
    std::optional<ReaperStop> due(const ModelInfo& info, const Policy& p, SysTime now) const;

    ReaperSettings settings_;
    ModelManager& models_;
    const ActivityTracker& activity_;
    std::map<std::string, Policy, std::less<>> policies_;
    OnStop on_stop_;
    Clock now_;

    std::mutex run_mu_;  // one pass at a time
    mutable std::mutex mu_;
    std::deque<ReaperStop> recent_;  // mu_; newest first
    std::optional<SysTime> last_run_;

    std::mutex thread_mu_;
    std::condition_variable cv_;
    bool stop_ = false;  // thread_mu_
    std::thread thread_;
};

}  // namespace mlk::homelab
