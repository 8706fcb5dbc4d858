#include "mlkeeper/api/router.hpp"
#include "mlkeeper/util/strings.hpp"

#include <algorithm>
#include <array>
#include <exception>
#include <set>

#include <spdlog/spdlog.h>

namespace mlk::api {
namespace {

// "/a/{x}/b" -> {"a", "{x}", "b"}; "/" -> {}; "/a/" -> {"a", ""} (an empty last segment, which
// no pattern segment matches, so a trailing slash is a different path).
std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (path.size() <= 1) {
        return out;
    }
    path.remove_prefix(1);
    for (;;) {
        const auto slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) {
            break;
        }
        path.remove_prefix(slash + 1);
    }
    return out;
}

bool is_param(std::string_view segment) {
    return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

bool valid_param_name(std::string_view name) {
    if (name.empty() || !(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'))) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    });
}

bool valid_method(std::string_view method) {
    return !method.empty() &&
           std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// The pattern with every parameter written "{}": two routes with the same shape and method
// would make a path ambiguous.
std::string shape_of(const std::vector<std::string_view>& segments) {
    std::string out;
    for (auto s : segments) {
        out += '/';
        out += is_param(s) ? std::string_view("{}") : s;
    }
    return out.empty() ? "/" : out;
}

// Orders the methods of an Allow header the way people expect to read them.
int method_rank(const std::string& m) {
    static constexpr std::array kOrder = {"GET",   "HEAD",   "POST",   "PUT",
                                          "PATCH", "DELETE", "OPTIONS"};
    for (std::size_t i = 0; i < kOrder.size(); ++i) {
        if (m == kOrder[i]) {
            return static_cast<int>(i);
        }
    }
    return static_cast<int>(kOrder.size());
}

}  // namespace

std::string Request::query_or(std::string_view key, std::string_view fallback) const {
    const auto it = query.find(std::string(key));
    return it == query.end() ? std::string(fallback) : it->second;
}

Response Response::error(int status, std::string_view code, std::string_view message) {
    Response r;
    r.status = status;
    r.body = {{"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
    return r;
}

void Router::add(Route route) {
    if (!valid_method(route.method)) {
        throw std::logic_error("api route: bad method '" + route.method + "'");
    }
    if (!route.handler) {
        throw std::logic_error("api route " + route.method + " " + route.pattern + ": no handler");
    }
    if (route.pattern.empty() || route.pattern[0] != '/') {
        throw std::logic_error("api route: pattern '" + route.pattern + "' must start with '/'");
    }
    const auto segments = split_path(route.pattern);
    std::set<std::string_view> names;
    for (auto s : segments) {
        if (s.empty()) {
            throw std::logic_error("api route: pattern '" + route.pattern +
                                   "' has an empty segment");
        }
        if (is_param(s)) {
            const auto name = s.substr(1, s.size() - 2);
            if (!valid_param_name(name) || !names.insert(name).second) {
                throw std::logic_error("api route: pattern '" + route.pattern +
                                       "' has a bad or repeated parameter '" + std::string(s) +
                                       "'");
            }
        } else if (s.find_first_of("{}") != std::string_view::npos) {
            throw std::logic_error("api route: pattern '" + route.pattern +
                                   "': '{' and '}' may only enclose a whole segment");
        }
    }
    const auto shape = shape_of(segments);
    for (const auto& r : routes_) {
        if (r.method == route.method && shape_of(split_path(r.pattern)) == shape) {
            throw std::logic_error("api route: " + route.method + " " + route.pattern +
                                   " duplicates " + r.method + " " + r.pattern);
        }
    }
    routes_.push_back(std::move(route));
}

Match Router::match(std::string_view method, std::string_view path,
                    const std::vector<RouteGroup>& groups) const {
    Match result;
    if (path.empty() || path[0] != '/') {
        result.status = 404;
        return result;
    }
    const auto segments = split_path(path);
    std::vector<std::string> allowed;
    // Among routes that fit, the one whose first parameter comes latest wins, so
    // "/models/running" beats "/models/{name}".
    std::vector<bool> best_kinds;
    for (const auto& route : routes_) {
        if (std::find(groups.begin(), groups.end(), route.group) == groups.end()) {
            continue;
        }
        const auto pattern = split_path(route.pattern);
        if (pattern.size() != segments.size()) {
            continue;
        }
        std::map<std::string, std::string> params;
        std::vector<bool> kinds;
        bool fits = true;
        for (std::size_t i = 0; i < pattern.size() && fits; ++i) {
            if (is_param(pattern[i])) {
                fits = !segments[i].empty();
                params[std::string(pattern[i].substr(1, pattern[i].size() - 2))] = segments[i];
                kinds.push_back(true);
            } else {
                fits = pattern[i] == segments[i];
                kinds.push_back(false);
            }
        }
        if (!fits) {
            continue;
        }
        if (std::find(allowed.begin(), allowed.end(), route.method) == allowed.end()) {
            allowed.push_back(route.method);
        }
        if (route.method == method && (result.route == nullptr || kinds < best_kinds)) {
            result.route = &route;
            result.params = std::move(params);
            best_kinds = std::move(kinds);
        }
    }
    if (result.route != nullptr) {
        result.status = 200;
        return result;
    }
    if (allowed.empty()) {
        result.status = 404;
        return result;
    }
    std::stable_sort(allowed.begin(), allowed.end(), [](const auto& a, const auto& b) {
        const int ra = method_rank(a);
        const int rb = method_rank(b);
        return ra != rb ? ra < rb : a < b;
    });
    result.status = 405;
    for (const auto& m : allowed) {
        result.allow += result.allow.empty() ? m : ", " + m;
    }
    return result;
}

Response Router::dispatch(const Match& m, Request& req) const {
    if (m.route == nullptr) {
        if (m.status == 405) {
            auto r = Response::error(405, "method_not_allowed",
                                     req.method + " is not allowed here; allowed: " + m.allow);
            r.headers.emplace_back("Allow", m.allow);
            return r;
        }
        return Response::error(404, "not_found", "no such path");
    }
    req.params = m.params;
    try {
        return m.route->handler(req);
    } catch (const ApiError& e) {
        return Response::error(e.status(), e.code(), e.what());
    } catch (const nlohmann::json::exception& e) {
        // nlohmann's messages start with "[json.exception.parse_error.101] "; the rest says what
        // was wrong with the client's document.
        std::string_view what = e.what();
        if (!what.empty() && what[0] == '[') {
            const auto close = what.find("] ");
            if (close != std::string_view::npos) {
                what.remove_prefix(close + 2);
            }
        }
        return Response::error(400, "bad_request", "bad JSON: " + std::string(what));
    } catch (const std::exception& e) {
        spdlog::error("api: {} {} failed: {}", req.method, util::escape_for_log(req.path),
                      util::escape_for_log(e.what()));
    } catch (...) {
        spdlog::error("api: {} {} failed with a non-standard exception", req.method,
                      util::escape_for_log(req.path));
    }
    return Response::error(500, "internal", "internal error; the server log has the details");
}

}  // namespace mlk::api
