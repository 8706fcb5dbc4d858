// The seeds' metrics CSV (METRICS_FILE, /var/log/gpu-metrics.csv): one row per GPU per sample,
// appended so that several writers (a timer run and a --watch, say) never interleave rows or
// write the header twice. Thread safety: append_csv may run concurrently in threads and
// processes; the file lock serialises them.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include "mlkeeper/gpu/sampler.hpp"

namespace mlk::gpu {

inline constexpr std::string_view kCsvHeader =
    "timestamp,gpu_id,name,temp,util_gpu,util_mem,mem_used,mem_total,power_draw,power_limit";

// The rows of one snapshot, each ending in '\n': local time as the seeds write it
// ("2025-01-31 14:30:00"), memory in MiB, power in W with two decimals, n/a fields empty.
std::string csv_rows(const Snapshot& s);

// Appends csv_rows(s) to `path` under an exclusive flock, with the header first when the file is
// empty (checked under the lock), in one O_APPEND write. Creates the file (0644) but not its
// directory. Waits at most `lock_timeout` for other writers. Throws std::system_error naming the
// path on failure (and when the lock cannot be had in time: ETIMEDOUT).
void append_csv(const std::filesystem::path& path, const Snapshot& s,
                std::chrono::milliseconds lock_timeout = std::chrono::seconds(5));

}  // namespace mlk::gpu
