#include "mlkeeper/homelab/nginx_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::homelab {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

ModelSpec model(std::string name, std::optional<int> port) {
    ModelSpec m;
    m.name = std::move(name);
    m.port = port;
    return m;
}

// The text between "location PATH {" and its closing "    }".
std::string location_block(const std::string& conf, const std::string& path) {
    const auto start = conf.find("    location " + path + " {\n");
    if (start == std::string::npos) {
        return {};
    }
    const auto end = conf.find("\n    }\n", start);
    return conf.substr(start, end - start);
}

std::string problems_of(const NginxSettings& s) {
    return util::join(nginx_settings_problems(s), "\n");
}

TEST(NginxConfig, DirectModeRoutesEachModelToItsPortWithStreamingSettings) {
    NginxSettings s;
    const auto conf = render_nginx_config(s, {model("llama", 8001), model("bert", 8002)});
    const auto llama = location_block(conf, "/models/llama/");
    ASSERT_FALSE(llama.empty()) << conf;
    EXPECT_THAT(llama, HasSubstr("set $mlkeeper_model \"llama\";"));
    // The trailing '/' of proxy_pass makes nginx strip the location prefix.
    EXPECT_THAT(llama, HasSubstr("proxy_pass http://mlkeeper_llama/;"));
    for (const char* line :
         {"proxy_http_version 1.1;", "proxy_set_header Connection \"\";", "proxy_buffering off;",
          "proxy_cache off;", "add_header X-Accel-Buffering no always;", "gzip off;",
          "proxy_read_timeout 600s;", "proxy_send_timeout 300s;", "proxy_connect_timeout 10s;",
          "client_max_body_size 100000000;",
          "proxy_set_header X-Forwarded-Prefix /models/llama/;"}) {
        EXPECT_THAT(llama, HasSubstr(line)) << line;
    }
    EXPECT_THAT(conf, HasSubstr("upstream mlkeeper_llama {\n    server 127.0.0.1:8001;\n    "
                                "keepalive 16;\n}\n"));
    EXPECT_THAT(conf, HasSubstr("upstream mlkeeper_bert {\n    server 127.0.0.1:8002;"));
    EXPECT_THAT(location_block(conf, "= /models/llama"),
                HasSubstr("return 308 /models/llama/$is_args$args;"));
    EXPECT_THAT(conf, HasSubstr("    listen 8080;\n    server_name _;\n"));
    EXPECT_THAT(conf, HasSubstr("    access_log \"/var/log/nginx/mlkeeper-models.access.log\" "
                                "mlkeeper_json;\n"));
    // Sorted by name whatever the input order.
    EXPECT_LT(conf.find("location /models/bert/"), conf.find("location /models/llama/"));
}

TEST(NginxConfig, LogFormatHasTheDocumentedFields) {
    const auto conf = render_nginx_config(NginxSettings{}, {});
    const std::regex re(R"(log_format mlkeeper_json escape=json '(\{[^']*\})';)");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(conf, m, re)) << conf;
    const std::string format = m[1];
    for (const char* field :
         {"\"time\":\"$time_iso8601\"", "\"msec\":\"$msec\"", "\"model\":\"$mlkeeper_model\"",
          "\"uri\":\"$request_uri\"", "\"status\":\"$status\"",
          "\"request_length\":\"$request_length\"", "\"bytes_sent\":\"$bytes_sent\"",
          "\"request_time\":\"$request_time\"",
          "\"upstream_response_time\":\"$upstream_response_time\""}) {
        EXPECT_THAT(format, HasSubstr(field)) << field;
    }
    // Non-model requests log model "".
    EXPECT_THAT(conf, HasSubstr("    set $mlkeeper_model \"\";\n"));
}

TEST(NginxConfig, ProxyModeSendsTheWholePathToTheAgentsProxy) {
    NginxSettings s;
    s.upstream = NginxSettings::Upstream::kProxy;
    s.proxy_url = "http://127.0.0.1:5080/models/";
    s.upstream_keepalive = 0;
    const auto conf = render_nginx_config(s, {model("llama", 8001)});
    EXPECT_THAT(conf, HasSubstr("upstream mlkeeper_agent_proxy {\n    server 127.0.0.1:5080;\n}"));
    EXPECT_THAT(location_block(conf, "/models/llama/"),
                HasSubstr("proxy_pass http://mlkeeper_agent_proxy/models/llama/;"));
    EXPECT_THAT(conf, Not(HasSubstr("upstream mlkeeper_llama")));
    EXPECT_THAT(conf, Not(HasSubstr("keepalive")));

    s.proxy_url = "http://localhost";
    EXPECT_THAT(render_nginx_config(s, {model("a", 1)}), HasSubstr("server localhost:80;\n}\n"));
    EXPECT_THAT(render_nginx_config(s, {model("a", 1)}),
                HasSubstr("proxy_pass http://mlkeeper_agent_proxy/a/;"));
}

TEST(NginxConfig, ModelsWithoutAPortAreLeftOutWithAComment) {
    const auto conf = render_nginx_config(NginxSettings{}, {model("noport", std::nullopt)});
    EXPECT_THAT(conf, HasSubstr("# model noport: no port in the registry"));
    EXPECT_THAT(conf, Not(HasSubstr("location /models/noport/")));
    EXPECT_THAT(conf, Not(HasSubstr("upstream mlkeeper_noport")));
}

TEST(NginxConfig, OnlyRunningModelsAreProxiedWhenAskedTheOthersAnswer503) {
    RenderOptions opts;
    opts.running = std::set<std::string>{"up"};
    const auto conf =
        render_nginx_config(NginxSettings{}, {model("up", 9001), model("down", 9002)}, opts);
    EXPECT_THAT(location_block(conf, "/models/up/"), HasSubstr("proxy_pass"));
    const auto down = location_block(conf, "/models/down/");
    EXPECT_THAT(down, HasSubstr("return 503 '{\"error\":{\"code\":\"model_stopped\""));
    EXPECT_THAT(down, Not(HasSubstr("proxy_pass")));
    EXPECT_THAT(conf, Not(HasSubstr("upstream mlkeeper_down")));

    NginxSettings proxy;
    proxy.upstream = NginxSettings::Upstream::kProxy;
    EXPECT_THAT(
        location_block(render_nginx_config(proxy, {model("down", 9002)}, opts), "/models/down/"),
        HasSubstr("proxy_pass"));
}

TEST(NginxConfig, RenderingIsDeterministic) {
    NginxSettings s;
    const std::vector<ModelSpec> models = {model("b", 2), model("a", 1), model("c", std::nullopt)};
    EXPECT_EQ(render_nginx_config(s, models), render_nginx_config(s, models));
}

TEST(NginxConfig, PrefixIsNormalised) {
    NginxSettings s;
    s.location_prefix = "/";
    auto conf = render_nginx_config(s, {model("m", 1)});
    EXPECT_THAT(conf, HasSubstr("    location /m/ {\n"));
    EXPECT_THAT(conf, HasSubstr("    location = /m {\n"));
    s.location_prefix = "/api/llm/";
    conf = render_nginx_config(s, {model("m", 1)});
    EXPECT_THAT(conf, HasSubstr("    location /api/llm/m/ {\n"));
    EXPECT_EQ(normalized_prefix("/a//"), "/a");
    EXPECT_EQ(normalized_prefix(""), "");
}

TEST(NginxConfig, QuoteEscapesAndRefusesVariablesAndControls) {
    EXPECT_EQ(nginx_quote("/var/log/a b.log"), "\"/var/log/a b.log\"");
    EXPECT_EQ(nginx_quote(R"(a"b\c;{})"), R"("a\"b\\c;{}")");
    EXPECT_THROW(nginx_quote("/var/log/$host.log"), std::invalid_argument);
    EXPECT_THROW(nginx_quote("a\nb"), std::invalid_argument);
    EXPECT_THROW(nginx_quote(std::string("a\0b", 3)), std::invalid_argument);
}

TEST(NginxConfig, AccessLogPathIsQuotedNotInjected) {
    NginxSettings s;
    s.access_log = "/tmp/x\"; include /etc/passwd; #.log";
    const auto conf = render_nginx_config(s, {});
    EXPECT_THAT(conf,
                HasSubstr(R"(access_log "/tmp/x\"; include /etc/passwd; #.log" mlkeeper_json;)"));
}

TEST(NginxConfig, BadSettingsAreAllReportedWithTheirKeys) {
    NginxSettings s;
    s.listen = "8080; include /etc/passwd";
    s.server_name = "a;b";
    s.location_prefix = "/models/../x";
    s.upstream_host = "127.0.0.1; evil";
    s.access_log = "relative.log";
    s.connect_timeout = std::chrono::seconds(0);
    s.read_timeout = std::chrono::seconds(0);
    s.test_command = {};
    s.upstream_keepalive = -1;
    const auto p = problems_of(s);
    for (const char* key :
         {"nginx.listen:", "nginx.server_name:", "nginx.location_prefix:", "nginx.upstream_host:",
          "nginx.access_log:", "nginx.connect_timeout:", "nginx.read_timeout:",
          "nginx.test_command:", "nginx.upstream_keepalive:"}) {
        EXPECT_THAT(p, HasSubstr(key)) << p;
    }
    try {
        render_nginx_config(s, {});
        FAIL() << "no ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("nginx.listen:"));
        EXPECT_THAT(std::string(e.what()), HasSubstr("nginx.access_log:"));
    }
}

TEST(NginxConfig, ListenForms) {
    NginxSettings s;
    for (const char* ok :
         {"80", "127.0.0.1:8080", "*:8080", "[::]:8080", "[::1]:80", "gpu-box.lan:8080"}) {
        s.listen = ok;
        EXPECT_EQ(problems_of(s), "") << ok;
    }
    for (const char* bad : {"", "0", "65536", "abc", "[::1]", "1.2.3.4:", ":80", "80 ssl",
                            "127.0.0.1:80;", "-x:80", "[::1]:80x", "[zz]:80"}) {
        s.listen = bad;
        EXPECT_THAT(problems_of(s), HasSubstr("nginx.listen:")) << bad;
    }
}

TEST(NginxConfig, ProxyUrlForms) {
    NginxSettings s;
    s.upstream = NginxSettings::Upstream::kProxy;
    for (const char* ok :
         {"http://127.0.0.1:5080/models", "http://[::1]:5080", "http://host", "http://h:1/a/b/"}) {
        s.proxy_url = ok;
        EXPECT_EQ(problems_of(s), "") << ok;
    }
    for (const char* bad : {"", "https://h:1", "127.0.0.1:5080", "http://h:1/a/../b",
                            "http://h:1/$x", "http://h:1//a", "http://h:99999", "http://h:1/a b",
                            "http://h:1/a?x=1", "http://user@h:1"}) {
        s.proxy_url = bad;
        EXPECT_THAT(problems_of(s), HasSubstr("nginx.proxy_url:")) << bad;
    }
    // A bad proxy_url does not matter in direct mode, and upstream_host not in proxy mode.
    s.upstream = NginxSettings::Upstream::kDirect;
    EXPECT_EQ(problems_of(s), "");
}

TEST(NginxConfig, BadModelsThrow) {
    EXPECT_THROW(render_nginx_config(NginxSettings{}, {model("../etc", 1)}), ConfigError);
    EXPECT_THROW(render_nginx_config(NginxSettings{}, {model("a b", 1)}), ConfigError);
    EXPECT_THROW(render_nginx_config(NginxSettings{}, {model("a", 0)}), ConfigError);
    EXPECT_THROW(render_nginx_config(NginxSettings{}, {model("a", 65536)}), ConfigError);
}

TEST(NginxConfig, SettingsFromConfigMatchTheStructDefaults) {
    if (core::find_key("nginx.output") == nullptr) {
        GTEST_SKIP() << "the [nginx] keys are not in config_schema.cpp yet (keys-nginx.txt)";
    }
    const auto s = nginx_settings_from(core::Config::defaults());
    const NginxSettings d;
    EXPECT_EQ(s.output, d.output);
    EXPECT_EQ(s.listen, d.listen);
    EXPECT_EQ(s.server_name, d.server_name);
    EXPECT_EQ(s.location_prefix, d.location_prefix);
    EXPECT_EQ(s.upstream, d.upstream);
    EXPECT_EQ(s.upstream_host, d.upstream_host);
    EXPECT_EQ(s.proxy_url, d.proxy_url);
    EXPECT_EQ(s.upstream_keepalive, d.upstream_keepalive);
    EXPECT_EQ(s.access_log, d.access_log);
    EXPECT_EQ(s.connect_timeout, d.connect_timeout);
    EXPECT_EQ(s.read_timeout, d.read_timeout);
    EXPECT_EQ(s.send_timeout, d.send_timeout);
    EXPECT_EQ(s.max_body, d.max_body);
    EXPECT_EQ(s.test_command, d.test_command);
    EXPECT_EQ(s.reload_command, d.reload_command);
    EXPECT_EQ(s.command_timeout, d.command_timeout);
    EXPECT_EQ(s.enabled, d.enabled);
    EXPECT_EQ(s.render_on_model_change, d.render_on_model_change);
    EXPECT_EQ(s.k8s_namespace, d.k8s_namespace);
    EXPECT_EQ(s.k8s_configmap, d.k8s_configmap);
    EXPECT_EQ(s.k8s_url_configmap, d.k8s_url_configmap);
    EXPECT_EQ(s.inference_service_url, d.inference_service_url);
}

TEST(NginxConfig, SettingsFromConfigReportBadValues) {
    if (core::find_key("nginx.output") == nullptr) {
        GTEST_SKIP() << "the [nginx] keys are not in config_schema.cpp yet (keys-nginx.txt)";
    }
    core::ConfigInputs in;
    in.default_file = "/nonexistent/mlkeeper.toml";
    in.env = {{"MLKEEPER_NGINX_LISTEN", "80;"}, {"MLKEEPER_NGINX_LOCATION_PREFIX", "x"}};
    try {
        nginx_settings_from(core::Config::load(in));
        FAIL() << "no ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("nginx.listen:"));
        EXPECT_THAT(std::string(e.what()), HasSubstr("nginx.location_prefix:"));
    }
}

}  // namespace
}  // namespace mlk::homelab
