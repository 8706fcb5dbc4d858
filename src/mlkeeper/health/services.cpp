#include "mlkeeper/health/services.hpp"

#include <systemd/sd-bus.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include <fmt/format.h>

namespace mlk::health {
namespace {

struct BusUnref {
    void operator()(sd_bus* b) const { sd_bus_flush_close_unref(b); }
};
using BusPtr = std::unique_ptr<sd_bus, BusUnref>;

struct ErrorGuard {
    sd_bus_error e{};  // SD_BUS_ERROR_NULL is a C compound literal
    ~ErrorGuard() { sd_bus_error_free(&e); }
    std::string text(int r) const {
        return e.message ? std::string(e.message) : std::string(std::strerror(-r));
    }
};

std::string key_of(const std::string& service) {
    return "service_" + service;
}

// Opens the system bus, or the address given (tests, containers with a
// forwarded socket).
int open_bus(const std::string& address, BusPtr& out) {
    sd_bus* raw = nullptr;
    int r = 0;
    if (address.empty()) {
        r = sd_bus_open_system(&raw);
    } else {
        r = sd_bus_new(&raw);
        if (r >= 0) {
            out.reset(raw);
            r = sd_bus_set_address(raw, address.c_str());
            if (r >= 0)
                r = sd_bus_set_bus_client(raw, 1);
            if (r >= 0)
                r = sd_bus_start(raw);
            return r;
        }
    }
    out.reset(raw);
    return r;
}

int get_string_property(sd_bus* bus, const char* path, const char* name, std::string& out,
                        std::string& err) {
    ErrorGuard e;
    char* value = nullptr;
    int r = sd_bus_get_property_string(bus, "org.freedesktop.systemd1", path,
                                       "org.freedesktop.systemd1.Unit", name, &e.e, &value);
    if (r < 0) {
        err = e.text(r);
        return r;
    }
    out = value ? value : "";
    std::free(value);
    return r;
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
    BusPtr bus;
    int r = open_bus(env.system_bus_address, bus);
    if (r < 0) {
        const std::string where =
            env.system_bus_address.empty() ? "the system bus" : env.system_bus_address;
        for (const auto& s : services) {
            out.push_back(error_result("Service " + s, key_of(s), "service",
                                       fmt::format("cannot check {}: cannot connect to {}: {}", s,
                                                   where, std::strerror(-r))));
        }
        return out;
    }
    sd_bus_set_method_call_timeout(bus.get(), static_cast<std::uint64_t>(timeout.count()) * 1000);
    for (const auto& s : services) {
        const std::string unit = unit_name(s);
        ErrorGuard e;
        sd_bus_message* reply = nullptr;
        // LoadUnit (not GetUnit) so units that are not loaded still report
        // their LoadState (not-found) instead of an error.
        r = sd_bus_call_method(bus.get(), "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "LoadUnit", &e.e, &reply, "s",
                               unit.c_str());
        std::string path;
        if (r >= 0) {
            const char* p = nullptr;
            r = sd_bus_message_read(reply, "o", &p);
            if (r >= 0 && p)
                path = p;
        }
        sd_bus_message_unref(reply);
        if (r < 0) {
            out.push_back(error_result("Service " + s, key_of(s), "service",
                                       fmt::format("cannot load unit {}: {}", unit, e.text(r))));
            continue;
        }
        std::string load, active, sub, err;
        if (get_string_property(bus.get(), path.c_str(), "LoadState", load, err) < 0 ||
            get_string_property(bus.get(), path.c_str(), "ActiveState", active, err) < 0 ||
            get_string_property(bus.get(), path.c_str(), "SubState", sub, err) < 0) {
            out.push_back(error_result("Service " + s, key_of(s), "service",
                                       fmt::format("cannot read state of {}: {}", unit, err)));
            continue;
        }
        out.push_back(grade_unit(s, load, active, sub));
    }
    return out;
}

}  // namespace mlk::health
