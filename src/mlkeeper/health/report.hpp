// A health run's results, its summary (the seeds' counts and health_score)
// and the four output formats: text, the seeds' JSON, Nagios plugin output
// with performance data, and Prometheus text. Also the exit codes.
// Thread safety: pure functions over values.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/health/check.hpp"

namespace mlk::health {

struct HealthReport {
    std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
    std::string hostname;
    std::vector<CheckResult> checks;
    std::chrono::milliseconds elapsed{0};
};

struct Summary {
    int total = 0, passed = 0, warnings = 0, failed = 0;
    int skipped = 0;            // counted in passed too (status pass)
    int errors = 0;             // could not run; counted in warnings too (status warn)
    double health_score = 100;  // passed / total * 100, 2 decimals; 100 when total is 0
};
Summary summarize(const std::vector<CheckResult>& checks);

enum class Format { kText, kJson, kPrometheus, kNagios };
std::optional<Format> parse_format(std::string_view s);  // "text", "json", "prometheus", "nagios"

// Seeds: 0 all passed, 1 warnings, 2 critical. Nagios: 2 critical, else 3
// (UNKNOWN) when a check could not run, else 1 warning, else 0.
int exit_code(const std::vector<CheckResult>& checks, Format format);

enum class Colour { kNo, kYes };
enum class Verbosity { kNormal, kVerbose };

// One line per check ("PASS  Disk usage /: ..."), then the summary line.
std::string to_text(const HealthReport& report, Colour colour, Verbosity verbosity);

// {"timestamp", "hostname", "checks": [{check, status, message, value,
// threshold, unit}], "summary": {total, passed, warnings, failed,
// health_score, skipped}} in the seeds' key order.
nlohmann::ordered_json to_json(const HealthReport& report);

// "HEALTH WARNING - <problems> | 'disk_/'=65.2%;80;90;0;100 ..." (one line).
std::string to_nagios(const HealthReport& report);
// Label of a perfdata item: single quotes doubled, '=' replaced.
std::string nagios_label(std::string_view key);

// mlkeeper_health_check_status{check=...} 0|1|2, the score, counts and each
// check's own metrics (mlkeeper_health_<name>), in base units.
std::string to_prometheus(const HealthReport& report);

}  // namespace mlk::health
