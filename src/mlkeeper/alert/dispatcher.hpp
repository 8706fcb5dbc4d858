// Sends alerts: asks the state store whether an alert should go out
// (cooldown, escalation, recovery), then delivers it to every channel in
// parallel with retries and backoff. A dead channel costs at most its own
// timeout per attempt and never stops the others.
// Thread safety: one Dispatcher per thread (it owns a state-store handle).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mlkeeper/alert/alert_state.hpp"
#include "mlkeeper/alert/channel.hpp"

namespace mlk::alert {

struct RetryPolicy {
    int attempts = 3;
    std::chrono::milliseconds backoff{1000};  // doubled each retry, with jitter
};

struct ChannelReport {
    std::string channel;
    DeliveryResult result;
};

struct NotifyReport {
    Decision decision;
    std::vector<ChannelReport> deliveries;
    bool delivered() const;  // at least one channel took it
};

class Dispatcher {
  public:
    // `escalation` (may be null) is used only for escalations, on top of `channels`.
    Dispatcher(std::vector<std::unique_ptr<Channel>> channels, std::unique_ptr<Channel> escalation,
               RetryPolicy retry);

    // With the state store: cooldown, escalation and recovery apply.
    NotifyReport notify(AlertStateStore& state, Alert alert);

    // Straight delivery to every channel (or only `only`), no state: for
    // `mlkeeper alert test`.
    std::vector<ChannelReport> deliver(const Alert& alert, const std::string& only = {},
                                       bool include_escalation = true);

    std::vector<std::string> channel_names() const;

  private:
    DeliveryResult send_with_retries(Channel& ch, const Alert& a) const;
    std::vector<ChannelReport> fan_out(const std::vector<Channel*>& targets, const Alert& a) const;

    std::vector<std::unique_ptr<Channel>> channels_;
    std::unique_ptr<Channel> escalation_;
    RetryPolicy retry_;
};

}  // namespace mlk::alert
