#include "mlkeeper/agent/services.hpp"

#include <spdlog/spdlog.h>

#include <optional>

#include "mlkeeper/api/api_settings.hpp"
#include "mlkeeper/api/auth.hpp"
#include "mlkeeper/api/model_routes.hpp"
#include "mlkeeper/api/router.hpp"
#include "mlkeeper/api/server.hpp"
#include "mlkeeper/api/shutdown_routes.hpp"
#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/homelab/model_backend.hpp"
#include "mlkeeper/homelab/model_manager.hpp"
#include "mlkeeper/homelab/model_registry.hpp"
#include "mlkeeper/homelab/shutdown_service.hpp"

namespace mlk::agent {
namespace {

// How often crashed models are noticed and restarted.
constexpr std::chrono::milliseconds kSuperviseInterval{1000};
// What the agent's own stop may spend stopping models.
constexpr std::chrono::seconds kStopModelsBudget{60};

struct Services {
    std::unique_ptr<homelab::ModelManager> models;
    std::unique_ptr<homelab::ShutdownService> shutdown;
    api::Router router;
    std::unique_ptr<api::ApiServer> server;

    Services() = default;
    Services(const Services&) = delete;
    Services& operator=(const Services&) = delete;
    ~Services() {
        if (server) {
            server->stop();  // no new operations while the models stop
        }
        if (models) {
            models->stop_monitor();
            models->stop_all(kStopModelsBudget);
        }
    }
};

}  // namespace

std::shared_ptr<void> start_services(const core::Config& cfg, core::StateStore& state,
                                     const std::filesystem::path& state_dir) {
    auto s = std::make_shared<Services>();
    const bool api_on = cfg.boolean("api.enabled");
    auto specs = homelab::load_models(cfg);
    if (!specs.empty() || api_on) {
        const auto defaults = homelab::model_defaults(cfg);
        homelab::BackendEnv env;
        env.log_dir = defaults.log_dir.empty() ? state_dir / "models" : defaults.log_dir;
        env.log_max_size = defaults.log_max_size;
        env.log_keep = defaults.log_keep;
        const std::size_t n = specs.size();
        s->models = std::make_unique<homelab::ModelManager>(
            std::move(specs),
            [env](const homelab::ModelSpec& spec) { return homelab::make_backend(spec, env); });
        s->models->start_monitor(kSuperviseInterval);
        spdlog::info("models: {} registered", n);
    }
    if (!api_on) {
        return s;
    }
    // Settings are checked before anything binds: a non-loopback listener without tokens, or a
    // tokens file others can read, stops the agent here.
    const auto settings = api::api_settings_from(cfg);
    std::optional<api::TokenSet> tokens;
    if (!settings.tokens_file.empty()) {
        tokens = api::TokenSet::load(settings.tokens_file);
    }
    s->shutdown =
        std::make_unique<homelab::ShutdownService>(homelab::shutdown_settings_from(cfg), &state);
    api::add_model_routes(s->router, *s->models);
    api::add_shutdown_routes(s->router, *s->shutdown);
    s->server = std::make_unique<api::ApiServer>(settings, s->router, std::move(tokens));
    s->server->start();
    for (std::size_t i = 0; i < settings.listeners.size(); ++i) {
        spdlog::info("api: {} listening on {}:{}{}", settings.listeners[i].name,
                     settings.listeners[i].address, s->server->bound_ports()[i],
                     settings.listeners[i].prefix);
    }
    return s;
}

}  // namespace mlk::agent
