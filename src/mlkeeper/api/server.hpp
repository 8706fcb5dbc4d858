// The REST API's HTTP(S) server. Each configured listener gets its own socket, a poller thread
// (epoll: accepts, and holds idle keep-alive connections without a thread each) and a pool of
// request threads; cpp-httplib parses and writes the HTTP, while connections, TLS, time and size
// limits are ours. Per request: strip the listener's prefix, route (404/405),
// authenticate (401/403), rate-limit state changes (429), read the body (413), dispatch to the
// Router, and write one audit record for every call to an audited route. GET /health is served
// on every listener without authentication.
// Thread safety: start()/stop() from one thread; handlers run concurrently on pool threads, so the
// Router and its handlers must be safe for concurrent calls.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mlkeeper/api/api_settings.hpp"
#include "mlkeeper/api/auth.hpp"
#include "mlkeeper/api/rate_limit.hpp"
#include "mlkeeper/api/router.hpp"

namespace mlk::api {

// One call to an audited route, whatever its outcome (a refused call is audited too).
struct AuditRecord {
    std::string listener;   // "models", "shutdown", "monitor", "all"
    std::string principal;  // token name; "" when authentication is off or failed
    std::string client;     // "127.0.0.1:53422"
    std::string method;
    std::string path;  // decoded, without the listener prefix or query
    int status = 0;
};
using AuditSink = std::function<void(const AuditRecord&)>;

// The default sink: one info line "api audit: ..." through spdlog, control characters escaped.
void log_audit(const AuditRecord& record);

class ApiServer {
  public:
    // `router` must outlive the server. Without `tokens` nobody is asked to authenticate (the
    // settings allow that on loopback only). An empty `audit` means log_audit.
    ApiServer(const ApiSettings& settings, const Router& router,
              std::optional<TokenSet> tokens = std::nullopt, AuditSink audit = {});
    ~ApiServer();
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    // Binds every listener, then starts serving. On failure nothing stays bound and it throws:
    // mlk::Error "api listener models 127.0.0.1:5002: address already in use" for a socket,
    // mlk::ConfigError for TLS files that cannot be loaded. Call once.
    void start();

    // Stops accepting, lets requests already being handled finish and answer, closes idle
    // connections and joins every thread. Requests queued but not started get 503. Handlers must
    // return for it to return. Idempotent; the destructor calls it.
    void stop();

    // The port of each listener after start(), in settings order (port 0 resolved).
    std::vector<int> bound_ports() const;

    // Feeds `raw` (the bytes a client would send, possibly several requests) through listener
    // `index`'s HTTP parsing, limits, routing, authentication and dispatch without any socket,
    // and returns the bytes that would be sent back. For the fuzzer and tests; needs no start().
    std::string handle_raw(std::size_t index, std::string_view raw);

  private:
    struct Listener;  // one socket, its threads and its httplib::Server (server.cpp)

    ApiSettings settings_;
    const Router& router_;
    std::optional<TokenSet> tokens_;
    AuditSink audit_;
    RateLimiter limiter_;
    std::chrono::steady_clock::time_point started_;
    nlohmann::json parts_;  // library versions for /health, computed once
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::shared_ptr<void> tls_ctx_;  // SSL_CTX, when TLS is on
    int stop_fd_ = -1;               // an eventfd made readable by stop()
    std::atomic<bool> stopping_{false};
    bool started_once_ = false;
};

}  // namespace mlk::api
