// `mlkeeper gpu`: the seeds' monitor_gpus.sh through NVML: thresholds, alerts, metrics CSV,
// JSON/Prometheus output and a live --watch view.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include <spdlog/spdlog.h>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/outcome_alerts.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/gpu/csv_log.hpp"
#include "mlkeeper/gpu/format.hpp"
#include "mlkeeper/gpu/judge.hpp"
#include "mlkeeper/gpu/sampler.hpp"
#include "mlkeeper/gpu/watch.hpp"

namespace mlk::cli {
namespace {

struct Opts {
    bool verbose = false, json = false, require_gpu = false;
    std::string format = "text";
    std::string textfile;
    double watch = 0;
    std::size_t count = 0;
    CLI::Option* watch_opt = nullptr;
    CLI::App* app = nullptr;
};

alert::Severity severity_of(gpu::Level l) {
    return l == gpu::Level::kCritical ? alert::Severity::kCritical : alert::Severity::kWarning;
}

void send_alerts(OutcomeAlerts& alerts, const gpu::Snapshot& s, const gpu::Judgement& j) {
    for (const auto& f : j.findings) {
        if (f.level == gpu::Level::kOk) {
            alerts.resolve(f.key, "gpu", f.summary);
            continue;
        }
        alert::Alert a;
        a.key = f.key;
        a.check = "gpu";
        a.severity = severity_of(f.level);
        a.summary = f.summary;
        a.value = f.value;
        a.threshold = f.threshold;
        a.action = f.action;
        a.fields["gpu_index"] = std::to_string(f.gpu);
        for (const auto& g : s.gpus) {
            if (g.index == f.gpu) {
                a.fields["gpu_name"] = g.name;
                a.fields["gpu_uuid"] = g.uuid;
            }
        }
        alerts.fire(std::move(a));
    }
}

bool use_color(const Opts& o) {
    const CLI::App* root = o.app != nullptr ? o.app->get_parent() : nullptr;
    const CLI::Option* nc = root != nullptr ? root->get_option_no_throw("--no-color") : nullptr;
    return ::isatty(STDOUT_FILENO) == 1 && std::getenv("NO_COLOR") == nullptr &&
           (nc == nullptr || nc->count() == 0);
}

// No driver or no GPU: the seeds' unit counts that as success unless --require-gpu.
int no_gpu(const Opts& o, Context& ctx, const std::string& why) {
    const int code = o.require_gpu ? 2 : 0;
    ctx.summary() = {{"gpus", 0}, {"message", why}, {"exit_code", code}};
    if (o.format == "json") {
        std::cout << nlohmann::json{{"gpu_count", 0},
                                    {"gpus", nlohmann::json::array()},
                                    {"status", o.require_gpu ? "critical" : "ok"},
                                    {"exit_code", code},
                                    {"message", why}}
                         .dump(2)
                  << "\n";
    } else if (o.format == "prometheus") {
        std::cout << gpu::to_prometheus(gpu::Snapshot{std::chrono::system_clock::now(), {}, {}},
                                        gpu::Judgement{});
    } else {
        std::cout << "No NVIDIA GPU to monitor: " << why << "\n";
    }
    if (o.require_gpu) {
        spdlog::error("no NVIDIA GPU (--require-gpu): {}", why);
    } else {
        spdlog::info("no NVIDIA GPU: {}", why);
    }
    return code;
}

int run_gpu(const Opts& o, Context& ctx) {
    const auto& cfg = ctx.config();
    const gpu::Thresholds t = gpu::thresholds_from(cfg);
    const bool alerting = cfg.boolean("gpu.alert");
    const bool write_csv = cfg.boolean("gpu.write_csv");
    const auto metrics_file = cfg.path("gpu.metrics_file");
    const bool watching = o.watch_opt->count() > 0 || o.count > 0;
    const gpu::Color color = use_color(o) ? gpu::Color::kYes : gpu::Color::kNo;
    std::optional<OutcomeAlerts> alerts;
    if (alerting) {
        alerts.emplace(ctx);  // a bad [alerts] configuration stops us here (exit 78)
    }

    std::unique_ptr<gpu::Sampler> sampler;
    try {
        sampler = std::make_unique<gpu::Sampler>(cfg.str("gpu.nvml_library"));
        if (alerts) {
            alerts->resolve("gpu_nvml", "gpu", "NVML works again");
        }
    } catch (const gpu::nvml::NvmlError& e) {
        if (e.means_no_driver()) {
            return no_gpu(o, ctx, e.what());
        }
        if (alerts) {
            alert::Alert a;
            a.key = "gpu_nvml";
            a.check = "gpu";
            a.severity = alert::Severity::kCritical;
            a.summary = "Cannot read the NVIDIA GPUs";
            a.value = e.what();
            a.action = "Run nvidia-smi; reinstall the driver or reboot after a driver upgrade.";
            alerts->fire(std::move(a));
        }
        throw Error(e.failure() == gpu::nvml::LoadFailure::kSymbolMissing ? ExitCode::kFailure
                                                                          : ExitCode::kCritical,
                    e.what());
    }
    if (sampler->device_count() == 0) {
        const std::string driver = sampler->sample().driver_version;
        return no_gpu(o, ctx,
                      "NVML reports no GPU (driver " + (driver.empty() ? "n/a" : driver) + ")");
    }

    bool csv_warned = false;
    auto tick = [&](std::size_t n) {
        gpu::Snapshot s = sampler->sample();
        gpu::Judgement j = gpu::judge(s, t);
        if (alerts) {
            send_alerts(*alerts, s, j);
        }
        if (write_csv) {
            try {
                gpu::append_csv(metrics_file, s);
            } catch (const std::exception& e) {
                if (!csv_warned) {  // once per run: a watch must not repeat it every tick
                    spdlog::warn("metrics not logged: {} (set METRICS_FILE or use --no-csv)",
                                 e.what());
                    csv_warned = true;
                }
            }
        }
        if (!o.textfile.empty()) {
            try {
                core::write_textfile(o.textfile, gpu::kTextfileName, gpu::to_prometheus(s, j));
            } catch (const std::exception& e) {
                spdlog::error("cannot write {}/{}: {}", o.textfile, gpu::kTextfileName, e.what());
            }
        }
        std::string out;
        if (o.format == "json") {
            nlohmann::json doc = gpu::to_json(s, j, t);
            out = (watching ? doc.dump() : doc.dump(2)) + "\n";  // --watch: one object a line
        } else if (o.format == "prometheus") {
            out = gpu::to_prometheus(s, j);
        } else {
            out =
                o.verbose ? gpu::format_verbose(s, j, t, color) : gpu::format_text(s, j, t, color);
            if (watching) {
                out = color == gpu::Color::kYes ? "\x1b[H\x1b[2J" + out : out + "\n";
            }
        }
        std::cout << out << std::flush;
        nlohmann::json problems = nlohmann::json::array();
        for (const auto& f : j.findings) {
            if (f.level != gpu::Level::kOk) {
                problems.push_back({{"key", f.key}, {"severity", gpu::to_string(f.level)}});
                // info: the log file gets it; stdout already shows it (no double lines).
                spdlog::info("{}: {}", gpu::to_string(f.level), f.summary);
            }
        }
        ctx.summary() = {{"gpus", s.gpus.size()},
                         {"status", gpu::to_string(j.overall)},
                         {"exit_code", j.exit_code()},
                         {"findings", problems},
                         {"samples", n}};
        return j.exit_code();
    };

    if (!watching) {
        return tick(1);
    }
    // NVML stays initialised and the handles open for the whole watch: only sampling repeats.
    gpu::StopSignals stop;
    const auto interval = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::duration<double>(o.watch > 0 ? o.watch : 2.0));
    int code = 0;
    for (std::size_t n = 1;; ++n) {
        const auto started = std::chrono::steady_clock::now();
        code = tick(n);
        if ((o.count > 0 && n >= o.count) || stop.stop_requested()) {
            break;
        }
        const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - started);
        if (stop.wait(std::max(interval - spent, std::chrono::milliseconds(0)))) {
            spdlog::info("gpu watch stopped by signal {}", stop.signal());
            break;
        }
    }
    return code;
}

}  // namespace

Command gpu_command() {
    return Command{
        "gpu", "Check NVIDIA GPUs: temperature, memory, power, ECC, throttling, processes",
        "/var/log/gpu-monitor.log", Record::kYes, [](CLI::App& app, FlagBindings& flags) {
            auto o = std::make_shared<Opts>();
            o->app = &app;
            flags
                .bind(app, "--temp-threshold", "gpu.temp_threshold",
                      "Temperature warning, °C (TEMP_THRESHOLD, default 80)")
                ->type_name("C");
            flags
                .bind(app, "--temp-crit", "gpu.temp_crit",
                      "Temperature critical, °C (MLKEEPER_GPU_TEMP_CRIT, default 85)")
                ->type_name("C");
            flags
                .bind(app, "--memory-threshold", "gpu.memory_threshold",
                      "Memory use warning, % (MEMORY_THRESHOLD, default 90)")
                ->type_name("PCT");
            flags
                .bind(app, "--power-threshold", "gpu.power_threshold",
                      "Power draw warning, % of the limit (POWER_THRESHOLD, default 95)")
                ->type_name("PCT");
            flags
                .bind(app, "--metrics-file", "gpu.metrics_file",
                      "CSV the samples are appended to (METRICS_FILE)")
                ->type_name("FILE");
            flags
                .bind(app, "--nvml-library", "gpu.nvml_library",
                      "NVML library to load (MLKEEPER_NVML_LIBRARY)")
                ->type_name("PATH");
            auto* csv = flags.bind_switch(app, "--csv", "gpu.write_csv", "true",
                                          "Append samples to METRICS_FILE (the default)");
            flags
                .bind_switch(app, "--no-csv", "gpu.write_csv", "false",
                             "Do not write the metrics CSV (GPU_WRITE_CSV=false)")
                ->excludes(csv);
            auto* al = flags.bind_switch(app, "--alert", "gpu.alert", "true",
                                         "Send alerts through [alerts] channels (GPU_ALERT)");
            flags.bind_switch(app, "--no-alert", "gpu.alert", "false", "Do not send alerts")
                ->excludes(al);
            app.add_flag("--verbose", o->verbose, "Every field of every GPU, and the thresholds");
            auto* json =
                app.add_flag("--json", o->json, "JSON for scripts (same as --format json)");
            app.add_option("--format", o->format, "text (default), json or prometheus")
                ->check(CLI::IsMember({"text", "json", "prometheus"}))
                ->excludes(json);
            app.add_option("--textfile", o->textfile,
                           "Also write DIR/mlkeeper_gpu.prom (node_exporter textfile collector)")
                ->type_name("DIR");
            o->watch_opt = app.add_option("--watch", o->watch,
                                          "Refresh every SECONDS (default 2) until Ctrl-C")
                               ->expected(0, 1)
                               ->default_str("2")
                               ->type_name("SECONDS")
                               ->check(CLI::Range(0.1, 86400.0));
            app.add_option("--count", o->count, "Stop after N samples (implies --watch)")
                ->type_name("N")
                ->check(CLI::Range(1, 100000000));
            app.add_flag("--require-gpu", o->require_gpu,
                         "Exit 2 when there is no NVIDIA driver or GPU (default: exit 0)");
            app.footer(R"(
Reads every NVIDIA GPU through NVML (libnvidia-ml.so.1, loaded at run time):
temperature, utilization, memory, power, fan, clocks, throttling, ECC errors and
compute processes. Values a GPU does not report show as n/a (JSON null).

Warning: temperature > TEMP_THRESHOLD, memory > MEMORY_THRESHOLD %, power >
POWER_THRESHOLD % of the limit, thermal or power-brake throttling.
Critical: temperature > MLKEEPER_GPU_TEMP_CRIT, uncorrected ECC errors, a lost GPU.
Samples go to METRICS_FILE as CSV (timestamp,gpu_id,name,temp,...).

Exit codes: 0 all healthy (or no GPU), 1 warning, 2 critical (or no GPU with
--require-gpu).

Examples:
  mlkeeper gpu
  TEMP_THRESHOLD=75 MEMORY_THRESHOLD=85 mlkeeper gpu --alert
  mlkeeper gpu --verbose
  mlkeeper gpu --json | jq -r '.gpus[] | "\(.id): \(.temp)°C"'
  mlkeeper gpu --watch 1
  mlkeeper gpu --format prometheus --no-csv
  mlkeeper gpu --textfile /var/lib/node_exporter/textfile_collector)");
            Handler h;
            h.run = [o](Context& ctx) {
                Opts run_opts = *o;
                if (run_opts.json) {
                    run_opts.format = "json";
                }
                return run_gpu(run_opts, ctx);
            };
            return h;
        }};
}

}  // namespace mlk::cli
