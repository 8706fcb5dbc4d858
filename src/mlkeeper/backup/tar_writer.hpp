// Writes a POSIX pax tar stream through libarchive into a Compressor, one
// filesystem entry at a time, hashing file content as it streams (constant
// memory). Symlinks are stored as symlinks, hard links as links to the first
// path, sparse files as sparse entries; modes, owners and mtimes are kept.
// Thread safety: one writer per thread.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mlkeeper/backup/codec.hpp"
#include "mlkeeper/backup/manifest.hpp"

struct archive;
struct archive_entry;
struct archive_entry_linkresolver;

namespace mlk::backup {

// What happened while a file was read.
enum class ReadOutcome { kStable, kChanged };

class TarWriter {
  public:
    explicit TarWriter(Compressor& out);
    ~TarWriter();
    TarWriter(const TarWriter&) = delete;
    TarWriter& operator=(const TarWriter&) = delete;

    // Called with the number of content bytes just read (for progress).
    void set_progress(std::function<void(std::uint64_t)> on_bytes) {
        on_bytes_ = std::move(on_bytes);
    }

    // Adds `path` (lstat `st`) under the name `rel`. For regular files the
    // content is read, hashed and stored; a file that changes while being
    // read is stored as read (padded or cut to the size in its header) and
    // reported as kChanged. Throws std::system_error when the file cannot be
    // opened or read, and on archive/output errors.
    ReadOutcome add(const std::string& path, const std::string& rel, const struct stat& st,
                    ManifestEntry& out);

    // Adds `rel` as a hard link to `target`, a path stored in an earlier
    // archive of an incremental chain (restore extracts that one first).
    void add_hardlink(const std::string& rel, const std::string& target, const struct stat& st,
                      ManifestEntry& out);

    // Writes the end-of-archive blocks. Must be called once after the last add().
    void close();

  private:
    void check(int rc, const char* what);
    // An entry with the metadata every type shares; fills the same in `out`.
    struct archive_entry* new_entry(const std::string& rel, const struct stat& st,
                                    ManifestEntry& out);
    const std::string& user_name(uid_t uid);
    const std::string& group_name(gid_t gid);
    ReadOutcome write_file_data(int fd, const std::string& path, const struct stat& st,
                                const std::vector<std::pair<std::int64_t, std::int64_t>>& regions,
                                ManifestEntry& out);
    static long write_cb(struct archive*, void* self, const void* buf, std::size_t n);

    struct ArchiveFree {
        void operator()(struct archive* a) const;
    };
    struct ResolverFree {
        void operator()(archive_entry_linkresolver* r) const;
    };

    Compressor& out_;
    std::unique_ptr<struct archive, ArchiveFree> a_;
    std::unique_ptr<archive_entry_linkresolver, ResolverFree> links_;
    std::exception_ptr callback_error_;
    std::function<void(std::uint64_t)> on_bytes_;
    std::map<uid_t, std::string> users_;
    std::map<gid_t, std::string> groups_;
    std::unique_ptr<char[]> buf_;
    bool closed_ = false;
};

// Data regions of a file that has holes; empty when it has none (or the
// filesystem cannot tell).
std::vector<std::pair<std::int64_t, std::int64_t>> data_regions(int fd, std::int64_t size);

}  // namespace mlk::backup
