#include <unistd.h>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/state_store.hpp"

namespace mlk::cli {

CLI::Option* FlagBindings::bind(CLI::App& app, const std::string& flag, std::string key,
                                const std::string& help) {
    auto text = std::make_shared<std::string>();
    auto* opt = app.add_option(flag, *text, help);
    bindings_.push_back({std::move(key), "option " + flag, opt, text, {}});
    return opt;
}

CLI::Option* FlagBindings::bind_switch(CLI::App& app, const std::string& flag, std::string key,
                                       std::string value, const std::string& help) {
    auto* opt = app.add_flag(flag, help);
    bindings_.push_back({std::move(key), "option " + flag, opt, nullptr, std::move(value)});
    return opt;
}

std::vector<core::ConfigInputs::Override> FlagBindings::overrides() const {
    std::vector<core::ConfigInputs::Override> out;
    for (const auto& b : bindings_) {
        if (b.option->count() == 0) {
            continue;
        }
        out.push_back({b.key, b.text ? *b.text : b.switch_value, b.origin});
    }
    return out;
}

Context::Context(core::Config config, std::string command)
    : config_(std::move(config)), command_(std::move(command)) {}

Context::~Context() = default;

std::filesystem::path Context::state_dir() const {
    if (config_.is_set("state.dir")) {
        return config_.path("state.dir");
    }
    return core::StateStore::default_dir();
}

core::StateStore& Context::state() {
    if (!state_) {
        state_ = std::make_unique<core::StateStore>(state_dir() / "state.db");
    }
    return *state_;
}

}  // namespace mlk::cli
