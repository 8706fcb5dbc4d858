// Output of `mlkeeper gpu`: one gpustat-like line per GPU, a verbose listing of every field, the
// JSON document scripts read (docs/formats/gpu-json.md) and Prometheus text. Values the driver
// does not report print as "n/a" (JSON null; Prometheus omits the sample). Thread safety: pure
// functions on their arguments.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "mlkeeper/gpu/judge.hpp"
#include "mlkeeper/gpu/sampler.hpp"

namespace mlk::gpu {

enum class Color { kNo, kYes };  // ANSI colours (only for a TTY)

// "[0] NVIDIA A100 | 65°C  30 % | [###.......] 20480 / 81920 MiB | 250 / 400 W |
// python/1234(20480M)" `name_width` pads the name so the columns of several GPUs line up.
std::string format_line(const GpuSample& g, const Thresholds& t, Color color,
                        std::size_t name_width = 0);

// A header (host, time, driver), one line per GPU, then one "!" line per problem.
std::string format_text(const Snapshot& s, const Judgement& j, const Thresholds& t, Color color);

// Every field of every GPU, the thresholds, and every finding (normal ones too).
std::string format_verbose(const Snapshot& s, const Judgement& j, const Thresholds& t, Color color);

// The --json document (schema: docs/formats/gpu-json.md).
nlohmann::json to_json(const Snapshot& s, const Judgement& j, const Thresholds& t);
nlohmann::json to_json(const GpuSample& g, const Judgement& j);

// Prometheus text exposition (mlkeeper_gpu_* families, base units).
std::string to_prometheus(const Snapshot& s, const Judgement& j);

// The file name `--textfile DIR` writes.
inline constexpr const char* kTextfileName = "mlkeeper_gpu.prom";

}  // namespace mlk::gpu
