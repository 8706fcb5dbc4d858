// Build and library version information for `mlkeeper --version`.
// Thread safety: stateless.
#pragma once

#include <string>

namespace mlk::core {

std::string version();       // "0.1.0"
std::string revision();      // the git hash it was built from ("unknown" outside a checkout)
std::string version_text();  // multi-line: version, git hash, build type, linked libraries

}  // namespace mlk::core
