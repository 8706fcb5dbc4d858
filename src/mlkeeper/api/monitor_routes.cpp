#include "mlkeeper/api/monitor_routes.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::api {
namespace {

using homelab::SysTime;
using nlohmann::json;

constexpr std::chrono::seconds kMinWindow{1};
constexpr std::chrono::seconds kMaxWindow = homelab::kActivityHistory;

json time_or_null(const std::optional<SysTime>& t) {
    return t ? json(util::iso8601_utc(*t)) : json();
}

double seconds_of(std::chrono::microseconds us) {
    return static_cast<double>(us.count()) / 1e6;
}

// name -> the manager's view, for the state and running-since of each model.
std::map<std::string, homelab::ModelInfo> infos_by_name(const homelab::ModelManager& models) {
    std::map<std::string, homelab::ModelInfo> out;
    for (auto& info : models.list()) {
        out.emplace(info.name, std::move(info));
    }
    return out;
}

json state_of(const std::map<std::string, homelab::ModelInfo>& infos, const std::string& name) {
    const auto it = infos.find(name);
    return it == infos.end() ? json() : json(std::string(homelab::to_string(it->second.state)));
}

Response active_models(const Request& req, homelab::ActivityTracker& activity,
                       homelab::ModelManager& models) {
    const auto it = req.query.find("window");
    const auto window = it == req.query.end() ? kDefaultActiveWindow : parse_window(it->second);
    const auto infos = infos_by_name(models);
    json arr = json::array();
    for (const auto& a : activity.active(window)) {
        arr.push_back({{"name", a.name},
                       {"requests", a.requests},
                       {"last_request", time_or_null(a.last_request)},
                       {"in_flight", a.in_flight},
                       {"state", state_of(infos, a.name)}});
    }
    Response resp;
    resp.body = {{"window_seconds", window.count()}, {"models", std::move(arr)}};
    return resp;
}

Response all_activity(homelab::ActivityTracker& activity, homelab::ModelManager& models) {
    const auto infos = infos_by_name(models);
    const SysTime now = activity.now();
    json arr = json::array();
    for (const auto& m : activity.all()) {
        json status = json::object();
        for (std::size_t i = 0; i < homelab::kStatusClasses; ++i) {
            status[std::string(homelab::to_string(static_cast<homelab::StatusClass>(i)))] =
                m.by_status[i];
        }
        json buckets = json::array();
        for (std::size_t i = 0; i < homelab::kLatencyBuckets; ++i) {
            buckets.push_back(
                {{"le_ms", i < homelab::kLatencyBoundsMs.size() ? json(homelab::kLatencyBoundsMs[i])
                                                                : json()},
                 {"count", m.latency_buckets[i]}});
        }
        // Idle since the last request, or since the model started running if that is later:
        // what the idle reaper measures. null when neither is known.
        std::optional<SysTime> idle_since = m.last_request;
        const auto info = infos.find(m.name);
        if (info != infos.end() && info->second.state == homelab::ModelState::kRunning &&
            (!idle_since || info->second.since > *idle_since)) {
            idle_since = info->second.since;
        }
        json idle;
        if (m.in_flight > 0) {
            idle = 0;
        } else if (idle_since) {
            idle = std::max<std::int64_t>(
                std::chrono::floor<std::chrono::seconds>(now - *idle_since).count(), 0);
        }
        arr.push_back({
            {"name", m.name},
            {"state", state_of(infos, m.name)},
            {"requests", m.requests},
            {"status", std::move(status)},
            {"bytes_in", m.bytes_in},
            {"bytes_out", m.bytes_out},
            {"latency",
             {{"sum_seconds", seconds_of(m.latency_sum)},
              {"mean_ms", m.requests == 0 ? json()
                                          : json(static_cast<double>(m.latency_sum.count()) / 1e3 /
                                                 static_cast<double>(m.requests))},
              {"buckets", std::move(buckets)}}},
            {"in_flight", m.in_flight},
            {"last_request", time_or_null(m.last_request)},
            {"idle_seconds", std::move(idle)},
        });
    }
    Response resp;
    resp.body = {{"models", std::move(arr)}, {"dropped", activity.dropped()}};
    return resp;
}

Response reaper_status(const homelab::IdleReaper* reaper, homelab::ModelManager& models) {
    Response resp;
    if (reaper == nullptr) {
        resp.body = {{"enabled", false},
                     {"interval_seconds", nullptr},
                     {"last_run", nullptr},
                     {"models", json::array()},
                     {"recent_stops", json::array()}};
        return resp;
    }
    json ms = json::array();
    for (const auto& info : models.list()) {
        const auto timeout = reaper->timeout_of(info.name);
        ms.push_back({{"name", info.name},
                      {"pinned", info.pinned},
                      {"idle_timeout_seconds", timeout ? json(timeout->count()) : json()}});
    }
    json stops = json::array();
    for (const auto& s : reaper->recent()) {
        stops.push_back({{"name", s.name},
                         {"at", util::iso8601_utc(s.at)},
                         {"reason", s.reason},
                         {"idle_seconds", s.idle.count()},
                         {"idle_timeout_seconds", s.idle_timeout.count()},
                         {"error", s.error ? json(*s.error) : json()}});
    }
    resp.body = {
        {"enabled", true},
        {"interval_seconds",
         std::chrono::duration_cast<std::chrono::seconds>(reaper->settings().interval).count()},
        {"last_run", time_or_null(reaper->last_run())},
        {"models", std::move(ms)},
        {"recent_stops", std::move(stops)},
    };
    return resp;
}

}  // namespace

std::chrono::seconds parse_window(std::string_view text) {
    std::chrono::seconds w{0};
    try {
        w = util::parse_duration(text);
    } catch (const std::invalid_argument&) {
        throw ApiError(
            400, "bad_request",
            "window must be a duration such as 30s, 10m or 2h, not " + homelab::quote_name(text));
    }
    if (w < kMinWindow || w > kMaxWindow) {
        throw ApiError(400, "bad_request",
                       "window must be 1s..24h, not " + homelab::quote_name(text));
    }
    return w;
}

void add_monitor_routes(Router& router, homelab::ActivityTracker& activity,
                        homelab::IdleReaper* reaper, homelab::ModelManager& models) {
    router.add(Route{
        "GET", "/models/active", Access::kRead, RouteGroup::kMonitor, Audit::kNo,
        [&activity, &models](const Request& req) { return active_models(req, activity, models); }});
    router.add(
        Route{"GET", "/activity", Access::kRead, RouteGroup::kMonitor, Audit::kNo,
              [&activity, &models](const Request&) { return all_activity(activity, models); }});
    router.add(Route{"GET", "/reaper", Access::kRead, RouteGroup::kMonitor, Audit::kNo,
                     [reaper, &models](const Request&) { return reaper_status(reaper, models); }});
}

}  // namespace mlk::api
