// Tests for the webhook channel: payload shapes parsed back field by field, and delivery against
// a real cpp-httplib server on 127.0.0.1 (statuses, faults, timeouts, secret-free errors).
#include "mlkeeper/alert/webhook_channel.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "mlkeeper/util/time.hpp"
#include "support/http_test_server.hpp"

namespace mlk::alert {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

using mlk::testing::RefusingPort;
using mlk::testing::TestServer;

struct Captured {
    std::string method, path, body, content_type, authorization, custom;
};

// A receiver with one route per behaviour; every request is recorded.
class Receiver {
  public:
    Receiver() {
        server_.emplace([this](httplib::Server& s) {
            s.Post("/ok", [this](const httplib::Request& req, httplib::Response& res) {
                record(req);
                res.set_content("ok", "text/plain");
            });
            s.Post("/fail500", [this](const httplib::Request& req, httplib::Response& res) {
                record(req);
                res.status = 500;
                res.set_content("upstream exploded", "text/plain");
            });
            s.Post("/bad400", [this](const httplib::Request& req, httplib::Response& res) {
                record(req);
                res.status = 400;
                res.set_content("invalid_payload", "text/plain");
            });
            s.Post("/busy429", [this](const httplib::Request& req, httplib::Response& res) {
                record(req);
                res.status = 429;
            });
            s.Post("/moved", [this](const httplib::Request& req, httplib::Response& res) {
                record(req);
                res.set_redirect("/ok", 301);
            });
            s.Post("/long", [this](const httplib::Request& req, httplib::Response& res) {
                record(req);
                res.status = 503;
                // 199 ASCII bytes, then "é" (2 bytes) straddling byte 200, then more lines.
                res.set_content(std::string(199, 'a') + "é\nline two\r\n" + std::string(500, 'b'),
                                "text/plain");
            });
            s.Post("/slow", [this](const httplib::Request& req, httplib::Response& res) {
                record(req);
                server_->block_for(10s);
                res.set_content("late", "text/plain");
            });
            s.Post(R"(/services/(\w+)/(\w+)/(\w+))",
                   [this](const httplib::Request& req, httplib::Response& res) {
                       record(req);
                       res.status = 404;
                       res.set_content("no_service", "text/plain");
                   });
        });
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;
    // Stops the server before the members its handlers use go away.
    ~Receiver() { server_.reset(); }

    std::string url(const std::string& path) const { return server_->url(path); }

    std::vector<Captured> requests() {
        std::lock_guard<std::mutex> lock(mu_);
        return requests_;
    }

  private:
    void record(const httplib::Request& req) {
        auto h = [&](const char* name) {
            return req.has_header(name) ? req.get_header_value(name) : std::string();
        };
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(
            {req.method, req.path, req.body, h("Content-Type"), h("Authorization"), h("X-Custom")});
    }

    std::mutex mu_;
    std::vector<Captured> requests_;
    std::optional<TestServer> server_;
};

std::chrono::system_clock::time_point fixed_time() {
    auto t = util::parse_iso8601_utc("2026-11-22T14:30:00.123Z");
    if (!t) {
        throw std::runtime_error("parse_iso8601_utc failed");
    }
    return *t;
}

Alert sample_alert() {
    Alert a;
    a.key = "gpu0_temp";
    a.severity = Severity::kCritical;
    a.state = AlertState::kFiring;
    a.summary = "GPU 0 temperature 87°C exceeds 85°C";
    a.check = "gpu";
    a.value = "87°C";
    a.threshold = "85°C";
    a.action = "Check the fans and airflow of gpu-01";
    a.host = "gpu-01";
    a.time = fixed_time();
    a.suppressed = 3;
    a.occurrences = 4;
    a.fields = {{"gpu_index", "0"}, {"gpu.name", "NVIDIA A100"}};
    return a;
}

// The error a send() throws, or a test failure when it does not throw one.
std::optional<ChannelError> send_error(WebhookChannel& ch, const Alert& a) {
    try {
        ch.send(a);
    } catch (const ChannelError& e) {
        return e;
    }
    ADD_FAILURE() << "send() did not throw";
    return std::nullopt;
}

WebhookChannel channel(const std::string& url, WebhookFormat format = WebhookFormat::kJson,
                       std::chrono::milliseconds timeout = 5s) {
    WebhookOptions o;
    o.url = url;
    o.format = format;
    o.timeout = timeout;
    return WebhookChannel(std::move(o));
}

// --- format names and guessing -------------------------------------------------------------

TEST(WebhookFormat, ParseAndName) {
    EXPECT_EQ(parse_webhook_format("slack"), WebhookFormat::kSlack);
    EXPECT_EQ(parse_webhook_format("json"), WebhookFormat::kJson);
    EXPECT_EQ(parse_webhook_format("alertmanager"), WebhookFormat::kAlertmanager);
    EXPECT_EQ(parse_webhook_format("Slack"), WebhookFormat::kSlack);
    EXPECT_EQ(parse_webhook_format(""), std::nullopt);
    EXPECT_EQ(parse_webhook_format("teams"), std::nullopt);
    EXPECT_EQ(parse_webhook_format(" json"), std::nullopt);
    EXPECT_EQ(parse_webhook_format("alert-manager"), std::nullopt);
    for (auto f : {WebhookFormat::kSlack, WebhookFormat::kJson, WebhookFormat::kAlertmanager}) {
        EXPECT_EQ(parse_webhook_format(to_string(f)), f);
    }
}

TEST(WebhookFormat, GuessFromUrl) {
    EXPECT_EQ(guess_webhook_format("https://hooks.slack.com/services/T0/B0/xyz"),
              WebhookFormat::kSlack);
    EXPECT_EQ(guess_webhook_format("https://HOOKS.SLACK.COM:443/services/x"),
              WebhookFormat::kSlack);
    EXPECT_EQ(guess_webhook_format("https://discord.com/api/webhooks/1/abc/slack"),
              WebhookFormat::kSlack);
    EXPECT_EQ(guess_webhook_format("http://am:9093/api/v2/alerts"), WebhookFormat::kAlertmanager);
    EXPECT_EQ(guess_webhook_format("http://am:9093/api/v2/alerts/"), WebhookFormat::kAlertmanager);
    EXPECT_EQ(guess_webhook_format("http://am/prefix/api/v1/alerts?x=1"),
              WebhookFormat::kAlertmanager);
    EXPECT_EQ(guess_webhook_format("http://am/api/v2/alerts/groups"), WebhookFormat::kJson);
    EXPECT_EQ(guess_webhook_format("https://hooks.slack.com.evil.example/services/x"),
              WebhookFormat::kJson);
    EXPECT_EQ(guess_webhook_format("https://evil.example/?u=hooks.slack.com"),
              WebhookFormat::kJson);
    EXPECT_EQ(guess_webhook_format("https://chat.example/hooks/abc"), WebhookFormat::kJson);
    EXPECT_EQ(guess_webhook_format(""), WebhookFormat::kJson);
}

TEST(WebhookUrl, RedactionKeepsOnlySchemeHostAndPort) {
    EXPECT_EQ(redact_webhook_url("https://hooks.slack.com/services/T0/B0/SECRET"),
              "https://hooks.slack.com/…");
    EXPECT_EQ(redact_webhook_url("http://u:pw@127.0.0.1:8080/x?token=t"),
              "http://127.0.0.1:8080/…");
    EXPECT_EQ(redact_webhook_url("http://host?token=t"), "http://host/…");
    EXPECT_EQ(redact_webhook_url("http://host/"), "http://host");
    EXPECT_EQ(redact_webhook_url("http://host"), "http://host");
    EXPECT_EQ(redact_webhook_url("http://[::1]:9093/api/v2/alerts"), "http://[::1]:9093/…");
}

// --- payloads ------------------------------------------------------------------------------

TEST(WebhookPayload, JsonCarriesEveryField) {
    const json j = json::parse(webhook_payload(WebhookFormat::kJson, sample_alert()));
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.at("key"), "gpu0_temp");
    EXPECT_EQ(j.at("severity"), "critical");
    EXPECT_EQ(j.at("state"), "firing");
    EXPECT_EQ(j.at("summary"), "GPU 0 temperature 87°C exceeds 85°C");
    EXPECT_EQ(j.at("check"), "gpu");
    EXPECT_EQ(j.at("value"), "87°C");
    EXPECT_EQ(j.at("threshold"), "85°C");
    EXPECT_EQ(j.at("action"), "Check the fans and airflow of gpu-01");
    EXPECT_EQ(j.at("host"), "gpu-01");
    EXPECT_EQ(j.at("time"), "2026-11-22T14:30:00.123Z");
    EXPECT_EQ(j.at("suppressed"), 3);
    EXPECT_EQ(j.at("occurrences"), 4);
    EXPECT_EQ(j.at("fields"), (json{{"gpu_index", "0"}, {"gpu.name", "NVIDIA A100"}}));
    EXPECT_EQ(j.at("source"), "mlkeeper");
    EXPECT_EQ(j.size(), 14U);

    Alert r = sample_alert();
    r.state = AlertState::kResolved;
    r.fields.clear();
    const json jr = json::parse(webhook_payload(WebhookFormat::kJson, r));
    EXPECT_EQ(jr.at("state"), "resolved");
    EXPECT_TRUE(jr.at("fields").is_object());
    EXPECT_TRUE(jr.at("fields").empty());
}

TEST(WebhookPayload, SlackTextReadsAloneAndFieldsAreComplete) {
    const json j = json::parse(webhook_payload(WebhookFormat::kSlack, sample_alert()));
    EXPECT_EQ(j.at("text"), "[CRITICAL] gpu-01: GPU 0 temperature 87°C exceeds 85°C");
    ASSERT_EQ(j.at("attachments").size(), 1U);
    const json& att = j.at("attachments")[0];
    EXPECT_EQ(att.at("color"), "danger");
    EXPECT_EQ(att.at("fallback"), j.at("text"));
    EXPECT_EQ(att.at("footer"), "mlkeeper");
    EXPECT_EQ(att.at("ts"), 1795357800);  // 2026-11-22T14:30:00Z
    std::map<std::string, std::pair<std::string, bool>> fields;
    for (const auto& f : att.at("fields")) {
        fields[f.at("title").get<std::string>()] = {f.at("value").get<std::string>(),
                                                    f.at("short").get<bool>()};
    }
    using P = std::pair<std::string, bool>;
    EXPECT_EQ(fields.at("Value"), (P{"87°C", true}));
    EXPECT_EQ(fields.at("Threshold"), (P{"85°C", true}));
    EXPECT_EQ(fields.at("Severity"), (P{"critical", true}));
    EXPECT_EQ(fields.at("Check"), (P{"gpu", true}));
    EXPECT_EQ(fields.at("Key"), (P{"gpu0_temp", true}));
    EXPECT_EQ(fields.at("Time"), (P{"2026-11-22T14:30:00.123Z", true}));
    EXPECT_EQ(fields.at("Occurrences"), (P{"4", true}));
    EXPECT_EQ(fields.at("Suppressed repeats"), (P{"3", true}));
    EXPECT_EQ(fields.at("gpu_index"), (P{"0", true}));
    EXPECT_EQ(fields.at("gpu.name"), (P{"NVIDIA A100", true}));
    EXPECT_EQ(fields.at("Action"), (P{"Check the fans and airflow of gpu-01", false}));
    EXPECT_EQ(fields.size(), 11U);
    EXPECT_EQ(att.at("fields").back().at("title"), "Action");
}

TEST(WebhookPayload, SlackColoursEscapingAndEmptyParts) {
    auto colour = [](Severity s, AlertState st) {
        Alert a = sample_alert();
        a.severity = s;
        a.state = st;
        return json::parse(webhook_payload(WebhookFormat::kSlack, a))
            .at("attachments")[0]
            .at("color")
            .get<std::string>();
    };
    EXPECT_EQ(colour(Severity::kEmergency, AlertState::kFiring), "danger");
    EXPECT_EQ(colour(Severity::kCritical, AlertState::kFiring), "danger");
    EXPECT_EQ(colour(Severity::kWarning, AlertState::kFiring), "warning");
    EXPECT_EQ(colour(Severity::kInfo, AlertState::kFiring), "good");
    EXPECT_EQ(colour(Severity::kCritical, AlertState::kResolved), "good");

    Alert a;
    a.key = "svc";
    a.severity = Severity::kWarning;
    a.state = AlertState::kResolved;
    a.summary = "nginx <down> & back";
    a.time = fixed_time();
    a.fields = {{"a<b", "x>y"}};
    const json j = json::parse(webhook_payload(WebhookFormat::kSlack, a));
    EXPECT_EQ(j.at("text"), "[RESOLVED] nginx &lt;down&gt; &amp; back");  // no host: no "host: "
    const json& fields = j.at("attachments")[0].at("fields");
    for (const auto& f : fields) {
        EXPECT_NE(f.at("value"), "") << f.dump();  // empty value/threshold/action left out
        EXPECT_NE(f.at("title"), "Value");
        EXPECT_NE(f.at("title"), "Occurrences");
        EXPECT_NE(f.at("title"), "Suppressed repeats");
    }
    bool found = false;
    for (const auto& f : fields) {
        if (f.at("title") == "a&lt;b") {
            EXPECT_EQ(f.at("value"), "x&gt;y");
            found = true;
        }
    }
    EXPECT_TRUE(found) << fields.dump();
}

TEST(WebhookPayload, AlertmanagerFiringAndResolved) {
    const json arr = json::parse(webhook_payload(WebhookFormat::kAlertmanager, sample_alert()));
    ASSERT_TRUE(arr.is_array());
    ASSERT_EQ(arr.size(), 1U);
    const json& j = arr[0];
    EXPECT_EQ(j.at("labels"), (json{{"alertname", "gpu0_temp"},
                                    {"severity", "critical"},
                                    {"instance", "gpu-01"},
                                    {"check", "gpu"},
                                    {"gpu_index", "0"},
                                    {"gpu_name", "NVIDIA A100"}}));
    EXPECT_EQ(j.at("annotations").at("summary"), "GPU 0 temperature 87°C exceeds 85°C");
    EXPECT_EQ(j.at("annotations").at("description"),
              "value: 87°C; threshold: 85°C; action: Check the fans and airflow of gpu-01");
    EXPECT_EQ(j.at("startsAt"), "2026-11-22T14:30:00.123Z");
    EXPECT_FALSE(j.contains("endsAt"));
    EXPECT_EQ(j.at("generatorURL"), "");

    Alert r = sample_alert();
    r.state = AlertState::kResolved;
    const json jr = json::parse(webhook_payload(WebhookFormat::kAlertmanager, r))[0];
    EXPECT_EQ(jr.at("endsAt"), "2026-11-22T14:30:00.123Z");
    EXPECT_EQ(jr.at("startsAt"), jr.at("endsAt"));  // Alertmanager rejects endsAt < startsAt
    EXPECT_EQ(jr.at("labels"), j.at("labels")) << "same labels, so it resolves the same alert";
}

TEST(WebhookPayload, AlertmanagerLabelsAreValidAndCannotBeOverridden) {
    Alert a;
    a.key = "";
    a.severity = Severity::kInfo;
    a.summary = "s";
    a.time = fixed_time();
    a.fields = {{"alertname", "hijack"}, {"severity", "critical"}, {"9lives", "1"},
                {"__name__", "x"},       {"mount point", "/data"}, {"empty", ""},
                {"", "noname"}};
    const json j = json::parse(webhook_payload(WebhookFormat::kAlertmanager, a))[0];
    EXPECT_EQ(j.at("labels"), (json{{"alertname", "mlkeeper"},
                                    {"severity", "info"},
                                    {"field_9lives", "1"},
                                    {"field___name__", "x"},
                                    {"mount_point", "/data"},
                                    {"field_", "noname"}}));
    EXPECT_FALSE(j.at("annotations").contains("description"));
}

TEST(WebhookPayload, InvalidUtf8IsReplacedNotFatal) {
    Alert a = sample_alert();
    a.summary = std::string("bad \xff\xfe bytes");
    a.fields = {{"dev", std::string("\xc3")}};
    for (auto f : {WebhookFormat::kSlack, WebhookFormat::kJson, WebhookFormat::kAlertmanager}) {
        std::string body;
        ASSERT_NO_THROW(body = webhook_payload(f, a));
        ASSERT_TRUE(json::accept(body)) << body;
        EXPECT_NE(body.find("bad \xef\xbf\xbd"), std::string::npos) << body;  // U+FFFD
    }
}

// --- construction --------------------------------------------------------------------------

TEST(WebhookChannel, RejectsBadOptions) {
    auto make = [](const std::string& url, std::chrono::milliseconds timeout,
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
        WebhookOptions o;
        o.url = url;
        o.timeout = timeout;
        o.headers = std::move(headers);
        return WebhookChannel(std::move(o));
    };
    EXPECT_THROW(make("", 1s), std::invalid_argument);
    EXPECT_THROW(make("hooks.slack.com/services/x", 1s), std::invalid_argument);
    EXPECT_THROW(make("ftp://host/x", 1s), std::invalid_argument);
    EXPECT_THROW(make("file:///etc/passwd", 1s), std::invalid_argument);
    EXPECT_THROW(make("http:///path", 1s), std::invalid_argument);
    EXPECT_THROW(make("https://host/x", 0ms), std::invalid_argument);
    EXPECT_THROW(make("https://host/x", -5ms), std::invalid_argument);
    EXPECT_THROW(make("https://host/x", 1s, {{"X-A", "v\r\nX-B: 1"}}), std::invalid_argument);
    EXPECT_THROW(make("https://host/x", 1s, {{"Bad Name", "v"}}), std::invalid_argument);
    try {
        make("ftp://host/services/SECRET", 1s);
    } catch (const std::invalid_argument& e) {
        EXPECT_EQ(std::string(e.what()).find("SECRET"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(make("HTTPS://host/x", 1s, {{"Authorization", "Bearer x"}}));
    EXPECT_EQ(make("http://host", 1s).name(), "webhook");
}

// --- delivery ------------------------------------------------------------------------------

TEST(WebhookChannel, PostsEachFormatWithJsonContentType) {
    Receiver rx;
    const Alert a = sample_alert();
    for (auto f : {WebhookFormat::kSlack, WebhookFormat::kJson, WebhookFormat::kAlertmanager}) {
        auto ch = channel(rx.url("/ok"), f);
        EXPECT_NO_THROW(ch.send(a)) << to_string(f);
    }
    const auto reqs = rx.requests();
    ASSERT_EQ(reqs.size(), 3U);
    for (const auto& r : reqs) {
        EXPECT_EQ(r.method, "POST");
        EXPECT_EQ(r.path, "/ok");
        EXPECT_EQ(r.content_type, "application/json");
    }
    EXPECT_EQ(json::parse(reqs[0].body), json::parse(webhook_payload(WebhookFormat::kSlack, a)));
    EXPECT_EQ(json::parse(reqs[1].body).at("key"), "gpu0_temp");
    EXPECT_EQ(json::parse(reqs[1].body).at("source"), "mlkeeper");
    EXPECT_EQ(json::parse(reqs[2].body)[0].at("labels").at("alertname"), "gpu0_temp");
}

TEST(WebhookChannel, CustomHeadersArrive) {
    Receiver rx;
    WebhookOptions o;
    o.url = rx.url("/ok");
    o.headers = {{"Authorization", "Bearer tok-123"}, {"X-Custom", "yes"}};
    WebhookChannel ch(o);
    ch.send(sample_alert());

    o.headers = {{"content-type", "application/vnd.custom+json"}};
    WebhookChannel typed(o);
    typed.send(sample_alert());

    const auto reqs = rx.requests();
    ASSERT_EQ(reqs.size(), 2U);
    EXPECT_EQ(reqs[0].authorization, "Bearer tok-123");
    EXPECT_EQ(reqs[0].custom, "yes");
    EXPECT_EQ(reqs[0].content_type, "application/json");
    EXPECT_EQ(reqs[1].content_type, "application/vnd.custom+json");
}

TEST(WebhookChannel, StatusCodesMapToTransientOrPermanent) {
    Receiver rx;
    struct Case {
        const char* path;
        ChannelError::Kind kind;
        const char* text;
    };
    const Case cases[] = {
        {"/fail500", ChannelError::Kind::kTransient, "HTTP 500: upstream exploded"},
        {"/busy429", ChannelError::Kind::kTransient, "HTTP 429"},
        {"/bad400", ChannelError::Kind::kPermanent, "HTTP 400: invalid_payload"},
        {"/missing", ChannelError::Kind::kPermanent, "HTTP 404"},
        {"/moved", ChannelError::Kind::kPermanent, "HTTP 301"},
    };
    for (const auto& c : cases) {
        auto ch = channel(rx.url(c.path));
        const auto err = send_error(ch, sample_alert());
        ASSERT_TRUE(err.has_value()) << c.path;
        EXPECT_EQ(err->kind(), c.kind) << c.path << ": " << err->what();
        const std::string what = err->what();
        const std::string prefix = "webhook POST " + redact_webhook_url(rx.url("/")) + "/…: ";
        EXPECT_EQ(what.rfind(prefix, 0), 0U) << what;
        EXPECT_EQ(what.substr(prefix.size()), c.text) << what;
    }
}

TEST(WebhookChannel, ErrorBodyIsCutToOneLineOf200Bytes) {
    Receiver rx;
    auto ch = channel(rx.url("/long"));
    const auto err = send_error(ch, sample_alert());
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient);
    const std::string what = err->what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    const std::string marker = "HTTP 503: ";
    const auto at = what.find(marker);
    ASSERT_NE(at, std::string::npos) << what;
    // The 2-byte "é" would end at byte 201, so the cut falls before it.
    EXPECT_EQ(what.substr(at + marker.size()), std::string(199, 'a') + "...");
}

TEST(WebhookChannel, SecretPathNeverAppearsInErrors) {
    Receiver rx;
    auto ch = channel(rx.url("/services/T0123/B0456/SECRETxyz789"), WebhookFormat::kSlack);
    const auto err = send_error(ch, sample_alert());
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent);
    const std::string what = err->what();
    EXPECT_EQ(what.find("SECRETxyz789"), std::string::npos) << what;
    EXPECT_EQ(what.find("T0123"), std::string::npos) << what;
    EXPECT_NE(what.find("HTTP 404: no_service"), std::string::npos) << what;
    ASSERT_EQ(rx.requests().size(), 1U);
    EXPECT_EQ(rx.requests()[0].path, "/services/T0123/B0456/SECRETxyz789");

    RefusingPort closed;
    auto dead = channel("http://user:pw@127.0.0.1:" + std::to_string(closed.port()) +
                        "/services/T0123/B0456/SECRETxyz789?token=qtok");
    const auto err2 = send_error(dead, sample_alert());
    ASSERT_TRUE(err2.has_value());
    const std::string what2 = err2->what();
    for (const char* secret : {"SECRETxyz789", "T0123", "qtok", "pw@", "user"}) {
        EXPECT_EQ(what2.find(secret), std::string::npos) << secret << " in " << what2;
    }
}

TEST(WebhookChannel, ConnectionRefusedIsTransientAndFast) {
    RefusingPort closed;
    const std::string base = "http://127.0.0.1:" + std::to_string(closed.port());
    auto ch = channel(base + "/hook");
    const auto start = SteadyClock::now();
    const auto err = send_error(ch, sample_alert());
    EXPECT_LT(SteadyClock::now() - start, 2s);
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient);
    const std::string what = err->what();
    EXPECT_EQ(what.rfind("webhook POST " + base + "/…: ", 0), 0U) << what;
    EXPECT_NE(what.find(std::to_string(closed.port())), std::string::npos) << what;
}

TEST(WebhookChannel, SlowServerFailsWithinTheTimeout) {
    Receiver rx;
    auto ch = channel(rx.url("/slow"), WebhookFormat::kJson, 300ms);
    const auto start = SteadyClock::now();
    const auto err = send_error(ch, sample_alert());
    const auto elapsed = SteadyClock::now() - start;
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient);
    EXPECT_NE(std::string(err->what()).find("timed out"), std::string::npos) << err->what();
    EXPECT_GE(elapsed, 250ms);
    EXPECT_LT(elapsed, 2s);
}

TEST(WebhookChannel, ConcurrentSendsAllArrive) {
    Receiver rx;
    auto ch = channel(rx.url("/ok"));
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 6; ++t) {
        threads.emplace_back([&, t] {
            Alert a = sample_alert();
            a.key = "k" + std::to_string(t);
            try {
                ch.send(a);
            } catch (const ChannelError&) {
                ++failures;
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(rx.requests().size(), 6U);
}

}  // namespace
}  // namespace mlk::alert

namespace mlk::alert {
namespace {

TEST(WebhookPayloadExpiry, AlertmanagerFiringAlertCarriesEndsAt) {
    Alert a;
    a.key = "gpu0_temp";
    a.expires_at = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    auto j = nlohmann::json::parse(webhook_payload(WebhookFormat::kAlertmanager, a));
    EXPECT_EQ(j[0]["endsAt"], "2027-01-15T08:00:00.000Z");
}

}  // namespace
}  // namespace mlk::alert
