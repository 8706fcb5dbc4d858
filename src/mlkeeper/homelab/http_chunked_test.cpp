#include "mlkeeper/homelab/http_chunked.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mlk::homelab::http {
namespace {

TEST(HttpChunked, ChunkEncoding) {
    std::string out;
    append_chunk(out, "");
    EXPECT_EQ(out, "");
    append_chunk(out, "hello");
    append_chunk(out, std::string(300, 'x'));
    EXPECT_EQ(out.substr(0, 10), "5\r\nhello\r\n");
    EXPECT_EQ(out.substr(10, 5), "12c\r\n");
}

std::string decode_all(std::string_view in, std::size_t piece, ChunkedDecoder::Status& st,
                       std::string* rest = nullptr) {
    ChunkedDecoder d;
    std::string data;
    st = ChunkedDecoder::Status::kMore;
    while (!in.empty() && st == ChunkedDecoder::Status::kMore) {
        auto part = in.substr(0, piece);
        const auto size = part.size();
        st = d.feed(part, data);
        in.remove_prefix(size - part.size());
    }
    if (rest != nullptr) {
        *rest = std::string(in);
    }
    return data;
}

TEST(HttpChunked, ChunkedDecoderInAnyPieces) {
    const std::string body =
        "5;ext=1\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    for (std::size_t piece = 1; piece <= body.size(); ++piece) {
        ChunkedDecoder::Status st;
        std::string rest;
        EXPECT_EQ(decode_all(body, piece, st, &rest), "hello world0123456789") << piece;
        EXPECT_EQ(st, ChunkedDecoder::Status::kDone) << piece;
        EXPECT_EQ(rest, "NEXT") << piece;
    }
    ChunkedDecoder::Status st;
    EXPECT_EQ(decode_all("3\nabc\n0\n\n", 100, st), "abc");
    EXPECT_EQ(st, ChunkedDecoder::Status::kDone);
}

TEST(HttpChunked, ChunkedDecoderRejectsBadFraming) {
    for (const std::string& bad : std::vector<std::string>{
             "x\r\n", "\r\n", "5\r\nhelloXX\r\n", "5\r\nhello\r0\r\n\r\n", "-1\r\n",
             "1000000000000000\r\n", "10000000000000000000\r\n", "5 5\r\n", std::string(5000, '1'),
             "0\r\n" + std::string(20000, 'a') + "\r\n"}) {
        ChunkedDecoder::Status st;
        decode_all(bad, 7, st);
        EXPECT_EQ(st, ChunkedDecoder::Status::kError) << bad.substr(0, 40);
    }
}

}  // namespace
}  // namespace mlk::homelab::http
