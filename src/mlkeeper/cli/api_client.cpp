#include "mlkeeper/cli/api_client.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/http_client.hpp"
#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && util::to_lower(s.substr(0, prefix.size())) == prefix;
}

// "HOST:PORT" or "[V6]:PORT" of a listen setting as an address a local client can connect to.
std::string connectable(std::string_view addr, std::string_view key) {
    addr = util::trim(addr);
    std::string host;
    std::string_view port;
    if (!addr.empty() && addr.front() == '[') {
        const auto close = addr.find(']');
        if (close == std::string_view::npos || close + 1 >= addr.size() || addr[close + 1] != ':') {
            throw ConfigError(fmt::format("api.{}: \"{}\" is not [ADDRESS]:PORT", key, addr));
        }
        host = std::string(addr.substr(0, close + 1));
        port = addr.substr(close + 2);
        if (host == "[::]") {
            host = "[::1]";
        }
    } else {
        const auto colon = addr.rfind(':');
        if (colon == std::string_view::npos ||
            addr.substr(0, colon).find(':') != std::string_view::npos) {
            throw ConfigError(fmt::format("api.{}: \"{}\" is not HOST:PORT", key, addr));
        }
        host = std::string(addr.substr(0, colon));
        port = addr.substr(colon + 1);
        if (host.empty() || host == "0.0.0.0" || host == "*") {
            host = "127.0.0.1";
        }
    }
    const auto p = util::parse_int64(port);
    if (!p || *p < 1 || *p > 65535 || port.front() == '+' || port.front() == '-') {
        throw ConfigError(fmt::format(
            "api.{}: \"{}\" has no usable port; set [api] client_url to the agent's URL", key,
            addr));
    }
    return fmt::format("{}:{}", host, *p);
}

std::string first_line(std::string_view text) {
    text = util::trim(text);
    const auto nl = text.find('\n');
    if (nl != std::string_view::npos) {
        text = util::trim(text.substr(0, nl));
    }
    if (text.size() > 200) {
        return std::string(text.substr(0, 200)) + "...";
    }
    return std::string(text);
}

bool contains_ci(std::string_view hay, std::string_view needle) {
    return util::to_lower(hay).find(util::to_lower(needle)) != std::string::npos;
}

constexpr int kCurlCouldntConnect = 7;  // CURLE_COULDNT_CONNECT

bool is_loopback_url(std::string_view url) {
    const auto scheme = url.find("://");
    if (scheme == std::string_view::npos) {
        return false;
    }
    auto host = url.substr(scheme + 3);
    host = host.substr(0, host.find('/'));
    if (!host.empty() && host.front() == '[') {
        return host.substr(0, host.find(']') + 1) == "[::1]";
    }
    host = host.substr(0, host.find(':'));
    return host.rfind("127.", 0) == 0 || util::to_lower(host) == "localhost";
}

std::string transport_message(const core::HttpError& e, const std::string& base) {
    switch (e.kind()) {
        case core::HttpError::Kind::kConnect: {
            // libcurl 7.88 says "Couldn't connect to server" for a refused connection; on
            // loopback nothing else makes a connect fail.
            const bool refused = contains_ci(e.detail(), "refused") ||
                                 (e.curl_code() == kCurlCouldntConnect && is_loopback_url(base));
            const std::string reason = refused ? "connection refused" : e.detail();
            return fmt::format(
                "cannot reach the mlkeeper agent at {}: {} \u2014 is `mlkeeper agent` running?",
                base, reason);
        }
        case core::HttpError::Kind::kTimeout:
            return fmt::format("the mlkeeper agent at {} did not answer in time ({})", base,
                               e.detail());
        case core::HttpError::Kind::kTls:
            return fmt::format(
                "TLS connection to the mlkeeper agent at {} failed: {} (set [api] client_url to "
                "the name in the agent's certificate)",
                base, e.detail());
        case core::HttpError::Kind::kOther:
            break;
    }
    return fmt::format("request to the mlkeeper agent at {} failed: {}", base, e.detail());
}

}  // namespace

std::string derive_base_url(const ApiListenerConfig& cfg, AgentService service) {
    const auto given = util::trim(cfg.client_url);
    if (!given.empty()) {
        if (!starts_with_ci(given, "http://") && !starts_with_ci(given, "https://")) {
            throw ConfigError(
                fmt::format("api.client_url: \"{}\" must start with http:// or https://", given));
        }
        auto url = std::string(given);
        while (url.size() > 1 && url.back() == '/') {
            url.pop_back();
        }
        return url;
    }
    const std::string scheme = util::trim(cfg.tls_cert).empty() ? "http" : "https";
    if (!util::trim(cfg.listen).empty()) {
        return fmt::format("{}://{}/api/v1", scheme, connectable(cfg.listen, "listen"));
    }
    const bool models = service == AgentService::kModels;
    const std::string_view key = models ? "listen_models" : "listen_shutdown";
    const std::string& addr = models ? cfg.listen_models : cfg.listen_shutdown;
    if (util::trim(addr).empty()) {
        throw ConfigError(fmt::format(
            "api.{}: empty, so the agent serves no {} API; set [api] client_url to where it is "
            "served",
            key, models ? "model-control" : "shutdown"));
    }
    return fmt::format("{}://{}", scheme, connectable(addr, key));
}

std::string read_token_file(const std::filesystem::path& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw ConfigError(fmt::format("api.client_token_file: cannot read {}: {}", path.string(),
                                      std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode)) {
        throw ConfigError(
            fmt::format("api.client_token_file: {} is not a regular file", path.string()));
    }
    if ((st.st_mode & 007) != 0) {
        throw ConfigError(fmt::format(
            "api.client_token_file: {} is open to every user (mode {:04o}); run chmod 600 {}",
            path.string(), st.st_mode & 07777, path.string()));
    }
    std::string text;
    try {
        text = util::read_file(path);
    } catch (const std::system_error& e) {
        throw ConfigError(fmt::format("api.client_token_file: {}", e.what()));
    }
    const auto words = util::split_ws(text);
    if (words.empty()) {
        throw ConfigError(fmt::format("api.client_token_file: {} is empty", path.string()));
    }
    if (words.size() != 1) {
        // Never echo the content: it is a secret.
        throw ConfigError(fmt::format(
            "api.client_token_file: {} must hold only the token (found {} words; the agent's "
            "tokens file has NAME SCOPE TOKEN lines, this one just TOKEN)",
            path.string(), words.size()));
    }
    return words.front();
}

ApiClientSettings api_client_settings(const core::Config& cfg, AgentService service) {
    ApiListenerConfig l;
    l.client_url = cfg.str("api.client_url");
    l.listen = cfg.str("api.listen");
    l.listen_models = cfg.str("api.listen_models");
    l.listen_shutdown = cfg.str("api.listen_shutdown");
    l.tls_cert = cfg.str("api.tls_cert");
    ApiClientSettings s;
    s.base_url = derive_base_url(l, service);
    if (util::trim(l.client_url).empty() && !util::trim(l.tls_cert).empty()) {
        s.ca_file = l.tls_cert;
    }
    if (cfg.is_set("api.client_token_file")) {
        s.token = read_token_file(cfg.path("api.client_token_file"));
    }
    return s;
}

ApiCallError::ApiCallError(long status, std::string code, std::string message, nlohmann::json body)
    : std::runtime_error(fmt::format("{} ({}, HTTP {})", message, code, status)),
      status_(status),
      code_(std::move(code)),
      message_(std::move(message)),
      body_(std::move(body)) {}

ApiClient::ApiClient(ApiClientSettings settings) : settings_(std::move(settings)) {}

ApiReply ApiClient::call(std::string_view method, std::string_view path_and_query,
                         const nlohmann::json& body, std::chrono::milliseconds timeout) const {
    core::HttpRequest rq;
    rq.method = std::string(method);
    rq.url = settings_.base_url + std::string(path_and_query);
    rq.headers.emplace_back("Accept", "application/json");
    if (!settings_.token.empty()) {
        rq.headers.emplace_back("Authorization", "Bearer " + settings_.token);
    }
    if (!body.is_null()) {
        rq.headers.emplace_back("Content-Type", "application/json");
        rq.body = body.dump();
    }
    rq.timeout = timeout;
    rq.connect_timeout = settings_.connect_timeout;
    rq.ca_file = settings_.ca_file;

    core::HttpResponse resp;
    try {
        resp = core::http_request(rq);
    } catch (const core::HttpError& e) {
        throw Error(transport_message(e, settings_.base_url));
    }
    auto doc = nlohmann::json::parse(resp.body, nullptr, false);
    if (resp.status >= 200 && resp.status < 300) {
        if (doc.is_discarded()) {
            throw Error(fmt::format(
                "the mlkeeper agent at {} answered {} {} with something that is not JSON: {}",
                settings_.base_url, method, path_and_query, first_line(resp.body)));
        }
        return ApiReply{resp.status, std::move(doc)};
    }
    if (!doc.is_discarded() && doc.is_object() && doc.contains("error") &&
        doc["error"].is_object() && doc["error"].value("code", nlohmann::json()).is_string() &&
        doc["error"].value("message", nlohmann::json()).is_string()) {
        std::string message = doc["error"]["message"].get<std::string>();
        if (resp.status == 401) {
            message += settings_.token.empty()
                           ? "; set [api] client_token_file to a file holding an API token"
                           : "; the token in [api] client_token_file was not accepted";
        } else if (resp.status == 403) {
            message += "; this needs a token with the admin scope";
        }
        std::string code = doc["error"]["code"].get<std::string>();
        throw ApiCallError(resp.status, std::move(code), std::move(message), std::move(doc));
    }
    const auto line = first_line(resp.body);
    throw ApiCallError(resp.status, "http_error",
                       fmt::format("unexpected answer from {}{}: {}", settings_.base_url,
                                   path_and_query, line.empty() ? "(no body)" : line),
                       doc.is_discarded() ? nlohmann::json() : std::move(doc));
}

std::string url_encode(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') ||
            u == '-' || u == '.' || u == '_' || u == '~') {
            out += c;
        } else {
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 0xF];
        }
    }
    return out;
}

std::string display_time(const nlohmann::json& v) {
    if (!v.is_string()) {
        return v.is_null() ? "-" : v.dump();
    }
    const auto text = v.get<std::string>();
    if (auto t = util::parse_iso8601_utc(text)) {
        return util::format_local(*t);
    }
    return text.empty() ? "-" : text;
}

std::string relative_time(const nlohmann::json& v, std::chrono::system_clock::time_point now) {
    if (!v.is_string()) {
        return "";
    }
    const auto t = util::parse_iso8601_utc(v.get<std::string>());
    if (!t) {
        return "";
    }
    const auto d = std::chrono::round<std::chrono::seconds>(*t - now);
    // Times are whole seconds and the clocks differ a little: a few seconds is "now".
    if (d > std::chrono::seconds(-5) && d < std::chrono::seconds(5)) {
        return "now";
    }
    return d > std::chrono::seconds(0) ? "in " + util::format_duration(d)
                                       : util::format_duration(-d) + " ago";
}

}  // namespace mlk::cli
