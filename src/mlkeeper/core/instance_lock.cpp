#include "mlkeeper/core/instance_lock.hpp"

#include <fmt/format.h>

#include <system_error>

#include "mlkeeper/core/error.hpp"

namespace mlk::core {

util::FileLock lock_command(const std::filesystem::path& state_dir, std::string_view command,
                            LockWait wait, std::chrono::milliseconds timeout) {
    auto file = state_dir / "locks" / (std::string(command) + ".lock");
    pid_t holder = 0;
    std::optional<util::FileLock> lock;
    try {
        lock = wait == LockWait::kWait ? util::FileLock::acquire(file, timeout, &holder)
                                       : util::FileLock::try_acquire(file, &holder);
    } catch (const std::system_error& e) {
        throw Error(
            fmt::format("cannot take the `mlkeeper {}` lock: {}; check the permissions of {}",
                        command, e.what(), state_dir.string()));
    }
    if (!lock) {
        throw Error(fmt::format(
            "another `mlkeeper {}` is running ({}); wait for it to finish, or stop it if it hangs "
            "(lock: {})",
            command, holder > 0 ? fmt::format("pid {}", holder) : std::string("pid unknown"),
            file.string()));
    }
    return std::move(*lock);
}

}  // namespace mlk::core
