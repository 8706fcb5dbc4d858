// The model-control routes of the REST API ("Models" in docs/API): list and show the registered
// models, and start, stop or restart one through homelab::ModelManager.
// Thread safety: add_model_routes() runs while the router is built; the handlers it adds may then
// run on any number of server threads at once (the manager is thread-safe).
#pragma once

#include "mlkeeper/api/router.hpp"
#include "mlkeeper/homelab/model_manager.hpp"

namespace mlk::api {

// Adds, in group RouteGroup::kModels:
//   GET  /models                 {"models": [model, ...]}  every registered model, by name
//   GET  /models/running         {"models": [...]}         state "running" only
//   GET  /models/{name}          model; 404 not_found for a name not in the registry
//   POST /models/{name}/start    [?wait=false][&timeout=1..3600]  200 started|already_running,
//                                202 starting; 409 conflict; 500 start_failed
//   POST /models/{name}/stop     [?wait=false][&timeout=1..3600]  200 stopped|already_stopped,
//                                202 stopping; 409 conflict; 500 stop_failed
//   POST /models/{name}/restart  [?timeout=1..3600]  200 restarted; 409 conflict; 500 ...
// The POSTs need Access::kAdmin and are audited. A bad `wait` or a non-numeric `timeout` is 400
// bad_request, a timeout out of range 400 invalid. `models` must outlive the router.
void add_model_routes(Router& router, homelab::ModelManager& models);

}  // namespace mlk::api
