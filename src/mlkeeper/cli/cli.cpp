#include "mlkeeper/cli/cli.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <cstdio>
#include <iostream>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/metrics_textfile.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/logging.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/core/version.hpp"

namespace mlk::cli {
namespace {

constexpr const char* kDescription =
    "mlkeeper keeps GPU/ML servers healthy: verified model backups, GPU monitoring with alerts,\n"
    "safe artifact cleanup, health checks and scheduled maintenance.";

constexpr const char* kFooter = R"(
Configuration: flag > environment > --env-file > config file > built-in default.
Exit codes: 0 ok, 1 failure or warning, 2 critical or verification failure,
            64 usage error, 78 configuration error.

Examples:
  mlkeeper config show                       effective settings and where each came from
  MODEL_DIR=/srv/models mlkeeper config show
  mlkeeper --config ./mlkeeper.toml config check
  mlkeeper history --limit 5 --json
  mlkeeper <command> --help                  options of one command)";

struct Globals {
    std::string config;
    std::string env_file;
    bool quiet = false;
    bool verbose = false;
    bool no_color = false;
    bool version = false;
};

void print_error_lines(const std::string& message) {
    std::size_t pos = 0;
    while (pos <= message.size()) {
        auto nl = message.find('\n', pos);
        auto line = message.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        std::fprintf(stderr, "mlkeeper: %s\n", line.c_str());
        if (nl == std::string::npos) {
            break;
        }
        pos = nl + 1;
    }
}

core::LogOptions log_options(const core::Config& cfg, const Command& cmd, const Globals& g) {
    core::LogOptions o;
    o.level = core::parse_log_level(cfg.str("log.log_level"));
    o.format =
        cfg.str("log.log_format") == "json" ? core::LogFormat::kJson : core::LogFormat::kText;
    o.color = g.no_color || std::getenv("NO_COLOR") != nullptr ? core::ColorMode::kNever
                                                               : core::ColorMode::kAuto;
    bool verbose = g.verbose || cfg.setting("log.log_level").source != core::Source::kDefault;
    o.stderr_mode = g.quiet   ? core::StderrMode::kQuiet
                    : verbose ? core::StderrMode::kVerbose
                              : core::StderrMode::kNormal;
    if (cfg.is_set("log.log_file")) {
        o.file = cfg.path("log.log_file");
    } else if (::geteuid() == 0 && !cmd.root_log_file.empty()) {
        o.file = std::string(cmd.root_log_file);
    }
    o.syslog = cfg.boolean("log.syslog");
    o.command = std::string(cmd.name);
    return o;
}

// Runs the handler; failures become one line on stderr and an exit code.
int invoke(const Handler& handler, Context& ctx) {
    try {
        return handler.run(ctx);
    } catch (const Error& e) {
        spdlog::error("{}", e.what());
        ctx.summary()["error"] = e.what();
        return to_int(e.code());
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        ctx.summary()["error"] = e.what();
        return to_int(ExitCode::kFailure);
    }
}

}  // namespace

int run(int argc, char** argv) {
    CLI::App app{kDescription, "mlkeeper"};
    app.footer(kFooter);
    app.set_help_all_flag("--help-all", "Show help for every command");
    Globals g;
    FlagBindings globals;
    app.add_flag("--version", g.version, "Print version, git hash, build type and libraries");
    app.add_option("--config", g.config,
                   "Config file (default $MLKEEPER_CONFIG or /etc/mlkeeper/mlkeeper.toml)")
        ->type_name("FILE");
    app.add_option("--env-file", g.env_file, "KEY=VALUE file, e.g. /etc/ml-automation.conf")
        ->type_name("FILE");
    globals.bind(app, "--log-level", "log.log_level", "trace|debug|info|warning|error")
        ->type_name("LEVEL");
    globals.bind(app, "--log-file", "log.log_file", "Also log to this file")->type_name("FILE");
    globals.bind(app, "--log-format", "log.log_format", "text or json (one object a line)")
        ->type_name("FORMAT");
    app.add_flag("-q,--quiet", g.quiet, "Only errors on stderr");
    app.add_flag("-v,--verbose", g.verbose,
                 "Also info lines on stderr (they always go to the log)");
    app.add_flag("--no-color", g.no_color, "No colour (also: NO_COLOR set)");

    struct Entry {
        const Command* cmd;
        CLI::App* app;
        FlagBindings flags;
        Handler handler;
    };
    std::vector<std::unique_ptr<Entry>> entries;
    for (const auto& cmd : commands()) {
        auto e = std::make_unique<Entry>();
        e->cmd = &cmd;
        e->app = app.add_subcommand(std::string(cmd.name), std::string(cmd.help));
        e->app->fallthrough();
        e->handler = cmd.setup(*e->app, e->flags);
        entries.push_back(std::move(e));
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::string where = "mlkeeper";
        for (const auto* sub = &app; !sub->get_subcommands().empty();) {
            sub = sub->get_subcommands().front();
            where += " " + sub->get_name();
        }
        std::fprintf(stderr, "mlkeeper: %s (see '%s --help')\n", e.what(), where.c_str());
        return to_int(ExitCode::kUsage);
    }
    if (g.version) {
        std::cout << core::version_text();
        return 0;
    }
    Entry* chosen = nullptr;
    for (auto& e : entries) {
        if (e->app->parsed()) {
            chosen = e.get();
        }
    }
    if (chosen == nullptr) {
        std::cout << app.help();
        return 0;
    }

    core::ConfigInputs inputs;
    if (!g.config.empty()) {
        inputs.file = g.config;
    }
    if (!g.env_file.empty()) {
        inputs.env_file = g.env_file;
    }
    inputs.env = core::process_environment();
    inputs.flags = globals.overrides();
    for (auto& o : chosen->flags.overrides()) {
        inputs.flags.push_back(std::move(o));
    }
    if (chosen->handler.prepare) {
        chosen->handler.prepare(inputs);
    }

    std::optional<core::Config> config;
    try {
        config = core::Config::load(inputs);
    } catch (const Error& e) {
        print_error_lines(e.what());
        return to_int(e.code());
    }

    core::init_logging(log_options(*config, *chosen->cmd, g));
    core::install_sighup_reopen();

    spdlog::debug("mlkeeper {} {} starting (pid {}, config file: {})", core::version(),
                  chosen->cmd->name, ::getpid(),
                  config->file() ? config->file()->string() : std::string("none"));
    Context ctx(std::move(*config), std::string(chosen->cmd->name));
    std::optional<std::int64_t> run_id;
    if (chosen->cmd->record == Record::kYes) {
        try {
            run_id = ctx.state().begin_run(chosen->cmd->name,
                                           std::vector<std::string>(argv + 1, argv + argc));
        } catch (const std::exception& e) {
            spdlog::warn("this run is not recorded in history: {}", e.what());
        }
    }

    int code = invoke(chosen->handler, ctx);

    if (run_id) {
        try {
            ctx.state().end_run(*run_id, code, ctx.summary());
        } catch (const std::exception& e) {
            spdlog::warn("could not record the end of this run: {}", e.what());
        }
        write_metrics_textfile(ctx, chosen->cmd->name);
    }
    spdlog::debug("{} finished with exit code {}", chosen->cmd->name, code);
    spdlog::shutdown();
    return code;
}

}  // namespace mlk::cli
