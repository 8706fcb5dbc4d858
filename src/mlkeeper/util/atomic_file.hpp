// Crash-safe file replacement: data goes to a temporary file beside the destination, which is
// fsynced and renamed over it, so readers and crashes only ever see the old or the new content.
// Thread safety: one AtomicFileWriter belongs to one thread; writers for the same destination may
// run concurrently in threads or processes (the last rename wins, and each result is complete).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "mlkeeper/util/fs_ops.hpp"

namespace mlk::util {

enum class Durability {
    kFsync,    // fsync the file before the rename and the directory after it
    kNoFsync,  // skip both fsyncs: atomic against other processes, not against power loss.
               // Only for tests and benchmarks.
};

// Streams data into "<dir>/.<name>.tmp.<random>" in the destination's directory; commit() fsyncs
// the file, renames it over the destination and fsyncs the directory.
//
// Failure guarantees: a failed write() or commit() removes the temp file at once and leaves an
// existing destination untouched, with one exception: if only the final directory fsync fails,
// the rename has already happened, so the destination holds the NEW content but it may not
// survive a power loss; commit() still throws. Destruction without commit() removes the temp file.
// If the process is killed (SIGKILL, power loss) before commit, the destination is intact but a
// stale ".<name>.tmp.*" file may remain in the directory; nothing removes it automatically,
// because a live writer in another process looks the same.
//
// The destination ends with exactly `mode` (set with fchmod, so the umask does not apply).
// A symlink at the destination is replaced by the regular file, not followed.
// `ops` must outlive the writer.
class AtomicFileWriter {
  public:
    explicit AtomicFileWriter(std::filesystem::path dest, mode_t mode = 0644,
                              const FsOps& ops = real_fs_ops(),
                              Durability durability = Durability::kFsync);
    ~AtomicFileWriter();

    AtomicFileWriter(AtomicFileWriter&& other) noexcept;
    AtomicFileWriter& operator=(AtomicFileWriter&& other) noexcept;
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    // Writes all of `data` (retrying short writes and EINTR). Throws std::system_error naming the
    // temp path on failure; std::logic_error if called after commit() or a failure.
    void write(std::string_view data);

    // fsyncs the temp file now, so that commit()'s own fsync finds nothing left to write: lets a
    // caller overlap the wait for the disk with other work (reading the temp file back, say).
    // May run on another thread as long as nobody calls write() or commit() meanwhile. Throws
    // std::system_error on failure and leaves the writer as it was (commit() would fail too).
    void sync() const;

    // Makes the new content the destination. Throws std::system_error naming the path on failure
    // (see the class comment for what is left behind); std::logic_error if called twice or after
    // a failure.
    void commit();

    const std::filesystem::path& dest() const { return dest_; }
    const std::filesystem::path& temp_path() const { return temp_path_; }

  private:
    enum class State { kOpen, kCommitted, kFailed, kMovedFrom };

    void require_open(const char* what) const;
    // Closes the fd (ignoring errors) and unlinks the temp file; leaves state_ == kFailed.
    void abort() noexcept;
    [[noreturn]] void fail(int err, const std::string& message);

    std::filesystem::path dest_;
    std::filesystem::path temp_path_;
    const FsOps* ops_;
    Durability durability_;
    int fd_ = -1;
    State state_ = State::kOpen;
    static constexpr std::uint64_t kWritebackStep = std::uint64_t{8} << 20;
    std::uint64_t written_ = 0;  // bytes written so far
    std::uint64_t flushed_ = 0;  // bytes handed to writeback so far
};

// Replaces `dest` with `data` through an AtomicFileWriter. Throws std::system_error naming the
// path on failure, leaving an existing `dest` untouched.
void write_file_atomic(const std::filesystem::path& dest, std::string_view data, mode_t mode = 0644,
                       const FsOps& ops = real_fs_ops(),
                       Durability durability = Durability::kFsync);

// Reads a whole file. Throws std::system_error naming the path on failure.
std::string read_file(const std::filesystem::path& path, const FsOps& ops = real_fs_ops());
// At most the first `limit` bytes of a file (all of it when it is shorter).
std::string read_file_prefix(const std::filesystem::path& path, std::size_t limit,
                             const FsOps& ops = real_fs_ops());

}  // namespace mlk::util
