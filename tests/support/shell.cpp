#include "support/shell.hpp"

namespace mlk::testing {

util::RunResult run_shell(const std::string& script, std::chrono::seconds timeout) {
    util::RunOptions o;
    o.timeout = timeout;
    return util::run_process({"/bin/sh", "-c", script}, o);
}

}  // namespace mlk::testing
