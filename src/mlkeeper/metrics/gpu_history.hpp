// GPU history for the dashboard's charts: every sample is kept raw for a day and folded into
// 1-minute and 10-minute buckets kept for a week and a month, in the state database
// (docs/STATE.md, `gpu_samples` and `gpu_devices`), and read back as at most N points per GPU.
// Thread safety: a GpuHistory may be shared by threads, and beside other users of the same
// StateStore: every call runs under the store's mutex (StateStore::with_db). Several processes
// may write and read the same file (WAL mode); each add() is one transaction.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/core/sqlite_db.hpp"
#include "mlkeeper/core/state_store.hpp"

namespace mlk::metrics {

// One GPU in one sample. A value the GPU did not report is nullopt; NaN and infinities count
// as not reported.
struct GpuPoint {
    int gpu = 0;  // index, >= 0; the history of a GPU is keyed by it
    std::string uuid, name;
    std::optional<double> temp_c, util_ratio, mem_used_bytes, mem_total_bytes, power_w,
        power_limit_w;
};

// How long each tier keeps its rows, counted back from the newest sample added. All must be
// positive.
struct HistorySettings {
    std::chrono::seconds raw_keep{std::chrono::hours(24)};
    std::chrono::seconds minute_keep{std::chrono::hours(24 * 7)};
    std::chrono::seconds ten_minute_keep{std::chrono::hours(24 * 30)};
};

// The row sets of `gpu_samples`; the value is the `tier` column.
enum class Tier : int {
    kRaw = 0,        // one row per sample
    kMinute = 1,     // 60 s buckets
    kTenMinute = 2,  // 600 s buckets
};

class GpuHistory {
  public:
    using TimePoint = std::chrono::system_clock::time_point;

    // One GPU's points, oldest first. Each point is a bucket of `Query::step` seconds starting
    // at t (raw points: the sample itself); the value vectors run parallel to `t`. Averages are
    // sum/count of the samples that reported the value; nullopt where none did. A bucket with
    // no sample at all has no point (a gap), never a zero.
    struct Series {
        int gpu = 0;
        std::string uuid, name;                                // latest known
        std::optional<double> mem_total_bytes, power_limit_w;  // latest known
        std::vector<std::int64_t> t;                           // Unix seconds
        std::vector<std::int64_t> samples;                     // samples in each point
        std::vector<std::optional<double>> temp_c, util_ratio, mem_used_bytes, power_w;
        std::vector<std::optional<double>> temp_c_max, util_ratio_max, mem_used_bytes_max,
            power_w_max;
    };
    struct Query {
        // Bucket length. For raw points (tier kRaw with no aggregation) the median spacing of
        // the points, 1 s when there are fewer than two.
        std::chrono::seconds step{0};
        Tier tier = Tier::kRaw;    // the tier the points were read from
        std::vector<Series> gpus;  // GPUs with at least one point in the range, by index
    };

    // `store` must outlive this object (it keeps statements prepared on its connection).
    // Throws std::invalid_argument for a retention that is not positive.
    GpuHistory(core::StateStore& store, HistorySettings settings = {});

    // Stores one sample of `gpus` taken at `t` (whole seconds, rounded down) in one
    // transaction: the raw rows, the 1- and 10-minute buckets and the device rows. A second
    // sample of a GPU in the same second is dropped (it would count twice in the buckets). A
    // sample older than the last is stored like any other. Deletes expired rows when the last
    // pruning by this object was 10 minutes (of sample time) ago or more, or never.
    // Throws std::invalid_argument for a negative or repeated GPU index (nothing is stored),
    // mlk::Error when the database fails.
    void add(TimePoint t, const std::vector<GpuPoint>& gpus);

    // Points in [from, to] (rounded down to seconds), at most `max_points` per GPU. Raw samples
    // when they cover `from` and fit; otherwise the smallest step from 1, 2, 5, 10, 15, 20, 30 s,
    // 1, 2, 3, 5, 10, 20, 30 min, 1, 2, 3, 6, 12, 24 h (then doubling) that fits, built from the
    // coarsest tier whose bucket divides it and whose retention reaches `from` (when none
    // reaches it, the longest-kept tier). Aggregated points are the step-aligned buckets that
    // overlap [from, to], so the first may start before `from`. Throws std::invalid_argument
    // when from > to or max_points == 0.
    Query query(TimePoint from, TimePoint to, std::size_t max_points = 720) const;

    // Every GPU in the history, by index: identity, memory size and power limit as last
    // reported (measurements are nullopt). A GPU is forgotten when it has no rows left and
    // was last seen longer ago than the longest retention.
    std::vector<GpuPoint> devices() const;

    const HistorySettings& settings() const { return settings_; }

  private:
    core::StateStore& store_;
    HistorySettings settings_;
    // Guarded by the store's mutex (used only inside with_db). The statements of add(),
    // prepared once: parsing them took a fair share of each add().
    std::optional<std::int64_t> last_prune_;  // sample time (Unix seconds) of the last pruning
    std::optional<core::Statement> upsert_device_, insert_raw_, upsert_bucket_;
};

}  // namespace mlk::metrics
