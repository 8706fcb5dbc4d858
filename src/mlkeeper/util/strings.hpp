// Small string helpers shared by the CLI, config and output code: trimming, splitting, parsing
// of user-typed numbers and booleans, and "did you mean" suggestions.
// Thread safety: pure functions on their arguments; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mlk::util {

// Removes ASCII whitespace (space, \t, \n, \r, \f, \v) from both ends. The result views `s`.
std::string_view trim(std::string_view s);

// Splits on every `sep`, keeping empty fields: split("a,,b", ',') -> {"a", "", "b"} and
// split("", ',') -> {""}, so the field count is always the separator count plus one.
std::vector<std::string> split(std::string_view s, char sep);

// Splits on runs of ASCII whitespace and drops empty fields: split_ws("  a \t b ") -> {"a", "b"}.
std::vector<std::string> split_ws(std::string_view s);

std::string join(const std::vector<std::string>& parts, std::string_view sep);

// ASCII lower-casing only; bytes >= 0x80 (UTF-8) are left as they are.
std::string to_lower(std::string_view s);

// Edit distance (insertions, deletions, substitutions) counted in bytes.
std::size_t levenshtein(std::string_view a, std::string_view b);

// The candidate closest to `word` for a "did you mean ...?" hint, compared case-insensitively.
// The smallest distance wins and ties go to the earliest candidate. A candidate qualifies only if
// its distance is <= max_distance AND smaller than the length of `word`, so a two-letter typo is
// never "corrected" into an unrelated word by rewriting every letter.
std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates,
                                         std::size_t max_distance = 3);

// true/false, yes/no, on/off, 1/0, case-insensitively; anything else (including surrounding
// whitespace) is nullopt so callers can report the bad value.
std::optional<bool> parse_bool(std::string_view s);

// Quotes one argument the way a POSIX shell would need it, for DISPLAY of a command line in logs
// and error messages (we never pass strings through a shell). Safe words are returned unchanged;
// everything else is wrapped in single quotes, with ' written as '\''.
std::string shell_quote(std::string_view s);

// shell_quote() of each argument, joined by single spaces.
std::string shell_join(const std::vector<std::string>& argv);

// A base-10 integer with an optional leading '-' or '+' and nothing else: no whitespace, no
// trailing junk, no hex. Out-of-range values are nullopt rather than clamped.
std::optional<std::int64_t> parse_int64(std::string_view s);

// The value of one hexadecimal digit (either case), or -1.
int hex_digit(char c);

enum class PlusIs { kPlus, kSpace };     // kSpace: form and S3 url encoding write ' ' as '+'
enum class BadEscape { kKeep, kThrow };  // a '%' not followed by two hex digits

// Decodes %XX escapes. A bad escape is kept as it is, or throws std::invalid_argument.
std::string percent_decode(std::string_view s, PlusIs plus = PlusIs::kPlus,
                           BadEscape bad = BadEscape::kKeep);

// Control characters, bytes outside ASCII and '\' as \xNN, so text that came from outside (a
// request path, an error from a peer) cannot forge or break a log line.
std::string escape_for_log(std::string_view s);

}  // namespace mlk::util
