// Runs the configured set of health checks and collects one report. The
// local checks (/proc, statvfs) take microseconds and run in order; the
// services, network, probe and journal checks may wait, so each group runs
// on its own thread, every wait bounded by its own timeout. Results come
// back in a fixed order whatever finishes first.
// Thread safety: run_health may be called from several threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/health/check.hpp"
#include "mlkeeper/health/gpu_check.hpp"
#include "mlkeeper/health/journal_errors.hpp"
#include "mlkeeper/health/probe_spec.hpp"
#include "mlkeeper/health/report.hpp"
#include "mlkeeper/health/system_checks.hpp"

namespace mlk::health {

enum class Network { kCheck, kSkip };  // --no-network skips route, DNS, TCP and probes

struct HealthOptions {
    DiskOptions disk;
    MemoryOptions memory;
    Thresholds load_pct{100, 200};
    std::vector<std::string> services{"docker"};
    std::chrono::milliseconds service_timeout{5000};
    GpuOptions gpu;
    GpuSource gpu_source;  // empty: reported as "no GPU"
    Network network = Network::kCheck;
    std::vector<std::string> dns_names;
    std::vector<std::string> tcp_targets;  // "host:port"
    std::chrono::milliseconds network_timeout{3000};
    std::vector<ProbeSpec> probes;
    ErrorsOptions errors;
    bool check_errors = true;
    std::optional<std::uint64_t> previous_oom_kills;  // saved by the last run
};

// Reads [health] from the configuration. Throws ConfigError listing every
// bad probe entry (or other invalid value) at once.
HealthOptions options_from_config(const core::Config& cfg);

struct HealthRun {
    HealthReport report;
    std::optional<std::uint64_t> oom_kills;  // the counter now, for the next run
};

// Checks in report order: disk, memory, swap, cpu, services, gpu, network,
// probes, recent errors, OOM kills, uptime, reboot required.
HealthRun run_health(const HealthOptions& opts, const HealthEnv& env = {});

}  // namespace mlk::health
