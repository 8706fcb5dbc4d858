// Prometheus families and status-page rows for the agent's models: each model's state, request
// counters by status class, requests in flight, idle time and restarts (from the model manager
// and the request counters the proxy and access-log tailer feed).
// Thread safety: reads thread-safe snapshots; call from any thread.
#pragma once

#include <chrono>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/homelab/activity.hpp"
#include "mlkeeper/homelab/model_manager.hpp"

namespace mlk::metrics {

// mlkeeper_model_state, _requests_total, _in_flight_requests, _idle_seconds, _restarts_total.
// `activity` may be null (no counters: only state and restarts).
void append_models(core::MetricsText& m, const homelab::ModelManager& models,
                   const homelab::ActivityTracker* activity,
                   std::chrono::system_clock::time_point now);

// [{"name", "state", "requests", "in_flight", "idle_seconds" (null: never used)}].
nlohmann::json models_json(const homelab::ModelManager& models,
                           const homelab::ActivityTracker* activity,
                           std::chrono::system_clock::time_point now);

}  // namespace mlk::metrics
