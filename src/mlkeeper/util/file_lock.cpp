#include "mlkeeper/util/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <string>
#include <system_error>
#include <thread>

namespace mlk::util {
namespace {

[[noreturn]] void throw_errno(int err, const std::string& message) {
    throw std::system_error(err, std::generic_category(), message);
}

// mkdir -p with mode 0755 (less the umask); existing components are fine.
void make_directories(const std::filesystem::path& dir) {
    if (dir.empty()) {
        return;
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        return;
    }
    std::filesystem::path prefix;
    for (const auto& part : dir) {
        prefix /= part;
        if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
            throw_errno(errno, "cannot create directory " + prefix.string());
        }
    }
}

// The pid the holder wrote, or 0 if the file holds nothing usable.
pid_t read_holder_pid(int fd) {
    char buf[32];
    ssize_t n;
    do {
        n = ::pread(fd, buf, sizeof buf, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        return 0;
    }
    pid_t pid = 0;
    const auto [end, ec] = std::from_chars(buf, buf + n, pid);
    if (ec != std::errc() || end == buf || pid <= 0) {
        return 0;
    }
    return pid;
}

// Best effort: failing to record the pid (disk full, say) must not cost us the lock, because a
// full disk is exactly when the tool has to run. Writing before truncating means a contender
// reading at any moment sees a complete pid followed by at most some stale bytes, never an
// empty file.
void write_own_pid(int fd) {
    char buf[32];
    const int len = std::snprintf(buf, sizeof buf, "%d\n", static_cast<int>(::getpid()));
    if (len <= 0) {
        return;
    }
    if (::pwrite(fd, buf, static_cast<std::size_t>(len), 0) == len) {
        (void)!::ftruncate(fd, len);
    }
}

}  // namespace

std::optional<FileLock> FileLock::try_acquire(const std::filesystem::path& lock_file,
                                              pid_t* holder_pid) {
    make_directories(lock_file.parent_path());
    // If the file is removed or replaced between our open() and flock(), the lock we got guards
    // an orphaned inode; detect that and start over (a few times, then give up loudly).
    constexpr int kAttempts = 8;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
        int fd;
        do {
            fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            throw_errno(errno, "cannot open lock file " + lock_file.string());
        }
        int rc;
        do {
            rc = ::flock(fd, LOCK_EX | LOCK_NB);
        } while (rc != 0 && errno == EINTR);
        if (rc != 0) {
            const int err = errno;
            if (err == EWOULDBLOCK) {
                if (holder_pid != nullptr) {
                    *holder_pid = read_holder_pid(fd);
                }
                ::close(fd);
                return std::nullopt;
            }
            ::close(fd);
            throw_errno(err, "cannot lock " + lock_file.string());
        }
        struct stat held {};
        struct stat named {};
        if (::fstat(fd, &held) != 0 || ::lstat(lock_file.c_str(), &named) != 0 ||
            held.st_dev != named.st_dev || held.st_ino != named.st_ino) {
            ::close(fd);
            continue;
        }
        write_own_pid(fd);
        if (holder_pid != nullptr) {
            *holder_pid = 0;
        }
        return FileLock(lock_file, fd);
    }
    throw_errno(EAGAIN, "cannot lock " + lock_file.string() + " (the file keeps being replaced)");
}

std::optional<FileLock> FileLock::acquire(const std::filesystem::path& lock_file,
                                          std::chrono::milliseconds timeout, pid_t* holder_pid) {
    constexpr std::chrono::milliseconds kPoll{20};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::optional<FileLock> lock = try_acquire(lock_file, holder_pid);
        if (lock) {
            return lock;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(kPoll, deadline - now));
    }
}

FileLock::~FileLock() {
    release();
}

FileLock::FileLock(FileLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
    if (this != &other) {
        release();
        path_ = std::move(other.path_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

void FileLock::release() noexcept {
    if (fd_ >= 0) {
        // Explicit unlock so the lock goes even if a fork()ed child still shares this open file.
        ::flock(fd_, LOCK_UN);
        ::close(fd_);
        fd_ = -1;
    }
}

}  // namespace mlk::util
