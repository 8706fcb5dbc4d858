// Bounded polling for tests: wait until a condition holds or a limit passes, never forever.
// Thread safety: stateless.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>

namespace mlk::testing {

// Polls `pred` every `every` until it holds (true) or `limit` passes (then one last try).
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit,
                std::chrono::milliseconds every = std::chrono::milliseconds(10));

// Waits for child `pid` at most `limit`; kills it (SIGKILL) when it overruns, records a test
// failure and returns -1, so no test can hang on a child. Else its waitpid() status.
int wait_child_bounded(pid_t pid, std::chrono::seconds limit);

}  // namespace mlk::testing
