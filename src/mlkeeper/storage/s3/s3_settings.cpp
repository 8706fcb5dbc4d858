#include "mlkeeper/storage/s3/s3_settings.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "mlkeeper/core/error.hpp"

namespace mlk::storage::s3 {
namespace {

std::string expand_prefix(std::string prefix, const std::string& host) {
    for (auto at = prefix.find("{host}"); at != std::string::npos; at = prefix.find("{host}")) {
        prefix.replace(at, 6, host.empty() ? "unknown-host" : host);
    }
    while (!prefix.empty() && prefix.front() == '/') {
        prefix.erase(0, 1);
    }
    if (!prefix.empty() && prefix.back() != '/') {
        prefix += '/';
    }
    return prefix;
}

bool http_url(std::string_view u) {
    return u.starts_with("http://") || u.starts_with("https://");
}

}  // namespace

bool s3_configured(const core::Config& cfg) {
    return !cfg.str("backup.s3.bucket").empty();
}

S3Settings settings_from_config(const core::Config& cfg, const Env& env, const std::string& host,
                                const std::string& bucket) {
    S3Settings s;
    s.bucket = bucket.empty() ? cfg.str("backup.s3.bucket") : bucket;
    if (s.bucket.empty()) {
        throw ConfigError(
            "[backup.s3] bucket: no bucket configured (set S3_BUCKET or [backup.s3] bucket)");
    }
    if (s.bucket.find_first_of("/ ") != std::string::npos) {
        throw ConfigError(fmt::format(
            "{}: bucket name \"{}\" must not contain '/' or spaces (put key prefixes in "
            "[backup.s3] prefix)",
            cfg.setting("backup.s3.bucket").origin, s.bucket));
    }
    s.prefix = expand_prefix(cfg.str("backup.s3.prefix"), host);
    s.storage_class = cfg.str("backup.s3.storage_class");
    s.region = resolve_region(env, cfg.str("backup.s3.region"));
    const auto& endpoint = cfg.str("backup.s3.endpoint");
    if (!endpoint.empty()) {
        if (!http_url(endpoint)) {
            throw ConfigError(fmt::format("{}: endpoint \"{}\" must start with http:// or https://",
                                          cfg.setting("backup.s3.endpoint").origin, endpoint));
        }
        s.endpoint = endpoint;
        while (s.endpoint.size() > 8 && s.endpoint.back() == '/') {
            s.endpoint.pop_back();
        }
    } else {
        s.endpoint = fmt::format("https://s3.{}.amazonaws.com", s.region);
    }
    const auto& addressing = cfg.str("backup.s3.addressing");
    s.addressing = addressing == "path" || (addressing == "auto" && !endpoint.empty())
                       ? Addressing::kPath
                       : Addressing::kVirtualHost;
    if (s.addressing == Addressing::kVirtualHost && s.bucket.find('.') != std::string::npos &&
        s.endpoint.starts_with("https://")) {
        // A dotted bucket breaks the wildcard certificate of virtual-host addressing.
        s.addressing = Addressing::kPath;
    }
    s.part_size = cfg.size("backup.s3.part_size");
    s.parallel = static_cast<int>(cfg.integer("backup.s3.parallel"));
    s.attempts = static_cast<int>(cfg.integer("backup.s3.attempts"));
    s.retry_base = std::chrono::milliseconds(cfg.integer("backup.s3.retry_base_ms"));
    s.request_timeout = cfg.duration("backup.s3.request_timeout");
    if (cfg.is_set("backup.s3.ca_file")) {
        s.ca_file = cfg.path("backup.s3.ca_file").string();
    }
    s.credentials = resolve_credentials(env);
    return s;
}

std::optional<S3Location> parse_s3_url(std::string_view url) {
    constexpr std::string_view kScheme = "s3://";
    if (!url.starts_with(kScheme)) {
        return std::nullopt;
    }
    url.remove_prefix(kScheme.size());
    const auto slash = url.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 >= url.size()) {
        return std::nullopt;
    }
    return S3Location{std::string(url.substr(0, slash)), std::string(url.substr(slash + 1))};
}

std::string s3_url(std::string_view bucket, std::string_view key) {
    return fmt::format("s3://{}/{}", bucket, key);
}

std::string uri_encode(std::string_view s, Slash slash) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                                c == '~' || (c == '/' && slash == Slash::kKeep);
        if (unreserved) {
            out += ch;
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

std::string object_url(const S3Settings& s, std::string_view key,
                       std::vector<std::pair<std::string, std::string>> query) {
    std::string url;
    const auto scheme_end = s.endpoint.find("://") + 3;
    if (s.addressing == Addressing::kVirtualHost) {
        url = s.endpoint.substr(0, scheme_end) + s.bucket + "." + s.endpoint.substr(scheme_end);
        url += "/" + uri_encode(key, Slash::kKeep);
    } else {
        url = s.endpoint + "/" + uri_encode(s.bucket, Slash::kEncode);
        if (!key.empty()) {
            url += "/" + uri_encode(key, Slash::kKeep);
        }
    }
    for (auto& [name, value] : query) {
        name = uri_encode(name, Slash::kEncode);
        value = uri_encode(value, Slash::kEncode);
    }
    std::sort(query.begin(), query.end());
    char sep = '?';
    for (const auto& [name, value] : query) {
        url += sep;
        url += name;
        url += '=';
        url += value;
        sep = '&';
    }
    return url;
}

}  // namespace mlk::storage::s3
