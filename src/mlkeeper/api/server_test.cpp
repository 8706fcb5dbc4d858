#include "mlkeeper/api/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/http_client.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

namespace mlk::api {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kAdminToken = "admin-token-0123456789abcdef";
constexpr const char* kReadToken = "read-token-0123456789abcdef";

// Lets a test hold handlers inside a request and let them go; every wait is bounded.
class Gate {
  public:
    void enter_and_wait() {
        std::unique_lock<std::mutex> lock(mu_);
        ++inside_;
        cv_.notify_all();
        cv_.wait_for(lock, 10s, [this] { return open_; });
    }
    bool wait_inside(int n) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, 10s, [&] { return inside_ >= n; });
    }
    void open() {
        std::lock_guard<std::mutex> lock(mu_);
        open_ = true;
        cv_.notify_all();
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    int inside_ = 0;
    bool open_ = false;
};

Route make_route(std::string method, std::string pattern, RouteGroup group, Access access,
                 Audit audit, Handler h) {
    Route r;
    r.method = std::move(method);
    r.pattern = std::move(pattern);
    r.group = group;
    r.access = access;
    r.audit = audit;
    r.handler = std::move(h);
    return r;
}

Router test_router(Gate& gate) {
    Router router;
    router.add(make_route("GET", "/models", RouteGroup::kModels, Access::kRead, Audit::kNo,
                          [](const Request&) {
                              Response r;
                              r.body = {{"models", nlohmann::json::array()}};
                              return r;
                          }));
    router.add(make_route("GET", "/models/{name}", RouteGroup::kModels, Access::kRead, Audit::kNo,
                          [](const Request& req) {
                              if (req.params.at("name") == "missing") {
                                  throw ApiError(404, "not_found", "no model 'missing'");
                              }
                              Response r;
                              r.body = {{"name", req.params.at("name")}};
                              return r;
                          }));
    router.add(make_route("POST", "/models/{name}/start", RouteGroup::kModels, Access::kAdmin,
                          Audit::kYes, [](const Request& req) {
                              Response r;
                              r.body = {{"name", req.params.at("name")},
                                        {"wait", req.query_or("wait", "true")},
                                        {"principal", req.principal},
                                        {"client", req.client},
                                        {"path", req.path}};
                              if (!req.body.empty()) {
                                  r.body["doc"] = nlohmann::json::parse(req.body);
                              }
                              return r;
                          }));
    router.add(make_route("POST", "/slow", RouteGroup::kModels, Access::kRead, Audit::kNo,
                          [&gate](const Request&) {
                              gate.enter_and_wait();
                              Response r;
                              r.body = {{"slow", true}};
                              return r;
                          }));
    router.add(make_route("GET", "/boom", RouteGroup::kModels, Access::kRead, Audit::kNo,
                          [](const Request&) -> Response {
                              throw std::runtime_error("disk /secret/path exploded");
                          }));
    router.add(make_route("GET", "/shutdown", RouteGroup::kShutdown, Access::kRead, Audit::kNo,
                          [](const Request&) {
                              Response r;
                              r.body = {{"shutdown", nullptr}};
                              return r;
                          }));
    router.add(make_route("POST", "/shutdown", RouteGroup::kShutdown, Access::kAdmin, Audit::kYes,
                          [](const Request&) {
                              Response r;
                              r.status = 201;
                              r.body = {{"shutdown", {{"delay_minutes", 5}}}};
                              return r;
                          }));
    return router;
}

ListenerSettings listener(std::string name, std::vector<RouteGroup> groups,
                          std::string prefix = "") {
    return {std::move(name), "127.0.0.1", 0, std::move(groups), std::move(prefix)};
}

ApiSettings test_settings() {
    ApiSettings s;
    s.listeners = {listener("shutdown", {RouteGroup::kShutdown, RouteGroup::kCommon}),
                   listener("models", {RouteGroup::kModels, RouteGroup::kCommon})};
    s.max_body = 4096;
    s.max_header = 2048;
    s.read_timeout = 700ms;
    s.write_timeout = 2s;
    s.idle_timeout = 700ms;
    s.workers = 4;
    s.rate_per_minute = 1000;
    return s;
}

TokenSet test_tokens() {
    return TokenSet::parse(
        std::string("alice admin ") + kAdminToken + "\nbob read " + kReadToken + "\n", "tokens");
}

class ApiServerTest : public ::testing::Test {
  protected:
    void start(ApiSettings s = test_settings(), std::optional<TokenSet> tokens = std::nullopt) {
        server_ = std::make_unique<ApiServer>(s, router_, std::move(tokens),
                                              [this](const AuditRecord& r) {
                                                  std::lock_guard<std::mutex> lock(mu_);
                                                  audit_.push_back(r);
                                              });
        server_->start();
        ports_ = server_->bound_ports();
    }
    int port(std::size_t i) const { return ports_.at(i); }
    std::string url(std::size_t listener, const std::string& path,
                    const std::string& scheme = "http") const {
        return scheme + "://127.0.0.1:" + std::to_string(port(listener)) + path;
    }
    core::HttpResponse call(std::string method, std::size_t listener, const std::string& path,
                            std::string body = "", const char* token = nullptr) {
        core::HttpRequest req;
        req.method = std::move(method);
        req.url = url(listener, path);
        req.body = std::move(body);
        req.timeout = 10s;
        if (!req.body.empty()) {
            req.headers.emplace_back("Content-Type", "application/json");
        }
        if (token != nullptr) {
            req.headers.emplace_back("Authorization", std::string("Bearer ") + token);
        }
        return core::http_request(req);
    }
    std::vector<AuditRecord> audit() {
        std::lock_guard<std::mutex> lock(mu_);
        return audit_;
    }

    void TearDown() override {
        if (server_) {
            server_->stop();  // before the members its threads use go away
        }
    }

    Gate gate_;
    Router router_ = test_router(gate_);
    std::mutex mu_;
    std::vector<AuditRecord> audit_;
    std::vector<int> ports_;
    std::unique_ptr<ApiServer> server_;
};

nlohmann::json json_of(const core::HttpResponse& r) {
    return nlohmann::json::parse(r.body);
}

std::string header(const core::HttpResponse& r, std::string_view name) {
    const auto* h = r.header(name);
    return h != nullptr ? *h : std::string("<none>");
}

// A raw TCP client for what curl will not send: half requests, garbage, pipelining.
class RawClient {
  public:
    explicit RawClient(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    }
    ~RawClient() { ::close(fd_); }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;
    bool connected() const { return connected_; }
    bool send(std::string_view s) {
        return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
    }
    // Everything until the server closes, or until `limit`; `closed` says which.
    std::string read_until_close(std::chrono::milliseconds limit, bool* closed = nullptr) {
        std::string out;
        const auto until = Clock::now() + limit;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
            if (left <= 0ms) {
                break;
            }
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
                break;
            }
            char buf[4096];
            const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
            if (n <= 0) {
                if (closed != nullptr) {
                    *closed = true;
                }
                return out;
            }
            out.append(buf, static_cast<std::size_t>(n));
        }
        if (closed != nullptr) {
            *closed = false;
        }
        return out;
    }
    // Reads until `count` complete responses (by Content-Length) arrived, or `limit`.
    std::string read_responses(int count, std::chrono::milliseconds limit) {
        std::string out;
        const auto until = Clock::now() + limit;
        while (complete_responses(out) < count && Clock::now() < until) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) {
                continue;
            }
            char buf[4096];
            const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
            if (n <= 0) {
                break;
            }
            out.append(buf, static_cast<std::size_t>(n));
        }
        return out;
    }
    static int complete_responses(const std::string& s) {
        int count = 0;
        std::size_t pos = 0;
        for (;;) {
            const auto end = s.find("\r\n\r\n", pos);
            if (end == std::string::npos) {
                return count;
            }
            const auto cl = s.find("Content-Length: ", pos);
            std::size_t len = 0;
            if (cl != std::string::npos && cl < end) {
                len = std::stoul(s.substr(cl + 16));
            }
            if (s.size() < end + 4 + len) {
                return count;
            }
            ++count;
            pos = end + 4 + len;
        }
    }

  private:
    int fd_ = -1;
    bool connected_ = false;
};

int status_of(const std::string& raw) {
    if (raw.rfind("HTTP/1.1 ", 0) != 0) {
        return 0;
    }
    return std::stoi(raw.substr(9, 3));
}

nlohmann::json body_of(const std::string& raw) {
    const auto end = raw.find("\r\n\r\n");
    return nlohmann::json::parse(raw.substr(end + 4));
}

TEST_F(ApiServerTest, HealthOnEveryListener) {
    start();
    for (std::size_t i = 0; i < 2; ++i) {
        const auto r = call("GET", i, "/health");
        ASSERT_EQ(r.status, 200) << r.body;
        EXPECT_EQ(header(r, "Content-Type"), "application/json");
        const auto j = json_of(r);
        EXPECT_EQ(j["status"], "ok");
        EXPECT_EQ(j["listener"], i == 0 ? "shutdown" : "models");
        EXPECT_TRUE(j["version"].is_string());
        EXPECT_GE(j["uptime_seconds"].get<double>(), 0.0);
        EXPECT_EQ(j["parts"]["cpp_httplib"], "0.11.4");
        EXPECT_NE(j["parts"]["openssl"].get<std::string>().find("OpenSSL"), std::string::npos);
        EXPECT_TRUE(j["parts"]["sqlite"].is_string());
        EXPECT_TRUE(j["parts"].contains("libcurl"));
        EXPECT_EQ(r.header("Server"), nullptr);
    }
    const auto r = call("POST", 1, "/health", "{}");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(header(r, "Allow"), "GET");
    EXPECT_EQ(json_of(r)["error"]["code"], "method_not_allowed");
}

TEST_F(ApiServerTest, RoutesByListenerGroup) {
    start();
    auto r = call("GET", 1, "/models");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(json_of(r)["models"], nlohmann::json::array());
    r = call("GET", 1, "/models/llama3");
    EXPECT_EQ(json_of(r)["name"], "llama3");
    // A percent-encoded segment arrives decoded.
    r = call("GET", 1, "/models/a%20b");
    EXPECT_EQ(json_of(r)["name"], "a b");
    // The shutdown routes live on the other listener only.
    r = call("GET", 1, "/shutdown");
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(json_of(r)["error"]["code"], "not_found");
    r = call("GET", 0, "/shutdown");
    EXPECT_EQ(r.status, 200);
    r = call("GET", 0, "/models");
    EXPECT_EQ(r.status, 404);
}

TEST_F(ApiServerTest, ErrorsAreJson) {
    start();
    auto r = call("GET", 1, "/nope");
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
    EXPECT_EQ(json_of(r)["error"]["code"], "not_found");

    r = call("DELETE", 1, "/models");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(header(r, "Allow"), "GET");
    EXPECT_EQ(json_of(r)["error"]["code"], "method_not_allowed");

    r = call("TRACE", 1, "/models");
    EXPECT_EQ(r.status, 405);

    r = call("GET", 1, "/models/missing");
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(json_of(r)["error"]["message"], "no model 'missing'");

    r = call("GET", 1, "/boom");
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(json_of(r)["error"]["code"], "internal");
    EXPECT_EQ(r.body.find("secret"), std::string::npos);
    for (const auto& [name, value] : r.headers) {
        EXPECT_EQ(value.find("secret"), std::string::npos) << name;
    }

    r = call("POST", 1, "/models/x/start", "{not json");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(json_of(r)["error"]["code"], "bad_request");
}

TEST_F(ApiServerTest, PassesQueryBodyClientAndPath) {
    start();
    const auto r =
        call("POST", 1, "/models/llama3/start?wait=false&x=1&wait=no%20way", R"({"n": 1})");
    ASSERT_EQ(r.status, 200) << r.body;
    const auto j = json_of(r);
    EXPECT_EQ(j["name"], "llama3");
    EXPECT_EQ(j["wait"], "no way");  // the last value wins
    EXPECT_EQ(j["principal"], "");
    EXPECT_EQ(j["path"], "/models/llama3/start");
    EXPECT_EQ(j["doc"]["n"], 1);
    EXPECT_EQ(j["client"].get<std::string>().rfind("127.0.0.1:", 0), 0u);
}

TEST_F(ApiServerTest, InvalidUtf8IsReplacedNotFatal) {
    start();
    const auto r = call("GET", 1, "/models/%ff%fe");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(json_of(r)["name"], "\xef\xbf\xbd\xef\xbf\xbd");
}

TEST_F(ApiServerTest, AuthMissingWrongReadAndAdmin) {
    start(test_settings(), test_tokens());
    auto r = call("GET", 1, "/models");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(header(r, "WWW-Authenticate"), "Bearer realm=\"mlkeeper\"");
    EXPECT_EQ(json_of(r)["error"]["code"], "unauthorized");

    r = call("GET", 1, "/models", "", "not-a-valid-token-at-all");
    EXPECT_EQ(r.status, 401);

    r = call("GET", 1, "/models", "", kReadToken);
    EXPECT_EQ(r.status, 200);
    r = call("POST", 1, "/models/x/start", "", kReadToken);
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(json_of(r)["error"]["code"], "forbidden");
    r = call("POST", 1, "/models/x/start", "", kAdminToken);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(json_of(r)["principal"], "alice");
    r = call("GET", 1, "/models", "", kAdminToken);
    EXPECT_EQ(r.status, 200);

    // Health needs no token; an unknown path is 404 before authentication.
    EXPECT_EQ(call("GET", 1, "/health").status, 200);
    EXPECT_EQ(call("GET", 1, "/nope").status, 404);
    // No token text in any answer.
    r = call("POST", 1, "/models/x/start", "", kReadToken);
    EXPECT_EQ(r.body.find(kReadToken), std::string::npos);
}

TEST_F(ApiServerTest, AuditsEveryCallToAnAuditedRoute) {
    start(test_settings(), test_tokens());
    call("POST", 1, "/models/x/start", "", kAdminToken);
    call("POST", 1, "/models/y/start", "", kReadToken);
    call("POST", 1, "/models/z/start");
    call("GET", 1, "/models", "", kReadToken);        // not audited
    call("POST", 0, "/shutdown", "{}", kAdminToken);  // other listener
    const auto a = audit();
    ASSERT_EQ(a.size(), 4u);
    EXPECT_EQ(a[0].listener, "models");
    EXPECT_EQ(a[0].principal, "alice");
    EXPECT_EQ(a[0].method, "POST");
    EXPECT_EQ(a[0].path, "/models/x/start");
    EXPECT_EQ(a[0].status, 200);
    EXPECT_EQ(a[0].client.rfind("127.0.0.1:", 0), 0u);
    EXPECT_EQ(a[1].principal, "bob");
    EXPECT_EQ(a[1].status, 403);
    EXPECT_EQ(a[2].principal, "");
    EXPECT_EQ(a[2].status, 401);
    EXPECT_EQ(a[3].listener, "shutdown");
    EXPECT_EQ(a[3].path, "/shutdown");
    EXPECT_EQ(a[3].status, 201);
}

TEST_F(ApiServerTest, RateLimitsAdminRoutesOnly) {
    auto s = test_settings();
    s.rate_per_minute = 2;
    start(s);
    EXPECT_EQ(call("POST", 1, "/models/x/start").status, 200);
    EXPECT_EQ(call("POST", 1, "/models/x/start").status, 200);
    const auto r = call("POST", 1, "/models/x/start");
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(json_of(r)["error"]["code"], "rate_limited");
    const int retry = std::stoi(header(r, "Retry-After"));
    EXPECT_GE(retry, 1);
    EXPECT_LE(retry, 30);
    // Read routes are not limited.
    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(call("GET", 1, "/models").status, 200);
    }
    // Refused calls are audited too.
    const auto a = audit();
    ASSERT_EQ(a.size(), 3u);
    EXPECT_EQ(a[2].status, 429);
}

TEST_F(ApiServerTest, OversizedBodyIs413Json) {
    start();
    // Exactly at the limit is fine (the handler then fails to parse it: 400, not 413).
    auto r = call("POST", 1, "/models/x/start", std::string(4096, ' '));
    EXPECT_EQ(r.status, 400);
    r = call("POST", 1, "/models/x/start", std::string(4097, ' '));
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(header(r, "Content-Type"), "application/json");
    EXPECT_EQ(json_of(r)["error"]["code"], "body_too_large");
    r = call("POST", 1, "/models/x/start", std::string(2 * 1024 * 1024, 'x'));
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(json_of(r)["error"]["code"], "body_too_large");
    // The server is fine afterwards.
    EXPECT_EQ(call("GET", 1, "/models").status, 200);
}

TEST_F(ApiServerTest, OversizedChunkedBodyIs413) {
    start();
    RawClient c(port(1));
    ASSERT_TRUE(c.connected());
    std::string req =
        "POST /models/x/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 40; ++i) {
        req += "400\r\n" + std::string(1024, 'a') + "\r\n";
    }
    req += "0\r\n\r\n";
    c.send(req);
    bool closed = false;
    const auto raw = c.read_until_close(5s, &closed);
    EXPECT_EQ(status_of(raw), 413) << raw.substr(0, 200);
    EXPECT_EQ(body_of(raw)["error"]["code"], "body_too_large");
    EXPECT_TRUE(closed);

    // A small chunked body is read and dispatched.
    RawClient ok(port(1));
    ok.send(
        "POST /models/x/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "8\r\n{\"n\": 2}\r\n0\r\n\r\n");
    const auto good = ok.read_responses(1, 5s);
    EXPECT_EQ(status_of(good), 200) << good;
    EXPECT_EQ(body_of(good)["doc"]["n"], 2);
}

TEST_F(ApiServerTest, CompressedBodiesAreRefused) {
    start();
    RawClient c(port(1));
    c.send(
        "POST /models/x/start HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
        "Content-Length: 3\r\n\r\nabc");
    const auto raw = c.read_responses(1, 5s);
    EXPECT_EQ(status_of(raw), 415);
}

TEST_F(ApiServerTest, MalformedHttpIs400AndClosed) {
    start();
    for (const char* garbage :
         {"GARBAGE\r\n\r\n", "GET /models FOO/1.1\r\n\r\n",
          "GET /models HTTP/1.1\r\nContent-Length: x\r\n\r\n",
          "POST /models/x/start HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"}) {
        RawClient c(port(1));
        c.send(garbage);
        bool closed = false;
        const auto raw = c.read_until_close(5s, &closed);
        EXPECT_EQ(status_of(raw), 400) << garbage << " -> " << raw;
        if (status_of(raw) == 400) {
            EXPECT_EQ(body_of(raw)["error"]["code"], "bad_request");
        }
    }
    EXPECT_EQ(call("GET", 1, "/models").status, 200);
}

TEST_F(ApiServerTest, OversizedHeadIs431) {
    start();
    RawClient c(port(1));
    c.send("GET /models HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(3000, 'a') + "\r\n\r\n");
    bool closed = false;
    const auto raw = c.read_until_close(5s, &closed);
    EXPECT_EQ(status_of(raw), 431) << raw;
    EXPECT_TRUE(closed);

    // A request line alone over the limit gets an answer too.
    RawClient line(port(1));
    line.send("GET /" + std::string(3000, 'a') + " HTTP/1.1\r\n\r\n");
    const auto raw2 = line.read_until_close(5s, &closed);
    EXPECT_EQ(status_of(raw2), 431) << raw2;
    EXPECT_TRUE(closed);
}

TEST_F(ApiServerTest, SlowClientIsCutOffAndOthersAreServed) {
    start();
    RawClient slow(port(1));
    ASSERT_TRUE(slow.connected());
    const auto t0 = Clock::now();
    slow.send("GET /models HTTP/1.1\r\nHost:");
    // Meanwhile others are served at once.
    for (int i = 0; i < 3; ++i) {
        const auto t = Clock::now();
        EXPECT_EQ(call("GET", 1, "/models").status, 200);
        EXPECT_LT(Clock::now() - t, 500ms);
    }
    bool closed = false;
    const auto raw = slow.read_until_close(5s, &closed);
    const auto took = Clock::now() - t0;
    EXPECT_TRUE(closed);
    EXPECT_EQ(status_of(raw), 408) << raw;
    EXPECT_GE(took, 600ms);
    EXPECT_LT(took, 2s);

    // Dripping a byte at a time does not extend the deadline: it is for the whole request.
    RawClient drip(port(1));
    const auto t1 = Clock::now();
    const std::string req =
        "GET /models HTTP/1.1\r\nHost: x\r\nX-A: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n";
    bool cut = false;
    for (char ch : req) {
        if (!drip.send(std::string(1, ch))) {
            cut = true;
            break;
        }
        std::this_thread::sleep_for(40ms);
        if (Clock::now() - t1 > 3s) {
            break;
        }
    }
    const auto rest = drip.read_until_close(3s, &closed);
    EXPECT_TRUE(cut || closed);
    EXPECT_LT(Clock::now() - t1, 4s);

    // A connection that sends nothing is closed after the read timeout, without an answer.
    RawClient mute(port(1));
    const auto t2 = Clock::now();
    EXPECT_EQ(mute.read_until_close(5s, &closed), "");
    EXPECT_TRUE(closed);
    EXPECT_LT(Clock::now() - t2, 2s);
}

TEST_F(ApiServerTest, KeepAlivePipeliningAndIdleClose) {
    start();
    RawClient c(port(1));
    c.send("GET /models/a HTTP/1.1\r\nHost: x\r\n\r\nGET /models/b HTTP/1.1\r\nHost: x\r\n\r\n");
    const auto raw = c.read_responses(2, 5s);
    ASSERT_EQ(RawClient::complete_responses(raw), 2) << raw;
    EXPECT_LT(raw.find("{\"name\":\"a\"}"), raw.find("{\"name\":\"b\"}"));
    // The connection stays usable, then closes once idle for idle_timeout.
    c.send("GET /models/c HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_NE(c.read_responses(1, 5s).find("\"c\""), std::string::npos);
    const auto t0 = Clock::now();
    bool closed = false;
    c.read_until_close(5s, &closed);
    EXPECT_TRUE(closed);
    EXPECT_LT(Clock::now() - t0, 2s);
}

TEST_F(ApiServerTest, RefusedRequestWithUnreadBodyClosesTheConnection) {
    start(test_settings(), test_tokens());
    RawClient c(port(1));
    c.send(
        "POST /models/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n"
        "GET /models HTTP/1.1");
    bool closed = false;
    const auto raw = c.read_until_close(5s, &closed);
    EXPECT_EQ(status_of(raw), 401) << raw;
    EXPECT_NE(raw.find("Connection: close"), std::string::npos);
    EXPECT_EQ(RawClient::complete_responses(raw), 1);
    EXPECT_TRUE(closed);
}

TEST_F(ApiServerTest, ExpectContinueRefusedBeforeTheBody) {
    start(test_settings(), test_tokens());
    RawClient c(port(1));
    c.send(
        "POST /models/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        "Expect: 100-continue\r\n\r\n");
    const auto raw = c.read_responses(1, 5s);
    EXPECT_EQ(status_of(raw), 401) << raw;

    RawClient ok(port(1));
    const std::string body = R"({"n": 3})";
    ok.send("POST /models/x/start HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
            std::string(kAdminToken) + "\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\nExpect: 100-continue\r\n\r\n");
    const auto cont = ok.read_responses(1, 5s);
    EXPECT_EQ(status_of(cont), 100) << cont;
    ok.send(body);
    const auto res = ok.read_responses(2, 5s);
    const auto second = res.substr(res.find("HTTP/1.1 200"));
    EXPECT_EQ(status_of(second), 200) << res;
    EXPECT_EQ(body_of(second)["doc"]["n"], 3);
}

TEST_F(ApiServerTest, ConcurrentRequests) {
    start();
    std::vector<std::future<int>> results;
    for (int t = 0; t < 12; ++t) {
        results.push_back(std::async(std::launch::async, [this, t] {
            int ok = 0;
            for (int i = 0; i < 10; ++i) {
                const auto r = call("GET", 1, "/models/m" + std::to_string(t * 100 + i));
                if (r.status == 200 && json_of(r)["name"] == "m" + std::to_string(t * 100 + i)) {
                    ++ok;
                }
            }
            return ok;
        }));
    }
    int total = 0;
    for (auto& f : results) {
        total += f.get();
    }
    EXPECT_EQ(total, 120);
}

TEST_F(ApiServerTest, StopLetsRequestsInFlightFinish) {
    start();
    std::vector<std::future<long>> inflight;
    for (int i = 0; i < 3; ++i) {
        inflight.push_back(std::async(std::launch::async, [this] {
            try {
                return call("POST", 1, "/slow", "{}").status;
            } catch (const std::exception&) {
                return 0L;
            }
        }));
    }
    ASSERT_TRUE(gate_.wait_inside(3));
    auto stopped = std::async(std::launch::async, [this] { server_->stop(); });
    EXPECT_EQ(stopped.wait_for(300ms), std::future_status::timeout);  // waits for the three
    // New connections are refused once stop() began.
    std::this_thread::sleep_for(100ms);
    EXPECT_THROW(call("GET", 1, "/models"), core::HttpError);
    gate_.open();
    ASSERT_EQ(stopped.wait_for(10s), std::future_status::ready);
    for (auto& f : inflight) {
        EXPECT_EQ(f.get(), 200);
    }
    server_->stop();  // idempotent
}

TEST_F(ApiServerTest, IdleConnectionsHoldNoThread) {
    auto s = test_settings();
    s.workers = 1;
    s.idle_timeout = 5s;
    start(s);
    // Twenty kept-alive connections, each after one request: none keeps the only worker.
    std::vector<std::unique_ptr<RawClient>> idle;
    for (int i = 0; i < 20; ++i) {
        idle.push_back(std::make_unique<RawClient>(port(1)));
        idle.back()->send("GET /models HTTP/1.1\r\nHost: x\r\n\r\n");
        ASSERT_EQ(status_of(idle.back()->read_responses(1, 5s)), 200) << i;
    }
    const auto t0 = Clock::now();
    EXPECT_EQ(call("GET", 1, "/models").status, 200);
    EXPECT_LT(Clock::now() - t0, 500ms);
    // And each of them can still be used.
    for (auto& c : idle) {
        c->send("GET /models/again HTTP/1.1\r\nHost: x\r\n\r\n");
        EXPECT_EQ(status_of(c->read_responses(1, 5s)), 200);
    }
}

TEST_F(ApiServerTest, BusyServerAnswers503InsteadOfHanging) {
    auto s = test_settings();
    s.workers = 1;  // at most 64 connections; a request may wait read_timeout for the thread
    s.read_timeout = 1s;
    s.idle_timeout = 5s;
    start(s);
    auto busy =
        std::async(std::launch::async, [this] { return call("POST", 1, "/slow", "{}").status; });
    ASSERT_TRUE(gate_.wait_inside(1));
    std::vector<std::unique_ptr<RawClient>> clients;
    for (int i = 0; i < 70; ++i) {
        clients.push_back(std::make_unique<RawClient>(port(1)));
        clients.back()->send("GET /models HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    // Connections over the limit are told at once.
    int shed_at_once = 0;
    for (auto& c : clients) {
        const auto raw = c->read_until_close(20ms);
        if (status_of(raw) == 503) {
            EXPECT_EQ(body_of(raw)["error"]["code"], "unavailable");
            ++shed_at_once;
        }
    }
    EXPECT_GE(shed_at_once, 5);
    EXPECT_LE(shed_at_once, 10);
    // The others waited longer than read_timeout for the thread: they get 503 too, not a hang.
    std::this_thread::sleep_for(1200ms);
    gate_.open();
    EXPECT_EQ(busy.get(), 200);
    int shed_later = 0;
    for (auto& c : clients) {
        const auto raw = c->read_responses(1, 3s);
        shed_later += status_of(raw) == 503 ? 1 : 0;
    }
    EXPECT_GE(shed_later, 50);
    // Afterwards the server is fine.
    EXPECT_EQ(call("GET", 1, "/models").status, 200);
}

TEST_F(ApiServerTest, SinglePortModeUsesThePrefix) {
    auto s = test_settings();
    s.listeners = {listener(
        "all",
        {RouteGroup::kCommon, RouteGroup::kShutdown, RouteGroup::kModels, RouteGroup::kMonitor},
        "/api/v1")};
    start(s);
    EXPECT_EQ(call("GET", 0, "/api/v1/models").status, 200);
    EXPECT_EQ(call("GET", 0, "/api/v1/shutdown").status, 200);
    EXPECT_EQ(call("POST", 0, "/api/v1/models/x/start").status, 200);
    EXPECT_EQ(json_of(call("POST", 0, "/api/v1/models/x/start"))["path"], "/models/x/start");
    EXPECT_EQ(call("GET", 0, "/models").status, 404);
    EXPECT_EQ(call("GET", 0, "/api/v1").status, 404);
    EXPECT_EQ(call("GET", 0, "/api/v1/").status, 404);
    EXPECT_EQ(call("GET", 0, "/api/v1x/models").status, 404);
    auto r = call("GET", 0, "/health");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(json_of(r)["listener"], "all");
    EXPECT_EQ(call("GET", 0, "/api/v1/health").status, 200);
    const auto a = audit();
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a[0].path, "/models/x/start");
}

TEST_F(ApiServerTest, ListensOnIpv6) {
    auto s = test_settings();
    s.listeners = {ListenerSettings{"models", "::1", 0, {RouteGroup::kModels}, ""}};
    try {
        start(s);
    } catch (const Error& e) {
        GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
    }
    core::HttpRequest req;
    req.method = "POST";
    req.url = "http://[::1]:" + std::to_string(port(0)) + "/models/x/start";
    const auto r = core::http_request(req);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(json_of(r)["client"].get<std::string>().rfind("[::1]:", 0), 0u) << r.body;
    const auto a = audit();
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].client.rfind("[::1]:", 0), 0u);
}

TEST_F(ApiServerTest, BindFailureNamesTheAddress) {
    int blocker = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ASSERT_EQ(::bind(blocker, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(::listen(blocker, 1), 0);
    ASSERT_EQ(::getsockname(blocker, reinterpret_cast<sockaddr*>(&a), &len), 0);
    const int taken = ntohs(a.sin_port);

    auto s = test_settings();
    s.listeners[1].port = taken;
    ApiServer server(s, router_);
    try {
        server.start();
        ADD_FAILURE() << "start() should have failed";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "api listener models on 127.0.0.1:" +
                                             std::to_string(taken) + ": address already in use");
    }
    ::close(blocker);
}

TEST_F(ApiServerTest, Tls) {
    testing::TempDir dir;
    const auto cert = dir / "cert.pem";
    const auto key = dir / "key.pem";
    const auto gen = testing::run_shell(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" +
            key.string() + "' -out '" + cert.string() + "'",
        std::chrono::seconds(30));
    ASSERT_TRUE(gen.ok()) << gen.err;

    auto s = test_settings();
    s.tls_cert = cert;
    s.tls_key = key;
    start(s, test_tokens());
    core::HttpRequest req;
    req.url = url(1, "/models", "https");
    req.ca_file = cert.string();
    req.headers.emplace_back("Authorization", std::string("Bearer ") + kReadToken);
    auto r = core::http_request(req);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(json_of(r)["models"], nlohmann::json::array());
    req.url = url(0, "/health", "https");
    EXPECT_EQ(core::http_request(req).status, 200);

    // Plain HTTP to the TLS port gets no HTTP answer, and the server carries on.
    RawClient plain(port(1));
    plain.send("GET /models HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(plain.read_until_close(3s).find("HTTP/1.1 200"), std::string::npos);
    req.url = url(1, "/models", "https");
    EXPECT_EQ(core::http_request(req).status, 200);

    // A TLS client that connects and stalls in the handshake is cut off too.
    RawClient stall(port(1));
    bool closed = false;
    const auto t0 = Clock::now();
    stall.read_until_close(5s, &closed);
    EXPECT_TRUE(closed);
    EXPECT_LT(Clock::now() - t0, 2s);
}

TEST_F(ApiServerTest, TlsFilesThatDoNotLoadAreConfigErrors) {
    testing::TempDir dir;
    auto s = test_settings();
    s.tls_cert = dir.write("cert.pem", "not a certificate");
    s.tls_key = dir.write("key.pem", "not a key");
    ApiServer server(s, router_);
    try {
        server.start();
        ADD_FAILURE() << "start() should have failed";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()).rfind("api.tls_cert: " + s.tls_cert.string(), 0), 0u)
            << e.what();
    }
}

TEST_F(ApiServerTest, HandleRawNeedsNoSocket) {
    ApiServer server(test_settings(), router_, test_tokens());
    auto out = server.handle_raw(1, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(status_of(out), 200) << out;
    EXPECT_EQ(body_of(out)["listener"], "models");
    out = server.handle_raw(1,
                            "GET /models HTTP/1.1\r\n\r\nGET /models HTTP/1.1\r\nAuthorization: "
                            "Bearer " +
                                std::string(kReadToken) + "\r\n\r\n");
    EXPECT_EQ(RawClient::complete_responses(out), 2) << out;
    EXPECT_EQ(status_of(out), 401);
    EXPECT_NE(out.find("HTTP/1.1 200"), std::string::npos);
    out = server.handle_raw(0, std::string("\x00\xff garbage\r\n\r\n", 15));
    EXPECT_EQ(status_of(out), 400) << out;
    EXPECT_EQ(server.handle_raw(0, ""), "");
    EXPECT_THROW(server.handle_raw(7, ""), std::out_of_range);
}

TEST(ApiAudit, LogLineEscapesControlCharacters) {
    // log_audit goes through spdlog's default logger; it must not throw on odd input.
    EXPECT_NO_THROW(log_audit({"models", "", "127.0.0.1:1", "POST", "/models/a\nb/start", 200}));
}

}  // namespace
}  // namespace mlk::api
