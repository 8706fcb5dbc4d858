#include "mlkeeper/util/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace mlk::util {
namespace {

[[noreturn]] void throw_errno(int err, const std::string& message) {
    throw std::system_error(err, std::generic_category(), message);
}

// 64 random bits, mixed with the pid and a counter so that names differ even if the random
// source were to repeat across fork()ed processes or threads. O_EXCL catches any collision.
std::string random_suffix() {
    static std::atomic<std::uint64_t> counter{0};
    std::random_device rd;
    std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    v ^= static_cast<std::uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ULL;
    v += counter.fetch_add(1, std::memory_order_relaxed) * 0xBF58476D1CE4E5B9ULL;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

std::filesystem::path directory_of(const std::filesystem::path& p) {
    std::filesystem::path dir = p.parent_path();
    return dir.empty() ? std::filesystem::path(".") : dir;
}

int open_retrying(const FsOps& ops, const char* path, int flags, mode_t mode) {
    int fd;
    do {
        fd = ops.open(path, flags, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

// Owns an fd for read_file; close errors on a read-only fd carry no information.
class FdCloser {
  public:
    FdCloser(const FsOps& ops, int fd) : ops_(ops), fd_(fd) {}
    ~FdCloser() { ops_.close(fd_); }
    FdCloser(const FdCloser&) = delete;
    FdCloser& operator=(const FdCloser&) = delete;

  private:
    const FsOps& ops_;
    int fd_;
};

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::filesystem::path dest, mode_t mode, const FsOps& ops,
                                   Durability durability)
    : dest_(std::move(dest)), ops_(&ops), durability_(durability) {
    const std::string name = dest_.filename().string();
    if (name.empty() || name == "." || name == "..") {
        throw_errno(EINVAL, "cannot write " + dest_.string() + " (not a file name)");
    }
    // A few attempts in case a name is already taken (a stale temp from a crash, say).
    constexpr int kAttempts = 16;
    for (int attempt = 0;; ++attempt) {
        temp_path_ = dest_.parent_path() / ("." + name + ".tmp." + random_suffix());
        // 0600 until fchmod below, so a file meant to be private is never briefly readable.
        fd_ =
            open_retrying(*ops_, temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd_ >= 0) {
            break;
        }
        if (errno != EEXIST || attempt + 1 == kAttempts) {
            const int err = errno;
            state_ = State::kFailed;
            throw_errno(err, "cannot create temporary file " + temp_path_.string());
        }
    }
    if (ops_->fchmod(fd_, mode) != 0) {
        fail(errno, "cannot set mode of " + temp_path_.string());
    }
}

AtomicFileWriter::~AtomicFileWriter() {
    if (state_ == State::kOpen) {
        abort();
    }
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : dest_(std::move(other.dest_)),
      temp_path_(std::move(other.temp_path_)),
      ops_(other.ops_),
      durability_(other.durability_),
      fd_(std::exchange(other.fd_, -1)),
      state_(std::exchange(other.state_, State::kMovedFrom)),
      written_(other.written_),
      flushed_(other.flushed_) {}

AtomicFileWriter& AtomicFileWriter::operator=(AtomicFileWriter&& other) noexcept {
    if (this != &other) {
        if (state_ == State::kOpen) {
            abort();
        }
        dest_ = std::move(other.dest_);
        temp_path_ = std::move(other.temp_path_);
        ops_ = other.ops_;
        durability_ = other.durability_;
        fd_ = std::exchange(other.fd_, -1);
        state_ = std::exchange(other.state_, State::kMovedFrom);
        written_ = other.written_;
        flushed_ = other.flushed_;
    }
    return *this;
}

void AtomicFileWriter::require_open(const char* what) const {
    if (state_ != State::kOpen) {
        throw std::logic_error(std::string("AtomicFileWriter::") + what + " for " + dest_.string() +
                               " after commit, failure or move");
    }
}

void AtomicFileWriter::abort() noexcept {
    if (fd_ >= 0) {
        ops_->close(fd_);
        fd_ = -1;
    }
    ops_->unlink(temp_path_.c_str());
    state_ = State::kFailed;
}

void AtomicFileWriter::fail(int err, const std::string& message) {
    abort();
    throw_errno(err, message);
}

void AtomicFileWriter::write(std::string_view data) {
    require_open("write");
    const char* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
        const ssize_t n = ops_->write(fd_, p, left);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail(errno, "cannot write " + temp_path_.string());
        }
        if (n == 0) {
            // No progress and no error: retrying could spin forever.
            fail(EIO, "cannot write " + temp_path_.string() + " (write made no progress)");
        }
        p += n;
        left -= static_cast<std::size_t>(n);
        written_ += static_cast<std::uint64_t>(n);
    }
    // Start writeback of what is complete so far without waiting for it, so
    // the disk works while we compute and commit()'s fsync finds little left
    // (a 1 GiB archive: ~1 s of fsync otherwise). Only a hint: errors surface
    // at fsync.
    if (durability_ == Durability::kFsync && written_ - flushed_ >= kWritebackStep) {
        (void)::sync_file_range(fd_, static_cast<off_t>(flushed_),
                                static_cast<off_t>(written_ - flushed_), SYNC_FILE_RANGE_WRITE);
        flushed_ = written_;
    }
}

void AtomicFileWriter::sync() const {
    require_open("sync");
    int rc;
    do {
        rc = ops_->fsync(fd_);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        throw_errno(errno, "cannot fsync " + temp_path_.string());
    }
}

void AtomicFileWriter::commit() {
    require_open("commit");
    if (durability_ == Durability::kFsync) {
        int rc;
        do {
            rc = ops_->fsync(fd_);
        } while (rc != 0 && errno == EINTR);
        if (rc != 0) {
            fail(errno, "cannot fsync " + temp_path_.string());
        }
    }
    // Linux releases the fd even when close() fails, so never close it twice.
    const int fd = std::exchange(fd_, -1);
    if (ops_->close(fd) != 0 && errno != EINTR) {
        // Deferred write errors (NFS, some FUSE) surface here: the temp content is suspect.
        fail(errno, "cannot close " + temp_path_.string());
    }
    if (ops_->rename(temp_path_.c_str(), dest_.c_str()) != 0) {
        fail(errno, "cannot rename " + temp_path_.string() + " to " + dest_.string());
    }
    state_ = State::kCommitted;

    if (durability_ == Durability::kFsync) {
        // The rename is only durable once the directory entry is on disk.
        const std::filesystem::path dir = directory_of(dest_);
        const std::string what =
            "cannot fsync directory " + dir.string() + " after replacing " + dest_.string();
        const int dir_fd = open_retrying(*ops_, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (dir_fd < 0) {
            throw_errno(errno, what);
        }
        int rc;
        do {
            rc = ops_->fsync(dir_fd);
        } while (rc != 0 && errno == EINTR);
        const int err = errno;
        ops_->close(dir_fd);
        if (rc != 0) {
            throw_errno(err, what);
        }
    }
}

void write_file_atomic(const std::filesystem::path& dest, std::string_view data, mode_t mode,
                       const FsOps& ops, Durability durability) {
    AtomicFileWriter writer(dest, mode, ops, durability);
    writer.write(data);
    writer.commit();
}

std::string read_file(const std::filesystem::path& path, const FsOps& ops) {
    return read_file_prefix(path, std::numeric_limits<std::size_t>::max(), ops);
}

std::string read_file_prefix(const std::filesystem::path& path, std::size_t limit,
                             const FsOps& ops) {
    const int fd = open_retrying(ops, path.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        throw_errno(errno, "cannot open " + path.string());
    }
    FdCloser closer(ops, fd);
    constexpr std::size_t kChunk = 64 * 1024;
    std::string out;
    std::size_t size = 0;
    while (size < limit) {
        if (out.size() < size + kChunk) {
            out.resize(std::min(std::max(size + kChunk, out.size() * 2), limit));
        }
        const ssize_t n = ops.read(fd, out.data() + size, out.size() - size);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw_errno(errno, "cannot read " + path.string());
        }
        if (n == 0) {
            break;
        }
        size += static_cast<std::size_t>(n);
    }
    out.resize(size);
    return out;
}

}  // namespace mlk::util
