#include "mlkeeper/gpu/format_xid.hpp"

#include <string>

namespace mlk::gpu {

void append_xid(core::MetricsText& m, const std::vector<XidCount>& counts) {
    m.family("mlkeeper_gpu_xid_errors_total", core::MetricType::kCounter,
             "XID errors (driver-reported GPU faults) since mlkeeper started");
    m.family("mlkeeper_gpu_last_xid", core::MetricType::kGauge,
             "Number of the most recent XID error (0 = none since mlkeeper started)");
    for (const auto& c : counts) {
        const core::Labels id = {
            {"gpu", std::to_string(c.gpu)}, {"uuid", c.uuid}, {"name", c.name}};
        m.sample("mlkeeper_gpu_xid_errors_total", id, static_cast<double>(c.count));
        m.sample("mlkeeper_gpu_last_xid", id, static_cast<double>(c.last_xid));
    }
}

}  // namespace mlk::gpu
