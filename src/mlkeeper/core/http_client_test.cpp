// Tests for the libcurl client against a real cpp-httplib server on 127.0.0.1; every wait is
// bounded and the server is stopped on every path.
#include "mlkeeper/core/http_client.hpp"

#include "support/http_test_server.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace mlk::core {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

using mlk::testing::RefusingPort;
using mlk::testing::TestServer;

// Accepts one connection, keeps the raw request head and answers "200 OK"; for checks that need
// the bytes on the wire (cpp-httplib hides headers with empty values).
class RawOnceServer {
  public:
    RawOnceServer() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(addr);
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::listen(fd_, 1) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            const int err = errno;
            if (fd_ >= 0) {
                ::close(fd_);
            }
            throw std::system_error(err, std::generic_category(), "raw server on 127.0.0.1");
        }
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    RawOnceServer(const RawOnceServer&) = delete;
    RawOnceServer& operator=(const RawOnceServer&) = delete;
    ~RawOnceServer() {
        if (thread_.joinable()) {
            thread_.join();
        }
        ::close(fd_);
    }
    int port() const { return port_; }
    // Waits (at most about 5 s) for the one request and returns its head.
    std::string head() {
        if (thread_.joinable()) {
            thread_.join();
        }
        return head_;
    }

  private:
    void serve() {
        pollfd pfd{fd_, POLLIN, 0};
        if (::poll(&pfd, 1, 5000) != 1) {
            return;
        }
        const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) {
            return;
        }
        timeval tv{5, 0};
        ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[4096];
        while (head_.find("\r\n\r\n") == std::string::npos) {
            const ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
            if (n <= 0) {
                break;
            }
            head_.append(buf, static_cast<size_t>(n));
        }
        head_ = head_.substr(0, head_.find("\r\n\r\n"));
        static constexpr char kReply[] =
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)::send(conn, kReply, sizeof(kReply) - 1, MSG_NOSIGNAL);
        ::close(conn);
    }

    int fd_ = -1;
    int port_ = 0;
    std::thread thread_;
    std::string head_;
};

// The HttpError a request throws; a test failure (and nullopt) when it succeeds.
std::optional<HttpError> request_error(const HttpRequest& req) {
    try {
        (void)http_request(req);
    } catch (const HttpError& e) {
        return e;
    }
    ADD_FAILURE() << "request to " << req.url << " did not fail";
    return std::nullopt;
}

std::string header_or(const httplib::Request& req, const char* name, const char* fallback) {
    return req.has_header(name) ? req.get_header_value(name) : fallback;
}

TEST(HttpClient, GetReturnsBodyStatusAndHeaders) {
    TestServer srv([](httplib::Server& s) {
        s.Get("/hello", [](const httplib::Request& req, httplib::Response& res) {
            res.set_header("X-Reply", "yes");
            res.set_content("hi " + header_or(req, "X-Test", "none") + " " +
                                header_or(req, "User-Agent", "no-agent"),
                            "text/plain");
        });
    });
    HttpRequest req;
    req.url = srv.url("/hello");
    req.headers = {{"X-Test", "abc"}};
    const HttpResponse resp = http_request(req);
    EXPECT_EQ(resp.status, 200);
    EXPECT_EQ(resp.body, "hi abc mlkeeper");
    ASSERT_NE(resp.header("x-reply"), nullptr);
    EXPECT_EQ(*resp.header("x-reply"), "yes");
    ASSERT_NE(resp.header("Content-Type"), nullptr);
    EXPECT_EQ(*resp.header("Content-Type"), "text/plain");
    EXPECT_EQ(resp.header("X-Missing"), nullptr);
    EXPECT_GE(resp.elapsed.count(), 0);
    EXPECT_LT(resp.elapsed, 5s);
}

TEST(HttpClient, PostSendsBodyAndHeadersExactly) {
    std::mutex mu;
    std::string got_body, got_type, got_auth, got_expect = "unset";
    TestServer srv([&](httplib::Server& s) {
        s.Post("/echo", [&](const httplib::Request& req, httplib::Response& res) {
            {
                std::lock_guard<std::mutex> lock(mu);
                got_body = req.body;
                got_type = header_or(req, "Content-Type", "");
                got_auth = header_or(req, "Authorization", "");
                got_expect = header_or(req, "Expect", "unset");
            }
            res.status = 201;
            res.set_content("echo:" + req.body, "application/json");
        });
    });
    HttpRequest req;
    req.method = "POST";
    req.url = srv.url("/echo");
    req.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer s3cr3t"}};
    // Large enough that curl would normally ask for "Expect: 100-continue"; binary bytes too.
    req.body = "{\"a\":1}" + std::string(2 << 20, 'x') + std::string("\0\xff", 2);
    const HttpResponse resp = http_request(req);
    EXPECT_EQ(resp.status, 201);
    EXPECT_EQ(resp.body, "echo:" + req.body);
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(got_body, req.body);
    EXPECT_EQ(got_type, "application/json");
    EXPECT_EQ(got_auth, "Bearer s3cr3t");
    EXPECT_EQ(got_expect, "unset");
}

TEST(HttpClient, OtherMethodsAndEmptyBodies) {
    std::mutex mu;
    std::vector<std::string> seen;
    TestServer srv([&](httplib::Server& s) {
        auto record = [&](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard<std::mutex> lock(mu);
            seen.push_back(req.method + " " + req.body);
            res.set_content("body", "text/plain");
        };
        s.Put("/r", record);
        s.Delete("/r", record);
        s.Post("/r", record);
        s.Get("/r", record);  // also answers HEAD
    });
    HttpRequest req;
    req.url = srv.url("/r");
    req.method = "PUT";
    req.body = "data";
    EXPECT_EQ(http_request(req).status, 200);
    req.method = "DELETE";
    req.body.clear();
    EXPECT_EQ(http_request(req).status, 200);
    req.method = "POST";
    EXPECT_EQ(http_request(req).status, 200);
    req.method = "HEAD";
    const HttpResponse head = http_request(req);
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.body, "");
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(seen, (std::vector<std::string>{"PUT data", "DELETE ", "POST ", "HEAD "}));
}

TEST(HttpClient, WireFormatOfAnEmptyPost) {
    RawOnceServer raw;
    HttpRequest req;
    req.method = "POST";
    req.url = "http://127.0.0.1:" + std::to_string(raw.port()) + "/p";
    req.headers = {{"X-Empty", ""}, {"User-Agent", "custom/1"}};
    EXPECT_EQ(http_request(req).status, 200);
    const std::string head = raw.head();
    EXPECT_EQ(head.rfind("POST /p HTTP/1.1\r\n", 0), 0U) << head;
    EXPECT_NE(head.find("\r\nX-Empty:\r\n"), std::string::npos) << head;
    EXPECT_NE(head.find("\r\nContent-Length: 0"), std::string::npos) << head;
    EXPECT_NE(head.find("\r\nUser-Agent: custom/1"), std::string::npos) << head;
    EXPECT_EQ(head.find("mlkeeper"), std::string::npos) << head;
    EXPECT_EQ(head.find("Expect"), std::string::npos) << head;
}

TEST(HttpClient, ErrorStatusesAreReturnedNotThrown) {
    TestServer srv([](httplib::Server& s) {
        s.Get("/boom", [](const httplib::Request&, httplib::Response& res) {
            res.status = 500;
            res.set_content("internal boom", "text/plain");
        });
        s.Get("/busy", [](const httplib::Request&, httplib::Response& res) {
            res.status = 429;
            res.set_header("Retry-After", "7");
        });
    });
    HttpRequest req;
    req.url = srv.url("/missing");
    EXPECT_EQ(http_request(req).status, 404);
    req.url = srv.url("/boom");
    const HttpResponse boom = http_request(req);
    EXPECT_EQ(boom.status, 500);
    EXPECT_EQ(boom.body, "internal boom");
    req.url = srv.url("/busy");
    const HttpResponse busy = http_request(req);
    EXPECT_EQ(busy.status, 429);
    ASSERT_NE(busy.header("retry-after"), nullptr);
    EXPECT_EQ(*busy.header("retry-after"), "7");
}

TEST(HttpClient, RedirectsFollowedOnlyWhenAsked) {
    TestServer srv([](httplib::Server& s) {
        s.Get("/old", [](const httplib::Request&, httplib::Response& res) {
            res.set_redirect("/new", 302);
            res.set_header("X-Hop", "first");
        });
        s.Get("/new", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("arrived", "text/plain");
        });
        s.Get("/loop", [](const httplib::Request&, httplib::Response& res) {
            res.set_redirect("/loop", 302);
        });
    });
    HttpRequest req;
    req.url = srv.url("/old");
    const HttpResponse stay = http_request(req);
    EXPECT_EQ(stay.status, 302);
    ASSERT_NE(stay.header("Location"), nullptr);
    EXPECT_EQ(*stay.header("Location"), "/new");

    req.follow_redirects = true;
    const HttpResponse moved = http_request(req);
    EXPECT_EQ(moved.status, 200);
    EXPECT_EQ(moved.body, "arrived");
    EXPECT_EQ(moved.header("X-Hop"), nullptr) << "only the final response's headers are kept";

    req.url = srv.url("/loop");
    {
        const auto e = request_error(req);
        ASSERT_TRUE(e.has_value());
        EXPECT_EQ(e->kind(), HttpError::Kind::kOther);
        EXPECT_EQ(e->curl_code(), CURLE_TOO_MANY_REDIRECTS) << e->what();
    }
}

TEST(HttpClient, ConnectionRefusedIsKConnectAndFast) {
    RefusingPort closed;
    HttpRequest req;
    req.url = "http://127.0.0.1:" + std::to_string(closed.port()) + "/x";
    const auto start = SteadyClock::now();
    {
        const auto e = request_error(req);
        ASSERT_TRUE(e.has_value());
        EXPECT_EQ(e->kind(), HttpError::Kind::kConnect) << e->what();
        EXPECT_EQ(e->method(), "GET");
        EXPECT_EQ(e->url(), req.url);
        EXPECT_NE(e->detail().find(std::to_string(closed.port())), std::string::npos)
            << e->detail();
        EXPECT_EQ(std::string(e->what()), "GET " + req.url + ": " + e->detail());
    }
    EXPECT_LT(SteadyClock::now() - start, 2s);
}

TEST(HttpClient, SlowServerTimesOutWithinBound) {
    std::atomic<int> calls{0};
    TestServer* self = nullptr;
    TestServer srv([&](httplib::Server& s) {
        s.Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
            ++calls;
            self->block_for(10s);
            res.set_content("late", "text/plain");
        });
    });
    self = &srv;
    HttpRequest req;
    req.url = srv.url("/slow");
    req.timeout = 300ms;
    const auto start = SteadyClock::now();
    {
        const auto e = request_error(req);
        ASSERT_TRUE(e.has_value());
        EXPECT_EQ(e->kind(), HttpError::Kind::kTimeout) << e->what();
        EXPECT_EQ(e->curl_code(), CURLE_OPERATION_TIMEDOUT);
    }
    const auto elapsed = SteadyClock::now() - start;
    EXPECT_GE(elapsed, 250ms);
    EXPECT_LT(elapsed, 2s);
    EXPECT_EQ(calls.load(), 1);
}

TEST(HttpClient, TlsFailuresAreKTls) {
    TestServer srv([](httplib::Server& s) {
        s.Get("/", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("plain", "text/plain");
        });
    });
    HttpRequest req;
    req.url = "https://127.0.0.1:" + std::to_string(srv.port()) + "/";
    req.timeout = 3s;
    {
        const auto e = request_error(req);
        ASSERT_TRUE(e.has_value());
        EXPECT_EQ(e->kind(), HttpError::Kind::kTls) << e->what();
    }
    req.ca_file = "/nonexistent/mlkeeper-ca.pem";
    {
        const auto e = request_error(req);
        ASSERT_TRUE(e.has_value());
        EXPECT_EQ(e->kind(), HttpError::Kind::kTls) << e->what();
    }
}

TEST(HttpClient, BadRequestsAreRefusedBeforeSending) {
    std::atomic<int> calls{0};
    TestServer srv([&](httplib::Server& s) {
        s.Get("/", [&](const httplib::Request&, httplib::Response&) { ++calls; });
    });
    HttpRequest req;
    req.url = srv.url("/");
    req.headers = {{"X-Inject", "a\r\nX-Evil: 1"}};
    EXPECT_THROW((void)http_request(req), HttpError);
    req.headers = {{"Bad Name", "v"}};
    EXPECT_THROW((void)http_request(req), HttpError);
    req.headers = {{"", "v"}};
    EXPECT_THROW((void)http_request(req), HttpError);
    req.headers.clear();
    req.method = "GET /other HTTP/1.1\r\n";
    EXPECT_THROW((void)http_request(req), HttpError);
    req.method = "";
    EXPECT_THROW((void)http_request(req), HttpError);
    EXPECT_EQ(calls.load(), 0);

    req.method = "GET";
    req.url = "file:///etc/passwd";  // only http and https may be fetched
    {
        const auto e = request_error(req);
        ASSERT_TRUE(e.has_value());
        EXPECT_EQ(e->kind(), HttpError::Kind::kOther);
        EXPECT_EQ(e->curl_code(), CURLE_UNSUPPORTED_PROTOCOL) << e->what();
    }
    req.url = "not a url";
    EXPECT_THROW((void)http_request(req), HttpError);
}

TEST(HttpClient, TransportErrorsRedactTheUrl) {
    RefusingPort closed;
    HttpRequest req;
    req.method = "POST";
    req.url = "http://alice:hunter2@127.0.0.1:" + std::to_string(closed.port()) +
              "/hook?token=tok123&x=1&X-Amz-Signature=abcdef";
    {
        const auto e = request_error(req);
        ASSERT_TRUE(e.has_value());
        const std::string what = e->what();
        EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
        EXPECT_EQ(what.find("alice"), std::string::npos) << what;
        EXPECT_EQ(what.find("tok123"), std::string::npos) << what;
        EXPECT_EQ(what.find("abcdef"), std::string::npos) << what;
        EXPECT_NE(what.find("token=REDACTED&x=1&X-Amz-Signature=REDACTED"), std::string::npos)
            << what;
        EXPECT_EQ(what.rfind("POST http://127.0.0.1:", 0), 0U) << what;
    }
}

TEST(HttpClient, ConcurrentRequestsFromManyThreads) {
    std::atomic<int> calls{0};
    TestServer srv([&](httplib::Server& s) {
        s.Get("/n", [&](const httplib::Request& req, httplib::Response& res) {
            ++calls;
            res.set_content(req.get_param_value("i"), "text/plain");
        });
    });
    constexpr int kThreads = 8;
    constexpr int kEach = 5;
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                HttpRequest req;
                const std::string id = std::to_string(t * 100 + i);
                req.url = srv.url("/n?i=" + id);
                try {
                    const HttpResponse r = http_request(req);
                    if (r.status == 200 && r.body == id) {
                        ++good;
                    }
                } catch (const HttpError&) {
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(good.load(), kThreads * kEach);
    EXPECT_EQ(calls.load(), kThreads * kEach);
}

TEST(RedactUrl, RemovesUserinfoAndSecretQueryValues) {
    EXPECT_EQ(redact_url("https://example.com/a/b"), "https://example.com/a/b");
    EXPECT_EQ(redact_url("https://user:pw@example.com:8443/a"), "https://example.com:8443/a");
    EXPECT_EQ(redact_url("https://ghp_abc@github.com/x"), "https://github.com/x");
    EXPECT_EQ(redact_url("http://u:p@ss@host/"), "http://host/");  // last '@' ends userinfo
    EXPECT_EQ(redact_url("http://host/path@not-userinfo"), "http://host/path@not-userinfo");
    EXPECT_EQ(redact_url("http://host/?token=abc"), "http://host/?token=REDACTED");
    EXPECT_EQ(redact_url("http://host/p?a=1&api_key=k&b=2&Password=x&client_secret=s"),
              "http://host/p?a=1&api_key=REDACTED&b=2&Password=REDACTED&client_secret=REDACTED");
    EXPECT_EQ(redact_url("https://b.s3.amazonaws.com/o?X-Amz-Credential=AKIA%2F1&X-Amz-Date=1"
                         "&X-Amz-Security-Token=t&X-Amz-Signature=ff&sig=1"),
              "https://b.s3.amazonaws.com/o?X-Amz-Credential=REDACTED&X-Amz-Date=1"
              "&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED&sig=REDACTED");
    EXPECT_EQ(redact_url("http://host/p?token=abc#frag"), "http://host/p?token=REDACTED#frag");
    EXPECT_EQ(redact_url("http://host/p#frag?token=abc"), "http://host/p#frag?token=abc");
    EXPECT_EQ(redact_url("http://host?auth=1"), "http://host?auth=REDACTED");
    EXPECT_EQ(redact_url("http://host/p?flag&token="), "http://host/p?flag&token=REDACTED");
    EXPECT_EQ(redact_url("http://host/p?"), "http://host/p?");
    EXPECT_EQ(redact_url("http://host/p?a=1&&b=2"), "http://host/p?a=1&&b=2");
    EXPECT_EQ(redact_url("user:pw@host/p"), "host/p");
    EXPECT_EQ(redact_url(""), "");
    EXPECT_EQ(redact_url("http://"), "http://");
}

}  // namespace
}  // namespace mlk::core
