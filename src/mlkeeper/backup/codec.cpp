#include "mlkeeper/backup/codec.hpp"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace mlk::backup {
namespace {

constexpr const char* kTruncated = "compressed stream ends early: the archive is truncated";

unsigned resolve_threads(unsigned threads) {
    if (threads == 0) {
        threads = std::max(1U, std::thread::hardware_concurrency());
    }
    return std::min(threads, kMaxCompressThreads);
}

// Shared state machine for write()/finish(): open -> finished, or open -> broken on any error.
class StreamState {
  public:
    void require_open(const char* what) const {
        if (state_ == State::kFinished) {
            throw std::logic_error(std::string("Compressor::") + what + " after finish()");
        }
        if (state_ == State::kBroken) {
            throw std::logic_error(std::string("Compressor::") + what + " after a failure");
        }
    }
    void set_finished() { state_ = State::kFinished; }
    void set_broken() { state_ = State::kBroken; }

  private:
    enum class State { kOpen, kFinished, kBroken };
    State state_ = State::kOpen;
};

// Runs `f`; on any exception marks the stream broken and rethrows the original.
template <typename F>
void guarded(StreamState& state, F&& f) {
    try {
        std::forward<F>(f)();
    } catch (...) {
        state.set_broken();
        throw;
    }
}

// ---------------------------------------------------------------------------------------------
// zstd

struct CCtxDeleter {
    void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
    void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

void check_zstd(std::size_t ret, const char* what) {
    if (ZSTD_isError(ret)) {
        throw std::runtime_error(std::string("zstd ") + what + ": " + ZSTD_getErrorName(ret));
    }
}

constexpr int kZstdJobSize = 2 << 20;

class ZstdCompressor final : public Compressor {
  public:
    ZstdCompressor(int level, unsigned threads, ByteSink& out)
        : out_(out), out_buf_(ZSTD_CStreamOutSize()) {
        const ZSTD_bounds b = ZSTD_cParam_getBounds(ZSTD_c_compressionLevel);
        if (ZSTD_isError(b.error) || level < b.lowerBound || level > b.upperBound) {
            throw std::invalid_argument("zstd level " + std::to_string(level) +
                                        " is out of range " + std::to_string(b.lowerBound) + ".." +
                                        std::to_string(b.upperBound));
        }
        cctx_.reset(ZSTD_createCCtx());
        if (!cctx_) {
            throw std::bad_alloc();
        }
        check_zstd(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, level),
                   "compression level");
        check_zstd(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_checksumFlag, 1), "checksum flag");
        // Fails only if libzstd was built without multithreading support.
        check_zstd(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_nbWorkers,
                                          static_cast<int>(resolve_threads(threads))),
                   "worker threads");
        // zstd's default job at level 3 is 8 MiB, and it keeps several jobs of
        // input and output per worker: 94 MB peak RSS for a 1 GiB tree. 2 MiB
        // jobs measured 46 MB, the same speed and 0.002% more output.
        check_zstd(ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_jobSize, kZstdJobSize), "job size");
    }

    void write(const void* data, std::size_t n) override {
        state_.require_open("write");
        guarded(state_, [&] {
            ZSTD_inBuffer in{data, n, 0};
            while (in.pos < in.size) {
                compress(in, ZSTD_e_continue);
            }
            bytes_in_ += n;
        });
    }

    void finish() override {
        state_.require_open("finish");
        guarded(state_, [&] {
            ZSTD_inBuffer in{nullptr, 0, 0};
            while (compress(in, ZSTD_e_end) != 0) {
            }
            state_.set_finished();
        });
    }

  private:
    // One ZSTD_compressStream2 call; sends whatever it produced to the sink. Returns zstd's
    // "bytes left to flush" (0 once an e_end is complete).
    std::size_t compress(ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
        ZSTD_outBuffer o{out_buf_.data(), out_buf_.size(), 0};
        const std::size_t left = ZSTD_compressStream2(cctx_.get(), &o, &in, mode);
        check_zstd(left, "compression failed");
        if (o.pos > 0) {
            out_.write(out_buf_.data(), o.pos);
            bytes_out_ += o.pos;
        }
        return left;
    }

    ByteSink& out_;
    std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx_;
    std::vector<unsigned char> out_buf_;
    StreamState state_;
};

// ---------------------------------------------------------------------------------------------
// gzip

// A byte buffer that is not zero-filled on growth (deflate overwrites it anyway).
struct Buffer {
    std::unique_ptr<unsigned char[]> data;
    std::size_t cap = 0;
    std::size_t len = 0;

    void reserve(std::size_t n) {
        if (n > cap) {
            data = std::make_unique_for_overwrite<unsigned char[]>(n);
            cap = n;
        }
    }
};

// An initialised deflate stream producing gzip members; reset per member, which is much cheaper
// than deflateInit2 (it keeps the ~300 KiB of state).
class GzipMemberEncoder {
  public:
    explicit GzipMemberEncoder(int level) {
        // windowBits 15+16: gzip wrapper (header with mtime 0, so output is reproducible).
        const int rc = deflateInit2(&strm_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
        if (rc == Z_MEM_ERROR) {
            throw std::bad_alloc();
        }
        if (rc != Z_OK) {
            throw std::runtime_error(std::string("zlib deflateInit2 failed: ") +
                                     (strm_.msg != nullptr ? strm_.msg : std::to_string(rc)));
        }
    }
    ~GzipMemberEncoder() { deflateEnd(&strm_); }
    GzipMemberEncoder(const GzipMemberEncoder&) = delete;
    GzipMemberEncoder& operator=(const GzipMemberEncoder&) = delete;

    // Compresses in.data[0..in.len) into one complete gzip member in `out`.
    void encode(const Buffer& in, Buffer& out) {
        if (deflateReset(&strm_) != Z_OK) {
            throw std::runtime_error("zlib deflateReset failed");
        }
        // deflateBound covers the gzip header and trailer, so one Z_FINISH call always suffices.
        out.reserve(deflateBound(&strm_, static_cast<uLong>(in.len)));
        strm_.next_in = in.data.get();
        strm_.avail_in = static_cast<uInt>(in.len);
        strm_.next_out = out.data.get();
        strm_.avail_out = static_cast<uInt>(out.cap);
        const int rc = deflate(&strm_, Z_FINISH);
        if (rc != Z_STREAM_END) {
            throw std::runtime_error("zlib deflate failed: " + std::to_string(rc));
        }
        out.len = out.cap - strm_.avail_out;
    }

  private:
    z_stream strm_{};
};

struct GzipJob {
    std::uint64_t index = 0;
    Buffer in;
    Buffer out;
    bool done = false;  // guarded by the compressor's mutex
    std::exception_ptr error;
};

class GzipCompressor final : public Compressor {
  public:
    GzipCompressor(int level, unsigned threads, ByteSink& out, std::size_t block_size,
                   std::function<void(std::uint64_t)> before_block)
        : out_(out),
          level_(level),
          block_size_(block_size),
          before_block_(std::move(before_block)) {
        if (level < 1 || level > 9) {
            throw std::invalid_argument("gzip level " + std::to_string(level) +
                                        " is out of range 1..9");
        }
        // A member's length must fit zlib's 32-bit counters.
        if (block_size_ == 0 || block_size_ > (std::size_t{1} << 30)) {
            throw std::invalid_argument("gzip block size must be 1 byte .. 1 GiB");
        }
        threads = resolve_threads(threads);
        max_in_flight_ = 2 * static_cast<std::size_t>(threads);
        filling_ = new_job();
        if (threads == 1) {
            inline_encoder_ = std::make_unique<GzipMemberEncoder>(level_);
            return;
        }
        try {
            for (unsigned i = 0; i < threads; ++i) {
                workers_.emplace_back([this] { worker_loop(); });
            }
        } catch (...) {
            stop_workers();
            throw;
        }
    }

    ~GzipCompressor() override { stop_workers(); }

    void write(const void* data, std::size_t n) override {
        state_.require_open("write");
        guarded(state_, [&] {
            const auto* p = static_cast<const unsigned char*>(data);
            std::size_t left = n;
            while (left > 0) {
                Buffer& in = filling_->in;
                const std::size_t take = std::min(left, block_size_ - in.len);
                std::memcpy(in.data.get() + in.len, p, take);
                in.len += take;
                p += take;
                left -= take;
                bytes_in_ += take;
                if (in.len == block_size_) {
                    submit();
                }
            }
        });
    }

    void finish() override {
        state_.require_open("finish");
        guarded(state_, [&] {
            // An empty stream still gets one (empty) member: a zero-byte file is not valid gzip.
            if (filling_->in.len > 0 || next_index_ == 0) {
                submit();
            }
            while (!in_order_.empty()) {
                retire_oldest();
            }
            state_.set_finished();
        });
    }

  private:
    std::unique_ptr<GzipJob> new_job() {
        std::unique_ptr<GzipJob> job;
        if (!free_.empty()) {
            job = std::move(free_.back());
            free_.pop_back();
        } else {
            job = std::make_unique<GzipJob>();
            job->in.reserve(block_size_);
        }
        job->in.len = 0;
        job->out.len = 0;
        job->done = false;
        job->error = nullptr;
        return job;
    }

    void encode(GzipMemberEncoder& enc, GzipJob& job) {
        if (before_block_) {
            before_block_(job.index);
        }
        enc.encode(job.in, job.out);
    }

    // Hands the filling block on and starts a new one. Blocks here (backpressure) while
    // max_in_flight_ blocks are already queued or being compressed.
    void submit() {
        filling_->index = next_index_++;
        if (workers_.empty()) {
            encode(*inline_encoder_, *filling_);
            emit(*filling_);
            filling_->in.len = 0;
            return;
        }
        while (in_order_.size() >= max_in_flight_) {
            retire_oldest();
        }
        GzipJob* job = filling_.get();
        in_order_.push_back(std::move(filling_));
        {
            std::lock_guard lock(mu_);
            pending_.push_back(job);
        }
        work_cv_.notify_one();
        filling_ = new_job();
        // Write out whatever is already finished, so the sink keeps pace with the workers.
        while (!in_order_.empty() && is_done(*in_order_.front())) {
            retire_oldest();
        }
    }

    bool is_done(const GzipJob& job) {
        std::lock_guard lock(mu_);
        return job.done;
    }

    // Waits for the oldest block, then writes it to the sink (or rethrows its worker's error).
    void retire_oldest() {
        GzipJob& job = *in_order_.front();
        {
            std::unique_lock lock(mu_);
            done_cv_.wait(lock, [&] { return job.done; });
        }
        if (job.error) {
            std::rethrow_exception(job.error);
        }
        emit(job);
        free_.push_back(std::move(in_order_.front()));
        in_order_.pop_front();
    }

    void emit(const GzipJob& job) {
        out_.write(job.out.data.get(), job.out.len);
        bytes_out_ += job.out.len;
    }

    void worker_loop() {
        std::unique_ptr<GzipMemberEncoder> enc;
        std::exception_ptr init_error;
        try {
            enc = std::make_unique<GzipMemberEncoder>(level_);
        } catch (...) {
            // Reported through every job this worker takes, so the caller sees it in order.
            init_error = std::current_exception();
        }
        for (;;) {
            GzipJob* job = nullptr;
            {
                std::unique_lock lock(mu_);
                work_cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
                if (stop_) {
                    return;
                }
                job = pending_.front();
                pending_.pop_front();
            }
            std::exception_ptr error = init_error;
            if (!error) {
                try {
                    encode(*enc, *job);
                } catch (...) {
                    error = std::current_exception();
                }
            }
            {
                std::lock_guard lock(mu_);
                job->error = std::move(error);
                job->done = true;
            }
            done_cv_.notify_all();
        }
    }

    void stop_workers() noexcept {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        work_cv_.notify_all();
        for (std::thread& t : workers_) {
            t.join();
        }
        workers_.clear();
    }

    ByteSink& out_;
    const int level_;
    const std::size_t block_size_;
    const std::function<void(std::uint64_t)> before_block_;
    std::size_t max_in_flight_ = 0;
    StreamState state_;

    // Caller-thread state.
    std::unique_ptr<GzipJob> filling_;
    std::deque<std::unique_ptr<GzipJob>> in_order_;  // submitted, not yet written; oldest first
    std::vector<std::unique_ptr<GzipJob>> free_;     // recycled buffers
    std::uint64_t next_index_ = 0;
    std::unique_ptr<GzipMemberEncoder> inline_encoder_;  // threads == 1 only

    // Shared with workers.
    std::mutex mu_;
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    std::deque<GzipJob*> pending_;  // waiting for a worker
    bool stop_ = false;
    std::vector<std::thread> workers_;
};

// ---------------------------------------------------------------------------------------------
// Decompression

constexpr std::size_t kInBufSize = std::size_t{128} << 10;
constexpr unsigned char kZstdMagic[4] = {0x28, 0xB5, 0x2F, 0xFD};
constexpr unsigned char kGzipMagic[2] = {0x1F, 0x8B};

}  // namespace

class Decompressor::Impl {
  public:
    explicit Impl(Source in) : src_(std::move(in)), in_buf_(kInBufSize) {
        if (!src_) {
            throw std::invalid_argument("Decompressor needs a source");
        }
        guarded([&] { detect(); });
    }

    ~Impl() {
        if (inflate_ready_) {
            inflateEnd(&z_);
        }
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    std::size_t read(void* buf, std::size_t cap) {
        if (cap == 0) {
            throw std::invalid_argument("Decompressor::read needs cap > 0");
        }
        if (error_) {
            std::rethrow_exception(error_);
        }
        if (ended_) {
            return 0;
        }
        std::size_t n = 0;
        guarded([&] { n = codec_ == Codec::kZstd ? read_zstd(buf, cap) : read_gzip(buf, cap); });
        return n;
    }

    Codec codec() const { return codec_; }

  private:
    template <typename F>
    void guarded(F&& f) {
        try {
            std::forward<F>(f)();
        } catch (...) {
            error_ = std::current_exception();
            throw;
        }
    }

    std::size_t in_left() const { return in_len_ - in_pos_; }

    // Refills the (fully consumed) input buffer; false at end of input.
    bool refill() {
        in_pos_ = 0;
        in_len_ = 0;
        if (src_eof_) {
            return false;
        }
        const std::size_t n = src_(in_buf_.data(), in_buf_.size());
        if (n > in_buf_.size()) {
            throw std::logic_error("Decompressor source returned more bytes than asked for");
        }
        in_len_ = n;
        src_eof_ = n == 0;
        return n > 0;
    }

    void detect() {
        // Collect the first 4 bytes (or fewer at end of input); sources may return short counts.
        while (in_len_ < sizeof kZstdMagic) {
            const std::size_t n = src_(in_buf_.data() + in_len_, in_buf_.size() - in_len_);
            if (n > in_buf_.size() - in_len_) {
                throw std::logic_error("Decompressor source returned more bytes than asked for");
            }
            if (n == 0) {
                src_eof_ = true;
                break;
            }
            in_len_ += n;
        }
        const unsigned char* b = in_buf_.data();
        if (in_len_ >= 4 && std::memcmp(b, kZstdMagic, 4) == 0) {
            codec_ = Codec::kZstd;
            dctx_.reset(ZSTD_createDCtx());
            if (!dctx_) {
                throw std::bad_alloc();
            }
        } else if (in_len_ >= 2 && std::memcmp(b, kGzipMagic, 2) == 0) {
            codec_ = Codec::kGzip;
            const int rc = inflateInit2(&z_, 15 + 16);  // gzip wrapper only
            if (rc == Z_MEM_ERROR) {
                throw std::bad_alloc();
            }
            if (rc != Z_OK) {
                throw std::runtime_error("zlib inflateInit2 failed: " + std::to_string(rc));
            }
            inflate_ready_ = true;
        } else if (in_len_ == 0) {
            throw std::runtime_error(std::string(kTruncated) + " (it is empty)");
        } else if (src_eof_ && (std::memcmp(b, kZstdMagic, in_len_) == 0 ||
                                (in_len_ == 1 && b[0] == kGzipMagic[0]))) {
            throw std::runtime_error(kTruncated);
        } else {
            throw std::runtime_error(
                "unrecognised compressed data: neither zstd (28 B5 2F FD) nor gzip (1F 8B)");
        }
    }

    std::size_t read_zstd(void* buf, std::size_t cap) {
        ZSTD_outBuffer out{buf, cap, 0};
        for (;;) {
            if (in_left() == 0 && !refill()) {
                // Anything but a completed frame here means bytes are missing. zstd may still
                // hold decoded bytes when the input ran out, so flush them first.
                if (!frame_done_) {
                    ZSTD_inBuffer none{nullptr, 0, 0};
                    const std::size_t ret = ZSTD_decompressStream(dctx_.get(), &out, &none);
                    throw_if_zstd_error(ret);
                    if (ret == 0) {
                        frame_done_ = true;
                    }
                    if (out.pos > 0) {
                        return out.pos;
                    }
                    if (!frame_done_) {
                        throw std::runtime_error(kTruncated);
                    }
                }
                ended_ = true;
                return out.pos;
            }
            ZSTD_inBuffer in{in_buf_.data(), in_len_, in_pos_};
            const bool at_boundary = frame_done_;
            const std::size_t ret = ZSTD_decompressStream(dctx_.get(), &out, &in);
            in_pos_ = in.pos;
            if (ZSTD_isError(ret) && at_boundary &&
                ZSTD_getErrorCode(ret) == ZSTD_error_prefix_unknown) {
                throw std::runtime_error(
                    "unexpected data after the end of the zstd stream (trailing garbage)");
            }
            throw_if_zstd_error(ret);
            frame_done_ = ret == 0;
            if (out.pos > 0) {
                return out.pos;
            }
        }
    }

    static void throw_if_zstd_error(std::size_t ret) {
        if (!ZSTD_isError(ret)) {
            return;
        }
        if (ZSTD_getErrorCode(ret) == ZSTD_error_checksum_wrong) {
            throw std::runtime_error("zstd checksum mismatch: the decompressed data is corrupt");
        }
        throw std::runtime_error(std::string("corrupt zstd data: ") + ZSTD_getErrorName(ret));
    }

    std::size_t read_gzip(void* buf, std::size_t cap) {
        const uInt want =
            static_cast<uInt>(std::min<std::size_t>(cap, std::numeric_limits<uInt>::max()));
        std::size_t produced = 0;
        for (;;) {
            if (in_left() == 0 && !refill()) {
                if (member_done_) {
                    ended_ = true;
                    return produced;
                }
                if (produced > 0) {
                    return produced;  // the truncation is reported on the next call
                }
                throw std::runtime_error(kTruncated);
            }
            if (member_done_) {
                // Only another member may follow; say so plainly rather than "bad header".
                const unsigned char* next = in_buf_.data() + in_pos_;
                if (next[0] != kGzipMagic[0] || (in_left() >= 2 && next[1] != kGzipMagic[1])) {
                    throw std::runtime_error(
                        "unexpected data after the end of the gzip stream (trailing garbage)");
                }
                if (inflateReset(&z_) != Z_OK) {
                    throw std::runtime_error("zlib inflateReset failed");
                }
                member_done_ = false;
            }
            z_.next_in = in_buf_.data() + in_pos_;
            z_.avail_in = static_cast<uInt>(in_left());
            z_.next_out = static_cast<unsigned char*>(buf) + produced;
            z_.avail_out = want - static_cast<uInt>(produced);
            const int rc = inflate(&z_, Z_NO_FLUSH);
            in_pos_ = in_len_ - z_.avail_in;
            produced = want - z_.avail_out;
            switch (rc) {
                case Z_STREAM_END:
                    member_done_ = true;
                    break;
                case Z_OK:
                case Z_BUF_ERROR:  // no progress possible: needs input (we refill) or output
                    break;
                case Z_MEM_ERROR:
                    throw std::bad_alloc();
                case Z_DATA_ERROR: {
                    const std::string msg = z_.msg != nullptr ? z_.msg : "data error";
                    if (msg == "incorrect data check" || msg == "incorrect length check") {
                        throw std::runtime_error("gzip checksum mismatch (" + msg +
                                                 "): the decompressed data is corrupt");
                    }
                    throw std::runtime_error("corrupt gzip data: " + msg);
                }
                default:
                    throw std::runtime_error("corrupt gzip data: zlib error " + std::to_string(rc) +
                                             (z_.msg != nullptr ? std::string(": ") + z_.msg : ""));
            }
            if (produced > 0) {
                return produced;
            }
        }
    }

    Source src_;
    std::vector<unsigned char> in_buf_;
    std::size_t in_pos_ = 0;
    std::size_t in_len_ = 0;
    bool src_eof_ = false;
    bool ended_ = false;
    std::exception_ptr error_;
    Codec codec_ = Codec::kZstd;

    std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx_;
    bool frame_done_ = false;

    z_stream z_{};
    bool inflate_ready_ = false;
    bool member_done_ = false;
};

std::string_view extension(Codec codec) {
    return codec == Codec::kZstd ? ".tar.zst" : ".tar.gz";
}

std::string_view codec_name(Codec codec) {
    return codec == Codec::kZstd ? "zstd" : "gzip";
}

std::optional<Codec> codec_from_name(std::string_view name) {
    if (name == "zstd") {
        return Codec::kZstd;
    }
    if (name == "gzip") {
        return Codec::kGzip;
    }
    return std::nullopt;
}

std::unique_ptr<Compressor> make_compressor(Codec codec, int level, unsigned threads,
                                            ByteSink& out) {
    if (codec == Codec::kZstd) {
        return std::make_unique<ZstdCompressor>(level, threads, out);
    }
    return std::make_unique<GzipCompressor>(level, threads, out, kGzipBlockSize, nullptr);
}

namespace detail {

std::unique_ptr<Compressor> make_gzip_compressor(
    int level, unsigned threads, ByteSink& out, std::size_t block_size,
    std::function<void(std::uint64_t block_index)> before_block) {
    return std::make_unique<GzipCompressor>(level, threads, out, block_size,
                                            std::move(before_block));
}

}  // namespace detail

Decompressor::Decompressor(Source in) : impl_(std::make_unique<Impl>(std::move(in))) {}
Decompressor::~Decompressor() = default;
Decompressor::Decompressor(Decompressor&&) noexcept = default;
Decompressor& Decompressor::operator=(Decompressor&&) noexcept = default;

std::size_t Decompressor::read(void* buf, std::size_t cap) {
    if (!impl_) {
        throw std::logic_error("Decompressor::read on a moved-from object");
    }
    return impl_->read(buf, cap);
}

Codec Decompressor::codec() const {
    if (!impl_) {
        throw std::logic_error("Decompressor::codec on a moved-from object");
    }
    return impl_->codec();
}

}  // namespace mlk::backup
