// The REST API's routing table: method + path pattern ("/models/{name}/start") -> handler, with
// the access each route needs. Handlers see a parsed Request and return a JSON Response; they
// report client errors by throwing ApiError, which becomes {"error": {"code", "message"}}. The
// transport (listeners, TLS, auth, limits, audit) lives in api/server; routes know none of it.
// Thread safety: build the table first (add()), then dispatch() from any number of threads.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlk::api {

// What a caller's token allows, and what a route needs. A route that changes state is kAdmin.
// kPublic routes need no token even when authentication is on: only pages that hold no data
// (the status page's shell, which then fetches its data with the user's token).
enum class Access { kRead, kAdmin, kPublic };

// A route's group decides which listener serves it (the seeds' three ports, or all of them in
// single-port mode under /api/v1).
// kMetrics: the agent's Prometheus endpoint and status page, on a listener of their own.
enum class RouteGroup { kCommon, kShutdown, kModels, kMonitor, kMetrics };

struct Request {
    std::string method;                         // "GET", "POST", "DELETE"
    std::string path;                           // decoded, without any /api/v1 prefix
    std::map<std::string, std::string> params;  // {name} segments of the matched pattern
    std::map<std::string, std::string> query;   // last value wins for repeated keys
    std::string body;                           // at most the configured body limit
    std::string client;                         // "127.0.0.1:53422"
    std::string principal;                      // token name; "" when authentication is off
    // The query parameter or `fallback`.
    std::string query_or(std::string_view key, std::string_view fallback) const;
};

struct Response {
    int status = 200;
    nlohmann::json body = nlohmann::json::object();
    std::vector<std::pair<std::string, std::string>> headers;  // e.g. Retry-After, Allow
    // Already serialized JSON, sent instead of `body` when set: for hot read-only routes that
    // reuse the same document across requests.
    std::shared_ptr<const std::string> raw_body;
    // The media type of raw_body ("text/plain; version=0.0.4", "text/html; charset=utf-8");
    // `body` is always JSON.
    std::string content_type = "application/json";
    // {"error": {"code": code, "message": message}} with `status`.
    static Response error(int status, std::string_view code, std::string_view message);
};

// Thrown by handlers (and by the router) for an answer other than success: 400 bad input,
// 404 unknown model, 409 conflicting state, ... `code` is a stable snake_case word
// ("bad_request", "not_found", "conflict", "start_failed") scripts may test.
class ApiError : public std::runtime_error {
  public:
    ApiError(int status, std::string code, const std::string& message)
        : std::runtime_error(message), status_(status), code_(std::move(code)) {}
    int status() const { return status_; }
    const std::string& code() const { return code_; }

  private:
    int status_;
    std::string code_;
};

using Handler = std::function<Response(const Request&)>;

// Whether a call through this route is written to the audit log (every state change is).
enum class Audit { kNo, kYes };

struct Route {
    std::string method;
    std::string pattern;  // literal segments and {param} segments; no wildcards
    Access access = Access::kRead;
    RouteGroup group = RouteGroup::kCommon;
    Audit audit = Audit::kNo;
    Handler handler;
};

// Where a request landed: the route (and its params), or why none did.
struct Match {
    const Route* route = nullptr;  // nullptr: see `status`
    std::map<std::string, std::string> params;
    int status = 200;   // 404 no such path, 405 path exists, wrong method
    std::string allow;  // for 405: "GET, POST"
};

class Router {
  public:
    // Throws std::logic_error for a duplicate (method, pattern) or a malformed pattern.
    void add(Route route);
    // Matches `path` (already decoded, no prefix) among routes of the given groups.
    Match match(std::string_view method, std::string_view path,
                const std::vector<RouteGroup>& groups) const;
    // Runs the route's handler; ApiError and nlohmann::json::exception (-> 400) become error
    // responses, any other exception a 500 "internal" whose message is logged, not sent.
    Response dispatch(const Match& m, Request& req) const;
    const std::vector<Route>& routes() const { return routes_; }

  private:
    std::vector<Route> routes_;
};

}  // namespace mlk::api
