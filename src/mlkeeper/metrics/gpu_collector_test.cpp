#include "mlkeeper/metrics/gpu_collector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/metrics/gpu_history.hpp"
#include "support/fake_nvml.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk::metrics {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

TEST(GpuCollector, NoDriverIsNoGpuNotAnError) {
    GpuCollectorSettings s;
    s.library = "/nonexistent/libnvidia-ml.so.1";
    GpuCollector c(s, nullptr);
    EXPECT_EQ(c.latest()->error, "not read yet");
    c.sample_now();
    const auto r = c.latest();
    EXPECT_FALSE(r->snapshot);
    EXPECT_THAT(r->error, HasSubstr("/nonexistent/libnvidia-ml.so.1"));
    EXPECT_EQ(r->prometheus, "");
    c.sample_now();  // within the 10 minutes: not looked for again, same answer
    EXPECT_THAT(c.latest()->error, HasSubstr("/nonexistent/libnvidia-ml.so.1"));
}

TEST(GpuCollector, ReadsJudgesCountsXidsAndFeedsTheHistory) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    gpu::testing::Scenario sc(
        "gpu 0 uuid=GPU-a temp=90 util=50 mem_used_mib=1024 mem_total_mib=8192 xid=48\n"
        "gpu 1 uuid=GPU-b temp=40\n");
    testing::TempDir dir;
    core::StateStore store(dir / "state.db");
    GpuHistory history(store);
    GpuCollectorSettings s;
    s.library = lib;
    GpuCollector c(s, &history);
    c.sample_now();
    auto r = c.latest();
    ASSERT_TRUE(r->snapshot) << r->error;
    ASSERT_EQ(r->snapshot->gpus.size(), 2u);
    EXPECT_EQ(r->judgement.gpu_level(0), gpu::Level::kCritical);  // 90 °C > 85
    EXPECT_EQ(r->judgement.gpu_level(1), gpu::Level::kOk);
    EXPECT_THAT(r->prometheus, HasSubstr("mlkeeper_gpu_temperature_celsius{gpu=\"0\""));
    // The XID arrives as an event on the watcher's thread; a later sample shows it.
    EXPECT_TRUE(testing::wait_until(
        [&] {
            c.sample_now();
            return c.latest()->prometheus.find("mlkeeper_gpu_last_xid{gpu=\"0\",uuid=\"GPU-a\"") !=
                       std::string::npos &&
                   c.latest()->prometheus.find("\"} 48\n") != std::string::npos;
        },
        5000ms))
        << c.latest()->prometheus;
    c.stop();
    const auto q = history.query(std::chrono::system_clock::now() - 1h,
                                 std::chrono::system_clock::now() + 1min);
    ASSERT_EQ(q.gpus.size(), 2u);
    ASSERT_FALSE(q.gpus[0].temp_c.empty());
    EXPECT_EQ(q.gpus[0].temp_c.back(), 90.0);
    ASSERT_FALSE(q.gpus[0].util_ratio.empty());
    EXPECT_EQ(q.gpus[0].util_ratio.back(), 0.5);
}

TEST(GpuCollector, FirstReadingWaitsForTheFirstSample) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    gpu::testing::Scenario sc("gpu 0 temp=50\n");
    GpuCollectorSettings s;
    s.library = lib;
    s.interval = 1h;
    GpuCollector c(s, nullptr);
    c.start();
    const auto r = c.first_reading(5s);
    EXPECT_TRUE(r->snapshot) << r->error;
    c.stop();
}

TEST(GpuCollector, FirstReadingGivesUpAfterItsLimit) {
    GpuCollectorSettings s;
    GpuCollector c(s, nullptr);  // never started: no sample ever comes
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = c.first_reading(50ms);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_FALSE(r->snapshot);
}

}  // namespace
}  // namespace mlk::metrics
