#include "mlkeeper/alert/webhook_channel.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mlkeeper/core/http_client.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::alert {
namespace {

using nlohmann::json;

constexpr std::size_t kBodySnippetBytes = 200;

char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
    return out;
}

std::string upper(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](char c) {
        return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    });
    return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

struct UrlParts {
    std::string_view scheme;  // without "://"; empty when the URL has none
    std::string_view host;    // without userinfo; may include ":port"
    std::string_view path;    // up to '?' or '#'
    bool has_rest = false;    // anything after the authority other than a bare "/"
};

UrlParts split_url(std::string_view url) {
    UrlParts p;
    size_t start = 0;
    if (const auto sep = url.find("://"); sep != std::string_view::npos) {
        p.scheme = url.substr(0, sep);
        start = sep + 3;
    }
    size_t end = url.find_first_of("/?#", start);
    if (end == std::string_view::npos) {
        end = url.size();
    }
    p.host = url.substr(start, end - start);
    if (const auto at = p.host.rfind('@'); at != std::string_view::npos) {
        p.host.remove_prefix(at + 1);
    }
    const std::string_view rest = url.substr(end);
    p.path = rest.substr(0, rest.find_first_of("?#"));
    p.has_rest = !rest.empty() && rest != "/";
    return p;
}

bool is_token(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
               std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
}

std::string iso_time(const Alert& a) {
    return util::iso8601_utc(a.time);
}

// Slack treats &, < and > as control characters in text and field values.
std::string slack_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

std::string headline(const Alert& a) {
    std::string out = a.state == AlertState::kResolved ? std::string("[RESOLVED] ")
                                                       : "[" + upper(to_string(a.severity)) + "] ";
    if (!a.host.empty()) {
        out += a.host + ": ";
    }
    out += a.summary;
    return out;
}

json slack_payload(const Alert& a) {
    const char* color = "good";
    if (a.state == AlertState::kFiring) {
        switch (a.severity) {
            case Severity::kEmergency:
            case Severity::kCritical:
                color = "danger";
                break;
            case Severity::kWarning:
                color = "warning";
                break;
            case Severity::kInfo:
                color = "good";
                break;
        }
    }
    json fields = json::array();
    auto add = [&](std::string_view title, const std::string& value, bool is_short) {
        if (!value.empty()) {
            fields.push_back({{"title", slack_escape(title)},
                              {"value", slack_escape(value)},
                              {"short", is_short}});
        }
    };
    add("Value", a.value, true);
    add("Threshold", a.threshold, true);
    add("Severity", std::string(to_string(a.severity)), true);
    add("Check", a.check, true);
    add("Key", a.key, true);
    add("Time", iso_time(a), true);
    if (a.occurrences > 1) {
        add("Occurrences", std::to_string(a.occurrences), true);
    }
    if (a.suppressed > 0) {
        add("Suppressed repeats", std::to_string(a.suppressed), true);
    }
    for (const auto& [k, v] : a.fields) {
        add(k, v, true);
    }
    add("Action", a.action, false);

    const std::string text = slack_escape(headline(a));
    json attachment = {
        {"fallback", text},
        {"color", color},
        {"fields", std::move(fields)},
        {"footer", "mlkeeper"},
        {"ts",
         std::chrono::duration_cast<std::chrono::seconds>(a.time.time_since_epoch()).count()}};
    return {{"text", text}, {"attachments", json::array({std::move(attachment)})}};
}

json json_payload(const Alert& a) {
    json fields = json::object();
    for (const auto& [k, v] : a.fields) {
        fields[k] = v;
    }
    return {{"key", a.key},
            {"severity", to_string(a.severity)},
            {"state", a.state == AlertState::kFiring ? "firing" : "resolved"},
            {"summary", a.summary},
            {"check", a.check},
            {"value", a.value},
            {"threshold", a.threshold},
            {"action", a.action},
            {"host", a.host},
            {"time", iso_time(a)},
            {"suppressed", a.suppressed},
            {"occurrences", a.occurrences},
            {"fields", std::move(fields)},
            {"source", "mlkeeper"}};
}

// Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*, and names starting with "__" are reserved.
std::string label_name(std::string_view field) {
    std::string out;
    out.reserve(field.size() + 6);
    for (char c : field) {
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        out += ok ? c : '_';
    }
    if (out.empty() || (out[0] >= '0' && out[0] <= '9') || out.rfind("__", 0) == 0) {
        out.insert(0, "field_");
    }
    return out;
}

json alertmanager_payload(const Alert& a) {
    json labels = json::object();
    labels["alertname"] = a.key.empty() ? std::string("mlkeeper") : a.key;
    labels["severity"] = to_string(a.severity);
    if (!a.host.empty()) {
        labels["instance"] = a.host;
    }
    if (!a.check.empty()) {
        labels["check"] = a.check;
    }
    for (const auto& [k, v] : a.fields) {
        const std::string name = label_name(k);
        // The identifying labels above win; a field may not re-route or merge the alert.
        if (!v.empty() && !labels.contains(name)) {
            labels[name] = v;
        }
    }

    std::string description;
    auto part = [&](std::string_view what, const std::string& v) {
        if (!v.empty()) {
            if (!description.empty()) {
                description += "; ";
            }
            description += std::string(what) + ": " + v;
        }
    };
    part("value", a.value);
    part("threshold", a.threshold);
    part("action", a.action);

    json annotations = {{"summary", a.summary}};
    if (!description.empty()) {
        annotations["description"] = description;
    }

    const std::string when = iso_time(a);
    json alert = {{"labels", std::move(labels)},
                  {"annotations", std::move(annotations)},
                  {"startsAt", when},
                  {"generatorURL", ""}};
    if (a.state == AlertState::kResolved) {
        // Alertmanager keeps the original start when it merges this into the firing alert.
        alert["endsAt"] = when;
    } else if (a.expires_at) {
        // Without endsAt Alertmanager resolves it after resolve_timeout (5 min), long
        // before our cooldown sends the next notice.
        alert["endsAt"] = util::iso8601_utc(*a.expires_at);
    }
    return json::array({std::move(alert)});
}

// The first kBodySnippetBytes of a response body as one printable line, never cutting a UTF-8
// sequence in half.
std::string body_snippet(std::string_view body) {
    bool cut = false;
    if (body.size() > kBodySnippetBytes) {
        size_t n = kBodySnippetBytes;
        while (n > 0 && (static_cast<unsigned char>(body[n]) & 0xC0) == 0x80) {
            --n;
        }
        body = body.substr(0, n);
        cut = true;
    }
    std::string out;
    out.reserve(body.size() + 3);
    for (char c : body) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? ' ' : c;
    }
    while (!out.empty() && out.back() == ' ') {
        out.pop_back();
    }
    while (!out.empty() && out.front() == ' ') {
        out.erase(out.begin());
    }
    if (cut) {
        out += "...";
    }
    return out;
}

bool transient_status(long status) {
    return status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599);
}

ChannelError::Kind transport_kind(const core::HttpError& e) {
    switch (e.kind()) {
        case core::HttpError::Kind::kConnect:
        case core::HttpError::Kind::kTimeout:
            return ChannelError::Kind::kTransient;
        case core::HttpError::Kind::kTls:
            // A reset during the handshake is worth a retry; a rejected certificate is not.
            return e.curl_code() == CURLE_SSL_CONNECT_ERROR ? ChannelError::Kind::kTransient
                                                            : ChannelError::Kind::kPermanent;
        case core::HttpError::Kind::kOther:
            break;
    }
    switch (e.curl_code()) {
        case CURLE_GOT_NOTHING:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_OUT_OF_MEMORY:
            return ChannelError::Kind::kTransient;
        default:
            return ChannelError::Kind::kPermanent;
    }
}

}  // namespace

std::string_view to_string(WebhookFormat f) {
    switch (f) {
        case WebhookFormat::kSlack:
            return "slack";
        case WebhookFormat::kJson:
            return "json";
        case WebhookFormat::kAlertmanager:
            return "alertmanager";
    }
    return "json";
}

std::optional<WebhookFormat> parse_webhook_format(std::string_view s) {
    const std::string l = lower(s);
    if (l == "slack") {
        return WebhookFormat::kSlack;
    }
    if (l == "json") {
        return WebhookFormat::kJson;
    }
    if (l == "alertmanager") {
        return WebhookFormat::kAlertmanager;
    }
    return std::nullopt;
}

WebhookFormat guess_webhook_format(std::string_view url) {
    const UrlParts p = split_url(url);
    std::string host = lower(p.host);
    if (const auto colon = host.rfind(':');
        colon != std::string::npos && host.find(']', colon) == std::string::npos) {
        host.resize(colon);
    }
    std::string_view path = p.path;
    while (path.size() > 1 && path.back() == '/') {
        path.remove_suffix(1);
    }
    if (host == "hooks.slack.com" || ends_with(path, "/slack")) {
        return WebhookFormat::kSlack;
    }
    if (ends_with(path, "/api/v2/alerts") || ends_with(path, "/api/v1/alerts")) {
        return WebhookFormat::kAlertmanager;
    }
    return WebhookFormat::kJson;
}

std::string webhook_payload(WebhookFormat format, const Alert& a) {
    json body;
    switch (format) {
        case WebhookFormat::kSlack:
            body = slack_payload(a);
            break;
        case WebhookFormat::kJson:
            body = json_payload(a);
            break;
        case WebhookFormat::kAlertmanager:
            body = alertmanager_payload(a);
            break;
    }
    // Alert text comes from commands, mounts and service names; never let a stray byte that
    // is not UTF-8 make the alert undeliverable.
    return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string redact_webhook_url(std::string_view url) {
    const UrlParts p = split_url(url);
    std::string out;
    if (!p.scheme.empty()) {
        out.append(p.scheme).append("://");
    }
    out.append(p.host);
    if (p.has_rest) {
        out.append("/…");
    }
    return out;
}

WebhookChannel::WebhookChannel(WebhookOptions options) : options_(std::move(options)) {
    const UrlParts p = split_url(options_.url);
    const std::string scheme = lower(p.scheme);
    if ((scheme != "http" && scheme != "https") || p.host.empty()) {
        throw std::invalid_argument("webhook URL must look like https://host/path, got \"" +
                                    redact_webhook_url(options_.url) + "\"");
    }
    if (options_.timeout <= std::chrono::milliseconds::zero()) {
        throw std::invalid_argument("webhook timeout must be positive");
    }
    for (const auto& [header, value] : options_.headers) {
        if (!is_token(header)) {
            throw std::invalid_argument("webhook header name \"" + header + "\" is not valid");
        }
        if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
            throw std::invalid_argument("webhook header " + header + " contains a line break");
        }
    }
}

void WebhookChannel::send(const Alert& alert) {
    core::HttpRequest req;
    req.method = "POST";
    req.url = options_.url;
    req.timeout = options_.timeout;
    req.connect_timeout = std::min(options_.timeout, std::chrono::milliseconds(5000));
    const bool has_type =
        std::any_of(options_.headers.begin(), options_.headers.end(),
                    [](const auto& h) { return lower(h.first) == "content-type"; });
    if (!has_type) {
        req.headers.emplace_back("Content-Type", "application/json");
    }
    req.headers.insert(req.headers.end(), options_.headers.begin(), options_.headers.end());
    req.body = webhook_payload(options_.format, alert);

    const std::string where = "webhook POST " + redact_webhook_url(options_.url) + ": ";
    core::HttpResponse resp;
    try {
        resp = core::http_request(req);
    } catch (const core::HttpError& e) {
        // e.what() holds the URL with its path; only curl's own message is safe to show.
        throw ChannelError(transport_kind(e), where + e.detail());
    }
    if (resp.status >= 200 && resp.status <= 299) {
        return;
    }
    std::string msg = where + "HTTP " + std::to_string(resp.status);
    if (const std::string snippet = body_snippet(resp.body); !snippet.empty()) {
        msg += ": " + snippet;
    }
    throw ChannelError(transient_status(resp.status) ? ChannelError::Kind::kTransient
                                                     : ChannelError::Kind::kPermanent,
                       msg);
}

}  // namespace mlk::alert
