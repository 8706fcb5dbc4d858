// Builds the alert channels and the dispatcher from the [alerts] section of
// the configuration. Settings that can never work (no recipients, a bad
// header) are configuration errors reported before any alert is sent.
// Thread safety: stateless.
#pragma once

#include <memory>

#include "mlkeeper/alert/alert_state.hpp"
#include "mlkeeper/alert/dispatcher.hpp"
#include "mlkeeper/core/config.hpp"

namespace mlk::alert {

// Throws ConfigError naming the key when a channel cannot be built.
std::unique_ptr<Dispatcher> dispatcher_from_config(const core::Config& cfg);

AlertPolicy policy_from_config(const core::Config& cfg);

}  // namespace mlk::alert
