// The agent's long-running services besides the scheduler: the model manager (supervising the
// [models.NAME] registry), the request counters (fed by the model proxy and an NGINX access
// log) with the idle reaper, the model proxy, the shutdown timer and the REST API serving them.
// Built from the configuration, started together and stopped in the safe order (stop answering
// requests, then stop reaping and save the counters, then stop the models the agent started).
// Thread safety: construct and destroy from one thread; the services themselves are thread-safe.
#pragma once

#include <filesystem>
#include <memory>

namespace mlk::core {
class Config;
class StateStore;
}  // namespace mlk::core

namespace mlk::agent {

// Starts what `cfg` asks for: the API only with [api] enabled = true and the model proxy only
// with [proxy] enabled = true (the agent opens no port otherwise); the model manager whenever
// models are registered or either is on; the shutdown timer with the API
// (a schedule a previous agent left is resumed). `state_dir` holds the models' logs by default.
// Throws mlk::Error / ConfigError when a listener cannot bind or the tokens file is unsafe. The
// returned object stops everything when destroyed.
std::shared_ptr<void> start_services(const core::Config& cfg, core::StateStore& state,
                                     const std::filesystem::path& state_dir);

// With [nginx] enabled = true: renders the models' NGINX config from `cfg` and applies it
// (nginx -t, reload); a failure is logged, never thrown, so a broken nginx cannot stop the agent.
// Called at start and on every SIGHUP. With render_on_model_change (direct upstreams) it does
// nothing: the services' NginxFollower renders for the models that run.
void render_nginx_if_enabled(const core::Config& cfg);

// [nginx] enabled, render_on_model_change and upstream = "direct".
bool follows_models(const core::Config& cfg);

}  // namespace mlk::agent
