#include "mlkeeper/core/config_schema.hpp"

#include <array>
#include <string>

namespace mlk::core {
namespace {

using util::DurationUnit;
using enum ValueType;

constexpr std::array kSections = {
    std::string_view{"backup"}, std::string_view{"gpu"},      std::string_view{"alerts"},
    std::string_view{"cleanup"}, std::string_view{"health"},  std::string_view{"maintain"},
    std::string_view{"schedule"}, std::string_view{"agent"},  std::string_view{"models"},
    std::string_view{"shutdown"}, std::string_view{"nginx"},  std::string_view{"state"},
    std::string_view{"log"},
};

constexpr double kDay = 86400;
constexpr double kYear = 366 * kDay;

// Key names are the seeds' environment variable names in lower case, so a
// user who knows RETENTION_DAYS can guess `[backup] retention_days`.
constexpr std::array kKeys = {
    // [backup] — backup_models.sh
    KeySpec{"backup", "model_dir", kPath, "/opt/ml/models", "MODEL_DIR", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain, "Directory whose models are backed up"},
    KeySpec{"backup", "backup_dir", kPath, "/backup/models", "BACKUP_DIR", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain, "Where archives are written"},
    KeySpec{"backup", "retention_days", kDuration, "30", "RETENTION_DAYS", kDay, 100 * kYear, {},
            DurationUnit::kDays, Sensitivity::kPlain,
            "Delete archives older than this (plain number = days)"},
    KeySpec{"backup", "compression", kChoice, "zstd", "BACKUP_COMPRESSION", 0, 0, "zstd|gzip",
            DurationUnit::kSeconds, Sensitivity::kPlain, "Archive codec: zstd (fast) or gzip"},
    KeySpec{"backup", "compression_level", kInt, "", "COMPRESSION_LEVEL", 1, 19, {},
            DurationUnit::kSeconds, Sensitivity::kPlain,
            "gzip 1-9 (default 6), zstd 1-19 (default 3)"},
    KeySpec{"backup", "verify_backup", kBool, "true", "VERIFY_BACKUP", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Verify each archive after writing it"},
    KeySpec{"backup", "s3_bucket", kString, "", "S3_BUCKET", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain, "S3 bucket for the off-site copy (empty = none)"},
    KeySpec{"backup", "s3_storage_class", kChoice, "STANDARD", "S3_STORAGE_CLASS", 0, 0,
            "STANDARD|STANDARD_IA|ONEZONE_IA|INTELLIGENT_TIERING|GLACIER|GLACIER_IR|DEEP_ARCHIVE|"
            "REDUCED_REDUNDANCY",
            DurationUnit::kSeconds, Sensitivity::kPlain, "S3 storage class for uploads"},

    // [gpu] — monitor_gpus.sh
    KeySpec{"gpu", "temp_threshold", kInt, "80", "TEMP_THRESHOLD", 0, 150, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "GPU temperature warning (°C)"},
    KeySpec{"gpu", "memory_threshold", kNumber, "90", "MEMORY_THRESHOLD", 0, 100, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "GPU memory use warning (%)"},
    KeySpec{"gpu", "power_threshold", kNumber, "95", "POWER_THRESHOLD", 0, 100, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Power draw warning (% of limit)"},
    KeySpec{"gpu", "metrics_file", kPath, "/var/log/gpu-metrics.csv", "METRICS_FILE", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "CSV file metrics are appended to"},

    // [alerts]
    KeySpec{"alerts", "alert_email", kString, "", "ALERT_EMAIL", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain, "Address alerts are mailed to (empty = no email)"},
    KeySpec{"alerts", "alert_webhook", kString, "", "ALERT_WEBHOOK", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kSecret,
            "Webhook URL alerts are POSTed to (empty = none); masked, it holds a token"},
    KeySpec{"alerts", "alert_cooldown", kDuration, "3600", "ALERT_COOLDOWN", 0, kYear, {},
            DurationUnit::kSeconds, Sensitivity::kPlain,
            "Minimum time between repeats of one alert (plain number = seconds)"},

    // [cleanup] — cleanup_ml_artifacts.sh
    KeySpec{"cleanup", "experiments_dir", kPath, "/opt/ml/experiments", "EXPERIMENTS_DIR", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Root of experiment runs"},
    KeySpec{"cleanup", "checkpoints_dir", kPath, "/opt/ml/checkpoints", "CHECKPOINTS_DIR", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Root of checkpoints"},
    KeySpec{"cleanup", "logs_dir", kPath, "/var/log", "LOGS_DIR", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain, "Directory holding ml-* logs"},
    KeySpec{"cleanup", "temp_dir", kPath, "/tmp", "TEMP_DIR", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain, "Directory holding ml-* temp files"},
    KeySpec{"cleanup", "experiments_retention", kDuration, "30", "EXPERIMENTS_RETENTION", 0,
            100 * kYear, {}, DurationUnit::kDays, Sensitivity::kPlain,
            "Keep experiments this long (plain number = days)"},
    KeySpec{"cleanup", "checkpoints_retention", kDuration, "7", "CHECKPOINTS_RETENTION", 0,
            100 * kYear, {}, DurationUnit::kDays, Sensitivity::kPlain,
            "Keep checkpoints this long (plain number = days)"},
    KeySpec{"cleanup", "logs_retention", kDuration, "14", "LOGS_RETENTION", 0, 100 * kYear, {},
            DurationUnit::kDays, Sensitivity::kPlain, "Keep logs this long (plain number = days)"},
    KeySpec{"cleanup", "aggressive", kBool, "false", "AGGRESSIVE", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain,
            "Also clean Docker images, pip and apt caches, old /tmp files"},

    // [health] — health_check.sh
    KeySpec{"health", "disk_warn_threshold", kNumber, "80", "DISK_WARN_THRESHOLD", 0, 100, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Disk use warning (%)"},
    KeySpec{"health", "disk_crit_threshold", kNumber, "90", "DISK_CRIT_THRESHOLD", 0, 100, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Disk use critical (%)"},
    KeySpec{"health", "mem_warn_threshold", kNumber, "85", "MEM_WARN_THRESHOLD", 0, 100, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Memory use warning (%)"},
    KeySpec{"health", "gpu_temp_warn", kInt, "75", "GPU_TEMP_WARN", 0, 150, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "GPU temperature warning (°C)"},
    KeySpec{"health", "gpu_temp_crit", kInt, "85", "GPU_TEMP_CRIT", 0, 150, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "GPU temperature critical (°C)"},
    KeySpec{"health", "services_to_check", kStringList, "docker", "SERVICES_TO_CHECK", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "systemd units that must be active"},

    // [maintain] — run_all_maintenance.sh
    KeySpec{"maintain", "run_health_check", kBool, "true", "RUN_HEALTH_CHECK", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Run the health check step"},
    KeySpec{"maintain", "run_gpu_monitor", kBool, "true", "RUN_GPU_MONITOR", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Run the GPU monitoring step"},
    KeySpec{"maintain", "run_backup", kBool, "true", "RUN_BACKUP", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Run the backup step"},
    KeySpec{"maintain", "run_cleanup", kBool, "true", "RUN_CLEANUP", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Run the cleanup step"},
    KeySpec{"maintain", "continue_on_error", kBool, "false", "CONTINUE_ON_ERROR", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Go on with later steps after a failure"},

    // [state]
    KeySpec{"state", "dir", kPath, "", "MLKEEPER_STATE_DIR", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain,
            "State database directory (default /var/lib/mlkeeper as root, else "
            "$XDG_STATE_HOME/mlkeeper)"},

    // [log] — LOG_FILE is the seeds' maintenance log; here it applies to every command.
    KeySpec{"log", "log_file", kPath, "", "LOG_FILE", 0, 0, {}, DurationUnit::kSeconds,
            Sensitivity::kPlain,
            "Log file (default: the command's seed log under /var/log when root, none otherwise)"},
    KeySpec{"log", "log_level", kChoice, "info", "MLKEEPER_LOG_LEVEL", 0, 0,
            "trace|debug|info|warning|error|critical|off", DurationUnit::kSeconds,
            Sensitivity::kPlain, "Lowest level written"},
    KeySpec{"log", "log_format", kChoice, "text", "MLKEEPER_LOG_FORMAT", 0, 0, "text|json",
            DurationUnit::kSeconds, Sensitivity::kPlain, "text, or one JSON object a line"},
    KeySpec{"log", "syslog", kBool, "false", "MLKEEPER_LOG_SYSLOG", 0, 0, {},
            DurationUnit::kSeconds, Sensitivity::kPlain, "Also send log lines to syslog"},
};

}  // namespace

std::span<const std::string_view> config_sections() { return kSections; }

std::span<const KeySpec> config_keys() { return kKeys; }

const KeySpec* find_key(std::string_view section, std::string_view name) {
    for (const auto& k : kKeys) {
        if (k.section == section && k.name == name) {
            return &k;
        }
    }
    return nullptr;
}

const KeySpec* find_key(std::string_view dotted) {
    auto dot = dotted.rfind('.');
    if (dot == std::string_view::npos) {
        return nullptr;
    }
    return find_key(dotted.substr(0, dot), dotted.substr(dot + 1));
}

}  // namespace mlk::core
