// The agent's periodic health run: the configured checks (the same as `mlkeeper health`) every
// [metrics] health_interval, GPUs taken from the GPU collector's newest reading instead of a new
// NVML session. The newest report feeds /metrics and the status page.
// Thread safety: latest() may be called from any thread while the collector runs.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "mlkeeper/health/runner.hpp"
#include "mlkeeper/util/periodic.hpp"

namespace mlk::metrics {

class GpuCollector;

struct HealthReading {
    std::optional<health::HealthReport> report;  // nullopt until the first run finished
    std::string prometheus;                      // health::to_prometheus of it
};

class HealthCollector {
  public:
    // `gpus` may be null (then the GPU check says "no GPU"); it must outlive the collector.
    HealthCollector(health::HealthOptions options, std::chrono::milliseconds interval,
                    const GpuCollector* gpus, health::HealthEnv env = {});
    ~HealthCollector();
    HealthCollector(const HealthCollector&) = delete;
    HealthCollector& operator=(const HealthCollector&) = delete;

    void start();
    void stop();
    void run_now();  // one run on the calling thread (tests)
    std::shared_ptr<const HealthReading> latest() const;

  private:
    health::HealthOptions options_;
    health::HealthEnv env_;
    mutable std::mutex mu_;
    std::shared_ptr<const HealthReading> latest_;  // mu_
    util::PeriodicTask task_;
};

}  // namespace mlk::metrics
