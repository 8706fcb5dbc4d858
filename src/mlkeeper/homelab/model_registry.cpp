#include "mlkeeper/homelab/model_registry.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::homelab {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// clang-format off
constexpr std::array<std::string_view, 17> kModelKeys = {
    "backend", "command", "env", "workdir", "unit", "port", "health_url", "start_timeout",
    "stop_timeout", "idle_timeout", "pinned", "restart", "restart_backoff_min",
    "restart_backoff_max", "max_restarts", "description", "enabled"};
// clang-format on

constexpr std::array<std::string_view, 6> kDefaultKeys = {
    "idle_timeout", "start_timeout", "stop_timeout", "log_dir", "log_max_size", "log_keep"};

bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// A name or value from the file, quoted so that control characters, quotes and very long text
// cannot garble the one-line message.
std::string shown(std::string_view s) {
    std::string out = "\"";
    std::size_t n = 0;
    for (char c : s) {
        if (++n > 64) {
            out += "...";
            break;
        }
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || u >= 0x80 || c == '"' || c == '\\') {
            out += fmt::format("\\x{:02x}", u);
        } else {
            out += c;
        }
    }
    return out + "\"";
}

bool valid_env_name(std::string_view n) {
    return !n.empty() && !(n.front() >= '0' && n.front() <= '9') &&
           std::all_of(n.begin(), n.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

struct Problem {
    toml::source_index line = 0, column = 0;
    std::string text;
};

class ModelReader {
  public:
    ModelReader(std::string origin, std::vector<Problem>& errors)
        : origin_(std::move(origin)), errors_(errors) {}

    void error(const toml::node& n, const std::string& msg) {
        const auto& at = n.source().begin;
        errors_.push_back(
            {at.line, at.column, fmt::format("{}:{}:{}: {}", origin_, at.line, at.column, msg)});
    }

    std::optional<std::string> text(const toml::node& v, std::string_view key) {
        if (auto s = v.value_exact<std::string>()) {
            if (s->find('\0') != std::string::npos) {
                error(v, fmt::format("`{}` must not contain a NUL character", key));
                return std::nullopt;
            }
            return s;
        }
        error(v, fmt::format("`{}` must be a string", key));
        return std::nullopt;
    }
    std::optional<bool> boolean(const toml::node& v, std::string_view key) {
        if (auto b = v.value_exact<bool>()) {
            return b;
        }
        error(v, fmt::format("`{}` must be true or false", key));
        return std::nullopt;
    }
    std::optional<std::int64_t> integer(const toml::node& v, std::string_view key, std::int64_t lo,
                                        std::int64_t hi) {
        auto i = v.value_exact<std::int64_t>();
        if (!i || *i < lo || *i > hi) {
            error(v, fmt::format("`{}` must be a whole number from {} to {}", key, lo, hi));
            return std::nullopt;
        }
        return i;
    }
    // A duration in seconds: a number of seconds or text such as "2m"; "ms" only where
    // `allow_ms` (backoffs), since the rest of the configuration counts in whole seconds.
    std::optional<milliseconds> duration(const toml::node& v, std::string_view key,
                                         seconds max = util::kMaxDuration, bool allow_ms = false) {
        std::optional<milliseconds> d;
        if (auto i = v.value_exact<std::int64_t>()) {
            if (*i >= 0 && *i <= max.count()) {
                d = seconds{*i};
            }
        } else if (auto s = v.value_exact<std::string>()) {
            std::string_view t = *s;
            if (allow_ms && t.size() > 2 && t.substr(t.size() - 2) == "ms" && t.size() <= 12 &&
                std::all_of(t.begin(), t.end() - 2, [](char c) { return c >= '0' && c <= '9'; })) {
                d = milliseconds{std::stoll(std::string(t.substr(0, t.size() - 2)))};
            } else {
                try {
                    d = util::parse_duration(t);
                } catch (const std::invalid_argument& e) {
                    error(v, fmt::format("`{}`: {}", key, e.what()));
                    return std::nullopt;
                }
            }
            if (d && *d > max) {
                d.reset();
            }
        }
        if (!d) {
            error(v, fmt::format("`{}` must be a duration such as \"{}\" or a number of seconds "
                                 "(at most {})",
                                 key, allow_ms ? "500ms" : "2m", util::format_duration(max)));
        }
        return d;
    }
    std::optional<std::vector<std::string>> strings(const toml::node& v, std::string_view key) {
        const auto* arr = v.as_array();
        std::vector<std::string> out;
        bool ok = arr != nullptr;
        if (ok) {
            for (const auto& e : *arr) {
                auto s = e.value_exact<std::string>();
                if (!s || s->find('\0') != std::string::npos) {
                    ok = false;
                    break;
                }
                out.push_back(*s);
            }
        }
        if (!ok) {
            error(v,
                  fmt::format("`{}` must be an array of strings, e.g. [\"/usr/bin/llama-server\", "
                              "\"--port\", \"8001\"]",
                              key));
            return std::nullopt;
        }
        return out;
    }

    // Reads one [models.NAME] table over `m` (which holds the defaults). Returns false when the
    // table says enabled = false.
    bool read_model(const toml::table& t, ModelSpec& m) {
        bool enabled = true;
        std::optional<std::string> backend;
        std::optional<milliseconds> bmin, bmax;
        for (const auto& [k, v] : t) {
            const std::string_view key = k.str();
            if (std::find(kModelKeys.begin(), kModelKeys.end(), key) == kModelKeys.end()) {
                error(v, fmt::format("unknown key {} in [models.{}] (known: backend, command, env, "
                                     "workdir, unit, port, health_url, start_timeout, "
                                     "stop_timeout, idle_timeout, pinned, restart, "
                                     "restart_backoff_min, restart_backoff_max, max_restarts, "
                                     "description, enabled)",
                                     shown(key), m.name));
                continue;
            }
            if (key == "enabled") {
                enabled = boolean(v, key).value_or(enabled);
            } else if (key == "description") {
                (void)text(v, key);
            } else if (key == "backend") {
                if (auto s = text(v, key)) {
                    if (*s == "process" || *s == "systemd") {
                        backend = *s;
                    } else {
                        error(v, fmt::format("backend {} must be \"process\" or \"systemd\"",
                                             shown(*s)));
                    }
                }
            } else if (key == "command") {
                if (auto a = strings(v, key)) {
                    if (a->empty() || a->front().empty()) {
                        error(v, "`command` needs at least the program to run");
                    } else {
                        m.command = std::move(*a);
                    }
                }
            } else if (key == "env") {
                read_env(v, m);
            } else if (key == "workdir") {
                if (auto s = text(v, key)) {
                    if (s->empty() || s->front() != '/') {
                        error(v, "`workdir` must be an absolute path");
                    } else {
                        m.workdir = *s;
                    }
                }
            } else if (key == "unit") {
                if (auto s = text(v, key)) {
                    if (!valid_unit_name(*s)) {
                        error(v, fmt::format("unit {} must be a systemd service name such as "
                                             "\"llama3.service\" ([A-Za-z0-9:_.@-], ending in "
                                             ".service)",
                                             shown(*s)));
                    } else {
                        m.unit = *s;
                    }
                }
            } else if (key == "port") {
                if (auto p = integer(v, key, 1, 65535)) {
                    m.port = static_cast<int>(*p);
                }
            } else if (key == "health_url") {
                read_health_url(v, m);
            } else if (key == "start_timeout") {
                if (auto d = duration(v, key, seconds{86400})) {
                    if (d->count() == 0) {
                        error(v, "`start_timeout` must be at least 1s");
                    } else {
                        m.start_timeout = std::chrono::duration_cast<seconds>(*d);
                    }
                }
            } else if (key == "stop_timeout") {
                if (auto d = duration(v, key, seconds{3600})) {
                    m.stop_timeout = std::chrono::duration_cast<seconds>(*d);
                }
            } else if (key == "idle_timeout") {
                read_idle(v, m);
            } else if (key == "pinned") {
                m.pinned = boolean(v, key).value_or(m.pinned);
            } else if (key == "restart") {
                read_restart(v, m);
            } else if (key == "restart_backoff_min") {
                bmin = duration(v, key, seconds{86400}, true);
            } else if (key == "restart_backoff_max") {
                bmax = duration(v, key, seconds{86400}, true);
            } else if (key == "max_restarts") {
                if (auto i = integer(v, key, 0, 1000)) {
                    m.max_restarts = static_cast<int>(*i);
                }
            }
        }
        m.restart_backoff_min = bmin.value_or(m.restart_backoff_min);
        m.restart_backoff_max = bmax.value_or(m.restart_backoff_max);
        if (m.restart_backoff_min.count() <= 0 || m.restart_backoff_min > m.restart_backoff_max) {
            error(t, fmt::format("model {}: restart_backoff_min must be above 0 and at most "
                                 "restart_backoff_max",
                                 m.name));
        }
        check_backend(t, m, backend);
        if (m.port && m.health_url.empty() && !t.contains("health_url")) {
            m.health_url = fmt::format("http://127.0.0.1:{}/health", *m.port);
        }
        return enabled;
    }

    // The [models] scalar keys of the file.
    void read_defaults(const toml::table& models, ModelDefaults& d) {
        for (const auto& [k, v] : models) {
            const std::string_view key = k.str();
            if (v.is_table()) {
                continue;
            }
            if (std::find(kDefaultKeys.begin(), kDefaultKeys.end(), key) == kDefaultKeys.end()) {
                error(v, fmt::format("unknown key {} in [models] (models are tables: "
                                     "[models.NAME])",
                                     shown(key)));
            } else if (key == "idle_timeout") {
                if (auto t = duration(v, key, seconds{31 * 86400})) {
                    d.idle_timeout = t->count() == 0
                                         ? std::nullopt
                                         : std::optional(std::chrono::duration_cast<seconds>(*t));
                }
            } else if (key == "start_timeout") {
                if (auto t = duration(v, key, seconds{86400})) {
                    if (t->count() == 0) {
                        error(v, "`start_timeout` must be at least 1s");
                    } else {
                        d.start_timeout = std::chrono::duration_cast<seconds>(*t);
                    }
                }
            } else if (key == "stop_timeout") {
                if (auto t = duration(v, key, seconds{3600})) {
                    d.stop_timeout = std::chrono::duration_cast<seconds>(*t);
                }
            } else if (key == "log_dir") {
                if (auto s = text(v, key)) {
                    d.log_dir = *s;
                }
            } else if (key == "log_max_size") {
                read_size(v, d);
            } else if (key == "log_keep") {
                if (auto i = integer(v, key, 0, 100)) {
                    d.log_keep = static_cast<int>(*i);
                }
            }
        }
    }

  private:
    void read_env(const toml::node& v, ModelSpec& m) {
        const auto* t = v.as_table();
        if (t == nullptr) {
            error(v,
                  "`env` must be a table of strings, e.g. env = { CUDA_VISIBLE_DEVICES = \"0\" }");
            return;
        }
        for (const auto& [k, val] : *t) {
            const std::string name(k.str());
            if (!valid_env_name(name)) {
                error(val, fmt::format("env name {} must be letters, digits and '_', not "
                                       "starting with a digit",
                                       shown(name)));
                continue;
            }
            if (auto s = text(val, "env." + name)) {
                m.env[name] = *s;
            }
        }
    }

    void read_health_url(const toml::node& v, ModelSpec& m) {
        auto s = text(v, "health_url");
        if (!s) {
            return;
        }
        const bool ok =
            s->empty() || ((s->rfind("http://", 0) == 0 || s->rfind("https://", 0) == 0) &&
                           std::none_of(s->begin(), s->end(), [](char c) {
                               return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
                           }));
        if (!ok) {
            error(v, fmt::format("health_url {} must be an http:// or https:// URL without spaces "
                                 "(or \"\" for no health check)",
                                 shown(*s)));
            return;
        }
        m.health_url = *s;
    }

    void read_idle(const toml::node& v, ModelSpec& m) {
        if (auto s = v.value_exact<std::string>(); s && (*s == "never" || *s == "off")) {
            m.idle_timeout.reset();
            return;
        }
        if (auto d = duration(v, "idle_timeout", seconds{31 * 86400})) {
            m.idle_timeout = d->count() == 0
                                 ? std::nullopt
                                 : std::optional(std::chrono::duration_cast<seconds>(*d));
        }
    }

    void read_restart(const toml::node& v, ModelSpec& m) {
        auto s = text(v, "restart");
        if (!s) {
            return;
        }
        if (*s == "no") {
            m.restart = ModelSpec::Restart::kNo;
        } else if (*s == "on-failure") {
            m.restart = ModelSpec::Restart::kOnFailure;
        } else if (*s == "always") {
            m.restart = ModelSpec::Restart::kAlways;
        } else {
            error(v, fmt::format("restart {} must be \"no\", \"on-failure\" or \"always\"",
                                 shown(*s)));
        }
    }

    void read_size(const toml::node& v, ModelDefaults& d) {
        if (auto i = v.value_exact<std::int64_t>(); i && *i >= 0) {
            d.log_max_size = static_cast<std::uint64_t>(*i);
            return;
        }
        if (auto s = v.value_exact<std::string>()) {
            try {
                d.log_max_size = util::parse_size(*s);
                return;
            } catch (const std::invalid_argument&) {
            }
        }
        error(v, "`log_max_size` must be a size such as \"10MB\" (0 = never rotate)");
    }

    void check_backend(const toml::table& t, ModelSpec& m,
                       const std::optional<std::string>& backend) {
        // Without `backend`, a `unit` alone means systemd: the obvious reading, not a guess.
        const bool systemd =
            backend ? *backend == "systemd" : (t.contains("unit") && !t.contains("command"));
        m.backend = systemd ? ModelSpec::Backend::kSystemd : ModelSpec::Backend::kProcess;
        if (systemd) {
            if (t.contains("command") || t.contains("env") || t.contains("workdir")) {
                error(t,
                      fmt::format("model {}: command, env and workdir belong in the systemd unit "
                                  "for backend \"systemd\"",
                                  m.name));
            }
            if (!t.contains("unit")) {
                error(t, fmt::format(
                             "model {}: backend \"systemd\" needs `unit` (e.g. \"{}.service\")",
                             m.name, m.name));
            }
        } else {
            if (t.contains("unit")) {
                error(t, fmt::format("model {}: `unit` needs backend = \"systemd\"", m.name));
            }
            if (!t.contains("command")) {
                error(t, fmt::format("model {}: set `command` (the program and its arguments, run "
                                     "without a shell) or `unit` (a systemd service)",
                                     m.name));
            }
        }
    }

    std::string origin_;
    std::vector<Problem>& errors_;
};

toml::table parse_toml(std::string_view toml_text, std::string_view origin) {
    try {
        return toml::parse(toml_text, std::string(origin));
    } catch (const toml::parse_error& e) {
        throw ConfigError(fmt::format("{}:{}:{}: {}", origin, e.source().begin.line,
                                      e.source().begin.column, e.description()));
    }
}

std::vector<ModelSpec> parse(const toml::table& root, std::string_view origin,
                             std::optional<ModelDefaults> given) {
    std::vector<ModelSpec> models;
    const auto node = root["models"];
    if (!node) {
        return models;
    }
    const auto* tables = node.as_table();
    if (tables == nullptr) {
        throw ConfigError(fmt::format("{}:{}:{}: `models` must be a table ([models.NAME])", origin,
                                      node.node()->source().begin.line,
                                      node.node()->source().begin.column));
    }
    std::vector<Problem> errors;
    ModelReader reader(std::string(origin), errors);
    ModelDefaults defaults;
    if (given) {
        defaults = *given;
    } else {
        reader.read_defaults(*tables, defaults);
    }
    for (const auto& [k, v] : *tables) {
        const std::string name(k.str());
        const auto* t = v.as_table();
        if (t == nullptr) {
            continue;  // a scalar default, read (or checked by the config loader) above
        }
        if (!valid_model_name(name)) {
            reader.error(v, fmt::format("model name {} must be 1-64 of A-Z a-z 0-9 . _ - and start "
                                        "with a letter or digit",
                                        shown(name)));
            continue;
        }
        if (name == "running" || name == "active") {
            // GET /models/running and /models/active are lists; a model by that name could
            // never be addressed on its own.
            reader.error(v, fmt::format("model name \"{}\" is reserved by the API (GET "
                                        "/models/{} lists models); choose another",
                                        name, name));
            continue;
        }
        ModelSpec m;
        m.name = name;
        m.start_timeout = defaults.start_timeout;
        m.stop_timeout = defaults.stop_timeout;
        m.idle_timeout = defaults.idle_timeout;
        if (reader.read_model(*t, m)) {
            models.push_back(std::move(m));
        }
    }
    if (!errors.empty()) {
        // Tables come out of toml++ sorted by name; the user reads the file top to bottom.
        std::stable_sort(errors.begin(), errors.end(), [](const Problem& a, const Problem& b) {
            return std::tie(a.line, a.column) < std::tie(b.line, b.column);
        });
        std::string msg;
        for (const auto& e : errors) {
            msg += (msg.empty() ? "" : "\n") + e.text;
        }
        throw ConfigError(msg);
    }
    std::sort(models.begin(), models.end(),
              [](const ModelSpec& a, const ModelSpec& b) { return a.name < b.name; });
    return models;
}

}  // namespace

std::string_view to_string(ModelSpec::Backend b) {
    return b == ModelSpec::Backend::kSystemd ? "systemd" : "process";
}

std::string_view to_string(ModelSpec::Restart r) {
    switch (r) {
        case ModelSpec::Restart::kNo:
            return "no";
        case ModelSpec::Restart::kOnFailure:
            return "on-failure";
        case ModelSpec::Restart::kAlways:
            return "always";
    }
    return "on-failure";
}

bool valid_model_name(std::string_view n) {
    return !n.empty() && n.size() <= 64 && is_alnum(n.front()) &&
           std::all_of(n.begin(), n.end(),
                       [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool valid_unit_name(std::string_view u) {
    constexpr std::string_view kSuffix = ".service";
    if (u.size() <= kSuffix.size() || u.size() > 256 || u.front() == '-' ||
        u.substr(u.size() - kSuffix.size()) != kSuffix) {
        return false;
    }
    return std::all_of(u.begin(), u.end(), [](char c) {
        return is_alnum(c) || c == ':' || c == '_' || c == '.' || c == '@' || c == '-';
    });
}

std::vector<ModelSpec> parse_models(std::string_view toml_text, std::string_view origin) {
    return parse(parse_toml(toml_text, origin), origin, std::nullopt);
}

std::vector<ModelSpec> parse_models(std::string_view toml_text, std::string_view origin,
                                    const ModelDefaults& defaults) {
    return parse(parse_toml(toml_text, origin), origin, defaults);
}

ModelDefaults model_defaults(const core::Config& cfg) {
    ModelDefaults d;
    const auto idle = cfg.duration("models.idle_timeout");
    d.idle_timeout = idle.count() == 0 ? std::nullopt : std::optional(idle);
    d.start_timeout = cfg.duration("models.start_timeout");
    d.stop_timeout = cfg.duration("models.stop_timeout");
    d.log_dir = cfg.path("models.log_dir");
    d.log_max_size = cfg.size("models.log_max_size");
    d.log_keep = static_cast<int>(cfg.integer("models.log_keep"));
    return d;
}

std::vector<ModelSpec> load_models(const core::Config& cfg) {
    const ModelDefaults defaults = model_defaults(cfg);
    if (!cfg.file()) {
        return {};
    }
    std::ifstream in(*cfg.file(), std::ios::binary);
    if (!in) {
        throw ConfigError(cfg.file()->string() + ": cannot be read for [models]");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_models(text.str(), cfg.file()->string(), defaults);
}

}  // namespace mlk::homelab
