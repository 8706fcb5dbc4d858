// What a subcommand is: a row of the command table (name, one-line help,
// default log file) plus a setup function that declares its options on a
// CLI11 app and returns its handler. Also the Context handlers receive.
// Thread safety: single-threaded command dispatch.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "mlkeeper/core/config.hpp"

namespace mlk::core {
class StateStore;
}

namespace mlk::cli {

// Binds command-line options to configuration keys, so a flag takes part in
// the precedence chain (flag > env > file > default) and is validated by the
// same rules as every other source.
class FlagBindings {
  public:
    // `--source DIR` -> backup.model_dir = DIR
    CLI::Option* bind(CLI::App& app, const std::string& flag, std::string key,
                      const std::string& help);
    // `--aggressive` -> cleanup.aggressive = value
    CLI::Option* bind_switch(CLI::App& app, const std::string& flag, std::string key,
                             std::string value, const std::string& help);
    // Overrides for the options given on the command line.
    std::vector<core::ConfigInputs::Override> overrides() const;

  private:
    struct Binding {
        std::string key;
        std::string origin;
        CLI::Option* option = nullptr;
        std::shared_ptr<std::string> text;  // for valued options
        std::string switch_value;           // for switches
    };
    std::vector<Binding> bindings_;
};

class Context {
  public:
    Context(core::Config config, std::string command);
    ~Context();

    const core::Config& config() const { return config_; }
    const std::string& command() const { return command_; }

    // The state store, opened on first use at [state] dir. Throws mlk::Error
    // naming the file when it cannot be opened.
    core::StateStore& state();
    std::filesystem::path state_dir() const;

    // What the handler wants recorded in history as the run's summary.
    nlohmann::json& summary() { return summary_; }

  private:
    core::Config config_;
    std::string command_;
    std::unique_ptr<core::StateStore> state_;
    nlohmann::json summary_ = nlohmann::json::object();
};

struct Handler {
    // Optional: adjust what configuration is loaded (e.g. `config check FILE`).
    std::function<void(core::ConfigInputs&)> prepare;
    std::function<int(Context&)> run;
};

enum class Record { kYes, kNo };  // whether runs appear in `mlkeeper history`

struct Command {
    std::string_view name;
    std::string_view help;
    std::string_view root_log_file;  // the seeds' log file, used when running as root
    Record record = Record::kYes;
    std::function<Handler(CLI::App&, FlagBindings&)> setup;
};

// The command table, in the order `--help` lists it.
const std::vector<Command>& commands();

// One entry per file: cmd_<name>.cpp.
Command config_command();
Command history_command();
Command backup_command();
Command verify_command();
Command restore_command();
Command backups_command();
Command alert_command();
Command cleanup_command();
Command health_command();
Command gpu_command();
Command calendar_command();
Command schedule_command();
Command agent_command();
Command models_command();    // REST client of the agent
Command shutdown_command();  // REST client of the agent
Command nginx_command();     // renders and applies the NGINX config for the models
Command maintain_command();
Command keygen_command();

// Verifies archives and prints the results (shared by `verify` and
// `backup --verify`); returns 0, or 2 when any archive is bad.
int run_verify(const std::vector<std::string>& archives, bool json, Context& ctx);

}  // namespace mlk::cli
