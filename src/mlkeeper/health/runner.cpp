#include "mlkeeper/health/runner.hpp"

#include <algorithm>
#include <future>

#include <fmt/format.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/health/network.hpp"
#include "mlkeeper/health/probes.hpp"
#include "mlkeeper/health/services.hpp"
#include "mlkeeper/util/host.hpp"

namespace mlk::health {
namespace {

std::chrono::milliseconds ms(std::chrono::seconds s) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(s);
}

// warn <= crit is already enforced when the configuration loads.
Thresholds pair(const core::Config& cfg, const std::string& warn, const std::string& crit) {
    return {cfg.number("health." + warn), cfg.number("health." + crit)};
}

std::vector<std::string> unique(std::vector<std::string> v) {
    std::vector<std::string> out;
    for (auto& s : v) {
        if (std::find(out.begin(), out.end(), s) == out.end())
            out.push_back(std::move(s));
    }
    return out;
}

void append(std::vector<CheckResult>& out, std::vector<CheckResult> more) {
    std::move(more.begin(), more.end(), std::back_inserter(out));
}

}  // namespace

HealthOptions options_from_config(const core::Config& cfg) {
    HealthOptions o;
    std::vector<std::string> errors;
    o.disk.usage = pair(cfg, "disk_warn_threshold", "disk_crit_threshold");
    o.disk.inodes = o.disk.usage;
    o.disk.include_mounts = cfg.list("health.include_mounts");
    o.disk.include_fstypes = cfg.list("health.include_fstypes");
    o.disk.exclude_mounts = cfg.list("health.exclude_mounts");
    o.memory.memory = pair(cfg, "mem_warn_threshold", "mem_crit_threshold");
    o.memory.swap = pair(cfg, "swap_warn_threshold", "swap_crit_threshold");
    o.load_pct = pair(cfg, "load_warn_threshold", "load_crit_threshold");
    o.services = unique(cfg.list("health.services_to_check"));
    o.service_timeout = ms(cfg.duration("health.service_timeout"));
    o.gpu.temp_c = {static_cast<double>(cfg.integer("health.gpu_temp_warn")),
                    static_cast<double>(cfg.integer("health.gpu_temp_crit"))};
    o.gpu.mem_pct = pair(cfg, "gpu_mem_warn", "gpu_mem_crit");
    o.network = cfg.boolean("health.network") ? Network::kCheck : Network::kSkip;
    o.dns_names = unique(cfg.list("health.dns_names"));
    o.tcp_targets = unique(cfg.list("health.tcp_targets"));
    for (const auto& t : o.tcp_targets) {
        if (!parse_host_port(t)) {
            errors.push_back("health.tcp_targets: \"" + t + "\" is not host:port");
        }
    }
    o.network_timeout = ms(cfg.duration("health.network_timeout"));
    auto probes = parse_probe_specs(cfg.list("health.probes"));
    o.probes = std::move(probes.specs);
    errors.insert(errors.end(), probes.errors.begin(), probes.errors.end());
    o.check_errors = cfg.boolean("health.check_errors");
    o.errors.window = cfg.duration("health.errors_window");
    o.errors.count = {static_cast<double>(cfg.integer("health.errors_warn_threshold")),
                      static_cast<double>(cfg.integer("health.errors_crit_threshold"))};
    o.errors.syslog_file = cfg.path("health.syslog_file");
    if (!errors.empty()) {
        std::string msg;
        for (const auto& e : errors)
            msg += (msg.empty() ? "" : "\n") + e;
        throw ConfigError(msg);
    }
    return o;
}

HealthRun run_health(const HealthOptions& opts, const HealthEnv& env) {
    const auto start = std::chrono::steady_clock::now();
    HealthRun run;
    run.report.hostname = util::host_name();
    run.report.time = std::chrono::system_clock::now();

    // Start the checks that may wait first, then do the local ones meanwhile.
    auto services = std::async(std::launch::async, [&] {
        return check_services(env, opts.services, opts.service_timeout);
    });
    std::future<std::vector<CheckResult>> network, probes;
    if (opts.network == Network::kCheck) {
        network = std::async(std::launch::async, [&] {
            std::vector<CheckResult> out{check_default_route(env)};
            append(out, check_dns(opts.dns_names, opts.network_timeout));
            append(out, check_tcp_targets(opts.tcp_targets, opts.network_timeout));
            return out;
        });
        probes = std::async(std::launch::async, [&] { return run_probes(opts.probes); });
    }
    std::future<CheckResult> errors;
    if (opts.check_errors) {
        errors =
            std::async(std::launch::async, [&] { return check_recent_errors(env, opts.errors); });
    }

    auto& out = run.report.checks;
    append(out, check_disks(env, opts.disk));
    append(out, check_memory(env, opts.memory));
    out.push_back(check_cpu_load(env, opts.load_pct));
    auto gpus = check_gpus(opts.gpu_source, opts.gpu);
    append(out, services.get());
    append(out, std::move(gpus));
    if (network.valid())
        append(out, network.get());
    if (probes.valid())
        append(out, probes.get());
    if (errors.valid())
        out.push_back(errors.get());
    out.push_back(check_oom(env, opts.previous_oom_kills, &run.oom_kills));
    out.push_back(check_uptime(env));
    out.push_back(check_reboot_required(env));
    run.report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    return run;
}

}  // namespace mlk::health
