#include "mlkeeper/core/config.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <toml++/toml.h>
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "mlkeeper/core/env_file.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

extern char** environ;

namespace mlk::core {
namespace {

std::string type_name(const KeySpec& spec) {
    switch (spec.type) {
        case ValueType::kBool:
            return "a boolean (true or false)";
        case ValueType::kInt:
            return "an integer";
        case ValueType::kNumber:
            return "a number";
        case ValueType::kString:
            return "a string";
        case ValueType::kPath:
            return "a path string";
        case ValueType::kChoice:
            return fmt::format("one of {}", spec.choices);
        case ValueType::kStringList:
            return "an array of strings";
        case ValueType::kDuration:
            return "a duration (e.g. 30d, 10m, 90s)";
        case ValueType::kSize:
            return "a size (e.g. 500GB, 2GiB, or bytes)";
    }
    return "a value";
}

std::string fmt_num(double v) {
    return fmt::format("{:g}", v);
}

// Range and choice checks shared by every source.
std::optional<std::string> check(const KeySpec& spec, const Value& v) {
    bool ranged = spec.max > spec.min;
    auto out_of_range = [&](double x, std::string shown) -> std::optional<std::string> {
        if (ranged && (x < spec.min || x > spec.max)) {
            return fmt::format("{} is out of range for {}: expected {} to {}", shown, spec.name,
                               fmt_num(spec.min), fmt_num(spec.max));
        }
        return std::nullopt;
    };
    switch (spec.type) {
        case ValueType::kInt: {
            auto x = std::get<std::int64_t>(v);
            return out_of_range(static_cast<double>(x), std::to_string(x));
        }
        case ValueType::kNumber: {
            auto x = std::get<double>(v);
            if (!std::isfinite(x)) {
                return std::string("expected a finite number");
            }
            return out_of_range(x, fmt_num(x));
        }
        case ValueType::kDuration: {
            auto s = std::get<std::chrono::seconds>(v);
            if (ranged && (s.count() < spec.min || s.count() > spec.max)) {
                return fmt::format("{} is out of range for {}: expected {} to {}",
                                   util::format_duration_setting(s), spec.name,
                                   util::format_duration_setting(
                                       std::chrono::seconds(static_cast<std::int64_t>(spec.min))),
                                   util::format_duration_setting(
                                       std::chrono::seconds(static_cast<std::int64_t>(spec.max))));
            }
            return std::nullopt;
        }
        case ValueType::kSize: {
            auto b = std::get<Bytes>(v).value;
            return out_of_range(static_cast<double>(b), std::to_string(b));
        }
        case ValueType::kChoice: {
            const auto& s = std::get<std::string>(v);
            for (const auto& c : util::split(spec.choices, '|')) {
                if (c == s) {
                    return std::nullopt;
                }
            }
            auto choices = util::split(spec.choices, '|');
            auto near = util::closest_match(s, choices, 3);
            return fmt::format("invalid value \"{}\" for {}: expected {}{}", s, spec.name,
                               spec.choices,
                               near ? fmt::format(" (did you mean \"{}\"?)", *near) : "");
        }
        default:
            return std::nullopt;
    }
}

using Parsed = std::variant<Value, std::string>;

std::string_view toml_type_name(toml::node_type t) {
    switch (t) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a floating-point number";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
        case toml::node_type::time:
        case toml::node_type::date_time:
            return "a date/time";
        case toml::node_type::none:
            break;
    }
    return "nothing";
}

Parsed from_toml(const KeySpec& spec, const toml::node& node) {
    auto wrong = [&]() -> Parsed {
        return fmt::format("wrong type for {}: expected {}, got {}", spec.name, type_name(spec),
                           node.type() == toml::node_type::string
                               ? fmt::format("the string \"{}\"", *node.value<std::string>())
                               : std::string(toml_type_name(node.type())));
    };
    switch (spec.type) {
        case ValueType::kBool:
            if (auto b = node.value_exact<bool>()) {
                return Value{*b};
            }
            return wrong();
        case ValueType::kInt:
            if (auto i = node.value_exact<std::int64_t>()) {
                return Value{*i};
            }
            return wrong();
        case ValueType::kNumber:
            if (node.is_integer() || node.is_floating_point()) {
                return Value{*node.value<double>()};
            }
            return wrong();
        case ValueType::kString:
        case ValueType::kPath:
        case ValueType::kChoice:
            if (auto s = node.value_exact<std::string>()) {
                return parse_value(spec, *s);
            }
            return wrong();
        case ValueType::kStringList: {
            const auto* arr = node.as_array();
            if (arr == nullptr) {
                return wrong();
            }
            std::vector<std::string> items;
            for (const auto& el : *arr) {
                auto s = el.value_exact<std::string>();
                if (!s) {
                    return fmt::format("wrong type for {}: expected an array of strings",
                                       spec.name);
                }
                items.push_back(*s);
            }
            return Value{std::move(items)};
        }
        case ValueType::kDuration:
        case ValueType::kSize:
            if (auto i = node.value_exact<std::int64_t>()) {
                return parse_value(spec, std::to_string(*i));
            }
            if (auto s = node.value_exact<std::string>()) {
                return parse_value(spec, *s);
            }
            return wrong();
    }
    return wrong();
}

std::string where_of(const toml::source_region& r, const std::string& file) {
    return fmt::format("{}:{}:{}", file, r.begin.line, r.begin.column);
}

class Loader {
  public:
    Loader() {
        for (const auto& spec : config_keys()) {
            Setting s;
            s.spec = &spec;
            s.source = Source::kDefault;
            s.origin = "default";
            if (!spec.default_value.empty()) {
                auto p = parse_value(spec, spec.default_value);
                if (auto* err = std::get_if<std::string>(&p)) {
                    throw std::logic_error("bad built-in default for " + std::string(spec.name) +
                                           ": " + *err);
                }
                s.value = std::get<Value>(std::move(p));
            } else if (spec.type == ValueType::kString || spec.type == ValueType::kPath) {
                s.value = Value{std::string()};  // "" means "none" for text keys
            } else if (spec.type == ValueType::kStringList) {
                s.value = Value{std::vector<std::string>()};
            }
            settings_.push_back(std::move(s));
        }
    }

    void apply(const KeySpec& spec, Parsed parsed, Source src, const std::string& origin) {
        if (auto* err = std::get_if<std::string>(&parsed)) {
            errors_.push_back(origin + ": " + *err);
            return;
        }
        auto& v = std::get<Value>(parsed);
        if (auto err = check(spec, v)) {
            errors_.push_back(origin + ": " + *err);
            return;
        }
        auto& s = settings_[index_of(spec)];
        s.value = std::move(v);
        s.source = src;
        s.origin = origin;
    }

    void load_file(const std::filesystem::path& path) {
        toml::table tbl;
        try {
            tbl = toml::parse_file(path.string());
        } catch (const toml::parse_error& e) {
            throw ConfigError(fmt::format("{}: {}", where_of(e.source(), path.string()),
                                          std::string(e.description())));
        }
        std::vector<std::string> sections(config_sections().begin(), config_sections().end());
        for (const auto& [k, node] : tbl) {
            std::string key(k.str());
            auto where = where_of(k.source(), path.string());
            bool known = false;
            for (const auto& s : sections) {
                known = known || s == key;
            }
            if (!known) {
                auto near = util::closest_match(key, sections, 3);
                if (node.is_table()) {
                    errors_.push_back(
                        fmt::format("{}: unknown section [{}]{}", where, key,
                                    near ? fmt::format(" (did you mean [{}]?)", *near) : ""));
                } else {
                    errors_.push_back(fmt::format("{}: `{}` must be inside a section such as [{}]",
                                                  where, key,
                                                  owner_section(key).value_or("backup")));
                }
                continue;
            }
            const auto* table = node.as_table();
            if (table == nullptr) {
                errors_.push_back(
                    fmt::format("{}: `{}` must be a section ([{}]), not a value", where, key, key));
                continue;
            }
            load_table(key, *table, path);
        }
    }

    // The keys of section `section` (possibly nested: [backup.s3] is table "s3" in "backup").
    void load_table(const std::string& section, const toml::table& table,
                    const std::filesystem::path& path) {
        for (const auto& [name, value] : table) {
            std::string n(name.str());
            auto nwhere = where_of(name.source(), path.string());
            if (section == "schedule" && n == "jobs" && value.is_table()) {
                continue;  // job tables: sched/job_config reads and checks them
            }
            if (section == "models" && value.is_table()) {
                continue;  // [models.NAME]: homelab/model_registry reads and checks them
            }
            const std::string nested = section + "." + n;
            if (const auto* sub = value.as_table(); sub != nullptr && is_section(nested)) {
                load_table(nested, *sub, path);
                continue;
            }
            const auto* spec = find_key(section, n);
            if (spec == nullptr) {
                spec = renamed_key(section, n);
            }
            if (spec == nullptr) {
                errors_.push_back(fmt::format("{}: {}", nwhere, unknown_key_message(section, n)));
                continue;
            }
            apply(*spec, from_toml(*spec, value), Source::kFile,
                  where_of(value.source(), path.string()));
        }
    }

    static bool is_section(std::string_view name) {
        const auto all = config_sections();
        return std::find(all.begin(), all.end(), name) != all.end();
    }

    // Keys that moved; files written for an older version keep working (docs/CONFIG.md lists
    // them). [backup] s3_bucket/s3_storage_class became [backup.s3] bucket/storage_class.
    static const KeySpec* renamed_key(std::string_view section, std::string_view name) {
        if (section == "backup" && name == "s3_bucket") {
            return find_key("backup.s3", "bucket");
        }
        if (section == "backup" && name == "s3_storage_class") {
            return find_key("backup.s3", "storage_class");
        }
        return nullptr;
    }

    void load_env(const std::map<std::string, std::string>& vars, Source src,
                  const std::map<std::string, std::string>& origins) {
        for (const auto& spec : config_keys()) {
            if (spec.env.empty()) {
                continue;
            }
            auto it = vars.find(std::string(spec.env));
            if (it == vars.end()) {
                continue;
            }
            auto o = origins.find(it->first);
            apply(spec, parse_value(spec, it->second), src,
                  o != origins.end() ? o->second : "environment " + it->first);
        }
    }

    void cross_check() {
        // Compression level range depends on the codec; the default too.
        auto& level = settings_[index_of(*find_key("backup.compression_level"))];
        const auto& codec =
            std::get<std::string>(*settings_[index_of(*find_key("backup.compression"))].value);
        std::int64_t max = codec == "gzip" ? 9 : 19;
        if (!level.value) {
            level.value = Value{std::int64_t{codec == "gzip" ? 6 : 3}};
        } else if (auto l = std::get<std::int64_t>(*level.value); l > max) {
            // Given on the command line, it is a usage error (exit 64).
            auto& sink = level.source == Source::kFlag ? usage_errors_ : errors_;
            sink.push_back(
                fmt::format("{}: compression_level {} is out of range for {}: expected 1 to {}",
                            level.origin, l, codec, max));
        }
        ordered("health.disk_warn_threshold", "health.disk_crit_threshold");
        ordered("health.gpu_temp_warn", "health.gpu_temp_crit");
        ordered("health.mem_warn_threshold", "health.mem_crit_threshold");
        ordered("health.swap_warn_threshold", "health.swap_crit_threshold");
        ordered("health.load_warn_threshold", "health.load_crit_threshold");
        ordered("health.gpu_mem_warn", "health.gpu_mem_crit");
        ordered("health.errors_warn_threshold", "health.errors_crit_threshold");
        ordered("gpu.temp_threshold", "gpu.temp_crit");
    }

    std::vector<Setting> finish() {
        if (!usage_errors_.empty()) {
            throw UsageError(usage_errors_.front());
        }
        if (!errors_.empty()) {
            std::string all;
            for (const auto& e : errors_) {
                all += (all.empty() ? "" : "\n") + e;
            }
            throw ConfigError(all);
        }
        return std::move(settings_);
    }

    std::vector<std::string>& errors() { return errors_; }

  private:
    static std::size_t index_of(const KeySpec& spec) {
        return static_cast<std::size_t>(&spec - config_keys().data());
    }

    static std::optional<std::string> owner_section(const std::string& name) {
        for (const auto& k : config_keys()) {
            if (k.name == name) {
                return std::string(k.section);
            }
        }
        return std::nullopt;
    }

    static std::string unknown_key_message(const std::string& section, const std::string& name) {
        std::vector<std::string> names;
        for (const auto& k : config_keys()) {
            if (k.section == section) {
                names.emplace_back(k.name);
            }
        }
        if (auto near = util::closest_match(name, names, 3)) {
            return fmt::format("unknown key `{}` in [{}] (did you mean `{}`?)", name, section,
                               *near);
        }
        if (auto owner = owner_section(name)) {
            return fmt::format("unknown key `{}` in [{}] (it belongs in [{}])", name, section,
                               *owner);
        }
        return fmt::format("unknown key `{}` in [{}]", name, section);
    }

    void ordered(std::string_view warn_key, std::string_view crit_key) {
        const auto& w = settings_[index_of(*find_key(warn_key))];
        const auto& c = settings_[index_of(*find_key(crit_key))];
        auto num = [](const Value& v) {
            return std::holds_alternative<double>(v)
                       ? std::get<double>(v)
                       : static_cast<double>(std::get<std::int64_t>(v));
        };
        if (num(*w.value) > num(*c.value)) {
            errors_.push_back(fmt::format("{}: {} ({}) must not be above {} ({}, from {})",
                                          w.origin, w.spec->name, fmt_num(num(*w.value)),
                                          c.spec->name, fmt_num(num(*c.value)), c.origin));
        }
    }

    std::vector<Setting> settings_;
    std::vector<std::string> errors_;
    std::vector<std::string> usage_errors_;
};

}  // namespace

std::string_view to_string(Source s) {
    switch (s) {
        case Source::kDefault:
            return "default";
        case Source::kFile:
            return "file";
        case Source::kEnvFile:
            return "env-file";
        case Source::kEnv:
            return "env";
        case Source::kFlag:
            return "flag";
    }
    return "?";
}

std::variant<Value, std::string> parse_value(const KeySpec& spec, std::string_view raw) {
    auto text = util::trim(raw);
    try {
        switch (spec.type) {
            case ValueType::kBool:
                if (auto b = util::parse_bool(text)) {
                    return Value{*b};
                }
                return fmt::format("invalid boolean \"{}\" for {}: expected true or false", text,
                                   spec.name);
            case ValueType::kInt:
                if (auto i = util::parse_int64(text)) {
                    return Value{*i};
                }
                return fmt::format("invalid integer \"{}\" for {}", text, spec.name);
            case ValueType::kNumber: {
                std::string s(text);
                char* end = nullptr;
                errno = 0;
                double d = s.empty() ? 0 : std::strtod(s.c_str(), &end);
                if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE) {
                    return fmt::format("invalid number \"{}\" for {}", text, spec.name);
                }
                return Value{d};
            }
            case ValueType::kString:
            case ValueType::kPath:
            case ValueType::kChoice:
                return Value{std::string(text)};
            case ValueType::kStringList: {
                std::string s(text);
                if (spec.choices == "lines") {  // items may contain spaces: one per line
                    std::vector<std::string> items;
                    for (const auto& line : util::split(s, '\n')) {
                        if (auto t = util::trim(line); !t.empty()) {
                            items.emplace_back(t);
                        }
                    }
                    return Value{std::move(items)};
                }
                for (auto& c : s) {
                    c = c == ',' ? ' ' : c;
                }
                return Value{util::split_ws(s)};
            }
            case ValueType::kDuration:
                return Value{util::parse_duration(text, spec.plain_unit)};
            case ValueType::kSize:
                return Value{Bytes{util::parse_size(text)}};
        }
    } catch (const std::invalid_argument& e) {
        return fmt::format("{} for {}", e.what(), spec.name);
    }
    return std::string("unsupported type");
}

Config Config::load(const ConfigInputs& in) {
    Loader loader;
    Config cfg;

    auto named = in.file;
    if (!named) {
        if (auto it = in.env.find("MLKEEPER_CONFIG"); it != in.env.end() && !it->second.empty()) {
            named = it->second;
        }
    }
    if (named) {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(*named, ec)) {
            throw ConfigError(
                fmt::format("{}: config file not found{}", named->string(),
                            std::filesystem::exists(*named, ec) ? " (not a regular file)" : ""));
        }
        if (::access(named->c_str(), R_OK) != 0) {
            throw ConfigError(
                fmt::format("{}: cannot read config file ({})", named->string(),
                            std::error_code(errno, std::generic_category()).message()));
        }
        cfg.file_ = *named;
    } else if (std::error_code ec; std::filesystem::exists(in.default_file, ec)) {
        cfg.file_ = in.default_file;
    }
    if (cfg.file_) {
        loader.load_file(*cfg.file_);
    }

    if (in.env_file) {
        std::map<std::string, std::string> vars, origins;
        for (auto& e : read_env_file(*in.env_file)) {
            origins[e.key] = fmt::format("{}:{}", in.env_file->string(), e.line);
            vars[e.key] = std::move(e.value);
        }
        loader.load_env(vars, Source::kEnvFile, origins);
    }
    loader.load_env(in.env, Source::kEnv, {});

    // Flag errors are usage errors (exit 64), reported before config ones.
    std::vector<std::string> config_errors = std::move(loader.errors());
    loader.errors().clear();
    for (const auto& f : in.flags) {
        const auto* spec = find_key(f.key);
        if (spec == nullptr) {
            throw std::logic_error("flag bound to unknown key " + f.key);
        }
        loader.apply(*spec, parse_value(*spec, f.text), Source::kFlag, f.origin);
    }
    if (!loader.errors().empty()) {
        throw UsageError(loader.errors().front());
    }
    loader.errors() = std::move(config_errors);
    loader.cross_check();
    cfg.settings_ = loader.finish();
    return cfg;
}

Config Config::defaults() {
    ConfigInputs in;
    in.default_file = "/nonexistent/mlkeeper-defaults-only";
    return load(in);
}

const Setting& Config::setting(std::string_view key) const {
    const auto* spec = find_key(key);
    if (spec == nullptr) {
        throw std::logic_error("unknown config key " + std::string(key));
    }
    return settings_[static_cast<std::size_t>(spec - config_keys().data())];
}

namespace {
template <typename T>
const T& typed(const Setting& s, std::string_view key) {
    if (!s.value) {
        throw std::logic_error("config key " + std::string(key) + " is unset");
    }
    const T* v = std::get_if<T>(&*s.value);
    if (v == nullptr) {
        throw std::logic_error("config key " + std::string(key) + " read with the wrong type");
    }
    return *v;
}
}  // namespace

bool Config::boolean(std::string_view key) const {
    return typed<bool>(setting(key), key);
}
std::int64_t Config::integer(std::string_view key) const {
    return typed<std::int64_t>(setting(key), key);
}
double Config::number(std::string_view key) const {
    return typed<double>(setting(key), key);
}
const std::string& Config::str(std::string_view key) const {
    static const std::string kEmpty;
    const auto& s = setting(key);
    return s.value ? typed<std::string>(s, key) : kEmpty;
}
std::filesystem::path Config::path(std::string_view key) const {
    return str(key);
}
const std::vector<std::string>& Config::list(std::string_view key) const {
    return typed<std::vector<std::string>>(setting(key), key);
}
std::chrono::seconds Config::duration(std::string_view key) const {
    return typed<std::chrono::seconds>(setting(key), key);
}
std::uint64_t Config::size(std::string_view key) const {
    return typed<Bytes>(setting(key), key).value;
}
bool Config::is_set(std::string_view key) const {
    const auto& s = setting(key);
    return s.value && !(std::holds_alternative<std::string>(*s.value) &&
                        std::get<std::string>(*s.value).empty());
}

std::string Config::display(const Setting& s) {
    if (!s.value) {
        return "";
    }
    if (s.spec->sensitivity == Sensitivity::kSecret) {
        const auto* str = std::get_if<std::string>(&*s.value);
        const auto* list = std::get_if<std::vector<std::string>>(&*s.value);
        bool empty = (str != nullptr && str->empty()) || (list != nullptr && list->empty());
        return empty ? "" : "********";
    }
    return std::visit(
        [&s](const auto& v) -> std::string {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, bool>) {
                return v ? "true" : "false";
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                return std::to_string(v);
            } else if constexpr (std::is_same_v<T, double>) {
                return fmt_num(v);
            } else if constexpr (std::is_same_v<T, std::string>) {
                return v;
            } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                return util::join(v, " ");
            } else if constexpr (std::is_same_v<T, std::chrono::seconds>) {
                // Day-valued keys (RETENTION_DAYS) read best in days.
                if (s.spec->plain_unit == util::DurationUnit::kDays && v.count() % 86400 == 0) {
                    return std::to_string(v.count() / 86400) + "d";
                }
                return util::format_duration_setting(v);
            } else {
                return std::to_string(v.value);
            }
        },
        *s.value);
}

std::map<std::string, std::string> process_environment() {
    std::map<std::string, std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq != std::string_view::npos) {
            env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
        }
    }
    return env;
}

}  // namespace mlk::core
