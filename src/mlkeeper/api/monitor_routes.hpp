// The model monitor's REST routes (group kMonitor, port 5003 in the seeds' layout): which models
// are active, every model's request counters, and what the idle reaper does. Read-only; the
// routes only translate homelab::ActivityTracker, IdleReaper and ModelManager into JSON.
// Thread safety: add_monitor_routes() runs while the router is built; the handlers may then run
// on any number of server threads at once. The objects passed must outlive the router.
#pragma once

#include <chrono>
#include <string_view>

#include "mlkeeper/api/router.hpp"
#include "mlkeeper/homelab/activity.hpp"
#include "mlkeeper/homelab/idle_reaper.hpp"
#include "mlkeeper/homelab/model_manager.hpp"

namespace mlk::api {

// The seeds' "active": at least one request in the last 10 minutes.
inline constexpr std::chrono::seconds kDefaultActiveWindow{600};

// Adds, in group RouteGroup::kMonitor, all Access::kRead:
//   GET /models/active[?window=10m]  {"window_seconds", "models": [{"name", "requests",
//                                    "last_request", "in_flight", "state"}]}; window "30s",
//                                    "10m", "2h", "90" (seconds), 1s..24h, else 400 bad_request
//   GET /activity                    {"models": [every model's counters, in_flight,
//                                    last_request, idle_seconds, state], "dropped"}
//   GET /reaper                      {"enabled", "interval_seconds", "last_run", "models":
//                                    [{"name", "pinned", "idle_timeout_seconds"}],
//                                    "recent_stops": [...]}
// `reaper` may be null (the reaper is off: "enabled": false).
void add_monitor_routes(Router& router, homelab::ActivityTracker& activity,
                        homelab::IdleReaper* reaper, homelab::ModelManager& models);

// The `window` parameter: a duration in 1s..24h. Throws ApiError 400 bad_request.
std::chrono::seconds parse_window(std::string_view text);

}  // namespace mlk::api
