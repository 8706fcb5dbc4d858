#include "mlkeeper/util/host.hpp"

#include <limits.h>
#include <unistd.h>

#include <array>

namespace mlk::util {

std::string host_name() {
    std::array<char, HOST_NAME_MAX + 1> buf{};
    if (::gethostname(buf.data(), buf.size() - 1) != 0) {
        return {};
    }
    return std::string(buf.data());
}

}  // namespace mlk::util
