#include "mlkeeper/api/shutdown_routes.hpp"

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace mlk::api {
namespace {

using homelab::ScheduleResult;

std::string rfc3339(homelab::SysTime t) {
    const auto secs = std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
    const auto tt = static_cast<std::time_t>(secs);
    std::tm tm{};
    if (::gmtime_r(&tt, &tm) == nullptr) {
        throw std::system_error(errno, std::generic_category(),
                                "gmtime_r of " + std::to_string(secs));
    }
    char buf[32];
    const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf, n);
}

[[noreturn]] void bad_request(const std::string& message) {
    throw ApiError(400, "bad_request", message);
}

// The POST body's fields after type checks; ranges are the service's business.
struct ScheduleBody {
    std::int64_t delay_minutes = 0;
    bool delay_too_large = false;  // beyond int64: out of range, not a type error
    std::string reason;
    bool replace = false;
};

ScheduleBody parse_schedule_body(const std::string& text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        bad_request("the body is not valid JSON; send {\"delay_minutes\": N}");
    }
    if (!j.is_object()) {
        bad_request("the body must be a JSON object such as {\"delay_minutes\": 30}");
    }
    for (const auto& item : j.items()) {
        const auto& k = item.key();
        if (k != "delay_minutes" && k != "reason" && k != "replace") {
            bad_request(fmt::format("unknown field \"{}\"; expected delay_minutes, reason, replace",
                                    k.substr(0, 64)));
        }
    }
    ScheduleBody b;
    if (!j.contains("delay_minutes")) {
        bad_request("delay_minutes is required");
    }
    const auto& d = j.at("delay_minutes");
    if (!d.is_number_integer()) {
        bad_request("delay_minutes must be an integer number of minutes");
    }
    if (d.is_number_unsigned() &&
        d.get<std::uint64_t>() >
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        b.delay_too_large = true;
    } else {
        b.delay_minutes = d.get<std::int64_t>();
    }
    if (j.contains("reason") && !j.at("reason").is_null()) {
        if (!j.at("reason").is_string()) {
            bad_request("reason must be a string");
        }
        b.reason = j.at("reason").get<std::string>();
    }
    if (j.contains("replace") && !j.at("replace").is_null()) {
        if (!j.at("replace").is_boolean()) {
            bad_request("replace must be true or false");
        }
        b.replace = j.at("replace").get<bool>();
    }
    return b;
}

Response post_shutdown(homelab::ShutdownService& service, const Request& req) {
    const auto body = parse_schedule_body(req.body);
    const auto max = service.settings().max_delay;
    if (body.delay_too_large || body.delay_minutes < 0 || body.delay_minutes > max.count()) {
        throw ApiError(400, "invalid",
                       fmt::format("delay_minutes must be between 0 and {} (shutdown.max_delay)",
                                   max.count()));
    }
    const std::chrono::minutes delay(body.delay_minutes);
    if (auto why = homelab::validate_request(delay, body.reason, max)) {
        throw ApiError(400, "invalid", *why);
    }
    ScheduleResult r;
    try {
        r = service.schedule(delay, body.reason, req.principal.empty() ? req.client : req.principal,
                             body.replace ? homelab::Replace::kYes : homelab::Replace::kNo);
    } catch (const std::invalid_argument& e) {
        throw ApiError(400, "invalid", e.what());
    }
    Response resp;
    switch (r.status) {
        case ScheduleResult::Status::kConflict:
            throw ApiError(409, "conflict",
                           fmt::format("a shutdown is already scheduled for {} (requested by {}); "
                                       "send \"replace\": true to replace it",
                                       rfc3339(r.shutdown.at), r.shutdown.requested_by));
        case ScheduleResult::Status::kScheduled:
            resp.status = 201;
            resp.body = {{"shutdown", shutdown_to_json(r.shutdown)}};
            break;
        case ScheduleResult::Status::kReplaced:
            resp.status = 200;
            resp.body = {{"shutdown", shutdown_to_json(r.shutdown)},
                         {"replaced", r.replaced ? shutdown_to_json(*r.replaced) : nullptr}};
            break;
    }
    return resp;
}

}  // namespace

nlohmann::json shutdown_to_json(const homelab::ScheduledShutdown& s) {
    return {
        {"at", rfc3339(s.at)},
        {"delay_minutes", s.delay.count()},
        {"reason", s.reason},
        {"requested_by", s.requested_by},
        {"created_at", rfc3339(s.created_at)},
    };
}

void add_shutdown_routes(Router& router, homelab::ShutdownService& service) {
    add_shutdown_routes(router, service, homelab::ProcReader());
}

void add_shutdown_routes(Router& router, homelab::ShutdownService& service,
                         homelab::ProcReader proc) {
    auto* svc = &service;
    router.add(Route{"POST", "/shutdown", Access::kAdmin, RouteGroup::kShutdown, Audit::kYes,
                     [svc](const Request& req) { return post_shutdown(*svc, req); }});
    router.add(Route{"DELETE", "/shutdown", Access::kAdmin, RouteGroup::kShutdown, Audit::kYes,
                     [svc](const Request&) {
                         auto old = svc->cancel();
                         if (!old) {
                             throw ApiError(404, "not_found", "no shutdown is scheduled");
                         }
                         Response r;
                         r.body = {{"cancelled", shutdown_to_json(*old)}};
                         return r;
                     }});
    router.add(Route{"GET", "/shutdown", Access::kRead, RouteGroup::kShutdown, Audit::kNo,
                     [svc](const Request&) {
                         auto cur = svc->current();
                         Response r;
                         r.body = {{"shutdown", cur ? shutdown_to_json(*cur) : nullptr}};
                         return r;
                     }});
    router.add(Route{"GET", "/uptime", Access::kRead, RouteGroup::kShutdown, Audit::kNo,
                     [proc = std::move(proc)](const Request&) {
                         const auto info = proc.uptime();  // a failure is a 500 "internal"
                         Response r;
                         r.body = {
                             {"uptime_seconds", info.uptime_seconds},
                             {"boot_time", rfc3339(info.boot_time)},
                             {"load_average",
                              {info.load_average[0], info.load_average[1], info.load_average[2]}},
                         };
                         return r;
                     }});
}

}  // namespace mlk::api
