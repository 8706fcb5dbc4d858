// `mlkeeper health`: the seeds' health_check.sh and check_ml_services.sh in
// process: disk, memory, CPU, services, GPU, network, probes, recent errors,
// OOM kills, uptime. Output as text, the seeds' JSON, Nagios or Prometheus.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include <spdlog/spdlog.h>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/outcome_alerts.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/gpu/nvml_api.hpp"
#include "mlkeeper/gpu/sampler.hpp"
#include "mlkeeper/health/runner.hpp"
#include "mlkeeper/metrics/gpu_collector.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::cli {
namespace {

constexpr std::string_view kOomStateKey = "health.oom_kill";

std::optional<std::uint64_t> saved_oom_kills(Context& ctx) {
    try {
        if (auto v = ctx.state().kv_get(kOomStateKey)) {
            if (auto n = util::parse_int64(*v); n && *n >= 0) {
                return static_cast<std::uint64_t>(*n);
            }
        }
    } catch (const std::exception& e) {
        spdlog::warn("cannot read the last OOM counter: {}; counting OOM kills since boot",
                     e.what());
    }
    return std::nullopt;
}

// The GPU module's view of the GPUs as health's check wants it; nullopt when
// the machine has no NVIDIA driver (health then says "no GPU").
std::optional<std::vector<health::GpuReading>> read_gpus(const std::string& library) {
    std::optional<gpu::Sampler> sampler;
    try {
        sampler.emplace(library);
    } catch (const gpu::nvml::NvmlError& e) {
        if (e.means_no_driver()) {
            return std::nullopt;
        }
        throw;
    }
    return metrics::health_readings(sampler->sample());
}

void alert_on(OutcomeAlerts& alerts, const health::CheckResult& r) {
    const std::string key = "health_" + r.key;
    if (r.status == health::Status::kPass) {
        alerts.resolve(key, "health", r.check + ": ok again");
        return;
    }
    alert::Alert a;
    a.key = key;
    a.check = "health";
    a.severity =
        r.status == health::Status::kFail ? alert::Severity::kCritical : alert::Severity::kWarning;
    a.summary = r.message;
    if (r.value)
        a.value = fmt::format("{:.1f}{}", *r.value, r.unit == "%" ? "%" : r.unit);
    if (r.threshold) {
        a.threshold = fmt::format("{:.0f}{}", *r.threshold, r.unit == "%" ? "%" : r.unit);
    }
    a.fields["category"] = r.category;
    alerts.fire(a);
}

}  // namespace

Command health_command() {
    return Command{
        "health", "Check disks, memory, CPU, services, GPUs, network and ML services",
        "/var/log/ml-health-check.log", Record::kYes, [](CLI::App& app, FlagBindings& flags) {
            struct Opts {
                bool json = false, verbose = false;
                std::string format = "text";
            };
            auto o = std::make_shared<Opts>();
            flags
                .bind(app, "--disk-warn", "health.disk_warn_threshold",
                      "Disk and inode use warning, % (DISK_WARN_THRESHOLD, default 80)")
                ->type_name("PCT");
            flags
                .bind(app, "--disk-crit", "health.disk_crit_threshold",
                      "Disk and inode use critical, % (DISK_CRIT_THRESHOLD, default 90)")
                ->type_name("PCT");
            flags
                .bind(app, "--mem-warn", "health.mem_warn_threshold",
                      "Memory use warning, % (MEM_WARN_THRESHOLD, default 85)")
                ->type_name("PCT");
            flags
                .bind(app, "--services", "health.services_to_check",
                      "systemd units to check, e.g. \"docker nginx postgresql\" "
                      "(SERVICES_TO_CHECK)")
                ->type_name("LIST");
            flags.bind_switch(app, "--no-network", "health.network", "false",
                              "Skip route, DNS, TCP and probe checks");
            flags.bind_switch(app, "--alert", "health.alert", "true",
                              "Send alerts for warnings and failures (health.alert)");
            flags
                .bind(app, "--textfile", "health.textfile_dir",
                      "Also write DIR/mlkeeper_health.prom atomically (node_exporter)")
                ->type_name("DIR");
            auto* json = app.add_flag("--json", o->json, "Same as --format json");
            app.add_option("--format", o->format, "text, json, prometheus or nagios")
                ->check(CLI::IsMember({"text", "json", "prometheus", "nagios"}))
                ->excludes(json);
            app.add_flag("--verbose", o->verbose, "Show values, thresholds and timing");
            app.footer(R"(
Checks: disk space and inodes of every real filesystem, memory and swap, load
per CPU, systemd services (over D-Bus), GPUs, default route, DNS names and TCP
targets, probes ([health] probes: http(s)://, tcp://, redis://, postgresql://),
errors logged in the last hour, OOM kills since the last run, uptime and
whether a reboot is required.

Exit codes: 0 all passed, 1 warnings, 2 critical; with --format nagios also 3
(UNKNOWN) when a check could not run.

Examples:
  mlkeeper health
  mlkeeper health --disk-warn 70 --disk-crit 85 --mem-warn 90
  mlkeeper health --services "docker nginx postgresql"
  mlkeeper health --json | jq .summary
  mlkeeper health --format nagios
  mlkeeper health --no-network --textfile /var/lib/node_exporter/textfile)");
            Handler h;
            h.run = [o](Context& ctx) {
                const auto& cfg = ctx.config();
                const auto format =
                    o->json ? health::Format::kJson : *health::parse_format(o->format);
                auto opts = health::options_from_config(cfg);
                opts.gpu_source = [lib = cfg.str("gpu.nvml_library")] { return read_gpus(lib); };
                opts.previous_oom_kills = saved_oom_kills(ctx);
                health::HealthEnv env;
                env.reboot_required_file = cfg.path("health.reboot_required_file");

                const bool alerting = cfg.boolean("health.alert");
                std::optional<OutcomeAlerts> alerts;
                if (alerting)
                    alerts.emplace(ctx);  // bad alert config stops us early

                auto run = health::run_health(opts, env);
                const auto& report = run.report;
                if (run.oom_kills) {
                    try {
                        ctx.state().kv_set(kOomStateKey, std::to_string(*run.oom_kills));
                    } catch (const std::exception& e) {
                        spdlog::warn("cannot save the OOM counter: {}", e.what());
                    }
                }
                const std::string prom = health::to_prometheus(report);
                if (cfg.is_set("health.textfile_dir") && !cfg.path("health.textfile_dir").empty()) {
                    core::write_textfile(cfg.path("health.textfile_dir"), "mlkeeper_health.prom",
                                         prom);
                }
                switch (format) {
                    case health::Format::kJson:
                        std::cout << health::to_json(report).dump(2) << "\n";
                        break;
                    case health::Format::kPrometheus:
                        std::cout << prom;
                        break;
                    case health::Format::kNagios:
                        std::cout << health::to_nagios(report);
                        break;
                    case health::Format::kText: {
                        const bool colour = ::isatty(1) && std::getenv("NO_COLOR") == nullptr;
                        std::cout << health::to_text(
                            report, colour ? health::Colour::kYes : health::Colour::kNo,
                            o->verbose ? health::Verbosity::kVerbose : health::Verbosity::kNormal);
                        break;
                    }
                }
                std::cout.flush();
                if (alerts) {
                    for (const auto& r : report.checks) {
                        if (r.ran != health::Ran::kSkipped)
                            alert_on(*alerts, r);
                    }
                }
                const auto s = health::summarize(report.checks);
                ctx.summary() = {{"total", s.total},
                                 {"passed", s.passed},
                                 {"warnings", s.warnings},
                                 {"failed", s.failed},
                                 {"health_score", s.health_score}};
                for (const auto& r : report.checks) {
                    if (r.status != health::Status::kPass) {
                        ctx.summary()["problems"].push_back(r.message);
                        spdlog::warn("{}", r.message);
                    }
                }
                spdlog::info("health: {} checks, {} passed, {} warnings, {} failed", s.total,
                             s.passed, s.warnings, s.failed);
                return health::exit_code(report.checks, format);
            };
            return h;
        }};
}

}  // namespace mlk::cli
