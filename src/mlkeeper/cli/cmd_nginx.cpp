// `mlkeeper nginx render|configmap`: the seeds' NGINX ConfigMap updater. `render` writes the
// NGINX config for the model registry, checks it with nginx and reloads (the old file stays when
// nginx rejects the new one); `configmap` prints the same config as Kubernetes ConfigMaps.
#include <algorithm>
#include <iostream>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mlkeeper/cli/api_client.hpp"
#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/homelab/k8s_configmap.hpp"
#include "mlkeeper/homelab/model_registry.hpp"
#include "mlkeeper/homelab/nginx_apply.hpp"
#include "mlkeeper/homelab/nginx_config.hpp"

namespace mlk::cli {
namespace {

using nlohmann::json;

struct Opts {
    bool dry_run = false;
    bool no_reload = false;
    bool json = false;
};

std::size_t routed(const std::vector<homelab::ModelSpec>& models) {
    return static_cast<std::size_t>(
        std::count_if(models.begin(), models.end(),
                      [](const homelab::ModelSpec& m) { return m.port.has_value(); }));
}

int render(Context& ctx, const Opts& o) {
    const auto& cfg = ctx.config();
    const auto s = homelab::nginx_settings_from(cfg);
    const auto models = homelab::load_models(cfg);
    const auto text = homelab::render_nginx_config(s, models);
    if (s.output == "-") {
        std::cout << text;
        return 0;
    }
    homelab::ApplyOptions opts;
    opts.mode =
        o.dry_run ? homelab::ApplyOptions::Mode::kDryRun : homelab::ApplyOptions::Mode::kApply;
    opts.reload =
        o.no_reload ? homelab::ApplyOptions::Reload::kNo : homelab::ApplyOptions::Reload::kYes;
    const auto r = homelab::apply_nginx_config(s, text, opts);

    const auto n = routed(models);
    auto& sum = ctx.summary();
    sum["path"] = r.path.string();
    sum["outcome"] = std::string(homelab::to_string(r.outcome));
    sum["models"] = n;
    if (!r.error.empty()) {
        sum["error"] = r.error;
    }
    if (o.json) {
        json j = {{"path", r.path.string()},
                  {"outcome", homelab::to_string(r.outcome)},
                  {"changed", r.outcome != homelab::ApplyOutcome::kUnchanged},
                  {"dry_run", o.dry_run},
                  {"reloaded", r.reloaded},
                  {"recovered", r.recovered},
                  {"models_routed", n},
                  {"models_total", models.size()},
                  {"upstream", homelab::to_string(s.upstream)},
                  {"diff", r.diff},
                  {"error", r.error.empty() ? json() : json(r.error)}};
        std::cout << j.dump(2) << "\n";
    }
    if (r.recovered) {
        spdlog::warn("{}: put back the file an interrupted render had swapped in", r.path.string());
    }
    switch (r.outcome) {
        case homelab::ApplyOutcome::kUnchanged:
            if (!o.json) {
                std::cout << fmt::format("{} is up to date ({} of {} models routed)\n",
                                         r.path.string(), n, models.size());
            }
            return 0;
        case homelab::ApplyOutcome::kWouldChange:
            if (!o.json) {
                std::cout << r.diff;
                std::cout << fmt::format("dry run: {} would change ({} of {} models routed)\n",
                                         r.path.string(), n, models.size());
            }
            return 0;
        case homelab::ApplyOutcome::kApplied:
            if (!o.json) {
                std::cout << fmt::format(
                    "wrote {} ({} of {} models routed); {}\n", r.path.string(), n, models.size(),
                    r.reloaded ? "nginx reloaded" : "not reloaded (--no-reload)");
            }
            spdlog::info("nginx config {} written ({} models routed){}", r.path.string(), n,
                         r.reloaded ? ", nginx reloaded" : "");
            return 0;
        case homelab::ApplyOutcome::kTestFailed:
            spdlog::error("nginx rejected the new config, so {} is unchanged: {}", r.path.string(),
                          r.error);
            return to_int(ExitCode::kFailure);
        case homelab::ApplyOutcome::kReloadFailed:
            spdlog::error(
                "{} was written and passed the check, but the reload failed (is nginx running?): "
                "{}",
                r.path.string(), r.error);
            return to_int(ExitCode::kFailure);
    }
    return to_int(ExitCode::kFailure);
}

// A bad name from a flag is a usage error (64), from the configuration a config error (78).
[[noreturn]] void bad_value(const core::Config& cfg, const std::string& key,
                            const std::string& message) {
    const auto& setting = cfg.setting(key);
    const auto text = fmt::format("{} ({}): {}", key,
                                  setting.origin.empty() ? "default" : setting.origin, message);
    if (setting.source == core::Source::kFlag) {
        throw UsageError(text);
    }
    throw ConfigError(text);
}

int configmap(Context& ctx) {
    const auto& cfg = ctx.config();
    const auto s = homelab::nginx_settings_from(cfg);
    const std::pair<const char*, const std::string*> names[] = {
        {"nginx.k8s_namespace", &s.k8s_namespace},
        {"nginx.k8s_configmap", &s.k8s_configmap},
        {"nginx.k8s_url_configmap", &s.k8s_url_configmap}};
    for (const auto& [key, value] : names) {
        if (!homelab::valid_dns1123_label(*value)) {
            bad_value(cfg, key,
                      fmt::format("\"{}\" is not a valid Kubernetes name (lower-case letters, "
                                  "digits and '-', starting and ending with a letter or digit, "
                                  "at most 63 characters)",
                                  *value));
        }
    }
    if (s.k8s_configmap == s.k8s_url_configmap) {
        bad_value(cfg, "nginx.k8s_configmap",
                  "the same name as nginx.k8s_url_configmap; the two ConfigMaps need their own");
    }
    homelab::ConfigMapSpec spec;
    spec.ns = s.k8s_namespace;
    spec.name = s.k8s_configmap;
    spec.url_name = s.k8s_url_configmap;
    spec.inference_url = s.inference_service_url;
    if (spec.inference_url.empty()) {
        ApiListenerConfig l;
        l.client_url = cfg.str("api.client_url");
        l.listen = cfg.str("api.listen");
        l.listen_models = cfg.str("api.listen_models");
        l.listen_shutdown = cfg.str("api.listen_shutdown");
        l.tls_cert = cfg.str("api.tls_cert");
        spec.inference_url = derive_base_url(l, AgentService::kModels);
    }
    const auto text = homelab::render_nginx_config(s, homelab::load_models(cfg));
    try {
        std::cout << homelab::render_configmaps(spec, text);
    } catch (const std::invalid_argument& e) {
        throw ConfigError(std::string("nginx configmap: ") + e.what());
    }
    return 0;
}

}  // namespace

Command nginx_command() {
    return Command{
        "nginx", "Write the NGINX config for the models, or print it as Kubernetes ConfigMaps", "",
        Record::kYes, [](CLI::App& app, FlagBindings& flags) {
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            auto* ren = app.add_subcommand(
                "render", "Write [nginx] output for the registry, check it with nginx, reload");
            flags.bind(*ren, "--output", "nginx.output", "File to write (- = print the config)")
                ->type_name("FILE");
            ren->add_flag("--dry-run", o->dry_run, "Show the diff; change nothing");
            ren->add_flag("--no-reload", o->no_reload, "Write and check, but do not reload nginx");
            ren->add_flag("--json", o->json,
                          "One JSON object: path, outcome, changed, reloaded, diff, error");
            auto* cm = app.add_subcommand(
                "configmap", "Print the config and the inference URL as two ConfigMaps (YAML)");
            flags
                .bind(*cm, "--namespace", "nginx.k8s_namespace",
                      "Namespace of both ConfigMaps (default inference-manager)")
                ->type_name("NS");
            flags
                .bind(*cm, "--name", "nginx.k8s_configmap",
                      "Name of the config's ConfigMap (default mlkeeper-nginx-models)")
                ->type_name("NAME");
            flags
                .bind(*cm, "--url-name", "nginx.k8s_url_configmap",
                      "Name of the inference URL's ConfigMap (default inference-service-url)")
                ->type_name("NAME");
            flags
                .bind(*cm, "--inference-url", "nginx.inference_service_url",
                      "INFERENCE_SERVICE_URL (default: the model API's URL from [api])")
                ->type_name("URL");
            app.footer(R"(
render writes one server {} block (default /etc/nginx/conf.d/mlkeeper-models.conf,
listening on 8080) with a location PREFIX/NAME/ per model that has a port. The
new file is checked in place with [nginx] test_command (nginx -t); if nginx
rejects it the old file is put back byte for byte and the error is shown. Then
[nginx] reload_command (nginx -s reload) runs. Nothing is run when the file is
already up to date. See docs/NGINX.md.
Exit codes: 0 ok (also "up to date" and --dry-run), 1 nginx rejected the file or
the reload failed, 64 usage, 78 configuration error.

Examples:
  mlkeeper nginx render --dry-run
  mlkeeper nginx render
  mlkeeper nginx render --output - > models.conf
  mlkeeper nginx configmap --namespace inference-manager | kubectl apply -f -)");
            Handler h;
            h.run = [o, ren](Context& ctx) {
                if (ren->parsed()) {
                    return render(ctx, *o);
                }
                return configmap(ctx);
            };
            return h;
        }};
}

}  // namespace mlk::cli
