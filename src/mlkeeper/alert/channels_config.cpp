#include "mlkeeper/alert/channels_config.hpp"

#include <fmt/format.h>

#include "mlkeeper/alert/command_channel.hpp"
#include "mlkeeper/alert/email_channel.hpp"
#include "mlkeeper/alert/journal_channel.hpp"
#include "mlkeeper/alert/syslog_channel.hpp"
#include "mlkeeper/alert/webhook_channel.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::alert {
namespace {

std::chrono::milliseconds ms(std::chrono::seconds s) {
    return s;
}

std::vector<std::string> addresses(const std::string& text) {
    std::string s = text;
    for (auto& c : s) {
        c = (c == ',' || c == ';') ? ' ' : c;
    }
    return util::split_ws(s);
}

template <typename F>
auto build(const char* key, F&& make) {
    try {
        return make();
    } catch (const std::invalid_argument& e) {
        throw ConfigError(fmt::format("[alerts] {}: {}", key, e.what()));
    }
}

bool wanted(const std::string& mode, bool available) {
    return mode == "on" || (mode == "auto" && available);
}

}  // namespace

AlertPolicy policy_from_config(const core::Config& cfg) {
    AlertPolicy p;
    p.cooldown_info = cfg.duration("alerts.cooldown_info");
    p.cooldown_warning = cfg.duration("alerts.alert_cooldown");
    p.cooldown_critical = cfg.duration("alerts.cooldown_critical");
    p.cooldown_emergency = cfg.duration("alerts.cooldown_emergency");
    p.escalate_after = static_cast<int>(cfg.integer("alerts.escalate_after"));
    return p;
}

std::unique_ptr<Dispatcher> dispatcher_from_config(const core::Config& cfg) {
    std::vector<std::unique_ptr<Channel>> channels;
    std::unique_ptr<Channel> escalation;
    const auto escalate_to = cfg.str("alerts.escalate_to");
    auto add = [&](std::unique_ptr<Channel> ch) {
        if (ch->name() == escalate_to) {
            escalation = std::move(ch);
        } else {
            channels.push_back(std::move(ch));
        }
    };
    const auto timeout = ms(cfg.duration("alerts.timeout"));

    if (const auto& to = cfg.str("alerts.alert_email"); !to.empty()) {
        add(build("alert_email", [&] {
            EmailOptions o;
            o.url = cfg.str("alerts.smtp_url");
            o.to = addresses(to);
            if (!cfg.str("alerts.smtp_from").empty()) {
                o.from = cfg.str("alerts.smtp_from");
            }
            o.username = cfg.str("alerts.smtp_user");
            o.password = cfg.str("alerts.smtp_password");
            const auto& tls = cfg.str("alerts.smtp_tls");
            o.tls = tls == "none"       ? EmailOptions::Tls::kNone
                    : tls == "required" ? EmailOptions::Tls::kRequired
                                        : EmailOptions::Tls::kStartTls;
            o.subject_template = cfg.str("alerts.email_subject");
            o.sendmail = cfg.path("alerts.sendmail");
            o.timeout = timeout;
            return std::make_unique<EmailChannel>(std::move(o));
        }));
    }
    if (const auto& url = cfg.str("alerts.alert_webhook"); !url.empty()) {
        add(build("alert_webhook", [&] {
            WebhookOptions o;
            o.url = url;
            const auto& fmt_name = cfg.str("alerts.webhook_format");
            o.format =
                fmt_name == "auto" ? guess_webhook_format(url) : *parse_webhook_format(fmt_name);
            for (const auto& h : cfg.list("alerts.webhook_headers")) {
                auto colon = h.find(':');
                if (colon == std::string::npos || colon == 0) {
                    throw std::invalid_argument("webhook header must look like \"Name: value\"");
                }
                o.headers.emplace_back(std::string(util::trim(h.substr(0, colon))),
                                       std::string(util::trim(h.substr(colon + 1))));
            }
            o.timeout = timeout;
            return std::make_unique<WebhookChannel>(std::move(o));
        }));
    }
    if (const auto& argv = cfg.list("alerts.command"); !argv.empty()) {
        add(build("command", [&] {
            CommandOptions o;
            o.argv = argv;
            o.timeout = ms(cfg.duration("alerts.command_timeout"));
            return std::make_unique<CommandChannel>(std::move(o));
        }));
    }
    const auto socket = cfg.path("alerts.syslog_socket");
    if (wanted(cfg.str("alerts.syslog"), std::filesystem::exists(socket))) {
        add(build("syslog", [&] {
            SyslogOptions o;
            o.socket_path = socket;
            o.facility = *parse_syslog_facility(cfg.str("alerts.syslog_facility"));
            o.tag = cfg.str("alerts.syslog_tag");
            return std::make_unique<SyslogChannel>(std::move(o));
        }));
    }
    if (wanted(cfg.str("alerts.journal"), journal_available())) {
        add(std::make_unique<JournalChannel>());
    }
    if (escalate_to != "none" && !escalation) {
        throw ConfigError(fmt::format(
            "[alerts] escalate_to = \"{}\" but that channel is not configured", escalate_to));
    }
    RetryPolicy retry;
    retry.attempts = static_cast<int>(cfg.integer("alerts.retries"));
    retry.backoff = ms(cfg.duration("alerts.retry_backoff"));
    return std::make_unique<Dispatcher>(std::move(channels), std::move(escalation), retry);
}

}  // namespace mlk::alert
