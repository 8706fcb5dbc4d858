// The webhook alert channel: one HTTP POST of JSON per alert, shaped for Slack-compatible hooks
// (Slack, Mattermost, Rocket.Chat, Discord's /slack endpoint), plain JSON receivers, or the
// Alertmanager API. Thread safety: free functions are pure; WebhookChannel::send() may be called
// from several threads at once (the channel holds only immutable options).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/alert/alert.hpp"
#include "mlkeeper/alert/channel.hpp"

namespace mlk::alert {

enum class WebhookFormat { kSlack, kJson, kAlertmanager };

std::string_view to_string(WebhookFormat f);  // "slack", "json", "alertmanager"
// "slack", "json", "alertmanager" (ASCII case-insensitive); nullopt for anything else.
std::optional<WebhookFormat> parse_webhook_format(std::string_view s);

// For a URL whose format is not configured: host hooks.slack.com or a path ending in /slack
// (Discord's Slack-compatible endpoint) -> kSlack; a path ending in /api/v2/alerts or
// /api/v1/alerts -> kAlertmanager; anything else -> kJson.
WebhookFormat guess_webhook_format(std::string_view url);

// The JSON request body for `a` (invalid UTF-8 in the alert's strings becomes U+FFFD):
//  kSlack: {"text": "[CRITICAL] host: summary", "attachments": [{"fallback", "color":
//    "danger|warning|good", "fields": [{"title", "value", "short"}...], "footer", "ts"}]};
//    "text" reads well alone ("[RESOLVED] host: summary" once resolved); &, <, > are escaped.
//  kJson: {"key", "severity", "state": "firing|resolved", "summary", "check", "value",
//    "threshold", "action", "host", "time" (ISO 8601 UTC), "suppressed", "occurrences",
//    "fields": {...}, "source": "mlkeeper"}.
//  kAlertmanager: the POST /api/v2/alerts body, an array of one alert: "labels" (alertname = key,
//    severity, instance = host, check, then the alert's fields with names made valid label
//    names; empty values left out), "annotations" (summary, description), "startsAt", "endsAt"
//    (only when resolved; equal to startsAt), "generatorURL": "".
std::string webhook_payload(WebhookFormat format, const Alert& a);

// The URL as shown in errors and logs: scheme, host and port only, with "/…" standing for any
// path or query, because webhook URLs (Slack, Discord, Teams) carry their secret in the path.
// "https://hooks.slack.com/services/T0/B0/XYZ" -> "https://hooks.slack.com/…".
std::string redact_webhook_url(std::string_view url);

struct WebhookOptions {
    std::string url;
    // Not guessed here: the config layer fills it from parse_webhook_format() or, when the user
    // set none, guess_webhook_format().
    WebhookFormat format = WebhookFormat::kJson;
    // Extra request headers, e.g. {"Authorization", "Bearer x"}. A Content-Type here replaces
    // the default application/json.
    std::vector<std::pair<std::string, std::string>> headers;
    std::chrono::milliseconds timeout{10000};  // the whole POST, connect included
};

class WebhookChannel : public Channel {
  public:
    // Throws std::invalid_argument (the message names the redacted URL or the header) for a URL
    // that is not http(s)://host..., a timeout <= 0, or a header name/value that cannot be sent.
    explicit WebhookChannel(WebhookOptions options);

    std::string name() const override { return "webhook"; }

    // POSTs webhook_payload(format, alert). A 2xx status is success. Throws ChannelError:
    // kTransient for 408, 425, 429, 5xx, refused/unreachable/DNS failures, timeouts and dropped
    // connections; kPermanent for other statuses (4xx, 3xx: redirects are not followed) and
    // certificate problems. The message is one line, "webhook POST <redact_webhook_url(url)>: "
    // then "HTTP <status>: <first 200 bytes of the body>" or curl's message.
    void send(const Alert& alert) override;

    const WebhookOptions& options() const { return options_; }

  private:
    WebhookOptions options_;
};

}  // namespace mlk::alert
