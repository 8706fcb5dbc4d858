#include "mlkeeper/health/probe_spec.hpp"
#include "mlkeeper/util/strings.hpp"

#include "mlkeeper/health/pq_lib.hpp"

#include <algorithm>
#include <cctype>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "mlkeeper/core/http_client.hpp"

namespace mlk::health {
namespace {

bool all_digits(const std::string& s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// Splits "[userinfo@]host[:port]" of an authority; the port must be 1-65535.
void parse_authority(const std::string& auth, ProbeSpec& spec, int default_port) {
    std::string hostport = auth;
    if (auto at = auth.rfind('@'); at != std::string::npos) {
        std::string info = auth.substr(0, at);
        hostport = auth.substr(at + 1);
        auto colon = info.find(':');
        spec.user = util::percent_decode(info.substr(0, colon));
        if (colon != std::string::npos) {
            spec.password = util::percent_decode(info.substr(colon + 1));
        }
    }
    std::string port;
    if (!hostport.empty() && hostport[0] == '[') {
        auto close = hostport.find(']');
        if (close == std::string::npos) {
            throw ProbeSpecError("unclosed '[' in host");
        }
        spec.host = hostport.substr(1, close - 1);
        if (close + 1 < hostport.size()) {
            if (hostport[close + 1] != ':')
                throw ProbeSpecError("junk after ']' in host");
            port = hostport.substr(close + 2);
        }
    } else {
        auto colon = hostport.find(':');
        spec.host = hostport.substr(0, colon);
        if (colon != std::string::npos)
            port = hostport.substr(colon + 1);
    }
    if (spec.host.empty()) {
        throw ProbeSpecError("missing host");
    }
    if (port.empty()) {
        if (default_port == 0)
            throw ProbeSpecError("missing port (tcp://host:port)");
        spec.port = default_port;
        return;
    }
    if (!all_digits(port) || port.size() > 5 || std::stoi(port) < 1 || std::stoi(port) > 65535) {
        throw ProbeSpecError("bad port \"" + port + "\" (1-65535)");
    }
    spec.port = std::stoi(port);
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_timeout(const std::string& text) {
    std::size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
        ++digits;
    }
    if (digits == 0 || digits > 9) {
        return std::nullopt;
    }
    const long long n = std::stoll(text.substr(0, digits));
    const std::string unit = text.substr(digits);
    long long ms = 0;
    if (unit == "ms")
        ms = n;
    else if (unit.empty() || unit == "s")
        ms = n * 1000;
    else if (unit == "m")
        ms = n * 60000;
    else
        return std::nullopt;
    if (ms <= 0 || ms > 3600 * 1000) {
        return std::nullopt;
    }
    return std::chrono::milliseconds(ms);
}

ProbeSpec parse_probe_spec(const std::string& text) {
    std::istringstream in(text);
    std::string uri;
    if (!(in >> uri)) {
        throw ProbeSpecError("empty probe");
    }
    ProbeSpec spec;
    spec.uri = uri;
    auto sep = uri.find("://");
    if (sep == std::string::npos) {
        throw ProbeSpecError("\"" + uri +
                             "\" is not a URI: use http(s)://, tcp://, redis:// or postgresql://");
    }
    std::string scheme = uri.substr(0, sep);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string rest = uri.substr(sep + 3);
    auto slash = rest.find_first_of("/?#");
    std::string authority = rest.substr(0, slash);
    std::string path = slash == std::string::npos ? "" : rest.substr(slash);
    if (scheme == "http" || scheme == "https") {
        spec.kind = ProbeKind::kHttp;
        ProbeSpec tmp;
        parse_authority(authority, tmp, scheme == "http" ? 80 : 443);
        spec.host = tmp.host;
        spec.port = tmp.port;
        spec.name = fmt::format("{} {}:{}{}", scheme, spec.host, spec.port, path);
    } else if (scheme == "tcp") {
        spec.kind = ProbeKind::kTcp;
        parse_authority(authority, spec, 0);
        if (!path.empty() && path != "/")
            throw ProbeSpecError("tcp:// takes no path");
        spec.name = fmt::format("tcp {}:{}", spec.host, spec.port);
    } else if (scheme == "redis") {
        spec.kind = ProbeKind::kRedis;
        parse_authority(authority, spec, 6379);
        if (!path.empty() && path != "/") {
            std::string db = path.substr(1);
            if (!all_digits(db) || db.size() > 4)
                throw ProbeSpecError("bad redis db \"" + db + "\"");
            spec.redis_db = std::stoi(db);
        }
        spec.name = fmt::format("redis {}:{}", spec.host, spec.port);
    } else if (scheme == "postgresql" || scheme == "postgres") {
        spec.kind = ProbeKind::kPostgres;
        char* err = nullptr;
        PQconninfoOption* opts = pq().conninfo_parse(uri.c_str(), &err);
        if (!opts) {
            std::string msg = err ? err : "invalid URI";
            pq().freemem(err);
            while (!msg.empty() && std::isspace(static_cast<unsigned char>(msg.back()))) {
                msg.pop_back();
            }
            throw ProbeSpecError(msg);
        }
        for (auto* o = opts; o->keyword; ++o) {
            if (o->val && std::string_view(o->keyword) == "host")
                spec.host = o->val;
            if (o->val && std::string_view(o->keyword) == "port" && *o->val) {
                const std::string port = o->val;
                // libpq checks the port only when connecting; say so now.
                spec.port = all_digits(port) && port.size() <= 5 ? std::stoi(port) : -1;
                if (spec.port < 1 || spec.port > 65535) {
                    pq().conninfo_free(opts);
                    throw ProbeSpecError("bad port \"" + port + "\" (1-65535)");
                }
            }
        }
        pq().conninfo_free(opts);
        if (spec.port == 0)
            spec.port = 5432;
        spec.name =
            fmt::format("postgresql {}:{}", spec.host.empty() ? "localhost" : spec.host, spec.port);
    } else {
        throw ProbeSpecError("unknown scheme \"" + scheme +
                             "\": use http, https, tcp, redis or postgresql");
    }
    std::string opt;
    while (in >> opt) {
        auto eq = opt.find('=');
        if (eq == std::string::npos) {
            throw ProbeSpecError("option \"" + opt + "\" is not key=value");
        }
        std::string key = opt.substr(0, eq), val = opt.substr(eq + 1);
        if (key == "expect") {
            if (spec.kind != ProbeKind::kHttp) {
                throw ProbeSpecError("expect= applies to http(s) probes only");
            }
            if (!all_digits(val) || val.size() != 3 || std::stoi(val) < 100 ||
                std::stoi(val) > 599) {
                throw ProbeSpecError("expect=\"" + val + "\" is not an HTTP status (100-599)");
            }
            spec.expect = std::stoi(val);
        } else if (key == "timeout") {
            auto t = parse_timeout(val);
            if (!t) {
                throw ProbeSpecError("timeout=\"" + val +
                                     "\" is not a duration like 500ms, 3s or 1m (max 1h)");
            }
            spec.timeout = *t;
        } else if (key == "name") {
            if (val.empty() || !std::all_of(val.begin(), val.end(), [](unsigned char c) {
                    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
                })) {
                throw ProbeSpecError("name=\"" + val + "\" may use only letters, digits, - _ .");
            }
            spec.name = val;
        } else {
            throw ProbeSpecError("unknown option \"" + key + "\" (expect, timeout, name)");
        }
    }
    return spec;
}

ParsedProbes parse_probe_specs(const std::vector<std::string>& entries) {
    ParsedProbes out;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        try {
            out.specs.push_back(parse_probe_spec(entries[i]));
        } catch (const ProbeSpecError& e) {
            // The entry may hold a password: show it redacted.
            out.errors.push_back(fmt::format("health.probes[{}] \"{}\": {}", i,
                                             core::redact_url(entries[i]), e.what()));
        }
    }
    for (std::size_t i = 0; i < out.specs.size(); ++i) {
        for (std::size_t j = i + 1; j < out.specs.size(); ++j) {
            if (out.specs[i].name == out.specs[j].name) {
                out.errors.push_back("health.probes: two probes are named \"" + out.specs[i].name +
                                     "\": give one a name=...");
            }
        }
    }
    return out;
}

}  // namespace mlk::health
