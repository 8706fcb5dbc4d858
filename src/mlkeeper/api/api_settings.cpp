#include "mlkeeper/api/api_settings.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdexcept>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::api {
namespace {

constexpr std::string_view kPrefix = "/api/v1";

[[noreturn]] void fail(std::string_view key, const std::string& what) {
    throw ConfigError("api." + std::string(key) + ": " + what);
}

bool is_any_address(const std::string& address) {
    return address == "0.0.0.0" || address == "::";
}

template <typename T>
void check_range(std::string_view key, T value, T min, T max, const std::string& unit) {
    if (value < min || value > max) {
        fail(key, std::to_string(value) + unit + " is out of range (" + std::to_string(min) + ".." +
                      std::to_string(max) + unit + ")");
    }
}

}  // namespace

HostPort parse_host_port(std::string_view text) {
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw std::invalid_argument("'" + std::string(text) +
                                        "' is not [IPV6]:PORT, e.g. [::1]:5001");
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        in6_addr a6{};
        if (::inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) {
            throw std::invalid_argument("'" + std::string(host) + "' is not an IPv6 address");
        }
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            throw std::invalid_argument("'" + std::string(text) +
                                        "' has no port; write HOST:PORT, e.g. 127.0.0.1:5001");
        }
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            throw std::invalid_argument("write an IPv6 address in brackets: [" + std::string(host) +
                                        "]:" + std::string(port));
        }
    }
    const auto number = util::parse_int64(port);
    if (port.empty() || port[0] == '+' || port[0] == '-' || !number || *number < 1 ||
        *number > 65535) {
        throw std::invalid_argument("port '" + std::string(port) + "' is not 1..65535");
    }
    HostPort out;
    out.port = static_cast<int>(*number);
    if (host == "localhost") {
        out.address = "127.0.0.1";
        return out;
    }
    const std::string h(host);
    char buf[INET6_ADDRSTRLEN] = {};
    in_addr a4{};
    in6_addr a6{};
    if (::inet_pton(AF_INET, h.c_str(), &a4) == 1) {
        ::inet_ntop(AF_INET, &a4, buf, sizeof(buf));
    } else if (::inet_pton(AF_INET6, h.c_str(), &a6) == 1 && text.front() == '[') {
        ::inet_ntop(AF_INET6, &a6, buf, sizeof(buf));
    } else {
        throw std::invalid_argument(
            "'" + h + "' is not an IP address (use 127.0.0.1, [::1], 0.0.0.0 or localhost)");
    }
    out.address = buf;
    return out;
}

bool is_loopback(std::string_view address) {
    const std::string a(address);
    in_addr a4{};
    if (::inet_pton(AF_INET, a.c_str(), &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    in6_addr a6{};
    if (::inet_pton(AF_INET6, a.c_str(), &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) {
            return true;
        }
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

ApiSettings api_settings_from(const ApiConfigValues& v) {
    ApiSettings s;
    struct Wanted {
        std::string_view key;
        std::string_view name;
        const std::string* value;
        std::vector<RouteGroup> groups;
        std::string prefix;
    };
    std::vector<Wanted> wanted;
    if (!util::trim(v.listen).empty()) {
        wanted.push_back({"listen",
                          "all",
                          &v.listen,
                          {RouteGroup::kCommon, RouteGroup::kShutdown, RouteGroup::kModels,
                           RouteGroup::kMonitor},
                          std::string(kPrefix)});
    } else {
        wanted.push_back({"listen_shutdown",
                          "shutdown",
                          &v.listen_shutdown,
                          {RouteGroup::kShutdown, RouteGroup::kCommon},
                          ""});
        wanted.push_back({"listen_models",
                          "models",
                          &v.listen_models,
                          {RouteGroup::kModels, RouteGroup::kCommon},
                          ""});
        wanted.push_back({"listen_monitor",
                          "monitor",
                          &v.listen_monitor,
                          {RouteGroup::kMonitor, RouteGroup::kCommon},
                          ""});
    }
    s.tokens_file = std::string(util::trim(v.tokens_file));
    s.tls_cert = std::string(util::trim(v.tls_cert));
    s.tls_key = std::string(util::trim(v.tls_key));

    std::vector<std::string_view> keys;  // beside s.listeners, for messages
    for (const auto& w : wanted) {
        const auto text = util::trim(*w.value);
        if (text.empty()) {
            continue;
        }
        HostPort hp;
        try {
            hp = parse_host_port(text);
        } catch (const std::invalid_argument& e) {
            fail(w.key, e.what());
        }
        if (!is_loopback(hp.address) && s.tokens_file.empty()) {
            fail(w.key, std::string(text) +
                            " is not a loopback address, so anyone who can reach it could call "
                            "the API; set api.tokens_file (or listen on 127.0.0.1)");
        }
        for (std::size_t i = 0; i < s.listeners.size(); ++i) {
            const auto& other = s.listeners[i];
            if (other.port == hp.port &&
                (other.address == hp.address || is_any_address(other.address) ||
                 is_any_address(hp.address))) {
                fail(w.key, std::string(text) + " is the port api." + std::string(keys[i]) +
                                " already uses");
            }
        }
        s.listeners.push_back({std::string(w.name), hp.address, hp.port, w.groups, w.prefix});
        keys.push_back(w.key);
    }

    if (!s.tls_cert.empty() && s.tls_key.empty()) {
        fail("tls_key", "api.tls_cert is set but api.tls_key is not; TLS needs both");
    }
    if (s.tls_cert.empty() && !s.tls_key.empty()) {
        fail("tls_cert", "api.tls_key is set but api.tls_cert is not; TLS needs both");
    }

    check_range<std::uint64_t>("max_body", v.max_body, 1024, 64ull * 1024 * 1024, " bytes");
    check_range<std::uint64_t>("max_header", v.max_header, 1024, 1024 * 1024, " bytes");
    check_range<std::int64_t>("read_timeout", v.read_timeout.count(), 1, 300, " s");
    check_range<std::int64_t>("write_timeout", v.write_timeout.count(), 1, 300, " s");
    check_range<std::int64_t>("idle_timeout", v.idle_timeout.count(), 1, 3600, " s");
    check_range<std::int64_t>("workers", v.workers, 1, 256, "");
    check_range<std::int64_t>("rate_per_minute", v.rate_per_minute, 0, 100000, "");
    s.max_body = static_cast<std::size_t>(v.max_body);
    s.max_header = static_cast<std::size_t>(v.max_header);
    s.read_timeout = v.read_timeout;
    s.write_timeout = v.write_timeout;
    s.idle_timeout = v.idle_timeout;
    s.workers = static_cast<int>(v.workers);
    s.rate_per_minute = static_cast<int>(v.rate_per_minute);
    return s;
}

ApiSettings api_settings_from(const core::Config& config) {
    ApiConfigValues v;
    v.listen = config.str("api.listen");
    v.listen_shutdown = config.str("api.listen_shutdown");
    v.listen_models = config.str("api.listen_models");
    v.listen_monitor = config.str("api.listen_monitor");
    v.tokens_file = config.str("api.tokens_file");
    v.tls_cert = config.str("api.tls_cert");
    v.tls_key = config.str("api.tls_key");
    v.max_body = config.size("api.max_body");
    v.max_header = config.size("api.max_header");
    v.read_timeout = config.duration("api.read_timeout");
    v.write_timeout = config.duration("api.write_timeout");
    v.idle_timeout = config.duration("api.idle_timeout");
    v.workers = config.integer("api.workers");
    v.rate_per_minute = config.integer("api.rate_per_minute");
    return api_settings_from(v);
}

}  // namespace mlk::api
