// What one health check produces (the seeds' {check, status, message} plus the
// measured value, its threshold and unit), and the environment checks read:
// the /proc, /sys and /run roots are parameters so tests can use fake trees.
// Thread safety: plain value types.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/core/metrics_text.hpp"

namespace mlk::health {

enum class Status { kPass, kWarn, kFail };  // fail = critical
std::string_view to_string(Status s);       // "pass", "warn", "fail"

// Whether the check really measured something. kSkipped: not applicable here
// (systemd not running), reported as a pass with the reason; kError: it could
// not read what it needs (Nagios UNKNOWN), reported as a warning.
enum class Ran { kYes, kSkipped, kError };

// A Prometheus sample a check contributes, in base units.
struct Metric {
    std::string name;  // without the mlkeeper_health_ prefix: "disk_used_ratio"
    std::vector<std::pair<std::string, std::string>> labels;
    double value = 0;
    std::string help;
    core::MetricType type = core::MetricType::kGauge;
};

struct CheckResult {
    std::string check;     // "Disk usage /data": shown to people
    std::string key;       // stable id for alerts and perfdata: "disk_/data"
    std::string category;  // "disk", "memory", "cpu", "service", "gpu", "network", ...
    Status status = Status::kPass;
    Ran ran = Ran::kYes;
    std::string message;
    std::optional<double> value;                 // what was measured, in `unit`
    std::optional<double> threshold;             // the threshold crossed, else the warning one
    std::string unit;                            // "%", "s", "load", "count", "celsius", ""
    std::optional<double> warn, crit, min, max;  // Nagios performance data
    std::vector<Metric> metrics;
};

// Where checks read the system. Tests point these at fake trees.
struct HealthEnv {
    std::filesystem::path proc_root = "/proc";
    std::filesystem::path sys_root = "/sys";
    std::filesystem::path run_root = "/run";
    std::filesystem::path reboot_required_file = "/var/run/reboot-required";
    std::string system_bus_address;  // sd-bus address; empty = the default system bus
};

struct Thresholds {
    double warn = 0;
    double crit = 0;
};

// warn when value > warn, fail when value > crit (strictly above, as the
// seeds' `[ "$USAGE" -gt $THRESHOLD ]`).
Status grade(double value, const Thresholds& t);

// A result for a check that could not run (kError, status warn).
CheckResult error_result(std::string check, std::string key, std::string category,
                         std::string message);
// A result for a check skipped with a reason (kSkipped, status pass).
CheckResult skipped_result(std::string check, std::string key, std::string category,
                           std::string reason);

}  // namespace mlk::health
