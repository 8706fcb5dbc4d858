#include "mlkeeper/crypto/age_keys.hpp"

#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mlkeeper/crypto/bech32.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

namespace mlk::crypto {
namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> from_hex(std::string_view hex) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(
            static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    }
    return out;
}

std::string identity_string(const std::vector<std::uint8_t>& secret) {
    return bech32_encode("age-secret-key-", secret, Bech32Case::kUpper);
}

// RFC 7748 section 6.1: Alice's key pair.
TEST(AgeKeys, KnownAnswerRfc7748) {
    const auto secret =
        from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const auto pub = from_hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    const X25519Identity id = X25519Identity::parse(identity_string(secret));
    const X25519Recipient r = id.recipient();
    EXPECT_EQ(std::vector<std::uint8_t>(r.key.begin(), r.key.end()), pub);
    EXPECT_EQ(id.to_string(), identity_string(secret));
    // Shared secret with Bob's public key (same section).
    const auto bob = from_hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    std::array<std::uint8_t, 32> bob_key{};
    std::copy(bob.begin(), bob.end(), bob_key.begin());
    SecretBytes<32> shared;
    ASSERT_TRUE(id.shared_secret(bob_key, shared));
    EXPECT_EQ(std::vector<std::uint8_t>(shared.data(), shared.data() + 32),
              from_hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
}

// The identity of the C2SP age testkit (testdata/testkit/x25519).
TEST(AgeKeys, TestkitIdentityParses) {
    const X25519Identity id = X25519Identity::parse(
        "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6");
    EXPECT_EQ(id.to_string(),
              "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6");
    EXPECT_TRUE(id.recipient().to_string().starts_with("age1"));
}

TEST(AgeKeys, GenerateAndRoundTrip) {
    const X25519Identity a = X25519Identity::generate();
    const X25519Identity b = X25519Identity::generate();
    EXPECT_NE(a.recipient(), b.recipient());
    const std::string s = a.to_string();
    EXPECT_TRUE(s.starts_with("AGE-SECRET-KEY-1"));
    EXPECT_EQ(s.size(), 74u);
    EXPECT_EQ(X25519Identity::parse(s).recipient(), a.recipient());
    const std::string r = a.recipient().to_string();
    EXPECT_TRUE(r.starts_with("age1"));
    EXPECT_EQ(r.size(), 62u);
    EXPECT_EQ(parse_recipient(r), a.recipient());
}

TEST(AgeKeys, ParseRejectsBadKeysWithoutQuotingThem) {
    const X25519Identity id = X25519Identity::generate();
    const std::string good = id.to_string();
    std::string flipped = good;
    flipped[30] = flipped[30] == 'Q' ? 'P' : 'Q';
    std::string lower = good;
    for (char& c : lower) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    const std::vector<std::string> bad = {
        flipped,
        lower,                                              // age needs upper case
        id.recipient().to_string(),                         // a public key
        identity_string(std::vector<std::uint8_t>(31, 1)),  // 31 bytes
        identity_string(std::vector<std::uint8_t>(33, 1)),  // 33 bytes
        bech32_encode("age-secret-key-x", std::vector<std::uint8_t>(32, 1), Bech32Case::kUpper),
        "",
        "AGE-SECRET-KEY-1",
    };
    for (const std::string& s : bad) {
        SCOPED_TRACE(s);
        try {
            (void)X25519Identity::parse(s);
            ADD_FAILURE() << "accepted";
        } catch (const std::invalid_argument& e) {
            if (s.size() > 20) {
                EXPECT_EQ(std::string(e.what()).find(s.substr(16, 16)), std::string::npos);
            }
        }
    }
    const std::vector<std::string> bad_recipients = {
        good,
        "age1",
        bech32_encode("age", std::vector<std::uint8_t>(31, 1)),
        bech32_encode("agf", std::vector<std::uint8_t>(32, 1)),
        "AGE1" + id.recipient().to_string().substr(4),  // mixed case
    };
    for (const std::string& s : bad_recipients) {
        SCOPED_TRACE(s);
        EXPECT_THROW(parse_recipient(s), std::invalid_argument);
    }
    // Upper case throughout is valid bech32 but age recipients are lower case; we accept the
    // value only in the spelling age writes.
    EXPECT_THROW(
        parse_recipient("AGE1" +
                        [&] {
                            std::string t = id.recipient().to_string().substr(4);
                            for (char& c : t) {
                                c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                            }
                            return t;
                        }()),
        std::invalid_argument);
}

TEST(AgeKeys, LowOrderPeerGivesNoSharedSecret) {
    const X25519Identity id = X25519Identity::generate();
    SecretBytes<32> shared;
    std::array<std::uint8_t, 32> zero{};
    EXPECT_FALSE(id.shared_secret(zero, shared));
    std::array<std::uint8_t, 32> one{};
    one[0] = 1;
    EXPECT_FALSE(id.shared_secret(one, shared));
    EXPECT_TRUE(id.shared_secret(X25519Identity::generate().recipient().key, shared));
}

TEST(AgeKeys, SecretBytesWipesOnMove) {
    SecretBytes<4> a;
    a.data()[0] = 9;
    SecretBytes<4> b(std::move(a));
    EXPECT_EQ(b.data()[0], 9);
    EXPECT_EQ(a.data()[0], 0);  // NOLINT(bugprone-use-after-move): checking the wipe
    SecretBytes<4> c;
    c = std::move(b);
    EXPECT_EQ(c.data()[0], 9);
    EXPECT_EQ(b.data()[0], 0);  // NOLINT(bugprone-use-after-move)
    c.wipe();
    EXPECT_EQ(c.data()[0], 0);
}

TEST(AgeKeys, IdentityFileTextAndParse) {
    const X25519Identity a = X25519Identity::generate();
    const std::string text = identity_file_text(a, "2024-05-01T10:00:00Z");
    EXPECT_EQ(text, "# created: 2024-05-01T10:00:00Z\n# public key: " + a.recipient().to_string() +
                        "\n" + a.to_string() + "\n");
    const auto ids = parse_identity_file(text);
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_EQ(ids[0].recipient(), a.recipient());
}

TEST(AgeKeys, IdentityFileWithSeveralKeysCommentsAndCrlf) {
    const X25519Identity a = X25519Identity::generate();
    const X25519Identity b = X25519Identity::generate();
    const std::string text = "# comment\r\n\r\n  " + a.to_string() + "  \r\n# another\n\n\t" +
                             b.to_string();  // no final newline
    const auto ids = parse_identity_file(text);
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_EQ(ids[0].recipient(), a.recipient());
    EXPECT_EQ(ids[1].recipient(), b.recipient());
}

TEST(AgeKeys, IdentityFileErrorsNameTheLine) {
    const X25519Identity a = X25519Identity::generate();
    std::string bad_key = a.to_string();
    bad_key[20] = bad_key[20] == 'Q' ? 'P' : 'Q';
    const struct {
        std::string text;
        std::string needle;
    } cases[] = {
        {"# created\n" + a.to_string() + "\n\n" + bad_key + "\n", "line 4:"},
        {"# x\n" + a.recipient().to_string() + "\n", "line 2: found a public key"},
        {"AGE-PLUGIN-YUBIKEY-1QQQQQQ\n", "line 1: age plugin"},
        {"hello\n", "line 1:"},
        {"", "no AGE-SECRET-KEY-1"},
        {"# only comments\n\n", "no AGE-SECRET-KEY-1"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        try {
            parse_identity_file(c.text);
            ADD_FAILURE() << "accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
            EXPECT_EQ(std::string(e.what()).find(bad_key.substr(16, 16)), std::string::npos);
        }
    }
}

// ---- interop with age-keygen / age (skipped when the CLI is missing) ----

int shell(const std::string& cmd) {
    return testing::run_shell(cmd).exit_code;
}

using testing::slurp;
using testing::TempDir;

bool have_age() {
    return fs::exists("/usr/bin/age") && fs::exists("/usr/bin/age-keygen");
}

TEST(AgeKeysInterop, AgeKeygenFileParsesAndPublicKeyMatches) {
    if (!have_age()) {
        GTEST_SKIP() << "age CLI not installed";
    }
    TempDir dir;
    const fs::path key = dir.path() / "key.txt";
    ASSERT_EQ(shell("timeout 30 age-keygen -o '" + key.string() + "' 2>/dev/null"), 0);
    ASSERT_EQ(shell("timeout 30 age-keygen -y '" + key.string() + "' > '" +
                    (dir.path() / "pub").string() + "'"),
              0);
    std::string pub = slurp(dir.path() / "pub");
    while (!pub.empty() && (pub.back() == '\n' || pub.back() == '\r')) {
        pub.pop_back();
    }
    const auto ids = parse_identity_file(slurp(key));
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_EQ(ids[0].recipient().to_string(), pub);
    EXPECT_EQ(parse_recipient(pub), ids[0].recipient());
    // The "# public key:" comment age-keygen wrote names the same key.
    EXPECT_NE(slurp(key).find("# public key: " + pub + "\n"), std::string::npos);
}

TEST(AgeKeysInterop, OurIdentityFileWorksWithAge) {
    if (!have_age()) {
        GTEST_SKIP() << "age CLI not installed";
    }
    TempDir dir;
    const X25519Identity id = X25519Identity::generate();
    const fs::path key = dir.path() / "ours.txt";
    {
        std::ofstream f(key, std::ios::binary);
        f << identity_file_text(id, "2024-05-01T10:00:00Z");
    }
    fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
    const std::string d = "'" + dir.path().string() + "/";
    {
        std::ofstream f(dir.path() / "plain", std::ios::binary);
        f << "interop payload\n";
    }
    // age-keygen -y reads our file and derives the same public key.
    ASSERT_EQ(shell("timeout 30 age-keygen -y " + d + "ours.txt' > " + d + "pub'"), 0);
    EXPECT_EQ(slurp(dir.path() / "pub"), id.recipient().to_string() + "\n");
    ASSERT_EQ(shell("timeout 30 age -r " + id.recipient().to_string() + " -o " + d + "enc' " + d +
                    "plain'"),
              0);
    ASSERT_EQ(shell("timeout 30 age -d -i " + d + "ours.txt' -o " + d + "dec' " + d + "enc'"), 0);
    EXPECT_EQ(slurp(dir.path() / "dec"), "interop payload\n");
}

}  // namespace
}  // namespace mlk::crypto
