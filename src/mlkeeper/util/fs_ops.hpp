// The POSIX file calls that crash-safe writes depend on, gathered in one table so tests can
// inject faults (disk full after N bytes, failed rename, EIO on fsync) without touching a disk.
// Thread safety: an FsOps is immutable once built; the real table is safe from any thread, and a
// test table is as thread-safe as the callables put into it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>

namespace mlk::util {

// Every member behaves like the POSIX call of the same name: it returns -1 and sets errno on
// failure. std::function (rather than raw function pointers) lets a test capture state, e.g. a
// byte budget after which write() reports ENOSPC.
struct FsOps {
    std::function<int(const char* path, int flags, mode_t mode)> open;
    std::function<ssize_t(int fd, void* buf, std::size_t count)> read;
    std::function<ssize_t(int fd, const void* buf, std::size_t count)> write;
    std::function<int(int fd)> fsync;
    std::function<int(int fd)> fdatasync;
    std::function<int(int fd, mode_t mode)> fchmod;
    std::function<int(const char* from, const char* to)> rename;
    std::function<int(int fd)> close;
    std::function<int(const char* path)> unlink;
};

// The table that calls the operating system. Copy it and replace members to inject faults.
const FsOps& real_fs_ops();

}  // namespace mlk::util
