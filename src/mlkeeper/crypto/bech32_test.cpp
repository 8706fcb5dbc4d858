#include "mlkeeper/crypto/bech32.hpp"

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mlk::crypto {
namespace {

std::string lower(std::string s) {
    for (char& c : s) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c + 32);
        }
    }
    return s;
}

bool has_upper(const std::string& s) {
    for (char c : s) {
        if (c >= 'A' && c <= 'Z') {
            return true;
        }
    }
    return false;
}

// BIP-173 "valid checksum" vectors.
TEST(Bech32, Bip173ValidVectorsDecodeAndReencode) {
    const std::vector<std::string> valid = {
        "A12UEL5L",
        "a12uel5l",
        "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tg"
        "s",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "11" + std::string(82, 'q') + "c8247j",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        "?1ezyfcl",
    };
    for (const std::string& s : valid) {
        SCOPED_TRACE(s);
        const Bech32Decoded d = bech32_decode_raw(s);
        const std::size_t sep = s.rfind('1');
        EXPECT_EQ(d.hrp, s.substr(0, sep));
        EXPECT_EQ(d.bytes.size(), s.size() - sep - 1 - 6);
        const Bech32Case c = has_upper(s) ? Bech32Case::kUpper : Bech32Case::kLower;
        EXPECT_EQ(bech32_encode_raw(lower(d.hrp), d.bytes, c), s);
    }
}

// BIP-173 "invalid" vectors, plus our own.
TEST(Bech32, InvalidStringsAreRejected) {
    const std::vector<std::string> invalid = {
        std::string("\x20") + "1nwldj5",  // HRP character out of range
        std::string("\x7f") + "1axkwrx",
        std::string("\x80") + "1eym55h",
        // HRP of 84 characters.
        "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pv"
        "x",
        "pzry9x0s0muk",   // no separator
        "1pzry9x0s0muk",  // empty HRP
        "x1b4n0q5v",      // invalid data character
        "li1dgmt3",       // checksum too short
        "de1lg7wt\xff",   // invalid character in checksum
        "A1G7SGD8",       // checksum computed with the upper-case HRP
        "10a06t8",        // empty HRP
        "1qzzfhee",       // empty HRP
        "a12UEL5L",       // mixed case
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxx",  // one checksum character changed
        "",
        "abc def1qqqqqq",
    };
    for (const std::string& s : invalid) {
        SCOPED_TRACE(s);
        EXPECT_THROW(bech32_decode_raw(s), Bech32Error);
        EXPECT_THROW(bech32_decode(s), Bech32Error);
    }
}

TEST(Bech32, EveryBytePositionIsCoveredByTheChecksum) {
    const std::string good = bech32_encode("age", std::vector<std::uint8_t>(32, 0xA5));
    ASSERT_NO_THROW(bech32_decode(good));
    const std::string charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    for (std::size_t i = 0; i < good.size(); ++i) {
        if (good[i] == '1' && i == 3) {
            continue;  // the separator
        }
        std::string bad = good;
        bad[i] = bad[i] == 'q' ? 'p' : 'q';
        SCOPED_TRACE(bad);
        EXPECT_THROW(bech32_decode(bad), Bech32Error);
    }
}

TEST(Bech32, ByteRoundTripsInBothCases) {
    std::mt19937 rng(7);
    for (std::size_t n = 0; n <= 70; ++n) {
        std::vector<std::uint8_t> bytes(n);
        for (auto& b : bytes) {
            b = static_cast<std::uint8_t>(rng());
        }
        for (Bech32Case c : {Bech32Case::kLower, Bech32Case::kUpper}) {
            const std::string s = bech32_encode("age-secret-key-", bytes, c);
            const Bech32Decoded d = bech32_decode(s);
            EXPECT_EQ(d.hrp, c == Bech32Case::kUpper ? "AGE-SECRET-KEY-" : "age-secret-key-");
            EXPECT_EQ(d.bytes, bytes);
        }
    }
}

TEST(Bech32, NoNinetyCharacterLimit) {
    const std::vector<std::uint8_t> bytes(200, 0x42);
    const std::string s = bech32_encode("age", bytes);
    EXPECT_GT(s.size(), 300u);
    EXPECT_EQ(bech32_decode(s).bytes, bytes);
}

TEST(Bech32, NonCanonicalPaddingIsRejectedForBytes) {
    // 32 bytes = 256 bits = 51 groups + 1 bit; the last group carries 4 padding bits.
    std::vector<std::uint8_t> groups(52, 0);
    groups.back() = 1;  // a padding bit set
    const std::string s = bech32_encode_raw("age", groups);
    EXPECT_NO_THROW(bech32_decode_raw(s));
    EXPECT_THROW(bech32_decode(s), Bech32Error);
    // 5 or more leftover bits (a spare group) is not canonical either: 1 group = 5 bits,
    // 3 groups = 1 byte + 7 bits, 6 groups = 3 bytes + 6 bits.
    for (std::size_t n : {1U, 3U, 6U}) {
        const std::vector<std::uint8_t> zeros(n, 0);
        EXPECT_THROW(bech32_decode(bech32_encode_raw("age", zeros)), Bech32Error) << n;
    }
    EXPECT_EQ(bech32_decode(bech32_encode_raw("age", std::vector<std::uint8_t>(8, 0))).bytes,
              std::vector<std::uint8_t>(5, 0));
}

TEST(Bech32, EncodeRejectsBadArguments) {
    const std::vector<std::uint8_t> none;
    EXPECT_THROW(bech32_encode("", none), Bech32Error);
    EXPECT_THROW(bech32_encode("AGE", none), Bech32Error);
    EXPECT_THROW(bech32_encode(std::string(84, 'a'), none), Bech32Error);
    EXPECT_THROW(bech32_encode("a b", none), Bech32Error);
    const std::vector<std::uint8_t> too_big = {32};
    EXPECT_THROW(bech32_encode_raw("age", too_big), Bech32Error);
}

TEST(Bech32, ErrorsDoNotQuoteTheInput) {
    const std::string secret =
        bech32_encode("age-secret-key-", std::vector<std::uint8_t>(32, 7), Bech32Case::kUpper);
    std::string bad = secret;
    bad.back() = bad.back() == 'Q' ? 'P' : 'Q';
    try {
        bech32_decode(bad);
        FAIL() << "expected Bech32Error";
    } catch (const Bech32Error& e) {
        EXPECT_EQ(std::string(e.what()).find(bad.substr(16, 20)), std::string::npos);
    }
}

}  // namespace
}  // namespace mlk::crypto
