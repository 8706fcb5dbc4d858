#include "mlkeeper/api/router.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace mlk::api {
namespace {

const std::vector<RouteGroup> kAll = {RouteGroup::kCommon, RouteGroup::kShutdown,
                                      RouteGroup::kModels, RouteGroup::kMonitor};

Handler echo(std::string tag) {
    return [tag](const Request& req) {
        Response r;
        r.body = {{"tag", tag}};
        for (const auto& [k, v] : req.params) {
            r.body["params"][k] = v;
        }
        return r;
    };
}

Route route(std::string method, std::string pattern, RouteGroup group = RouteGroup::kModels,
            Handler h = nullptr) {
    Route r;
    r.method = std::move(method);
    r.pattern = pattern;
    r.group = group;
    r.handler = h ? std::move(h) : echo(r.method + " " + pattern);
    return r;
}

Router models_router() {
    Router router;
    router.add(route("GET", "/models"));
    router.add(route("GET", "/models/running"));
    router.add(route("GET", "/models/{name}"));
    router.add(route("POST", "/models/{name}/start"));
    router.add(route("POST", "/models/{name}/stop"));
    router.add(route("GET", "/shutdown", RouteGroup::kShutdown));
    router.add(route("POST", "/shutdown", RouteGroup::kShutdown));
    router.add(route("DELETE", "/shutdown", RouteGroup::kShutdown));
    return router;
}

TEST(Router, MatchesLiteralAndParamSegments) {
    const auto router = models_router();
    auto m = router.match("GET", "/models/llama3", kAll);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.status, 200);
    EXPECT_EQ(m.route->pattern, "/models/{name}");
    EXPECT_EQ(m.params.at("name"), "llama3");

    m = router.match("POST", "/models/llama3/start", kAll);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/models/{name}/start");
    EXPECT_EQ(m.params.at("name"), "llama3");
}

TEST(Router, LiteralBeatsParameter) {
    const auto router = models_router();
    const auto m = router.match("GET", "/models/running", kAll);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/models/running");
    EXPECT_TRUE(m.params.empty());
}

TEST(Router, LiteralBeatsParameterWhicheverWasAddedFirst) {
    Router router;
    router.add(route("GET", "/a/{x}/c"));
    router.add(route("GET", "/a/b/{y}"));
    const auto m = router.match("GET", "/a/b/c", kAll);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/a/b/{y}");
    EXPECT_EQ(m.params.at("y"), "c");
}

TEST(Router, UnknownPathIs404) {
    const auto router = models_router();
    for (const char* path : {"/nope", "/models/a/b/c", "/", "", "models", "/models/", "//models",
                             "/models/x/start/", "/Models"}) {
        const auto m = router.match("GET", path, kAll);
        EXPECT_EQ(m.route, nullptr) << path;
        EXPECT_EQ(m.status, 404) << path;
    }
}

TEST(Router, EmptyParameterDoesNotMatch) {
    const auto router = models_router();
    const auto m = router.match("POST", "/models//start", kAll);
    EXPECT_EQ(m.route, nullptr);
    EXPECT_EQ(m.status, 404);
}

TEST(Router, WrongMethodIs405WithAllow) {
    const auto router = models_router();
    auto m = router.match("PUT", "/shutdown", kAll);
    EXPECT_EQ(m.route, nullptr);
    EXPECT_EQ(m.status, 405);
    EXPECT_EQ(m.allow, "GET, POST, DELETE");

    m = router.match("DELETE", "/models/llama3/start", kAll);
    EXPECT_EQ(m.status, 405);
    EXPECT_EQ(m.allow, "POST");

    // Both /models/running and /models/{name} fit; each method is listed once.
    m = router.match("POST", "/models/running", kAll);
    EXPECT_EQ(m.status, 405);
    EXPECT_EQ(m.allow, "GET");
}

TEST(Router, OnlyTheGivenGroupsAreSearched) {
    const auto router = models_router();
    auto m = router.match("GET", "/shutdown", {RouteGroup::kModels, RouteGroup::kCommon});
    EXPECT_EQ(m.status, 404);
    m = router.match("GET", "/models", {RouteGroup::kShutdown});
    EXPECT_EQ(m.status, 404);
    m = router.match("GET", "/shutdown", {RouteGroup::kShutdown});
    EXPECT_EQ(m.status, 200);
    m = router.match("GET", "/models", {});
    EXPECT_EQ(m.status, 404);
}

TEST(Router, RejectsDuplicatesAndMalformedPatterns) {
    Router router;
    router.add(route("GET", "/models/{name}"));
    EXPECT_THROW(router.add(route("GET", "/models/{name}")), std::logic_error);
    // The same shape with another parameter name would be ambiguous.
    EXPECT_THROW(router.add(route("GET", "/models/{id}")), std::logic_error);
    // A duplicate in another group is still a duplicate.
    EXPECT_THROW(router.add(route("GET", "/models/{name}", RouteGroup::kMonitor)),
                 std::logic_error);
    EXPECT_NO_THROW(router.add(route("POST", "/models/{name}")));

    for (const char* bad : {"", "models", "/a//b", "/a/", "/{}", "/{Name}", "/{1x}", "/a{x}",
                            "/{x}/{x}", "/x}", "/{a-b}"}) {
        EXPECT_THROW(router.add(route("GET", bad)), std::logic_error) << bad;
    }
    EXPECT_THROW(router.add(route("get", "/lower")), std::logic_error);
    EXPECT_THROW(router.add(route("", "/empty")), std::logic_error);
    Route no_handler = route("GET", "/h");
    no_handler.handler = nullptr;
    EXPECT_THROW(router.add(no_handler), std::logic_error);
    EXPECT_EQ(router.routes().size(), 2u);
}

TEST(Router, RootPatternMatchesOnlyRoot) {
    Router router;
    router.add(route("GET", "/"));
    EXPECT_EQ(router.match("GET", "/", kAll).status, 200);
    EXPECT_EQ(router.match("GET", "/x", kAll).status, 404);
}

TEST(Router, DispatchRunsTheHandlerWithParams) {
    const auto router = models_router();
    Request req;
    req.method = "POST";
    req.path = "/models/llama3/start";
    const auto m = router.match(req.method, req.path, kAll);
    const auto res = router.dispatch(m, req);
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.body["tag"], "POST /models/{name}/start");
    EXPECT_EQ(res.body["params"]["name"], "llama3");
    EXPECT_EQ(req.params.at("name"), "llama3");
}

TEST(Router, DispatchOfNoMatchGivesJsonErrors) {
    const auto router = models_router();
    Request req;
    req.method = "PATCH";
    req.path = "/shutdown";
    auto res = router.dispatch(router.match(req.method, req.path, kAll), req);
    EXPECT_EQ(res.status, 405);
    EXPECT_EQ(res.body["error"]["code"], "method_not_allowed");
    ASSERT_EQ(res.headers.size(), 1u);
    EXPECT_EQ(res.headers[0].first, "Allow");
    EXPECT_EQ(res.headers[0].second, "GET, POST, DELETE");

    req.path = "/nothing";
    res = router.dispatch(router.match(req.method, req.path, kAll), req);
    EXPECT_EQ(res.status, 404);
    EXPECT_EQ(res.body["error"]["code"], "not_found");
}

Router throwing_router(Handler h) {
    Router router;
    router.add(route("POST", "/t", RouteGroup::kCommon, std::move(h)));
    return router;
}

Response run(const Router& router, std::string body = "") {
    Request req;
    req.method = "POST";
    req.path = "/t";
    req.body = std::move(body);
    return router.dispatch(router.match(req.method, req.path, kAll), req);
}

TEST(Router, ApiErrorBecomesItsStatusAndCode) {
    const auto router = throwing_router([](const Request&) -> Response {
        throw ApiError(409, "conflict", "model llama3 is stopping");
    });
    const auto res = run(router);
    EXPECT_EQ(res.status, 409);
    EXPECT_EQ(res.body["error"]["code"], "conflict");
    EXPECT_EQ(res.body["error"]["message"], "model llama3 is stopping");
}

TEST(Router, JsonErrorsBecome400) {
    const auto router = throwing_router([](const Request& req) {
        const auto doc = nlohmann::json::parse(req.body);
        Response r;
        r.body = {{"n", doc.at("n").get<int>()}};
        return r;
    });
    auto res = run(router, "{not json");
    EXPECT_EQ(res.status, 400);
    EXPECT_EQ(res.body["error"]["code"], "bad_request");
    const std::string message = res.body["error"]["message"];
    EXPECT_EQ(message.find("[json.exception"), std::string::npos) << message;
    EXPECT_NE(message.find("parse error"), std::string::npos) << message;

    res = run(router, R"({"n": "five"})");
    EXPECT_EQ(res.status, 400);
    res = run(router, R"({"m": 1})");
    EXPECT_EQ(res.status, 400);
    res = run(router, R"({"n": 5})");
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.body["n"], 5);
}

TEST(Router, OtherExceptionsBecomeAGeneric500) {
    const auto router = throwing_router(
        [](const Request&) -> Response { throw std::runtime_error("secret detail /etc/shadow"); });
    const auto res = run(router);
    EXPECT_EQ(res.status, 500);
    EXPECT_EQ(res.body["error"]["code"], "internal");
    EXPECT_EQ(res.body.dump().find("secret"), std::string::npos);

    const auto odd = throwing_router([](const Request&) -> Response { throw 42; });
    EXPECT_EQ(run(odd).status, 500);
}

TEST(RouterRequest, QueryOr) {
    Request req;
    req.query["wait"] = "false";
    req.query["empty"] = "";
    EXPECT_EQ(req.query_or("wait", "true"), "false");
    EXPECT_EQ(req.query_or("empty", "x"), "");
    EXPECT_EQ(req.query_or("timeout", "60"), "60");
}

TEST(RouterResponse, ErrorShape) {
    const auto r = Response::error(429, "rate_limited", "slow down");
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.body, nlohmann::json::parse(
                          R"({"error": {"code": "rate_limited", "message": "slow down"}})"));
    EXPECT_TRUE(r.headers.empty());
}

}  // namespace
}  // namespace mlk::api
