#include "mlkeeper/api/shutdown_routes.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <regex>
#include <string>
#include <system_error>

namespace mlk::api {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const homelab::SysTime kNow = homelab::SysTime(std::chrono::seconds(1'795'356'000));  // 2026-11-22

homelab::ProcReader fake_proc(std::map<std::string, std::string> files) {
    return homelab::ProcReader("/p", [files](const std::filesystem::path& p) {
        const auto it = files.find(p.string());
        if (it == files.end()) {
            throw std::system_error(ENOENT, std::generic_category(), "cannot open " + p.string());
        }
        return it->second;
    });
}

class ShutdownRoutesTest : public ::testing::Test {
  protected:
    explicit ShutdownRoutesTest(
        homelab::ProcReader proc = fake_proc({{"/p/uptime", "3723.50 100.00\n"},
                                              {"/p/stat", "cpu 1 2 3\nbtime 1795352276\n"},
                                              {"/p/loadavg", "0.10 0.20 0.30 1/100 5\n"}})) {
        homelab::ShutdownSettings settings;
        settings.max_delay = std::chrono::minutes(10080);
        homelab::ShutdownSeams seams;
        seams.now = [] { return kNow; };
        seams.power_off = [this](const std::vector<std::string>&, const util::RunOptions&) {
            ++power_offs_;
            return util::RunResult{};
        };
        seams.boot = [] { return homelab::BootIdentity{std::string("b"), std::nullopt}; };
        service_ = std::make_unique<homelab::ShutdownService>(settings, nullptr, seams);
        add_shutdown_routes(router_, *service_, std::move(proc));
    }
    ~ShutdownRoutesTest() override { service_.reset(); }

    Response call(const std::string& method, const std::string& path, const std::string& body = "",
                  const std::string& principal = "admin") {
        auto m = router_.match(method, path, {RouteGroup::kShutdown});
        Request req;
        req.method = method;
        req.path = path;
        req.body = body;
        req.client = "127.0.0.1:40000";
        req.principal = principal;
        if (m.route == nullptr) {
            return Response::error(m.status, "no_route", path);
        }
        req.params = m.params;
        return router_.dispatch(m, req);
    }
    static std::string code(const Response& r) {
        return r.body.at("error").at("code").get<std::string>();
    }
    static std::string message(const Response& r) {
        return r.body.at("error").at("message").get<std::string>();
    }

    Router router_;
    std::atomic<int> power_offs_{0};
    std::unique_ptr<homelab::ShutdownService> service_;
};

class ShutdownRoutesBrokenProcTest : public ShutdownRoutesTest {
  protected:
    ShutdownRoutesBrokenProcTest() : ShutdownRoutesTest(fake_proc({})) {}
};

TEST_F(ShutdownRoutesTest, RegistersFourRoutesWithTheirAccess) {
    ASSERT_EQ(router_.routes().size(), 4u);
    std::map<std::string, const Route*> by;
    for (const auto& r : router_.routes()) {
        by[r.method + " " + r.pattern] = &r;
        EXPECT_EQ(r.group, RouteGroup::kShutdown);
    }
    ASSERT_TRUE(by.count("POST /shutdown"));
    ASSERT_TRUE(by.count("DELETE /shutdown"));
    ASSERT_TRUE(by.count("GET /shutdown"));
    ASSERT_TRUE(by.count("GET /uptime"));
    EXPECT_EQ(by["POST /shutdown"]->access, Access::kAdmin);
    EXPECT_EQ(by["POST /shutdown"]->audit, Audit::kYes);
    EXPECT_EQ(by["DELETE /shutdown"]->access, Access::kAdmin);
    EXPECT_EQ(by["DELETE /shutdown"]->audit, Audit::kYes);
    EXPECT_EQ(by["GET /shutdown"]->access, Access::kRead);
    EXPECT_EQ(by["GET /shutdown"]->audit, Audit::kNo);
    EXPECT_EQ(by["GET /uptime"]->access, Access::kRead);
}

TEST_F(ShutdownRoutesTest, ScheduleReturnsTheContractObject) {
    auto r = call("POST", "/shutdown", R"({"delay_minutes": 30, "reason": "nightly"})");
    ASSERT_EQ(r.status, 201) << r.body.dump();
    const json expected = {{"shutdown",
                            {{"at", "2026-11-22T14:30:00Z"},
                             {"delay_minutes", 30},
                             {"reason", "nightly"},
                             {"requested_by", "admin"},
                             {"created_at", "2026-11-22T14:00:00Z"}}}};
    EXPECT_EQ(r.body, expected);

    auto g = call("GET", "/shutdown");
    EXPECT_EQ(g.status, 200);
    EXPECT_EQ(g.body, expected);
}

TEST_F(ShutdownRoutesTest, RequestedByFallsBackToTheClient) {
    auto r = call("POST", "/shutdown", R"({"delay_minutes": 5})", "");
    ASSERT_EQ(r.status, 201);
    EXPECT_EQ(r.body["shutdown"]["requested_by"], "127.0.0.1:40000");
    EXPECT_EQ(r.body["shutdown"]["reason"], "");
}

TEST_F(ShutdownRoutesTest, ConflictThenReplace) {
    ASSERT_EQ(call("POST", "/shutdown", R"({"delay_minutes": 30})").status, 201);
    auto c = call("POST", "/shutdown", R"({"delay_minutes": 10, "replace": false})");
    EXPECT_EQ(c.status, 409);
    EXPECT_EQ(code(c), "conflict");
    EXPECT_NE(message(c).find("2026-11-22T14:30:00Z"), std::string::npos) << message(c);
    EXPECT_EQ(service_->current()->delay, std::chrono::minutes(30));

    auto r = call("POST", "/shutdown", R"({"delay_minutes": 10, "replace": true, "reason": null})");
    ASSERT_EQ(r.status, 200) << r.body.dump();
    EXPECT_EQ(r.body["shutdown"]["at"], "2026-11-22T14:10:00Z");
    EXPECT_EQ(r.body["replaced"]["at"], "2026-11-22T14:30:00Z");
    EXPECT_EQ(service_->current()->delay, std::chrono::minutes(10));
}

TEST_F(ShutdownRoutesTest, MalformedBodiesAreBadRequests) {
    for (const char* body :
         {"", "{", "not json", "[]", "30", "null", R"({"reason": "x"})",
          R"({"delay_minutes": "30"})", R"({"delay_minutes": 30.5})", R"({"delay_minutes": true})",
          R"({"delay_minutes": null})", R"({"delay_minutes": 5, "reason": 7})",
          R"({"delay_minutes": 5, "replace": "yes"})", R"({"delay_minutes": 5, "delay": 5})"}) {
        auto r = call("POST", "/shutdown", body);
        EXPECT_EQ(r.status, 400) << body;
        EXPECT_EQ(code(r), "bad_request") << body << " " << r.body.dump();
    }
    EXPECT_EQ(service_->current(), std::nullopt);
}

TEST_F(ShutdownRoutesTest, OutOfRangeIsInvalid) {
    const std::string long_reason(201, 'x');
    for (const std::string& body :
         {std::string(R"({"delay_minutes": -1})"), std::string(R"({"delay_minutes": 10081})"),
          std::string(R"({"delay_minutes": 18446744073709551615})"),
          std::string(R"({"delay_minutes": -9223372036854775808})"),
          R"({"delay_minutes": 5, "reason": ")" + long_reason + "\"}",
          std::string(R"({"delay_minutes": 5, "reason": "two\nlines"})"),
          std::string(R"({"delay_minutes": 5, "reason": "bell\u0007"})")}) {
        auto r = call("POST", "/shutdown", body);
        EXPECT_EQ(r.status, 400) << body;
        EXPECT_EQ(code(r), "invalid") << body << " " << r.body.dump();
    }
    EXPECT_EQ(service_->current(), std::nullopt);
    // The bounds themselves are fine; 0 powers off at once.
    EXPECT_EQ(call("POST", "/shutdown", R"({"delay_minutes": 10080})").status, 201);
    EXPECT_EQ(call("POST", "/shutdown", R"({"delay_minutes": 0, "replace": true})").status, 200);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (power_offs_ == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(power_offs_.load(), 1);
}

TEST_F(ShutdownRoutesTest, CancelAndNothingToCancel) {
    auto none = call("DELETE", "/shutdown");
    EXPECT_EQ(none.status, 404);
    EXPECT_EQ(code(none), "not_found");

    ASSERT_EQ(call("POST", "/shutdown", R"({"delay_minutes": 30, "reason": "r"})").status, 201);
    auto c = call("DELETE", "/shutdown");
    ASSERT_EQ(c.status, 200);
    EXPECT_EQ(c.body["cancelled"]["at"], "2026-11-22T14:30:00Z");
    EXPECT_EQ(c.body["cancelled"]["reason"], "r");
    EXPECT_EQ(call("GET", "/shutdown").body, json({{"shutdown", nullptr}}));
    EXPECT_EQ(call("DELETE", "/shutdown").status, 404);
}

TEST_F(ShutdownRoutesTest, Uptime) {
    auto r = call("GET", "/uptime");
    ASSERT_EQ(r.status, 200) << r.body.dump();
    EXPECT_DOUBLE_EQ(r.body["uptime_seconds"].get<double>(), 3723.5);
    EXPECT_EQ(r.body["boot_time"], "2026-11-22T12:57:56Z");
    EXPECT_EQ(r.body["load_average"], json({0.1, 0.2, 0.3}));
}

TEST_F(ShutdownRoutesBrokenProcTest, UnreadableProcIsAnInternalError) {
    auto r = call("GET", "/uptime");
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(code(r), "internal");
}

TEST(ShutdownRoutesJson, TimesAreWholeSecondRfc3339) {
    homelab::ScheduledShutdown s;
    s.created_at = kNow + 999ms;
    s.at = kNow + 30min + 999ms;
    s.delay = std::chrono::minutes(30);
    const auto j = shutdown_to_json(s);
    const std::regex rfc3339(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)");
    EXPECT_TRUE(std::regex_match(j["at"].get<std::string>(), rfc3339)) << j.dump();
    EXPECT_EQ(j["created_at"], "2026-11-22T14:00:00Z");
    EXPECT_EQ(j.size(), 5u);
}

TEST(ShutdownRoutesReal, UptimeFromThisMachine) {
    homelab::ShutdownSeams seams;
    seams.power_off = [](const std::vector<std::string>&, const util::RunOptions&) {
        return util::RunResult{};
    };
    homelab::ShutdownService service(homelab::ShutdownSettings{}, nullptr, seams);
    Router router;
    add_shutdown_routes(router, service);
    auto m = router.match("GET", "/uptime", {RouteGroup::kShutdown});
    ASSERT_NE(m.route, nullptr);
    Request req;
    auto r = router.dispatch(m, req);
    ASSERT_EQ(r.status, 200) << r.body.dump();
    EXPECT_GT(r.body["uptime_seconds"].get<double>(), 0.0);
    EXPECT_EQ(r.body["load_average"].size(), 3u);
}

}  // namespace
}  // namespace mlk::api
