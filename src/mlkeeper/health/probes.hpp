// Probes of the ML services a node depends on, each bounded by its own
// timeout: HTTP(S) GET with an expected status (libcurl), TCP connect, Redis
// PING (RESP over TCP, AUTH first when a password is given) and PostgreSQL
// (libpq PQpingParams, what pg_isready does). Thread safety: run_probe may
// be called from many threads at once.
#pragma once

#include <vector>

#include "mlkeeper/health/check.hpp"
#include "mlkeeper/health/probe_spec.hpp"

namespace mlk::health {

// "Probe <name>": pass when the service answered as expected within the
// timeout; value = seconds taken.
CheckResult run_probe(const ProbeSpec& spec);

// All probes in parallel, results in spec order.
std::vector<CheckResult> run_probes(const std::vector<ProbeSpec>& specs);

}  // namespace mlk::health
