// Renders the NGINX configuration that routes /models/NAME/ to each registered model: the
// [nginx] settings plus the model registry in, the text of one conf.d file out (docs/NGINX.md).
// Thread safety: pure functions; NginxSettings is a plain value.
//
// The file is a whole `server {}` block plus what it needs at http level (one log_format and
// one `upstream` per model), meant for a directory the stock nginx.conf includes inside `http {}`
// (`include /etc/nginx/conf.d/*.conf;` on Debian). A whole server rather than a snippet of
// `location`s because the log_format and the upstream blocks (which give upstream keep-alive)
// can only live at http level, so a snippet would need a second file and a second include line.
// The server listens on its own port (default 8080) so that the distribution's default site on
// port 80 does not shadow it.
//
// What the file contains, in order:
//   log_format mlkeeper_json escape=json '{...}'   (docs/formats/nginx-access-log.md)
//   upstream mlkeeper_NAME { server HOST:PORT; keepalive N; }   one per routed model (direct)
//   upstream mlkeeper_agent_proxy { ... }                       (upstream "proxy")
//   server { listen ...; access_log ... mlkeeper_json; set $mlkeeper_model "";
//            location /models/NAME/ { set $mlkeeper_model "NAME"; proxy_pass ...; } ...
//            location = /models/NAME { return 308 /models/NAME/; }
//            location / { return 404 JSON; } }
// Direct mode strips the prefix: /models/NAME/v1/chat -> /v1/chat on the model. Proxy mode sends
// /models/NAME/v1/chat to proxy_url + /NAME/v1/chat, where the agent's proxy strips it (and can
// start a stopped model first).
//
// Nothing from the configuration reaches the text unchecked: model names are registry-validated
// ([A-Za-z0-9][A-Za-z0-9._-]*), ports and timeouts are integers, listen / server_name / hosts /
// the prefix are checked against narrow patterns, and paths are written as double-quoted nginx
// strings with `"` and `\` escaped, control characters and `$` (which would make nginx expand a
// variable) refused. The output has no timestamp, so rendering the same input twice gives the
// same bytes (apply_nginx_config() then reports "unchanged").
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/homelab/model_registry.hpp"

namespace mlk::core {
class Config;
}

namespace mlk::homelab {

struct NginxSettings {
    enum class Upstream {
        kDirect,  // proxy_pass to upstream_host:PORT of each model
        kProxy,   // proxy_pass to the agent's reverse proxy (proxy_url), which starts models
    };

    std::filesystem::path output{"/etc/nginx/conf.d/mlkeeper-models.conf"};
    std::string listen{"8080"};              // nginx `listen`: PORT, HOST:PORT, *:PORT or [V6]:PORT
    std::string server_name{"_"};            // space-separated host names
    std::string location_prefix{"/models"};  // "" or "/" = locations /NAME/
    Upstream upstream = Upstream::kDirect;
    std::string upstream_host{"127.0.0.1"};                 // direct: where the models listen
    std::string proxy_url{"http://127.0.0.1:5080/models"};  // proxy: base URL incl. its prefix
    int upstream_keepalive = 16;  // idle upstream connections kept per model; 0 = none
    std::filesystem::path access_log{"/var/log/nginx/mlkeeper-models.access.log"};
    std::chrono::seconds connect_timeout{10};
    // Between two reads from the model: a generation may think this long before its first byte.
    std::chrono::seconds read_timeout{600};
    std::chrono::seconds send_timeout{300};
    std::uint64_t max_body = 100ull * 1000 * 1000;  // client_max_body_size, bytes; 0 = no limit

    // How apply_nginx_config() checks and activates the file (argv, never through a shell).
    std::vector<std::string> test_command{"nginx", "-t"};
    std::vector<std::string> reload_command{"nginx", "-s", "reload"};
    std::chrono::seconds command_timeout{30};

    // For the agent (the lead wires them): keep `output` rendered (at start and on SIGHUP), and
    // re-render on every model start/stop so that only running models are routed (direct mode).
    bool enabled = false;
    bool render_on_model_change = false;

    // `mlkeeper nginx configmap` (homelab/k8s_configmap.hpp).
    std::string k8s_namespace{"inference-manager"};
    std::string k8s_configmap{"mlkeeper-nginx-models"};
    std::string k8s_url_configmap{"inference-service-url"};
    std::string inference_service_url;  // "" = the caller derives it from [api]
};

std::string_view to_string(NginxSettings::Upstream u);  // "direct" | "proxy"

// The [nginx] keys of a loaded Config (all 22 of them in config_schema.cpp), checked
// with nginx_settings_problems(). Throws ConfigError (exit 78) listing every problem.
NginxSettings nginx_settings_from(const core::Config& cfg);

// Every problem with `s` that rendering would hit, each as "nginx.KEY: message"; empty = fine.
std::vector<std::string> nginx_settings_problems(const NginxSettings& s);

struct RenderOptions {
    // Direct mode with render_on_model_change: only these models are proxied; the others get a
    // location answering 503 {"error":{"code":"model_stopped",...}}. nullopt = route every model.
    // Proxy mode ignores it: the agent's proxy starts stopped models itself.
    std::optional<std::set<std::string>> running;
};

// The configuration text for `models` (any order; written sorted by name). Models without a port
// are left out with a comment line saying why. Throws ConfigError for bad settings (every
// problem listed), a model name that fails valid_model_name() or a port outside 1..65535.
std::string render_nginx_config(const NginxSettings& s, const std::vector<ModelSpec>& models,
                                const RenderOptions& opts = {});

// The location prefix as rendered: "/models" -> "/models", "/" or "" -> "", "/a/" -> "/a".
std::string normalized_prefix(std::string_view prefix);

// `s` as a double-quoted nginx string. Throws std::invalid_argument for control characters or
// '$' (nginx would expand a variable there), which no path or address needs.
std::string nginx_quote(std::string_view s);

}  // namespace mlk::homelab
