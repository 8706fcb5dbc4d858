// Streaming compression and decompression of backup archives (zstd and multi-member gzip) in
// constant memory; compressed bytes go to a ByteSink and come back through a pull Source.
// Thread safety: a Compressor or Decompressor belongs to one thread (it may run its own worker
// threads inside); the sink is only ever called from the thread that calls write()/finish().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

namespace mlk::backup {

enum class Codec { kZstd, kGzip };

// ".tar.zst" / ".tar.gz".
std::string_view extension(Codec codec);
// "zstd" / "gzip".
std::string_view codec_name(Codec codec);
// The inverse of codec_name; nullopt for anything else.
std::optional<Codec> codec_from_name(std::string_view name);

// Where compressed bytes go (the archive file, a test buffer...). write() must take all `n`
// bytes or throw; its exception reaches the caller of Compressor::write()/finish() unchanged.
class ByteSink {
  public:
    virtual ~ByteSink() = default;
    virtual void write(const void* data, std::size_t n) = 0;
};

// Uncompressed bytes in, compressed bytes out to the sink.
//
// After any exception from write() or finish() the compressor is broken: further calls throw
// std::logic_error, and the sink's content is incomplete. Destroying a compressor without
// finish() (after an error, say) stops and joins its threads without writing anything more;
// the destructor never blocks for longer than the block being compressed.
class Compressor {
  public:
    virtual ~Compressor() = default;
    Compressor(const Compressor&) = delete;
    Compressor& operator=(const Compressor&) = delete;

    virtual void write(const void* data, std::size_t n) = 0;
    // Flushes everything and ends the stream; once. Further write()/finish() throw logic_error.
    virtual void finish() = 0;

    // Uncompressed bytes accepted so far / compressed bytes handed to the sink so far.
    std::uint64_t bytes_in() const { return bytes_in_; }
    std::uint64_t bytes_out() const { return bytes_out_; }

  protected:
    Compressor() = default;
    std::uint64_t bytes_in_ = 0;
    std::uint64_t bytes_out_ = 0;
};

// gzip input is cut into blocks of this size, each compressed as an independent gzip member (like
// `pigz --independent`): the output is the same for any thread count, and a damaged member does
// not take the rest of the archive with it. Measured at level 6 (256 KiB .. 4 MiB): CPU cost is
// flat; on log-like text the ratio is 0.302 / 0.300 / 0.299 for 256 KiB / 1 MiB / 4 MiB, so
// larger blocks buy 0.2% for 4x the memory ((2*threads+1) blocks of input and output).
inline constexpr std::size_t kGzipBlockSize = std::size_t{1} << 20;

// Threads above this are clamped (zstd's own limit on 64-bit builds).
inline constexpr unsigned kMaxCompressThreads = 256;

// Makes a streaming compressor.
//  - zstd: one frame with a content checksum, compressed by `threads` zstd worker threads
//    (ZSTD_c_nbWorkers); `level` within zstd's range (negative fast levels included).
//  - gzip: independent kGzipBlockSize members compressed on `threads` worker threads, at most
//    2*threads blocks in flight; `threads` == 1 compresses inline. `level` 1..9.
// threads == 0 means std::thread::hardware_concurrency(). An invalid level throws
// std::invalid_argument. `out` must outlive the compressor.
std::unique_ptr<Compressor> make_compressor(Codec codec, int level, unsigned threads,
                                            ByteSink& out);

// Pulls compressed bytes from a Source and yields the decompressed bytes. The codec is detected
// from the magic bytes (zstd 28 B5 2F FD, gzip 1F 8B); multi-frame zstd (skippable frames
// included) and multi-member gzip are read to the end. Checksums are verified (zstd content
// checksum when the frame has one, gzip CRC-32 and length), and anything after the last
// frame/member is an error, so read() returns 0 only after the whole stream checked out.
//
// Errors: std::runtime_error with a clear message for data that is not zstd/gzip, corrupt data,
// a checksum mismatch, trailing garbage, or a truncated stream ("compressed stream ends early:
// the archive is truncated"). Exceptions from the source propagate unchanged. After an error,
// every further read() rethrows it.
class Decompressor {
  public:
    // Fills up to `cap` bytes of `buf` and returns how many; 0 means end of input.
    using Source = std::function<std::size_t(void* buf, std::size_t cap)>;

    // Reads the first bytes from `in` to detect the codec; throws as read() does.
    explicit Decompressor(Source in);
    ~Decompressor();
    Decompressor(Decompressor&&) noexcept;
    Decompressor& operator=(Decompressor&&) noexcept;

    // Returns 1..cap decompressed bytes, or 0 only at a clean end of the stream. cap must be > 0
    // (std::invalid_argument otherwise).
    std::size_t read(void* buf, std::size_t cap);
    Codec codec() const;

  private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

namespace detail {

// Test seam for the gzip compressor: a chosen block size, and a hook that runs on the thread that
// compresses block number `block_index` (0-based) just before it does; an exception from the hook
// behaves like a compression failure.
std::unique_ptr<Compressor> make_gzip_compressor(
    int level, unsigned threads, ByteSink& out, std::size_t block_size,
    std::function<void(std::uint64_t block_index)> before_block = {});

}  // namespace detail

}  // namespace mlk::backup
