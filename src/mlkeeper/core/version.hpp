// Build and library version information for `mlkeeper --version`.
// Thread safety: stateless.
#pragma once

#include <string>

namespace mlk::core {

std::string version();       // "0.1.0"
std::string version_text();  // multi-line: version, git hash, build type, linked libraries

}  // namespace mlk::core
