#include "mlkeeper/homelab/http_relay.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace mlk::homelab::http {
namespace {

std::optional<ParseError> parse(std::string_view raw, RequestHead& req) {
    const auto n = head_length(raw);
    EXPECT_GT(n, 0U) << raw;
    return parse_request(raw.substr(0, n), req);
}

int status_of(std::string_view raw) {
    RequestHead req;
    const auto err = parse(raw, req);
    return err ? err->status : 0;
}

TEST(HttpRelay, HeadLengthFindsTheEmptyLine) {
    EXPECT_EQ(head_length(""), 0U);
    EXPECT_EQ(head_length("GET / HTTP/1.1\r\nHost: a\r\n"), 0U);
    EXPECT_EQ(head_length("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0U);
    EXPECT_EQ(head_length("GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY"), 27U);
    EXPECT_EQ(head_length("GET / HTTP/1.1\nHost: a\n\nBODY"), 24U);
}

TEST(HttpRelay, ParsesARequest) {
    RequestHead req;
    ASSERT_FALSE(
        parse("POST /models/a/v1?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
              "X-A:  spaced value \t\r\n\r\n",
              req));
    EXPECT_EQ(req.method, "POST");
    EXPECT_EQ(req.target, "/models/a/v1?x=1");
    EXPECT_EQ(req.minor, 1);
    EXPECT_EQ(req.body, BodyKind::kLength);
    EXPECT_EQ(req.content_length, 5U);
    EXPECT_TRUE(req.keep_alive);
    EXPECT_EQ(find_header(req.headers, "x-a").value_or("?"), "spaced value");
}

TEST(HttpRelay, KeepAliveRules) {
    RequestHead req;
    ASSERT_FALSE(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n", req));
    EXPECT_FALSE(req.keep_alive);
    ASSERT_FALSE(parse("GET / HTTP/1.0\r\n\r\n", req));
    EXPECT_FALSE(req.keep_alive);
    EXPECT_EQ(req.minor, 0);
    ASSERT_FALSE(parse("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n", req));
    EXPECT_TRUE(req.keep_alive);
}

TEST(HttpRelay, ChunkedAndExpect) {
    RequestHead req;
    ASSERT_FALSE(
        parse("PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n"
              "Expect: 100-continue\r\n\r\n",
              req));
    EXPECT_EQ(req.body, BodyKind::kChunked);
    EXPECT_TRUE(req.expect_continue);
}

TEST(HttpRelay, RefusesAmbiguousOrMalformedRequests) {
    // Request smuggling shapes.
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"),
              400);
    EXPECT_EQ(
        status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
        400);
    EXPECT_EQ(
        status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
        0);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n"), 400);
    EXPECT_EQ(
        status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\n"), 400);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
              501);
    EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"),
              400);
    EXPECT_EQ(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
                        "b\r\n\r\n"),
              400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: h\r\n(bad): x\r\n\r\n"), 400);
    // Hosts.
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    // Request lines.
    EXPECT_EQ(status_of("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
    EXPECT_EQ(status_of("PRI * HTTP/2.0\r\n\r\n"), 505);
    EXPECT_EQ(status_of("GET / HTTP/1.12\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET / FTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(status_of("GET /\r\n\r\n"), 400);
}

TEST(HttpRelay, LimitsHeaderCount) {
    std::string raw = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (std::size_t i = 0; i < kMaxHeaders; ++i) {
        raw += "X-" + std::to_string(i) + ": v\r\n";
    }
    raw += "\r\n";
    EXPECT_EQ(status_of(raw), 431);
}

TEST(HttpRelay, ParsesResponsesAndTheirFraming) {
    ResponseHead res;
    ASSERT_FALSE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "GET", res));
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.reason, "OK");
    EXPECT_EQ(res.body, BodyKind::kLength);
    EXPECT_EQ(res.content_length, 12U);
    EXPECT_TRUE(res.keep_alive);

    ASSERT_FALSE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "HEAD", res));
    EXPECT_EQ(res.body, BodyKind::kNone);
    EXPECT_EQ(res.content_length, 12U);

    ASSERT_FALSE(parse_response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "GET", res));
    EXPECT_EQ(res.body, BodyKind::kChunked);

    ASSERT_FALSE(
        parse_response("HTTP/1.0 200\r\nContent-Type: text/event-stream\r\n\r\n", "GET", res));
    EXPECT_EQ(res.body, BodyKind::kClose);
    EXPECT_FALSE(res.keep_alive);
    EXPECT_EQ(res.reason, "");

    for (const int s : {100, 204, 304}) {
        ASSERT_FALSE(parse_response("HTTP/1.1 " + std::to_string(s) + " X\r\n\r\n", "GET", res));
        EXPECT_EQ(res.body, BodyKind::kNone) << s;
    }
    ASSERT_FALSE(parse_response("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                                "GET", res));
    EXPECT_FALSE(res.keep_alive);

    EXPECT_TRUE(parse_response("HTTP/1.1 99 X\r\n\r\n", "GET", res));
    EXPECT_TRUE(parse_response("HTTP/1.1 600 X\r\n\r\n", "GET", res));
    EXPECT_TRUE(parse_response("HTTP/1.1 2000 X\r\n\r\n", "GET", res));
    EXPECT_TRUE(parse_response("HTTP/1.1 2x0 X\r\n\r\n", "GET", res));
    EXPECT_TRUE(parse_response("HTTP/3 200 X\r\n\r\n", "GET", res));
    EXPECT_TRUE(parse_response("ICY 200 OK\r\n\r\n", "GET", res));
    EXPECT_TRUE(parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", res));
    EXPECT_TRUE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "GET", res));
}

TEST(HttpRelay, HopByHopFields) {
    const std::vector<Header> h = {{"Connection", "X-Secret, close"}, {"X-Secret", "1"}};
    for (const char* name : {"Connection", "keep-alive", "Proxy-Authorization", "proxy-connection",
                             "TE", "Trailer", "Transfer-Encoding", "Upgrade", "x-secret"}) {
        EXPECT_TRUE(is_hop_by_hop(name, h)) << name;
    }
    for (const char* name : {"Content-Type", "Authorization", "Host", "Proxy", "Content-Length"}) {
        EXPECT_FALSE(is_hop_by_hop(name, h)) << name;
    }
}

TEST(HttpRelay, UpstreamRequestHead) {
    RequestHead req;
    ASSERT_FALSE(
        parse("POST /models/m/v1/chat?s=1 HTTP/1.1\r\nHost: front:5080\r\n"
              "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
              "Proxy-Authorization: Basic x\r\nUpgrade: websocket\r\nTE: trailers\r\n"
              "Expect: 100-continue\r\nX-Forwarded-For: 10.0.0.1\r\n"
              "X-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /evil\r\n"
              "Authorization: Bearer t\r\nContent-Length: 4\r\n\r\n",
              req));
    const auto head =
        upstream_request_head(req, {"/v1/chat?s=1", "127.0.0.1", "/models/m", "127.0.0.1:9000"});
    EXPECT_EQ(head,
              "POST /v1/chat?s=1 HTTP/1.1\r\nHost: front:5080\r\nAuthorization: Bearer t\r\n"
              "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
              "X-Forwarded-Prefix: /models/m\r\nContent-Length: 4\r\n\r\n");

    ASSERT_FALSE(parse("GET /a HTTP/1.0\r\n\r\n", req));
    EXPECT_EQ(upstream_request_head(req, {"/a", "::1", "/models/m", "127.0.0.1:9000"}),
              "GET /a HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nX-Forwarded-For: ::1\r\n"
              "X-Forwarded-Proto: http\r\nX-Forwarded-Prefix: /models/m\r\n\r\n");

    ASSERT_FALSE(parse("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", req));
    EXPECT_NE(upstream_request_head(req, {"/a", "1.2.3.4", "/p", "h"})
                  .find("\r\nTransfer-Encoding: chunked\r\n\r\n"),
              std::string::npos);
}

TEST(HttpRelay, ClientResponseHead) {
    ResponseHead res;
    ASSERT_FALSE(
        parse_response("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Int\r\n"
                       "X-Int: 1\r\nKeep-Alive: timeout=5\r\nServer: m\r\n\r\n",
                       "GET", res));
    EXPECT_EQ(client_response_head(res, BodyKind::kChunked, true, 1),
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nServer: m\r\n"
              "Transfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(client_response_head(res, BodyKind::kClose, false, 0),
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nServer: m\r\n"
              "Connection: close\r\n\r\n");

    ASSERT_FALSE(parse_response("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n", "GET", res));
    EXPECT_EQ(client_response_head(res, BodyKind::kLength, true, 0),
              "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    // A HEAD response keeps the length of the body it stands for.
    ASSERT_FALSE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n", "HEAD", res));
    EXPECT_EQ(client_response_head(res, BodyKind::kNone, true, 1),
              "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n");
}

// Random bytes and mutated valid messages: the parsers answer (value or error), never crash,
// and whatever they accept re-serialises without control characters.
TEST(HttpRelay, FuzzedInputsNeverCrash) {
    std::mt19937 rng(12345);
    const std::vector<std::string> seeds = {
        "GET /models/a/x?y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
        "POST /models/a/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: "
        "x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
    };
    const std::string alphabet =
        "GETPOST /:\r\n\t ,;HTTP/1.01chunkedContent-Length0123456789abc\x01\xff";
    for (int i = 0; i < 20000; ++i) {
        std::string s = seeds[static_cast<std::size_t>(i) % seeds.size()];
        const int edits = 1 + static_cast<int>(rng() % 6);
        for (int e = 0; e < edits; ++e) {
            const auto pos = s.empty() ? 0 : rng() % s.size();
            switch (rng() % 3) {
                case 0:
                    if (!s.empty()) {
                        s.erase(pos, 1);
                    }
                    break;
                case 1:
                    s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
                    break;
                default:
                    if (!s.empty()) {
                        s[pos] = static_cast<char>(rng() % 256);
                    }
            }
        }
        RequestHead req;
        if (!parse_request(s, req)) {
            const auto head = upstream_request_head(req, {"/x", "1.2.3.4", "/p", "h"});
            for (std::size_t k = 0; k + 1 < head.size(); ++k) {
                const auto c = static_cast<unsigned char>(head[k]);
                ASSERT_TRUE(c >= 0x20 || c == '\t' || (c == '\r' && head[k + 1] == '\n') ||
                            (c == '\n' && k > 0 && head[k - 1] == '\r'))
                    << s;
            }
        }
        ResponseHead res;
        (void)parse_response(s, "GET", res);
        ChunkedDecoder d;
        std::string data;
        std::string_view v = s;
        (void)d.feed(v, data);
        EXPECT_LE(data.size(), s.size());
        (void)head_length(s);
    }
}

}  // namespace
}  // namespace mlk::homelab::http
