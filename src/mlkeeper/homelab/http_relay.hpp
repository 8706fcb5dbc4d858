// HTTP/1.1 framing for the model proxy (homelab/model_proxy): parsing request and response heads,
// the hop-by-hop header rules and rewriting heads for the other side (chunked bodies:
// http_chunked.hpp). No sockets and no allocation beyond the strings it returns, so every rule is
// unit-tested on bytes. Thread safety: pure functions; a ChunkedDecoder belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/homelab/http_chunked.hpp"

namespace mlk::homelab::http {

struct Header {
    std::string name;   // as received (case kept); compare with iequals()
    std::string value;  // leading and trailing blanks removed
};

// How a message body is delimited.
enum class BodyKind {
    kNone,     // no body
    kLength,   // Content-Length bytes
    kChunked,  // Transfer-Encoding: chunked
    kClose,    // until the connection closes (responses only)
};

struct RequestHead {
    std::string method;
    std::string target;  // origin-form: "/path?query"
    int minor = 1;       // HTTP/1.minor (0 or 1)
    std::vector<Header> headers;
    BodyKind body = BodyKind::kNone;  // kNone, kLength or kChunked
    std::uint64_t content_length = 0;
    bool keep_alive = true;  // the client wants the connection kept after this exchange
    bool expect_continue = false;
};

struct ResponseHead {
    int status = 0;
    std::string reason;
    int minor = 1;
    std::vector<Header> headers;
    BodyKind body = BodyKind::kNone;
    std::uint64_t content_length = 0;
    bool keep_alive = true;  // the server keeps the connection after the body
};

// A request the proxy refuses before it reaches a model: the status to answer and why.
struct ParseError {
    int status = 400;  // 400, 501 (a transfer coding other than chunked), 505 (not HTTP/1.x)
    std::string message;
};

// Most header fields accepted in one message.
inline constexpr std::size_t kMaxHeaders = 100;

bool iequals(std::string_view a, std::string_view b);

// The length of the head at the start of `buf` through its empty line ("\r\n\r\n"; bare "\n"
// line ends are accepted too), or 0 while it is incomplete.
std::size_t head_length(std::string_view buf);

// Parses a complete head (head_length() bytes). Strict where a lenient reading could let two
// parsers disagree (request smuggling): no whitespace before a colon, no obsolete line folding,
// no control characters, Content-Length digits only (equal duplicates allowed) and never together
// with Transfer-Encoding.
std::optional<ParseError> parse_request(std::string_view head, RequestHead& out);

// A response head from a model. `method` is the request's (a HEAD response has no body); 1xx,
// 204 and 304 have none either. Returns why the response is unusable (the proxy answers 502).
std::optional<std::string> parse_response(std::string_view head, std::string_view method,
                                          ResponseHead& out);

// Whether a header field is hop-by-hop and so never forwarded: Connection, Keep-Alive, Proxy-*,
// TE, Trailer, Transfer-Encoding, Upgrade, plus every name the Connection header lists.
bool is_hop_by_hop(std::string_view name, const std::vector<Header>& headers);

// The value of the first header named `name`, if any.
std::optional<std::string_view> find_header(const std::vector<Header>& headers,
                                            std::string_view name);

// What the proxy tells the model about the client.
struct Forwarded {
    std::string path;       // the target on the model: "/v1/chat?stream=1"
    std::string client_ip;  // "127.0.0.1"
    std::string prefix;     // "/models/llama"
    std::string host;       // Host to send when the client sent none: "127.0.0.1:8001"
};

// The request head sent to the model: always HTTP/1.1 (keep-alive), hop-by-hop fields and Expect
// removed, X-Forwarded-For extended, X-Forwarded-Proto and X-Forwarded-Prefix replaced, and the
// framing re-declared (Content-Length or Transfer-Encoding: chunked).
std::string upstream_request_head(const RequestHead& req, const Forwarded& fwd);

// The response head sent to the client: HTTP/1.1 status line, hop-by-hop fields removed, the
// body framed as `out_body` (Content-Length kept for kLength and for bodiless responses that
// carried one, "Transfer-Encoding: chunked" for kChunked), and "Connection: close" unless
// `keep_alive` (or "Connection: keep-alive" for an HTTP/1.0 client that keeps it).
std::string client_response_head(const ResponseHead& res, BodyKind out_body, bool keep_alive,
                                 int client_minor);

}  // namespace mlk::homelab::http
