#include "mlkeeper/agent/services.hpp"

#include "mlkeeper/agent/nginx_follower.hpp"

#include <spdlog/spdlog.h>

#include <optional>

#include "mlkeeper/api/api_settings.hpp"
#include "mlkeeper/api/auth.hpp"
#include "mlkeeper/api/model_routes.hpp"
#include "mlkeeper/api/monitor_routes.hpp"
#include "mlkeeper/api/router.hpp"
#include "mlkeeper/api/server.hpp"
#include "mlkeeper/api/shutdown_routes.hpp"
#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/homelab/access_log_tailer.hpp"
#include "mlkeeper/homelab/activity.hpp"
#include "mlkeeper/homelab/idle_reaper.hpp"
#include "mlkeeper/homelab/model_backend.hpp"
#include "mlkeeper/homelab/model_manager.hpp"
#include "mlkeeper/homelab/model_proxy.hpp"
#include "mlkeeper/homelab/model_registry.hpp"
#include "mlkeeper/homelab/nginx_apply.hpp"
#include "mlkeeper/homelab/nginx_config.hpp"
#include "mlkeeper/homelab/shutdown_service.hpp"
#include "mlkeeper/metrics/exporter.hpp"
#include "mlkeeper/metrics/gpu_collector.hpp"
#include "mlkeeper/metrics/gpu_history.hpp"
#include "mlkeeper/metrics/health_collector.hpp"
#include "mlkeeper/sched/job_config.hpp"

namespace mlk::agent {
namespace {

// How often crashed models are noticed and restarted.
constexpr std::chrono::milliseconds kSuperviseInterval{1000};
// How soon NGINX routes a model that started, or refuses one that stopped.
constexpr std::chrono::milliseconds kFollowInterval{1000};
// What the agent's own stop may spend stopping models.
constexpr std::chrono::seconds kStopModelsBudget{60};

struct Services {
    std::unique_ptr<homelab::ModelManager> models;
    std::unique_ptr<homelab::ActivityTracker> activity;
    std::unique_ptr<homelab::AccessLogTailer> tailer;     // saves the counters with its position
    std::unique_ptr<homelab::ActivityAutosave> autosave;  // ... or this does, never both
    std::unique_ptr<homelab::IdleReaper> reaper;
    std::unique_ptr<homelab::ModelProxy> proxy;
    std::unique_ptr<NginxFollower> nginx;
    std::unique_ptr<homelab::ShutdownService> shutdown;
    api::Router router;
    std::unique_ptr<api::ApiServer> server;
    // [metrics]: its own listener, so Prometheus and the status page work without the REST API.
    std::unique_ptr<metrics::GpuHistory> history;
    std::unique_ptr<metrics::GpuCollector> gpus;
    std::unique_ptr<metrics::HealthCollector> health;
    std::unique_ptr<metrics::Exporter> exporter;
    api::Router metrics_router;
    std::unique_ptr<api::ApiServer> metrics_server;

    Services() = default;
    Services(const Services&) = delete;
    Services& operator=(const Services&) = delete;
    ~Services() {
        // No new requests or operations first, then no idle stops, then the counters' final
        // save, and only then the models themselves.
        if (proxy) {
            proxy->stop();
        }
        if (server) {
            server->stop();
        }
        if (metrics_server) {
            metrics_server->stop();
        }
        if (health) {
            health->stop();
        }
        if (gpus) {
            gpus->stop();
        }
        if (reaper) {
            reaper->stop();
        }
        nginx.reset();  // the models stopping below are the agent's end, not a change to route
        if (tailer) {
            tailer->stop();
        }
        autosave.reset();
        if (models) {
            models->stop_monitor();
            models->stop_all(kStopModelsBudget);
        }
    }
};

// Request counters (restored from the state store), their source besides the proxy (an NGINX
// access log) and the idle reaper. The reaper only runs where requests are seen at all: without
// the proxy or an access log every model would look idle and be stopped.
void start_activity(Services& s, const core::Config& cfg, core::StateStore& state,
                    const std::vector<homelab::ModelSpec>& specs, bool proxy_on) {
    std::vector<std::string> names;
    for (const auto& spec : specs) {
        names.push_back(spec.name);
    }
    s.activity = std::make_unique<homelab::ActivityTracker>(names);
    s.activity->load(state);
    auto* tracker = s.activity.get();
    auto* store = &state;
    if (auto ts = homelab::tailer_settings_from(cfg)) {
        s.tailer = std::make_unique<homelab::AccessLogTailer>(
            *ts, *tracker,
            homelab::TailerPersistence{store, [tracker, store] { tracker->save(*store); }});
        s.tailer->start();
        spdlog::info("activity: following {}", ts->path.string());
    } else {
        s.autosave = std::make_unique<homelab::ActivityAutosave>(
            [tracker, store] { tracker->save(*store); },
            std::chrono::duration_cast<std::chrono::milliseconds>(
                cfg.duration("activity.persist_interval")));
    }
    if (!proxy_on && !s.tailer) {
        spdlog::info(
            "models: idle reaper off: no requests are seen (enable [proxy] or set [activity] "
            "access_log)");
        return;
    }
    s.reaper = std::make_unique<homelab::IdleReaper>(homelab::reaper_settings_from(cfg), *s.models,
                                                     *tracker, specs);
    s.reaper->start();
}
// The metrics listener's settings: [metrics] listen, with the API's tokens (any token may read)
// when [api] tokens_file is set; off loopback it must be.
api::ApiSettings metrics_listener(const core::Config& cfg, std::optional<api::TokenSet>* tokens) {
    api::ApiSettings out;
    api::ListenerSettings l;
    l.name = "metrics";
    try {
        const auto hp = api::parse_host_port(cfg.str("metrics.listen"));
        l.address = hp.address;
        l.port = hp.port;
    } catch (const std::invalid_argument& e) {
        throw ConfigError(std::string("metrics.listen: ") + e.what());
    }
    l.groups = {api::RouteGroup::kMetrics};
    out.listeners.push_back(l);
    out.workers = 4;
    out.rate_per_minute = 0;
    const auto tokens_file = cfg.path("api.tokens_file");
    if (!tokens_file.empty()) {
        *tokens = api::TokenSet::load(tokens_file);
    } else if (!api::is_loopback(l.address)) {
        throw ConfigError("metrics.listen: " + cfg.str("metrics.listen") +
                          " is not a loopback address; set [api] tokens_file so scrapes and the "
                          "status page need a token, or listen on 127.0.0.1");
    }
    return out;
}

void start_metrics(Services& s, const core::Config& cfg, core::StateStore& state) {
    std::optional<api::TokenSet> tokens;
    const auto settings = metrics_listener(cfg, &tokens);
    if (cfg.boolean("metrics.history")) {
        metrics::HistorySettings hs;
        hs.raw_keep = cfg.duration("metrics.history_raw");
        hs.minute_keep = cfg.duration("metrics.history_minutes");
        hs.ten_minute_keep = cfg.duration("metrics.history_keep");
        s.history = std::make_unique<metrics::GpuHistory>(state, hs);
    }
    metrics::GpuCollectorSettings gs;
    gs.library = cfg.str("gpu.nvml_library");
    gs.thresholds = gpu::thresholds_from(cfg);
    gs.interval =
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg.duration("metrics.gpu_interval"));
    s.gpus = std::make_unique<metrics::GpuCollector>(gs, s.history.get());
    const auto health_every = std::chrono::duration_cast<std::chrono::milliseconds>(
        cfg.duration("metrics.health_interval"));
    if (health_every.count() > 0) {
        auto ho = health::options_from_config(cfg);
        if (!cfg.boolean("metrics.health_network")) {
            ho.network = health::Network::kSkip;
        }
        s.health = std::make_unique<metrics::HealthCollector>(ho, health_every, s.gpus.get());
    }
    metrics::ExporterSources src;
    src.gpus = s.gpus.get();
    src.health = s.health.get();
    src.history = s.history.get();
    src.models = s.models.get();
    src.activity = s.activity.get();
    src.state_db = state.path();
    src.jobs = sched::load_jobs(cfg);
    s.exporter = std::make_unique<metrics::Exporter>(std::move(src));
    s.exporter->add_routes(s.metrics_router);
    s.metrics_server =
        std::make_unique<api::ApiServer>(settings, s.metrics_router, std::move(tokens));
    s.metrics_server->start();
    s.gpus->start();
    if (s.health) {
        s.health->start();
    }
    spdlog::info("metrics: listening on {}:{} (/metrics, status page at /)",
                 settings.listeners[0].address, s.metrics_server->bound_ports()[0]);
}

}  // namespace

std::shared_ptr<void> start_services(const core::Config& cfg, core::StateStore& state,
                                     const std::filesystem::path& state_dir) {
    auto s = std::make_shared<Services>();
    const bool api_on = cfg.boolean("api.enabled");
    const bool proxy_on = cfg.boolean("proxy.enabled");
    auto specs = homelab::load_models(cfg);
    if (!specs.empty() || api_on || proxy_on) {
        const auto defaults = homelab::model_defaults(cfg);
        homelab::BackendEnv env;
        env.log_dir = defaults.log_dir.empty() ? state_dir / "models" : defaults.log_dir;
        env.log_max_size = defaults.log_max_size;
        env.log_keep = defaults.log_keep;
        s->models = std::make_unique<homelab::ModelManager>(
            specs,
            [env](const homelab::ModelSpec& spec) { return homelab::make_backend(spec, env); });
        s->models->start_monitor(kSuperviseInterval);
        spdlog::info("models: {} registered", specs.size());
        start_activity(*s, cfg, state, specs, proxy_on);
    }
    if (s->models && follows_models(cfg)) {
        s->nginx = std::make_unique<NginxFollower>(
            *s->models, NginxFollower::render_and_apply(homelab::nginx_settings_from(cfg), specs),
            kFollowInterval);
    }
    // Settings are checked before anything binds: a non-loopback listener without tokens, or a
    // tokens file others can read, stops the agent here.
    std::optional<api::ApiSettings> settings;
    std::optional<api::TokenSet> tokens;
    if (api_on) {
        settings = api::api_settings_from(cfg);
        if (!settings->tokens_file.empty()) {
            tokens = api::TokenSet::load(settings->tokens_file);
        }
    }
    if (proxy_on) {
        const auto ps = homelab::proxy_settings_from(cfg);
        s->proxy = std::make_unique<homelab::ModelProxy>(ps, *s->models, s->activity.get());
        s->proxy->start();
        spdlog::info("proxy: listening on {}:{}{}/NAME/", ps.address, s->proxy->bound_port(),
                     ps.prefix == "/" ? "" : ps.prefix);
    }
    if (cfg.boolean("metrics.enabled")) {
        start_metrics(*s, cfg, state);
    }
    if (!api_on) {
        return s;
    }
    s->shutdown =
        std::make_unique<homelab::ShutdownService>(homelab::shutdown_settings_from(cfg), &state);
    api::add_model_routes(s->router, *s->models);
    api::add_shutdown_routes(s->router, *s->shutdown);
    api::add_monitor_routes(s->router, *s->activity, s->reaper.get(), *s->models);
    s->server = std::make_unique<api::ApiServer>(*settings, s->router, std::move(tokens));
    s->server->start();
    for (std::size_t i = 0; i < settings->listeners.size(); ++i) {
        spdlog::info("api: {} listening on {}:{}{}", settings->listeners[i].name,
                     settings->listeners[i].address, s->server->bound_ports()[i],
                     settings->listeners[i].prefix);
    }
    return s;
}

bool follows_models(const core::Config& cfg) {
    return cfg.boolean("nginx.enabled") && cfg.boolean("nginx.render_on_model_change") &&
           cfg.str("nginx.upstream") == "direct";
}

void render_nginx_if_enabled(const core::Config& cfg) {
    if (!cfg.boolean("nginx.enabled")) {
        return;
    }
    if (follows_models(cfg)) {
        // NginxFollower renders, for the models that run; a restart applies changed settings.
        return;
    }
    try {
        const auto r =
            homelab::render_and_apply(homelab::nginx_settings_from(cfg), homelab::load_models(cfg));
        if (!r.ok()) {
            spdlog::error("nginx: {} kept its previous content: {}", r.path.string(), r.error);
        } else if (r.outcome == homelab::ApplyOutcome::kApplied) {
            spdlog::info("nginx: wrote {}{}", r.path.string(),
                         r.reloaded ? " and reloaded nginx" : "");
        }
    } catch (const std::exception& e) {
        spdlog::error("nginx: cannot render the models' configuration: {}", e.what());
    }
}

}  // namespace mlk::agent
