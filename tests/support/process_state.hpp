// Whether a process has ended, for tests that check what a timeout or cancel left behind.
// Dead means no such process, or a zombie waiting for a reaper we do not control (a container's
// pid 1 may never reap orphans). Thread safety: stateless.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

namespace mlk::testing {

inline bool process_gone(pid_t pid) {
    if (::kill(pid, 0) == -1 && errno == ESRCH) {
        return true;
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    const std::string stat(std::istreambuf_iterator<char>(in), {});
    const auto close_paren = stat.rfind(')');
    if (stat.empty() || close_paren == std::string::npos || close_paren + 2 >= stat.size()) {
        return stat.empty();
    }
    const char state = stat[close_paren + 2];
    return state == 'Z' || state == 'X';
}

// Polls process_gone() every 10 ms for at most `limit`.
inline bool wait_gone(pid_t pid, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (process_gone(pid)) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return process_gone(pid);
}

}  // namespace mlk::testing
