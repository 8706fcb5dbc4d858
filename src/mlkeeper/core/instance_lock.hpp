// One instance of a command at a time (two backups writing the same archive
// directory, two cleanups deleting the same files): an flock on
// `<state dir>/locks/<command>.lock`, dropped by the kernel if we crash.
// Thread safety: hold it from the thread that runs the command.
#pragma once

#include <filesystem>
#include <string_view>

#include "mlkeeper/util/file_lock.hpp"

namespace mlk::core {

enum class LockWait { kNoWait, kWait };

// Throws mlk::Error "another `mlkeeper backup` is running (pid N); ..." when
// the lock is held (after waiting up to `timeout` with LockWait::kWait).
util::FileLock lock_command(const std::filesystem::path& state_dir, std::string_view command,
                            LockWait wait = LockWait::kNoWait,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

}  // namespace mlk::core
