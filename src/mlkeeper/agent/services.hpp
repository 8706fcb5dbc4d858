// The agent's long-running services besides the scheduler: the model manager (supervising the
// [models.NAME] registry), the shutdown timer and the REST API serving both. Built from the
// configuration, started together and stopped in the safe order (stop answering requests, then
// stop the models the agent started, then the timer).
// Thread safety: construct and destroy from one thread; the services themselves are thread-safe.
#pragma once

#include <filesystem>
#include <memory>

namespace mlk::core {
class Config;
class StateStore;
}  // namespace mlk::core

namespace mlk::agent {

// Starts what `cfg` asks for: the API only with [api] enabled = true (the agent opens no port
// otherwise); the model manager whenever models are registered; the shutdown timer with the API
// (a schedule a previous agent left is resumed). `state_dir` holds the models' logs by default.
// Throws mlk::Error / ConfigError when a listener cannot bind or the tokens file is unsafe. The
// returned object stops everything when destroyed.
std::shared_ptr<void> start_services(const core::Config& cfg, core::StateStore& state,
                                     const std::filesystem::path& state_dir);

}  // namespace mlk::agent
