#include "mlkeeper/gpu/judge.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::gpu {

std::string_view to_string(Level l) {
    switch (l) {
        case Level::kOk:
            return "ok";
        case Level::kWarning:
            return "warning";
        case Level::kCritical:
            return "critical";
    }
    return "ok";
}

Level Judgement::gpu_level(unsigned int gpu) const {
    Level l = Level::kOk;
    for (const auto& f : findings) {
        if (f.gpu == gpu) {
            l = std::max(l, f.level);
        }
    }
    return l;
}

int Judgement::exit_code() const {
    return overall == Level::kCritical ? 2 : overall == Level::kWarning ? 1 : 0;
}

namespace {

// "80", "92.5": thresholds as the user wrote them.
std::string num(double v) {
    return fmt::format("{:g}", v);
}

std::string label(const GpuSample& g) {
    return g.name.empty() ? fmt::format("GPU {}", g.index)
                          : fmt::format("GPU {} ({})", g.index, g.name);
}

Finding make(const GpuSample& g, std::string_view condition, Level level) {
    Finding f;
    f.key = fmt::format("gpu{}_{}", g.index, condition);
    f.condition = std::string(condition);
    f.gpu = g.index;
    f.level = level;
    return f;
}

void judge_gpu(const GpuSample& g, const Thresholds& t, std::vector<Finding>& out) {
    const std::string who = label(g);
    {
        Finding f = make(g, "lost", g.lost ? Level::kCritical : Level::kOk);
        f.summary = g.lost ? fmt::format("{} is lost: {}", who, g.error)
                           : fmt::format("{} is present and answers", who);
        f.value = g.lost ? g.error : "present";
        if (g.lost) {
            f.action =
                "Check `nvidia-smi` and dmesg for Xid 79 (fallen off the bus); stop its jobs "
                "and reset the GPU (nvidia-smi -r) or reboot the host.";
        }
        out.push_back(std::move(f));
    }
    if (g.lost) {
        return;
    }
    if (g.temperature_c) {
        const double c = *g.temperature_c;
        const Level l = c > t.temp_crit_c   ? Level::kCritical
                        : c > t.temp_warn_c ? Level::kWarning
                                            : Level::kOk;
        Finding f = make(g, "temp", l);
        const double limit = l == Level::kCritical ? t.temp_crit_c : t.temp_warn_c;
        f.value = fmt::format("{}°C", *g.temperature_c);
        f.threshold = fmt::format("{}°C", num(limit));
        f.summary = l == Level::kOk
                        ? fmt::format("{} temperature {} is normal", who, f.value)
                        : fmt::format("{} temperature {} exceeds {}", who, f.value, f.threshold);
        if (l != Level::kOk) {
            f.action =
                "Check the fans, airflow and room temperature; reduce the load if it stays "
                "this hot.";
        }
        out.push_back(std::move(f));
    }
    if (auto pct = g.mem_used_pct()) {
        const Level l = *pct > t.memory_pct ? Level::kWarning : Level::kOk;
        Finding f = make(g, "memory", l);
        f.value = fmt::format("{:.1f}%", *pct);
        f.threshold = fmt::format("{}%", num(t.memory_pct));
        f.summary = l == Level::kOk
                        ? fmt::format("{} memory use {} is normal", who, f.value)
                        : fmt::format("{} memory use {} exceeds {}", who, f.value, f.threshold);
        if (l != Level::kOk) {
            f.action =
                "Jobs risk running out of GPU memory: smaller batches, or stop idle "
                "processes holding memory (see the process list).";
        }
        out.push_back(std::move(f));
    }
    if (auto pct = g.power_pct()) {
        const Level l = *pct > t.power_pct ? Level::kWarning : Level::kOk;
        Finding f = make(g, "power", l);
        f.value =
            fmt::format("{:.1f} W ({:.1f}% of {:.0f} W)", *g.power_draw_w, *pct, *g.power_limit_w);
        f.threshold = fmt::format("{}% of the limit", num(t.power_pct));
        f.summary = l == Level::kOk
                        ? fmt::format("{} power draw {} is normal", who, f.value)
                        : fmt::format("{} power draw {} exceeds {}", who, f.value, f.threshold);
        if (l != Level::kOk) {
            f.action =
                "The GPU runs at its power limit and will throttle; check the power "
                "supply and cooling.";
        }
        out.push_back(std::move(f));
    }
    // Volatile counts say "since the driver loaded", i.e. a problem now; the aggregate count is
    // only a fallback for GPUs without volatile counters, because it never goes back to zero.
    if (auto uncorr =
            g.ecc.volatile_uncorrected ? g.ecc.volatile_uncorrected : g.ecc.aggregate_uncorrected) {
        const Level l = *uncorr > 0 ? Level::kCritical : Level::kOk;
        Finding f = make(g, "ecc", l);
        f.value = fmt::format("{} uncorrected", *uncorr);
        if (g.ecc.volatile_corrected) {
            f.value += fmt::format(", {} corrected", *g.ecc.volatile_corrected);
        }
        f.threshold = "0 uncorrected";
        f.summary = l == Level::kOk
                        ? fmt::format("{} has no uncorrected ECC errors", who)
                        : fmt::format("{} has {} uncorrected ECC memory errors", who, *uncorr);
        if (l != Level::kOk) {
            f.action =
                "Uncorrectable memory errors corrupt results: drain the GPU, reset it "
                "and plan its replacement if they return.";
        }
        out.push_back(std::move(f));
    }
    if (g.throttle_reasons) {
        const std::uint64_t bad = *g.throttle_reasons & kAlarmingThrottleMask;
        const Level l = bad != 0 ? Level::kWarning : Level::kOk;
        Finding f = make(g, "throttle", l);
        auto names = throttle_reason_names(bad);
        f.value = bad != 0 ? util::join(names, ", ") : "none";
        f.summary = l == Level::kOk
                        ? fmt::format("{} clocks are not thermally or power-brake throttled", who)
                        : fmt::format("{} clocks are throttled: {}", who, f.value);
        if (l != Level::kOk) {
            f.action =
                "The GPU slows itself down to protect itself: check cooling and the "
                "power supply.";
        }
        out.push_back(std::move(f));
    }
}

}  // namespace

Judgement judge(const Snapshot& snapshot, const Thresholds& t) {
    Judgement j;
    for (const auto& g : snapshot.gpus) {
        judge_gpu(g, t, j.findings);
    }
    for (const auto& f : j.findings) {
        j.overall = std::max(j.overall, f.level);
    }
    return j;
}

Thresholds thresholds_from(const core::Config& cfg) {
    Thresholds t;
    t.temp_warn_c = static_cast<double>(cfg.integer("gpu.temp_threshold"));
    t.temp_crit_c = static_cast<double>(cfg.integer("gpu.temp_crit"));
    t.memory_pct = cfg.number("gpu.memory_threshold");
    t.power_pct = cfg.number("gpu.power_threshold");
    if (t.temp_crit_c < t.temp_warn_c) {
        throw ConfigError(fmt::format(
            "gpu.temp_crit: {}°C is below gpu.temp_threshold {}°C; set the critical "
            "temperature (MLKEEPER_GPU_TEMP_CRIT) at or above the warning one (TEMP_THRESHOLD)",
            t.temp_crit_c, t.temp_warn_c));
    }
    return t;
}

}  // namespace mlk::gpu
