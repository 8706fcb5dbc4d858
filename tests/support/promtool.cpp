#include "support/promtool.hpp"

#include <filesystem>
#include <fstream>

#include "support/shell.hpp"
#include "support/temp_dir.hpp"

namespace mlk::testing {

bool promtool_accepts(const std::string& text, std::string* out) {
    if (!std::filesystem::exists("/usr/bin/promtool")) {
        *out = "promtool is not installed (apt-get install prometheus)";
        return false;
    }
    TempDir dir;
    const auto file = dir.write("metrics.prom", text);
    const auto r = run_shell("promtool check metrics < '" + file.string() + "' 2>&1");
    *out = r.out + r.err;
    return r.exit_code == 0;
}

}  // namespace mlk::testing
