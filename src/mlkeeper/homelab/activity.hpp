// Per-model request activity of the home-lab services: counters, a latency histogram, in-flight
// requests and per-minute buckets for the last 24 h, fed by the agent's proxy and the NGINX
// access-log tailer, read by the monitor API and the idle reaper, saved in the state store.
// Thread safety: every public member may be called from any number of threads at once. Each
// model has its own mutex (held for a few dozen instructions) and an atomic in-flight count, so
// the proxy's hot path never waits on another model or on a reader.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mlkeeper/homelab/request_event.hpp"

namespace mlk::core {
class Config;
class StateStore;
}  // namespace mlk::core

namespace mlk::homelab {

using SysTime = std::chrono::system_clock::time_point;

// The kv key activity is saved under (docs/STATE.md), and the layout version it writes.
inline constexpr const char* kActivityStateKey = "activity.models";
inline constexpr int kActivityStateVersion = 1;

// How long the per-minute buckets reach back: the widest window active() answers.
inline constexpr std::chrono::hours kActivityHistory{24};

// "2xx", "3xx", "4xx", "5xx"; "none" for no response (status 0) and any status outside 200..599
// (an interim 1xx is not a final answer).
enum class StatusClass { k2xx, k3xx, k4xx, k5xx, kNone };
inline constexpr std::size_t kStatusClasses = 5;
std::string_view to_string(StatusClass c);
StatusClass status_class(int status);

// Upper bounds (inclusive) of the latency buckets in milliseconds; one more bucket holds the rest.
inline constexpr std::array<std::int64_t, 11> kLatencyBoundsMs = {5,   10,   25,   50,   100,  250,
                                                                  500, 1000, 2500, 5000, 10000};
inline constexpr std::size_t kLatencyBuckets = kLatencyBoundsMs.size() + 1;

// Everything counted for one model since it was first seen (or since the saved state).
struct ModelActivity {
    std::string name;
    std::uint64_t requests = 0;
    std::array<std::uint64_t, kStatusClasses> by_status{};  // indexed by StatusClass
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::chrono::microseconds latency_sum{0};
    std::array<std::uint64_t, kLatencyBuckets> latency_buckets{};  // not cumulative
    std::optional<SysTime> last_request;                           // when the newest one finished
    std::int64_t in_flight = 0;
};

// One model of active(): the requests of the window (counted by whole minutes, see active()).
struct ActiveModel {
    std::string name;
    std::uint64_t requests = 0;
    std::optional<SysTime> last_request;
    std::int64_t in_flight = 0;
};

class ActivityTracker : public RequestSink {
  public:
    using Clock = std::function<SysTime()>;

    // Counts requests for `names` only (the registry; duplicates are ignored). The set is fixed:
    // rebuild the tracker (save, then load into the new one) when the registry changes. `now`
    // stamps events without a time and answers active()/idle questions (tests pass a fake).
    explicit ActivityTracker(
        const std::vector<std::string>& names,
        Clock now = [] { return std::chrono::system_clock::now(); });
    ActivityTracker(const ActivityTracker&) = delete;
    ActivityTracker& operator=(const ActivityTracker&) = delete;

    // RequestSink. Events for names not registered are dropped (request_finished/request_seen
    // count them in dropped(); request_started of such a name does nothing). An event whose `at`
    // is the epoch (unset) is stamped with now. request_finished() never takes in-flight below 0.
    void request_started(std::string_view model) override;
    void request_finished(const RequestEvent& event) override;
    void request_seen(const RequestEvent& event) override;

    // The registered names, sorted.
    std::vector<std::string> names() const;
    bool knows(std::string_view model) const;
    // nullopt for a name that is not registered.
    std::optional<ModelActivity> get(std::string_view model) const;
    // Every registered model, by name.
    std::vector<ModelActivity> all() const;
    // The models with at least one request that finished in (now - window, now], or one in
    // flight, sorted by name. `requests` sums the minute buckets that overlap the window, so for
    // a window that is not a whole number of minutes it may include requests up to a minute
    // older. Windows longer than kActivityHistory are cut to it.
    std::vector<ActiveModel> active(std::chrono::seconds window) const;
    std::optional<SysTime> last_request(std::string_view model) const;
    std::int64_t in_flight(std::string_view model) const;  // 0 for an unknown name
    std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
    SysTime now() const { return now_(); }

    // Writes every model's counters, last request time and minute buckets (of the last 24 h) to
    // kActivityStateKey as JSON {"version": 1, ...}. In-flight counts are not saved (those
    // requests end with the process). Throws what the store throws.
    void save(core::StateStore& store) const;
    // Replaces the counters of the registered models named in the saved value (others are left
    // alone, saved names no longer registered are skipped). Call it before events arrive. A
    // missing value is a fresh start; a corrupt or unknown-version value, or a store that cannot
    // be read, is logged and ignored (returns false), never thrown.
    bool load(const core::StateStore& store);

  private:
    struct Minute {
        std::int64_t minute = -1;  // minutes since the epoch
        std::uint32_t count = 0;
    };
    static constexpr std::size_t kMinutes = 24 * 60;
    struct Entry {
        std::string name;
        std::atomic<std::int64_t> in_flight{0};
        mutable std::mutex mu;
        ModelActivity counters;  // in_flight here is unused; see the atomic
        std::array<Minute, kMinutes> minutes{};
    };

    Entry* find(std::string_view model) const;
    void record(Entry& e, const RequestEvent& event);
    static std::uint64_t count_window(const Entry& e, std::int64_t first_minute,
                                      std::int64_t last_minute);  // e.mu held

    std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries_;  // fixed after ctor
    Clock now_;
    std::atomic<std::uint64_t> dropped_{0};
};

// Calls `save` every `interval` on a thread of its own and once more when destroyed, so activity
// survives an agent restart when no access-log tailer saves it (the tailer saves the counters
// together with its log position; see AccessLogTailer). Exceptions from `save` are logged.
// Thread safety: construct and destroy on one thread; `save` runs on the saver's thread.
class ActivityAutosave {
  public:
    ActivityAutosave(std::function<void()> save, std::chrono::milliseconds interval);
    ~ActivityAutosave();
    ActivityAutosave(const ActivityAutosave&) = delete;
    ActivityAutosave& operator=(const ActivityAutosave&) = delete;

  private:
    void run_save() noexcept;

    std::function<void()> save_;
    std::chrono::milliseconds interval_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;  // mu_
    std::thread thread_;
};

}  // namespace mlk::homelab
