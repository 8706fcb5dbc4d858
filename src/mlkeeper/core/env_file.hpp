// Reads KEY=VALUE environment files such as the seeds' /etc/ml-automation.conf
// (the same syntax systemd's EnvironmentFile= accepts: comments, blank lines,
// optional `export `, single or double quotes).
// Thread safety: stateless functions.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace mlk::core {

struct EnvEntry {
    std::string key;
    std::string value;
    int line = 0;
};

// Throws ConfigError `file:line: message` on a malformed line or an
// unreadable file.
std::vector<EnvEntry> read_env_file(const std::filesystem::path& file);
std::vector<EnvEntry> parse_env_text(std::string_view text, const std::string& origin);

}  // namespace mlk::core
