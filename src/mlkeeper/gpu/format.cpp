#include "mlkeeper/gpu/format.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "mlkeeper/util/host.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::gpu {
namespace {

constexpr const char* kNa = "n/a";
constexpr std::uint64_t kMiB = 1024 * 1024;

struct Paint {
    Color color;
    std::string operator()(std::string_view code, std::string_view text) const {
        if (color == Color::kNo || code.empty()) {
            return std::string(text);
        }
        return fmt::format("\x1b[{}m{}\x1b[0m", code, text);
    }
};
constexpr std::string_view kYellow = "33", kGreen = "32", kCyan = "36", kBold = "1", kDim = "2",
                           kBoldRed = "1;31";

template <typename T>
std::string opt(const std::optional<T>& v, std::string_view fmt_str = "{}") {
    return v ? fmt::format(fmt::runtime(fmt_str), *v) : std::string(kNa);
}

template <typename T>
nlohmann::json jopt(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

std::string_view level_color(Level l) {
    return l == Level::kCritical ? kBoldRed : l == Level::kWarning ? kYellow : kGreen;
}

std::string memory_bar(std::optional<double> pct) {
    constexpr int kCells = 10;
    if (!pct) {
        return "[" + std::string(kCells, ' ') + "]";
    }
    int filled = std::clamp(static_cast<int>(*pct / 100.0 * kCells + 0.5), 0, kCells);
    return "[" + std::string(filled, '#') + std::string(kCells - filled, '.') + "]";
}

std::string procs_text(const GpuSample& g) {
    if (!g.processes) {
        return kNa;
    }
    std::vector<std::string> parts;
    for (const auto& p : *g.processes) {
        parts.push_back(fmt::format(
            "{}/{}({})", p.name.value_or("?"), p.pid,
            p.used_memory_bytes ? fmt::format("{}M", *p.used_memory_bytes / kMiB) : kNa));
    }
    return util::join(parts, " ");
}

std::string throttle_text(const std::optional<std::uint64_t>& mask) {
    if (!mask) {
        return kNa;
    }
    if (*mask == 0) {
        return "none";
    }
    return fmt::format("{} (0x{:x})", util::join(throttle_reason_names(*mask), ", "), *mask);
}

}  // namespace

std::string format_line(const GpuSample& g, const Thresholds& t, Color color,
                        std::size_t name_width) {
    Paint paint{color};
    std::string name = g.name.empty() ? std::string("?") : g.name;
    name.resize(std::max(name.size(), name_width), ' ');
    std::string line =
        fmt::format("{} {}", paint(kCyan, fmt::format("[{}]", g.index)), paint(kBold, name));
    if (g.lost) {
        return line + " | " + paint(kBoldRed, "LOST: " + g.error);
    }
    std::string_view temp_color = !g.temperature_c                   ? ""
                                  : *g.temperature_c > t.temp_crit_c ? kBoldRed
                                  : *g.temperature_c > t.temp_warn_c ? kYellow
                                                                     : "";
    std::string temp = g.temperature_c ? fmt::format("{:>3}°C", *g.temperature_c) : " n/a";
    std::string util = g.util_gpu_pct ? fmt::format("{:>3} %", *g.util_gpu_pct) : "n/a";
    line += fmt::format(" | {}, {}", paint(temp_color, temp), paint(kGreen, util));

    auto pct = g.mem_used_pct();
    std::string mem =
        g.mem_used_bytes && g.mem_total_bytes
            ? fmt::format("{:>6} / {:>6} MiB", *g.mem_used_bytes / kMiB, *g.mem_total_bytes / kMiB)
            : "n/a";
    std::string_view mem_color = pct && *pct > t.memory_pct ? kYellow : "";
    line += fmt::format(" | {} {}", paint(mem_color, memory_bar(pct)), paint(mem_color, mem));

    auto ppct = g.power_pct();
    std::string power = fmt::format("{:>3} / {:>3} W", opt(g.power_draw_w, "{:.0f}"),
                                    opt(g.power_limit_w, "{:.0f}"));
    line += " | " + paint(ppct && *ppct > t.power_pct ? kYellow : "", power);
    if (!g.processes || !g.processes->empty()) {
        line += " | " + paint(kDim, procs_text(g));
    }
    return line;
}

std::string format_text(const Snapshot& s, const Judgement& j, const Thresholds& t, Color color) {
    Paint paint{color};
    std::string out = fmt::format("{}  {}  driver {}\n", paint(kBold, util::host_name()),
                                  util::format_local(s.time),
                                  s.driver_version.empty() ? std::string(kNa) : s.driver_version);
    std::size_t width = 0;
    for (const auto& g : s.gpus) {
        width = std::max(width, g.name.size());
    }
    for (const auto& g : s.gpus) {
        out += format_line(g, t, color, width) + "\n";
    }
    for (const auto& f : j.findings) {
        if (f.level != Level::kOk) {
            out += paint(level_color(f.level),
                         fmt::format("! {}: {}", to_string(f.level), f.summary)) +
                   "\n";
        }
    }
    return out;
}

std::string format_verbose(const Snapshot& s, const Judgement& j, const Thresholds& t,
                           Color color) {
    Paint paint{color};
    std::string out = fmt::format(
        "{}  {}  driver {}\nthresholds: temperature warning > {}°C, critical > {}°C; memory > "
        "{}%; power > {}% of the limit\n",
        paint(kBold, util::host_name()), util::format_local(s.time),
        s.driver_version.empty() ? std::string(kNa) : s.driver_version, t.temp_warn_c,
        t.temp_crit_c, t.memory_pct, t.power_pct);
    auto row = [&](std::string_view k, const std::string& v) {
        out += fmt::format("  {:<16}{}\n", k, v);
    };
    for (const auto& g : s.gpus) {
        Level l = j.gpu_level(g.index);
        out += fmt::format("\nGPU {}: {}  [{}]\n", g.index, paint(kBold, g.name),
                           paint(level_color(l), std::string(to_string(l))));
        row("uuid", g.uuid.empty() ? kNa : g.uuid);
        if (g.lost) {
            row("state", paint(kBoldRed, "LOST: " + g.error));
        } else {
            row("temperature", opt(g.temperature_c, "{}°C"));
            row("utilization", fmt::format("gpu {}, memory {}", opt(g.util_gpu_pct, "{}%"),
                                           opt(g.util_mem_pct, "{}%")));
            std::string mem = kNa;
            if (g.mem_used_bytes && g.mem_total_bytes) {
                mem = fmt::format("{} / {} ({})", util::format_bytes(*g.mem_used_bytes),
                                  util::format_bytes(*g.mem_total_bytes),
                                  opt(g.mem_used_pct(), "{:.1f}%"));
            }
            row("memory", mem);
            row("power",
                fmt::format("{} / {} ({})", opt(g.power_draw_w, "{:.1f} W"),
                            opt(g.power_limit_w, "{:.1f} W"), opt(g.power_pct(), "{:.1f}%")));
            row("fan", opt(g.fan_pct, "{}%"));
            row("clocks", fmt::format("sm {}, memory {}", opt(g.sm_clock_mhz, "{} MHz"),
                                      opt(g.mem_clock_mhz, "{} MHz")));
            row("throttle", throttle_text(g.throttle_reasons));
            auto ecc = [](const auto& corrected, const auto& uncorrected) {
                return !corrected && !uncorrected ? std::string(kNa)
                                                  : fmt::format("{} corrected, {} uncorrected",
                                                                opt(corrected), opt(uncorrected));
            };
            row("ecc volatile", ecc(g.ecc.volatile_corrected, g.ecc.volatile_uncorrected));
            row("ecc aggregate", ecc(g.ecc.aggregate_corrected, g.ecc.aggregate_uncorrected));
            if (!g.processes) {
                row("processes", kNa);
            } else if (g.processes->empty()) {
                row("processes", "none");
            } else {
                for (const auto& p : *g.processes) {
                    row(&p == &g.processes->front() ? "processes" : "",
                        fmt::format("{:>7}  {:<16} {}", p.pid, p.name.value_or(kNa),
                                    p.used_memory_bytes ? util::format_bytes(*p.used_memory_bytes)
                                                        : std::string(kNa)));
                }
            }
        }
        for (const auto& f : j.findings) {
            if (f.gpu == g.index) {
                row(f.key, paint(level_color(f.level),
                                 fmt::format("{}: {}", to_string(f.level), f.summary)));
            }
        }
    }
    return out;
}

nlohmann::json to_json(const GpuSample& g, const Judgement& j) {
    nlohmann::json throttle = nullptr;
    if (g.throttle_reasons) {
        throttle = {{"mask", *g.throttle_reasons},
                    {"reasons", throttle_reason_names(*g.throttle_reasons)}};
    }
    nlohmann::json procs = nullptr;
    if (g.processes) {
        procs = nlohmann::json::array();
        for (const auto& p : *g.processes) {
            procs.push_back({{"pid", p.pid},
                             {"name", jopt(p.name)},
                             {"used_memory_bytes", jopt(p.used_memory_bytes)}});
        }
    }
    nlohmann::json findings = nlohmann::json::array();
    for (const auto& f : j.findings) {
        if (f.gpu == g.index && f.level != Level::kOk) {
            findings.push_back({{"key", f.key},
                                {"condition", f.condition},
                                {"severity", to_string(f.level)},
                                {"summary", f.summary},
                                {"value", f.value},
                                {"threshold", f.threshold},
                                {"action", f.action}});
        }
    }
    auto mib = [](const std::optional<std::uint64_t>& b) {
        return b ? nlohmann::json(*b / kMiB) : nlohmann::json(nullptr);
    };
    return {
        {"id", g.index},
        {"uuid", g.uuid.empty() ? nlohmann::json(nullptr) : nlohmann::json(g.uuid)},
        {"name", g.name},
        {"status", to_string(j.gpu_level(g.index))},
        {"lost", g.lost},
        {"error", g.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(g.error)},
        {"temp", jopt(g.temperature_c)},
        {"util_gpu", jopt(g.util_gpu_pct)},
        {"util_mem", jopt(g.util_mem_pct)},
        {"mem_used_bytes", jopt(g.mem_used_bytes)},
        {"mem_total_bytes", jopt(g.mem_total_bytes)},
        {"mem_used_mib", mib(g.mem_used_bytes)},
        {"mem_total_mib", mib(g.mem_total_bytes)},
        {"mem_used_pct", jopt(g.mem_used_pct())},
        {"power_draw_w", jopt(g.power_draw_w)},
        {"power_limit_w", jopt(g.power_limit_w)},
        {"power_pct", jopt(g.power_pct())},
        {"fan_pct", jopt(g.fan_pct)},
        {"clock_sm_mhz", jopt(g.sm_clock_mhz)},
        {"clock_mem_mhz", jopt(g.mem_clock_mhz)},
        {"throttle", throttle},
        {"ecc",
         {{"volatile_corrected", jopt(g.ecc.volatile_corrected)},
          {"volatile_uncorrected", jopt(g.ecc.volatile_uncorrected)},
          {"aggregate_corrected", jopt(g.ecc.aggregate_corrected)},
          {"aggregate_uncorrected", jopt(g.ecc.aggregate_uncorrected)}}},
        {"processes", procs},
        {"findings", findings},
    };
}

nlohmann::json to_json(const Snapshot& s, const Judgement& j, const Thresholds& t) {
    nlohmann::json gpus = nlohmann::json::array();
    for (const auto& g : s.gpus) {
        gpus.push_back(to_json(g, j));
    }
    nlohmann::json problems = nlohmann::json::array();
    for (const auto& g : gpus) {
        for (const auto& f : g["findings"]) {
            problems.push_back(f);
        }
    }
    return {
        {"timestamp", util::iso8601_utc(s.time)},
        {"host", util::host_name()},
        {"driver_version",
         s.driver_version.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.driver_version)},
        {"status", to_string(j.overall)},
        {"exit_code", j.exit_code()},
        {"thresholds",
         {{"temp_warn_c", t.temp_warn_c},
          {"temp_crit_c", t.temp_crit_c},
          {"memory_pct", t.memory_pct},
          {"power_pct", t.power_pct}}},
        {"gpu_count", s.gpus.size()},
        {"gpus", gpus},
        {"findings", problems},
    };
}

}  // namespace mlk::gpu
