// Bearer tokens for the REST API: the tokens file (`NAME SCOPE TOKEN` lines, private to its owner)
// and the constant-time check of an Authorization header against every token in it. Only SHA-256
// digests of the tokens are kept in memory, and no token ever appears in a message or log.
// Thread safety: load once; authenticate() is const and safe from any number of threads.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/api/router.hpp"

namespace mlk::api {

// Who called: the token's name (audit logs say it) and what the token allows.
struct Principal {
    std::string name;
    Access scope = Access::kRead;
};

class TokenSet {
  public:
    static constexpr std::size_t kMinTokenLength = 16;

    // Reads and checks the tokens file. Throws mlk::ConfigError (one line, naming the path and
    // the line number) when the file is not a regular file, is readable or writable by group or
    // other, is empty of tokens, or has a malformed line, a duplicate name or token, a token
    // shorter than kMinTokenLength or an unknown scope.
    static TokenSet load(const std::filesystem::path& path);

    // The same checks on text already read; `where` starts every error message ("tokens.txt").
    static TokenSet parse(std::string_view text, std::string_view where);

    // `authorization` is the Authorization header's value ("Bearer <token>", the scheme in any
    // case). nullopt for a missing, malformed or unknown token. Every token is compared, in
    // constant time, whichever matches.
    std::optional<Principal> authenticate(std::string_view authorization) const;

    std::size_t size() const { return entries_.size(); }

  private:
    struct Entry {
        std::string name;
        Access scope;
        std::array<std::uint8_t, 32> digest;
    };
    std::vector<Entry> entries_;
};

}  // namespace mlk::api
