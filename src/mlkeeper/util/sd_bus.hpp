// A small RAII layer over sd-bus (libsystemd) shared by the services health check, the systemd
// model backend and the tests' fake systemd: owned connections, messages and slots, an error
// guard, connecting to a bus, method calls and property reads that throw BusError.
// Thread safety: one sd_bus connection (and everything made from it) must be used by one thread at
// a time; the functions here keep no state, so separate connections may be used concurrently.
#pragma once

#include <systemd/sd-bus.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

namespace mlk::util {

struct BusUnref {
    void operator()(sd_bus* b) const noexcept { sd_bus_flush_close_unref(b); }
};
using BusPtr = std::unique_ptr<sd_bus, BusUnref>;

struct BusMessageUnref {
    void operator()(sd_bus_message* m) const noexcept { sd_bus_message_unref(m); }
};
using BusMessagePtr = std::unique_ptr<sd_bus_message, BusMessageUnref>;

// Dropping a slot removes what it stands for (a match, an object vtable).
struct BusSlotUnref {
    void operator()(sd_bus_slot* s) const noexcept { sd_bus_slot_unref(s); }
};
using BusSlotPtr = std::unique_ptr<sd_bus_slot, BusSlotUnref>;

// Owns the sd_bus_error of one call (SD_BUS_ERROR_NULL is a C compound literal, unusable here).
class BusErrorGuard {
  public:
    BusErrorGuard() = default;
    ~BusErrorGuard() { sd_bus_error_free(&error_); }
    BusErrorGuard(const BusErrorGuard&) = delete;
    BusErrorGuard& operator=(const BusErrorGuard&) = delete;

    sd_bus_error* get() { return &error_; }
    const sd_bus_error* get() const { return &error_; }
    // The D-Bus error name ("org.freedesktop.systemd1.NoSuchUnit"), or "" for a local failure.
    std::string name() const { return error_.name ? error_.name : ""; }
    // The peer's message, else strerror(-r) for a local failure (r: the negative errno returned).
    std::string text(int r) const;

  private:
    sd_bus_error error_{};
};

// A call that failed: code() holds the errno (sd-bus maps D-Bus errors to one), error_name() the
// D-Bus error name; sd-bus names its own failures too (org.freedesktop.DBus.Error.Timeout, and
// .Disconnected when the connection is lost), so it is "" only where no reply was involved.
// message() is the peer's text or strerror; what() is "<what>: <message>".
class BusError : public std::system_error {
  public:
    BusError(int r, const BusErrorGuard& e, const std::string& what);
    const std::string& error_name() const noexcept { return name_; }
    const std::string& message() const noexcept { return message_; }
    const char* what() const noexcept override { return what_.c_str(); }

  private:
    std::string name_, message_, what_;
};

// Connects to the system bus as a client: an empty address is sd_bus_open_system() (which honours
// DBUS_SYSTEM_BUS_ADDRESS, else /run/dbus/system_bus_socket); any other is used as given
// ("unix:path=/run/x/bus"). Throws std::system_error (errno, "cannot connect to <where>") when
// the bus cannot be reached; protocol problems (authentication) surface on the first call.
BusPtr open_system_bus(const std::string& address = {});
// The calling user's bus (systemd --user): DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus.
// Throws std::system_error like open_system_bus().
BusPtr open_user_bus();

// Bounds every blocking call made on `bus` (sd-bus's default is 25 s).
void set_call_timeout(sd_bus* bus, std::chrono::microseconds timeout);

// sd_bus_call_method() that throws BusError("<member>: ...") instead of returning an error.
template <class... Args>
BusMessagePtr call_method(sd_bus* bus, const char* destination, const char* path,
                          const char* interface, const char* member, const char* types,
                          Args... args) {
    BusErrorGuard e;
    sd_bus_message* reply = nullptr;
    const int r = sd_bus_call_method(bus, destination, path, interface, member, e.get(), &reply,
                                     types, args...);
    if (r < 0) {
        throw BusError(r, e, member);
    }
    return BusMessagePtr(reply);
}

// Reads one object path ("o") from a reply, e.g. that of GetUnit or StartUnit. Throws BusError.
std::string read_object_path(sd_bus_message* reply);

// Property getters (org.freedesktop.DBus.Properties.Get); throw BusError("<member>: ...").
std::string get_property_string(sd_bus* bus, const char* destination, const char* path,
                                const char* interface, const char* member);
std::uint32_t get_property_u32(sd_bus* bus, const char* destination, const char* path,
                               const char* interface, const char* member);
std::int32_t get_property_i32(sd_bus* bus, const char* destination, const char* path,
                              const char* interface, const char* member);

}  // namespace mlk::util
