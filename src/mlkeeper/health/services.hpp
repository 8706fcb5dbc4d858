// systemd unit state over D-Bus (sd-bus): ActiveState/SubState/LoadState of
// each configured unit, without running systemctl. Where systemd is not the
// init system (containers, this build machine) each unit is reported as
// skipped with the reason instead of failing. Thread safety: each call opens
// its own bus connection; safe from many threads.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "mlkeeper/health/check.hpp"

namespace mlk::health {

// "docker" -> "docker.service"; names with a unit suffix are kept.
std::string unit_name(const std::string& service);

// Grades an ActiveState: active -> pass; activating, reloading -> warn;
// inactive, failed, deactivating -> fail; and LoadState not-found -> fail.
CheckResult grade_unit(const std::string& service, const std::string& load_state,
                       const std::string& active_state, const std::string& sub_state);

// One "Service <name>" result per service. systemd counts as running when
// <run_root>/systemd/system exists (sd_booted(3)'s test); bus failures are
// kError results naming the address and the error.
std::vector<CheckResult> check_services(const HealthEnv& env,
                                        const std::vector<std::string>& services,
                                        std::chrono::milliseconds timeout);

}  // namespace mlk::health
