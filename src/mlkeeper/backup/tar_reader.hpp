// Reads an archive written by TarWriter (or any .tar.zst / .tar.gz): raw
// bytes are hashed as they are read (so one pass yields the archive's
// SHA-256), decompressed by our Decompressor (multi-member gzip, zstd frame
// checksums, truncation detection) and parsed by libarchive. Three stages
// overlap, with a few MiB between them: one thread reads and hashes the file,
// one decompresses, and the caller parses the tar and hashes or writes entries.
// Thread safety: one reader per thread (it owns its two worker threads).
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "mlkeeper/backup/codec.hpp"
#include "mlkeeper/crypto/age_stream.hpp"
#include "mlkeeper/util/chunk_pipe.hpp"
#include "mlkeeper/util/sha256.hpp"

struct archive;
struct archive_entry;

namespace mlk::backup {

// An encrypted archive and no identity or passphrase to open it.
class NoKeyError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// kSkip: the file's SHA-256 is not computed (finish() returns ""). Only for an encrypted archive
// whose every byte the decryption authenticates (see verify_written).
enum class RawHash { kCompute, kSkip };

class TarReader {
  public:
    // Throws std::system_error when the file cannot be opened,
    // std::runtime_error when it is not a zstd/gzip stream. An encrypted archive (".age") is
    // decrypted with `keys`: without usable keys it throws NoKeyError, with wrong ones
    // crypto::AgeError (kNoIdentityMatched, kBadPassphrase), and later reads throw AgeError for
    // tampered or truncated data. `name` is the archive's name, which says whether it is
    // encrypted (default: the file's own name; a temp file being written passes the name it will
    // get).
    explicit TarReader(const std::filesystem::path& archive,
                       const crypto::DecryptWith* keys = nullptr, std::string_view name = {},
                       RawHash raw_hash = RawHash::kCompute);
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
    // the archive file's SHA-256 ("" with RawHash::kSkip).
    std::string finish();

    std::uint64_t raw_bytes() const { return raw_bytes_; }
    struct archive* handle() {
        return a_.get();
    }

  private:
    void read_raw();
    std::size_t next_raw(void* buf, std::size_t cap);
    void decrypt_ahead();
    std::size_t next_plain(void* buf, std::size_t cap);
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
    RawHash raw_hash_;
    std::uint64_t raw_bytes_ = 0;
    std::unique_ptr<crypto::AgeDecryptor> age_;  // encrypted archives only
    std::unique_ptr<Decompressor> decomp_;
    util::ChunkPipe raw_pipe_;                // file bytes, read and hashed by raw_reader_
    std::optional<util::Chunk> raw_current_;  // the chunk the decompressor is reading
    std::size_t raw_offset_ = 0;
    // Encrypted archives: decrypted (still compressed) bytes from decrypt_ahead_, so decryption
    // runs beside reading and decompression instead of on either thread.
    util::ChunkPipe plain_pipe_;
    std::optional<util::Chunk> plain_current_;  // the chunk the decompressor is reading
    std::size_t plain_offset_ = 0;
    util::ChunkPipe pipe_;                // decompressed bytes, from read_ahead_
    std::optional<util::Chunk> current_;  // the chunk libarchive is reading
    std::jthread raw_reader_;
    std::jthread decrypt_ahead_;
    std::jthread read_ahead_;
    std::unique_ptr<struct archive, ArchiveFree> a_;
    std::exception_ptr callback_error_;
};

}  // namespace mlk::backup
