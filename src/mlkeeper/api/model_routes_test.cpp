#include "mlkeeper/api/model_routes.hpp"
#include "support/fake_model_backend.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlk::api {
namespace {

using namespace std::chrono_literals;
using homelab::BackendState;
using homelab::BackendStatus;
using homelab::ModelBackend;
using homelab::ModelManager;
using homelab::ModelSpec;

using testing::FakeBackend;
using testing::FakeProc;

ModelSpec spec(const std::string& name) {
    ModelSpec s;
    s.name = name;
    s.command = {"/bin/true"};
    s.port = 8001;
    s.health_url = "http://fake/" + name;
    s.start_timeout = 5s;
    s.stop_timeout = 2s;
    return s;
}

struct Outcome {
    int status = 0;
    nlohmann::json body;
    std::string code;     // error code, "" on success
    std::string message;  // error message
};

class ModelRoutesTest : public ::testing::Test {
  protected:
    ModelRoutesTest() {
        for (const char* n : {"llama", "mistral", "qwen"}) {
            procs_[n] = std::make_shared<FakeProc>();
        }
        mgr_ = std::make_unique<ModelManager>(
            std::vector<ModelSpec>{spec("qwen"), spec("llama"), spec("mistral")},
            [this](const ModelSpec& s) { return std::make_unique<FakeBackend>(procs_.at(s.name)); },
            [this](const std::string& url, std::chrono::milliseconds) {
                FakeProc& p = *procs_.at(url.substr(std::string("http://fake/").size()));
                std::lock_guard lk(p.mu);
                return p.running && p.healthy;
            });
        add_model_routes(router_, *mgr_);
    }

    const Route* find(const std::string& method, const std::string& pattern) const {
        for (const auto& r : router_.routes()) {
            if (r.method == method && r.pattern == pattern) {
                return &r;
            }
        }
        return nullptr;
    }

    // Calls the route's handler the way Router::dispatch would, turning ApiError into a status.
    Outcome call(const std::string& method, const std::string& pattern, const std::string& name,
                 std::map<std::string, std::string> query = {}) {
        const Route* r = find(method, pattern);
        if (r == nullptr) {
            ADD_FAILURE() << "no route " << method << " " << pattern;
            return {};
        }
        Request req;
        req.method = method;
        req.path = pattern;
        if (!name.empty() || pattern.find("{name}") != std::string::npos) {
            req.params["name"] = name;
        }
        req.query = std::move(query);
        Outcome out;
        try {
            const Response resp = r->handler(req);
            out.status = resp.status;
            out.body = resp.raw_body ? nlohmann::json::parse(*resp.raw_body) : resp.body;
        } catch (const ApiError& e) {
            out.status = e.status();
            out.code = e.code();
            out.message = e.what();
        }
        // Whatever came back must serialize as the server will send it.
        EXPECT_NO_THROW((void)out.body.dump());
        EXPECT_NO_THROW((void)nlohmann::json(out.message).dump());
        return out;
    }
    Outcome start(const std::string& name, std::map<std::string, std::string> q = {}) {
        return call("POST", "/models/{name}/start", name, std::move(q));
    }
    Outcome stop(const std::string& name, std::map<std::string, std::string> q = {}) {
        return call("POST", "/models/{name}/stop", name, std::move(q));
    }

    std::map<std::string, std::shared_ptr<FakeProc>> procs_;
    std::unique_ptr<ModelManager> mgr_;
    Router router_;
};

TEST_F(ModelRoutesTest, RegistersTheContractsRoutes) {
    struct Want {
        const char* method;
        const char* pattern;
        Access access;
        Audit audit;
    };
    const std::vector<Want> want = {
        {"GET", "/models", Access::kRead, Audit::kNo},
        {"GET", "/models/running", Access::kRead, Audit::kNo},
        {"GET", "/models/{name}", Access::kRead, Audit::kNo},
        {"POST", "/models/{name}/start", Access::kAdmin, Audit::kYes},
        {"POST", "/models/{name}/stop", Access::kAdmin, Audit::kYes},
        {"POST", "/models/{name}/restart", Access::kAdmin, Audit::kYes},
    };
    EXPECT_EQ(router_.routes().size(), want.size());
    for (const auto& w : want) {
        const Route* r = find(w.method, w.pattern);
        ASSERT_NE(r, nullptr) << w.method << " " << w.pattern;
        EXPECT_EQ(r->access, w.access) << w.pattern;
        EXPECT_EQ(r->audit, w.audit) << w.pattern;
        EXPECT_EQ(r->group, RouteGroup::kModels) << w.pattern;
        EXPECT_TRUE(r->handler) << w.pattern;
    }
}

TEST_F(ModelRoutesTest, DispatchesThroughTheRouter) {
    const std::vector<RouteGroup> groups = {RouteGroup::kModels};
    // The literal "/models/running" wins over "/models/{name}".
    auto m = router_.match("GET", "/models/running", groups);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->pattern, "/models/running");
    m = router_.match("GET", "/models/llama", groups);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.params["name"], "llama");
    // Other listeners' groups do not see these routes.
    EXPECT_EQ(router_.match("GET", "/models", {RouteGroup::kShutdown}).route, nullptr);

    m = router_.match("POST", "/models/llama/start", groups);
    ASSERT_NE(m.route, nullptr);
    Request req;
    req.method = "POST";
    req.path = "/models/llama/start";
    req.params = m.params;
    req.query = {{"wait", "false"}};
    auto resp = router_.dispatch(m, req);
    EXPECT_EQ(resp.status, 202);
    EXPECT_EQ(resp.body["result"], "starting");

    m = router_.match("POST", "/models/nope/stop", groups);
    ASSERT_NE(m.route, nullptr);
    req.path = "/models/nope/stop";
    req.params = m.params;
    resp = router_.dispatch(m, req);
    EXPECT_EQ(resp.status, 404);
    EXPECT_EQ(resp.body["error"]["code"], "not_found");
    EXPECT_EQ(resp.body["error"]["message"], "no model named \"nope\"");
}

TEST_F(ModelRoutesTest, ListsModelsSortedAndRunningOnly) {
    auto out = call("GET", "/models", "");
    ASSERT_EQ(out.status, 200);
    ASSERT_EQ(out.body["models"].size(), 3u);
    EXPECT_EQ(out.body["models"][0]["name"], "llama");
    EXPECT_EQ(out.body["models"][1]["name"], "mistral");
    EXPECT_EQ(out.body["models"][2]["name"], "qwen");
    EXPECT_EQ(out.body["models"][0]["state"], "stopped");
    EXPECT_EQ(out.body["models"][0]["pid"], nullptr);

    out = call("GET", "/models/running", "");
    ASSERT_EQ(out.status, 200);
    EXPECT_TRUE(out.body["models"].is_array());
    EXPECT_TRUE(out.body["models"].empty());

    ASSERT_EQ(start("mistral").status, 200);
    out = call("GET", "/models/running", "");
    ASSERT_EQ(out.body["models"].size(), 1u);
    EXPECT_EQ(out.body["models"][0]["name"], "mistral");
    EXPECT_EQ(out.body["models"][0]["state"], "running");
    EXPECT_EQ(out.body["models"][0]["pid"], 4242);
    // The cached full list follows the change too.
    out = call("GET", "/models", "");
    EXPECT_EQ(out.body["models"][1]["state"], "running");
    EXPECT_EQ(out.body["models"][0]["state"], "stopped");
}

TEST_F(ModelRoutesTest, ShowsOneModel) {
    const auto out = call("GET", "/models/{name}", "qwen");
    ASSERT_EQ(out.status, 200);
    EXPECT_EQ(out.body["name"], "qwen");
    EXPECT_EQ(out.body["backend"], "process");
    EXPECT_EQ(out.body["port"], 8001);
    EXPECT_EQ(out.body["health_url"], "http://fake/qwen");
    EXPECT_EQ(out.body["restarts"], 0);
    EXPECT_EQ(out.body["last_error"], nullptr);
    EXPECT_TRUE(out.body["since"].is_string());
}

TEST_F(ModelRoutesTest, NamesOutsideTheRegistryAre404WhateverTheyContain) {
    const std::vector<std::string> names = {"../x",
                                            "a;b",
                                            "a b",
                                            "llama/../qwen",
                                            "$(reboot)",
                                            "LLAMA",
                                            "llama\n",
                                            "caf\xc3\xa9",
                                            "\xff",
                                            "",
                                            std::string(10 * 1024, 'n'),
                                            std::string("l\0lama", 6),
                                            "\"; DROP",
                                            "%2e%2e"};
    for (const auto& n : names) {
        for (const auto& [method, pattern] :
             std::vector<std::pair<std::string, std::string>>{{"GET", "/models/{name}"},
                                                              {"POST", "/models/{name}/start"},
                                                              {"POST", "/models/{name}/stop"},
                                                              {"POST", "/models/{name}/restart"}}) {
            // Bad parameters too: the unknown name wins.
            const auto out = call(method, pattern, n, {{"timeout", "0"}, {"wait", "x"}});
            EXPECT_EQ(out.status, 404) << pattern;
            EXPECT_EQ(out.code, "not_found");
            // At most 64 characters of the name, each at most 6 bytes escaped, plus the words.
            EXPECT_LE(out.message.size(), 20u + 6u * 64u + 5u);
            EXPECT_EQ(out.message.find('\n'), std::string::npos);
            if (n.size() > 64) {
                EXPECT_EQ(out.message, "no model named \"" + std::string(64, 'n') + "\"...");
            }
        }
    }
    EXPECT_EQ(call("GET", "/models/{name}", "a\"b").message, "no model named \"a\\\"b\"");
    for (auto& [name, p] : procs_) {
        EXPECT_EQ(p->starts, 0) << name;
    }
}

TEST_F(ModelRoutesTest, StartAndStopWithWaitDefault) {
    auto out = start("llama");
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body["result"], "started");
    EXPECT_EQ(out.body["model"]["state"], "running");
    out = start("llama");
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body["result"], "already_running");
    out = stop("llama", {{"timeout", "5"}});
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body["result"], "stopped");
    EXPECT_EQ(out.body["model"]["state"], "stopped");
    out = stop("llama");
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body["result"], "already_stopped");
    out = start("llama", {{"wait", "true"}, {"timeout", "3600"}});
    EXPECT_EQ(out.status, 200);
    out = call("POST", "/models/{name}/restart", "llama");
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body["result"], "restarted");
    EXPECT_EQ(out.body["model"]["restarts"], 1);
}

TEST_F(ModelRoutesTest, WaitFalseIs202) {
    procs_["qwen"]->healthy = false;
    auto out = start("qwen", {{"wait", "false"}, {"timeout", "2"}});
    EXPECT_EQ(out.status, 202);
    EXPECT_EQ(out.body["result"], "starting");
    EXPECT_EQ(out.body["model"]["state"], "starting");
    // While it starts: stop is a conflict, a second start joins (202 again).
    out = stop("qwen");
    EXPECT_EQ(out.status, 409);
    EXPECT_EQ(out.code, "conflict");
    EXPECT_EQ(start("qwen", {{"wait", "0"}}).status, 202);
    out = call("POST", "/models/{name}/restart", "qwen");
    EXPECT_EQ(out.status, 409);
    {
        std::lock_guard lk(procs_["qwen"]->mu);
        procs_["qwen"]->healthy = true;
    }
    // wait=true joins the start in progress.
    out = start("qwen");
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body["result"], "started");
    EXPECT_EQ(procs_["qwen"]->starts, 1);

    procs_["qwen"]->stop_delay = 300ms;
    out = stop("qwen", {{"wait", "false"}});
    EXPECT_EQ(out.status, 202);
    EXPECT_EQ(out.body["result"], "stopping");
    out = start("qwen");
    EXPECT_EQ(out.status, 409);
    EXPECT_EQ(out.code, "conflict");
    out = stop("qwen");  // joins
    EXPECT_EQ(out.status, 200);
    EXPECT_EQ(out.body["result"], "stopped");
}

TEST_F(ModelRoutesTest, BadParametersAre400) {
    struct Case {
        std::map<std::string, std::string> query;
        const char* code;
    };
    const std::vector<Case> cases = {
        {{{"timeout", "0"}}, "invalid"},
        {{{"timeout", "3601"}}, "invalid"},
        {{{"timeout", "-5"}}, "invalid"},
        {{{"timeout", "99999999999999999999"}}, "bad_request"},
        {{{"timeout", "abc"}}, "bad_request"},
        {{{"timeout", "1.5"}}, "bad_request"},
        {{{"timeout", ""}}, "bad_request"},
        {{{"timeout", " 5"}}, "bad_request"},
        {{{"wait", "maybe"}}, "bad_request"},
        {{{"wait", ""}}, "bad_request"},
        {{{"wait", std::string(5000, 'w')}}, "bad_request"},
    };
    for (const auto& c : cases) {
        for (const char* pattern : {"/models/{name}/start", "/models/{name}/stop"}) {
            const auto out = call("POST", pattern, "llama", c.query);
            EXPECT_EQ(out.status, 400) << pattern << " " << c.query.begin()->second.substr(0, 30);
            EXPECT_EQ(out.code, c.code) << c.query.begin()->second.substr(0, 30);
            EXPECT_LE(out.message.size(), 200u);
        }
    }
    const auto out = call("POST", "/models/{name}/restart", "llama", {{"timeout", "0"}});
    EXPECT_EQ(out.status, 400);
    EXPECT_EQ(procs_["llama"]->starts, 0);
    // Unknown query keys are ignored.
    EXPECT_EQ(start("llama", {{"verbose", "1"}}).status, 200);
}

TEST_F(ModelRoutesTest, FailuresMapTo500) {
    procs_["llama"]->exit_on_start = true;
    auto out = start("llama", {{"timeout", "1"}});
    EXPECT_EQ(out.status, 500);
    EXPECT_EQ(out.code, "start_failed");
    EXPECT_NE(out.message.find("exited with code 1"), std::string::npos) << out.message;
    out = call("GET", "/models/{name}", "llama");
    EXPECT_EQ(out.body["state"], "failed");
    EXPECT_TRUE(out.body["last_error"].is_string());

    procs_["mistral"]->healthy = false;
    const auto t0 = std::chrono::steady_clock::now();
    out = start("mistral", {{"timeout", "1"}});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2500ms);
    EXPECT_EQ(out.status, 500);
    EXPECT_EQ(out.code, "start_failed");

    procs_["mistral"]->healthy = true;
    ASSERT_EQ(start("mistral").status, 200);
    procs_["mistral"]->stop_throws = true;
    out = stop("mistral");
    EXPECT_EQ(out.status, 500);
    EXPECT_EQ(out.code, "stop_failed");
}

TEST_F(ModelRoutesTest, ConcurrentStartRequestsSpawnOnce) {
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int i = 0; i < 20; ++i) {
        threads.emplace_back([&] {
            const auto out = start("qwen");
            if (out.status == 200) {
                ++ok;
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(ok, 20);
    EXPECT_EQ(procs_["qwen"]->starts, 1);
}

}  // namespace
}  // namespace mlk::api
