#include "mlkeeper/homelab/http_chunked.hpp"

#include <algorithm>
#include <utility>

namespace mlk::homelab::http {
namespace {

constexpr std::uint64_t kMaxChunkSize = std::uint64_t{1} << 60;

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

void append_chunk(std::string& out, std::string_view data) {
    if (data.empty()) {
        return;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    char size[20];
    std::size_t n = 0;
    for (std::size_t v = data.size(); v > 0; v >>= 4) {
        size[n++] = kHex[v & 0xf];
    }
    while (n > 0) {
        out.push_back(size[--n]);
    }
    out.append("\r\n");
    out.append(data);
    out.append("\r\n");
}

ChunkedDecoder::Status ChunkedDecoder::fail(std::string why) {
    state_ = State::kError;
    error_ = std::move(why);
    return Status::kError;
}

ChunkedDecoder::Status ChunkedDecoder::feed(std::string_view& in, std::string& data) {
    while (!in.empty() && state_ != State::kDone && state_ != State::kError) {
        if (state_ == State::kData) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, in.size()));
            data.append(in.data(), n);
            in.remove_prefix(n);
            left_ -= n;
            if (left_ == 0) {
                state_ = State::kDataEnd;
            }
            continue;
        }
        // The other states read one line.
        const auto nl = in.find('\n');
        const auto part = in.substr(0, nl);
        const std::size_t limit = state_ == State::kDataEnd ? 1 : kMaxLine;
        if (line_.size() + part.size() > limit + 1) {
            return fail(state_ == State::kDataEnd ? "no CRLF after chunk data"
                                                  : "chunk line too long");
        }
        line_.append(part);
        if (nl == std::string_view::npos) {
            in = {};
            break;
        }
        in.remove_prefix(nl + 1);
        std::string_view line = line_;
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (line.find('\r') != std::string_view::npos) {
            return fail("stray CR in chunk framing");
        }
        switch (state_) {
            case State::kSize: {
                std::uint64_t size = 0;
                std::size_t digits = 0;
                for (; digits < line.size(); ++digits) {
                    const char c = lower(line[digits]);
                    int v = -1;
                    if (c >= '0' && c <= '9') {
                        v = c - '0';
                    } else if (c >= 'a' && c <= 'f') {
                        v = c - 'a' + 10;
                    } else {
                        break;
                    }
                    if (size >= (kMaxChunkSize >> 4)) {
                        return fail("chunk size too large");
                    }
                    size = size * 16 + static_cast<std::uint64_t>(v);
                }
                const auto rest = trim_blanks(line.substr(digits));
                if (digits == 0 || (!rest.empty() && rest.front() != ';')) {
                    return fail("malformed chunk size");
                }
                if (size == 0) {
                    state_ = State::kTrailer;
                } else {
                    left_ = size;
                    state_ = State::kData;
                }
                break;
            }
            case State::kDataEnd:
                if (!line.empty()) {
                    return fail("no CRLF after chunk data");
                }
                state_ = State::kSize;
                break;
            case State::kTrailer:
                if (line.empty()) {
                    state_ = State::kDone;
                    break;
                }
                trailer_bytes_ += line.size();
                if (trailer_bytes_ > kMaxTrailers) {
                    return fail("trailers too long");
                }
                break;
            default:
                break;
        }
        line_.clear();
    }
    if (state_ == State::kError) {
        return Status::kError;
    }
    return state_ == State::kDone ? Status::kDone : Status::kMore;
}

}  // namespace mlk::homelab::http
