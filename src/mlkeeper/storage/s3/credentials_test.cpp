#include "mlkeeper/storage/s3/credentials.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>

#include "mlkeeper/core/error.hpp"
#include "support/temp_dir.hpp"

namespace mlk::storage::s3 {
namespace {

using mlk::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr const char* kKeyId = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr const char* kToken = "FwoGZXIvYXdzEXAMPLETOKEN";

// A HOME with ~/.aws/credentials and/or ~/.aws/config.
class AwsHome {
  public:
    AwsHome() = default;
    void credentials(std::string_view text) { dir_.write(".aws/credentials", text); }
    void config(std::string_view text) { dir_.write(".aws/config", text); }
    std::string credentials_path() const { return (dir_ / ".aws/credentials").string(); }
    std::string config_path() const { return (dir_ / ".aws/config").string(); }
    Env env() const { return Env{{"HOME", dir_.path().string()}}; }
    const TempDir& dir() const { return dir_; }

  private:
    TempDir dir_;
};

// The message of the ConfigError that resolve_credentials throws; a failure if it throws nothing.
std::string credentials_error(const Env& env, const util::FsOps& ops = util::real_fs_ops()) {
    try {
        const Credentials c = resolve_credentials(env, ops);
        ADD_FAILURE() << "expected a ConfigError, got credentials from " << c.source;
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.code(), ExitCode::kConfig);
        const std::string what = e.what();
        EXPECT_EQ(what.find('\n'), std::string::npos) << "not one line: " << what;
        EXPECT_THAT(what, Not(HasSubstr(kSecret)));
        EXPECT_THAT(what, Not(HasSubstr(kToken)));
        return what;
    }
    return {};
}

std::string file_keys(const std::string& id = kKeyId, const std::string& secret = kSecret) {
    return "aws_access_key_id = " + id + "\naws_secret_access_key = " + secret + "\n";
}

// --- environment ---

TEST(S3Credentials, EnvironmentWinsOverFiles) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys("AKIAFILEFILEFILE", "filesecret"));
    Env env = home.env();
    env["AWS_ACCESS_KEY_ID"] = kKeyId;
    env["AWS_SECRET_ACCESS_KEY"] = kSecret;
    env["AWS_SESSION_TOKEN"] = kToken;
    env["AWS_PROFILE"] = "default";  // a profile does not disable the environment keys
    const Credentials c = resolve_credentials(env);
    EXPECT_EQ(c.access_key_id, kKeyId);
    EXPECT_EQ(c.secret_access_key, kSecret);
    EXPECT_EQ(c.session_token, kToken);
    EXPECT_EQ(c.source, "environment");
}

TEST(S3Credentials, EnvironmentWithoutTokenAndWithTheLegacyTokenName) {
    Env env{{"AWS_ACCESS_KEY_ID", kKeyId}, {"AWS_SECRET_ACCESS_KEY", kSecret}};
    EXPECT_EQ(resolve_credentials(env).session_token, "");
    env["AWS_SECURITY_TOKEN"] = "legacy";
    EXPECT_EQ(resolve_credentials(env).session_token, "legacy");
    env["AWS_SESSION_TOKEN"] = kToken;
    EXPECT_EQ(resolve_credentials(env).session_token, kToken);
}

TEST(S3Credentials, EnvironmentKeysAreNotReadFromBrokenFiles) {
    AwsHome home;
    home.credentials("garbage line\n");
    Env env = home.env();
    env["AWS_ACCESS_KEY_ID"] = kKeyId;
    env["AWS_SECRET_ACCESS_KEY"] = kSecret;
    EXPECT_EQ(resolve_credentials(env).source, "environment");
}

TEST(S3Credentials, HalfSetEnvironmentNamesTheMissingVariable) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys());
    Env only_id = home.env();
    only_id["AWS_ACCESS_KEY_ID"] = kKeyId;
    const std::string a = credentials_error(only_id);
    EXPECT_THAT(a, HasSubstr("AWS_SECRET_ACCESS_KEY is missing"));

    Env only_secret = home.env();
    only_secret["AWS_SECRET_ACCESS_KEY"] = kSecret;
    only_secret["AWS_SESSION_TOKEN"] = kToken;
    const std::string b = credentials_error(only_secret);
    EXPECT_THAT(b, HasSubstr("AWS_ACCESS_KEY_ID is missing"));
}

TEST(S3Credentials, EmptyVariablesCountAsUnset) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys());
    Env env = home.env();
    env["AWS_ACCESS_KEY_ID"] = "";
    env["AWS_SECRET_ACCESS_KEY"] = "";
    env["AWS_PROFILE"] = "";
    const Credentials c = resolve_credentials(env);
    EXPECT_EQ(c.source, home.credentials_path() + " [default]");
}

// --- shared credentials file ---

TEST(S3Credentials, DefaultProfileFromTheCredentialsFile) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys() + "aws_session_token = " + kToken + "\n");
    const Credentials c = resolve_credentials(home.env());
    EXPECT_EQ(c.access_key_id, kKeyId);
    EXPECT_EQ(c.secret_access_key, kSecret);
    EXPECT_EQ(c.session_token, kToken);
    EXPECT_EQ(c.source, home.credentials_path() + " [default]");
}

TEST(S3Credentials, NamedProfileFromTheCredentialsFile) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys("AKIADEFAULTDEFAULT", "d") + "\n[prod]\n" +
                     file_keys() + "aws_security_token = legacy\n");
    Env env = home.env();
    env["AWS_PROFILE"] = "prod";
    const Credentials c = resolve_credentials(env);
    EXPECT_EQ(c.access_key_id, kKeyId);
    EXPECT_EQ(c.session_token, "legacy");
    EXPECT_EQ(c.source, home.credentials_path() + " [prod]");
}

TEST(S3Credentials, CredentialsFileBeatsConfigFile) {
    AwsHome home;
    home.credentials("[dev]\n" + file_keys());
    home.config("[profile dev]\n" + file_keys("AKIACONFIGCONFIG", "cfgsecret"));
    Env env = home.env();
    env["AWS_PROFILE"] = "dev";
    EXPECT_EQ(resolve_credentials(env).access_key_id, kKeyId);
}

TEST(S3Credentials, ExplicitFileVariablesAndTilde) {
    AwsHome home;
    const auto creds = home.dir().write("elsewhere/creds.ini", "[default]\n" + file_keys());
    Env env = home.env();
    env["AWS_SHARED_CREDENTIALS_FILE"] = "~/elsewhere/creds.ini";
    EXPECT_EQ(resolve_credentials(env).source, creds.string() + " [default]");

    const auto config = home.dir().write("cfg", "[profile x]\n" + file_keys());
    env["AWS_SHARED_CREDENTIALS_FILE"] = (home.dir() / "none").string();
    env["AWS_CONFIG_FILE"] = config.string();
    env["AWS_PROFILE"] = "x";
    EXPECT_EQ(resolve_credentials(env).source, config.string() + " [profile x]");
}

// --- config file ---

TEST(S3Credentials, ConfigFileWhenTheCredentialsFileLacksTheProfile) {
    AwsHome home;
    home.credentials("[other]\n" + file_keys("AKIAOTHEROTHER", "o"));
    home.config("[default]\nregion = eu-west-1\n\n[profile dev]\n" + file_keys());
    Env env = home.env();
    env["AWS_PROFILE"] = "dev";
    const Credentials c = resolve_credentials(env);
    EXPECT_EQ(c.access_key_id, kKeyId);
    EXPECT_EQ(c.source, home.config_path() + " [profile dev]");
}

TEST(S3Credentials, CredentialsSectionWithoutKeysFallsThroughToConfig) {
    AwsHome home;
    home.credentials("[default]\n# keys live in the config file\n");
    home.config("[default]\nregion = eu-west-1\n" + file_keys());
    EXPECT_EQ(resolve_credentials(home.env()).source, home.config_path() + " [default]");
}

TEST(S3Credentials, ConfigSectionNaming) {
    AwsHome home;
    // [profile default] also names the default profile in the config file.
    home.config("[profile default]\n" + file_keys());
    EXPECT_EQ(resolve_credentials(home.env()).source, home.config_path() + " [profile default]");

    // In the config file a named profile needs the "profile " prefix: [dev] is not profile dev.
    home.config("[dev]\n" + file_keys());
    Env env = home.env();
    env["AWS_PROFILE"] = "dev";
    EXPECT_THAT(credentials_error(env), HasSubstr("AWS profile 'dev' not found in"));

    // ... and in the credentials file the prefix is part of the name: [profile dev] is not dev.
    home.config("");
    home.credentials("[profile dev]\n" + file_keys());
    EXPECT_THAT(credentials_error(env), HasSubstr("AWS profile 'dev' not found in"));

    // botocore shlex-splits the header: extra blanks are fine, quotes allow a space in the name.
    home.credentials("");
    home.config("[profile   dev ]\n" + file_keys() + "[profile \"my team\"]\n" +
                file_keys("AKIATEAMTEAMTEAM", "t"));
    EXPECT_EQ(resolve_credentials(env).access_key_id, kKeyId);
    env["AWS_PROFILE"] = "my team";
    EXPECT_EQ(resolve_credentials(env).access_key_id, "AKIATEAMTEAMTEAM");
    home.config("[profile my team]\n" + file_keys());
    EXPECT_THAT(credentials_error(env), HasSubstr("not found"));
}

// --- nothing found ---

TEST(S3Credentials, UnknownProfileNamesBothFiles) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys());
    home.config("[default]\nregion = us-west-2\n");
    Env env = home.env();
    env["AWS_PROFILE"] = "x";
    EXPECT_THAT(credentials_error(env),
                StartsWith("AWS profile 'x' not found in " + home.credentials_path() + " or " +
                           home.config_path()));
}

TEST(S3Credentials, NothingFoundSaysWhereItLooked) {
    AwsHome home;
    const std::string what = credentials_error(home.env());
    EXPECT_THAT(what, HasSubstr("no AWS credentials found"));
    EXPECT_THAT(what, HasSubstr("AWS_ACCESS_KEY_ID"));
    EXPECT_THAT(what, HasSubstr(home.credentials_path() + " (no such file)"));
    EXPECT_THAT(what, HasSubstr(home.config_path() + " (no such file)"));
}

TEST(S3Credentials, NothingFoundWithoutHome) {
    const std::string what = credentials_error(Env{});
    EXPECT_THAT(what, HasSubstr("$HOME/.aws/credentials (HOME is not set)"));
    EXPECT_THAT(what, HasSubstr("$HOME/.aws/config (HOME is not set)"));
}

TEST(S3Credentials, ProfileWithoutKeysIsNotSupported) {
    AwsHome home;
    home.config("[profile sso]\nrole_arn = arn:aws:iam::123:role/x\nsource_profile = default\n");
    Env env = home.env();
    env["AWS_PROFILE"] = "sso";
    const std::string what = credentials_error(env);
    EXPECT_THAT(what, HasSubstr("AWS profile 'sso' has no aws_access_key_id"));
    EXPECT_THAT(what, HasSubstr("not supported"));
}

TEST(S3Credentials, HalfSetProfileNamesTheMissingKeyButNotTheSecret) {
    AwsHome home;
    home.credentials("[default]\naws_access_key_id = " + std::string(kKeyId) + "\n");
    EXPECT_THAT(credentials_error(home.env()),
                HasSubstr(home.credentials_path() +
                          " [default]: aws_access_key_id is set but aws_secret_access_key"));

    home.credentials("[default]\naws_secret_access_key = " + std::string(kSecret) +
                     "\naws_access_key_id =\n");
    EXPECT_THAT(credentials_error(home.env()),
                HasSubstr("aws_secret_access_key is set but aws_access_key_id"));
}

// --- INI syntax ---

TEST(S3Credentials, IniSyntaxAsBotocoreReadsIt) {
    AwsHome home;
    home.credentials(
        "\xEF\xBB\xBF# leading comment\r\n"
        "; another comment\r\n"
        "\r\n"
        "[  dev  ]\r\n"
        "  AWS_Access_Key_ID:AKIAIOSFODNN7EXAMPLE   \r\n"
        "aws_secret_access_key=" +
        std::string(kSecret) +
        "\r\n"
        "aws_session_token = tok # not a comment\r\n"
        "s3 =\r\n"
        "    max_concurrent_requests = 20\r\n"
        "\r\n"
        "    addressing_style = path\r\n"
        "   # comment inside a nested block\r\n"
        "region = eu-central-1\r\n");
    Env env = home.env();
    env["AWS_PROFILE"] = "dev";
    const Credentials c = resolve_credentials(env);
    EXPECT_EQ(c.access_key_id, kKeyId);
    EXPECT_EQ(c.secret_access_key, kSecret);
    EXPECT_EQ(c.session_token, "tok # not a comment");  // no inline comments, as in configparser
    EXPECT_EQ(c.source, home.credentials_path() + " [dev]");
}

TEST(S3Credentials, SecretWithDelimitersInside) {
    AwsHome home;
    home.credentials("[default]\naws_access_key_id = a:b=c\naws_secret_access_key = x=y:z==\n");
    const Credentials c = resolve_credentials(home.env());
    EXPECT_EQ(c.access_key_id, "a:b=c");
    EXPECT_EQ(c.secret_access_key, "x=y:z==");
}

struct MalformedCase {
    const char* text;
    const char* line_and_problem;  // after "<path>:"
};

TEST(S3Credentials, MalformedLinesNameFileAndLineButNotTheText) {
    const MalformedCase cases[] = {
        {"[default]\naws_access_key_id = AKIA\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
         "3: expected 'key = value' or '[section]'"},
        {"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n[default]\n",
         "1: setting before the first [section]"},
        {"# x\n[default\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
         "2: section header without a closing ']'"},
        {"[default]\n = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "2: missing key name"},
        {"[]\n", "1: empty section name"},
        {"[default]\n[other]\n[default]\n", "3: duplicate section [default] (first on line 1)"},
        {"[default]\naws_secret_access_key = a\naws_secret_access_key = "
         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
         "3: key repeats the one on line 2"},
    };
    for (const MalformedCase& mc : cases) {
        SCOPED_TRACE(mc.text);
        AwsHome home;
        home.credentials(mc.text);
        home.config("[default]\n" + file_keys());  // a broken credentials file is still an error
        EXPECT_THAT(credentials_error(home.env()),
                    StartsWith(home.credentials_path() + ":" + mc.line_and_problem));
    }
}

TEST(S3Credentials, MalformedConfigFileToo) {
    AwsHome home;
    home.config("[profile dev]\nregion eu-west-1\n");
    EXPECT_THAT(credentials_error(home.env()), StartsWith(home.config_path() + ":2: "));
}

// --- unreadable files ---

TEST(S3Credentials, DirectoryInPlaceOfTheFileIsAnError) {
    AwsHome home;
    std::filesystem::create_directories(home.credentials_path());
    home.config("[default]\n" + file_keys());
    const std::string what = credentials_error(home.env());
    EXPECT_THAT(what, StartsWith(home.credentials_path() + ": cannot read AWS settings file: "));
    EXPECT_THAT(what, HasSubstr("directory"));
}

// Fails open() of paths ending in `suffix` with `err`.
util::FsOps failing_open(std::string suffix, int err) {
    util::FsOps ops = util::real_fs_ops();
    const auto real_open = ops.open;
    ops.open = [real_open, suffix, err](const char* path, int flags, mode_t mode) {
        if (std::string_view(path).ends_with(suffix)) {
            errno = err;
            return -1;
        }
        return real_open(path, flags, mode);
    };
    return ops;
}

TEST(S3Credentials, PermissionDeniedIsAnError) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys());
    const std::string what = credentials_error(home.env(), failing_open("/credentials", EACCES));
    EXPECT_EQ(what, home.credentials_path() + ": cannot read AWS settings file: Permission denied");
}

TEST(S3Credentials, VanishedFileIsSkipped) {
    AwsHome home;
    home.credentials("[default]\n" + file_keys("AKIAFILEFILEFILE", "f"));
    home.config("[default]\n" + file_keys());
    const Credentials c = resolve_credentials(home.env(), failing_open("/credentials", ENOENT));
    EXPECT_EQ(c.source, home.config_path() + " [default]");
}

// --- region ---

TEST(S3Region, Precedence) {
    AwsHome home;
    home.config("[default]\nregion = eu-west-1\n[profile dev]\nregion = ap-south-1\n");
    home.credentials("[default]\nregion = sa-east-1\n");  // the credentials file is not asked
    Env env = home.env();
    EXPECT_EQ(resolve_region(env, ""), "eu-west-1");
    env["AWS_PROFILE"] = "dev";
    EXPECT_EQ(resolve_region(env, ""), "ap-south-1");
    env["AWS_DEFAULT_REGION"] = "us-west-1";
    EXPECT_EQ(resolve_region(env, ""), "us-west-1");
    env["AWS_REGION"] = "us-west-2";
    EXPECT_EQ(resolve_region(env, ""), "us-west-2");
    EXPECT_EQ(resolve_region(env, "eu-north-1"), "eu-north-1");
}

TEST(S3Region, DefaultsToUsEast1) {
    EXPECT_EQ(resolve_region(Env{}, ""), "us-east-1");
    AwsHome home;
    EXPECT_EQ(resolve_region(home.env(), ""), "us-east-1");  // no files
    home.config("[default]\nregion =\n[profile other]\nregion = eu-west-1\n");
    EXPECT_EQ(resolve_region(home.env(), ""), "us-east-1");  // empty value, other profile
    Env env = home.env();
    env["AWS_PROFILE"] = "missing";
    EXPECT_EQ(resolve_region(env, ""), "us-east-1");
}

TEST(S3Region, MalformedConfigIsAnError) {
    AwsHome home;
    home.config("[default]\nregion\n");
    EXPECT_THROW(resolve_region(home.env(), ""), ConfigError);
    EXPECT_EQ(resolve_region(home.env(), "eu-west-1"), "eu-west-1");  // not read at all
}

// --- misc ---

TEST(S3Credentials, MaskKeyId) {
    EXPECT_EQ(mask_key_id("AKIAIOSFODNN7EXAMPLE"), "AKIA****MPLE");
    EXPECT_EQ(mask_key_id("AKIA1234WXYZ"), "AKIA****WXYZ");
    EXPECT_EQ(mask_key_id("AKIA1234XYZ"), "****");
    EXPECT_EQ(mask_key_id(""), "****");
}

TEST(S3Credentials, ProcessEnvironmentSnapshot) {
    ASSERT_EQ(::setenv("MLK_S3_CREDENTIALS_TEST", "a=b", 1), 0);
    const Env env = process_env();
    ::unsetenv("MLK_S3_CREDENTIALS_TEST");
    const auto it = env.find("MLK_S3_CREDENTIALS_TEST");
    ASSERT_NE(it, env.end());
    EXPECT_EQ(it->second, "a=b");
}

}  // namespace
}  // namespace mlk::storage::s3
