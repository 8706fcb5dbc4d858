#include "mlkeeper/storage/s3/credentials.hpp"

#include <fmt/format.h>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/strings.hpp"

extern char** environ;

namespace mlk::storage::s3 {
namespace {

constexpr std::string_view kDefaultProfile = "default";
constexpr std::string_view kDefaultRegion = "us-east-1";

// One [section] of an INI file, keys lower-cased as configparser's optionxform does.
struct IniSection {
    std::string name;
    std::map<std::string, std::string> keys;
};

struct IniFile {
    std::vector<IniSection> sections;  // in file order
};

// Where a file is, and how to name it in messages when HOME is unknown.
struct FileRef {
    std::string path;   // empty when it cannot be known
    std::string shown;  // for messages
};

std::optional<std::string> env_value(const Env& env, const std::string& name) {
    const auto it = env.find(name);
    if (it == env.end() || it->second.empty()) {
        return std::nullopt;
    }
    return it->second;
}

FileRef file_ref(const Env& env, const std::string& variable, std::string_view default_name) {
    const auto home = env_value(env, "HOME");
    if (auto p = env_value(env, variable)) {
        // botocore runs expanduser() on these; only the plain "~" / "~/..." forms matter here.
        if (home && (*p == "~" || p->starts_with("~/"))) {
            *p = *home + p->substr(1);
        }
        return {*p, *p};
    }
    const std::string tail = std::string("/.aws/") + std::string(default_name);
    if (!home) {
        return {"", "$HOME" + tail + " (HOME is not set)"};
    }
    return {*home + tail, *home + tail};
}

// configparser's RawConfigParser rules, which botocore uses: `key = value` or `key: value` (the
// first delimiter wins), whole-line `#`/`;` comments, an indented line continues the value above
// (nested settings such as `s3 =` must not be errors), duplicate sections or keys are errors.
// Messages never quote the line: a malformed line may well be a secret.
IniFile parse_ini(std::string_view text, const std::string& path) {
    IniFile file;
    if (text.starts_with("\xEF\xBB\xBF")) {
        text.remove_prefix(3);
    }
    const auto fail = [&](int line, const std::string& what) {
        throw ConfigError(path + ":" + std::to_string(line) + ": " + what);
    };
    std::map<std::string, int> section_lines;
    std::map<std::string, int> key_lines;  // of the current section
    std::string* value = nullptr;          // the value an indented line would continue
    std::size_t value_indent = 0;
    int line_no = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        const std::string_view raw = text.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        const std::string_view content = util::trim(raw);
        if (content.empty() || content.front() == '#' || content.front() == ';') {
            continue;
        }
        const std::size_t indent = raw.find_first_not_of(" \t");
        if (value != nullptr && indent > value_indent) {
            *value += '\n';
            *value += content;
            continue;
        }
        value = nullptr;
        if (content.front() == '[') {
            const std::size_t close = content.rfind(']');
            if (close == std::string_view::npos) {
                fail(line_no, "section header without a closing ']'");
            }
            std::string name(util::trim(content.substr(1, close - 1)));
            if (name.empty()) {
                fail(line_no, "empty section name '[]'");
            }
            const auto [it, inserted] = section_lines.emplace(name, line_no);
            if (!inserted) {
                fail(line_no, "duplicate section [" + name + "] (first on line " +
                                  std::to_string(it->second) + ")");
            }
            file.sections.push_back({std::move(name), {}});
            key_lines.clear();
            continue;
        }
        const std::size_t delim = content.find_first_of("=:");
        if (delim == std::string_view::npos) {
            fail(line_no, "expected 'key = value' or '[section]'");
        }
        const std::string key = util::to_lower(util::trim(content.substr(0, delim)));
        if (key.empty()) {
            fail(line_no, "missing key name before '" + std::string(1, content[delim]) + "'");
        }
        if (file.sections.empty()) {
            fail(line_no, "setting before the first [section]");
        }
        IniSection& section = file.sections.back();
        const auto [it, inserted] = key_lines.emplace(key, line_no);
        if (!inserted) {
            // The key name is not quoted either: on a mangled line it could be part of a secret.
            fail(line_no, "key repeats the one on line " + std::to_string(it->second) +
                              " in section [" + section.name + "]");
        }
        value = &section.keys[key];
        *value = std::string(util::trim(content.substr(delim + 1)));
        value_indent = indent;
    }
    return file;
}

// nullopt when the file does not exist (the CLI skips it too); anything else that stops the read
// is an error, since silently ignoring an unreadable credentials file would pick other keys.
std::optional<IniFile> load_ini(const FileRef& ref, const util::FsOps& ops) {
    if (ref.path.empty()) {
        return std::nullopt;
    }
    std::string text;
    try {
        text = util::read_file(ref.path, ops);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::no_such_file_or_directory) {
            return std::nullopt;
        }
        throw ConfigError(ref.path + ": cannot read AWS settings file: " + e.code().message());
    }
    return parse_ini(text, ref.path);
}

// The section a profile lives in. The credentials file names sections after profiles; the config
// file says [profile NAME] (shlex-split by botocore, so NAME may be double-quoted) and also
// accepts plain [default]. When both spellings exist the later one wins, as in botocore's dict.
enum class FileKind { kCredentials, kConfig };

std::string config_profile_name(const std::string& section) {
    if (section == kDefaultProfile) {
        return section;
    }
    constexpr std::string_view kPrefix = "profile";
    if (!section.starts_with(kPrefix) || section.size() == kPrefix.size() ||
        (section[kPrefix.size()] != ' ' && section[kPrefix.size()] != '\t')) {
        return {};
    }
    std::string_view name = util::trim(std::string_view(section).substr(kPrefix.size()));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
        return std::string(name.substr(1, name.size() - 2));
    }
    if (name.find_first_of(" \t\"'") != std::string_view::npos) {
        return {};  // more than two shlex words: botocore ignores the section
    }
    return std::string(name);
}

const IniSection* find_profile(const IniFile& file, FileKind kind, const std::string& profile) {
    const IniSection* found = nullptr;
    for (const IniSection& s : file.sections) {
        const bool match = kind == FileKind::kCredentials ? s.name == profile
                                                          : config_profile_name(s.name) == profile;
        if (match) {
            found = &s;
        }
    }
    return found;
}

std::optional<std::string> key_value(const IniSection& s, const std::string& key) {
    const auto it = s.keys.find(key);
    if (it == s.keys.end() || it->second.empty()) {
        return std::nullopt;
    }
    return it->second;
}

// The names one credentials source uses for the key pair and the session token.
struct KeyNames {
    const char* id;
    const char* secret;
    const char* token;
    const char* legacy_token;  // the older name; the current one wins when both are set
};

// A key pair (and session token) read through `get`; nullopt when neither key is set, so the
// chain falls through to the next source. Half a pair is an error naming `where`.
template <typename Get>
std::optional<Credentials> key_pair(const Get& get, const KeyNames& n, const std::string& where,
                                    std::string_view unset_hint) {
    const auto id = get(n.id);
    const auto secret = get(n.secret);
    if (!id && !secret) {
        return std::nullopt;
    }
    if (!id || !secret) {
        const char* set = id ? n.id : n.secret;
        const char* missing = id ? n.secret : n.id;
        throw ConfigError(fmt::format(
            "{}: {} is set but {} is missing or empty; set both{}", where, set, missing,
            unset_hint.empty() ? std::string() : fmt::format(", or unset {} {}", set, unset_hint)));
    }
    Credentials c;
    c.access_key_id = *id;
    c.secret_access_key = *secret;
    if (auto token = get(n.token)) {
        c.session_token = *token;
    } else if (auto legacy = get(n.legacy_token)) {
        c.session_token = *legacy;
    }
    c.source = where;
    return c;
}

// Credentials from one profile section; nullopt when it holds no keys at all (a profile that
// only sets a region, or one using role_arn/sso, falls through to the next source).
std::optional<Credentials> from_section(const IniSection& s, const std::string& path) {
    return key_pair(
        [&s](const char* key) { return key_value(s, key); },
        {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_security_token"},
        path + " [" + s.name + "]", "");
}

std::optional<Credentials> from_environment(const Env& env) {
    return key_pair(
        [&env](const char* key) { return env_value(env, key); },
        {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"},
        "environment", "to use the shared credentials file");
}

std::string shown_with_state(const FileRef& ref, const std::optional<IniFile>& file) {
    if (ref.path.empty() || file) {
        return ref.shown;
    }
    return ref.shown + " (no such file)";
}

}  // namespace

Env process_env() {
    Env env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const std::string_view entry(*e);
        const std::size_t eq = entry.find('=');
        if (eq != std::string_view::npos && eq > 0) {
            env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
        }
    }
    return env;
}

Credentials resolve_credentials(const Env& env, const util::FsOps& ops) {
    if (auto c = from_environment(env)) {
        return *c;
    }
    const auto explicit_profile = env_value(env, "AWS_PROFILE");
    const std::string profile = explicit_profile.value_or(std::string(kDefaultProfile));

    const FileRef creds_ref = file_ref(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    const std::optional<IniFile> creds_file = load_ini(creds_ref, ops);
    const IniSection* in_creds =
        creds_file ? find_profile(*creds_file, FileKind::kCredentials, profile) : nullptr;
    if (in_creds != nullptr) {
        if (auto c = from_section(*in_creds, creds_ref.path)) {
            return *c;
        }
    }

    const FileRef config_ref = file_ref(env, "AWS_CONFIG_FILE", "config");
    const std::optional<IniFile> config_file = load_ini(config_ref, ops);
    const IniSection* in_config =
        config_file ? find_profile(*config_file, FileKind::kConfig, profile) : nullptr;
    if (in_config != nullptr) {
        if (auto c = from_section(*in_config, config_ref.path)) {
            return *c;
        }
    }

    const std::string looked = shown_with_state(creds_ref, creds_file) + " or " +
                               shown_with_state(config_ref, config_file);
    if (in_creds != nullptr || in_config != nullptr) {
        throw ConfigError("AWS profile '" + profile +
                          "' has no aws_access_key_id/aws_secret_access_key in " + looked +
                          " (role_arn, sso and credential_process profiles are not supported); "
                          "add the keys or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    }
    if (explicit_profile) {
        throw ConfigError("AWS profile '" + profile + "' not found in " + looked +
                          "; check AWS_PROFILE");
    }
    throw ConfigError(
        "no AWS credentials found: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and there "
        "is no [default] profile in " +
        looked + "; set the variables or run 'aws configure'");
}

std::string resolve_region(const Env& env, const std::string& configured, const util::FsOps& ops) {
    if (!configured.empty()) {
        return configured;
    }
    for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
        if (auto r = env_value(env, name)) {
            return *r;
        }
    }
    const std::string profile =
        env_value(env, "AWS_PROFILE").value_or(std::string(kDefaultProfile));
    if (const auto file = load_ini(file_ref(env, "AWS_CONFIG_FILE", "config"), ops)) {
        if (const IniSection* s = find_profile(*file, FileKind::kConfig, profile)) {
            if (auto r = key_value(*s, "region")) {
                return *r;
            }
        }
    }
    return std::string(kDefaultRegion);
}

std::string mask_key_id(std::string_view id) {
    constexpr std::size_t kShown = 4;
    constexpr std::size_t kMinLength = 3 * kShown;
    if (id.size() < kMinLength) {
        return "****";
    }
    return std::string(id.substr(0, kShown)) + "****" + std::string(id.substr(id.size() - kShown));
}

}  // namespace mlk::storage::s3
