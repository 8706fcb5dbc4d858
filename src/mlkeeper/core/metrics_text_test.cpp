#include "mlkeeper/core/metrics_text.hpp"

#include <cmath>
#include <stdexcept>

#include <gtest/gtest.h>

namespace mlk::core {
namespace {

TEST(MetricsText, FamiliesWithHelpTypeAndLabels) {
    MetricsText m;
    m.family("mlkeeper_gpu_temperature_celsius", MetricType::kGauge, "GPU temperature");
    m.sample("mlkeeper_gpu_temperature_celsius", {{"gpu", "0"}, {"name", "A \"big\" \\ one\n"}},
             71);
    m.sample("mlkeeper_gpu_temperature_celsius", {{"gpu", "1"}}, 65.5);
    m.family("mlkeeper_errors_total", MetricType::kCounter, "Errors\nseen");
    m.sample("mlkeeper_errors_total", 3);
    EXPECT_EQ(m.str(),
              "# HELP mlkeeper_gpu_temperature_celsius GPU temperature\n"
              "# TYPE mlkeeper_gpu_temperature_celsius gauge\n"
              "mlkeeper_gpu_temperature_celsius{gpu=\"0\",name=\"A \\\"big\\\" \\\\ one\\n\"} 71\n"
              "mlkeeper_gpu_temperature_celsius{gpu=\"1\"} 65.5\n"
              "# HELP mlkeeper_errors_total Errors\\nseen\n"
              "# TYPE mlkeeper_errors_total counter\n"
              "mlkeeper_errors_total 3\n");
}

TEST(MetricsText, SpecialValues) {
    MetricsText m;
    m.family("x", MetricType::kGauge, "x");
    m.sample("x", std::nan(""));
    m.sample("x", INFINITY);
    m.sample("x", -INFINITY);
    m.sample("x", 1e20);
    EXPECT_NE(m.str().find("x NaN\nx +Inf\nx -Inf\nx 1e+20\n"), std::string::npos) << m.str();
}

TEST(MetricsText, RejectsBadNamesAndUndeclared) {
    MetricsText m;
    EXPECT_THROW(m.family("0abc", MetricType::kGauge, ""), std::invalid_argument);
    EXPECT_THROW(m.family("a-b", MetricType::kGauge, ""), std::invalid_argument);
    EXPECT_THROW(m.family("a_count", MetricType::kCounter, ""), std::invalid_argument);
    EXPECT_THROW(m.sample("nope", 1), std::logic_error);
    m.family("ok", MetricType::kGauge, "");
    EXPECT_THROW(m.family("ok", MetricType::kCounter, ""), std::invalid_argument);
    EXPECT_THROW(m.sample("ok", {{"bad-label", "v"}}, 1), std::invalid_argument);
    EXPECT_THROW(m.sample("ok", {{"__reserved", "v"}}, 1), std::invalid_argument);
}

}  // namespace
}  // namespace mlk::core
