#include "mlkeeper/crypto/bech32.hpp"

#include <sodium.h>

#include <array>
#include <cstddef>

namespace mlk::crypto {
namespace {

constexpr std::string_view kCharset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
constexpr std::size_t kChecksumLen = 6;
constexpr std::size_t kMaxHrpLen = 83;

// Wipes a buffer that held (part of) a secret key on every exit path.
class WipeOnExit {
  public:
    explicit WipeOnExit(std::vector<std::uint8_t>& v) : v_(v) {}
    ~WipeOnExit() { sodium_memzero(v_.data(), v_.size()); }
    WipeOnExit(const WipeOnExit&) = delete;
    WipeOnExit& operator=(const WipeOnExit&) = delete;

  private:
    std::vector<std::uint8_t>& v_;
};

class Polymod {
  public:
    void feed(std::uint8_t v) {
        static constexpr std::array<std::uint32_t, 5> kGen = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa,
                                                              0x3d4233dd, 0x2a1462b3};
        const std::uint32_t top = chk_ >> 25;
        chk_ = ((chk_ & 0x1ffffff) << 5) ^ v;
        for (std::size_t i = 0; i < kGen.size(); ++i) {
            if (((top >> i) & 1) != 0) {
                chk_ ^= kGen[i];
            }
        }
    }
    // The HRP enters the checksum in lower case, so both spellings share one checksum.
    void feed_hrp(std::string_view hrp) {
        for (char c : hrp) {
            feed(static_cast<std::uint8_t>(to_lower(c)) >> 5);
        }
        feed(0);
        for (char c : hrp) {
            feed(static_cast<std::uint8_t>(to_lower(c)) & 31);
        }
    }
    std::uint32_t value() const { return chk_; }

    static char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

  private:
    std::uint32_t chk_ = 1;
};

char to_upper(char c) {
    return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
}

void check_hrp(std::string_view hrp) {
    if (hrp.empty() || hrp.size() > kMaxHrpLen) {
        throw Bech32Error("bech32: human-readable part must be 1 to 83 characters");
    }
    for (char c : hrp) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 33 || u > 126) {
            throw Bech32Error("bech32: invalid character in the human-readable part");
        }
    }
}

// Regroups bits; `pad` adds zero bits to complete the last group (encoding), otherwise the
// leftover must be under `from` bits and zero (the canonical form the decoder accepts).
std::vector<std::uint8_t> convert_bits(std::span<const std::uint8_t> in, unsigned from, unsigned to,
                                       bool pad) {
    std::vector<std::uint8_t> out;
    out.reserve(in.size() * from / to + 1);
    std::uint32_t acc = 0;
    unsigned bits = 0;
    const std::uint32_t max_v = (1U << to) - 1;
    for (std::uint8_t v : in) {
        acc = ((acc << from) | v) & 0xfff;
        bits += from;
        while (bits >= to) {
            bits -= to;
            out.push_back(static_cast<std::uint8_t>((acc >> bits) & max_v));
        }
    }
    if (pad) {
        if (bits > 0) {
            out.push_back(static_cast<std::uint8_t>((acc << (to - bits)) & max_v));
        }
    } else if (bits >= from || ((acc << (to - bits)) & max_v) != 0) {
        sodium_memzero(out.data(), out.size());
        acc = 0;
        throw Bech32Error("bech32: data padding is not canonical");
    }
    acc = 0;
    return out;
}

}  // namespace

std::string bech32_encode_raw(std::string_view hrp, std::span<const std::uint8_t> groups,
                              Bech32Case letter_case) {
    check_hrp(hrp);
    for (char c : hrp) {
        if (c >= 'A' && c <= 'Z') {
            throw Bech32Error("bech32: the human-readable part must be given in lower case");
        }
    }
    Polymod pm;
    pm.feed_hrp(hrp);
    std::string out;
    out.reserve(hrp.size() + 1 + groups.size() + kChecksumLen);
    out.append(hrp);
    out.push_back('1');
    for (std::uint8_t g : groups) {
        if (g > 31) {
            throw Bech32Error("bech32: a data group is over 5 bits");
        }
        pm.feed(g);
        out.push_back(kCharset[g]);
    }
    for (std::size_t i = 0; i < kChecksumLen; ++i) {
        pm.feed(0);
    }
    const std::uint32_t chk = pm.value() ^ 1;
    for (std::size_t i = 0; i < kChecksumLen; ++i) {
        out.push_back(kCharset[(chk >> (5 * (kChecksumLen - 1 - i))) & 31]);
    }
    if (letter_case == Bech32Case::kUpper) {
        for (char& c : out) {
            c = to_upper(c);
        }
    }
    return out;
}

std::string bech32_encode(std::string_view hrp, std::span<const std::uint8_t> bytes,
                          Bech32Case letter_case) {
    std::vector<std::uint8_t> groups = convert_bits(bytes, 8, 5, true);
    WipeOnExit wipe(groups);
    return bech32_encode_raw(hrp, groups, letter_case);
}

Bech32Decoded bech32_decode_raw(std::string_view s) {
    bool lower = false;
    bool upper = false;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 33 || u > 126) {
            throw Bech32Error("bech32: invalid character");
        }
        lower = lower || (c >= 'a' && c <= 'z');
        upper = upper || (c >= 'A' && c <= 'Z');
    }
    if (lower && upper) {
        throw Bech32Error("bech32: mixed upper and lower case");
    }
    const std::size_t sep = s.rfind('1');
    if (sep == std::string_view::npos) {
        throw Bech32Error("bech32: no separator '1'");
    }
    const std::string_view hrp = s.substr(0, sep);
    const std::string_view data = s.substr(sep + 1);
    check_hrp(hrp);
    if (data.size() < kChecksumLen) {
        throw Bech32Error("bech32: checksum too short");
    }
    Polymod pm;
    pm.feed_hrp(hrp);
    Bech32Decoded out;
    out.hrp = std::string(hrp);
    out.bytes.reserve(data.size() - kChecksumLen);
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::size_t v = kCharset.find(Polymod::to_lower(data[i]));
        if (v == std::string_view::npos) {
            sodium_memzero(out.bytes.data(), out.bytes.size());
            throw Bech32Error("bech32: invalid data character");
        }
        pm.feed(static_cast<std::uint8_t>(v));
        if (i < data.size() - kChecksumLen) {
            out.bytes.push_back(static_cast<std::uint8_t>(v));
        }
    }
    if (pm.value() != 1) {
        sodium_memzero(out.bytes.data(), out.bytes.size());
        throw Bech32Error("bech32: checksum mismatch");
    }
    return out;
}

Bech32Decoded bech32_decode(std::string_view s) {
    Bech32Decoded raw = bech32_decode_raw(s);
    WipeOnExit wipe(raw.bytes);
    Bech32Decoded out;
    out.hrp = std::move(raw.hrp);
    out.bytes = convert_bits(raw.bytes, 5, 8, false);
    return out;
}

}  // namespace mlk::crypto
