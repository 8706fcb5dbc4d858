#include "mlkeeper/health/gpu_check.hpp"

#include <algorithm>
#include <exception>

#include <fmt/format.h>

namespace mlk::health {

std::vector<CheckResult> check_gpus(const GpuSource& source, const GpuOptions& opts) {
    std::optional<std::vector<GpuReading>> readings;
    try {
        readings = source ? source() : std::nullopt;
    } catch (const std::exception& e) {
        return {error_result("GPU", "gpu", "gpu", std::string("cannot read GPUs: ") + e.what())};
    }
    if (!readings || readings->empty()) {
        CheckResult r;
        r.check = "GPU";
        r.key = "gpu";
        r.category = "gpu";
        r.message = readings ? "GPU: driver loaded but no GPU found" : "GPU: no GPU";
        return {r};
    }
    std::vector<CheckResult> out;
    for (const auto& g : *readings) {
        CheckResult r;
        r.check = fmt::format("GPU {}", g.index);
        r.key = fmt::format("gpu{}", g.index);
        r.category = "gpu";
        const std::string idx = std::to_string(g.index);
        std::vector<std::string> parts;
        std::vector<std::string> problems;
        auto worsen = [&](Status s) { r.status = std::max(r.status, s); };
        if (g.lost) {
            worsen(Status::kFail);
            problems.push_back("lost (fell off the bus; reset or reboot)");
        }
        if (g.temp_c) {
            Status s = grade(*g.temp_c, opts.temp_c);
            worsen(s);
            r.value = *g.temp_c;
            r.unit = "celsius";
            r.warn = opts.temp_c.warn;
            r.crit = opts.temp_c.crit;
            r.threshold = s == Status::kFail ? opts.temp_c.crit : opts.temp_c.warn;
            parts.push_back(fmt::format("{:.0f}°C", *g.temp_c));
            if (s != Status::kPass) {
                problems.push_back(
                    fmt::format("temperature {:.0f}°C above {:.0f}°C", *g.temp_c, *r.threshold));
            }
            r.metrics.push_back(
                {"gpu_temperature_celsius", {{"gpu", idx}}, *g.temp_c, "GPU core temperature"});
        }
        if (g.mem_used_pct) {
            Status s = grade(*g.mem_used_pct, opts.mem_pct);
            worsen(s);
            parts.push_back(fmt::format("memory {:.1f}%", *g.mem_used_pct));
            if (s != Status::kPass) {
                problems.push_back(
                    fmt::format("memory {:.1f}% above {:.0f}%", *g.mem_used_pct,
                                s == Status::kFail ? opts.mem_pct.crit : opts.mem_pct.warn));
            }
            r.metrics.push_back({"gpu_memory_used_ratio",
                                 {{"gpu", idx}},
                                 *g.mem_used_pct / 100,
                                 "Used share of GPU memory"});
        }
        if (g.ecc_uncorrected) {
            if (*g.ecc_uncorrected > 0) {
                worsen(Status::kFail);
                problems.push_back(fmt::format("{} uncorrected ECC errors", *g.ecc_uncorrected));
            }
            r.metrics.push_back({"gpu_ecc_uncorrected_errors",
                                 {{"gpu", idx}},
                                 static_cast<double>(*g.ecc_uncorrected),
                                 "Uncorrected ECC errors (volatile count)"});
        }
        r.metrics.push_back(
            {"gpu_lost", {{"gpu", idx}}, g.lost ? 1.0 : 0.0, "1 when the GPU fell off the bus"});
        const std::string label = g.name.empty() ? r.check : r.check + " (" + g.name + ")";
        std::string summary;
        for (const auto& p : (problems.empty() ? parts : problems)) {
            summary += (summary.empty() ? "" : ", ") + p;
        }
        r.message = label + ": " + (summary.empty() ? "ok" : summary);
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace mlk::health
