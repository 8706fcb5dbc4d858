#include "mlkeeper/metrics/model_families.hpp"

#include <map>
#include <string>

namespace mlk::metrics {
namespace {

using core::MetricType;

constexpr homelab::ModelState kStates[] = {
    homelab::ModelState::kStopped, homelab::ModelState::kStarting, homelab::ModelState::kRunning,
    homelab::ModelState::kStopping, homelab::ModelState::kFailed};
constexpr homelab::StatusClass kClasses[] = {homelab::StatusClass::k2xx, homelab::StatusClass::k3xx,
                                             homelab::StatusClass::k4xx, homelab::StatusClass::k5xx,
                                             homelab::StatusClass::kNone};

std::map<std::string, homelab::ModelActivity> activity_by_name(
    const homelab::ActivityTracker* activity) {
    std::map<std::string, homelab::ModelActivity> out;
    if (activity != nullptr) {
        for (auto& a : activity->all()) {
            out.emplace(a.name, a);
        }
    }
    return out;
}

std::optional<double> idle_seconds(const homelab::ModelActivity* a,
                                   std::chrono::system_clock::time_point now) {
    if (a == nullptr || !a->last_request) {
        return std::nullopt;
    }
    if (a->in_flight > 0) {
        return 0.0;
    }
    return std::max(0.0, std::chrono::duration<double>(now - *a->last_request).count());
}

}  // namespace

void append_models(core::MetricsText& m, const homelab::ModelManager& models,
                   const homelab::ActivityTracker* activity,
                   std::chrono::system_clock::time_point now) {
    m.family("mlkeeper_model_state", MetricType::kGauge,
             "1 for the model's current state (stopped, starting, running, stopping, failed)");
    m.family("mlkeeper_model_restarts_total", MetricType::kCounter,
             "Automatic restarts after a crash plus restart calls");
    m.family("mlkeeper_model_requests_total", MetricType::kCounter,
             "Requests to the model by status class (none: no answer)");
    m.family("mlkeeper_model_in_flight_requests", MetricType::kGauge,
             "Requests to the model being answered now");
    m.family("mlkeeper_model_idle_seconds", MetricType::kGauge,
             "Seconds since the model's last request finished (0 while one is in flight)");
    const auto counts = activity_by_name(activity);
    for (const auto& info : models.list()) {
        const core::Labels id = {{"model", info.name}};
        for (auto s : kStates) {
            m.sample("mlkeeper_model_state",
                     {{"model", info.name}, {"state", std::string(to_string(s))}},
                     info.state == s ? 1 : 0);
        }
        m.sample("mlkeeper_model_restarts_total", id, info.restarts);
        const auto it = counts.find(info.name);
        const homelab::ModelActivity* a = it == counts.end() ? nullptr : &it->second;
        if (a == nullptr) {
            continue;
        }
        for (auto c : kClasses) {
            m.sample("mlkeeper_model_requests_total",
                     {{"model", info.name}, {"code", std::string(to_string(c))}},
                     static_cast<double>(a->by_status[static_cast<std::size_t>(c)]));
        }
        m.sample("mlkeeper_model_in_flight_requests", id, static_cast<double>(a->in_flight));
        if (auto idle = idle_seconds(a, now)) {
            m.sample("mlkeeper_model_idle_seconds", id, *idle);
        }
    }
}

nlohmann::json models_json(const homelab::ModelManager& models,
                           const homelab::ActivityTracker* activity,
                           std::chrono::system_clock::time_point now) {
    const auto counts = activity_by_name(activity);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& info : models.list()) {
        const auto it = counts.find(info.name);
        const homelab::ModelActivity* a = it == counts.end() ? nullptr : &it->second;
        const auto idle = idle_seconds(a, now);
        out.push_back({{"name", info.name},
                       {"state", std::string(to_string(info.state))},
                       {"requests", a != nullptr ? a->requests : 0},
                       {"in_flight", a != nullptr ? a->in_flight : 0},
                       {"idle_seconds", idle ? nlohmann::json(*idle) : nlohmann::json(nullptr)}});
    }
    return out;
}

}  // namespace mlk::metrics
