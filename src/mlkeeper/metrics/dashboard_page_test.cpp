#include "mlkeeper/metrics/dashboard_page.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/metrics/svg_chart.hpp"
#include "support/chromium.hpp"
#include "support/http_test_server.hpp"
#include "support/temp_dir.hpp"

namespace mlk::metrics {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Chromium;

constexpr std::int64_t kNow = 1'800'000'000;  // 2027-01-15T08:00:00Z
constexpr double kGiB = 1024.0 * 1024 * 1024;

json check(const char* name, const char* status, const char* message) {
    return {{"check", name}, {"status", status}, {"message", message}};
}

// What an agent with two GPUs, some history and one failing probe would report.
json fixture_summary() {
    return {{"host", "gpu-box-01"},
            {"version", "0.9.0"},
            {"generated_at", "2027-01-15T08:00:00Z"},
            {"uptime_seconds", 273900},
            {"gpus",
             {{{"id", 0},
               {"name", "NVIDIA H100 80GB HBM3"},
               {"uuid", "GPU-4f3c2a1e-0000-0000-0000-000000000000"},
               {"temp", 64},
               {"util_gpu", 87},
               {"mem_used_bytes", 61203283968LL},
               {"mem_total_bytes", 85520809984LL},
               {"power_draw_w", 512.4},
               {"power_limit_w", 700},
               {"status", "ok"},
               {"findings", json::array()}},
              {{"id", 1},
               {"name", "NVIDIA H100 80GB HBM3"},
               {"uuid", "GPU-9d8e7f6a-0000-0000-0000-000000000000"},
               {"temp", 86},
               {"util_gpu", 100},
               {"mem_used_bytes", 84000000000LL},
               {"mem_total_bytes", 85520809984LL},
               {"power_draw_w", nullptr},
               {"power_limit_w", 700},
               {"status", "warning"},
               {"findings",
                {"temperature 86 °C is over the warning threshold (85 °C)", "memory 98% used"}}}}},
            {"health",
             {{"at", "2027-01-15T07:55:00Z"},
              {"score", 72},
              {"checks",
               {check("disk", "warn", "/ is 87% full (warning at 85%)"),
                check("memory", "pass", "31% of 251.5 GiB used"),
                check("cpu", "pass", "load 3.2 on 64 cores"),
                check("services", "pass", "nginx, ollama active"),
                check("gpu", "pass", "2 GPUs, no XID errors"),
                check("network", "pass", "default route via 10.0.0.1"),
                check("errors", "pass", "no kernel errors in 24h"),
                check("oom", "pass", "no OOM kills in 24h"), check("uptime", "pass", "up 3d 4h"),
                check("probe:redis", "pass", "PONG in 1 ms"),
                check("probe:postgres", "fail", "connection refused (10.0.0.5:5432)")}}}},
            {"backups",
             {{{"at", "2027-01-15T03:00:00Z"},
               {"archive", "models_backup_20270115_030000.tar.zst"},
               {"kind", "incremental"},
               {"bytes_out", nullptr},
               {"files", 12},
               {"seconds", 3.4},
               {"verified", false},
               {"ok", false},
               {"error", "S3 upload failed: 503 Slow Down"}},
              {{"at", "2027-01-14T03:00:00Z"},
               {"archive", "models_backup_20270114_030000.tar.zst"},
               {"kind", "incremental"},
               {"bytes_out", 52428800},
               {"files", 37},
               {"seconds", 0.09},
               {"verified", true},
               {"ok", true},
               {"error", nullptr}},
              {{"at", "2027-01-11T03:00:00Z"},
               {"archive", "models_backup_20270111_030000.tar.zst"},
               {"kind", "full"},
               {"bytes_out", 1610612736},
               {"files", 48213},
               {"seconds", 754},
               {"verified", true},
               {"ok", true},
               {"error", nullptr}}}},
            {"schedule",
             {{{"job", "backup"},
               {"next", "2027-01-16T03:00:00Z"},
               {"last", "2027-01-15T03:00:00Z"},
               {"last_outcome", "failed"},
               {"last_duration_seconds", 3.4},
               {"running", false}},
              {{"job", "health"},
               {"next", "2027-01-15T08:05:00Z"},
               {"last", "2027-01-15T07:55:00Z"},
               {"last_outcome", "success"},
               {"last_duration_seconds", 2},
               {"running", true}},
              {{"job", "cleanup"},
               {"next", "2027-01-17T04:00:00Z"},
               {"last", "2027-01-10T04:00:00Z"},
               {"last_outcome", "success"},
               {"last_duration_seconds", 125},
               {"running", false}},
              {{"job", "gpu-report"},
               {"next", "2027-01-15T09:00:00Z"},
               {"last", nullptr},
               {"last_outcome", nullptr},
               {"last_duration_seconds", nullptr},
               {"running", false}}}},
            {"models",
             {{{"name", "llama-3.1-8b"},
               {"state", "running"},
               {"requests", 15234},
               {"in_flight", 2},
               {"idle_seconds", 4}},
              {{"name", "qwen2.5-coder-32b"},
               {"state", "stopped"},
               {"requests", 87},
               {"in_flight", 0},
               {"idle_seconds", nullptr}}}},
            // Resolved first, so the test sees the page put the firing one on top.
            {"alerts",
             {{{"key", "gpu.1.temperature"},
               {"state", "resolved"},
               {"severity", "warning"},
               {"summary", "GPU 1 temperature back to 79 °C"},
               {"last_seen", "2027-01-15T07:58:00Z"}},
              {{"key", "backup.failed"},
               {"state", "firing"},
               {"severity", "critical"},
               {"summary", "Backup failed: S3 upload failed: 503 Slow Down"},
               {"last_seen", "2027-01-15T03:00:04Z"}}}}};
}

json empty_summary() {
    return {{"host", "fresh-box"},
            {"version", "0.9.0"},
            {"generated_at", "2027-01-15T08:00:00Z"},
            {"uptime_seconds", 12},
            {"gpus", json::array()},
            {"health", {{"at", nullptr}, {"score", nullptr}, {"checks", json::array()}}},
            {"backups", json::array()},
            {"schedule", json::array()},
            {"models", json::array()},
            {"alerts", json::array()}};
}

// A chart as the agent will draw it: one synthetic series per GPU over the range, GPU 1 with a
// gap where its sampler missed.
std::string chart(const std::string& metric, const std::string& range, int gpus) {
    const std::int64_t span = range == "7d" ? 7 * 86400 : range == "24h" ? 86400 : 3600;
    ChartSpec spec;
    spec.t0 = kNow - span;
    spec.t1 = kNow;
    double base = 0, swing = 0;
    if (metric == "temp") {
        spec.title = "GPU temperature";
        spec.unit = "°C";
        base = 60;
        swing = 20;
    } else if (metric == "util") {
        spec.title = "GPU utilisation";
        spec.unit = "%";
        spec.y_min = 0;
        spec.y_max = 100;
        base = 50;
        swing = 45;
    } else if (metric == "memory") {
        spec.title = "GPU memory used";
        spec.unit = "GiB";
        spec.y_min = 0;
        spec.y_max = 85520809984.0 / kGiB;
        base = 50;
        swing = 25;
    } else {
        spec.title = "GPU power";
        spec.unit = "W";
        spec.y_min = 0;
        base = 400;
        swing = 250;
    }
    spec.title += " (" + range + ")";
    std::vector<ChartSeries> series;
    for (int g = 0; g < gpus; ++g) {
        ChartSeries s{"GPU " + std::to_string(g), {}, {}};
        for (int i = 0; i <= 360; ++i) {
            const double phase = i / 40.0 + g * 1.3;
            s.t.push_back(spec.t0 + span * i / 360);
            if (g == 1 && i > 200 && i < 230) {
                s.v.push_back(std::nullopt);
            } else {
                s.v.push_back(base + swing * std::sin(phase) * (0.6 + 0.4 * std::cos(i / 97.0)));
            }
        }
        series.push_back(std::move(s));
    }
    return render_line_chart(spec, series);
}

// A stand-in for the agent's metrics listener, recording what the page asked for.
class FakeAgent {
  public:
    struct Request {
        std::string path, range, buster, authorization;
    };

    explicit FakeAgent(json summary, std::string token = "")
        : summary_(std::move(summary)),
          token_(std::move(token)),
          server_([this](httplib::Server& s) { routes(s); }) {}

    std::string url(const std::string& path) const { return server_.url(path); }

    std::vector<Request> requests() const {
        std::lock_guard<std::mutex> lock(mu_);
        return requests_;
    }
    // Makes `path` answer `status` with `body` from now on (0: back to normal).
    void fail(const std::string& path, int status, std::string body) {
        std::lock_guard<std::mutex> lock(mu_);
        failures_[path] = {status, std::move(body)};
    }

  private:
    // Records the request; false (and a 401 or the injected failure) when it is not to be served.
    bool admit(const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back({req.path, req.get_param_value("range"), req.get_param_value("_"),
                             req.get_header_value("Authorization")});
        if (!token_.empty() && req.get_header_value("Authorization") != "Bearer " + token_) {
            res.status = 401;
            res.set_content(R"({"error":"unauthorized"})", "application/json");
            return false;
        }
        if (auto it = failures_.find(req.path); it != failures_.end() && it->second.first != 0) {
            res.status = it->second.first;
            res.set_content(it->second.second, "text/plain");
            return false;
        }
        return true;
    }

    void routes(httplib::Server& s) {
        s.Get("/", [](const httplib::Request&, httplib::Response& res) {
            res.set_content(std::string(dashboard_html()), "text/html; charset=utf-8");
        });
        s.Get("/api/dashboard/summary",
              [this](const httplib::Request& req, httplib::Response& res) {
                  if (admit(req, res)) {
                      res.set_content(summary_.dump(), "application/json");
                  }
              });
        s.Get(R"(/charts/gpu/(temp|util|memory|power)\.svg)",
              [this](const httplib::Request& req, httplib::Response& res) {
                  if (!admit(req, res)) {
                      return;
                  }
                  const std::string range = req.get_param_value("range");
                  if (range != "1h" && range != "24h" && range != "7d") {
                      res.status = 400;
                      res.set_content("bad range", "text/plain");
                      return;
                  }
                  const int gpus = static_cast<int>(summary_["gpus"].size());
                  res.set_content(chart(req.matches[1], range, gpus), "image/svg+xml");
              });
    }

    const json summary_;
    const std::string token_;
    mutable std::mutex mu_;
    std::vector<Request> requests_;
    std::map<std::string, std::pair<int, std::string>> failures_;
    testing::TestServer server_;  // last: stopped first, while the members above still live
};

std::string page_state(Chromium& browser) {
    return "body.dataset.errors = " + browser.evaluate("document.body.dataset.errors").dump() +
           "\nconsole:\n" + testing::describe(browser.console());
}

// Errors other than the browser's own "Failed to load resource" lines for HTTP errors.
std::vector<testing::ConsoleMessage> script_errors(const Chromium& browser) {
    std::vector<testing::ConsoleMessage> out;
    for (const auto& m : browser.errors()) {
        if (m.source != "network") {
            out.push_back(m);
        }
    }
    return out;
}

constexpr auto kReady = "document.body.dataset.ready === '1'";

TEST(DashboardPage, ShowsTheSummaryAndChartsInChromium) {
    MLK_REQUIRE_CHROMIUM();
    FakeAgent agent(fixture_summary());
    Chromium browser;
    browser.navigate(agent.url("/"));
    ASSERT_TRUE(browser.wait_for(kReady, 20s)) << page_state(browser);
    EXPECT_TRUE(browser.errors().empty()) << testing::describe(browser.console());
    EXPECT_EQ(browser.evaluate("document.body.dataset.errors"), "[]");

    const json dom = browser.evaluate(R"JS((() => {
      const all = (s) => Array.from(document.querySelectorAll(s));
      const texts = (s) => all(s).map((e) => e.textContent.trim());
      return {
        title: document.title,
        host: texts('#host')[0], version: texts('#version')[0], uptime: texts('#uptime')[0],
        score: texts('#score')[0], scoreStatus: document.getElementById('score').dataset.status,
        updated: texts('#updated')[0],
        charts: all('#charts figure.chart').map((f) => ({
          metric: f.dataset.metric,
          lines: f.querySelectorAll('svg path[data-series]').length,
          title: (f.querySelector('svg > title') || {}).textContent })),
        gpus: texts('#gpus .card.gpu'),
        warningCards: all('#gpus .card.gpu-warning').length,
        findings: all('#gpus .findings li').length,
        health: all('#health tbody tr').length,
        failed: texts('#health tbody tr[data-status="fail"]'),
        failedMark: all('#health tr[data-status="fail"] .mark.s-fail').length,
        warned: all('#health tbody tr[data-status="warn"]').length,
        backups: texts('#backups tbody tr'),
        failedBackups: all('#backups tbody tr.row-fail').length,
        schedule: texts('#schedule tbody tr'),
        models: texts('#models tbody tr'),
        alerts: all('#alerts li.alert').map((li) => li.dataset.state),
        firstAlert: texts('#alerts li.alert')[0],
        empties: texts('.empty'),
        banner: document.getElementById('banner').hidden,
        auth: document.getElementById('auth').hidden };
    })())JS");

    EXPECT_EQ(dom["title"], "mlkeeper \u2014 gpu-box-01");
    EXPECT_EQ(dom["host"], "gpu-box-01");
    EXPECT_EQ(dom["version"], "v0.9.0");
    EXPECT_EQ(dom["uptime"], "up 3d 4h");
    EXPECT_EQ(dom["score"], "health 72");
    EXPECT_EQ(dom["scoreStatus"], "fail");  // one check failed
    EXPECT_EQ(dom["updated"].get<std::string>().rfind("updated ", 0), 0u) << dom["updated"];

    ASSERT_EQ(dom["charts"].size(), 4u) << dom.dump(2);
    const char* metrics[] = {"temp", "util", "memory", "power"};
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(dom["charts"][i]["metric"], metrics[i]);
        EXPECT_EQ(dom["charts"][i]["lines"], 2) << dom["charts"][i];  // one line per GPU
        EXPECT_NE(dom["charts"][i]["title"].get<std::string>().find("(1h)"), std::string::npos);
    }

    ASSERT_EQ(dom["gpus"].size(), 2u);
    EXPECT_NE(dom["gpus"][0].get<std::string>().find("64\u2009°C"), std::string::npos)
        << dom["gpus"][0];
    EXPECT_NE(dom["gpus"][0].get<std::string>().find("87%"), std::string::npos);
    EXPECT_NE(dom["gpus"][0].get<std::string>().find("512\u2009W"), std::string::npos);
    EXPECT_NE(dom["gpus"][0].get<std::string>().find("57.0 GiB / 79.6 GiB (72%)"),
              std::string::npos)
        << dom["gpus"][0];
    // GPU 1 has no power reading: a dash, with its limit still shown.
    EXPECT_NE(dom["gpus"][1].get<std::string>().find("\u2014power of 700\u2009W"),
              std::string::npos)
        << dom["gpus"][1];
    EXPECT_EQ(dom["warningCards"], 1);
    EXPECT_EQ(dom["findings"], 2);

    EXPECT_EQ(dom["health"], 11);
    ASSERT_EQ(dom["failed"].size(), 1u);
    EXPECT_NE(dom["failed"][0].get<std::string>().find("probe:postgres"), std::string::npos);
    EXPECT_NE(dom["failed"][0].get<std::string>().find("\u2717 fail"), std::string::npos);
    EXPECT_EQ(dom["failedMark"], 1);
    EXPECT_EQ(dom["warned"], 1);

    ASSERT_EQ(dom["backups"].size(), 3u);
    EXPECT_NE(dom["backups"][0].get<std::string>().find("S3 upload failed"), std::string::npos);
    EXPECT_NE(dom["backups"][1].get<std::string>().find("50.0 MiB"), std::string::npos)
        << dom["backups"][1];
    EXPECT_NE(dom["backups"][2].get<std::string>().find("1.5 GiB"), std::string::npos);
    EXPECT_NE(dom["backups"][2].get<std::string>().find("48,213"), std::string::npos);
    EXPECT_NE(dom["backups"][2].get<std::string>().find("12m 34s"), std::string::npos);
    EXPECT_EQ(dom["failedBackups"], 1);

    ASSERT_EQ(dom["schedule"].size(), 4u);
    EXPECT_NE(dom["schedule"][1].get<std::string>().find("running"), std::string::npos);
    EXPECT_NE(dom["schedule"][3].get<std::string>().find("gpu-report"), std::string::npos);
    ASSERT_EQ(dom["models"].size(), 2u);
    EXPECT_NE(dom["models"][0].get<std::string>().find("15,234"), std::string::npos);
    EXPECT_EQ(dom["alerts"], json({"firing", "resolved"}));
    EXPECT_NE(dom["firstAlert"].get<std::string>().find("Backup failed"), std::string::npos);
    EXPECT_TRUE(dom["empties"].empty()) << dom["empties"];
    EXPECT_TRUE(dom["banner"].get<bool>());
    EXPECT_TRUE(dom["auth"].get<bool>());

    // Every chart request asked for 1h with a cache buster; no token was needed or sent.
    int charts = 0;
    for (const auto& r : agent.requests()) {
        EXPECT_TRUE(r.authorization.empty()) << r.path;
        if (r.path.rfind("/charts/", 0) == 0) {
            ++charts;
            EXPECT_EQ(r.range, "1h");
            EXPECT_FALSE(r.buster.empty()) << r.path;
        }
    }
    EXPECT_EQ(charts, 4);

    const auto png = testing::artifact_path("dashboard.png");
    browser.screenshot(png);
    std::cout << "dashboard screenshot: " << png.string() << std::endl;
    browser.set_color_scheme(testing::ColorScheme::kDark);
    const auto dark = testing::artifact_path("dashboard-dark.png");
    browser.screenshot(dark);
    std::cout << "dashboard screenshot (dark): " << dark.string() << std::endl;
    EXPECT_GT(std::filesystem::file_size(png), 10'000u);

    // The range toggle fetches all four charts again for 24h.
    browser.evaluate("document.querySelector('.toggle [data-range=\"24h\"]').click()");
    EXPECT_TRUE(
        browser.wait_for("Array.from(document.querySelectorAll('#charts svg > title'))"
                         ".filter((t) => t.textContent.includes('(24h)')).length === 4",
                         10s))
        << page_state(browser);
    EXPECT_EQ(browser.evaluate("document.querySelector('[data-range=\"24h\"]')"
                               ".getAttribute('aria-pressed')"),
              "true");
    EXPECT_TRUE(browser.errors().empty()) << testing::describe(browser.console());
}

TEST(DashboardPage, AsksForATokenWhenTheAgentAnswers401) {
    MLK_REQUIRE_CHROMIUM();
    FakeAgent agent(fixture_summary(), "s3cret-token");
    Chromium browser;
    browser.navigate(agent.url("/"));
    ASSERT_TRUE(browser.wait_for("!document.getElementById('auth').hidden", 20s))
        << page_state(browser);
    EXPECT_TRUE(browser.evaluate("document.getElementById('content').hidden").get<bool>());
    EXPECT_TRUE(browser.evaluate("document.body.dataset.ready").is_null());
    EXPECT_EQ(browser.evaluate("document.body.dataset.errors"), "[]");
    EXPECT_EQ(browser.evaluate("document.getElementById('auth-msg').textContent"), "");

    // A wrong token: the form stays, saying so.
    const std::string submit =
        "(() => { document.getElementById('token').value = '%s';"
        " document.getElementById('auth-form').requestSubmit(); return true; })()";
    auto with_token = [&](const std::string& t) {
        std::string js = submit;
        js.replace(js.find("%s"), 2, t);
        return js;
    };
    browser.evaluate(with_token("wrong"));
    ASSERT_TRUE(browser.wait_for(
        "document.getElementById('auth-msg').textContent.includes('not accepted')", 10s))
        << page_state(browser);
    EXPECT_TRUE(browser.evaluate("document.body.dataset.ready").is_null());

    browser.evaluate(with_token("s3cret-token"));
    ASSERT_TRUE(browser.wait_for(kReady, 20s)) << page_state(browser);
    EXPECT_TRUE(browser.evaluate("document.getElementById('auth').hidden").get<bool>());
    EXPECT_EQ(browser.evaluate("sessionStorage.getItem('mlk-token')"), "s3cret-token");
    EXPECT_EQ(browser.evaluate("document.querySelectorAll('#charts svg path[data-series]').length"),
              8);
    EXPECT_TRUE(script_errors(browser).empty()) << testing::describe(browser.console());
    EXPECT_EQ(browser.evaluate("document.body.dataset.errors"), "[]");

    // Charts too were fetched with the header (an <img> could not have sent it).
    int charts_with_token = 0;
    for (const auto& r : agent.requests()) {
        if (r.path.rfind("/charts/", 0) == 0 && r.authorization == "Bearer s3cret-token") {
            ++charts_with_token;
        }
    }
    EXPECT_EQ(charts_with_token, 4);
}

TEST(DashboardPage, SaysSoWhenThereIsNothingYet) {
    MLK_REQUIRE_CHROMIUM();
    FakeAgent agent(empty_summary());
    Chromium browser;
    browser.navigate(agent.url("/"));
    ASSERT_TRUE(browser.wait_for(kReady, 20s)) << page_state(browser);
    EXPECT_TRUE(browser.errors().empty()) << testing::describe(browser.console());
    const json dom = browser.evaluate(R"JS((() => {
      const t = (s) => (document.querySelector(s) || {}).textContent;
      return {
        gpus: t('#gpus .empty'), health: t('#health .empty'), backups: t('#backups .empty'),
        schedule: t('#schedule .empty'), models: t('#models .empty'), alerts: t('#alerts .empty'),
        noData: Array.from(document.querySelectorAll('#charts svg .no-data')).length,
        lines: document.querySelectorAll('#charts path[data-series]').length,
        rows: document.querySelectorAll('tbody tr').length,
        score: t('#score'), scoreStatus: document.getElementById('score').dataset.status };
    })())JS");
    EXPECT_EQ(dom["gpus"], "no GPUs found");
    EXPECT_EQ(dom["health"], "no health checks yet");
    EXPECT_EQ(dom["backups"], "no backups yet");
    EXPECT_EQ(dom["schedule"], "no scheduled jobs");
    EXPECT_EQ(dom["models"], "no models configured");
    EXPECT_EQ(dom["alerts"], "no alerts");
    EXPECT_EQ(dom["noData"], 4);
    EXPECT_EQ(dom["lines"], 0);
    EXPECT_EQ(dom["rows"], 0);
    EXPECT_EQ(dom["score"], "health \u2014");
    EXPECT_EQ(dom["scoreStatus"], "unknown");
}

TEST(DashboardPage, ShowsAndRecordsFailures) {
    MLK_REQUIRE_CHROMIUM();
    FakeAgent agent(fixture_summary());
    agent.fail("/api/dashboard/summary", 500, "state store: database is locked");
    Chromium browser;
    browser.navigate(agent.url("/"));
    ASSERT_TRUE(browser.wait_for("document.body.dataset.errors !== '[]'", 20s))
        << page_state(browser);
    json errors = json::parse(browser.evaluate("document.body.dataset.errors").get<std::string>());
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].get<std::string>().find("HTTP 500 state store: database is locked"),
              std::string::npos)
        << errors;
    EXPECT_FALSE(browser.evaluate("document.getElementById('banner').hidden").get<bool>());
    EXPECT_NE(browser.evaluate("document.getElementById('banner').textContent")
                  .get<std::string>()
                  .find("database is locked"),
              std::string::npos);
    EXPECT_TRUE(browser.evaluate("document.body.dataset.ready").is_null());

    // Not JSON: recorded too.
    agent.fail("/api/dashboard/summary", 200, "<html>proxy error</html>");
    browser.navigate(agent.url("/"));
    ASSERT_TRUE(browser.wait_for("document.body.dataset.errors.includes('not JSON')", 20s))
        << page_state(browser);

    // One chart failing: the rest render, the page is not "ready", and the figure says why.
    agent.fail("/api/dashboard/summary", 0, "");
    agent.fail("/charts/gpu/power.svg", 503, "sampler not running");
    browser.navigate(agent.url("/"));
    ASSERT_TRUE(browser.wait_for("document.body.dataset.errors.includes('power.svg')", 20s))
        << page_state(browser);
    EXPECT_TRUE(browser.wait_for("document.querySelectorAll('#charts svg').length === 3", 5s))
        << page_state(browser);
    EXPECT_NE(browser.evaluate("document.querySelector('[data-metric=\"power\"]').textContent")
                  .get<std::string>()
                  .find("chart unavailable"),
              std::string::npos);
    EXPECT_TRUE(browser.evaluate("document.body.dataset.ready").is_null());

    // Script errors and rejected promises land in the same record.
    browser.evaluate(
        "setTimeout(() => { throw new Error('boom from a timer'); }, 0); "
        "Promise.reject(new Error('nobody caught me')); true");
    EXPECT_TRUE(
        browser.wait_for("document.body.dataset.errors.includes('boom from a timer') && "
                         "document.body.dataset.errors.includes('nobody caught me')",
                         5s))
        << page_state(browser);
}

// The harness itself must see what it is used to rule out, or the tests above prove nothing.
TEST(ChromiumHarness, SeesConsoleErrorsAndExceptionsAndBoundsWaits) {
    MLK_REQUIRE_CHROMIUM();
    testing::TestServer server([](httplib::Server& s) {
        s.Get("/", [](const httplib::Request&, httplib::Response& res) {
            res.set_content(
                "<!doctype html><link rel=icon href='data:,'><body><script>"
                "console.error('bad thing', 42); console.log('fine');"
                "setTimeout(() => { null.x; }, 10);"
                "setTimeout(() => { document.body.dataset.done = '1'; }, 50);"
                "</script></body>",
                "text/html");
        });
    });
    Chromium browser;
    browser.navigate(server.url("/"));
    ASSERT_TRUE(browser.wait_for("document.body.dataset.done === '1'", 10s));
    const auto errors = browser.errors();
    ASSERT_EQ(errors.size(), 2u) << testing::describe(browser.console());
    EXPECT_EQ(errors[0].source, "console");
    EXPECT_EQ(errors[0].text, "bad thing 42");
    EXPECT_EQ(errors[1].source, "exception");
    EXPECT_NE(errors[1].text.find("TypeError"), std::string::npos) << errors[1].text;
    EXPECT_NE(browser.dom().find("data-done=\"1\""), std::string::npos);

    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(browser.wait_for("false", 300ms));
    EXPECT_FALSE(browser.wait_for("undefined.property", 100ms));  // a throw counts as false
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_THROW(browser.evaluate("undefined.property"), std::runtime_error);

    testing::RefusingPort closed;
    EXPECT_THROW(browser.navigate("http://127.0.0.1:" + std::to_string(closed.port()) + "/", 5s),
                 std::runtime_error);
}

// A "browser" that never answers must cost the command limit, not a hung test, and take its
// children with it.
TEST(ChromiumHarness, KillsABrowserThatDoesNotAnswer) {
    testing::TempDir dir;
    const auto pid_file = dir / "child.pid";
    const auto script = dir.write("fake-chromium", "#!/bin/sh\nsleep 60 &\necho $! > " +
                                                       pid_file.string() + "\nexec sleep 60\n");
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    testing::ChromiumOptions options;
    options.binary = script;
    options.command_limit = 500ms;
    const auto start = std::chrono::steady_clock::now();
    try {
        Chromium browser(options);
        ADD_FAILURE() << "a browser that never answers was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no answer in time"), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);

    // The shell's background child was in the browser's process group: killed too (at most a
    // zombie waiting for its new parent to reap it).
    std::ifstream in(pid_file);
    int child = 0;
    ASSERT_TRUE(in >> child) << "the fake browser did not start";
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
        std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
        std::string pid, comm, state;
        gone = !(stat >> pid >> comm >> state) || state == "Z";
        if (!gone) {
            std::this_thread::sleep_for(20ms);
        }
    }
    EXPECT_TRUE(gone) << "pid " << child << " outlived the browser";
}

TEST(ChromiumHarness, ABrowserThatExitsAtOnceFailsAtOnce) {
    testing::ChromiumOptions options;
    options.binary = "/bin/false";
    const auto start = std::chrono::steady_clock::now();
    try {
        Chromium browser(options);
        ADD_FAILURE() << "/bin/false was taken for a browser";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("closed the pipe"), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

}  // namespace
}  // namespace mlk::metrics
