// `promtool check metrics` for tests of Prometheus output (installed by scripts/install-deps).
// Thread safety: stateless.
#pragma once

#include <string>

namespace mlk::testing {

// Whether promtool accepts `text` (lint warnings included); `out` gets what it said. A missing
// promtool is a failure with that message, so a CI without it cannot pass silently.
bool promtool_accepts(const std::string& text, std::string* out);

}  // namespace mlk::testing
