#include "mlkeeper/gpu/judge.hpp"

#include <gtest/gtest.h>

namespace mlk::gpu {
namespace {

GpuSample healthy(unsigned int index = 0) {
    GpuSample g;
    g.index = index;
    g.name = "NVIDIA A100";
    g.uuid = "GPU-" + std::to_string(index);
    g.temperature_c = 60;
    g.util_gpu_pct = 50;
    g.util_mem_pct = 30;
    g.mem_used_bytes = 40ULL << 30;
    g.mem_total_bytes = 80ULL << 30;
    g.power_draw_w = 200;
    g.power_limit_w = 400;
    g.throttle_reasons = 0;
    g.ecc.volatile_corrected = 0;
    g.ecc.volatile_uncorrected = 0;
    g.ecc.aggregate_corrected = 0;
    g.ecc.aggregate_uncorrected = 0;
    g.processes.emplace();
    return g;
}

Snapshot snap(std::vector<GpuSample> gpus) {
    Snapshot s;
    s.time = std::chrono::system_clock::now();
    s.gpus = std::move(gpus);
    return s;
}

const Finding* find(const Judgement& j, const std::string& key) {
    for (const auto& f : j.findings) {
        if (f.key == key) {
            return &f;
        }
    }
    return nullptr;
}

Level level_of(const Judgement& j, const std::string& key) {
    const Finding* f = find(j, key);
    EXPECT_NE(f, nullptr) << key;
    return f != nullptr ? f->level : Level::kOk;
}

TEST(GpuJudge, HealthyHasEveryKeyAtOk) {
    Judgement j = judge(snap({healthy(0), healthy(1)}), Thresholds{});
    EXPECT_EQ(j.overall, Level::kOk);
    EXPECT_EQ(j.exit_code(), 0);
    for (std::string gpu : {"gpu0_", "gpu1_"}) {
        for (std::string cond : {"lost", "temp", "memory", "power", "ecc", "throttle"}) {
            EXPECT_EQ(level_of(j, gpu + cond), Level::kOk) << gpu + cond;
        }
    }
    EXPECT_EQ(j.findings.size(), 12u);
}

TEST(GpuJudge, TemperatureLevelsAreStrictlyAbove) {
    Thresholds t;  // 80 warning, 85 critical
    struct Case {
        unsigned int temp;
        Level level;
    };
    for (auto [temp, level] : {Case{80, Level::kOk}, Case{81, Level::kWarning},
                               Case{85, Level::kWarning}, Case{86, Level::kCritical}}) {
        GpuSample g = healthy();
        g.temperature_c = temp;
        Judgement j = judge(snap({g}), t);
        EXPECT_EQ(level_of(j, "gpu0_temp"), level) << temp;
        EXPECT_EQ(j.overall, level) << temp;
    }
    GpuSample g = healthy();
    g.temperature_c = 87;
    Judgement j = judge(snap({g}), t);
    EXPECT_EQ(j.exit_code(), 2);
    const Finding* f = find(j, "gpu0_temp");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->value, "87°C");
    EXPECT_EQ(f->threshold, "85°C");
    EXPECT_NE(f->summary.find("87°C exceeds 85°C"), std::string::npos);
    EXPECT_FALSE(f->action.empty());
}

TEST(GpuJudge, CustomThresholds) {
    GpuSample g = healthy();
    g.temperature_c = 60;
    Thresholds t;
    t.temp_warn_c = 50;
    t.temp_crit_c = 70;
    Judgement j = judge(snap({g}), t);
    EXPECT_EQ(level_of(j, "gpu0_temp"), Level::kWarning);
    EXPECT_EQ(j.exit_code(), 1);
    EXPECT_EQ(find(j, "gpu0_temp")->threshold, "50°C");
    t.memory_pct = 40;  // 50% used
    EXPECT_EQ(level_of(judge(snap({g}), t), "gpu0_memory"), Level::kWarning);
    t.power_pct = 49.5;  // 50% of the limit
    EXPECT_EQ(level_of(judge(snap({g}), t), "gpu0_power"), Level::kWarning);
}

TEST(GpuJudge, MemoryHigh) {
    GpuSample g = healthy();
    g.mem_used_bytes = 76ULL << 30;  // 95%
    Judgement j = judge(snap({g}), Thresholds{});
    EXPECT_EQ(level_of(j, "gpu0_memory"), Level::kWarning);
    EXPECT_EQ(j.exit_code(), 1);
    EXPECT_EQ(find(j, "gpu0_memory")->value, "95.0%");
    g.mem_used_bytes = 72ULL << 30;  // exactly 90%: not above
    EXPECT_EQ(level_of(judge(snap({g}), Thresholds{}), "gpu0_memory"), Level::kOk);
}

TEST(GpuJudge, PowerHigh) {
    GpuSample g = healthy();
    g.power_draw_w = 390;  // 97.5% of 400
    Judgement j = judge(snap({g}), Thresholds{});
    EXPECT_EQ(level_of(j, "gpu0_power"), Level::kWarning);
    EXPECT_NE(find(j, "gpu0_power")->value.find("97.5%"), std::string::npos);
}

TEST(GpuJudge, UncorrectedEccIsCritical) {
    GpuSample g = healthy();
    g.ecc.volatile_corrected = 12;  // corrected errors alone are no alarm
    EXPECT_EQ(level_of(judge(snap({g}), Thresholds{}), "gpu0_ecc"), Level::kOk);
    g.ecc.volatile_uncorrected = 3;
    Judgement j = judge(snap({g}), Thresholds{});
    EXPECT_EQ(level_of(j, "gpu0_ecc"), Level::kCritical);
    EXPECT_EQ(j.exit_code(), 2);
    EXPECT_NE(find(j, "gpu0_ecc")->summary.find("3 uncorrected"), std::string::npos);
}

TEST(GpuJudge, EccFallsBackToAggregateOnlyWithoutVolatile) {
    GpuSample g = healthy();
    g.ecc.aggregate_uncorrected = 5;  // old, and the volatile counter says 0 now
    EXPECT_EQ(level_of(judge(snap({g}), Thresholds{}), "gpu0_ecc"), Level::kOk);
    g.ecc.volatile_uncorrected.reset();
    EXPECT_EQ(level_of(judge(snap({g}), Thresholds{}), "gpu0_ecc"), Level::kCritical);
}

TEST(GpuJudge, LostGpuIsCriticalAndNothingElseIsJudged) {
    GpuSample lost;
    lost.index = 1;
    lost.lost = true;
    lost.error = "GPU is lost (fallen off the bus)";
    Judgement j = judge(snap({healthy(0), lost}), Thresholds{});
    EXPECT_EQ(j.overall, Level::kCritical);
    EXPECT_EQ(level_of(j, "gpu1_lost"), Level::kCritical);
    EXPECT_EQ(find(j, "gpu1_temp"), nullptr);  // not "resolved": unknown
    EXPECT_EQ(find(j, "gpu1_ecc"), nullptr);
    EXPECT_EQ(j.gpu_level(0), Level::kOk);
    EXPECT_EQ(j.gpu_level(1), Level::kCritical);
    EXPECT_NE(find(j, "gpu1_lost")->summary.find("fallen off the bus"), std::string::npos);
}

TEST(GpuJudge, ThermalAndPowerBrakeThrottlingWarn) {
    GpuSample g = healthy();
    g.throttle_reasons = 0x4 | 0x1;  // software power cap and idle: routine
    EXPECT_EQ(level_of(judge(snap({g}), Thresholds{}), "gpu0_throttle"), Level::kOk);
    for (std::uint64_t bit : {0x8ULL, 0x20ULL, 0x40ULL, 0x80ULL}) {
        g.throttle_reasons = bit;
        Judgement j = judge(snap({g}), Thresholds{});
        EXPECT_EQ(level_of(j, "gpu0_throttle"), Level::kWarning) << bit;
    }
    g.throttle_reasons = 0x80 | 0x4;
    EXPECT_EQ(find(judge(snap({g}), Thresholds{}), "gpu0_throttle")->value, "hw_power_brake");
}

TEST(GpuJudge, UnavailableInputsGiveNoFinding) {
    GpuSample g;
    g.index = 3;
    g.name = "old";
    Judgement j = judge(snap({g}), Thresholds{});
    ASSERT_EQ(j.findings.size(), 1u);  // only "lost": the GPU answered
    EXPECT_EQ(j.findings[0].key, "gpu3_lost");
    EXPECT_EQ(j.findings[0].level, Level::kOk);
    g.mem_used_bytes = 10;
    g.mem_total_bytes = 0;  // no division by zero, no finding
    g.power_draw_w = 100;   // no limit: no percentage
    EXPECT_EQ(judge(snap({g}), Thresholds{}).findings.size(), 1u);
}

TEST(GpuJudge, WorstLevelWins) {
    GpuSample a = healthy(0);
    a.temperature_c = 82;
    GpuSample b = healthy(1);
    b.ecc.volatile_uncorrected = 1;
    Judgement j = judge(snap({a, b}), Thresholds{});
    EXPECT_EQ(j.gpu_level(0), Level::kWarning);
    EXPECT_EQ(j.gpu_level(1), Level::kCritical);
    EXPECT_EQ(j.exit_code(), 2);
    EXPECT_EQ(to_string(Level::kWarning), "warning");
    EXPECT_EQ(judge(snap({}), Thresholds{}).exit_code(), 0);
}

}  // namespace
}  // namespace mlk::gpu
