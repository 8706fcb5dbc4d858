#include "mlkeeper/gpu/format_xid.hpp"

#include <string>

#include <gtest/gtest.h>

#include "support/promtool.hpp"

namespace mlk::gpu {
namespace {

std::vector<XidCount> sample_counts() {
    XidCount a;
    a.gpu = 0;
    a.uuid = "GPU-aaaa";
    a.name = "NVIDIA H100 80GB HBM3";
    a.count = 3;
    a.last_xid = 79;
    a.last_at = std::chrono::system_clock::now();
    XidCount b;
    b.gpu = 1;
    b.uuid = "GPU-bbbb";
    b.name = "weird \"name\"\\";
    XidCount unopened;  // a GPU NVML could not open: no uuid or name
    unopened.gpu = 2;
    return {a, b, unopened};
}

TEST(GpuFormatXid, CountersAndLastXidPerGpu) {
    core::MetricsText m;
    append_xid(m, sample_counts());
    const std::string text = m.str();
    for (const char* want : {
             "# TYPE mlkeeper_gpu_xid_errors_total counter\n",
             "# TYPE mlkeeper_gpu_last_xid gauge\n",
             "mlkeeper_gpu_xid_errors_total{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA H100 80GB "
             "HBM3\"} 3\n",
             "mlkeeper_gpu_last_xid{gpu=\"0\",uuid=\"GPU-aaaa\",name=\"NVIDIA H100 80GB HBM3\"} "
             "79\n",
             "mlkeeper_gpu_xid_errors_total{gpu=\"1\",uuid=\"GPU-bbbb\",name=\"weird "
             "\\\"name\\\"\\\\\"} 0\n",
             "mlkeeper_gpu_last_xid{gpu=\"1\",uuid=\"GPU-bbbb\",name=\"weird \\\"name\\\"\\\\\"} "
             "0\n",
             "mlkeeper_gpu_xid_errors_total{gpu=\"2\",uuid=\"\",name=\"\"} 0\n",
         }) {
        EXPECT_NE(text.find(want), std::string::npos) << "missing: " << want << "\n" << text;
    }
    std::string out;
    EXPECT_TRUE(mlk::testing::promtool_accepts(text, &out)) << out << "\n" << text;
}

TEST(GpuFormatXid, FamiliesAppearWithoutGpus) {
    core::MetricsText m;
    append_xid(m, {});
    const std::string text = m.str();
    EXPECT_NE(text.find("# TYPE mlkeeper_gpu_xid_errors_total counter"), std::string::npos);
    EXPECT_EQ(text.find("mlkeeper_gpu_xid_errors_total{"), std::string::npos);
    std::string out;
    EXPECT_TRUE(mlk::testing::promtool_accepts(text, &out)) << out << "\n" << text;
}

// Beside the other GPU families in one exposition, as the agent writes it.
TEST(GpuFormatXid, AppendsToAnExistingExposition) {
    core::MetricsText m;
    m.family("mlkeeper_gpu_up", core::MetricType::kGauge, "1 when the GPU answers");
    m.sample("mlkeeper_gpu_up", {{"gpu", "0"}, {"uuid", "GPU-aaaa"}, {"name", "H100"}}, 1);
    append_xid(m, sample_counts());
    const std::string text = m.str();
    EXPECT_LT(text.find("mlkeeper_gpu_up{"), text.find("mlkeeper_gpu_xid_errors_total{"));
    std::string out;
    EXPECT_TRUE(mlk::testing::promtool_accepts(text, &out)) << out << "\n" << text;
}

// The promtool check above can fail: a sample under the wrong type is rejected.
TEST(GpuFormatXid, PromtoolRejectsACounterWithoutTotal) {
    std::string out;
    EXPECT_FALSE(mlk::testing::promtool_accepts(
        "# HELP mlkeeper_gpu_xid_errors x\n# TYPE mlkeeper_gpu_xid_errors counter\n"
        "mlkeeper_gpu_xid_errors 1\n",
        &out))
        << out;
}

}  // namespace
}  // namespace mlk::gpu
