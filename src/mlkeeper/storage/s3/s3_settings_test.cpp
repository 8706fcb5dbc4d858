#include "mlkeeper/storage/s3/s3_settings.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mlkeeper/core/error.hpp"

namespace mlk::storage::s3 {
namespace {

using ::testing::HasSubstr;

core::Config load(std::map<std::string, std::string> env) {
    core::ConfigInputs in;
    in.default_file = "/nonexistent/mlkeeper.toml";
    in.env = std::move(env);
    return core::Config::load(in);
}

const Env kKeys = {{"AWS_ACCESS_KEY_ID", "AKIAEXAMPLE12345"},
                   {"AWS_SECRET_ACCESS_KEY", "secret/with+chars"},
                   {"HOME", "/nonexistent"}};

TEST(S3Settings, AwsDefaultsVirtualHostAndHostPrefix) {
    auto s = settings_from_config(load({{"S3_BUCKET", "bkt"}}), kKeys, "gpu01");
    EXPECT_EQ(s.bucket, "bkt");
    EXPECT_EQ(s.prefix, "models/gpu01/");
    EXPECT_EQ(s.region, "us-east-1");
    EXPECT_EQ(s.endpoint, "https://s3.us-east-1.amazonaws.com");
    EXPECT_EQ(s.addressing, Addressing::kVirtualHost);
    EXPECT_EQ(object_url(s, "models/gpu01/a b.tar.zst"),
              "https://bkt.s3.us-east-1.amazonaws.com/models/gpu01/a%20b.tar.zst");
    EXPECT_EQ(s.credentials.secret_access_key, "secret/with+chars");
    EXPECT_EQ(s.part_size, 64ULL << 20);
    EXPECT_EQ(s.attempts, 3);
}

TEST(S3Settings, EndpointMeansPathAddressingAndPrefixIsNormalised) {
    auto s = settings_from_config(load({{"S3_BUCKET", "bkt"},
                                        {"S3_ENDPOINT", "http://127.0.0.1:9000/"},
                                        {"S3_PREFIX", "/backups"},
                                        {"S3_REGION", "eu-west-3"}}),
                                  kKeys, "h");
    EXPECT_EQ(s.addressing, Addressing::kPath);
    EXPECT_EQ(s.prefix, "backups/");
    EXPECT_EQ(s.region, "eu-west-3");
    EXPECT_EQ(object_url(s, ""), "http://127.0.0.1:9000/bkt");
    auto v = settings_from_config(load({{"S3_BUCKET", "bkt"},
                                        {"S3_ENDPOINT", "https://x.example"},
                                        {"S3_ADDRESSING", "virtual"}}),
                                  kKeys, "h");
    EXPECT_EQ(object_url(v, "k"), "https://bkt.x.example/k");
}

TEST(S3Settings, QueryIsCanonicalSortedAndEncoded) {
    S3Settings s;
    s.bucket = "b";
    s.endpoint = "http://h:1";
    s.addressing = Addressing::kPath;
    // libcurl 7.88 signs the query as written: it must already be SigV4's canonical form.
    EXPECT_EQ(object_url(s, "k", {{"uploadId", "x/y=z"}, {"partNumber", "2"}}),
              "http://h:1/b/k?partNumber=2&uploadId=x%2Fy%3Dz");
    EXPECT_EQ(object_url(s, "k", {{"uploads", ""}}), "http://h:1/b/k?uploads=");
    EXPECT_EQ(object_url(s, "", {{"prefix", "models/h 1/"}, {"list-type", "2"}}),
              "http://h:1/b?list-type=2&prefix=models%2Fh%201%2F");
}

TEST(S3Settings, UriEncodingKeepsOnlyUnreserved) {
    EXPECT_EQ(uri_encode("aZ09-_.~/", Slash::kKeep), "aZ09-_.~/");
    EXPECT_EQ(uri_encode("a/b", Slash::kEncode), "a%2Fb");
    EXPECT_EQ(uri_encode("é+*", Slash::kKeep), "%C3%A9%2B%2A");
}

TEST(S3Settings, S3Urls) {
    auto l = parse_s3_url("s3://bkt/models/h/a.tar.zst");
    ASSERT_TRUE(l);
    EXPECT_EQ(l->bucket, "bkt");
    EXPECT_EQ(l->key, "models/h/a.tar.zst");
    EXPECT_FALSE(parse_s3_url("s3://bkt"));
    EXPECT_FALSE(parse_s3_url("s3://bkt/"));
    EXPECT_FALSE(parse_s3_url("s3:///key"));
    EXPECT_FALSE(parse_s3_url("/backup/a.tar.zst"));
    EXPECT_EQ(s3_url("b", "k/x"), "s3://b/k/x");
}

TEST(S3Settings, BadValuesAreConfigErrors) {
    auto err = [](std::map<std::string, std::string> env, const Env& aws) {
        try {
            settings_from_config(load(std::move(env)), aws, "h");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_THAT(err({}, kKeys), HasSubstr("no bucket configured"));
    EXPECT_THAT(err({{"S3_BUCKET", "a/b"}}, kKeys), HasSubstr("must not contain '/'"));
    EXPECT_THAT(err({{"S3_BUCKET", "b"}, {"S3_ENDPOINT", "ftp://x"}}, kKeys),
                HasSubstr("must start with http"));
    EXPECT_THAT(err({{"S3_BUCKET", "b"}}, {{"HOME", "/nonexistent"}}),
                HasSubstr("no AWS credentials"));
}

}  // namespace
}  // namespace mlk::storage::s3
