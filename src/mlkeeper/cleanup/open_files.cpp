#include "mlkeeper/cleanup/open_files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "mlkeeper/cleanup/safety.hpp"

namespace mlk::cleanup {

bool OpenWriteIndex::contains(dev_t dev, ino_t ino) const {
    return set_.count(Key{static_cast<std::uint64_t>(dev), static_cast<std::uint64_t>(ino)}) != 0;
}

void OpenWriteIndex::add(dev_t dev, ino_t ino) {
    set_.insert(Key{static_cast<std::uint64_t>(dev), static_cast<std::uint64_t>(ino)});
}

long parse_fdinfo_flags(const char* text) {
    const char* p = std::strstr(text, "flags:");
    if (p == nullptr) {
        return -1;
    }
    p += 6;
    char* end = nullptr;
    long v = std::strtol(p, &end, 8);
    return end == p ? -1 : v;
}

namespace {

struct DirCloser {
    void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

bool all_digits(const char* s) {
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; ++s) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

DirPtr open_subdir(int parent, const char* name, Fd* keep) {
    Fd fd(::openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) {
        return nullptr;
    }
    Fd dup(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!dup.valid()) {
        return nullptr;
    }
    DirPtr d(::fdopendir(dup.get()));
    if (d) {
        dup.release();
        *keep = std::move(fd);
    }
    return d;
}

}  // namespace

OpenWriteIndex OpenWriteIndex::build(const std::filesystem::path& proc_root) {
    OpenWriteIndex idx;
    Fd proc(::open(proc_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!proc.valid()) {
        return idx;
    }
    Fd proc_dup(::fcntl(proc.get(), F_DUPFD_CLOEXEC, 0));
    DirPtr pd(::fdopendir(proc_dup.get()));
    if (!pd) {
        return idx;
    }
    proc_dup.release();
    char buf[512];
    while (dirent* pe = ::readdir(pd.get())) {
        if (!all_digits(pe->d_name)) {
            continue;
        }
        Fd pid_fd(::openat(proc.get(), pe->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!pid_fd.valid()) {
            continue;  // exited
        }
        Fd info_fd, fd_fd;
        DirPtr info = open_subdir(pid_fd.get(), "fdinfo", &info_fd);
        fd_fd = Fd(::openat(pid_fd.get(), "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!info || !fd_fd.valid()) {
            ++idx.unreadable_;
            continue;
        }
        while (dirent* fe = ::readdir(info.get())) {
            if (!all_digits(fe->d_name)) {
                continue;
            }
            Fd f(::openat(info_fd.get(), fe->d_name, O_RDONLY | O_CLOEXEC));
            if (!f.valid()) {
                continue;
            }
            ssize_t n = ::read(f.get(), buf, sizeof buf - 1);
            if (n <= 0) {
                continue;
            }
            buf[n] = '\0';
            long flags = parse_fdinfo_flags(buf);
            if (flags < 0) {
                continue;
            }
            int acc = static_cast<int>(flags) & O_ACCMODE;
            if (acc != O_WRONLY && acc != O_RDWR) {
                continue;
            }
            struct stat st {};
            // Following the magic link stats the open file itself, even if it was renamed.
            if (::fstatat(fd_fd.get(), fe->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
                idx.add(st.st_dev, st.st_ino);
            }
        }
    }
    return idx;
}

}  // namespace mlk::cleanup
