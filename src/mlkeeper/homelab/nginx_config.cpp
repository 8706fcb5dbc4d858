#include "mlkeeper/homelab/nginx_config.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::homelab {
namespace {

bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool all_of(std::string_view s, std::string_view extra) {
    return std::all_of(s.begin(), s.end(), [&](char c) {
        return is_alnum(c) || extra.find(c) != std::string_view::npos;
    });
}

std::optional<int> parse_port(std::string_view s) {
    if (s.empty() || s.size() > 5 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return std::nullopt;
    }
    const auto v = util::parse_int64(s);
    if (!v || *v < 1 || *v > 65535) {
        return std::nullopt;
    }
    return static_cast<int>(*v);
}

// A DNS name or IPv4 address ("127.0.0.1", "gpu-box.lan"), or a bracketed IPv6 address.
bool valid_host(std::string_view h) {
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
        const auto inner = h.substr(1, h.size() - 2);
        return !inner.empty() && inner.find(':') != std::string_view::npos &&
               std::all_of(inner.begin(), inner.end(), [](char c) {
                   return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                          (c >= 'A' && c <= 'F') || c == ':' || c == '.';
               });
    }
    return !h.empty() && h.size() <= 253 && all_of(h, ".-") && h.front() != '-' && h.front() != '.';
}

// HOST:PORT where HOST may be omitted: splits on the last ':' outside brackets.
bool valid_host_port(std::string_view s, bool host_required) {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos || (s.front() == '[' && s.find(']') > colon)) {
        return !host_required && parse_port(s).has_value();
    }
    const auto host = s.substr(0, colon);
    return parse_port(s.substr(colon + 1)).has_value() && (host == "*" || valid_host(host));
}

struct ProxyTarget {
    std::string host_port;  // "127.0.0.1:5080"
    std::string path;       // "/models" or ""
};

// http://HOST[:PORT][/PATH]; nullopt when it is not of that shape.
std::optional<ProxyTarget> parse_proxy_url(std::string_view url) {
    constexpr std::string_view kScheme = "http://";
    if (url.substr(0, kScheme.size()) != kScheme) {
        return std::nullopt;
    }
    auto rest = url.substr(kScheme.size());
    const auto slash = rest.find('/');
    const auto authority = rest.substr(0, slash);
    auto path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    ProxyTarget t;
    if (valid_host_port(authority, true)) {
        t.host_port = std::string(authority);
    } else if (valid_host(authority)) {
        t.host_port = std::string(authority) + ":80";
    } else {
        return std::nullopt;
    }
    if (!path.empty() && (!all_of(path, "/._~-") || path.find("//") != std::string_view::npos ||
                          path.find("/../") != std::string_view::npos || path.ends_with("/.."))) {
        return std::nullopt;
    }
    t.path = normalized_prefix(path);
    return t;
}

bool valid_prefix(std::string_view p) {
    if (p.empty() || p == "/") {
        return true;
    }
    if (p.front() != '/' || !all_of(p, "/._~-") || p.find("//") != std::string_view::npos) {
        return false;
    }
    for (const auto& seg : util::split(p.substr(1), '/')) {
        if (seg == "." || seg == "..") {
            return false;
        }
    }
    return true;
}

bool valid_server_names(std::string_view s) {
    const auto names = util::split_ws(s);
    return !names.empty() && std::all_of(names.begin(), names.end(), [](const std::string& n) {
        return n == "_" || (all_of(n, ".-*_") && n.front() != '-');
    });
}

// Every value is a JSON string: nginx writes "" for an absent upstream time and "0.010, 0.004"
// when it tried two upstreams, so numbers would not always be numbers.
constexpr std::string_view kLogFormat =
    R"(log_format mlkeeper_json escape=json '{"time":"$time_iso8601","msec":"$msec",)"
    R"("model":"$mlkeeper_model","method":"$request_method","uri":"$request_uri",)"
    R"("status":"$status","request_length":"$request_length","bytes_sent":"$bytes_sent",)"
    R"("body_bytes_sent":"$body_bytes_sent","request_time":"$request_time",)"
    R"("upstream_response_time":"$upstream_response_time",)"
    R"("upstream_status":"$upstream_status","remote_addr":"$remote_addr"}';)";

void render_proxy_settings(std::string& out, const NginxSettings& s, const std::string& location) {
    out += "        proxy_http_version 1.1;\n";
    // Clears the client's Connection header so upstream connections stay open (keepalive).
    out += "        proxy_set_header Connection \"\";\n";
    out += "        proxy_set_header Host $host;\n";
    out += "        proxy_set_header X-Real-IP $remote_addr;\n";
    out += "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n";
    out += "        proxy_set_header X-Forwarded-Proto $scheme;\n";
    out += fmt::format("        proxy_set_header X-Forwarded-Prefix {};\n", location);
    // Token streams (server-sent events) must reach the client as they are produced.
    out += "        proxy_buffering off;\n";
    out += "        proxy_request_buffering off;\n";
    out += "        proxy_cache off;\n";
    out += "        gzip off;\n";
    // For a second nginx in front of this one (an ingress), which honours this header too.
    out += "        add_header X-Accel-Buffering no always;\n";
    out += fmt::format("        proxy_connect_timeout {}s;\n", s.connect_timeout.count());
    out += fmt::format("        proxy_read_timeout {}s;\n", s.read_timeout.count());
    out += fmt::format("        proxy_send_timeout {}s;\n", s.send_timeout.count());
    out += fmt::format("        client_max_body_size {};\n", s.max_body);
}

}  // namespace

std::string_view to_string(NginxSettings::Upstream u) {
    return u == NginxSettings::Upstream::kProxy ? "proxy" : "direct";
}

std::string normalized_prefix(std::string_view prefix) {
    while (!prefix.empty() && prefix.back() == '/') {
        prefix.remove_suffix(1);
    }
    return std::string(prefix);
}

std::string nginx_quote(std::string_view s) {
    std::string out = "\"";
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            throw std::invalid_argument("contains a control character");
        }
        if (c == '$') {
            throw std::invalid_argument("contains '$', which nginx would expand as a variable");
        }
        if (c == '"' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    out += '"';
    return out;
}

std::vector<std::string> nginx_settings_problems(const NginxSettings& s) {
    std::vector<std::string> p;
    if (s.output.empty()) {
        p.push_back("nginx.output: empty; e.g. /etc/nginx/conf.d/mlkeeper-models.conf");
    }
    if (!valid_host_port(s.listen, false)) {
        p.push_back(fmt::format(
            "nginx.listen: \"{}\" is not PORT, HOST:PORT, *:PORT or [IPV6]:PORT (e.g. 8080 or "
            "127.0.0.1:8080)",
            util::escape_for_log(s.listen)));
    }
    if (!valid_server_names(s.server_name)) {
        p.push_back(fmt::format(
            "nginx.server_name: \"{}\" is not a space-separated list of host names (or _)",
            util::escape_for_log(s.server_name)));
    }
    if (!valid_prefix(s.location_prefix)) {
        p.push_back(fmt::format(
            "nginx.location_prefix: \"{}\" must start with '/' and hold only letters, digits "
            "and / . _ ~ - (no empty, . or .. segments), e.g. /models",
            util::escape_for_log(s.location_prefix)));
    }
    if (s.upstream == NginxSettings::Upstream::kDirect && !valid_host(s.upstream_host)) {
        p.push_back(fmt::format(
            "nginx.upstream_host: \"{}\" is not a host name, IPv4 address or [IPv6] address",
            util::escape_for_log(s.upstream_host)));
    }
    if (s.upstream == NginxSettings::Upstream::kProxy && !parse_proxy_url(s.proxy_url)) {
        p.push_back(
            fmt::format("nginx.proxy_url: \"{}\" is not http://HOST[:PORT][/PATH] (e.g. "
                        "http://127.0.0.1:5080/models, the agent's proxy with its prefix)",
                        util::escape_for_log(s.proxy_url)));
    }
    if (s.upstream_keepalive < 0 || s.upstream_keepalive > 10000) {
        p.push_back(
            fmt::format("nginx.upstream_keepalive: {} is outside 0..10000", s.upstream_keepalive));
    }
    if (s.access_log.empty() || !s.access_log.is_absolute()) {
        p.push_back("nginx.access_log: \"" + util::escape_for_log(s.access_log.string()) +
                    "\" must be an absolute path");
    } else {
        try {
            nginx_quote(s.access_log.string());
        } catch (const std::invalid_argument& e) {
            p.push_back("nginx.access_log: \"" + util::escape_for_log(s.access_log.string()) +
                        "\" " + e.what());
        }
    }
    const std::pair<const char*, std::chrono::seconds> timeouts[] = {
        {"connect_timeout", s.connect_timeout},
        {"read_timeout", s.read_timeout},
        {"send_timeout", s.send_timeout}};
    for (const auto& [key, value] : timeouts) {
        if (value.count() < 1) {
            p.push_back(fmt::format("nginx.{}: must be at least 1s", key));
        }
    }
    if (s.connect_timeout.count() > 75) {
        p.push_back("nginx.connect_timeout: nginx allows at most 75s");
    }
    if (s.test_command.empty() || s.test_command.front().empty()) {
        p.push_back("nginx.test_command: empty; e.g. [\"nginx\", \"-t\"]");
    }
    if (s.reload_command.empty() || s.reload_command.front().empty()) {
        p.push_back("nginx.reload_command: empty; e.g. [\"nginx\", \"-s\", \"reload\"]");
    }
    if (s.command_timeout.count() < 1) {
        p.push_back("nginx.command_timeout: must be at least 1s");
    }
    return p;
}

NginxSettings nginx_settings_from(const core::Config& cfg) {
    NginxSettings s;
    s.output = cfg.path("nginx.output");
    s.listen = cfg.str("nginx.listen");
    s.server_name = cfg.str("nginx.server_name");
    s.location_prefix = cfg.str("nginx.location_prefix");
    s.upstream = cfg.str("nginx.upstream") == "proxy" ? NginxSettings::Upstream::kProxy
                                                      : NginxSettings::Upstream::kDirect;
    s.upstream_host = cfg.str("nginx.upstream_host");
    s.proxy_url = cfg.str("nginx.proxy_url");
    s.upstream_keepalive = static_cast<int>(cfg.integer("nginx.upstream_keepalive"));
    s.access_log = cfg.path("nginx.access_log");
    s.connect_timeout = cfg.duration("nginx.connect_timeout");
    s.read_timeout = cfg.duration("nginx.read_timeout");
    s.send_timeout = cfg.duration("nginx.send_timeout");
    s.max_body = cfg.size("nginx.max_body");
    s.test_command = cfg.list("nginx.test_command");
    s.reload_command = cfg.list("nginx.reload_command");
    s.command_timeout = cfg.duration("nginx.command_timeout");
    s.enabled = cfg.boolean("nginx.enabled");
    s.render_on_model_change = cfg.boolean("nginx.render_on_model_change");
    s.k8s_namespace = cfg.str("nginx.k8s_namespace");
    s.k8s_configmap = cfg.str("nginx.k8s_configmap");
    s.k8s_url_configmap = cfg.str("nginx.k8s_url_configmap");
    s.inference_service_url = cfg.str("nginx.inference_service_url");
    if (const auto problems = nginx_settings_problems(s); !problems.empty()) {
        throw ConfigError(util::join(problems, "\n"));
    }
    return s;
}

std::string render_nginx_config(const NginxSettings& s, const std::vector<ModelSpec>& models,
                                const RenderOptions& opts) {
    if (const auto problems = nginx_settings_problems(s); !problems.empty()) {
        throw ConfigError(util::join(problems, "\n"));
    }
    std::vector<const ModelSpec*> sorted;
    for (const auto& m : models) {
        if (!valid_model_name(m.name)) {
            throw ConfigError(fmt::format("models: \"{}\" is not a valid model name",
                                          util::escape_for_log(m.name)));
        }
        if (m.port && (*m.port < 1 || *m.port > 65535)) {
            throw ConfigError(
                fmt::format("models.{}.port: {} is outside 1..65535", m.name, *m.port));
        }
        sorted.push_back(&m);
    }
    std::sort(sorted.begin(), sorted.end(),
              [](const ModelSpec* a, const ModelSpec* b) { return a->name < b->name; });
    const bool proxy = s.upstream == NginxSettings::Upstream::kProxy;
    const auto prefix = normalized_prefix(s.location_prefix);
    const auto target = proxy ? parse_proxy_url(s.proxy_url) : std::nullopt;
    const bool only_running = !proxy && opts.running.has_value();

    std::string out;
    out += "# Written by `mlkeeper nginx render` from the model registry; edits are overwritten.\n";
    out += "# For the http context (e.g. /etc/nginx/conf.d/). Format of the access log:\n";
    out += "# docs/formats/nginx-access-log.md. Upstream mode: ";
    out += to_string(s.upstream);
    out += ".\n\n";
    out += kLogFormat;
    out += "\n\n";

    if (proxy) {
        out += "upstream mlkeeper_agent_proxy {\n";
        out += fmt::format("    server {};\n", target->host_port);
        if (s.upstream_keepalive > 0) {
            out += fmt::format("    keepalive {};\n", s.upstream_keepalive);
        }
        out += "}\n\n";
    } else {
        for (const auto* m : sorted) {
            if (!m->port || (only_running && opts.running->count(m->name) == 0)) {
                continue;
            }
            out += fmt::format("upstream mlkeeper_{} {{\n", m->name);
            out += fmt::format("    server {}:{};\n", s.upstream_host, *m->port);
            if (s.upstream_keepalive > 0) {
                out += fmt::format("    keepalive {};\n", s.upstream_keepalive);
            }
            out += "}\n\n";
        }
    }

    out += "server {\n";
    out += fmt::format("    listen {};\n", s.listen);
    out += fmt::format("    server_name {};\n", util::join(util::split_ws(s.server_name), " "));
    out += fmt::format("    access_log {} mlkeeper_json;\n", nginx_quote(s.access_log.string()));
    // Requests outside a model location are logged with "model": "".
    out += "    set $mlkeeper_model \"\";\n";
    out += "    default_type application/json;\n";
    // Redirects name the path only, so they stay right behind another proxy or a port mapping.
    out += "    absolute_redirect off;\n";

    for (const auto* m : sorted) {
        const auto location = fmt::format("{}/{}/", prefix, m->name);
        out += "\n";
        if (!m->port) {
            out += fmt::format(
                "    # model {}: no port in the registry, so nginx cannot route it\n", m->name);
            continue;
        }
        out += fmt::format("    location = {}/{} {{\n", prefix, m->name);
        out += fmt::format("        return 308 {}$is_args$args;\n", location);
        out += "    }\n";
        out += fmt::format("    location {} {{\n", location);
        out += fmt::format("        set $mlkeeper_model \"{}\";\n", m->name);
        if (only_running && opts.running->count(m->name) == 0) {
            out += fmt::format(
                "        return 503 '{{\"error\":{{\"code\":\"model_stopped\",\"message\":\"model "
                "{0} is not running; start it with: mlkeeper models start {0}\"}}}}\\n';\n",
                m->name);
            out += "    }\n";
            continue;
        }
        if (proxy) {
            out += fmt::format("        proxy_pass http://mlkeeper_agent_proxy{}/{}/;\n",
                               target->path, m->name);
        } else {
            out += fmt::format("        proxy_pass http://mlkeeper_{}/;\n", m->name);
        }
        render_proxy_settings(out, s, location);
        out += "    }\n";
    }

    out += "\n    location / {\n";
    out +=
        "        return 404 '{\"error\":{\"code\":\"not_found\",\"message\":\"no model is "
        "routed here; see mlkeeper nginx render\"}}\\n';\n";
    out += "    }\n";
    out += "}\n";
    return out;
}

}  // namespace mlk::homelab
