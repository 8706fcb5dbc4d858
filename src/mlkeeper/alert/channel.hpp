// A way to deliver alerts (email, webhook, syslog, journald, command). Each
// channel sends one alert once; retries, timeouts between attempts and
// fan-out live in the dispatcher. send() must return within the channel's
// own timeout and throw ChannelError with the exact reason on failure.
// Thread safety: send() may be called from several threads at once.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "mlkeeper/alert/alert.hpp"

namespace mlk::alert {

class ChannelError : public std::runtime_error {
  public:
    enum class Kind { kTransient, kPermanent };  // transient: worth retrying
    ChannelError(Kind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
    Kind kind() const { return kind_; }

  private:
    Kind kind_;
};

class Channel {
  public:
    virtual ~Channel() = default;
    virtual std::string name() const = 0;  // "email", "webhook", "syslog", "journal", "command"
    virtual void send(const Alert& alert) = 0;
};

// Plain-text rendering shared by channels: subject line and body.
std::string subject_line(const Alert& a);  // "[mlkeeper CRITICAL] host: summary"
std::string text_body(
    const Alert& a);  // host, time, severity, check, value, threshold, action, fields

}  // namespace mlk::alert
