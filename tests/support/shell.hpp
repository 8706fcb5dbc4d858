// Runs a /bin/sh script for a test (peer tools: tar, sha256sum, age, aws) with a bounded
// time, output captured. Thread safety: stateless.
#pragma once

#include <chrono>
#include <string>

#include "mlkeeper/util/process.hpp"

namespace mlk::testing {

util::RunResult run_shell(const std::string& script,
                          std::chrono::seconds timeout = std::chrono::seconds(60));

}  // namespace mlk::testing
