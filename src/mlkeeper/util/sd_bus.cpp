#include "mlkeeper/util/sd_bus.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace mlk::util {
namespace {

// sd-bus returns negative errnos; the error text must not depend on errno's current value.
std::string errno_text(int r) {
    return std::strerror(r < 0 ? -r : r);
}

[[noreturn]] void throw_open_failure(int r, const std::string& where) {
    throw std::system_error(r < 0 ? -r : r, std::generic_category(), "cannot connect to " + where);
}

}  // namespace

std::string BusErrorGuard::text(int r) const {
    return error_.message ? std::string(error_.message) : errno_text(r);
}

BusError::BusError(int r, const BusErrorGuard& e, const std::string& what)
    : std::system_error(r < 0 ? -r : r, std::generic_category()),
      name_(e.name()),
      message_(e.text(r)),
      what_(what + ": " + message_) {}

BusPtr open_system_bus(const std::string& address) {
    sd_bus* raw = nullptr;
    if (address.empty()) {
        const int r = sd_bus_open_system(&raw);
        BusPtr bus(raw);
        if (r < 0) {
            throw_open_failure(r, "the system bus");
        }
        return bus;
    }
    int r = sd_bus_new(&raw);
    if (r < 0) {
        throw_open_failure(r, address);
    }
    BusPtr bus(raw);
    r = sd_bus_set_address(raw, address.c_str());
    if (r >= 0) {
        r = sd_bus_set_bus_client(raw, 1);
    }
    if (r >= 0) {
        r = sd_bus_start(raw);
    }
    if (r < 0) {
        throw_open_failure(r, address);
    }
    return bus;
}

BusPtr open_user_bus() {
    sd_bus* raw = nullptr;
    const int r = sd_bus_open_user(&raw);
    BusPtr bus(raw);
    if (r < 0) {
        throw_open_failure(r, "the user bus");
    }
    return bus;
}

void set_call_timeout(sd_bus* bus, std::chrono::microseconds timeout) {
    // 0 would mean sd-bus's default (25 s), not "no time at all".
    const auto us = std::max<std::int64_t>(timeout.count(), 1);
    sd_bus_set_method_call_timeout(bus, static_cast<std::uint64_t>(us));
}

std::string read_object_path(sd_bus_message* reply) {
    const char* p = nullptr;
    const int r = sd_bus_message_read(reply, "o", &p);
    if (r <= 0 || p == nullptr) {
        BusErrorGuard none;
        throw BusError(r < 0 ? r : -EBADMSG, none, "reading an object path from a reply");
    }
    return p;
}

std::string get_property_string(sd_bus* bus, const char* destination, const char* path,
                                const char* interface, const char* member) {
    BusErrorGuard e;
    char* value = nullptr;
    const int r =
        sd_bus_get_property_string(bus, destination, path, interface, member, e.get(), &value);
    if (r < 0) {
        throw BusError(r, e, member);
    }
    std::string out = value ? value : "";
    std::free(value);
    return out;
}

std::uint32_t get_property_u32(sd_bus* bus, const char* destination, const char* path,
                               const char* interface, const char* member) {
    BusErrorGuard e;
    std::uint32_t value = 0;
    const int r = sd_bus_get_property_trivial(bus, destination, path, interface, member, e.get(),
                                              'u', &value);
    if (r < 0) {
        throw BusError(r, e, member);
    }
    return value;
}

std::int32_t get_property_i32(sd_bus* bus, const char* destination, const char* path,
                              const char* interface, const char* member) {
    BusErrorGuard e;
    std::int32_t value = 0;
    const int r = sd_bus_get_property_trivial(bus, destination, path, interface, member, e.get(),
                                              'i', &value);
    if (r < 0) {
        throw BusError(r, e, member);
    }
    return value;
}

}  // namespace mlk::util
