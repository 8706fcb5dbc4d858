// GPU health from readings supplied by the GPU module (injected as a
// function so health does not depend on how GPUs are sampled): temperature,
// memory use, uncorrected ECC errors and GPUs that fell off the bus.
// Thread safety: check_gpus calls the source once; safe if the source is.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/health/check.hpp"

namespace mlk::health {

struct GpuReading {
    int index = 0;
    std::string name;
    std::optional<double> temp_c, mem_used_pct;
    std::optional<unsigned long long> ecc_uncorrected;
    bool lost = false;  // NVML_ERROR_GPU_IS_LOST: needs a reset or reboot
};

// nullopt: no GPU or no driver on this machine (the check passes with "no GPU").
using GpuSource = std::function<std::optional<std::vector<GpuReading>>()>;

struct GpuOptions {
    Thresholds temp_c{75, 85};
    Thresholds mem_pct{95, 99};
};

// One "GPU <i>" result per GPU (worst of its temperature, memory, ECC and
// lost state), or a single "GPU" pass when there is none. A throwing source
// gives a kError result.
std::vector<CheckResult> check_gpus(const GpuSource& source, const GpuOptions& opts);

}  // namespace mlk::health
