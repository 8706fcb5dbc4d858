// Prometheus text output of format.hpp, kept apart from the human formats.
#include <fmt/format.h>

#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/gpu/format.hpp"

namespace mlk::gpu {

std::string to_prometheus(const Snapshot& s, const Judgement& j) {
    using core::MetricType;
    core::MetricsText m;
    auto gauge = [&](const char* name, const char* help) {
        m.family(name, MetricType::kGauge, help);
    };
    gauge("mlkeeper_gpu_devices", "NVIDIA GPUs NVML reports");
    gauge("mlkeeper_gpu_sample_timestamp_seconds", "When the GPUs were read (Unix time)");
    gauge("mlkeeper_gpu_info", "GPU identity: index, UUID, name and driver version (always 1)");
    gauge("mlkeeper_gpu_up", "1 when the GPU answers, 0 when it is lost or unreadable");
    gauge("mlkeeper_gpu_status", "Worst finding: 0 ok, 1 warning, 2 critical");
    gauge("mlkeeper_gpu_temperature_celsius", "GPU core temperature");
    gauge("mlkeeper_gpu_utilization_ratio", "Fraction of time a kernel ran (0-1)");
    gauge("mlkeeper_gpu_memory_utilization_ratio",
          "Fraction of time device memory was read or written (0-1)");
    gauge("mlkeeper_gpu_memory_used_bytes", "Device memory in use");
    gauge("mlkeeper_gpu_memory_total_bytes", "Device memory installed");
    gauge("mlkeeper_gpu_power_draw_watts", "Power draw of the board");
    gauge("mlkeeper_gpu_power_limit_watts", "Enforced power limit");
    gauge("mlkeeper_gpu_fan_speed_ratio", "Fan speed as a fraction of its maximum (0-1)");
    gauge("mlkeeper_gpu_sm_clock_hertz", "Current SM clock");
    gauge("mlkeeper_gpu_memory_clock_hertz", "Current memory clock");
    gauge("mlkeeper_gpu_clocks_throttled", "1 for each active clock throttle reason");
    m.family("mlkeeper_gpu_ecc_errors_total", MetricType::kCounter,
             "ECC memory errors (volatile: since driver load; aggregate: lifetime)");
    gauge("mlkeeper_gpu_processes", "Compute processes running on the GPU");

    m.sample("mlkeeper_gpu_devices", static_cast<double>(s.gpus.size()));
    m.sample("mlkeeper_gpu_sample_timestamp_seconds",
             std::chrono::duration<double>(s.time.time_since_epoch()).count());
    for (const auto& g : s.gpus) {
        const core::Labels id = {
            {"gpu", std::to_string(g.index)}, {"uuid", g.uuid}, {"name", g.name}};
        auto put = [&](const char* name, const auto& v, double scale) {
            if (v) {
                m.sample(name, id, static_cast<double>(*v) * scale);
            }
        };
        m.sample("mlkeeper_gpu_info",
                 {{"gpu", std::to_string(g.index)},
                  {"uuid", g.uuid},
                  {"name", g.name},
                  {"driver_version", s.driver_version}},
                 1);
        m.sample("mlkeeper_gpu_up", id, g.lost ? 0 : 1);
        m.sample("mlkeeper_gpu_status", id, static_cast<double>(j.gpu_level(g.index)));
        if (g.lost) {
            continue;
        }
        put("mlkeeper_gpu_temperature_celsius", g.temperature_c, 1);
        put("mlkeeper_gpu_utilization_ratio", g.util_gpu_pct, 0.01);
        put("mlkeeper_gpu_memory_utilization_ratio", g.util_mem_pct, 0.01);
        put("mlkeeper_gpu_memory_used_bytes", g.mem_used_bytes, 1);
        put("mlkeeper_gpu_memory_total_bytes", g.mem_total_bytes, 1);
        put("mlkeeper_gpu_power_draw_watts", g.power_draw_w, 1);
        put("mlkeeper_gpu_power_limit_watts", g.power_limit_w, 1);
        put("mlkeeper_gpu_fan_speed_ratio", g.fan_pct, 0.01);
        put("mlkeeper_gpu_sm_clock_hertz", g.sm_clock_mhz, 1e6);
        put("mlkeeper_gpu_memory_clock_hertz", g.mem_clock_mhz, 1e6);
        if (g.throttle_reasons) {
            for (const auto& reason : throttle_reason_names(*g.throttle_reasons)) {
                core::Labels l = id;
                l.emplace_back("reason", reason);
                m.sample("mlkeeper_gpu_clocks_throttled", l, 1);
            }
        }
        auto ecc = [&](const std::optional<std::uint64_t>& v, const char* type,
                       const char* counter) {
            if (v) {
                core::Labels l = id;
                l.emplace_back("type", type);
                l.emplace_back("counter", counter);
                m.sample("mlkeeper_gpu_ecc_errors_total", l, static_cast<double>(*v));
            }
        };
        ecc(g.ecc.volatile_corrected, "corrected", "volatile");
        ecc(g.ecc.volatile_uncorrected, "uncorrected", "volatile");
        ecc(g.ecc.aggregate_corrected, "corrected", "aggregate");
        ecc(g.ecc.aggregate_uncorrected, "uncorrected", "aggregate");
        if (g.processes) {
            m.sample("mlkeeper_gpu_processes", id, static_cast<double>(g.processes->size()));
        }
    }
    return m.str();
}

}  // namespace mlk::gpu
