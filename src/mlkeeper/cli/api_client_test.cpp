// Tests for the CLI's REST client against a real cpp-httplib server on 127.0.0.1 (and a port that
// refuses connections); every wait is bounded.
#include "mlkeeper/cli/api_client.hpp"

#include "support/http_test_server.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <map>
#include <mutex>
#include <string>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::cli {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

ApiListenerConfig seed_layout() {
    ApiListenerConfig c;
    c.listen_models = "127.0.0.1:5002";
    c.listen_shutdown = "127.0.0.1:5001";
    return c;
}

TEST(ApiClientUrl, SeedPortsByDefault) {
    EXPECT_EQ(derive_base_url(seed_layout(), AgentService::kModels), "http://127.0.0.1:5002");
    EXPECT_EQ(derive_base_url(seed_layout(), AgentService::kShutdown), "http://127.0.0.1:5001");
}

TEST(ApiClientUrl, ClientUrlWins) {
    auto c = seed_layout();
    c.client_url = "https://lab.example.net:8443/api/v1//";
    c.listen = "0.0.0.0:8080";
    EXPECT_EQ(derive_base_url(c, AgentService::kModels), "https://lab.example.net:8443/api/v1");
    c.client_url = "HTTP://10.0.0.5:5001";
    EXPECT_EQ(derive_base_url(c, AgentService::kShutdown), "HTTP://10.0.0.5:5001");
    c.client_url = "10.0.0.5:5001";
    EXPECT_THROW(derive_base_url(c, AgentService::kShutdown), ConfigError);
    c.client_url = "ftp://10.0.0.5";
    EXPECT_THROW(derive_base_url(c, AgentService::kShutdown), ConfigError);
}

TEST(ApiClientUrl, SinglePortModeAddsThePrefix) {
    auto c = seed_layout();
    c.listen = "127.0.0.1:8080";
    EXPECT_EQ(derive_base_url(c, AgentService::kModels), "http://127.0.0.1:8080/api/v1");
    EXPECT_EQ(derive_base_url(c, AgentService::kShutdown), "http://127.0.0.1:8080/api/v1");
    c.listen = "0.0.0.0:8080";
    EXPECT_EQ(derive_base_url(c, AgentService::kModels), "http://127.0.0.1:8080/api/v1");
    c.listen = "[::]:8080";
    EXPECT_EQ(derive_base_url(c, AgentService::kModels), "http://[::1]:8080/api/v1");
    c.listen = "[::1]:8080";
    c.tls_cert = "/etc/mlkeeper/tls.crt";
    EXPECT_EQ(derive_base_url(c, AgentService::kModels), "https://[::1]:8080/api/v1");
}

TEST(ApiClientUrl, WildcardAndNamedHosts) {
    auto c = seed_layout();
    c.listen_shutdown = "0.0.0.0:5001";
    EXPECT_EQ(derive_base_url(c, AgentService::kShutdown), "http://127.0.0.1:5001");
    c.listen_shutdown = "gpu-box.lan:5001";
    EXPECT_EQ(derive_base_url(c, AgentService::kShutdown), "http://gpu-box.lan:5001");
    c.listen_models = "[::]:5002";
    EXPECT_EQ(derive_base_url(c, AgentService::kModels), "http://[::1]:5002");
}

TEST(ApiClientUrl, UnusableListenersAreConfigErrors) {
    auto c = seed_layout();
    c.listen_models = "";
    try {
        derive_base_url(c, AgentService::kModels);
        FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("api.listen_models"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("client_url"), std::string::npos);
    }
    // The other service is still reachable.
    EXPECT_EQ(derive_base_url(c, AgentService::kShutdown), "http://127.0.0.1:5001");
    for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                            "127.0.0.1:abc", "127.0.0.1:+80", "::1:5001", "[::1]5001", "[::1"}) {
        auto b = seed_layout();
        b.listen_shutdown = bad;
        EXPECT_THROW(derive_base_url(b, AgentService::kShutdown), ConfigError) << bad;
    }
}

// Runs once the lead has pasted keys-api.txt and keys-shutdown.txt into config_schema.cpp.
TEST(ApiClientConfig, SettingsFromConfigWhenTheKeysExist) {
    for (const char* key : {"api.client_url", "api.client_token_file", "api.listen",
                            "api.listen_models", "api.listen_shutdown", "api.tls_cert"}) {
        if (core::find_key(key) == nullptr) {
            GTEST_SKIP() << key << " is not in config_schema.cpp yet";
        }
    }
    mlk::testing::TempDir dir;
    auto load = [&](std::map<std::string, std::string> env) {
        core::ConfigInputs in;
        in.default_file = dir / "missing.toml";
        in.env = std::move(env);
        return core::Config::load(in);
    };
    auto d = load({});
    EXPECT_EQ(api_client_settings(d, AgentService::kModels).base_url, "http://127.0.0.1:5002");
    EXPECT_EQ(api_client_settings(d, AgentService::kShutdown).base_url, "http://127.0.0.1:5001");
    EXPECT_EQ(api_client_settings(d, AgentService::kShutdown).token, "");

    const auto tok = dir.write("tok", "tok-0123456789abcdef\n");
    ::chmod(tok.c_str(), 0600);
    auto s = api_client_settings(load({{"MLKEEPER_API_LISTEN", "0.0.0.0:8080"},
                                       {"MLKEEPER_API_CLIENT_TOKEN_FILE", tok.string()}}),
                                 AgentService::kShutdown);
    EXPECT_EQ(s.base_url, "http://127.0.0.1:8080/api/v1");
    EXPECT_EQ(s.token, "tok-0123456789abcdef");
    s = api_client_settings(load({{"MLKEEPER_API_CLIENT_URL", "http://lab:9000/"}}),
                            AgentService::kModels);
    EXPECT_EQ(s.base_url, "http://lab:9000");
}

class TokenFileTest : public ::testing::Test {
  protected:
    std::filesystem::path write(const std::string& content, mode_t mode) {
        auto p = dir_.write("token", content);
        ::chmod(p.c_str(), mode);
        return p;
    }
    testing::TempDir dir_;
};

TEST_F(TokenFileTest, ReadsTheToken) {
    EXPECT_EQ(read_token_file(write("s3cr3t-token-0123456789\n", 0600)), "s3cr3t-token-0123456789");
    EXPECT_EQ(read_token_file(write("  \n s3cr3t-token-0123456789 \r\n\n", 0640)),
              "s3cr3t-token-0123456789");
}

TEST_F(TokenFileTest, RefusesBadFiles) {
    EXPECT_THROW(read_token_file(write("s3cr3t-token-0123456789", 0644)), ConfigError);
    EXPECT_THROW(read_token_file(write("s3cr3t-token-0123456789", 0602)), ConfigError);
    EXPECT_THROW(read_token_file(write("", 0600)), ConfigError);
    EXPECT_THROW(read_token_file(write(" \n\t\n", 0600)), ConfigError);
    EXPECT_THROW(read_token_file(dir_ / "missing"), ConfigError);
    EXPECT_THROW(read_token_file(dir_.path()), ConfigError);
    try {
        read_token_file(write("admin admin s3cr3t-token-0123456789\n", 0600));
        FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()).find("s3cr3t"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("only the token"), std::string::npos) << e.what();
    }
}

// What the test server saw of the last request.
struct Seen {
    std::mutex mu;
    std::string method, path, query, body, auth, accept, content_type;
};

class ApiClientTest : public ::testing::Test {
  protected:
    ApiClientTest()
        : server_([this](httplib::Server& s) {
              auto record = [this](const httplib::Request& req) {
                  std::lock_guard<std::mutex> lock(seen_.mu);
                  seen_.method = req.method;
                  seen_.path = req.path;
                  seen_.query = req.get_param_value("wait");
                  seen_.body = req.body;
                  seen_.auth = req.get_header_value("Authorization");
                  seen_.accept = req.get_header_value("Accept");
                  seen_.content_type = req.get_header_value("Content-Type");
              };
              s.Get("/models", [record](const httplib::Request& req, httplib::Response& res) {
                  record(req);
                  res.set_content(R"({"models": [{"name": "llama3", "state": "running"}]})",
                                  "application/json");
              });
              s.Post("/models/llama3/start",
                     [record](const httplib::Request& req, httplib::Response& res) {
                         record(req);
                         res.status = 202;
                         res.set_content(R"({"result": "starting"})", "application/json");
                     });
              s.Post("/shutdown", [record](const httplib::Request& req, httplib::Response& res) {
                  record(req);
                  res.status = 409;
                  res.set_content(
                      R"({"error": {"code": "conflict", "message": "a shutdown is already scheduled"}})",
                      "application/json");
              });
              s.Delete("/shutdown", [](const httplib::Request&, httplib::Response& res) {
                  res.status = 401;
                  res.set_header("WWW-Authenticate", "Bearer");
                  res.set_content(R"({"error": {"code": "unauthorized", "message": "no token"}})",
                                  "application/json");
              });
              s.Get("/proxy-error", [](const httplib::Request&, httplib::Response& res) {
                  res.status = 502;
                  res.set_content("<html>\n<h1>502 Bad Gateway</h1>\n</html>", "text/html");
              });
              s.Get("/not-json", [](const httplib::Request&, httplib::Response& res) {
                  res.set_content("hello", "text/plain");
              });
              s.Get("/odd-error", [](const httplib::Request&, httplib::Response& res) {
                  res.status = 500;
                  res.set_content(R"({"error": "flat string"})", "application/json");
              });
              s.Get("/slow", [this](const httplib::Request&, httplib::Response& res) {
                  server_.block_for(3s);
                  res.set_content("{}", "application/json");
              });
          }) {}

    ApiClient client(const std::string& token = "") {
        ApiClientSettings s;
        s.base_url = server_.url("");
        s.token = token;
        return ApiClient(s);
    }

    Seen seen_;
    mlk::testing::TestServer server_;
};

TEST_F(ApiClientTest, GetParsesJsonAndSendsTheToken) {
    auto r = client("tok-0123456789abcdef").call("GET", "/models");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body["models"][0]["name"], "llama3");
    std::lock_guard<std::mutex> lock(seen_.mu);
    EXPECT_EQ(seen_.auth, "Bearer tok-0123456789abcdef");
    EXPECT_EQ(seen_.accept, "application/json");
    EXPECT_EQ(seen_.body, "");
}

TEST_F(ApiClientTest, NoTokenNoAuthorizationHeader) {
    client().call("GET", "/models");
    std::lock_guard<std::mutex> lock(seen_.mu);
    EXPECT_EQ(seen_.auth, "");
}

TEST_F(ApiClientTest, PostsJsonAndReturns2xx) {
    auto r = client().call("POST", "/models/llama3/start?wait=false", json{{"k", 1}});
    EXPECT_EQ(r.status, 202);
    EXPECT_EQ(r.body["result"], "starting");
    std::lock_guard<std::mutex> lock(seen_.mu);
    EXPECT_EQ(seen_.method, "POST");
    EXPECT_EQ(seen_.query, "false");
    EXPECT_EQ(seen_.content_type, "application/json");
    EXPECT_EQ(json::parse(seen_.body), json({{"k", 1}}));
}

TEST_F(ApiClientTest, ErrorDocumentsBecomeApiCallErrors) {
    try {
        client().call("POST", "/shutdown", json{{"delay_minutes", 5}});
        FAIL() << "expected ApiCallError";
    } catch (const ApiCallError& e) {
        EXPECT_EQ(e.status(), 409);
        EXPECT_EQ(e.code(), "conflict");
        EXPECT_EQ(e.message(), "a shutdown is already scheduled");
        EXPECT_STREQ(e.what(), "a shutdown is already scheduled (conflict, HTTP 409)");
        EXPECT_EQ(e.body()["error"]["code"], "conflict");
    }
}

TEST_F(ApiClientTest, UnauthorizedSaysWhereTheTokenGoes) {
    try {
        client().call("DELETE", "/shutdown");
        FAIL() << "expected ApiCallError";
    } catch (const ApiCallError& e) {
        EXPECT_EQ(e.status(), 401);
        EXPECT_NE(std::string(e.what()).find("client_token_file"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("(unauthorized, HTTP 401)"), std::string::npos);
    }
    try {
        client("wrong-token-0123456789").call("DELETE", "/shutdown");
        FAIL() << "expected ApiCallError";
    } catch (const ApiCallError& e) {
        EXPECT_NE(std::string(e.what()).find("was not accepted"), std::string::npos) << e.what();
    }
}

TEST_F(ApiClientTest, NonJsonErrorsAreStillOneLine) {
    try {
        client().call("GET", "/proxy-error");
        FAIL() << "expected ApiCallError";
    } catch (const ApiCallError& e) {
        EXPECT_EQ(e.status(), 502);
        EXPECT_EQ(e.code(), "http_error");
        EXPECT_TRUE(e.body().is_null());
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
    try {
        client().call("GET", "/odd-error");
        FAIL() << "expected ApiCallError";
    } catch (const ApiCallError& e) {
        EXPECT_EQ(e.status(), 500);
        EXPECT_EQ(e.code(), "http_error");
    }
    EXPECT_THROW(client().call("GET", "/not-json"), Error);
    try {
        client().call("GET", "/nowhere");
        FAIL() << "expected ApiCallError";
    } catch (const ApiCallError& e) {
        EXPECT_EQ(e.status(), 404);
    }
}

TEST_F(ApiClientTest, SlowAgentTimesOut) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
        client().call("GET", "/slow", nullptr, 300ms);
        FAIL() << "expected Error";
    } catch (const ApiCallError&) {
        FAIL() << "a timeout is not an API error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("did not answer in time"), std::string::npos)
            << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST(ApiClientUnreachable, SaysTheAgentIsNotRunning) {
    mlk::testing::RefusingPort port;
    ApiClientSettings s;
    s.base_url = "http://127.0.0.1:" + std::to_string(port.port());
    try {
        ApiClient(s).call("GET", "/models");
        FAIL() << "expected Error";
    } catch (const ApiCallError&) {
        FAIL() << "not an API error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::kFailure);
        EXPECT_EQ(std::string(e.what()),
                  "cannot reach the mlkeeper agent at " + s.base_url +
                      ": connection refused \u2014 is `mlkeeper agent` running?");
    }
}

TEST(ApiClientHelpers, UrlEncode) {
    EXPECT_EQ(url_encode("llama3.1-8b_Q4~x"), "llama3.1-8b_Q4~x");
    EXPECT_EQ(url_encode("a b/c?d&e=%"), "a%20b%2Fc%3Fd%26e%3D%25");
    EXPECT_EQ(url_encode("\xc3\xa9"), "%C3%A9");
    EXPECT_EQ(url_encode(".."), "..");
    EXPECT_EQ(url_encode(""), "");
}

TEST(ApiClientHelpers, Times) {
    EXPECT_EQ(display_time(nullptr), "-");
    EXPECT_EQ(display_time(json("")), "-");
    EXPECT_EQ(display_time(json("soon")), "soon");
    EXPECT_EQ(display_time(json(5)), "5");
    // Local time: only the shape is fixed here.
    EXPECT_EQ(display_time(json("2026-11-22T14:00:00Z")).size(), 19u);

    const auto t = util::parse_iso8601_utc("2026-11-22T14:00:00Z").value();
    EXPECT_EQ(relative_time(json("2026-11-22T14:30:00Z"), t), "in 30m");
    EXPECT_EQ(relative_time(json("2026-11-22T12:00:00Z"), t), "2h ago");
    EXPECT_EQ(relative_time(json("2026-11-22T14:00:00Z"), t), "now");
    EXPECT_EQ(relative_time(json("2026-11-22T13:59:56Z"), t), "now");
    EXPECT_EQ(relative_time(json("2026-11-22T14:00:05Z"), t), "in 5s");
    EXPECT_EQ(relative_time(json("2026-11-22T13:59:55Z"), t), "5s ago");
    EXPECT_EQ(relative_time(json("garbage"), t), "");
    EXPECT_EQ(relative_time(nullptr, t), "");
}

}  // namespace
}  // namespace mlk::cli
