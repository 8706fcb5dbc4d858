#include "mlkeeper/util/fs_ops.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace mlk::util {

const FsOps& real_fs_ops() {
    // Built on first use (thread-safe static init) and never destroyed, so it stays valid for
    // writers that run during static destruction.
    static const FsOps* const ops = new FsOps{
        .open = [](const char* path, int flags, mode_t mode) { return ::open(path, flags, mode); },
        .read = [](int fd, void* buf, std::size_t count) { return ::read(fd, buf, count); },
        .write = [](int fd, const void* buf, std::size_t count) { return ::write(fd, buf, count); },
        .fsync = [](int fd) { return ::fsync(fd); },
        .fdatasync = [](int fd) { return ::fdatasync(fd); },
        .fchmod = [](int fd, mode_t mode) { return ::fchmod(fd, mode); },
        .rename = [](const char* from, const char* to) { return ::rename(from, to); },
        .close = [](int fd) { return ::close(fd); },
        .unlink = [](const char* path) { return ::unlink(path); },
    };
    return *ops;
}

}  // namespace mlk::util
