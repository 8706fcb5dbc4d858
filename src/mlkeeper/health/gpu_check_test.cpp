#include "mlkeeper/health/gpu_check.hpp"

#include <stdexcept>

#include <gtest/gtest.h>

namespace mlk::health {
namespace {

TEST(GpuCheck, NoGpuPasses) {
    auto r = check_gpus([] { return std::nullopt; }, {});
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status, Status::kPass);
    EXPECT_EQ(r[0].message, "GPU: no GPU");
    EXPECT_EQ(check_gpus(GpuSource{}, {})[0].message, "GPU: no GPU");
    auto empty = check_gpus([] { return std::vector<GpuReading>{}; }, {});
    EXPECT_EQ(empty[0].status, Status::kPass);
}

TEST(GpuCheck, TemperatureMemoryEccLost) {
    auto source = [] {
        std::vector<GpuReading> g(5);
        for (int i = 0; i < 5; ++i) {
            g[i].index = i;
            g[i].name = "NVIDIA H100";
            g[i].temp_c = 60;
            g[i].mem_used_pct = 50;
            g[i].ecc_uncorrected = 0;
        }
        g[1].temp_c = 80;
        g[2].temp_c = 90;
        g[3].ecc_uncorrected = 2;
        g[4].lost = true;
        g[4].temp_c.reset();
        return std::optional(g);
    };
    auto r = check_gpus(source, {});
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0].status, Status::kPass);
    EXPECT_EQ(r[0].message, "GPU 0 (NVIDIA H100): 60°C, memory 50.0%");
    EXPECT_EQ(r[1].status, Status::kWarn);
    EXPECT_DOUBLE_EQ(*r[1].threshold, 75);
    EXPECT_EQ(r[2].status, Status::kFail);
    EXPECT_DOUBLE_EQ(*r[2].threshold, 85);
    EXPECT_EQ(r[3].status, Status::kFail);
    EXPECT_NE(r[3].message.find("2 uncorrected ECC errors"), std::string::npos);
    EXPECT_EQ(r[4].status, Status::kFail);
    EXPECT_NE(r[4].message.find("lost"), std::string::npos);
    EXPECT_EQ(r[4].key, "gpu4");
}

TEST(GpuCheck, MemoryThresholdsAndThrowingSource) {
    GpuOptions o;
    o.mem_pct = {90, 98};
    auto r = check_gpus(
        [] {
            return std::optional(std::vector<GpuReading>{{0, "", std::nullopt, 95.0, {}, false}});
        },
        o);
    EXPECT_EQ(r[0].status, Status::kWarn);
    auto e = check_gpus(
        []() -> std::optional<std::vector<GpuReading>> {
            throw std::runtime_error("NVML_ERROR_UNKNOWN");
        },
        o);
    EXPECT_EQ(e[0].ran, Ran::kError);
    EXPECT_EQ(e[0].message, "cannot read GPUs: NVML_ERROR_UNKNOWN");
}

}  // namespace
}  // namespace mlk::health
