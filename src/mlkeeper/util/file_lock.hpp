// Single-instance lock: an flock(2) on a lock file that also records the holder's pid, so a second
// instance can say who is running. The kernel drops the lock when the holder dies, even by SIGKILL.
// Thread safety: a FileLock object belongs to one thread. flock locks belong to the open file, so
// two FileLocks on the same path conflict even inside one process; a fork()ed child that does not
// exec shares the parent's lock (the fd is O_CLOEXEC, so exec'd children do not).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <utility>

namespace mlk::util {

class FileLock {
  public:
    // Returns the held lock, or std::nullopt when another holder has it; then *holder_pid (if
    // holder_pid is not null) is the pid read from the file, or 0 if unknown. On success
    // *holder_pid is set to 0. Creates missing parent directories (mode 0755) and the lock file
    // (0644). Throws std::system_error naming the path when it cannot create, open or lock it.
    // A symlink as the lock file is refused (O_NOFOLLOW): we truncate it, and may run as root.
    static std::optional<FileLock> try_acquire(const std::filesystem::path& lock_file,
                                               pid_t* holder_pid);

    // Like try_acquire, but polls (with short sleeps) for up to `timeout` before giving up.
    static std::optional<FileLock> acquire(const std::filesystem::path& lock_file,
                                           std::chrono::milliseconds timeout, pid_t* holder_pid);

    ~FileLock();  // unlocks and closes; never unlinks (that would race with other lockers)
    FileLock(FileLock&& other) noexcept;
    FileLock& operator=(FileLock&& other) noexcept;
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

    const std::filesystem::path& path() const { return path_; }

  private:
    FileLock(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
    void release() noexcept;

    std::filesystem::path path_;
    int fd_ = -1;
};

}  // namespace mlk::util
