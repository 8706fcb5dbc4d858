#include "mlkeeper/api/auth.hpp"

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "mlkeeper/core/error.hpp"
#include "support/temp_dir.hpp"

namespace mlk::api {
namespace {

constexpr const char* kAdminToken = "admin-token-0123456789abcdef";
constexpr const char* kReadToken = "read-token-0123456789abcdef";

const std::string kGood = std::string("# API tokens\n\n") + "alice admin " + kAdminToken +
                          "\n  bob\tread  " + kReadToken + "  \r\n";

// The ConfigError message of parse(text), or "" if it parsed.
std::string parse_error(const std::string& text) {
    try {
        TokenSet::parse(text, "tokens.txt");
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.code(), ExitCode::kConfig);
        return e.what();
    }
    return "";
}

TEST(TokenSet, ParsesNamesScopesAndComments) {
    const auto set = TokenSet::parse(kGood, "tokens.txt");
    EXPECT_EQ(set.size(), 2u);
    auto p = set.authenticate(std::string("Bearer ") + kAdminToken);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->name, "alice");
    EXPECT_EQ(p->scope, Access::kAdmin);
    p = set.authenticate(std::string("Bearer ") + kReadToken);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->name, "bob");
    EXPECT_EQ(p->scope, Access::kRead);
}

TEST(TokenSet, SchemeIsCaseInsensitiveAndSpacesAreTrimmed) {
    const auto set = TokenSet::parse(kGood, "t");
    EXPECT_TRUE(set.authenticate(std::string("bearer ") + kAdminToken));
    EXPECT_TRUE(set.authenticate(std::string("BEARER   ") + kAdminToken + "  "));
    EXPECT_TRUE(set.authenticate(std::string(" Bearer\t") + kAdminToken));
}

TEST(TokenSet, RejectsWrongAndMalformedCredentials) {
    const auto set = TokenSet::parse(kGood, "t");
    const std::string admin = kAdminToken;
    for (const std::string& bad : std::vector<std::string>{
             std::string(""),
             std::string("Bearer"),
             std::string("Bearer "),
             "Basic " + admin,
             "Bearer" + admin,
             admin,
             "Bearer " + admin + "x",
             "Bearer " + admin.substr(0, admin.size() - 1),
             "Bearer " + admin + " extra",
             std::string("Bearer alice"),
             "Bearer " + std::string(5000, 'a'),
         }) {
        EXPECT_FALSE(set.authenticate(bad)) << bad;
    }
}

TEST(TokenSet, BadLinesNameTheLineButNeverItsContent) {
    struct Case {
        std::string text;
        std::string expect;
    };
    const std::string tok = "abcdefghijklmnopqrstuvwxyz";
    for (const auto& c : std::vector<Case>{
             {"alice admin\n", "tokens.txt:1: expected NAME SCOPE TOKEN"},
             {"# c\nalice admin " + tok + " more\n", "tokens.txt:2: expected NAME SCOPE TOKEN"},
             {"\n\nalice root " + tok + "\n", "tokens.txt:3: unknown SCOPE"},
             {"alice ADMIN " + tok + "\n", "tokens.txt:1: unknown SCOPE"},
             {"al/ice admin " + tok + "\n", "tokens.txt:1: bad NAME"},
             {std::string(65, 'n') + " admin " + tok + "\n", "tokens.txt:1: bad NAME"},
             {"alice admin fifteen-chars-x\n", "tokens.txt:1: TOKEN is shorter than 16"},
             {"alice admin " + tok + "\nalice read " + tok + "x\n",
              "tokens.txt:2: NAME is already used on line 1"},
             {"alice admin " + tok + "\nbob read " + tok + "\n",
              "tokens.txt:2: TOKEN is the same as on line 1"},
             {"alice admin " + tok + "\xc3\xa9\n", "tokens.txt:1: TOKEN must be"},
             {"", "tokens.txt: no tokens"},
             {"# only a comment\n\n", "tokens.txt: no tokens"},
         }) {
        const auto msg = parse_error(c.text);
        EXPECT_EQ(msg.rfind(c.expect, 0), 0u) << "got: " << msg << "\nwant: " << c.expect;
        EXPECT_EQ(msg.find(tok), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
}

TEST(TokenSet, ExactlyMinimumLengthIsAccepted) {
    const auto set = TokenSet::parse("a read 0123456789abcdef\n", "t");
    EXPECT_TRUE(set.authenticate("Bearer 0123456789abcdef"));
}

class TokenFile : public ::testing::Test {
  protected:
    std::filesystem::path write(const std::string& text, mode_t mode) {
        const auto p = dir_.write("tokens", text);
        EXPECT_EQ(::chmod(p.c_str(), mode), 0);
        return p;
    }
    std::string load_error(const std::filesystem::path& p) {
        try {
            TokenSet::load(p);
        } catch (const ConfigError& e) {
            return e.what();
        }
        return "";
    }
    testing::TempDir dir_;
};

TEST_F(TokenFile, LoadsAPrivateFile) {
    const auto p = write(kGood, 0600);
    EXPECT_EQ(TokenSet::load(p).size(), 2u);
    ::chmod(p.c_str(), 0400);
    EXPECT_EQ(TokenSet::load(p).size(), 2u);
}

TEST_F(TokenFile, RefusesAFileOthersCanRead) {
    for (mode_t mode : {0640, 0604, 0620, 0602, 0660}) {
        const auto p = write(kGood, mode);
        const auto msg = load_error(p);
        EXPECT_NE(msg.find("open to group or other"), std::string::npos) << mode << ": " << msg;
        EXPECT_NE(msg.find("chmod 600"), std::string::npos) << msg;
        EXPECT_EQ(msg.find(kAdminToken), std::string::npos);
    }
}

TEST_F(TokenFile, RefusesWhatIsNotARegularFile) {
    EXPECT_NE(load_error(dir_.path()).find("not a regular file"), std::string::npos);
    const auto fifo = dir_ / "fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_NE(load_error(fifo).find("not a regular file"), std::string::npos);
    EXPECT_NE(load_error("/dev/null").find("not a regular file"), std::string::npos);
}

TEST_F(TokenFile, MissingOrUnreadableFileIsAConfigError) {
    const auto missing = dir_ / "missing";
    auto msg = load_error(missing);
    EXPECT_EQ(msg.rfind(missing.string() + ": cannot open", 0), 0u) << msg;
    if (::geteuid() != 0) {
        const auto p = write(kGood, 0000);
        EXPECT_NE(load_error(p).find("cannot open"), std::string::npos);
    }
}

TEST_F(TokenFile, ErrorsNameThePath) {
    const auto p = write("alice admin short\n", 0600);
    const auto msg = load_error(p);
    EXPECT_EQ(msg.rfind(p.string() + ":1: TOKEN is shorter", 0), 0u) << msg;
}

TEST_F(TokenFile, RefusesAHugeFile) {
    const auto p = write(std::string(1024 * 1024 + 1, '#'), 0600);
    EXPECT_NE(load_error(p).find("larger than 1 MiB"), std::string::npos);
}

}  // namespace
}  // namespace mlk::api
