// Prometheus text for the XID error counts of XidWatcher (mlkeeper_gpu_xid_errors_total,
// mlkeeper_gpu_last_xid), added to a MetricsText beside the other GPU families.
// Thread safety: a pure function of its arguments.
#pragma once

#include <vector>

#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/gpu/xid_watcher.hpp"

namespace mlk::gpu {

// Declares both families (also when `counts` is empty, so dashboards see them) and adds one
// sample of each per GPU, labelled {gpu, uuid, name} like the mlkeeper_gpu_* families.
void append_xid(core::MetricsText& m, const std::vector<XidCount>& counts);

}  // namespace mlk::gpu
