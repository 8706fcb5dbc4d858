// The agent's observability endpoint: GET /metrics (every family, Prometheus text format), the
// status page at / and its data (GET /api/dashboard/summary, GET /charts/gpu/METRIC.svg). It only
// gathers: the GPU and health collectors, the state database (backups, cleanups, jobs, alerts),
// the models and the GPU history each supply their part (docs/METRICS.md).
// Thread safety: the routes may run on any number of server threads at once.
#pragma once

#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/api/router.hpp"
#include "mlkeeper/metrics/history_families.hpp"
#include "mlkeeper/sched/job_spec.hpp"

namespace mlk::homelab {
class ActivityTracker;
class ModelManager;
}  // namespace mlk::homelab

namespace mlk::metrics {

class GpuCollector;
class GpuHistory;
class HealthCollector;

// What the exporter reads; null members are parts the agent does not run.
struct ExporterSources {
    const GpuCollector* gpus = nullptr;
    const HealthCollector* health = nullptr;
    const GpuHistory* history = nullptr;
    const homelab::ModelManager* models = nullptr;
    const homelab::ActivityTracker* activity = nullptr;
    std::filesystem::path state_db;    // the agent's state.db (opened again, read-only)
    std::vector<sched::JobSpec> jobs;  // the schedule, for the next runs
    std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
};

class Exporter {
  public:
    explicit Exporter(ExporterSources sources);

    // In group kMetrics: GET /metrics and GET /api/dashboard/summary and
    // GET /charts/gpu/{chart} (Access::kRead), GET / (Access::kPublic: the page holds no data).
    void add_routes(api::Router& router);

    std::string metrics_text();
    nlohmann::json summary();
    // `chart` is "temp.svg", "util.svg", "memory.svg" or "power.svg"; `range` "1h", "24h" or
    // "7d". Throws api::ApiError 404 / 400 for others.
    std::string chart_svg(std::string_view chart, std::string_view range);

  private:
    ExporterSources src_;
    std::mutex db_mu_;  // serializes the read-only connection
    HistoryFamilies db_;
};

}  // namespace mlk::metrics
