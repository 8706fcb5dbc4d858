#include "mlkeeper/alert/dispatcher.hpp"
#include "mlkeeper/util/host.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <future>
#include <random>
#include <thread>

namespace mlk::alert {

bool NotifyReport::delivered() const {
    for (const auto& d : deliveries) {
        if (d.result.ok) {
            return true;
        }
    }
    return false;
}

Dispatcher::Dispatcher(std::vector<std::unique_ptr<Channel>> channels,
                       std::unique_ptr<Channel> escalation, RetryPolicy retry)
    : channels_(std::move(channels)), escalation_(std::move(escalation)), retry_(retry) {}

std::vector<std::string> Dispatcher::channel_names() const {
    std::vector<std::string> names;
    for (const auto& c : channels_) {
        names.push_back(c->name());
    }
    if (escalation_) {
        names.push_back(escalation_->name() + " (escalations)");
    }
    return names;
}

DeliveryResult Dispatcher::send_with_retries(Channel& ch, const Alert& a) const {
    DeliveryResult r;
    thread_local std::mt19937 rng(std::random_device{}());
    auto delay = retry_.backoff;
    for (int attempt = 1; attempt <= std::max(1, retry_.attempts); ++attempt) {
        r.attempts = attempt;
        try {
            ch.send(a);
            r.ok = true;
            r.error.clear();
            return r;
        } catch (const ChannelError& e) {
            r.error = e.what();
            if (e.kind() == ChannelError::Kind::kPermanent) {
                return r;
            }
        } catch (const std::exception& e) {
            r.error = e.what();
        }
        if (attempt < retry_.attempts) {
            // Full jitter: concurrent senders do not retry in lockstep.
            std::uniform_int_distribution<long> jitter(delay.count() / 2, delay.count());
            std::this_thread::sleep_for(std::chrono::milliseconds(jitter(rng)));
            delay *= 2;
        }
    }
    return r;
}

std::vector<ChannelReport> Dispatcher::fan_out(const std::vector<Channel*>& targets,
                                               const Alert& a) const {
    std::vector<std::future<DeliveryResult>> futures;
    futures.reserve(targets.size());
    for (auto* ch : targets) {
        futures.push_back(
            std::async(std::launch::async, [this, ch, &a] { return send_with_retries(*ch, a); }));
    }
    std::vector<ChannelReport> out;
    for (std::size_t i = 0; i < targets.size(); ++i) {
        out.push_back({targets[i]->name(), futures[i].get()});
        const auto& r = out.back();
        if (r.result.ok) {
            spdlog::debug("alert {} sent via {}", a.key, r.channel);
        } else {
            spdlog::warn("alert {} not delivered via {} after {} attempt(s): {}", a.key, r.channel,
                         r.result.attempts, r.result.error);
        }
    }
    return out;
}

NotifyReport Dispatcher::notify(AlertStateStore& state, Alert alert) {
    if (alert.host.empty()) {
        alert.host = util::host_name();
    }
    NotifyReport rep;
    rep.decision = state.record(alert, std::chrono::system_clock::now());
    if (rep.decision.verdict != Verdict::kSend) {
        if (rep.decision.verdict == Verdict::kSuppress) {
            state.count_suppressed();
        }
        spdlog::debug("alert {}: {} ({})", alert.key,
                      rep.decision.verdict == Verdict::kSuppress ? "suppressed" : "ignored",
                      rep.decision.reason);
        return rep;
    }
    std::vector<Channel*> targets;
    for (auto& c : channels_) {
        targets.push_back(c.get());
    }
    if (rep.decision.escalation && escalation_) {
        targets.push_back(escalation_.get());
    }
    rep.deliveries = fan_out(targets, rep.decision.alert);
    for (const auto& d : rep.deliveries) {
        if (d.result.ok) {
            state.count_sent(d.channel);
        } else {
            state.count_failure(d.channel);
        }
    }
    if (!targets.empty() && !rep.delivered()) {
        state.undo_send(rep.decision);
    }
    return rep;
}

std::vector<ChannelReport> Dispatcher::deliver(const Alert& alert, const std::string& only,
                                               bool include_escalation) {
    Alert a = alert;
    if (a.host.empty()) {
        a.host = util::host_name();
    }
    std::vector<Channel*> targets;
    for (auto& c : channels_) {
        if (only.empty() || c->name() == only) {
            targets.push_back(c.get());
        }
    }
    if (include_escalation && escalation_ && (only.empty() || escalation_->name() == only)) {
        targets.push_back(escalation_.get());
    }
    return fan_out(targets, a);
}

}  // namespace mlk::alert
