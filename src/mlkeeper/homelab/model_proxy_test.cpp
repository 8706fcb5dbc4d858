#include "mlkeeper/homelab/model_proxy.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/config_schema.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/homelab/http_relay.hpp"
#include "mlkeeper/homelab/proxy_socket.hpp"
#include "support/raw_tcp_server.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// --- an upstream stand-in speaking raw bytes --------------------------------------------------

// Reads one request (head + Content-Length body) from `fd` into `req`, keeping extra bytes in
// `buf`; false at EOF or error.
bool read_request(int fd, std::string& buf, std::string& req) {
    char tmp[4096];
    for (;;) {
        if (const auto h = http::head_length(buf); h > 0) {
            http::RequestHead head;
            std::size_t body = 0;
            if (!http::parse_request(std::string_view(buf).substr(0, h), head) &&
                head.body == http::BodyKind::kLength) {
                body = head.content_length;
            }
            if (head.body == http::BodyKind::kChunked) {
                const auto end = buf.find("\r\n0\r\n\r\n", h);
                const auto empty = buf.compare(h, 5, "0\r\n\r\n") == 0;
                if (empty || end != std::string::npos) {
                    const auto n = empty ? h + 5 : end + 7;
                    req = buf.substr(0, n);
                    buf.erase(0, n);
                    return true;
                }
            } else if (buf.size() >= h + body) {
                req = buf.substr(0, h + body);
                buf.erase(0, h + body);
                return true;
            }
        }
        const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) {
            return false;
        }
        buf.append(tmp, static_cast<std::size_t>(n));
    }
}

bool write_str(int fd, std::string_view s) {
    return send_all(fd, s);
}

using RawServer = testing::RawTcpServer;

// --- a client ----------------------------------------------------------------------------------

struct Reply {
    int status = 0;
    std::string head;
    std::string body;     // decoded
    bool closed = false;  // the proxy closed the connection after the response
};

class Client {
  public:
    explicit Client(int port) {
        std::string err;
        fd_ = connect_loopback(port, 2s, 5s, err);
        if (!fd_) {
            throw std::runtime_error("connect: " + err);
        }
    }
    bool send(std::string_view raw) { return send_all(fd_.get(), raw); }
    // Reads one response; status 0 when none came.
    Reply read(std::string_view method = "GET") {
        Reply r;
        std::size_t h = 0;
        while ((h = http::head_length(buf_)) == 0) {
            if (!fill()) {
                return r;
            }
        }
        http::ResponseHead head;
        if (http::parse_response(std::string_view(buf_).substr(0, h), method, head)) {
            return r;
        }
        r.status = head.status;
        r.head = buf_.substr(0, h);
        buf_.erase(0, h);
        if (head.body == http::BodyKind::kLength) {
            while (buf_.size() < head.content_length && fill()) {
            }
            r.body = buf_.substr(0, head.content_length);
            buf_.erase(0, r.body.size());
        } else if (head.body == http::BodyKind::kChunked) {
            http::ChunkedDecoder d;
            for (;;) {
                std::string_view v = buf_;
                const auto st = d.feed(v, r.body);
                buf_ = std::string(v);
                if (st != http::ChunkedDecoder::Status::kMore || !fill()) {
                    break;
                }
            }
        } else if (head.body == http::BodyKind::kClose) {
            while (fill()) {
            }
            r.body = buf_;
            buf_.clear();
        }
        return r;
    }
    // True when the server closed the connection (EOF within `limit`).
    bool closed_within(milliseconds limit) {
        const auto end = Clock::now() + limit;
        while (Clock::now() < end) {
            char c;
            const ssize_t n = ::recv(fd_.get(), &c, 1, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                return true;
            }
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }
    int fd() const { return fd_.get(); }

  private:
    bool fill() {
        char tmp[4096];
        const ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, 0);
        if (n <= 0) {
            return false;
        }
        buf_.append(tmp, static_cast<std::size_t>(n));
        return true;
    }
    UniqueFd fd_;
    std::string buf_;
};

Reply fetch(int port, std::string_view raw, std::string_view method = "GET") {
    Client c(port);
    c.send(raw);
    return c.read(method);
}

std::string get(std::string_view path) {
    return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n\r\n";
}

// --- the model side ----------------------------------------------------------------------------

class FakeBackend : public ModelBackend {
  public:
    void start() override { running_ = true; }
    void stop(milliseconds) override { running_ = false; }
    BackendStatus status() override {
        BackendStatus s;
        s.state = running_ ? BackendState::kRunning : BackendState::kStopped;
        return s;
    }

  private:
    std::atomic<bool> running_{false};
};

bool eventually(const std::function<bool()>& pred, milliseconds limit = 3s) {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(5ms);
    }
    return pred();
}

struct Recorder : RequestSink {
    std::mutex mu;
    int started = 0;
    std::vector<RequestEvent> finished;
    void request_started(std::string_view) override {
        std::lock_guard lk(mu);
        ++started;
    }
    void request_finished(const RequestEvent& e) override {
        std::lock_guard lk(mu);
        finished.push_back(e);
    }
    void request_seen(const RequestEvent&) override {}
    std::size_t count() {
        std::lock_guard lk(mu);
        return finished.size();
    }
};

ModelSpec spec(const std::string& name, std::optional<int> port) {
    ModelSpec s;
    s.name = name;
    s.command = {"/bin/true"};
    s.port = port;
    s.start_timeout = 5s;
    s.health_url = "http://127.0.0.1:1/health";  // answered by the fixture's probe
    return s;
}

// A proxy in front of model "m" (running, on `upstream_port`), with a recorder.
struct Fixture {
    Recorder sink;
    ModelManager models;
    ModelProxy proxy;

    explicit Fixture(int upstream_port, ProxySettings s = {}, std::vector<ModelSpec> more = {})
        : models(
              [&] {
                  more.push_back(spec("m", upstream_port));
                  return more;
              }(),
              [](const ModelSpec&) { return std::make_unique<FakeBackend>(); },
              [](const std::string&, milliseconds) { return true; }),
          proxy(with_port0(std::move(s)), models, &sink) {
        models.start("m", Wait::kYes, std::nullopt);
        proxy.start();
    }
    static ProxySettings with_port0(ProxySettings s) {
        s.port = 0;
        return s;
    }
    int port() const { return proxy.bound_port(); }
};

// Answers every request with its own head in the body (so tests see what the model got).
void echo_handler(int fd) {
    std::string buf;
    std::string req;
    while (read_request(fd, buf, req)) {
        if (!write_str(fd,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive"
                       "\r\nKeep-Alive: timeout=5\r\nContent-Length: " +
                           std::to_string(req.size()) + "\r\n\r\n" + req)) {
            return;
        }
    }
}

// --- tests -------------------------------------------------------------------------------------

TEST(ModelProxySettings, Prefix) {
    EXPECT_EQ(normalize_proxy_prefix("/models"), "/models");
    EXPECT_EQ(normalize_proxy_prefix("/models/"), "/models");
    EXPECT_EQ(normalize_proxy_prefix("/"), "");
    EXPECT_EQ(normalize_proxy_prefix(""), "");
    EXPECT_EQ(normalize_proxy_prefix("/a/b"), "/a/b");
    for (const char* bad : {"models", "/a/../b", "//x", "/a?b", "/a%2e", "/a b", "/\xc3\xa9"}) {
        EXPECT_THROW(normalize_proxy_prefix(bad), std::invalid_argument) << bad;
    }
}

TEST(ModelProxySettings, ListenAddress) {
    EXPECT_EQ(parse_listen_address("127.0.0.1:5080"),
              std::make_pair(std::string("127.0.0.1"), 5080));
    EXPECT_EQ(parse_listen_address("localhost:1"), std::make_pair(std::string("127.0.0.1"), 1));
    EXPECT_EQ(parse_listen_address("[::1]:65535"), std::make_pair(std::string("::1"), 65535));
    EXPECT_EQ(parse_listen_address("0.0.0.0:80"), std::make_pair(std::string("0.0.0.0"), 80));
    for (const char* bad : {"", "127.0.0.1", ":80", "127.0.0.1:0", "127.0.0.1:65536",
                            "127.0.0.1:8x", "example.com:80", "::1:80", "[::1]80", "1.2.3:80"}) {
        EXPECT_THROW(parse_listen_address(bad), std::invalid_argument) << bad;
    }
}

TEST(ModelProxySettings, FromConfig) {
    if (core::find_key("proxy", "enabled") == nullptr) {
        GTEST_SKIP() << "the [proxy] keys are not in config_schema.cpp yet (keys-proxy.txt)";
    }
    const auto dir = ::testing::TempDir() + "proxy_cfg_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    const auto file = dir + "/c.toml";
    const auto load = [&](const std::string& text) {
        std::ofstream(file) << text;
        core::ConfigInputs in;
        in.file = file;
        return core::Config::load(in);
    };
    const auto d = proxy_settings_from(load(""));
    EXPECT_FALSE(d.enabled);
    EXPECT_EQ(d.address, "127.0.0.1");
    EXPECT_EQ(d.port, 5080);
    EXPECT_EQ(d.prefix, "/models");
    EXPECT_EQ(d.max_connections, 1024U);
    EXPECT_EQ(d.queue_limit, 64U);
    EXPECT_EQ(d.max_header, 32U * 1024);
    EXPECT_EQ(d.workers, 0U);
    const auto s = proxy_settings_from(
        load("[proxy]\nenabled = true\nlisten = \"[::1]:6000\"\nprefix = \"/m/\"\n"
             "queue_limit = 3\nkeepalive = 0\nupstream_timeout = \"2m\"\nworkers = 3\n"));
    EXPECT_EQ(s.workers, 3U);
    EXPECT_TRUE(s.enabled);
    EXPECT_EQ(s.address, "::1");
    EXPECT_EQ(s.port, 6000);
    EXPECT_EQ(s.prefix, "/m");
    EXPECT_EQ(s.queue_limit, 3U);
    EXPECT_EQ(s.keepalive, 0U);
    EXPECT_EQ(s.upstream_timeout, 120s);
    EXPECT_THROW(proxy_settings_from(load("[proxy]\nlisten = \"nowhere\"\n")), ConfigError);
    EXPECT_THROW(proxy_settings_from(load("[proxy]\nprefix = \"/a/../b\"\n")), ConfigError);
    std::filesystem::remove_all(dir);
}

TEST(ModelProxy, ForwardsWithRewrittenHeaders) {
    RawServer up(echo_handler);
    Fixture f(up.port());
    Client c(f.port());
    c.send(
        "GET /models/m/v1/x?q=1&r=%2F HTTP/1.1\r\nHost: front\r\nConnection: keep-alive, X-Hop"
        "\r\nX-Hop: secret\r\nProxy-Authorization: x\r\nX-Forwarded-For: 10.1.1.1\r\n"
        "X-Forwarded-Prefix: /forged\r\nAuthorization: Bearer t\r\n\r\n");
    const auto r = c.read();
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(r.body.rfind("GET /v1/x?q=1&r=%2F HTTP/1.1\r\n", 0), 0U) << r.body;
    EXPECT_NE(r.body.find("Host: front\r\n"), std::string::npos);
    EXPECT_NE(r.body.find("Authorization: Bearer t\r\n"), std::string::npos);
    EXPECT_NE(r.body.find("X-Forwarded-For: 10.1.1.1, 127.0.0.1\r\n"), std::string::npos);
    EXPECT_NE(r.body.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
    EXPECT_NE(r.body.find("X-Forwarded-Prefix: /models/m\r\n"), std::string::npos);
    for (const char* gone : {"X-Hop", "Proxy-Authorization", "Connection", "/forged"}) {
        EXPECT_EQ(r.body.find(gone), std::string::npos) << gone;
    }
    // The model's hop-by-hop fields do not reach the client either.
    EXPECT_EQ(r.head.find("Keep-Alive"), std::string::npos) << r.head;
    EXPECT_EQ(r.head.find("Connection"), std::string::npos) << r.head;
    EXPECT_NE(r.head.find("Content-Type: text/plain"), std::string::npos);

    // Keep-alive on both sides: a second request uses the same model connection.
    c.send(get("/models/m/again"));
    EXPECT_EQ(c.read().status, 200);
    EXPECT_EQ(up.accepted(), 1);
    // request_finished() comes once the last byte went out: just after the client has it.
    ASSERT_TRUE(eventually([&] { return f.sink.count() == 2; }));
    EXPECT_EQ(f.sink.started, 2);
    EXPECT_EQ(f.sink.finished[0].model, "m");
    EXPECT_EQ(f.sink.finished[0].status, 200);
    EXPECT_EQ(f.sink.finished[0].bytes_out, r.body.size());
    EXPECT_EQ(f.proxy.stats().upstream_reused, 1U);
}

TEST(ModelProxy, RoutingAndHostileNames) {
    RawServer up(echo_handler);
    Fixture f(up.port());
    auto r = fetch(f.port(), get("/models/m?x=1"));
    EXPECT_EQ(r.status, 308);
    EXPECT_NE(r.head.find("Location: /models/m/?x=1\r\n"), std::string::npos) << r.head;

    const std::vector<std::string> hostile = {
        "/models/nope/",
        "/models/../m/",
        "/models/%2e%2e/x",
        "/models/m;x/",
        "/models/.m/",
        "/models/m%2F/",
        "/models/-m/",
        "/models//m/",
        "/models/" + std::string(65, 'a') + "/",
        "/models/%C3%A9/",
        "/models/m%00/",
        "/models",
        "/models/",
        "/other/m/",
        "/modelsm/x",
        "/",
    };
    for (const auto& path : hostile) {
        r = fetch(f.port(), get(path));
        EXPECT_EQ(r.status, 404) << path;
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        ASSERT_FALSE(j.is_discarded()) << r.body;
        EXPECT_EQ(j["error"]["code"], "not_found") << path;
    }
    // Raw bytes the parser refuses: 400 and the connection closes.
    for (const std::string& raw :
         {std::string("GET /models/m m/ HTTP/1.1\r\nHost: t\r\n\r\n"),
          std::string("GET /models/\xc3\xa9/ HTTP/1.1\r\nHost: t\r\n\r\n"),
          std::string("GET /models/m/\0 HTTP/1.1\r\n\r\n", 28), std::string("garbage\r\n\r\n")}) {
        Client c(f.port());
        c.send(raw);
        EXPECT_EQ(c.read().status, 400) << raw;
        EXPECT_TRUE(c.closed_within(2s));
    }
    // Over the header limit: 431.
    Client big(f.port());
    big.send("GET /models/m/ HTTP/1.1\r\nHost: t\r\nX: " + std::string(40000, 'a') + "\r\n\r\n");
    EXPECT_EQ(big.read().status, 431);
    EXPECT_EQ(up.accepted(), 0);  // nothing reached the model
    EXPECT_EQ(f.sink.count(), 0U);
    EXPECT_EQ(f.sink.started, 0);
}

TEST(ModelProxy, HeadTrickledByteByByteTimesOut) {
    RawServer up(echo_handler);
    ProxySettings s;
    s.client_timeout = 400ms;
    Fixture f(up.port(), s);
    Client c(f.port());
    const auto t0 = Clock::now();
    c.send("GET /models/m/ HTTP/1.1\r\n");
    for (int i = 0; i < 30 && send_all(c.fd(), "X"); ++i) {
        std::this_thread::sleep_for(100ms);  // each byte well within the timeout
        char b;
        if (::recv(c.fd(), &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
            break;
        }
    }
    EXPECT_EQ(c.read().status, 408);
    EXPECT_LT(Clock::now() - t0, 2s);
    EXPECT_EQ(up.accepted(), 0);
}

TEST(ModelProxy, ResponseFramings) {
    // Path selects the framing the model uses.
    RawServer up([](int fd) {
        std::string buf;
        std::string req;
        while (read_request(fd, buf, req)) {
            if (req.find(" /len ") != std::string::npos) {
                write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
            } else if (req.find(" /chunked ") != std::string::npos) {
                write_str(fd,
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n"
                          "3\r\nabc\r\n4;e=1\r\ndefg\r\n0\r\nX: 1\r\n\r\n");
            } else if (req.find(" /close ") != std::string::npos) {
                write_str(fd, "HTTP/1.0 200 OK\r\n\r\nuntil close");
                return;
            } else if (req.find(" /nobody ") != std::string::npos) {
                write_str(fd, "HTTP/1.1 204 No Content\r\n\r\n");
            } else if (req.find("HEAD ") == 0) {
                write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n");
            } else if (req.find(" /interim ") != std::string::npos) {
                write_str(fd,
                          "HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                          "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
            } else if (req.find(" /post ") != std::string::npos) {
                const auto body = req.substr(req.find("\r\n\r\n") + 4);
                write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                                  "\r\n\r\n" + body);
            }
        }
    });
    Fixture f(up.port());
    Client c(f.port());
    c.send(get("/models/m/len"));
    auto r = c.read();
    EXPECT_EQ(r.body, "hello");
    EXPECT_NE(r.head.find("Content-Length: 5"), std::string::npos);
    c.send(get("/models/m/chunked"));
    r = c.read();
    EXPECT_EQ(r.body, "abcdefg");
    EXPECT_EQ(r.head.find("Trailer"), std::string::npos);
    c.send(get("/models/m/nobody"));
    EXPECT_EQ(c.read().status, 204);
    c.send("HEAD /models/m/h HTTP/1.1\r\nHost: t\r\n\r\n");
    r = c.read("HEAD");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.head.find("Content-Length: 42"), std::string::npos);
    c.send(get("/models/m/interim"));
    r = c.read();
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.body, "ok");
    // A close-delimited body reaches an HTTP/1.1 client chunked, on a connection that stays.
    c.send(get("/models/m/close"));
    r = c.read();
    EXPECT_EQ(r.body, "until close");
    EXPECT_NE(r.head.find("Transfer-Encoding: chunked"), std::string::npos);
    c.send(get("/models/m/len"));
    EXPECT_EQ(c.read().body, "hello");
    // ... and an HTTP/1.0 client gets it close-delimited.
    r = fetch(f.port(), "GET /models/m/close HTTP/1.0\r\n\r\n");
    EXPECT_EQ(r.body, "until close");
    EXPECT_NE(r.head.find("Connection: close"), std::string::npos);
    // Chunked request bodies are forwarded chunked; Expect: 100-continue is answered here.
    Client p(f.port());
    p.send(
        "POST /models/m/post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        "Expect: 100-continue\r\n\r\n");
    EXPECT_EQ(p.read().status, 100);
    p.send("4\r\nwxyz\r\n0\r\n\r\n");
    r = p.read();
    EXPECT_EQ(r.body, "4\r\nwxyz\r\n0\r\n\r\n");
    p.send("POST /models/m/post HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    EXPECT_EQ(p.read().body, "abc");
    f.proxy.stop();
    std::lock_guard lk(f.sink.mu);
    ASSERT_GE(f.sink.finished.size(), 9U);
    EXPECT_EQ(f.sink.finished.back().bytes_in, 3U);
    EXPECT_EQ(f.sink.finished.back().bytes_out, 3U);
}

TEST(ModelProxy, StaleKeptAliveConnectionIsRetriedOnce) {
    // Answers the first request of each connection, then drops the connection on the second
    // without a word: what a model whose keep-alive timer just fired does.
    RawServer up([](int fd) {
        std::string buf;
        std::string req;
        if (read_request(fd, buf, req)) {
            write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        read_request(fd, buf, req);
    });
    Fixture f(up.port());
    Client c(f.port());
    for (int i = 0; i < 3; ++i) {
        c.send(get("/models/m/x"));
        EXPECT_EQ(c.read().status, 200) << i;
    }
    EXPECT_EQ(f.proxy.stats().upstream_retries, 2U);
    // A POST with a body is not replayed: the model may have acted on it.
    c.send("POST /models/m/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nz");
    EXPECT_EQ(c.read().status, 502);
}

TEST(ModelProxy, UpstreamFailures) {
    // Port of a server that is gone: refused -> 502.
    int dead_port = 0;
    { UniqueFd l = listen_tcp("127.0.0.1", 0, 1, dead_port); }
    RawServer slow([](int fd) {
        std::string buf;
        std::string req;
        read_request(fd, buf, req);
        char c;
        ::recv(fd, &c, 1, 0);  // until the test ends
    });
    RawServer garbage([](int fd) {
        std::string buf;
        std::string req;
        read_request(fd, buf, req);
        write_str(fd, "SPDY/9 nonsense\r\n\r\n");
    });
    ProxySettings s;
    s.upstream_timeout = 300ms;
    Fixture f(
        slow.port(), s,
        {spec("dead", dead_port), spec("junk", garbage.port()), spec("portless", std::nullopt)});
    f.models.start("dead", Wait::kYes, std::nullopt);
    f.models.start("junk", Wait::kYes, std::nullopt);
    auto r = fetch(f.port(), get("/models/dead/x"));
    EXPECT_EQ(r.status, 502);
    EXPECT_NE(r.body.find("refused"), std::string::npos) << r.body;
    const auto t0 = Clock::now();
    r = fetch(f.port(), get("/models/m/x"));
    EXPECT_EQ(r.status, 504);
    EXPECT_LT(Clock::now() - t0, 3s);
    EXPECT_EQ(fetch(f.port(), get("/models/junk/x")).status, 502);
    r = fetch(f.port(), get("/models/portless/x"));
    EXPECT_EQ(r.status, 502);
    EXPECT_NE(r.body.find("no port"), std::string::npos) << r.body;
    f.proxy.stop();  // joins the connections: every request_finished() is in
    std::lock_guard lk(f.sink.mu);
    ASSERT_EQ(f.sink.finished.size(), 4U);
    EXPECT_EQ(f.sink.finished[1].status, 504);
}

TEST(ModelProxy, ClientGoneMidStreamClosesTheModelConnection) {
    std::atomic<bool> upstream_saw_close{false};
    RawServer up([&](int fd) {
        std::string buf;
        std::string req;
        read_request(fd, buf, req);
        write_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 500; ++i) {
            if (!write_str(fd, "6\r\ndata: \r\n")) {
                upstream_saw_close = true;
                return;
            }
            std::this_thread::sleep_for(10ms);
        }
    });
    Fixture f(up.port());
    {
        Client c(f.port());
        c.send(get("/models/m/stream"));
        char tmp[64];
        ASSERT_GT(::recv(c.fd(), tmp, sizeof tmp, 0), 0);
    }
    EXPECT_TRUE([&] {
        const auto end = Clock::now() + 4s;
        while (Clock::now() < end && !upstream_saw_close) {
            std::this_thread::sleep_for(10ms);
        }
        return upstream_saw_close.load();
    }());
    EXPECT_EQ(f.proxy.stats().idle_upstream, 0U);
}

TEST(ModelProxy, ConnectionLimitAndBoundedStop) {
    RawServer up([](int fd) {
        std::string buf;
        std::string req;
        read_request(fd, buf, req);
        char c;
        ::recv(fd, &c, 1, 0);  // never answers
    });
    ProxySettings s;
    s.max_connections = 2;
    s.workers = 1;  // both connections on one loop: the half-sent head must not hold up the other
    Fixture f(up.port(), s);
    Client idle(f.port());
    idle.send("GET /models/m/ HT");  // half a request holds a connection
    Client busy(f.port());
    busy.send(get("/models/m/wait"));  // waits on the model
    ASSERT_TRUE([&] {
        const auto end = Clock::now() + 3s;
        while (Clock::now() < end && f.proxy.stats().active_connections < 2) {
            std::this_thread::sleep_for(5ms);
        }
        return f.proxy.stats().active_connections == 2;
    }());
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lk(f.sink.mu);
        return f.sink.started == 1;  // the busy request reached the model
    }));
    const auto r = fetch(f.port(), get("/models/m/x"));
    EXPECT_EQ(r.status, 503);
    EXPECT_NE(r.head.find("Retry-After"), std::string::npos);
    EXPECT_EQ(f.proxy.stats().rejected, 1U);
    const auto t0 = Clock::now();
    f.proxy.stop();
    EXPECT_LT(Clock::now() - t0, 2s);
    // The request waiting on the model is told why it ends (and the connection closes).
    const auto answered = busy.read();
    EXPECT_EQ(answered.status, 503);
    EXPECT_NE(answered.body.find("stopping"), std::string::npos) << answered.body;
    EXPECT_TRUE(busy.closed_within(1s));
    EXPECT_TRUE(idle.closed_within(1s));
    EXPECT_EQ(f.sink.count(), 1U);  // the waiting request still counted once
}

TEST(ModelProxy, StartFailsCleanlyWhenThePortIsTaken) {
    int port = 0;
    UniqueFd taken = listen_tcp("127.0.0.1", 0, 1, port);
    ModelManager models({}, [](const ModelSpec&) { return std::make_unique<FakeBackend>(); });
    ProxySettings s;
    s.port = port;
    ModelProxy proxy(s, models, nullptr);
    try {
        proxy.start();
        FAIL() << "bound a taken port";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port) +
                                             ": address already in use"),
                  std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace mlk::homelab
