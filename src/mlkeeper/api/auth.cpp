#include "mlkeeper/api/auth.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <system_error>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/sha256.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::api {
namespace {

// A tokens file is a handful of lines; anything this big is the wrong file.
constexpr std::size_t kMaxFileSize = 1024 * 1024;
constexpr std::size_t kMaxNameLength = 64;
constexpr std::size_t kMaxTokenLength = 4096;

std::array<std::uint8_t, 32> digest_of(std::string_view token) {
    util::Sha256 h;
    h.update(token);
    return h.finish();
}

bool valid_name(std::string_view name) {
    return !name.empty() && name.size() <= kMaxNameLength &&
           std::all_of(name.begin(), name.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '@' || c == '-';
           });
}

bool printable_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Closes the descriptor on every path out of load().
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

[[noreturn]] void fail(std::string_view where, std::size_t line, std::string_view what) {
    // Messages name the line, never its content: a misplaced column could be a token.
    throw ConfigError(std::string(where) + ":" + std::to_string(line) + ": " + std::string(what));
}

}  // namespace

TokenSet TokenSet::load(const std::filesystem::path& path) {
    const std::string where = path.string();
    // O_NONBLOCK: a FIFO put in place of the file must not hang start-up; it is refused below.
    Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)};
    if (f.fd < 0) {
        const int err = errno;
        throw ConfigError(
            where + ": cannot open the API tokens file: " + std::generic_category().message(err));
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) {
        const int err = errno;
        throw ConfigError(
            where + ": cannot stat the API tokens file: " + std::generic_category().message(err));
    }
    if (!S_ISREG(st.st_mode)) {
        throw ConfigError(where + ": the API tokens file is not a regular file");
    }
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw ConfigError(where + ": the API tokens file is open to group or other (mode " + mode +
                          "); run chmod 600 " + util::shell_quote(where));
    }
    if (static_cast<std::uint64_t>(st.st_size) > kMaxFileSize) {
        throw ConfigError(where +
                          ": the API tokens file is larger than 1 MiB; is it the right "
                          "file?");
    }
    std::string text;
    char buf[8192];
    for (;;) {
        const ssize_t n = ::read(f.fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            const int err = errno;
            throw ConfigError(where + ": cannot read the API tokens file: " +
                              std::generic_category().message(err));
        }
        if (n == 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > kMaxFileSize) {
            throw ConfigError(where + ": the API tokens file is larger than 1 MiB");
        }
    }
    return parse(text, where);
}

TokenSet TokenSet::parse(std::string_view text, std::string_view where) {
    TokenSet set;
    std::vector<std::size_t> lines;  // line number of each entry, for duplicate messages
    std::size_t line_no = 0;
    while (!text.empty() || line_no == 0) {
        ++line_no;
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        line = util::trim(line);
        if (line.empty() || line[0] == '#') {
            continue;
        }
        const auto fields = util::split_ws(line);
        if (fields.size() != 3) {
            fail(where, line_no,
                 "expected NAME SCOPE TOKEN separated by spaces, found " +
                     std::to_string(fields.size()) + " fields");
        }
        const auto& name = fields[0];
        const auto& scope = fields[1];
        const auto& token = fields[2];
        if (!valid_name(name)) {
            fail(where, line_no, "bad NAME (use 1 to 64 letters, digits, '.', '_', '@' or '-')");
        }
        Access access;
        if (scope == "read") {
            access = Access::kRead;
        } else if (scope == "admin") {
            access = Access::kAdmin;
        } else {
            fail(where, line_no, "unknown SCOPE (expected read or admin)");
        }
        if (token.size() < kMinTokenLength) {
            fail(where, line_no,
                 "TOKEN is shorter than " + std::to_string(kMinTokenLength) +
                     " characters; generate one with: openssl rand -hex 32");
        }
        if (token.size() > kMaxTokenLength || !printable_ascii(token)) {
            fail(where, line_no, "TOKEN must be at most 4096 printable ASCII characters");
        }
        Entry e{name, access, digest_of(token)};
        for (std::size_t i = 0; i < set.entries_.size(); ++i) {
            if (set.entries_[i].name == e.name) {
                fail(where, line_no, "NAME is already used on line " + std::to_string(lines[i]));
            }
            if (set.entries_[i].digest == e.digest) {
                fail(where, line_no,
                     "TOKEN is the same as on line " + std::to_string(lines[i]) +
                         "; every token needs its own");
            }
        }
        set.entries_.push_back(std::move(e));
        lines.push_back(line_no);
    }
    if (set.entries_.empty()) {
        throw ConfigError(std::string(where) +
                          ": no tokens in the API tokens file (lines: NAME read|admin TOKEN)");
    }
    return set;
}

std::optional<Principal> TokenSet::authenticate(std::string_view authorization) const {
    auto value = util::trim(authorization);
    constexpr std::string_view kScheme = "bearer";
    if (value.size() <= kScheme.size() ||
        util::to_lower(value.substr(0, kScheme.size())) != kScheme ||
        (value[kScheme.size()] != ' ' && value[kScheme.size()] != '\t')) {
        return std::nullopt;
    }
    const auto token = util::trim(value.substr(kScheme.size()));
    if (token.empty() || token.size() > kMaxTokenLength || !printable_ascii(token)) {
        return std::nullopt;
    }
    // Comparing digests, not tokens, makes the time taken independent of how much of a guess is
    // right; every entry is compared so the time does not depend on where a match is either.
    const auto digest = digest_of(token);
    const Entry* found = nullptr;
    for (const auto& e : entries_) {
        const bool equal = CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0;
        found = equal ? &e : found;
    }
    if (found == nullptr) {
        return std::nullopt;
    }
    return Principal{found->name, found->scope};
}

}  // namespace mlk::api
