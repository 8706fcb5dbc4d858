#include "mlkeeper/homelab/http_relay.hpp"

#include <array>
#include <cstring>

namespace mlk::homelab::http {
namespace {

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// RFC 9110 tchar: the characters of methods, header names and tokens.
bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool is_token(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (const char c : s) {
        if (!is_tchar(c)) {
            return false;
        }
    }
    return true;
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

// Field values: visible ASCII, blanks and obs-text; never other control characters.
bool valid_value(std::string_view v) {
    for (const char ch : v) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

// Calls fn(token) for each comma-separated, trimmed, non-empty element of `value`.
template <typename Fn>
void for_each_token(std::string_view value, Fn&& fn) {
    while (!value.empty()) {
        const auto comma = value.find(',');
        const auto item = trim_blanks(value.substr(0, comma));
        if (!item.empty()) {
            fn(item);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
}

bool has_token(const std::vector<Header>& headers, std::string_view name, std::string_view token) {
    bool found = false;
    for (const auto& h : headers) {
        if (iequals(h.name, name)) {
            for_each_token(h.value,
                           [&](std::string_view t) { found = found || iequals(t, token); });
        }
    }
    return found;
}

// Splits a head into lines without their line ends; false when a line holds a lone CR.
bool split_lines(std::string_view head, std::vector<std::string_view>& lines) {
    while (!head.empty()) {
        const auto nl = head.find('\n');
        auto line = head.substr(0, nl);
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (line.find('\r') != std::string_view::npos) {
            return false;
        }
        lines.push_back(line);
        if (nl == std::string_view::npos) {
            break;
        }
        head.remove_prefix(nl + 1);
    }
    while (!lines.empty() && lines.back().empty()) {
        lines.pop_back();
    }
    return true;
}

// Header lines (after the start line) into `out`; an error message or "".
std::string parse_fields(const std::vector<std::string_view>& lines, std::vector<Header>& out) {
    for (std::size_t i = 1; i < lines.size(); ++i) {
        const auto line = lines[i];
        if (line.empty()) {
            return "empty line inside the header";
        }
        if (line.front() == ' ' || line.front() == '\t') {
            return "obsolete header line folding";
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            return "header line without a colon";
        }
        const auto name = line.substr(0, colon);
        if (!is_token(name)) {
            return "invalid header name";
        }
        const auto value = trim_blanks(line.substr(colon + 1));
        if (!valid_value(value)) {
            return "control character in a header value";
        }
        if (out.size() >= kMaxHeaders) {
            return "too many header fields";
        }
        out.push_back({std::string(name), std::string(value)});
    }
    return {};
}

// "HTTP/1.x" -> x; -1 for another HTTP version, -2 for something else.
int http_minor(std::string_view v) {
    if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9') {
        return -2;
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
        return -1;
    }
    return v[7] - '0';
}

std::optional<std::uint64_t> parse_length(std::string_view v) {
    if (v.empty() || v.size() > 18) {
        return std::nullopt;
    }
    std::uint64_t n = 0;
    for (const char c : v) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
}

// Content-Length and Transfer-Encoding of a message. `error` set on conflicts.
struct Framing {
    std::optional<std::uint64_t> length;
    int chunked = 0;            // Transfer-Encoding: chunked fields seen
    bool other_coding = false;  // a coding other than chunked (or chunked not last)
    bool bad_length = false;
};

Framing read_framing(const std::vector<Header>& headers) {
    Framing f;
    for (const auto& h : headers) {
        if (iequals(h.name, "Content-Length")) {
            const auto n = parse_length(h.value);
            if (!n || (f.length && *f.length != *n)) {
                f.bad_length = true;
            }
            f.length = n;
        } else if (iequals(h.name, "Transfer-Encoding")) {
            std::vector<std::string_view> codings;
            for_each_token(h.value, [&](std::string_view t) { codings.push_back(t); });
            if (codings.empty()) {
                f.other_coding = true;
            }
            for (std::size_t i = 0; i < codings.size(); ++i) {
                if (iequals(codings[i], "chunked")) {
                    ++f.chunked;
                } else {
                    f.other_coding = true;
                }
            }
        }
    }
    return f;
}

std::vector<std::string_view> connection_tokens(const std::vector<Header>& headers) {
    std::vector<std::string_view> tokens;
    for (const auto& h : headers) {
        if (iequals(h.name, "Connection")) {
            for_each_token(h.value, [&](std::string_view t) { tokens.push_back(t); });
        }
    }
    return tokens;
}

bool hop(std::string_view name, const std::vector<std::string_view>& tokens) {
    static constexpr std::array kFixed = {
        std::string_view{"Connection"},
        std::string_view{"Keep-Alive"},
        std::string_view{"TE"},
        std::string_view{"Trailer"},
        std::string_view{"Transfer-Encoding"},
        std::string_view{"Upgrade"},
    };
    for (const auto f : kFixed) {
        if (iequals(name, f)) {
            return true;
        }
    }
    if (name.size() >= 6 && iequals(name.substr(0, 6), "Proxy-")) {
        return true;
    }
    for (const auto t : tokens) {
        if (iequals(name, t)) {
            return true;
        }
    }
    return false;
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

std::size_t head_length(std::string_view buf) {
    std::size_t from = 0;
    for (;;) {
        const auto nl = buf.find('\n', from);
        if (nl == std::string_view::npos) {
            return 0;
        }
        if (nl + 1 < buf.size() && buf[nl + 1] == '\n') {
            return nl + 2;
        }
        if (nl + 2 < buf.size() && buf[nl + 1] == '\r' && buf[nl + 2] == '\n') {
            return nl + 3;
        }
        from = nl + 1;
    }
}

std::optional<ParseError> parse_request(std::string_view head, RequestHead& out) {
    std::vector<std::string_view> lines;
    if (!split_lines(head, lines) || lines.empty()) {
        return ParseError{400, "malformed request head"};
    }
    const auto line = lines[0];
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
        return ParseError{400, "malformed request line"};
    }
    const auto method = line.substr(0, sp1);
    const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const int minor = http_minor(line.substr(sp2 + 1));
    if (minor == -1) {
        return ParseError{505, "only HTTP/1.0 and HTTP/1.1 are supported"};
    }
    if (minor < 0 || !is_token(method)) {
        return ParseError{400, "malformed request line"};
    }
    if (target.empty() || target.front() != '/') {
        return ParseError{400, "the request target must be a path (origin form)"};
    }
    for (const char ch : target) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7f) {
            return ParseError{400, "invalid character in the request target"};
        }
    }
    out.method = std::string(method);
    out.target = std::string(target);
    out.minor = minor;
    out.headers.clear();
    if (auto err = parse_fields(lines, out.headers); !err.empty()) {
        return ParseError{err == "too many header fields" ? 431 : 400, err};
    }
    int hosts = 0;
    for (const auto& h : out.headers) {
        hosts += iequals(h.name, "Host") ? 1 : 0;
    }
    if (hosts > 1 || (minor == 1 && hosts == 0)) {
        return ParseError{400, "an HTTP/1.1 request needs exactly one Host header"};
    }
    const auto f = read_framing(out.headers);
    if (f.bad_length) {
        return ParseError{400, "invalid Content-Length"};
    }
    if (f.chunked > 0 || f.other_coding) {
        if (f.length) {
            return ParseError{400, "both Content-Length and Transfer-Encoding"};
        }
        if (minor == 0) {
            return ParseError{400, "Transfer-Encoding in an HTTP/1.0 request"};
        }
        if (f.other_coding) {
            return ParseError{501, "only the chunked transfer coding is supported"};
        }
        if (f.chunked > 1) {
            return ParseError{400, "chunked applied twice"};
        }
        out.body = BodyKind::kChunked;
    } else if (f.length) {
        out.body = BodyKind::kLength;
        out.content_length = *f.length;
    } else {
        out.body = BodyKind::kNone;
        out.content_length = 0;
    }
    out.keep_alive = minor == 1 ? !has_token(out.headers, "Connection", "close")
                                : has_token(out.headers, "Connection", "keep-alive");
    out.expect_continue = false;
    if (const auto e = find_header(out.headers, "Expect")) {
        out.expect_continue = iequals(*e, "100-continue");
    }
    return std::nullopt;
}

std::optional<std::string> parse_response(std::string_view head, std::string_view method,
                                          ResponseHead& out) {
    std::vector<std::string_view> lines;
    if (!split_lines(head, lines) || lines.empty()) {
        return "malformed response head";
    }
    const auto line = lines[0];
    const int minor = http_minor(line.substr(0, 8));
    if (minor < 0 || line.size() < 12 || line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
        return "malformed status line";
    }
    int status = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9') {
            return "malformed status line";
        }
        status = status * 10 + (line[i] - '0');
    }
    if (status < 100 || status > 599) {
        return "status code out of range";
    }
    out.status = status;
    out.minor = minor;
    out.reason = std::string(line.size() > 13 ? line.substr(13) : std::string_view{});
    if (!valid_value(out.reason)) {
        return "control character in the reason phrase";
    }
    out.headers.clear();
    if (auto err = parse_fields(lines, out.headers); !err.empty()) {
        return err;
    }
    const auto f = read_framing(out.headers);
    out.content_length = 0;
    out.keep_alive = minor == 1 ? !has_token(out.headers, "Connection", "close")
                                : has_token(out.headers, "Connection", "keep-alive");
    if (method == "HEAD" || status < 200 || status == 204 || status == 304) {
        out.body = BodyKind::kNone;
        if (f.length && !f.bad_length) {
            out.content_length = *f.length;
        }
        return std::nullopt;
    }
    if (f.chunked > 0 || f.other_coding) {
        if (f.other_coding || f.chunked > 1) {
            return "unsupported transfer coding";
        }
        out.body = BodyKind::kChunked;
    } else if (f.bad_length) {
        return "invalid Content-Length";
    } else if (f.length) {
        out.body = BodyKind::kLength;
        out.content_length = *f.length;
    } else {
        out.body = BodyKind::kClose;
        out.keep_alive = false;
    }
    return std::nullopt;
}

bool is_hop_by_hop(std::string_view name, const std::vector<Header>& headers) {
    return hop(name, connection_tokens(headers));
}

std::optional<std::string_view> find_header(const std::vector<Header>& headers,
                                            std::string_view name) {
    for (const auto& h : headers) {
        if (iequals(h.name, name)) {
            return std::string_view(h.value);
        }
    }
    return std::nullopt;
}

std::string upstream_request_head(const RequestHead& req, const Forwarded& fwd) {
    const auto tokens = connection_tokens(req.headers);
    std::string out;
    out.reserve(512);
    out.append(req.method);
    out.push_back(' ');
    out.append(fwd.path);
    out.append(" HTTP/1.1\r\n");
    bool host = false;
    std::string xff;
    for (const auto& h : req.headers) {
        if (hop(h.name, tokens) || iequals(h.name, "Expect") || iequals(h.name, "Content-Length") ||
            iequals(h.name, "X-Forwarded-Proto") || iequals(h.name, "X-Forwarded-Prefix")) {
            continue;
        }
        if (iequals(h.name, "X-Forwarded-For")) {
            if (!h.value.empty()) {
                xff += (xff.empty() ? "" : ", ") + h.value;
            }
            continue;
        }
        host = host || iequals(h.name, "Host");
        append_field(out, h.name, h.value);
    }
    if (!host) {
        append_field(out, "Host", fwd.host);
    }
    append_field(out, "X-Forwarded-For", xff.empty() ? fwd.client_ip : xff + ", " + fwd.client_ip);
    append_field(out, "X-Forwarded-Proto", "http");
    append_field(out, "X-Forwarded-Prefix", fwd.prefix);
    if (req.body == BodyKind::kLength) {
        append_field(out, "Content-Length", std::to_string(req.content_length));
    } else if (req.body == BodyKind::kChunked) {
        append_field(out, "Transfer-Encoding", "chunked");
    }
    out.append("\r\n");
    return out;
}

std::string client_response_head(const ResponseHead& res, BodyKind out_body, bool keep_alive,
                                 int client_minor) {
    const auto tokens = connection_tokens(res.headers);
    // A bodiless response (HEAD, 304) keeps the Content-Length of the body it stands for.
    const bool keep_length = out_body == BodyKind::kLength ||
                             (out_body == BodyKind::kNone && res.body == BodyKind::kNone);
    std::string out;
    out.reserve(512);
    out.append("HTTP/1.1 ");
    out.append(std::to_string(res.status));
    out.push_back(' ');
    out.append(res.reason);
    out.append("\r\n");
    for (const auto& h : res.headers) {
        if (hop(h.name, tokens) || (!keep_length && iequals(h.name, "Content-Length"))) {
            continue;
        }
        append_field(out, h.name, h.value);
    }
    if (out_body == BodyKind::kChunked) {
        append_field(out, "Transfer-Encoding", "chunked");
    }
    if (!keep_alive) {
        append_field(out, "Connection", "close");
    } else if (client_minor == 0) {
        append_field(out, "Connection", "keep-alive");
    }
    out.append("\r\n");
    return out;
}

}  // namespace mlk::homelab::http
