// Turns a Snapshot into findings: per GPU and per condition (temperature, memory, power, ECC,
// lost, throttling) a level with the alert key the seeds used ("gpu0_temp"), so the command can
// fire alerts for problems and resolve the keys that are normal again. Thread safety: pure
// functions on their arguments.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/gpu/sampler.hpp"

namespace mlk::core {
class Config;
}

namespace mlk::gpu {

// Limits are exceeded when the value is strictly above them, as the seeds' `-gt` tests.
struct Thresholds {
    double temp_warn_c = 80;  // gpu.temp_threshold (TEMP_THRESHOLD)
    double temp_crit_c = 85;  // gpu.temp_crit (MLKEEPER_GPU_TEMP_CRIT)
    double memory_pct = 90;   // gpu.memory_threshold (MEMORY_THRESHOLD)
    double power_pct = 95;    // gpu.power_threshold (POWER_THRESHOLD), % of the enforced limit
};

enum class Level { kOk, kWarning, kCritical };
std::string_view to_string(Level l);  // "ok", "warning", "critical"

struct Finding {
    std::string key;        // alert key: "gpu0_temp", "gpu0_memory", "gpu0_power", "gpu0_ecc",
                            // "gpu0_lost", "gpu0_throttle"
    std::string condition;  // "temp", "memory", "power", "ecc", "lost", "throttle"
    unsigned int gpu = 0;
    Level level = Level::kOk;
    std::string summary;    // one line, for both problem and normal states
    std::string value;      // observed, e.g. "87°C"
    std::string threshold;  // e.g. "85°C"
    std::string action;     // what to do (problems only)
};

struct Judgement {
    // Every condition that could be evaluated, normal ones included (level kOk) so callers can
    // resolve their alerts. A condition whose inputs are n/a has no finding at all: neither a
    // problem nor proof that an earlier one is gone. A lost GPU yields only its "lost" finding.
    std::vector<Finding> findings;
    Level overall = Level::kOk;

    // The worst level of one GPU's findings.
    Level gpu_level(unsigned int gpu) const;
    // 0 healthy, 1 warning, 2 critical (the seeds' exit codes).
    int exit_code() const;
};

Judgement judge(const Snapshot& snapshot, const Thresholds& t);

// The [gpu] thresholds of a loaded configuration. Throws ConfigError when the critical
// temperature is below the warning one.
Thresholds thresholds_from(const core::Config& cfg);

// The throttle reasons that are worth a warning: thermal slowdowns and the external power brake
// (not the routine software power cap or idle clocks).
inline constexpr std::uint64_t kAlarmingThrottleMask =
    nvml::kThrottleHwSlowdown | nvml::kThrottleSwThermalSlowdown |
    nvml::kThrottleHwThermalSlowdown | nvml::kThrottleHwPowerBrakeSlowdown;

}  // namespace mlk::gpu
