#include "mlkeeper/health/probe_spec.hpp"

#include <gtest/gtest.h>

namespace mlk::health {
namespace {

using namespace std::chrono_literals;

TEST(ProbeSpec, HttpWithOptions) {
    auto s = parse_probe_spec("http://127.0.0.1:8000/health expect=200 timeout=3s name=model-api");
    EXPECT_EQ(s.kind, ProbeKind::kHttp);
    EXPECT_EQ(s.uri, "http://127.0.0.1:8000/health");
    EXPECT_EQ(s.expect, 200);
    EXPECT_EQ(s.timeout, 3000ms);
    EXPECT_EQ(s.name, "model-api");
    EXPECT_EQ(s.port, 8000);
    s = parse_probe_spec("https://models.example.com/ready");
    EXPECT_EQ(s.port, 443);
    EXPECT_FALSE(s.expect);
    EXPECT_EQ(s.timeout, 5000ms);
    EXPECT_EQ(s.name, "https models.example.com:443/ready");
}

TEST(ProbeSpec, TcpRedisPostgres) {
    auto t = parse_probe_spec("tcp://[::1]:8001 timeout=500ms");
    EXPECT_EQ(t.kind, ProbeKind::kTcp);
    EXPECT_EQ(t.host, "::1");
    EXPECT_EQ(t.port, 8001);
    EXPECT_EQ(t.timeout, 500ms);
    auto r = parse_probe_spec("redis://:s%40cret@127.0.0.1:6380/2");
    EXPECT_EQ(r.kind, ProbeKind::kRedis);
    EXPECT_EQ(r.password, "s@cret");
    EXPECT_EQ(r.user, "");
    EXPECT_EQ(r.port, 6380);
    EXPECT_EQ(r.redis_db, 2);
    auto ru = parse_probe_spec("redis://ml:pw@cache");
    EXPECT_EQ(ru.user, "ml");
    EXPECT_EQ(ru.port, 6379);
    auto p = parse_probe_spec("postgresql://ml@127.0.0.1:5433/features name=features-db");
    EXPECT_EQ(p.kind, ProbeKind::kPostgres);
    EXPECT_EQ(p.host, "127.0.0.1");
    EXPECT_EQ(p.port, 5433);
    EXPECT_EQ(p.name, "features-db");
    EXPECT_EQ(parse_probe_spec("postgres://db.local/x").port, 5432);
}

TEST(ProbeSpec, Timeouts) {
    EXPECT_EQ(parse_timeout("3"), 3000ms);
    EXPECT_EQ(parse_timeout("2m"), 120000ms);
    for (const char* bad : {"", "0", "0s", "3h", "s", "-1s", "1.5s", "2 s", "99999999999"}) {
        EXPECT_FALSE(parse_timeout(bad)) << bad;
    }
}

TEST(ProbeSpec, ClearErrors) {
    auto msg = [](const std::string& text) {
        try {
            parse_probe_spec(text);
        } catch (const ProbeSpecError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(msg(""), "empty probe");
    EXPECT_NE(msg("127.0.0.1:80").find("is not a URI"), std::string::npos);
    EXPECT_NE(msg("ftp://x/").find("unknown scheme \"ftp\""), std::string::npos);
    EXPECT_EQ(msg("tcp://host"), "missing port (tcp://host:port)");
    EXPECT_EQ(msg("tcp://host:99999"), "bad port \"99999\" (1-65535)");
    EXPECT_EQ(msg("http://:80/"), "missing host");
    EXPECT_EQ(msg("tcp://h:1 expect=200"), "expect= applies to http(s) probes only");
    EXPECT_NE(msg("http://h/ expect=20").find("not an HTTP status"), std::string::npos);
    EXPECT_NE(msg("http://h/ timeout=soon").find("500ms, 3s or 1m"), std::string::npos);
    EXPECT_NE(msg("http://h/ name=a/b").find("letters, digits"), std::string::npos);
    EXPECT_NE(msg("http://h/ retries=3").find("unknown option \"retries\""), std::string::npos);
    EXPECT_NE(msg("http://h/ loose").find("not key=value"), std::string::npos);
    EXPECT_NE(msg("redis://h/abc").find("bad redis db"), std::string::npos);
    EXPECT_EQ(msg("postgresql://h:port/x"), "bad port \"port\" (1-65535)");
    EXPECT_NE(msg("postgresql://h/x?nosuchparam=1").find("nosuchparam"), std::string::npos);
}

TEST(ProbeSpec, ListCollectsEveryErrorAndRedacts) {
    auto p = parse_probe_specs(
        {"tcp://a:1", "redis://:topsecret@h:99999", "tcp://b:2 name=x", "tcp://c:3 name=x"});
    EXPECT_EQ(p.specs.size(), 3u);
    ASSERT_EQ(p.errors.size(), 2u);
    EXPECT_NE(p.errors[0].find("health.probes[1]"), std::string::npos);
    EXPECT_EQ(p.errors[0].find("topsecret"), std::string::npos) << p.errors[0];
    EXPECT_NE(p.errors[1].find("two probes are named \"x\""), std::string::npos);
}

}  // namespace
}  // namespace mlk::health
