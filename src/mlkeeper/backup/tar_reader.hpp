// Reads an archive written by TarWriter (or any .tar.zst / .tar.gz): raw
// bytes are hashed as they are read (so one pass yields the archive's
// SHA-256), decompressed by our Decompressor (multi-member gzip, zstd frame
// checksums, truncation detection) and parsed by libarchive. Reading, raw
// hashing and decompression run ahead on a thread of their own (a few MiB),
// so they overlap with the caller's per-entry hashing or writing.
// Thread safety: one reader per thread (it owns its read-ahead thread).
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "mlkeeper/backup/codec.hpp"
#include "mlkeeper/util/chunk_pipe.hpp"
#include "mlkeeper/util/sha256.hpp"

struct archive;
struct archive_entry;

namespace mlk::backup {

class TarReader {
  public:
    // Throws std::system_error when the file cannot be opened,
    // std::runtime_error when it is not a zstd/gzip stream.
    explicit TarReader(const std::filesystem::path& archive);
    ~TarReader();
    TarReader(const TarReader&) = delete;
    TarReader& operator=(const TarReader&) = delete;

    // The next entry, or nullptr at the end of the tar. Valid until the next
    // call. Throws std::runtime_error on corrupt data.
    archive_entry* next();

    // Streams the current entry's logical content (holes as zeros, up to
    // `entry_size`) to `sink` in order; returns the number of bytes.
    std::uint64_t read_data(std::uint64_t entry_size,
                            const std::function<void(const char*, std::size_t)>& sink);

    // Low-level access for extraction: the next data block of the current
    // entry (false at its end).
    bool read_block(const void** buf, std::size_t* size, std::int64_t* offset);

    // Reads whatever follows the tar's end (padding) so the whole file has
    // been hashed and the compressed stream checked for a clean end; returns
    // the archive file's SHA-256.
    std::string finish();

    std::uint64_t raw_bytes() const { return raw_bytes_; }
    struct archive* handle() {
        return a_.get();
    }

  private:
    void read_ahead();
    static long read_cb(struct archive*, void* self, const void** buf);
    void check(int rc, const char* what);

    struct Fd {
        int fd = -1;
        ~Fd();
    };
    struct ArchiveFree {
        void operator()(struct archive* a) const;
    };

    Fd fd_;
    std::filesystem::path path_;
    util::Sha256 raw_sha_;
    std::uint64_t raw_bytes_ = 0;
    std::unique_ptr<Decompressor> decomp_;
    util::ChunkPipe pipe_;
    std::optional<util::Chunk> current_;  // the chunk libarchive is reading
    std::jthread read_ahead_;
    std::unique_ptr<struct archive, ArchiveFree> a_;
    std::exception_ptr callback_error_;
};

}  // namespace mlk::backup
