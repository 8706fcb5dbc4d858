// How CLI commands (`mlkeeper models`, `mlkeeper shutdown`) call the running agent's REST API:
// the base URL and token from [api] client_url / client_token_file (or derived from the
// listener settings), JSON requests over core::http_request, and API error documents turned into
// one-line errors. Thread safety: an ApiClient is immutable after construction; call() may run
// from several threads at once.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mlk::core {
class Config;
}

namespace mlk::cli {

// Which of the agent's listeners a command talks to (the seeds' ports 5002 and 5001).
enum class AgentService { kModels, kShutdown };

// The [api] values the client URL is derived from, as raw text (so tests need no config keys).
struct ApiListenerConfig {
    std::string client_url;       // [api] client_url: used as given when not empty
    std::string listen;           // [api] listen: single-port mode when not empty
    std::string listen_models;    // [api] listen_models, "127.0.0.1:5002"; "" = disabled
    std::string listen_shutdown;  // [api] listen_shutdown, "127.0.0.1:5001"; "" = disabled
    std::string tls_cert;         // [api] tls_cert: the agent serves https when set
};

// The base URL every path is appended to, without a trailing '/':
// client_url as given; else http://LISTEN/api/v1 in single-port mode; else the service's own
// listener. A wildcard bind address is reached through loopback (0.0.0.0 -> 127.0.0.1,
// [::] -> [::1]); https when tls_cert is set. Throws ConfigError when the service's listener is
// disabled and no client_url is set, or a listen address has no port.
std::string derive_base_url(const ApiListenerConfig& cfg, AgentService service);

struct ApiClientSettings {
    std::string base_url;  // "http://127.0.0.1:5002" or "https://host:8080/api/v1"
    std::string token;     // "" = no Authorization header
    std::string ca_file;   // PEM to trust for https; "" = the system store
    std::chrono::milliseconds connect_timeout{3000};
};

// Reads a token file: the token alone (surrounding whitespace ignored). Throws ConfigError when
// the file cannot be read, is readable or writable by every user (mode & 007), is empty, or
// holds more than one word.
std::string read_token_file(const std::filesystem::path& path);

// [api] client_url, client_token_file, listen, listen_models, listen_shutdown and tls_cert of a
// loaded configuration. tls_cert doubles as the CA file: a home lab's certificate is
// self-signed.
ApiClientSettings api_client_settings(const core::Config& cfg, AgentService service);

// An error document the agent answered with ({"error": {"code", "message"}}), or a non-JSON
// answer (code "http_error"). what() is "<message> (<code>, HTTP <status>)".
class ApiCallError : public std::runtime_error {
  public:
    ApiCallError(long status, std::string code, std::string message, nlohmann::json body);
    long status() const { return status_; }
    const std::string& code() const { return code_; }
    const std::string& message() const { return message_; }
    const nlohmann::json& body() const { return body_; }  // the parsed document, or null

  private:
    long status_;
    std::string code_;
    std::string message_;
    nlohmann::json body_;
};

struct ApiReply {
    long status = 0;
    nlohmann::json body;  // the parsed JSON document
};

class ApiClient {
  public:
    explicit ApiClient(ApiClientSettings settings);

    // METHOD base_url + path_and_query (which must start with '/'); `body` is sent as JSON
    // unless null. `timeout` bounds the whole call (a model start may wait minutes).
    // Returns 2xx replies. Throws ApiCallError for any other status, and mlk::Error (exit 1)
    // with one line when the agent cannot be reached ("cannot reach the mlkeeper agent at URL:
    // connection refused — is `mlkeeper agent` running?"), timed out, failed TLS, or answered
    // 2xx with something that is not JSON.
    ApiReply call(std::string_view method, std::string_view path_and_query,
                  const nlohmann::json& body = nullptr,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

    const ApiClientSettings& settings() const { return settings_; }

  private:
    ApiClientSettings settings_;
};

// `s` percent-encoded for one URL path segment or query value (RFC 3986 unreserved kept).
std::string url_encode(std::string_view s);

// An API time ("2026-11-22T14:00:00Z") for people: local "2026-11-22 15:00:00"; "-" for null or
// a missing value; any other value as it came.
std::string display_time(const nlohmann::json& v);

// The time an API time is from `now`, for people: "in 25m", "2h 3m ago", "now" (within 5 s);
// "" when `v` is not an API time.
std::string relative_time(const nlohmann::json& v, std::chrono::system_clock::time_point now);

}  // namespace mlk::cli
