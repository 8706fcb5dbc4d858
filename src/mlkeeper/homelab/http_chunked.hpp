// Chunked transfer coding (RFC 9112 7.1) for the model proxy: a decoder fed in pieces of any size
// and the encoder of one chunk, so bodies are relayed read by read. Thread safety: a
// ChunkedDecoder belongs to one thread; append_chunk() is a pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mlk::homelab::http {

// One chunk of `data` in chunked encoding, appended to `out` (nothing for empty data: an empty
// chunk would end the body).
void append_chunk(std::string& out, std::string_view data);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// Decodes a chunked body fed in pieces of any size. Bounded: a size line or the trailers longer
// than the limits below, a size over 2^60 or malformed framing is an error.
class ChunkedDecoder {
  public:
    enum class Status { kMore, kDone, kError };
    static constexpr std::size_t kMaxLine = 4096;
    static constexpr std::size_t kMaxTrailers = 16 * 1024;

    // Consumes bytes of `in` from its front, appending body data to `data`. Stops at the end of
    // the body (kDone; the bytes after it stay in `in`) or of the input (kMore).
    Status feed(std::string_view& in, std::string& data);
    bool done() const { return state_ == State::kDone; }
    const std::string& error() const { return error_; }

  private:
    enum class State { kSize, kData, kDataEnd, kTrailer, kDone, kError };
    Status fail(std::string why);

    State state_ = State::kSize;
    std::string line_;
    std::uint64_t left_ = 0;
    std::size_t trailer_bytes_ = 0;
    std::string error_;
};

}  // namespace mlk::homelab::http
