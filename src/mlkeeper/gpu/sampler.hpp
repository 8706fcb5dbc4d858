// One reading of every NVIDIA GPU (GpuSample per device) through NVML, with every value the driver
// does not support kept as std::nullopt rather than a sentinel number. A Sampler keeps NVML
// initialised and the device handles open between samples, so `--watch` costs no
// re-initialisation per tick. Thread safety: a Sampler belongs to one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/gpu/nvml_api.hpp"

namespace mlk::gpu {

struct GpuProcess {
    unsigned int pid = 0;
    std::optional<std::string> name;                 // /proc/<pid>/comm; n/a if unreadable
    std::optional<std::uint64_t> used_memory_bytes;  // n/a under some drivers/containers
};

// ECC error counts; volatile since the last driver load, aggregate over the GPU's life.
struct EccCounts {
    std::optional<std::uint64_t> volatile_corrected, volatile_uncorrected;
    std::optional<std::uint64_t> aggregate_corrected, aggregate_uncorrected;
};

struct GpuSample {
    unsigned int index = 0;
    std::string uuid;  // empty if the GPU could not be read
    std::string name;
    // Lost (NVML_ERROR_GPU_IS_LOST: fallen off the bus) or unreadable (no handle); then
    // `error` says why and the measurements are all n/a.
    bool lost = false;
    std::string error;
    std::optional<unsigned int> temperature_c;
    std::optional<unsigned int> util_gpu_pct, util_mem_pct;
    std::optional<std::uint64_t> mem_used_bytes, mem_total_bytes;
    std::optional<double> power_draw_w, power_limit_w;
    std::optional<unsigned int> fan_pct;
    std::optional<unsigned int> sm_clock_mhz, mem_clock_mhz;
    std::optional<std::uint64_t> throttle_reasons;  // nvml::kThrottle* bits
    EccCounts ecc;
    std::optional<std::vector<GpuProcess>> processes;

    // used/total in percent, when both are known and total > 0.
    std::optional<double> mem_used_pct() const;
    // draw/limit in percent, when both are known and limit > 0.
    std::optional<double> power_pct() const;
};

struct Snapshot {
    std::chrono::system_clock::time_point time;
    std::string driver_version;  // empty when unknown
    std::vector<GpuSample> gpus;
};

// Looks up a process name; the default reads /proc/<pid>/comm.
using ProcessNamer = std::function<std::optional<std::string>(unsigned int pid)>;
std::optional<std::string> proc_comm(unsigned int pid);

// Names of the throttle reason bits that are set, in bit order ("sw_thermal", "hw_power_brake").
std::vector<std::string> throttle_reason_names(std::uint64_t mask);

class Sampler {
  public:
    // Loads and initialises NVML from `library` and enumerates the devices once; throws
    // nvml::NvmlError when loading fails and mlk::Error(kCritical) when the devices cannot even
    // be counted.
    explicit Sampler(const std::string& library, ProcessNamer namer = proc_comm);

    // Reads every device again through the handles found at construction.
    Snapshot sample();

    std::size_t device_count() const { return devices_.size(); }
    const nvml::Nvml& nvml() const { return *nvml_; }

  private:
    struct Device {
        unsigned int index = 0;
        nvml::Device handle = nullptr;  // nullptr: handle_error says why
        nvml::Return handle_error = nvml::kSuccess;
        std::string uuid, name;  // fixed for the device's life: read once
    };
    GpuSample read(Device& d);

    std::unique_ptr<nvml::Nvml> nvml_;
    ProcessNamer namer_;
    std::string driver_version_;
    std::vector<Device> devices_;
};

}  // namespace mlk::gpu
