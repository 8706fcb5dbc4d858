// BIP-173 bech32 encoding (checksum constant 1, not bech32m), as age uses it for "age1..."
// recipients and "AGE-SECRET-KEY-1..." identities; unlike BIP-173 there is no 90-character limit.
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mlk::crypto {

// Thrown for any string that is not valid bech32. Messages never quote the input, which may be
// a secret key.
class Bech32Error : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

enum class Bech32Case { kLower, kUpper };

struct Bech32Decoded {
    std::string hrp;                  // as written (all lower or all upper case)
    std::vector<std::uint8_t> bytes;  // 8-bit data (for _raw: 5-bit groups, values 0..31)
};

// Encodes 8-bit `bytes` (regrouped into 5-bit groups, zero-padded). `hrp` must be 1..83
// characters in 33..126 with no upper case letters; the output is in `letter_case`.
std::string bech32_encode(std::string_view hrp, std::span<const std::uint8_t> bytes,
                          Bech32Case letter_case = Bech32Case::kLower);

// Decodes a bech32 string whose data part is 8-bit bytes: mixed case, a bad checksum, a bad
// character, or padding that is not canonical (over 4 bits, or non-zero) throw Bech32Error.
Bech32Decoded bech32_decode(std::string_view s);

// The 5-bit layer, for data that is not byte-aligned (the BIP-173 test vectors).
std::string bech32_encode_raw(std::string_view hrp, std::span<const std::uint8_t> groups,
                              Bech32Case letter_case = Bech32Case::kLower);
Bech32Decoded bech32_decode_raw(std::string_view s);

}  // namespace mlk::crypto
