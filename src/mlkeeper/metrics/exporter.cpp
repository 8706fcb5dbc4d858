#include "mlkeeper/metrics/exporter.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <memory>
#include <utility>

#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/core/version.hpp"
#include "mlkeeper/health/report.hpp"
#include "mlkeeper/metrics/dashboard_page.hpp"
#include "mlkeeper/metrics/gpu_collector.hpp"
#include "mlkeeper/metrics/gpu_history.hpp"
#include "mlkeeper/metrics/health_collector.hpp"
#include "mlkeeper/metrics/model_families.hpp"
#include "mlkeeper/metrics/svg_chart.hpp"
#include "mlkeeper/sched/schedule.hpp"
#include "mlkeeper/util/host.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::metrics {
namespace {

using core::MetricType;
using Clock = std::chrono::system_clock;

constexpr std::size_t kRecentBackups = 10;
constexpr std::size_t kRecentAlerts = 20;

double unix_seconds(Clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

template <class T>
nlohmann::json opt_num(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json gpus_json(const GpuReading& r) {
    nlohmann::json out = nlohmann::json::array();
    if (!r.snapshot) {
        return out;
    }
    for (const auto& g : r.snapshot->gpus) {
        nlohmann::json findings = nlohmann::json::array();
        for (const auto& f : r.judgement.findings) {
            if (f.gpu == g.index && f.level != gpu::Level::kOk) {
                findings.push_back(f.summary);
            }
        }
        out.push_back({{"id", g.index},
                       {"name", g.name},
                       {"uuid", g.uuid},
                       {"temp", opt_num(g.temperature_c)},
                       {"util_gpu", opt_num(g.util_gpu_pct)},
                       {"mem_used_bytes", opt_num(g.mem_used_bytes)},
                       {"mem_total_bytes", opt_num(g.mem_total_bytes)},
                       {"power_draw_w", opt_num(g.power_draw_w)},
                       {"power_limit_w", opt_num(g.power_limit_w)},
                       {"status", std::string(gpu::to_string(r.judgement.gpu_level(g.index)))},
                       {"findings", findings}});
    }
    return out;
}

nlohmann::json health_json(const HealthReading& r) {
    nlohmann::json checks = nlohmann::json::array();
    if (!r.report) {
        return {{"at", nullptr}, {"score", nullptr}, {"checks", checks}};
    }
    const auto j = health::to_json(*r.report);
    for (const auto& c : j["checks"]) {
        checks.push_back(
            {{"check", c["check"]}, {"status", c["status"]}, {"message", c["message"]}});
    }
    return {{"at", util::iso8601_utc(r.report->time)},
            {"score", j["summary"]["health_score"]},
            {"checks", checks}};
}

struct ChartKind {
    std::string_view file;
    std::string_view title;
    std::string_view unit;
};
constexpr std::array<ChartKind, 4> kCharts = {{{"temp.svg", "Temperature", "°C"},
                                               {"util.svg", "Utilization", "%"},
                                               {"memory.svg", "Memory used", "GiB"},
                                               {"power.svg", "Power draw", "W"}}};

std::chrono::seconds parse_range(std::string_view range) {
    if (range == "1h") {
        return std::chrono::hours(1);
    }
    if (range == "24h" || range == "1d") {
        return std::chrono::hours(24);
    }
    if (range == "7d") {
        return std::chrono::hours(24 * 7);
    }
    throw api::ApiError(400, "bad_request", "range must be 1h, 24h or 7d");
}

}  // namespace

Exporter::Exporter(ExporterSources sources) : src_(std::move(sources)), db_(src_.state_db) {}

std::string Exporter::metrics_text() {
    const auto t0 = std::chrono::steady_clock::now();
    core::MetricsText m;
    m.family("mlkeeper_build_info", MetricType::kGauge,
             "mlkeeper's version and git revision (always 1)");
    m.family("mlkeeper_agent_start_time_seconds", MetricType::kGauge,
             "When the agent started (Unix time)");
    m.family("mlkeeper_agent_uptime_seconds", MetricType::kGauge,
             "Seconds since the agent started");
    const auto now = Clock::now();
    m.sample("mlkeeper_build_info", {{"version", core::version()}, {"revision", core::revision()}},
             1);
    m.sample("mlkeeper_agent_start_time_seconds", unix_seconds(src_.started));
    m.sample("mlkeeper_agent_uptime_seconds",
             std::chrono::duration<double>(now - src_.started).count());
    {
        std::lock_guard<std::mutex> lock(db_mu_);
        // A family that cannot be read is left out; the others still come.
        for (auto part : {&HistoryFamilies::append_backup, &HistoryFamilies::append_cleanup,
                          &HistoryFamilies::append_jobs, &HistoryFamilies::append_alerts}) {
            try {
                (db_.*part)(m);
            } catch (const std::exception& e) {
                spdlog::warn("metrics: cannot read the state database: {}", e.what());
            }
        }
    }
    if (src_.models != nullptr) {
        append_models(m, *src_.models, src_.activity, now);
    }
    std::string text = m.str();
    if (src_.gpus != nullptr) {
        text += src_.gpus->latest()->prometheus;
    }
    if (src_.health != nullptr) {
        text += src_.health->latest()->prometheus;
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    core::MetricsText tail;
    tail.family("mlkeeper_scrape_duration_seconds", MetricType::kGauge,
                "How long the agent took to gather this answer");
    tail.sample("mlkeeper_scrape_duration_seconds", took);
    return text + tail.str();
}

nlohmann::json Exporter::summary() {
    const auto now = Clock::now();
    nlohmann::json out = {
        {"host", util::host_name()},
        {"version", core::version()},
        {"generated_at", util::iso8601_utc(now)},
        {"uptime_seconds", std::chrono::duration<double>(now - src_.started).count()},
        {"gpus", src_.gpus != nullptr ? gpus_json(*src_.gpus->latest()) : nlohmann::json::array()},
        {"health", src_.health != nullptr ? health_json(*src_.health->latest())
                                          : nlohmann::json{{"at", nullptr},
                                                           {"score", nullptr},
                                                           {"checks", nlohmann::json::array()}}},
        {"models", src_.models != nullptr ? models_json(*src_.models, src_.activity, now)
                                          : nlohmann::json::array()}};
    nlohmann::json jobs;
    {
        std::lock_guard<std::mutex> lock(db_mu_);
        out["backups"] = db_.recent_backups(kRecentBackups);
        out["alerts"] = db_.alerts(kRecentAlerts);
        jobs = db_.jobs();
    }
    // Every scheduled job, run or not yet, with its next elapse.
    nlohmann::json schedule = nlohmann::json::array();
    const auto at = std::chrono::time_point_cast<std::chrono::microseconds>(now);
    for (const auto& spec : src_.jobs) {
        nlohmann::json row = {{"job", spec.name},
                              {"next", nullptr},
                              {"last", nullptr},
                              {"last_outcome", nullptr},
                              {"last_duration_seconds", nullptr},
                              {"running", false}};
        for (const auto& j : jobs) {
            if (j["job"] == spec.name) {
                for (const char* k : {"last", "last_outcome", "last_duration_seconds", "running"}) {
                    row[k] = j[k];
                }
            }
        }
        try {
            if (auto next =
                    sched::Schedule::parse(spec.schedule_kind, spec.schedule).next_after(at)) {
                row["next"] =
                    util::iso8601_utc(std::chrono::time_point_cast<Clock::duration>(*next));
            }
        } catch (const std::exception&) {
            // A schedule the agent could not parse is reported by the agent itself.
        }
        schedule.push_back(std::move(row));
    }
    out["schedule"] = std::move(schedule);
    return out;
}

std::string Exporter::chart_svg(std::string_view chart, std::string_view range) {
    const ChartKind* kind = nullptr;
    for (const auto& k : kCharts) {
        if (k.file == chart) {
            kind = &k;
        }
    }
    if (kind == nullptr) {
        throw api::ApiError(404, "not_found", "charts: temp.svg, util.svg, memory.svg, power.svg");
    }
    const auto span = parse_range(range);
    const auto to = Clock::now();
    const auto from = to - span;
    ChartSpec spec;
    spec.title = std::string(kind->title);
    spec.unit = std::string(kind->unit);
    spec.t0 = std::chrono::duration_cast<std::chrono::seconds>(from.time_since_epoch()).count();
    spec.t1 = std::chrono::duration_cast<std::chrono::seconds>(to.time_since_epoch()).count();
    if (kind->file == "util.svg") {
        spec.y_min = 0;
        spec.y_max = 100;
    } else {
        spec.y_min = 0;
    }
    std::vector<ChartSeries> series;
    if (src_.history != nullptr) {
        const auto q = src_.history->query(from, to);
        for (const auto& g : q.gpus) {
            ChartSeries s;
            s.label = "GPU " + std::to_string(g.gpu);
            s.t = g.t;
            const auto& values = kind->file == "temp.svg"     ? g.temp_c
                                 : kind->file == "util.svg"   ? g.util_ratio
                                 : kind->file == "memory.svg" ? g.mem_used_bytes
                                                              : g.power_w;
            const double scale = kind->file == "util.svg"     ? 100.0
                                 : kind->file == "memory.svg" ? 1.0 / (1ULL << 30)
                                                              : 1.0;
            for (const auto& v : values) {
                s.v.push_back(v ? std::optional<double>(*v * scale) : std::nullopt);
            }
            series.push_back(std::move(s));
        }
    }
    return render_line_chart(spec, series);
}

void Exporter::add_routes(api::Router& router) {
    using api::Access;
    using api::Audit;
    using api::Response;
    using api::Route;
    using api::RouteGroup;
    router.add(Route{"GET", "/metrics", Access::kRead, RouteGroup::kMetrics, Audit::kNo,
                     [this](const api::Request&) {
                         Response r;
                         r.raw_body = std::make_shared<const std::string>(metrics_text());
                         r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                         return r;
                     }});
    router.add(Route{"GET", "/", Access::kPublic, RouteGroup::kMetrics, Audit::kNo,
                     [](const api::Request&) {
                         Response r;
                         r.raw_body = std::make_shared<const std::string>(dashboard_html());
                         r.content_type = "text/html; charset=utf-8";
                         r.headers.emplace_back("Cache-Control", "no-cache");
                         return r;
                     }});
    router.add(Route{"GET", "/api/dashboard/summary", Access::kRead, RouteGroup::kMetrics,
                     Audit::kNo, [this](const api::Request&) {
                         Response r;
                         r.body = summary();
                         return r;
                     }});
    router.add(Route{"GET", "/charts/gpu/{chart}", Access::kRead, RouteGroup::kMetrics, Audit::kNo,
                     [this](const api::Request& req) {
                         Response r;
                         r.raw_body = std::make_shared<const std::string>(
                             chart_svg(req.params.at("chart"), req.query_or("range", "1h")));
                         r.content_type = "image/svg+xml";
                         return r;
                     }});
}

}  // namespace mlk::metrics
