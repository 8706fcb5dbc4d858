// The model proxy over real loopback sockets: model stand-ins written here (a normal one, one that
// streams server-sent events 100 ms apart, a slow one, one that crashes mid-response, one that
// never becomes healthy) behind a real ModelManager — with fake backends whose start() brings a
// stand-in up after a delay, and with the real process backend running python3's http.server —
// and a recording RequestSink. Cold starts: 20 concurrent requests share one start; the queue
// limit answers 503 + Retry-After; a start that fails answers 502 and the next request retries.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/homelab/http_relay.hpp"
#include "mlkeeper/homelab/model_backend.hpp"
#include "mlkeeper/homelab/model_manager.hpp"
#include "mlkeeper/homelab/model_proxy.hpp"
#include "mlkeeper/homelab/proxy_socket.hpp"
#include "support/raw_tcp_server.hpp"
#include "support/servers.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk {
namespace {

using namespace std::chrono_literals;
using homelab::UniqueFd;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
namespace http = homelab::http;

// --- model stand-ins ---------------------------------------------------------------------------

// An HTTP/1.1 server on 127.0.0.1 (port 0 = any free one): each request read (head plus
// Content-Length body) goes to `respond`, which writes the answer on the socket and returns
// whether to keep the connection. Every connection has a thread; the destructor ends them all.
class StandIn {
  public:
    using Respond = std::function<bool(int fd, const std::string& request)>;

    StandIn(int port, Respond respond)
        : respond_(std::move(respond)), server_([this](int fd) { serve(fd); }, port, 10s) {}
    explicit StandIn(Respond respond) : StandIn(0, std::move(respond)) {}

    int port() const { return server_.port(); }
    int requests() const { return requests_; }

  private:
    void serve(int fd) {
        std::string buf;
        char tmp[4096];
        for (;;) {
            const auto h = http::head_length(buf);
            if (h > 0) {
                http::RequestHead head;
                std::size_t body = 0;
                if (!http::parse_request(std::string_view(buf).substr(0, h), head)) {
                    body = static_cast<std::size_t>(head.content_length);
                }
                if (buf.size() >= h + body) {
                    const std::string req = buf.substr(0, h + body);
                    buf.erase(0, h + body);
                    ++requests_;
                    if (!respond_(fd, req)) {
                        return;
                    }
                    continue;
                }
            }
            const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
            if (n <= 0) {
                return;
            }
            buf.append(tmp, static_cast<std::size_t>(n));
        }
    }

    Respond respond_;
    std::atomic<int> requests_{0};
    testing::RawTcpServer server_;  // last: its threads call serve()
};

bool reply(int fd, int status, const std::string& body, const std::string& extra = "") {
    return homelab::send_all(fd, "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " +
                                     std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body);
}

// A well-behaved model: /health answers 200, anything else a JSON naming the path it got.
bool normal_model(int fd, const std::string& req) {
    const auto sp = req.find(' ');
    const auto path = req.substr(sp + 1, req.find(' ', sp + 1) - sp - 1);
    return reply(fd, 200, nlohmann::json{{"path", path}}.dump(),
                 "Content-Type: application/json\r\n");
}

// --- a client ----------------------------------------------------------------------------------

struct Reply {
    int status = 0;
    std::string head;
    std::string body;
    bool complete = false;  // the body arrived whole, as framed
};

class Client {
  public:
    explicit Client(int port) {
        std::string err;
        fd_ = homelab::connect_loopback(port, 2s, 10s, err);
        if (!fd_) {
            throw std::runtime_error("connect: " + err);
        }
    }
    void send(std::string_view raw) { homelab::send_all(fd_.get(), raw); }
    // One response; on_data sees each piece of decoded body as it arrives.
    Reply read(const std::function<void(std::string_view)>& on_data = {}) {
        Reply r;
        std::size_t h = 0;
        while ((h = http::head_length(buf_)) == 0) {
            if (!fill()) {
                return r;
            }
        }
        http::ResponseHead head;
        if (http::parse_response(std::string_view(buf_).substr(0, h), "GET", head)) {
            return r;
        }
        r.status = head.status;
        r.head = buf_.substr(0, h);
        buf_.erase(0, h);
        const auto take = [&](std::string_view data) {
            r.body.append(data);
            if (on_data && !data.empty()) {
                on_data(data);
            }
        };
        if (head.body == http::BodyKind::kLength) {
            for (;;) {
                const auto n =
                    std::min<std::size_t>(buf_.size(), head.content_length - r.body.size());
                take(std::string_view(buf_).substr(0, n));
                buf_.erase(0, n);
                if (r.body.size() == head.content_length) {
                    r.complete = true;
                    break;
                }
                if (!fill()) {
                    break;
                }
            }
        } else if (head.body == http::BodyKind::kChunked) {
            http::ChunkedDecoder d;
            for (;;) {
                std::string_view v = buf_;
                std::string data;
                const auto st = d.feed(v, data);
                buf_ = std::string(v);
                take(data);
                if (st == http::ChunkedDecoder::Status::kDone) {
                    r.complete = true;
                    break;
                }
                if (st == http::ChunkedDecoder::Status::kError || !fill()) {
                    break;
                }
            }
        } else {
            r.complete = true;
        }
        return r;
    }

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

Reply get(int port, const std::string& path) {
    Client c(port);
    c.send("GET " + path + " HTTP/1.1\r\nHost: proxy-test\r\n\r\n");
    return c.read();
}

// A real HTTP health check: GET the URL's path, 2xx = healthy.
bool probe_health(const std::string& url, milliseconds) {
    const auto hostport = url.substr(std::string("http://127.0.0.1:").size());
    const auto slash = hostport.find('/');
    try {
        Client c(std::stoi(hostport.substr(0, slash)));
        c.send("GET " + hostport.substr(slash) + " HTTP/1.1\r\nHost: h\r\n\r\n");
        const auto r = c.read();
        return r.status >= 200 && r.status < 300;
    } catch (const std::exception&) {
        return false;
    }
}

// --- models ------------------------------------------------------------------------------------

// What a fake model does and what was done to it.
struct ModelPlan {
    int port = 0;                 // where start() brings the stand-in up
    StandIn::Respond respond;     // its behaviour; null: start() brings nothing up
    milliseconds start_delay{0};  // before the stand-in listens
    milliseconds stop_delay{0};
    std::atomic<int> starts{0};
    std::atomic<int> stops{0};
    std::mutex mu;
    std::unique_ptr<StandIn> server;
};

class StandInBackend : public homelab::ModelBackend {
  public:
    explicit StandInBackend(std::shared_ptr<ModelPlan> plan) : plan_(std::move(plan)) {}
    void start() override {
        plan_->starts++;
        std::this_thread::sleep_for(plan_->start_delay);
        std::lock_guard lk(plan_->mu);
        if (plan_->respond && !plan_->server) {
            plan_->server = std::make_unique<StandIn>(plan_->port, plan_->respond);
        }
        running_ = true;
    }
    void stop(milliseconds) override {
        plan_->stops++;
        std::this_thread::sleep_for(plan_->stop_delay);
        std::lock_guard lk(plan_->mu);
        plan_->server.reset();
        running_ = false;
    }
    homelab::BackendStatus status() override {
        homelab::BackendStatus s;
        s.state = running_ ? homelab::BackendState::kRunning : homelab::BackendState::kStopped;
        return s;
    }

  private:
    std::shared_ptr<ModelPlan> plan_;
    std::atomic<bool> running_{false};
};

struct Recorder : homelab::RequestSink {
    std::mutex mu;
    std::map<std::string, int> started;
    std::vector<homelab::RequestEvent> finished;
    void request_started(std::string_view model) override {
        std::lock_guard lk(mu);
        ++started[std::string(model)];
    }
    void request_finished(const homelab::RequestEvent& e) override {
        std::lock_guard lk(mu);
        finished.push_back(e);
    }
    void request_seen(const homelab::RequestEvent&) override {}
    int count(const std::string& model, int status = -1) {
        std::lock_guard lk(mu);
        int n = 0;
        for (const auto& e : finished) {
            n += e.model == model && (status < 0 || e.status == status) ? 1 : 0;
        }
        return n;
    }
};

class ProxyTest : public ::testing::Test {
  protected:
    // A model whose stand-in start() brings up on a free port.
    std::shared_ptr<ModelPlan> add(const std::string& name, StandIn::Respond respond,
                                   milliseconds start_delay = 0ms,
                                   std::chrono::seconds start_timeout = 10s) {
        auto plan = std::make_shared<ModelPlan>();
        plan->port = testing::free_port();
        plan->respond = std::move(respond);
        plan->start_delay = start_delay;
        homelab::ModelSpec s;
        s.name = name;
        s.command = {"/bin/true"};
        s.port = plan->port;
        s.health_url = "http://127.0.0.1:" + std::to_string(plan->port) + "/health";
        s.start_timeout = start_timeout;
        s.restart = homelab::ModelSpec::Restart::kNo;
        specs_.push_back(s);
        plans_[name] = plan;
        return plan;
    }

    void start_proxy(homelab::ProxySettings settings = {}) {
        auto plans = plans_;
        models_ = std::make_unique<homelab::ModelManager>(
            specs_,
            [plans](const homelab::ModelSpec& s) -> std::unique_ptr<homelab::ModelBackend> {
                return std::make_unique<StandInBackend>(plans.at(s.name));
            },
            probe_health);
        settings.port = 0;
        proxy_ = std::make_unique<homelab::ModelProxy>(settings, *models_, &sink_);
        proxy_->start();
    }

    void TearDown() override {
        if (proxy_) {
            proxy_->stop();
        }
        if (models_) {
            models_->stop_all(5s);
        }
    }

    int port() const { return proxy_->bound_port(); }

    std::vector<homelab::ModelSpec> specs_;
    std::map<std::string, std::shared_ptr<ModelPlan>> plans_;
    Recorder sink_;
    std::unique_ptr<homelab::ModelManager> models_;
    std::unique_ptr<homelab::ModelProxy> proxy_;
};

TEST_F(ProxyTest, ColdStartSharedByTwentyConcurrentRequests) {
    auto plan = add("llama", normal_model, 400ms);
    start_proxy();
    ASSERT_EQ(models_->get("llama")->state, homelab::ModelState::kStopped);
    std::vector<std::future<Reply>> replies;
    for (int i = 0; i < 20; ++i) {
        replies.push_back(std::async(std::launch::async, [this, i] {
            return get(port(), "/models/llama/v1/completions?n=" + std::to_string(i));
        }));
    }
    for (int i = 0; i < 20; ++i) {
        const auto r = replies[static_cast<std::size_t>(i)].get();
        EXPECT_EQ(r.status, 200) << i << " " << r.body;
        EXPECT_EQ(r.body, "{\"path\":\"/v1/completions?n=" + std::to_string(i) + "\"}");
    }
    EXPECT_EQ(plan->starts, 1);
    EXPECT_EQ(models_->get("llama")->state, homelab::ModelState::kRunning);
    EXPECT_EQ(proxy_->stats().starts_on_demand, 20U);
    proxy_->stop();
    EXPECT_EQ(sink_.count("llama", 200), 20);
    std::lock_guard lk(sink_.mu);
    EXPECT_EQ(sink_.started["llama"], 20);
}

TEST_F(ProxyTest, QueueLimitAnswers503WithRetryAfter) {
    add("big", normal_model, 1500ms);
    homelab::ProxySettings s;
    s.queue_limit = 5;
    start_proxy(s);
    std::vector<std::future<Reply>> replies;
    for (int i = 0; i < 8; ++i) {
        replies.push_back(
            std::async(std::launch::async, [this] { return get(port(), "/models/big/x"); }));
    }
    int ok = 0;
    int busy = 0;
    for (auto& f : replies) {
        const auto r = f.get();
        if (r.status == 200) {
            ++ok;
        } else if (r.status == 503) {
            ++busy;
            EXPECT_NE(r.head.find("Retry-After: 5\r\n"), std::string::npos) << r.head;
            EXPECT_NE(r.body.find("\"unavailable\""), std::string::npos) << r.body;
        }
    }
    EXPECT_EQ(ok, 5);
    EXPECT_EQ(busy, 3);
    proxy_->stop();
    EXPECT_EQ(sink_.count("big"), 8);
    EXPECT_EQ(proxy_->stats().queue_full, 3U);
}

TEST_F(ProxyTest, NeverHealthyGives502AndTheNextRequestTriesAgain) {
    // The backend "runs", but nothing listens: the health URL never answers.
    auto plan = add("sick", nullptr, 0ms, std::chrono::seconds(1));
    start_proxy();
    auto r = get(port(), "/models/sick/v1");
    EXPECT_EQ(r.status, 502);
    EXPECT_NE(r.body.find("\"start_failed\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("failed to start"), std::string::npos) << r.body;
    EXPECT_EQ(models_->get("sick")->state, homelab::ModelState::kFailed);
    EXPECT_EQ(plan->starts, 1);
    r = get(port(), "/models/sick/v1");
    EXPECT_EQ(r.status, 502);
    EXPECT_EQ(plan->starts, 2);
    // Fixed (the stand-in now comes up): the next request starts it and gets through.
    {
        std::lock_guard lk(plan->mu);
        plan->respond = normal_model;
    }
    r = get(port(), "/models/sick/v1");
    EXPECT_EQ(r.status, 200) << r.body;
    proxy_->stop();
    EXPECT_EQ(sink_.count("sick", 502), 2);
    EXPECT_EQ(sink_.count("sick", 200), 1);
}

TEST_F(ProxyTest, ServerSentEventsFlowAsProduced) {
    std::atomic<long long> last_sent_us{0};
    add("sse", [&](int fd, const std::string& req) {
        if (req.rfind("GET /health", 0) == 0) {
            return reply(fd, 200, "ok");
        }
        homelab::send_all(fd,
                          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                          "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 6; ++i) {
            if (i > 0) {
                std::this_thread::sleep_for(100ms);
            }
            std::string ev = "data: token" + std::to_string(i) + "\n\n";
            std::string chunk;
            http::append_chunk(chunk, ev);
            last_sent_us = std::chrono::duration_cast<std::chrono::microseconds>(
                               Clock::now().time_since_epoch())
                               .count();
            homelab::send_all(fd, chunk);
        }
        homelab::send_all(fd, http::kLastChunk);
        return true;
    });
    start_proxy();
    models_->start("sse", homelab::Wait::kYes, std::nullopt);
    Client c(port());
    c.send("GET /models/sse/v1/stream HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n");
    long long first_us = 0;
    std::vector<long long> arrivals;
    const auto r = c.read([&](std::string_view) {
        const auto now =
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
                .count();
        if (first_us == 0) {
            first_us = now;
        }
        arrivals.push_back(now);
    });
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.complete);
    EXPECT_NE(r.head.find("Content-Type: text/event-stream"), std::string::npos);
    EXPECT_EQ(r.body.find("data: token0\n\n"), 0U);
    EXPECT_NE(r.body.find("data: token5\n\n"), std::string::npos);
    // The first event arrived about 500 ms before the last one was even sent.
    EXPECT_LT(first_us, last_sent_us - 300'000) << "first event waited for the stream";
    EXPECT_GE(arrivals.size(), 5U);  // one read per event, not one at the end
}

TEST_F(ProxyTest, SlowModelDoesNotHoldUpOthersAndTimesOut) {
    add("slow", [](int fd, const std::string& req) {
        if (req.find("/sleep") != std::string::npos) {
            std::this_thread::sleep_for(1500ms);
        }
        return reply(fd, 200, "late");
    });
    add("fast", normal_model);
    homelab::ProxySettings s;
    s.upstream_timeout = 1s;
    start_proxy(s);
    models_->start("slow", homelab::Wait::kYes, std::nullopt);
    models_->start("fast", homelab::Wait::kYes, std::nullopt);
    auto slow =
        std::async(std::launch::async, [this] { return get(port(), "/models/slow/sleep"); });
    std::this_thread::sleep_for(100ms);
    const auto t0 = Clock::now();
    EXPECT_EQ(get(port(), "/models/fast/x").status, 200);
    EXPECT_LT(Clock::now() - t0, 500ms);
    const auto r = slow.get();
    EXPECT_EQ(r.status, 504);
    EXPECT_NE(r.body.find("gateway_timeout"), std::string::npos) << r.body;
    EXPECT_EQ(get(port(), "/models/slow/quick").status, 200);
}

TEST_F(ProxyTest, ModelCrashingMidResponse) {
    add("crashy", [](int fd, const std::string& req) {
        if (req.rfind("GET /health", 0) == 0) {
            return reply(fd, 200, "ok");
        }
        homelab::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial...");
        return false;  // "crashes": the connection closes 990 bytes short
    });
    start_proxy();
    models_->start("crashy", homelab::Wait::kYes, std::nullopt);
    Client c(port());
    c.send("GET /models/crashy/x HTTP/1.1\r\nHost: h\r\n\r\n");
    const auto r = c.read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "partial...");
    EXPECT_FALSE(r.complete);  // the client sees the truncation: the proxy closed
    // The proxy itself carries on.
    EXPECT_EQ(get(port(), "/models/crashy/y").body, "partial...");
    proxy_->stop();
    EXPECT_EQ(sink_.count("crashy"), 2);
}

TEST_F(ProxyTest, StoppingModelIsWaitedOutThenStarted) {
    auto plan = add("cycle", normal_model);
    plan->stop_delay = 600ms;
    start_proxy();
    models_->start("cycle", homelab::Wait::kYes, std::nullopt);
    models_->stop("cycle", homelab::Wait::kNo, std::nullopt);
    ASSERT_EQ(models_->get("cycle")->state, homelab::ModelState::kStopping);
    const auto r = get(port(), "/models/cycle/after");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(plan->starts, 2);
}

TEST_F(ProxyTest, HostileNamesNeverReachTheManagerOrTheSink) {
    add("m1", normal_model);
    start_proxy();
    for (const std::string& path : std::vector<std::string>{
             "/models/../etc/passwd", "/models/%2e%2e/x", "/models/m1;rm/x", "/models/m1%20x/",
             "/models/%E2%80%AEm1/", "/models/" + std::string(5000, 'a') + "/x", "/models/M1/x",
             "/models/unknown/x", "/models/m1%2f..%2f/x"}) {
        const auto r = get(port(), path);
        EXPECT_EQ(r.status, 404) << path;
        EXPECT_NE(r.body.find("\"not_found\""), std::string::npos) << r.body;
    }
    // Unicode and spaces in the raw request line never parse: 400.
    Client c(port());
    c.send("GET /models/m\xc3\xa9/x HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(c.read().status, 400);
    EXPECT_EQ(plans_["m1"]->starts, 0);
    proxy_->stop();
    std::lock_guard lk(sink_.mu);
    EXPECT_TRUE(sink_.finished.empty());
    EXPECT_TRUE(sink_.started.empty());
}

// The real process backend: python3's http.server started by the manager on the first request.
TEST(ProxyProcessBackend, ColdStartsARealProcess) {
    const char* python = "/usr/bin/python3";
    if (!std::filesystem::exists(python)) {
        GTEST_SKIP() << "no " << python;
    }
    testing::TempDir dir;
    dir.write("www/hello.txt", "hello from a real model\n");
    const int model_port = testing::free_port();
    homelab::ModelSpec s;
    s.name = "web";
    s.command = {python, "-m", "http.server", std::to_string(model_port), "--bind", "127.0.0.1"};
    s.workdir = dir / "www";
    s.port = model_port;
    s.health_url = "http://127.0.0.1:" + std::to_string(model_port) + "/hello.txt";
    s.start_timeout = std::chrono::seconds(20);
    s.stop_timeout = std::chrono::seconds(5);
    homelab::BackendEnv env;
    env.log_dir = dir / "logs";
    homelab::ModelManager models(
        {s}, [env](const homelab::ModelSpec& spec) { return homelab::make_backend(spec, env); },
        probe_health);
    Recorder sink;
    homelab::ProxySettings settings;
    settings.port = 0;
    homelab::ModelProxy proxy(settings, models, &sink);
    proxy.start();
    std::vector<std::future<Reply>> replies;
    for (int i = 0; i < 5; ++i) {
        replies.push_back(std::async(
            std::launch::async, [&] { return get(proxy.bound_port(), "/models/web/hello.txt"); }));
    }
    for (auto& f : replies) {
        const auto r = f.get();
        EXPECT_EQ(r.status, 200) << r.body;
        EXPECT_EQ(r.body, "hello from a real model\n");
    }
    const auto info = models.get("web");
    EXPECT_EQ(info->state, homelab::ModelState::kRunning);
    EXPECT_EQ(info->restarts, 0);
    proxy.stop();
    models.stop_all(5s);
    EXPECT_EQ(sink.count("web", 200), 5);
}

}  // namespace
}  // namespace mlk
