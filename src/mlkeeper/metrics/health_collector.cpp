#include "mlkeeper/metrics/health_collector.hpp"

#include <spdlog/spdlog.h>

#include <utility>

#include "mlkeeper/metrics/gpu_collector.hpp"

namespace mlk::metrics {

HealthCollector::HealthCollector(health::HealthOptions options, std::chrono::milliseconds interval,
                                 const GpuCollector* gpus, health::HealthEnv env)
    : options_(std::move(options)),
      env_(std::move(env)),
      latest_(std::make_shared<HealthReading>()),
      task_(interval, [this] { run_now(); }) {
    if (gpus != nullptr) {
        options_.gpu_source = [gpus]() -> std::optional<std::vector<health::GpuReading>> {
            const auto r = gpus->first_reading(std::chrono::seconds(5));
            if (!r->snapshot) {
                return std::nullopt;
            }
            return health_readings(*r->snapshot);
        };
    }
}

HealthCollector::~HealthCollector() {
    stop();
}

void HealthCollector::start() {
    task_.start();
}

void HealthCollector::stop() {
    task_.stop();
}

void HealthCollector::run_now() {
    auto next = std::make_shared<HealthReading>();
    try {
        auto run = health::run_health(options_, env_);
        // The OOM check counts kills since the previous run of this collector.
        if (run.oom_kills) {
            options_.previous_oom_kills = run.oom_kills;
        }
        next->prometheus = health::to_prometheus(run.report);
        next->report = std::move(run.report);
    } catch (const std::exception& e) {
        spdlog::warn("metrics: health run failed: {}", e.what());
        return;  // keep the previous report
    }
    std::lock_guard<std::mutex> lock(mu_);
    latest_ = std::move(next);
}

std::shared_ptr<const HealthReading> HealthCollector::latest() const {
    std::lock_guard<std::mutex> lock(mu_);
    return latest_;
}

}  // namespace mlk::metrics
