#include "mlkeeper/backup/checksums.hpp"

#include <cerrno>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

namespace mlk::backup {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kHexLen = 64;
constexpr std::string_view kTagPrefix = "SHA256 (";
constexpr std::string_view kTagSeparator = ") = ";

bool is_hex(std::string_view s) {
    for (const char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

std::string lower(std::string_view hex) {
    std::string out(hex);
    for (char& c : out) {
        if (c >= 'A' && c <= 'F') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return out;
}

// A line for an error message: quoted, non-printable bytes as \xNN, cut after 100 bytes.
std::string quote_value(std::string_view s) {
    constexpr std::size_t kMax = 100;
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c >= 0x7F) {
            static constexpr char kHexDigits[] = "0123456789abcdef";
            out += "\\x";
            out += kHexDigits[c >> 4];
            out += kHexDigits[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    out += s.size() > kMax ? "\"..." : "\"";
    return out;
}

// One line of the file as read; `raw` (without '\n') is written back unchanged unless the line
// is the one being replaced.
struct Line {
    std::string raw;
    std::optional<std::string> name;  // nullopt for blank and comment lines
    std::string hex;
};

// The inverse of GNU's escaping: only "\\\\", "\\n" and "\\r" exist.
std::optional<std::string> unescape_name(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\') {
            out += s[i];
            continue;
        }
        if (i + 1 == s.size()) {
            return std::nullopt;
        }
        switch (s[++i]) {
            case '\\':
                out += '\\';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            default:
                return std::nullopt;
        }
    }
    return out;
}

// Fills `out.name`/`out.hex`, or returns what is wrong with the line.
std::optional<std::string> parse_line(std::string_view line, Line& out) {
    if (!line.empty() && line.back() == '\r') {  // CRLF, as sha256sum -c accepts
        line.remove_suffix(1);
    }
    if (line.find_first_not_of(" \t") == std::string_view::npos || line.front() == '#') {
        return std::nullopt;
    }
    const bool escaped = line.front() == '\\';
    if (escaped) {
        line.remove_prefix(1);
    }
    std::string_view hex;
    std::string_view name;
    if (line.substr(0, kTagPrefix.size()) == kTagPrefix) {
        const std::size_t sep = line.rfind(kTagSeparator);
        if (sep == std::string_view::npos || sep < kTagPrefix.size()) {
            return "expected \"SHA256 (<file name>) = <64 hex digits>\"";
        }
        name = line.substr(kTagPrefix.size(), sep - kTagPrefix.size());
        hex = line.substr(sep + kTagSeparator.size());
    } else {
        if (line.size() < kHexLen || !is_hex(line.substr(0, kHexLen))) {
            return "expected \"<64 hex digits>  <file name>\"";
        }
        hex = line.substr(0, kHexLen);
        if (line.size() < kHexLen + 2 || line[kHexLen] != ' ' ||
            (line[kHexLen + 1] != ' ' && line[kHexLen + 1] != '*')) {
            return "expected two spaces (or a space and '*') after the checksum";
        }
        name = line.substr(kHexLen + 2);
    }
    if (hex.size() != kHexLen || !is_hex(hex)) {
        return "the checksum is not 64 hex digits";
    }
    if (name.empty()) {
        return "missing the file name";
    }
    if (escaped) {
        auto unescaped = unescape_name(name);
        if (!unescaped) {
            return "bad escape in the file name (only \\\\, \\n and \\r exist)";
        }
        out.name = std::move(*unescaped);
    } else {
        out.name = std::string(name);
    }
    out.hex = lower(hex);
    return std::nullopt;
}

// All lines of `file`; a missing file has none. Throws for malformed lines.
std::vector<Line> load(const fs::path& file, const util::FsOps& ops) {
    std::string text;
    try {
        text = util::read_file(file, ops);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::no_such_file_or_directory) {
            return {};
        }
        throw;
    }
    std::vector<Line> lines;
    std::size_t start = 0;
    std::size_t number = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) {
            end = text.size();
        }
        ++number;
        Line line;
        line.raw = text.substr(start, end - start);
        if (auto problem = parse_line(line.raw, line)) {
            throw std::runtime_error(file.string() + ":" + std::to_string(number) + ": " +
                                     *problem + ", got " + quote_value(line.raw));
        }
        lines.push_back(std::move(line));
        start = end + 1;
    }
    return lines;
}

void store(const fs::path& file, const std::vector<Line>& lines, const util::FsOps& ops,
           util::Durability durability) {
    mode_t mode = 0644;
    std::error_code ec;
    const fs::file_status st = fs::status(file, ec);
    if (!ec && fs::exists(st)) {
        mode = static_cast<mode_t>(st.permissions()) & 07777;
    }
    std::string text;
    for (const Line& line : lines) {
        text += line.raw;
        text += '\n';
    }
    util::write_file_atomic(file, text, mode, ops, durability);
}

}  // namespace

std::string format_checksum_line(std::string_view name, std::string_view sha256_hex) {
    if (sha256_hex.size() != kHexLen || !is_hex(sha256_hex)) {
        throw std::invalid_argument("checksum for " + quote_value(name) +
                                    " is not 64 hex digits: " + quote_value(sha256_hex));
    }
    if (name.empty()) {
        throw std::invalid_argument("checksum line needs a file name");
    }
    if (name.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("file name " + quote_value(name) +
                                    " contains a NUL byte; sha256sum cannot name it");
    }
    const bool escape = name.find_first_of("\\\n\r") != std::string_view::npos;
    std::string line;
    line.reserve(name.size() + kHexLen + 4);
    if (escape) {
        line += '\\';
    }
    line += lower(sha256_hex);
    line += "  ";
    for (const char c : name) {
        switch (escape ? c : '\0') {
            case '\\':
                line += "\\\\";
                break;
            case '\n':
                line += "\\n";
                break;
            case '\r':
                line += "\\r";
                break;
            default:
                line += c;
                break;
        }
    }
    line += '\n';
    return line;
}

std::map<std::string, std::string> read_checksums(const fs::path& file, const util::FsOps& ops) {
    const std::vector<Line> lines = load(file, ops);
    std::map<std::string, std::pair<std::string, std::size_t>> seen;  // name -> hex, line number
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (!lines[i].name) {
            continue;
        }
        const auto [it, inserted] = seen.emplace(*lines[i].name, std::pair{lines[i].hex, i + 1});
        if (!inserted && it->second.first != lines[i].hex) {
            throw std::runtime_error(file.string() + ":" + std::to_string(i + 1) + ": " +
                                     quote_value(*lines[i].name) +
                                     " is listed again with a different checksum (first on line " +
                                     std::to_string(it->second.second) + ")");
        }
        out[*lines[i].name] = lines[i].hex;
    }
    return out;
}

void upsert_checksum(const fs::path& file, const std::string& name, const std::string& sha256_hex,
                     const util::FsOps& ops, util::Durability durability) {
    std::string new_raw = format_checksum_line(name, sha256_hex);
    new_raw.pop_back();  // the '\n'
    std::vector<Line> lines = load(file, ops);
    std::vector<Line> out;
    out.reserve(lines.size() + 1);
    bool placed = false;
    bool changed = false;
    for (Line& line : lines) {
        if (line.name && *line.name == name) {
            if (placed) {
                changed = true;  // a duplicate: dropped
                continue;
            }
            placed = true;
            if (line.raw != new_raw) {
                line.raw = new_raw;
                changed = true;
            }
        }
        out.push_back(std::move(line));
    }
    if (!placed) {
        Line line;
        line.raw = std::move(new_raw);
        out.push_back(std::move(line));
        changed = true;
    }
    if (changed) {
        store(file, out, ops, durability);
    }
}

void remove_checksum(const fs::path& file, const std::string& name, const util::FsOps& ops,
                     util::Durability durability) {
    std::vector<Line> lines = load(file, ops);
    std::vector<Line> out;
    out.reserve(lines.size());
    for (Line& line : lines) {
        if (!(line.name && *line.name == name)) {
            out.push_back(std::move(line));
        }
    }
    if (out.size() != lines.size()) {
        store(file, out, ops, durability);
    }
}

}  // namespace mlk::backup
