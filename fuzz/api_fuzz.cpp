// libFuzzer target for the REST API server: arbitrary bytes arrive as what a client sent on one
// connection (one request, several pipelined ones, or garbage) and go through cpp-httplib's real
// request parsing and our stream limits, routing, authentication, rate limiting and dispatch.
//
// Built and run by scripts/fuzz-api (ctest: api_fuzz). By hand, from the repository root:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
//     -DMLK_VERSION='"fuzz"' -DMLK_GIT_HASH='"fuzz"' -DMLK_BUILD_TYPE='"fuzz"' \
//     fuzz/api_fuzz.cpp src/mlkeeper/api/router.cpp src/mlkeeper/api/auth.cpp \
//     src/mlkeeper/api/rate_limit.cpp src/mlkeeper/api/api_settings.cpp \
//     src/mlkeeper/api/server.cpp src/mlkeeper/core/version.cpp src/mlkeeper/core/curl_lib.cpp \
//     src/mlkeeper/core/config.cpp src/mlkeeper/core/config_schema.cpp \
//     src/mlkeeper/core/env_file.cpp src/mlkeeper/util/sha256.cpp src/mlkeeper/util/fs_ops.cpp \
//     src/mlkeeper/util/strings.cpp src/mlkeeper/util/units.cpp \
//     -lcpp-httplib -lssl -lcrypto -lspdlog -lfmt -lsqlite3 -larchive -lsodium -lzstd -lz -ldl \
//     -pthread -o /tmp/api_fuzz
//   /tmp/api_fuzz -max_total_time=30
//
// cpp-httplib's Server::process_request() is protected; ApiServer::handle_raw() reaches it the
// way cpp-httplib's own test/fuzzing/server_fuzzer.cc does (a subclass fed from a Stream over
// memory), through the same hooks and stream the sockets use, so the fuzzer covers production
// code rather than a copy of it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "mlkeeper/api/api_settings.hpp"
#include "mlkeeper/api/auth.hpp"
#include "mlkeeper/api/router.hpp"
#include "mlkeeper/api/server.hpp"
#include "mlkeeper/util/strings.hpp"

namespace {

using namespace mlk::api;

Route route(std::string method, std::string pattern, RouteGroup group, Access access, Audit audit,
            Handler h) {
    Route r;
    r.method = std::move(method);
    r.pattern = std::move(pattern);
    r.group = group;
    r.access = access;
    r.audit = audit;
    r.handler = std::move(h);
    return r;
}

// Routes shaped like the real ones: parameters, query values, JSON bodies, every error path.
Router make_router() {
    Router router;
    router.add(
        route("GET", "/models", RouteGroup::kModels, Access::kRead, Audit::kNo, [](const Request&) {
            Response r;
            r.body = {{"models", nlohmann::json::array()}};
            return r;
        }));
    router.add(route("GET", "/models/running", RouteGroup::kModels, Access::kRead, Audit::kNo,
                     [](const Request&) { return Response{}; }));
    router.add(route("GET", "/models/{name}", RouteGroup::kModels, Access::kRead, Audit::kNo,
                     [](const Request& req) {
                         if (req.params.at("name") != "llama3") {
                             throw ApiError(404, "not_found", "no model " + req.params.at("name"));
                         }
                         Response r;
                         r.body = {{"name", req.params.at("name")}, {"q", req.query}};
                         return r;
                     }));
    router.add(route("POST", "/models/{name}/start", RouteGroup::kModels, Access::kAdmin,
                     Audit::kYes, [](const Request& req) {
                         const auto t = mlk::util::parse_int64(req.query_or("timeout", "60"));
                         if (!t || *t < 1 || *t > 3600) {
                             throw ApiError(400, "invalid", "timeout must be 1..3600");
                         }
                         Response r;
                         r.body = {{"result", "started"}, {"name", req.params.at("name")}};
                         if (!req.body.empty()) {
                             r.body["doc"] = nlohmann::json::parse(req.body);
                         }
                         return r;
                     }));
    router.add(route("POST", "/shutdown", RouteGroup::kShutdown, Access::kAdmin, Audit::kYes,
                     [](const Request& req) {
                         const auto doc = nlohmann::json::parse(req.body);
                         Response r;
                         r.status = 201;
                         r.body = {{"delay", doc.at("delay_minutes").get<int>()}};
                         return r;
                     }));
    router.add(route("DELETE", "/shutdown", RouteGroup::kShutdown, Access::kAdmin, Audit::kYes,
                     [](const Request&) -> Response {
                         throw ApiError(404, "not_found", "no shutdown scheduled");
                     }));
    router.add(route("GET", "/boom", RouteGroup::kMonitor, Access::kRead, Audit::kNo,
                     [](const Request&) -> Response { throw std::runtime_error("boom"); }));
    return router;
}

struct World {
    Router router = make_router();
    std::unique_ptr<ApiServer> three_ports;  // the seeds' layout, no authentication
    std::unique_ptr<ApiServer> single_port;  // /api/v1 prefix, tokens
};

World* world = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);
    world = new World;
    ApiConfigValues three;
    ApiSettings s = api_settings_from(three);
    s.max_body = 2048;
    s.max_header = 1024;
    world->three_ports =
        std::make_unique<ApiServer>(s, world->router, std::nullopt, [](const AuditRecord&) {});
    ApiConfigValues one;
    one.listen = "127.0.0.1:8080";
    s = api_settings_from(one);
    s.max_body = 2048;
    s.max_header = 1024;
    s.rate_per_minute = 5;
    auto tokens = TokenSet::parse(
        "admin admin admin-token-0123456789\nreader read read-token-0123456789\n", "fuzz");
    world->single_port =
        std::make_unique<ApiServer>(s, world->router, std::move(tokens), [](const AuditRecord&) {});
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    // The first byte picks a listener; the rest is the connection's bytes.
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    const unsigned pick = data[0] % 4;
    const std::string out = pick < 3 ? world->three_ports->handle_raw(pick, bytes)
                                     : world->single_port->handle_raw(0, bytes);
    // Whatever came in, every answer is a status line with a JSON body (or nothing at all).
    if (!out.empty() && out.rfind("HTTP/1.1 ", 0) != 0) {
        __builtin_trap();
    }
    return 0;
}
