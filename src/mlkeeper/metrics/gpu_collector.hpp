// The agent's GPU reader: every interval one NVML sample of every GPU, judged against the [gpu]
// thresholds, kept as the newest reading for /metrics, the status page and the periodic health
// check, and appended to the GPU history for the charts. NVML stays initialised between samples.
// XID errors are counted as the driver reports them (events, not polls).
// A machine without an NVIDIA driver has no GPUs; the driver is looked for again every 10
// minutes, so installing one needs no agent restart.
// Thread safety: latest() may be called from any thread while the collector runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/gpu/judge.hpp"
#include "mlkeeper/gpu/sampler.hpp"
#include "mlkeeper/gpu/xid_watcher.hpp"
#include "mlkeeper/health/gpu_check.hpp"
#include "mlkeeper/util/periodic.hpp"

namespace mlk::metrics {

class GpuHistory;

struct GpuReading {
    std::optional<gpu::Snapshot> snapshot;  // nullopt: no driver, or NVML failed (see error)
    gpu::Judgement judgement;
    std::string error;       // why there is no snapshot; "" when there is one
    std::string prometheus;  // gpu::to_prometheus of the snapshot and the XID counts ("" without)
};

struct GpuCollectorSettings {
    std::string library = "libnvidia-ml.so.1";
    gpu::Thresholds thresholds;
    std::chrono::milliseconds interval{10000};
};

class GpuCollector {
  public:
    // `history` may be null (no charts); it must outlive the collector.
    GpuCollector(GpuCollectorSettings settings, GpuHistory* history);
    ~GpuCollector();
    GpuCollector(const GpuCollector&) = delete;
    GpuCollector& operator=(const GpuCollector&) = delete;

    void start();  // the first sample is taken at once, on the collector's thread
    void stop();
    // One sample on the calling thread (tests; start() is not needed).
    void sample_now();
    // The newest reading; never null (before the first sample: no snapshot, error "not read yet").
    std::shared_ptr<const GpuReading> latest() const;
    // The newest reading once the first sample is in (waiting up to `limit` for it), so a health
    // run starting with the agent does not report "no GPU" for lack of a first read.
    std::shared_ptr<const GpuReading> first_reading(std::chrono::milliseconds limit) const;

  private:
    void start_xid_watcher();

    GpuCollectorSettings settings_;
    GpuHistory* history_;
    std::unique_ptr<gpu::Sampler> sampler_;  // the collector thread's
    std::unique_ptr<gpu::XidWatcher> xid_;   // started with the sampler; null if unsupported
    std::chrono::steady_clock::time_point next_load_try_{};
    mutable std::mutex mu_;
    mutable std::condition_variable sampled_;
    std::shared_ptr<const GpuReading> latest_;  // mu_
    bool sampled_once_ = false;                 // mu_
    util::PeriodicTask task_;
};

// The readings health's GPU check wants, from a snapshot (used by `mlkeeper health` and the
// agent's periodic health run).
std::vector<health::GpuReading> health_readings(const gpu::Snapshot& snapshot);

}  // namespace mlk::metrics
