// Bounded polling for tests: wait until a condition holds or a limit passes, never forever.
// Thread safety: stateless.
#pragma once

#include <chrono>
#include <functional>

namespace mlk::testing {

// Polls `pred` every `every` until it holds (true) or `limit` passes (then one last try).
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit,
                std::chrono::milliseconds every = std::chrono::milliseconds(10));

}  // namespace mlk::testing
