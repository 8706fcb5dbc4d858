#include "support/wait.hpp"

#include <thread>

namespace mlk::testing {

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit,
                std::chrono::milliseconds every) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(every);
    }
    return pred();
}

}  // namespace mlk::testing
