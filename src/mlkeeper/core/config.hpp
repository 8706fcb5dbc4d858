// The effective configuration: every key of config_schema with its value and
// where the value came from. Precedence: flag > environment > env file >
// config file > default. Loading validates everything before any work starts.
// Thread safety: immutable once loaded; safe to read from many threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mlkeeper/core/config_schema.hpp"

namespace mlk::core {

enum class Source { kDefault, kFile, kEnvFile, kEnv, kFlag };
std::string_view to_string(Source s);

struct Bytes {
    std::uint64_t value = 0;
    bool operator==(const Bytes&) const = default;
};

using Value = std::variant<bool, std::int64_t, double, std::string, std::vector<std::string>,
                           std::chrono::seconds, Bytes>;

struct Setting {
    const KeySpec* spec = nullptr;
    std::optional<Value> value;  // nullopt: unset (a key with no default)
    Source source = Source::kDefault;
    std::string origin;  // "file.toml:12:3", "env RETENTION_DAYS", "flag --source"
};

// Everything the loader reads; the CLI fills it, tests build it by hand.
struct ConfigInputs {
    std::optional<std::filesystem::path> file;  // an explicitly named file must exist
    std::filesystem::path default_file = "/etc/mlkeeper/mlkeeper.toml";  // may be missing
    std::optional<std::filesystem::path> env_file;
    std::map<std::string, std::string> env;  // the process environment (or a test's)
    struct Override {
        std::string key;  // "backup.model_dir"
        std::string text;
        std::string origin;  // "--source"
    };
    std::vector<Override> flags;
};

class Config {
  public:
    // Throws ConfigError (exit 78) listing every problem, one per line, each
    // as `where: message`; flag problems throw UsageError (exit 64).
    static Config load(const ConfigInputs& in);
    // Built-in defaults only.
    static Config defaults();

    // Typed access by "section.name"; asking for an unknown key or the wrong
    // type is a programming error (std::logic_error).
    bool boolean(std::string_view key) const;
    std::int64_t integer(std::string_view key) const;
    double number(std::string_view key) const;
    const std::string& str(std::string_view key) const;  // kString, kPath, kChoice
    std::filesystem::path path(std::string_view key) const;
    const std::vector<std::string>& list(std::string_view key) const;
    std::chrono::seconds duration(std::string_view key) const;
    std::uint64_t size(std::string_view key) const;
    bool is_set(std::string_view key) const;

    const Setting& setting(std::string_view key) const;
    // In schema order.
    const std::vector<Setting>& settings() const { return settings_; }
    // The config file actually read, if any.
    const std::optional<std::filesystem::path>& file() const { return file_; }

    // Text form of a value as config show prints it (secrets masked).
    static std::string display(const Setting& s);

  private:
    std::vector<Setting> settings_;
    std::optional<std::filesystem::path> file_;
};

// Parses `text` as a value of spec's type and checks its range. Returns the
// error message (without location) on failure.
std::variant<Value, std::string> parse_value(const KeySpec& spec, std::string_view text);

// The current process environment as a map.
std::map<std::string, std::string> process_environment();

}  // namespace mlk::core
