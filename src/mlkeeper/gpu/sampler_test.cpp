#include "mlkeeper/gpu/sampler.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

#include "mlkeeper/core/error.hpp"
#include "support/fake_nvml.hpp"

namespace mlk::gpu {
namespace {

using testing::Scenario;

std::optional<std::string> fixed_namer(unsigned int pid) {
    if (pid == 4242) {
        return std::string("python3");
    }
    return std::nullopt;
}

TEST(GpuSampler, HealthyGpuReadsEveryField) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc(
        "driver=550.54.15\n"
        "gpu 0 name=\"NVIDIA A100-SXM4-80GB\" uuid=GPU-1111 temp=65 util=30 memutil=20 "
        "mem_used_mib=20480 mem_total_mib=81920 power_w=250.5 power_limit_w=400 fan=45 "
        "sm_clock=1410 mem_clock=1593 throttle=0x1 ecc_vol_corr=2 ecc_agg_corr=7 "
        "ecc_agg_uncorr=1 procs=4242:2048,77:na\n");
    Sampler sampler(lib, fixed_namer);
    ASSERT_EQ(sampler.device_count(), 1u);
    Snapshot s = sampler.sample();
    EXPECT_EQ(s.driver_version, "550.54.15");
    ASSERT_EQ(s.gpus.size(), 1u);
    const GpuSample& g = s.gpus[0];
    EXPECT_EQ(g.index, 0u);
    EXPECT_EQ(g.name, "NVIDIA A100-SXM4-80GB");
    EXPECT_EQ(g.uuid, "GPU-1111");
    EXPECT_FALSE(g.lost);
    EXPECT_EQ(g.temperature_c, 65u);
    EXPECT_EQ(g.util_gpu_pct, 30u);
    EXPECT_EQ(g.util_mem_pct, 20u);
    EXPECT_EQ(g.mem_used_bytes, 20480ULL << 20);
    EXPECT_EQ(g.mem_total_bytes, 81920ULL << 20);
    EXPECT_DOUBLE_EQ(*g.mem_used_pct(), 25.0);
    EXPECT_DOUBLE_EQ(*g.power_draw_w, 250.5);
    EXPECT_DOUBLE_EQ(*g.power_limit_w, 400.0);
    EXPECT_NEAR(*g.power_pct(), 62.625, 1e-9);
    EXPECT_EQ(g.fan_pct, 45u);
    EXPECT_EQ(g.sm_clock_mhz, 1410u);
    EXPECT_EQ(g.mem_clock_mhz, 1593u);
    EXPECT_EQ(g.throttle_reasons, 1u);
    EXPECT_EQ(g.ecc.volatile_corrected, 2u);
    EXPECT_EQ(g.ecc.volatile_uncorrected, 0u);
    EXPECT_EQ(g.ecc.aggregate_corrected, 7u);
    EXPECT_EQ(g.ecc.aggregate_uncorrected, 1u);
    ASSERT_TRUE(g.processes.has_value());
    ASSERT_EQ(g.processes->size(), 2u);
    EXPECT_EQ((*g.processes)[0].pid, 4242u);
    EXPECT_EQ((*g.processes)[0].name, "python3");
    EXPECT_EQ((*g.processes)[0].used_memory_bytes, 2048ULL << 20);
    EXPECT_EQ((*g.processes)[1].name, std::nullopt);
    EXPECT_EQ((*g.processes)[1].used_memory_bytes, std::nullopt);
}

TEST(GpuSampler, UnsupportedFieldsAreNotAvailable) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc(
        "gpu 0 name=\"Tesla K80\" unsupported=temp,util,memory,power,power_limit,fan,clocks,"
        "throttle,ecc,processes\n");
    Sampler sampler(lib, fixed_namer);
    const GpuSample g = sampler.sample().gpus.at(0);
    EXPECT_FALSE(g.lost);
    EXPECT_EQ(g.name, "Tesla K80");
    EXPECT_FALSE(g.temperature_c);
    EXPECT_FALSE(g.util_gpu_pct);
    EXPECT_FALSE(g.util_mem_pct);
    EXPECT_FALSE(g.mem_used_bytes);
    EXPECT_FALSE(g.mem_total_bytes);
    EXPECT_FALSE(g.mem_used_pct());
    EXPECT_FALSE(g.power_draw_w);
    EXPECT_FALSE(g.power_limit_w);
    EXPECT_FALSE(g.power_pct());
    EXPECT_FALSE(g.fan_pct);
    EXPECT_FALSE(g.sm_clock_mhz);
    EXPECT_FALSE(g.mem_clock_mhz);
    EXPECT_FALSE(g.throttle_reasons);
    EXPECT_FALSE(g.ecc.volatile_corrected);
    EXPECT_FALSE(g.ecc.aggregate_uncorrected);
    EXPECT_FALSE(g.processes);
}

TEST(GpuSampler, SentinelValuesAreNotAvailable) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 sentinel=temp,fan,power\n");
    Sampler sampler(lib, fixed_namer);
    const GpuSample g = sampler.sample().gpus.at(0);
    EXPECT_FALSE(g.temperature_c);
    EXPECT_FALSE(g.fan_pct);
    EXPECT_FALSE(g.power_draw_w);
    EXPECT_TRUE(g.power_limit_w);
}

TEST(GpuSampler, LostGpus) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc(
        "gpu 0 temp=50\n"
        "gpu 1 name=\"NVIDIA A100\" lost=1\n"
        "gpu 2 handle_error=15\n"
        "gpu 3 handle_error=999\n");
    Sampler sampler(lib, fixed_namer);
    Snapshot s = sampler.sample();
    ASSERT_EQ(s.gpus.size(), 4u);
    EXPECT_FALSE(s.gpus[0].lost);
    EXPECT_EQ(s.gpus[0].temperature_c, 50u);
    for (unsigned i = 1; i < 4; ++i) {
        const GpuSample& g = s.gpus[i];
        EXPECT_EQ(g.index, i);
        EXPECT_TRUE(g.lost) << i;
        EXPECT_FALSE(g.temperature_c) << i;
        EXPECT_FALSE(g.mem_used_bytes) << i;
    }
    EXPECT_NE(s.gpus[1].error.find("lost"), std::string::npos);
    EXPECT_NE(s.gpus[2].error.find("fallen off the bus"), std::string::npos);
    EXPECT_NE(s.gpus[3].error.find("NVML_ERROR_UNKNOWN"), std::string::npos);
}

TEST(GpuSampler, CountFailureIsCritical) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("count_error=999\ngpu 0\n");
    try {
        Sampler sampler(lib, fixed_namer);
        FAIL() << "count error ignored";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::kCritical);
        EXPECT_NE(std::string(e.what()).find("NVML_ERROR_UNKNOWN"), std::string::npos);
    }
    // The failed constructor still shut NVML down.
    EXPECT_EQ(sc.read_init_log(), "init nvmlInit_v2\nshutdown\n");
}

TEST(GpuSampler, NoGpus) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("driver=550.54.15\n");
    Sampler sampler(lib, fixed_namer);
    EXPECT_EQ(sampler.device_count(), 0u);
    EXPECT_TRUE(sampler.sample().gpus.empty());
}

TEST(GpuSampler, RepeatedSamplesDoNotReinitialise) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0\ngpu 1\n");
    {
        Sampler sampler(lib, fixed_namer);
        for (int i = 0; i < 5; ++i) {
            EXPECT_EQ(sampler.sample().gpus.size(), 2u);
        }
        EXPECT_EQ(sc.read_init_log(), "init nvmlInit_v2\n");
    }
    EXPECT_EQ(sc.read_init_log(), "init nvmlInit_v2\nshutdown\n");
}

TEST(GpuSampler, V1OnlyLibraryStillReadsEverything) {
    MLK_REQUIRE_FAKE_NVML(lib, "v1");
    Scenario sc("gpu 0 temp=70 procs=4242:512\ngpu 1 temp=71\n");
    Sampler sampler(lib, fixed_namer);
    Snapshot s = sampler.sample();
    ASSERT_EQ(s.gpus.size(), 2u);
    EXPECT_EQ(s.gpus[1].temperature_c, 71u);
    ASSERT_TRUE(s.gpus[0].processes);
    ASSERT_EQ(s.gpus[0].processes->size(), 1u);
    EXPECT_EQ(s.gpus[0].processes->at(0).used_memory_bytes, 512ULL << 20);
}

TEST(GpuSampler, ProcCommReadsOurOwnName) {
    auto name = proc_comm(static_cast<unsigned>(::getpid()));
    ASSERT_TRUE(name);
    EXPECT_FALSE(name->empty());
    EXPECT_EQ(name->find('\n'), std::string::npos);
    EXPECT_FALSE(proc_comm(0));  // no /proc/0
}

TEST(GpuSampler, ThrottleReasonNames) {
    EXPECT_TRUE(throttle_reason_names(0).empty());
    EXPECT_EQ(throttle_reason_names(0x20 | 0x80),
              (std::vector<std::string>{"sw_thermal", "hw_power_brake"}));
    EXPECT_EQ(throttle_reason_names(0x4 | 0x1000),
              (std::vector<std::string>{"sw_power_cap", "other_0x1000"}));
}

}  // namespace
}  // namespace mlk::gpu
