// The machine's host name, as recorded in history, manifests and alerts.
// Thread safety: stateless.
#pragma once

#include <string>

namespace mlk::util {

// gethostname(2); "" when it fails.
std::string host_name();

}  // namespace mlk::util
