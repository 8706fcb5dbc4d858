#include "mlkeeper/core/env_file.hpp"

#include <cctype>
#include <fstream>
#include <sstream>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::core {
namespace {

bool valid_name(std::string_view k) {
    if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) {
        return false;
    }
    for (char c : k) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
            return false;
        }
    }
    return true;
}

// Unquotes a value; returns false on an unterminated quote.
bool unquote(std::string_view v, std::string& out) {
    out.clear();
    if (v.empty()) {
        return true;
    }
    char q = v.front();
    if (q != '"' && q != '\'') {
        // Unquoted: a trailing " # comment" is dropped, as shells do.
        auto hash = v.find(" #");
        out = std::string(util::trim(v.substr(0, hash)));
        return true;
    }
    std::size_t i = 1;
    for (; i < v.size() && v[i] != q; ++i) {
        if (q == '"' && v[i] == '\\' && i + 1 < v.size()) {
            ++i;
        }
        out += v[i];
    }
    if (i >= v.size()) {
        return false;
    }
    auto rest = util::trim(v.substr(i + 1));
    return rest.empty() || rest.front() == '#';
}

}  // namespace

std::vector<EnvEntry> parse_env_text(std::string_view text, const std::string& origin) {
    std::vector<EnvEntry> entries;
    int lineno = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto nl = text.find('\n', pos);
        auto raw =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
        ++lineno;
        auto line = util::trim(raw);
        if (line.empty() || line.front() == '#' || line.front() == ';') {
            continue;
        }
        if (line.starts_with("export ")) {
            line = util::trim(line.substr(7));
        }
        auto eq = line.find('=');
        auto where = origin + ":" + std::to_string(lineno) + ": ";
        if (eq == std::string_view::npos) {
            throw ConfigError(where + "expected KEY=VALUE, got `" + std::string(line) + "`");
        }
        auto key = util::trim(line.substr(0, eq));
        if (!valid_name(key)) {
            throw ConfigError(where + "invalid variable name `" + std::string(key) + "`");
        }
        EnvEntry e{std::string(key), {}, lineno};
        if (!unquote(util::trim(line.substr(eq + 1)), e.value)) {
            throw ConfigError(where + "unterminated quote in the value of " + e.key);
        }
        entries.push_back(std::move(e));
    }
    return entries;
}

std::vector<EnvEntry> read_env_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw ConfigError(file.string() + ": cannot read env file (" +
                          std::error_code(errno, std::generic_category()).message() + ")");
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_env_text(ss.str(), file.string());
}

}  // namespace mlk::core
