#include "mlkeeper/gpu/sampler.hpp"

#include <fstream>
#include <utility>

#include <fmt/format.h>

#include "mlkeeper/core/error.hpp"

namespace mlk::gpu {

namespace {

// Some drivers answer NVML_SUCCESS with 0xFFFFFFFF for a value they do not have; that is n/a too.
constexpr unsigned int kUintSentinel = 0xFFFFFFFFu;

std::optional<unsigned int> checked(nvml::Return r, unsigned int v) {
    if (r != nvml::kSuccess || v == kUintSentinel) {
        return std::nullopt;
    }
    return v;
}

std::optional<std::uint64_t> checked64(nvml::Return r, unsigned long long v) {
    if (r != nvml::kSuccess || v == nvml::kValueNotAvailable) {
        return std::nullopt;
    }
    return v;
}

}  // namespace

std::optional<double> GpuSample::mem_used_pct() const {
    if (!mem_used_bytes || !mem_total_bytes || *mem_total_bytes == 0) {
        return std::nullopt;
    }
    return 100.0 * static_cast<double>(*mem_used_bytes) / static_cast<double>(*mem_total_bytes);
}

std::optional<double> GpuSample::power_pct() const {
    if (!power_draw_w || !power_limit_w || *power_limit_w <= 0) {
        return std::nullopt;
    }
    return 100.0 * *power_draw_w / *power_limit_w;
}

std::optional<std::string> proc_comm(unsigned int pid) {
    std::ifstream in(fmt::format("/proc/{}/comm", pid));
    std::string name;
    if (!in || !std::getline(in, name) || name.empty()) {
        return std::nullopt;
    }
    return name;
}

std::vector<std::string> throttle_reason_names(std::uint64_t mask) {
    static constexpr std::pair<std::uint64_t, const char*> kNames[] = {
        {nvml::kThrottleGpuIdle, "gpu_idle"},
        {nvml::kThrottleApplicationsClocksSetting, "applications_clocks"},
        {nvml::kThrottleSwPowerCap, "sw_power_cap"},
        {nvml::kThrottleHwSlowdown, "hw_slowdown"},
        {nvml::kThrottleSyncBoost, "sync_boost"},
        {nvml::kThrottleSwThermalSlowdown, "sw_thermal"},
        {nvml::kThrottleHwThermalSlowdown, "hw_thermal"},
        {nvml::kThrottleHwPowerBrakeSlowdown, "hw_power_brake"},
        {nvml::kThrottleDisplayClockSetting, "display_clocks"},
    };
    std::vector<std::string> out;
    std::uint64_t known = 0;
    for (const auto& [bit, name] : kNames) {
        known |= bit;
        if ((mask & bit) != 0) {
            out.emplace_back(name);
        }
    }
    if ((mask & ~known) != 0) {
        out.push_back(fmt::format("other_0x{:x}", mask & ~known));
    }
    return out;
}

Sampler::Sampler(const std::string& library, ProcessNamer namer)
    : nvml_(std::make_unique<nvml::Nvml>(library)), namer_(std::move(namer)) {
    unsigned int count = 0;
    nvml::Return r = nvml_->device_count(&count);
    if (r != nvml::kSuccess) {
        throw Error(ExitCode::kCritical,
                    fmt::format("NVML cannot count the GPUs ({}: {}); check `nvidia-smi` and the "
                                "kernel log (dmesg) for Xid errors",
                                nvml::return_name(r), nvml_->error_string(r)));
    }
    if (nvml_->driver_version(&driver_version_) != nvml::kSuccess) {
        driver_version_.clear();
    }
    devices_.reserve(count);
    for (unsigned int i = 0; i < count; ++i) {
        Device d;
        d.index = i;
        d.handle_error = nvml_->handle_by_index(i, &d.handle);
        if (d.handle_error != nvml::kSuccess) {
            d.handle = nullptr;
        } else {
            if (nvml_->uuid(d.handle, &d.uuid) != nvml::kSuccess) {
                d.uuid.clear();
            }
            if (nvml_->name(d.handle, &d.name) != nvml::kSuccess) {
                d.name.clear();
            }
        }
        devices_.push_back(std::move(d));
    }
}

Snapshot Sampler::sample() {
    Snapshot s;
    s.time = std::chrono::system_clock::now();
    s.driver_version = driver_version_;
    s.gpus.reserve(devices_.size());
    for (auto& d : devices_) {
        s.gpus.push_back(read(d));
    }
    return s;
}

GpuSample Sampler::read(Device& d) {
    GpuSample g;
    g.index = d.index;
    g.uuid = d.uuid;
    g.name = d.name;
    if (d.handle == nullptr) {
        g.lost = true;
        g.error =
            d.handle_error == nvml::kErrorGpuIsLost
                ? "GPU is lost (fallen off the bus)"
                : fmt::format("cannot open the GPU: {} ({})", nvml_->error_string(d.handle_error),
                              nvml::return_name(d.handle_error));
        return g;
    }
    const nvml::Nvml& n = *nvml_;
    const nvml::Device h = d.handle;
    // The first call tells whether the GPU still answers; a lost GPU fails every call.
    unsigned int temp = 0;
    nvml::Return r = n.temperature(h, &temp);
    if (r == nvml::kErrorGpuIsLost) {
        g.lost = true;
        g.error = "GPU is lost (fallen off the bus)";
        return g;
    }
    g.temperature_c = checked(r, temp);
    if (nvml::Utilization u{}; n.utilization(h, &u) == nvml::kSuccess) {
        g.util_gpu_pct = checked(nvml::kSuccess, u.gpu);
        g.util_mem_pct = checked(nvml::kSuccess, u.memory);
    }
    if (nvml::Memory m{}; n.memory(h, &m) == nvml::kSuccess) {
        g.mem_used_bytes = m.used;
        g.mem_total_bytes = m.total;
    }
    // Each call fills a fresh variable before it is checked (argument evaluation order is
    // unspecified, so never read and fill one in the same call expression).
    auto get = [](auto&& call) {
        unsigned int out = 0;
        nvml::Return rc = call(&out);
        return checked(rc, out);
    };
    if (auto mw = get([&](unsigned int* p) { return n.power_usage(h, p); })) {
        g.power_draw_w = *mw / 1000.0;
    }
    if (auto mw = get([&](unsigned int* p) { return n.enforced_power_limit(h, p); })) {
        g.power_limit_w = *mw / 1000.0;
    }
    g.fan_pct = get([&](unsigned int* p) { return n.fan_speed(h, p); });
    g.sm_clock_mhz = get([&](unsigned int* p) { return n.clock(h, nvml::kClockSm, p); });
    g.mem_clock_mhz = get([&](unsigned int* p) { return n.clock(h, nvml::kClockMem, p); });
    if (unsigned long long mask = 0; n.throttle_reasons(h, &mask) == nvml::kSuccess) {
        g.throttle_reasons = mask;
    }
    auto ecc = [&](int type, int counter) {
        unsigned long long count = 0;
        nvml::Return rc = n.total_ecc_errors(h, type, counter, &count);
        return checked64(rc, count);
    };
    g.ecc.volatile_corrected = ecc(nvml::kMemoryErrorCorrected, nvml::kVolatileEcc);
    g.ecc.volatile_uncorrected = ecc(nvml::kMemoryErrorUncorrected, nvml::kVolatileEcc);
    g.ecc.aggregate_corrected = ecc(nvml::kMemoryErrorCorrected, nvml::kAggregateEcc);
    g.ecc.aggregate_uncorrected = ecc(nvml::kMemoryErrorUncorrected, nvml::kAggregateEcc);
    std::vector<nvml::RawProcess> raw;
    if (n.compute_processes(h, &raw) == nvml::kSuccess) {
        g.processes.emplace();
        for (const auto& p : raw) {
            g.processes->push_back(
                GpuProcess{p.pid, namer_ ? namer_(p.pid) : std::nullopt,
                           p.used_gpu_memory == nvml::kValueNotAvailable
                               ? std::nullopt
                               : std::optional<std::uint64_t>(p.used_gpu_memory)});
        }
    }
    return g;
}

}  // namespace mlk::gpu
