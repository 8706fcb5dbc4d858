#include "mlkeeper/health/services.hpp"

#include <cstring>

#include <fmt/format.h>

#include "mlkeeper/util/sd_bus.hpp"

namespace mlk::health {
namespace {

std::string key_of(const std::string& service) {
    return "service_" + service;
}

}  // namespace

std::string unit_name(const std::string& service) {
    static constexpr std::string_view kSuffixes[] = {".service", ".socket", ".timer", ".target",
                                                     ".mount",   ".path",   ".scope", ".slice"};
    for (auto s : kSuffixes) {
        if (service.size() > s.size() && service.ends_with(s)) {
            return service;
        }
    }
    return service + ".service";
}

CheckResult grade_unit(const std::string& service, const std::string& load_state,
                       const std::string& active_state, const std::string& sub_state) {
    CheckResult r;
    r.check = "Service " + service;
    r.key = key_of(service);
    r.category = "service";
    r.unit = "";
    if (load_state == "not-found") {
        r.status = Status::kFail;
        r.message = fmt::format("Service {}: unit {} not found", service, unit_name(service));
    } else if (active_state == "active") {
        r.message = fmt::format("Service {}: active ({})", service, sub_state);
    } else if (active_state == "activating" || active_state == "reloading") {
        r.status = Status::kWarn;
        r.message = fmt::format("Service {}: {} ({})", service, active_state, sub_state);
    } else {
        r.status = Status::kFail;
        r.message =
            fmt::format("Service {}: {} ({}) - not running", service, active_state, sub_state);
    }
    r.value = r.status == Status::kPass ? 1 : 0;
    r.metrics.push_back({"service_active",
                         {{"unit", unit_name(service)}},
                         active_state == "active" ? 1.0 : 0.0,
                         "1 while the systemd unit's ActiveState is active"});
    return r;
}

std::vector<CheckResult> check_services(const HealthEnv& env,
                                        const std::vector<std::string>& services,
                                        std::chrono::milliseconds timeout) {
    std::vector<CheckResult> out;
    if (services.empty()) {
        return out;
    }
    std::error_code ec;
    if (!std::filesystem::exists(env.run_root / "systemd/system", ec)) {
        for (const auto& s : services) {
            out.push_back(skipped_result("Service " + s, key_of(s), "service",
                                         "systemd not running: cannot check " + s));
        }
        return out;
    }
    util::BusPtr bus;
    try {
        bus = util::open_system_bus(env.system_bus_address);
    } catch (const std::system_error& e) {
        const std::string where =
            env.system_bus_address.empty() ? "the system bus" : env.system_bus_address;
        for (const auto& s : services) {
            out.push_back(error_result("Service " + s, key_of(s), "service",
                                       fmt::format("cannot check {}: cannot connect to {}: {}", s,
                                                   where, std::strerror(e.code().value()))));
        }
        return out;
    }
    util::set_call_timeout(bus.get(), timeout);
    constexpr const char* kSystemd = "org.freedesktop.systemd1";
    constexpr const char* kUnit = "org.freedesktop.systemd1.Unit";
    for (const auto& s : services) {
        const std::string unit = unit_name(s);
        std::string path;
        try {
            // LoadUnit (not GetUnit) so units that are not loaded still report
            // their LoadState (not-found) instead of an error.
            const auto reply = util::call_method(bus.get(), kSystemd, "/org/freedesktop/systemd1",
                                                 "org.freedesktop.systemd1.Manager", "LoadUnit",
                                                 "s", unit.c_str());
            path = util::read_object_path(reply.get());
        } catch (const util::BusError& e) {
            out.push_back(error_result("Service " + s, key_of(s), "service",
                                       fmt::format("cannot load unit {}: {}", unit, e.message())));
            continue;
        }
        std::string load, active, sub;
        try {
            load = util::get_property_string(bus.get(), kSystemd, path.c_str(), kUnit, "LoadState");
            active =
                util::get_property_string(bus.get(), kSystemd, path.c_str(), kUnit, "ActiveState");
            sub = util::get_property_string(bus.get(), kSystemd, path.c_str(), kUnit, "SubState");
        } catch (const util::BusError& e) {
            out.push_back(
                error_result("Service " + s, key_of(s), "service",
                             fmt::format("cannot read state of {}: {}", unit, e.message())));
            continue;
        }
        out.push_back(grade_unit(s, load, active, sub));
    }
    return out;
}

}  // namespace mlk::health
