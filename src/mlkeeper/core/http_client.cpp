#include "mlkeeper/core/http_client.hpp"

#include "mlkeeper/core/curl_lib.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>

namespace mlk::core {
namespace {

char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii_lower(x) == ascii_lower(y);
           });
}

std::string_view trim_ws(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
        s.remove_suffix(1);
    }
    return s;
}

HttpError::Kind classify(CURLcode rc) {
    switch (rc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            return HttpError::Kind::kConnect;
        case CURLE_OPERATION_TIMEDOUT:
            return HttpError::Kind::kTimeout;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_USE_SSL_FAILED:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CLIENTCERT:
            return HttpError::Kind::kTls;
        default:
            return HttpError::Kind::kOther;
    }
}

// State shared with curl's callbacks during one transfer. Exceptions must not cross the C
// frames: a callback stores the exception and returns a value that makes curl fail the transfer;
// http_request() rethrows it.
struct Transfer {
    CURL* handle = nullptr;
    const HttpRequest* req = nullptr;
    HttpResponse* resp = nullptr;
    std::exception_ptr error;
    int to_writer = -1;  // -1 undecided, 0 resp->body, 1 req->body_writer
};

size_t on_body(char* data, size_t size, size_t nmemb, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t n = size * nmemb;
    try {
        if (t->to_writer < 0) {
            long status = 0;
            curl().easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
            t->to_writer = t->req->body_writer && status >= 200 && status < 300 ? 1 : 0;
        }
        if (t->to_writer == 1) {
            t->req->body_writer(std::string_view(data, n));
        } else {
            t->resp->body.append(data, n);
        }
        return n;
    } catch (...) {
        t->error = std::current_exception();
        return 0;
    }
}

size_t on_read(char* buf, size_t size, size_t nitems, void* user) {
    auto* t = static_cast<Transfer*>(user);
    try {
        return t->req->body_reader(buf, size * nitems);
    } catch (...) {
        t->error = std::current_exception();
        return CURL_READFUNC_ABORT;
    }
}

size_t on_header(char* data, size_t size, size_t nmemb, void* user) {
    const size_t n = size * nmemb;
    try {
        auto* headers = static_cast<std::vector<std::pair<std::string, std::string>>*>(user);
        const std::string_view line(data, n);
        if (line.rfind("HTTP/", 0) == 0) {
            // A new status line: a redirect or a 100 Continue came before; keep only the last.
            headers->clear();
            return n;
        }
        if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
            // Obsolete line folding continues the previous value.
            if (!headers->empty()) {
                auto& value = headers->back().second;
                value += ' ';
                value += trim_ws(line);
            }
            return n;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            return n;  // the blank line that ends the block, or junk
        }
        headers->emplace_back(std::string(trim_ws(line.substr(0, colon))),
                              std::string(trim_ws(line.substr(colon + 1))));
        return n;
    } catch (...) {
        return 0;
    }
}

bool is_token(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' ||
               c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' ||
               c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
    });
}

bool sensitive_param(std::string_view name) {
    static constexpr std::array<std::string_view, 9> kWords = {
        "token", "key", "secret", "sig", "password", "passwd", "pwd", "credential", "auth"};
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
    return std::any_of(kWords.begin(), kWords.end(),
                       [&](std::string_view w) { return lower.find(w) != std::string::npos; });
}

// Throws HttpError for curl_easy_setopt failures, which mean an unsupported option or a bad value.
template <typename T>
void setopt(CURL* h, CURLoption opt, T value, const HttpRequest& req) {
    const CURLcode rc = curl().easy_setopt(h, opt, value);
    if (rc != CURLE_OK) {
        throw HttpError(classify(rc), rc, req.method, redact_url(req.url),
                        std::string("curl_easy_setopt: ") + curl().easy_strerror(rc));
    }
}

}  // namespace

HttpError::HttpError(Kind kind, int curl_code, std::string method, std::string redacted_url,
                     std::string detail)
    : std::runtime_error(method + " " + redacted_url + ": " + detail),
      kind_(kind),
      curl_code_(curl_code),
      method_(std::move(method)),
      url_(std::move(redacted_url)),
      detail_(std::move(detail)) {}

const std::string* HttpResponse::header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
        if (iequals(n, name)) {
            return &v;
        }
    }
    return nullptr;
}

HttpResponse http_request(const HttpRequest& req) {
    auto invalid = [&](const std::string& detail) {
        return HttpError(HttpError::Kind::kOther, CURLE_BAD_FUNCTION_ARGUMENT, req.method,
                         redact_url(req.url), detail);
    };
    if (!is_token(req.method)) {
        throw invalid("invalid HTTP method \"" + req.method + "\"");
    }

    CurlEasy handle(curl().easy_init());
    if (!handle) {
        throw HttpError(HttpError::Kind::kOther, CURLE_FAILED_INIT, req.method, redact_url(req.url),
                        "curl_easy_init failed");
    }
    CURL* h = handle.get();

    // Header lines are built by hand, so a CR or LF in a configured value could smuggle extra
    // headers or a second request; refuse them.
    CurlSlist header_list;
    bool has_expect = false;
    auto append_header = [&](const std::string& line) {
        curl_slist* next = curl().slist_append(header_list.get(), line.c_str());
        if (next == nullptr) {
            throw std::bad_alloc();
        }
        (void)header_list.release();  // now owned through `next`
        header_list.reset(next);
    };
    for (const auto& [name, value] : req.headers) {
        if (!is_token(name)) {
            throw invalid("invalid header name \"" + name + "\"");
        }
        if (value.find_first_of("\r\n") != std::string::npos ||
            value.find('\0') != std::string::npos) {
            throw invalid("header " + name + " contains a line break");
        }
        if (iequals(name, "Expect")) {
            has_expect = true;
        }
        // "Name;" is curl's spelling for a header with an empty value ("Name:" would delete it).
        append_header(value.empty() ? name + ";" : name + ": " + value);
    }
    if (!has_expect && !req.sigv4) {
        // curl would otherwise wait up to a second for "100 Continue" before large bodies. Not
        // with SigV4: curl would sign the removed header and the server reject the signature
        // (S3 answers 100 Continue at once, so the wait is one round trip).
        append_header("Expect:");
    }

    std::array<char, CURL_ERROR_SIZE> errbuf{};
    HttpResponse resp;
    Transfer transfer{h, &req, &resp, nullptr, -1};

    setopt(h, CURLOPT_ERRORBUFFER, errbuf.data(), req);
    setopt(h, CURLOPT_URL, req.url.c_str(), req);
    setopt(h, CURLOPT_NOSIGNAL, 1L, req);
#if LIBCURL_VERSION_NUM >= 0x075500
    setopt(h, CURLOPT_PROTOCOLS_STR, "http,https", req);
    setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https", req);
#else
    setopt(h, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS), req);
    setopt(h, CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS), req);
#endif
    setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()), req);
    setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout.count()), req);
    setopt(h, CURLOPT_USERAGENT, "mlkeeper", req);
    setopt(h, CURLOPT_HTTPHEADER, header_list.get(), req);
    setopt(h, CURLOPT_WRITEFUNCTION, &on_body, req);
    setopt(h, CURLOPT_WRITEDATA, static_cast<void*>(&transfer), req);
    setopt(h, CURLOPT_HEADERFUNCTION, &on_header, req);
    setopt(h, CURLOPT_HEADERDATA, static_cast<void*>(&resp.headers), req);
    if (!req.ca_file.empty()) {
        setopt(h, CURLOPT_CAINFO, req.ca_file.c_str(), req);
    }
    if (req.follow_redirects) {
        setopt(h, CURLOPT_FOLLOWLOCATION, 1L, req);
        setopt(h, CURLOPT_MAXREDIRS, 5L, req);
    }

    if (req.sigv4) {
        setopt(h, CURLOPT_AWS_SIGV4, req.sigv4->provider.c_str(), req);
        setopt(h, CURLOPT_USERNAME, req.sigv4->access_key_id.c_str(), req);
        setopt(h, CURLOPT_PASSWORD, req.sigv4->secret_access_key.c_str(), req);
    }
    if (req.stall_timeout.count() > 0) {
        setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L, req);
        setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(req.stall_timeout.count()), req);
    }

    if (req.method == "HEAD") {
        setopt(h, CURLOPT_NOBODY, 1L, req);
    } else if (req.body_reader) {
        setopt(h, CURLOPT_UPLOAD, 1L, req);
        setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body_size), req);
        setopt(h, CURLOPT_READFUNCTION, &on_read, req);
        setopt(h, CURLOPT_READDATA, static_cast<void*>(&transfer), req);
        if (req.method != "PUT") {
            setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str(), req);
        }
    } else if (req.method != "GET" || !req.body.empty()) {
        // The body is sent from req.body in place; req outlives the transfer.
        setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()), req);
        setopt(h, CURLOPT_POSTFIELDS, req.body.data(), req);
        if (req.method != "POST") {
            setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str(), req);
        }
    }

    const auto start = std::chrono::steady_clock::now();
    const CURLcode rc = curl().easy_perform(h);
    resp.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);

    if (transfer.error) {
        std::rethrow_exception(transfer.error);
    }
    if (rc != CURLE_OK) {
        std::string detail(errbuf.data(), ::strnlen(errbuf.data(), errbuf.size()));
        while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) {
            detail.pop_back();
        }
        if (detail.empty()) {
            detail = curl().easy_strerror(rc);
        }
        throw HttpError(classify(rc), rc, req.method, redact_url(req.url), detail);
    }

    long status = 0;
    curl().easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    resp.status = status;
    return resp;
}

std::string redact_url(std::string_view url) {
    std::string out;
    out.reserve(url.size());

    const auto scheme_end = url.find("://");
    const size_t auth_start = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
    size_t auth_end = url.find_first_of("/?#", auth_start);
    if (auth_end == std::string_view::npos) {
        auth_end = url.size();
    }
    std::string_view authority = url.substr(auth_start, auth_end - auth_start);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        authority.remove_prefix(at + 1);
    }
    out.append(url.substr(0, auth_start));
    out.append(authority);

    const std::string_view rest = url.substr(auth_end);
    const auto q = rest.find('?');
    const auto hash = rest.find('#');
    if (q == std::string_view::npos || (hash != std::string_view::npos && hash < q)) {
        out.append(rest);
        return out;
    }
    out.append(rest.substr(0, q + 1));
    const size_t query_end = hash == std::string_view::npos ? rest.size() : hash;
    std::string_view query = rest.substr(q + 1, query_end - q - 1);
    bool first = true;
    while (true) {
        const auto amp = query.find('&');
        const std::string_view param = query.substr(0, amp);
        if (!first) {
            out += '&';
        }
        first = false;
        const auto eq = param.find('=');
        if (eq != std::string_view::npos && sensitive_param(param.substr(0, eq))) {
            out.append(param.substr(0, eq + 1));
            out.append("REDACTED");
        } else {
            out.append(param);
        }
        if (amp == std::string_view::npos) {
            break;
        }
        query.remove_prefix(amp + 1);
    }
    out.append(rest.substr(query_end));
    return out;
}

}  // namespace mlk::core
