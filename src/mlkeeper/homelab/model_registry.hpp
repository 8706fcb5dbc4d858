// The models the agent may start: the [models.NAME] tables of the config file, plus the [models]
// defaults they inherit. Every field is checked and every problem reported at once as
// `file:line:col: message` (one ConfigError), like [schedule.jobs.NAME].
// Thread safety: pure functions; ModelSpec is a plain value.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mlk::core {
class Config;
}

namespace mlk::homelab {

// A crash counts against max_restarts for this long.
inline constexpr std::chrono::seconds kRestartWindow{600};

struct ModelSpec {
    enum class Backend { kProcess, kSystemd };
    enum class Restart { kNo, kOnFailure, kAlways };

    std::string name;  // [A-Za-z0-9][A-Za-z0-9._-]{0,63}
    Backend backend = Backend::kProcess;
    std::vector<std::string> command;        // kProcess: argv (required), never through a shell
    std::map<std::string, std::string> env;  // added to the agent's environment (kProcess)
    std::filesystem::path workdir;           // empty = the agent's (kProcess)
    std::string unit;                        // kSystemd: "NAME.service" (required)
    std::optional<int> port;
    std::string health_url;  // default http://127.0.0.1:{port}/health when port is set; else ""
    std::chrono::seconds start_timeout{120};
    std::chrono::seconds stop_timeout{30};
    std::optional<std::chrono::seconds> idle_timeout;  // nullopt: never stopped for idleness
    bool pinned = false;                               // never stopped by the idle reaper
    Restart restart = Restart::kOnFailure;
    std::chrono::milliseconds restart_backoff_min{1000};
    std::chrono::milliseconds restart_backoff_max{60000};
    int max_restarts = 5;  // within kRestartWindow; then the model is failed
};

// The [models] scalar keys: defaults for every model and where the backends write logs.
struct ModelDefaults {
    std::optional<std::chrono::seconds> idle_timeout = std::chrono::minutes{30};  // 0 = never
    std::chrono::seconds start_timeout{120};
    std::chrono::seconds stop_timeout{30};
    std::filesystem::path log_dir;  // empty = "<state dir>/models" (decided by the caller)
    std::uint64_t log_max_size = 10 * 1000 * 1000;  // bytes; 0 = never rotate
    int log_keep = 3;                               // rotated files kept (name.log.1 ... .N)
};

std::string_view to_string(ModelSpec::Backend b);  // "process" | "systemd"
std::string_view to_string(ModelSpec::Restart r);  // "no" | "on-failure" | "always"

// [A-Za-z0-9][A-Za-z0-9._-]{0,63}: safe in a path, a URL segment and a log file name.
bool valid_model_name(std::string_view name);
// [A-Za-z0-9:_.@-]+\.service, not starting with '-', at most 256 characters.
bool valid_unit_name(std::string_view unit);

// Keys of a [models.NAME] table: the ModelSpec fields (restart = "no" | "on-failure" | "always";
// backend = "process" | "systemd", default systemd when only `unit` is given; idle_timeout 0,
// "never" or "off" = never; restart_backoff_* also take "500ms"), plus `description` (ignored
// text) and `enabled = false` (leaves the model out).
//
// The models of a whole config file (sorted by name), with the defaults read from the same
// file's [models] scalar keys. No [models] table: no models. Throws ConfigError (exit 78)
// listing every problem; `origin` names the text in messages.
std::vector<ModelSpec> parse_models(std::string_view toml_text, std::string_view origin);
// The same with the defaults given (e.g. from the loaded Config, where env/flags may override
// the file); the [models] scalar keys in the text are then not read.
std::vector<ModelSpec> parse_models(std::string_view toml_text, std::string_view origin,
                                    const ModelDefaults& defaults);

// The [models] scalar keys of a loaded Config (keys listed in keys-models.txt).
ModelDefaults model_defaults(const core::Config& cfg);
// parse_models() over cfg's file with model_defaults(cfg); no file: no models.
std::vector<ModelSpec> load_models(const core::Config& cfg);

}  // namespace mlk::homelab
