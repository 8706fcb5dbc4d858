// One-shot HTTP(S) requests on libcurl for webhooks, S3 and the API tests: transport failures
// become HttpError (classified, with a redacted URL), HTTP statuses are returned as values.
// Thread safety: http_request() and redact_url() may be called from several threads at once; each
// request uses its own curl handle.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlk::core {

// Request signing by libcurl itself (CURLOPT_AWS_SIGV4). libcurl 7.88 signs every header given
// in HttpRequest::headers, takes the payload hash from an x-amz-content-sha256 header (which the
// caller must send) and uses the query string as written (so the caller must sort it).
struct AwsSigV4 {
    std::string provider;  // "aws:amz:<region>:<service>", e.g. "aws:amz:us-east-1:s3"
    std::string access_key_id;
    std::string secret_access_key;
};

struct HttpRequest {
    // "GET", "POST", "PUT", "DELETE", "HEAD", ... A non-empty body is sent with any method.
    std::string method = "GET";
    std::string url;  // http:// or https:// only; other schemes fail with HttpError kOther
    // Sent as given ("Name", "value"); a Content-Type here replaces curl's form default and a
    // User-Agent replaces "mlkeeper".
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::chrono::milliseconds timeout{10000};  // whole request, connect included; 0 = no limit
    std::chrono::milliseconds connect_timeout{5000};
    std::string ca_file;  // PEM bundle to trust instead of the system store; empty = system store
    bool follow_redirects = false;  // at most 5, http/https only
    std::optional<AwsSigV4> sigv4;

    // Streaming, for bodies too large to hold in memory. With `body_reader` set, `body` is
    // ignored and the request sends exactly `body_size` bytes pulled from it (it returns how many
    // it put in `buf`, at most `max`). A throw from it aborts the transfer and is rethrown from
    // http_request().
    std::function<std::size_t(char* buf, std::size_t max)> body_reader;
    std::uint64_t body_size = 0;
    // With `body_writer` set, a 2xx response's body goes to it instead of HttpResponse::body
    // (other statuses still fill `body`: error documents are small). A throw aborts the transfer
    // and is rethrown from http_request().
    std::function<void(std::string_view chunk)> body_writer;
    // Abort a transfer that moves under 1 KiB/s for this long (0 = never): a stalled peer is
    // found long before `timeout`, which large transfers must set generously.
    std::chrono::seconds stall_timeout{0};
};

struct HttpResponse {
    long status = 0;
    std::string body;
    // In arrival order, names as the server spelled them; only the final response's headers
    // when redirects were followed.
    std::vector<std::pair<std::string, std::string>> headers;
    std::chrono::milliseconds elapsed{0};

    // The first header named `name` (ASCII case-insensitive), or nullptr.
    const std::string* header(std::string_view name) const;
};

// A transport failure: nothing (or nothing complete) came back from the server.
class HttpError : public std::runtime_error {
  public:
    enum class Kind {
        kConnect,  // refused, unreachable, DNS lookup failed
        kTimeout,  // connect_timeout or timeout ran out
        kTls,      // handshake failed, certificate rejected, CA file unreadable
        kOther,    // bad URL or scheme, connection dropped mid-response, ...
    };

    // what() is "<METHOD> <redacted url>: <detail>".
    HttpError(Kind kind, int curl_code, std::string method, std::string redacted_url,
              std::string detail);

    Kind kind() const { return kind_; }
    int curl_code() const { return curl_code_; }  // the CURLcode, for finer decisions
    const std::string& method() const { return method_; }
    const std::string& url() const { return url_; }        // already redacted
    const std::string& detail() const { return detail_; }  // curl's exact message

  private:
    Kind kind_;
    int curl_code_;
    std::string method_;
    std::string url_;
    std::string detail_;
};

// Performs the request and returns whatever status the server sent (404 and 500 are values).
// Throws HttpError for transport failures; never raises SIGPIPE/SIGALRM (CURLOPT_NOSIGNAL).
HttpResponse http_request(const HttpRequest& request);

// The URL safe for logs and error messages: "user:password@" is removed and the values of query
// parameters whose names contain token, key, secret, sig, password, passwd, pwd, credential or
// auth (any case) become "REDACTED". Path segments are kept; callers whose URLs carry secrets in
// the path (Slack webhooks) must cut more.
std::string redact_url(std::string_view url);

}  // namespace mlk::core
