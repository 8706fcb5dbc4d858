// The shutdown service's REST routes (group kShutdown, port 5001 in the seeds' layout):
// POST/DELETE/GET /shutdown and GET /uptime, with the JSON bodies of the API contract
// (docs/api.md). The routes only translate between JSON and homelab::ShutdownService.
// Thread safety: the handlers may run on any number of server threads at once; the service and
// the router must outlive the server.
#pragma once

#include <nlohmann/json.hpp>

#include "mlkeeper/api/router.hpp"
#include "mlkeeper/homelab/shutdown_service.hpp"
#include "mlkeeper/homelab/uptime.hpp"

namespace mlk::api {

// Registers the four routes; reads /uptime from the real /proc.
void add_shutdown_routes(Router& router, homelab::ShutdownService& service);
// The same with the /proc reader given (tests).
void add_shutdown_routes(Router& router, homelab::ShutdownService& service,
                         homelab::ProcReader proc);

// The contract's shutdown object: {"at", "delay_minutes", "reason", "requested_by",
// "created_at"}, times as RFC 3339 UTC whole seconds ("2026-11-22T14:00:00Z").
nlohmann::json shutdown_to_json(const homelab::ScheduledShutdown& s);

}  // namespace mlk::api
