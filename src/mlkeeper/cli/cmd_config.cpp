// `mlkeeper config check|show|keys`: validate configuration, print the
// effective settings with the source of each value, list every key.
#include <fmt/format.h>
#include <iostream>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/sched/job_config.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::cli {
namespace {

using core::Config;
using core::Setting;
using core::Source;

std::string type_label(core::ValueType t) {
    switch (t) {
        case core::ValueType::kBool:
            return "bool";
        case core::ValueType::kInt:
            return "integer";
        case core::ValueType::kNumber:
            return "number";
        case core::ValueType::kString:
            return "string";
        case core::ValueType::kPath:
            return "path";
        case core::ValueType::kChoice:
            return "choice";
        case core::ValueType::kStringList:
            return "list";
        case core::ValueType::kDuration:
            return "duration";
        case core::ValueType::kSize:
            return "size";
    }
    return "?";
}

// A TOML literal for the value, so `config show` output is a valid config file.
std::string toml_literal(const Setting& s) {
    if (!s.value) {
        return "\"\"";
    }
    auto text = Config::display(s);
    if (s.spec->sensitivity == core::Sensitivity::kSecret) {
        // Never the value; still valid TOML of the key's type.
        if (s.spec->type == core::ValueType::kStringList) {
            return text.empty() ? "[]" : "[\"********\"]";
        }
        return nlohmann::json(text).dump();
    }
    switch (s.spec->type) {
        case core::ValueType::kBool:
        case core::ValueType::kInt:
        case core::ValueType::kNumber:
        case core::ValueType::kSize:
            return text;
        case core::ValueType::kStringList: {
            nlohmann::json arr = std::get<std::vector<std::string>>(*s.value);
            return arr.dump();
        }
        default:
            return nlohmann::json(text).dump();
    }
}

nlohmann::json json_value(const Setting& s) {
    if (!s.value) {
        return nullptr;
    }
    if (s.spec->sensitivity == core::Sensitivity::kSecret) {
        return Config::display(s);
    }
    return std::visit(
        [](const auto& v) -> nlohmann::json {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::chrono::seconds>) {
                return v.count();
            } else if constexpr (std::is_same_v<T, core::Bytes>) {
                return v.value;
            } else {
                return v;
            }
        },
        *s.value);
}

int show(const Context& ctx, bool json) {
    const auto& cfg = ctx.config();
    if (json) {
        nlohmann::json out;
        out["file"] = cfg.file() ? nlohmann::json(cfg.file()->string()) : nlohmann::json(nullptr);
        auto& settings = out["settings"] = nlohmann::json::object();
        for (const auto& s : cfg.settings()) {
            settings[std::string(s.spec->section)][std::string(s.spec->name)] = {
                {"value", json_value(s)},
                {"source", core::to_string(s.source)},
                {"origin", s.origin},
            };
        }
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::cout << "# mlkeeper effective configuration\n# config file: "
              << (cfg.file() ? cfg.file()->string() : std::string("none")) << "\n";
    std::string_view section;
    for (const auto& s : cfg.settings()) {
        if (s.spec->section != section) {
            section = s.spec->section;
            std::cout << "\n[" << section << "]\n";
        }
        auto line = fmt::format("{} = {}", s.spec->name, toml_literal(s));
        std::cout << fmt::format("{:<48} # {}\n", line, s.origin);
    }
    return 0;
}

int check(const Context& ctx, bool json) {
    const auto& cfg = ctx.config();
    const auto jobs = sched::load_jobs(cfg);  // [schedule.jobs.*]: throws ConfigError (exit 78)
    int from_file = 0;
    for (const auto& s : cfg.settings()) {
        from_file += s.source == Source::kFile ? 1 : 0;
    }
    if (json) {
        nlohmann::json out = {
            {"ok", true},
            {"file", cfg.file() ? nlohmann::json(cfg.file()->string()) : nlohmann::json(nullptr)},
            {"keys_from_file", from_file},
            {"jobs", jobs.size()}};
        std::cout << out.dump(2) << "\n";
    } else if (cfg.file()) {
        std::cout << fmt::format("ok: {} is valid ({} key{} set there)\n", cfg.file()->string(),
                                 from_file, from_file == 1 ? "" : "s");
    } else {
        std::cout << "ok: no config file; built-in defaults and the environment are valid\n";
    }
    return 0;
}

int keys(bool json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& k : core::config_keys()) {
        if (json) {
            out.push_back({{"key", fmt::format("{}.{}", k.section, k.name)},
                           {"type", type_label(k.type)},
                           {"default", k.default_value},
                           {"env", k.env},
                           {"help", k.help}});
            continue;
        }
        std::cout << fmt::format("{:<36} {:<9} {:<22} {:<24} {}\n",
                                 fmt::format("[{}] {}", k.section, k.name), type_label(k.type),
                                 k.env.empty() ? "-" : k.env,
                                 k.default_value.empty() ? "(unset)" : k.default_value, k.help);
    }
    if (json) {
        std::cout << out.dump(2) << "\n";
    }
    return 0;
}

}  // namespace

Command config_command() {
    return Command{
        "config", "Check the configuration or show the effective settings", "", Record::kYes,
        [](CLI::App& app, FlagBindings&) {
            struct Opts {
                std::string file;
                bool json = false;
            };
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            auto* chk =
                app.add_subcommand("check", "Validate a config file (exit 78 when invalid)");
            chk->add_option("FILE", o->file,
                            "File to check (default: the one mlkeeper would read)");
            chk->add_flag("--json", o->json, "Machine-readable result");
            auto* shw =
                app.add_subcommand("show", "Print every setting and where its value came from");
            shw->add_flag("--json", o->json, "Machine-readable output");
            auto* kys =
                app.add_subcommand("keys", "List every key with its env variable and default");
            kys->add_flag("--json", o->json, "Machine-readable output");
            app.footer(R"(
Examples:
  mlkeeper config check /etc/mlkeeper/mlkeeper.toml
  RETENTION_DAYS=7 mlkeeper config show       shows retention_days = "7d"  # environment RETENTION_DAYS
  mlkeeper config show --json | jq '.settings.backup'
  mlkeeper config keys                        every key, its env variable, type and default)");
            Handler h;
            h.prepare = [o, chk](core::ConfigInputs& in) {
                if (chk->parsed() && !o->file.empty()) {
                    in.file = o->file;
                }
            };
            h.run = [o, chk, shw](Context& ctx) {
                if (chk->parsed()) {
                    return check(ctx, o->json);
                }
                if (shw->parsed()) {
                    return show(ctx, o->json);
                }
                return keys(o->json);
            };
            return h;
        }};
}

}  // namespace mlk::cli
