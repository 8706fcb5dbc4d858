// Probes against real peers the test starts: nginx, redis-server (with and
// without a password), PostgreSQL, closed ports and a server that never
// answers. Each server test skips when its binary is not installed.
#include "mlkeeper/health/probes.hpp"

#include <gtest/gtest.h>

#include "support/servers.hpp"

namespace mlk::health {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;
using mlk::testing::ServerUnavailable;

template <class Server, class... Args>
std::unique_ptr<Server> start_or_skip(std::string& why, Args&&... args) {
    try {
        return std::make_unique<Server>(std::forward<Args>(args)...);
    } catch (const ServerUnavailable& e) {
        why = e.what();
        return nullptr;
    }
}

CheckResult probe(const std::string& spec) {
    return run_probe(parse_probe_spec(spec));
}

// Runs a probe against a peer that never answers and proves the wait was bounded.
void expect_bounded_timeout(const std::string& spec, std::chrono::milliseconds limit) {
    const auto start = SteadyClock::now();
    auto r = probe(spec);
    const auto took = SteadyClock::now() - start;
    EXPECT_EQ(r.status, Status::kFail) << r.message;
    EXPECT_GE(took, limit - 20ms) << r.message;
    EXPECT_LT(took, limit + 1500ms) << r.message;
    EXPECT_NE(r.message.find("within"), std::string::npos) << r.message;
}

TEST(HttpProbe, NginxHealthBrokenAndExpect) {
    std::string why;
    auto nginx = start_or_skip<mlk::testing::NginxServer>(why);
    if (!nginx)
        GTEST_SKIP() << why;
    auto ok = probe(nginx->url("/health") + " name=model-api");
    EXPECT_EQ(ok.status, Status::kPass) << ok.message;
    EXPECT_EQ(ok.check, "Probe model-api");
    EXPECT_NE(ok.message.find("HTTP 200"), std::string::npos);
    auto broken = probe(nginx->url("/broken"));
    EXPECT_EQ(broken.status, Status::kFail);
    EXPECT_NE(broken.message.find("HTTP 500 (expected 2xx or 3xx)"), std::string::npos)
        << broken.message;
    EXPECT_EQ(probe(nginx->url("/broken") + " expect=500").status, Status::kPass);
    auto wrong = probe(nginx->url("/health") + " expect=204");
    EXPECT_EQ(wrong.status, Status::kFail);
    EXPECT_NE(wrong.message.find("HTTP 200 (expected 204)"), std::string::npos);
    EXPECT_EQ(probe("tcp://127.0.0.1:" + std::to_string(nginx->port())).status, Status::kPass);
}

TEST(HttpProbe, ClosedPortAndSilentServer) {
    auto closed = probe("http://127.0.0.1:" + std::to_string(mlk::testing::free_port()) + "/");
    EXPECT_EQ(closed.status, Status::kFail);
    mlk::testing::SilentServer silent;
    expect_bounded_timeout(
        "http://127.0.0.1:" + std::to_string(silent.port()) + "/health timeout=400ms", 400ms);
}

TEST(TcpProbe, ClosedAndBlackhole) {
    auto closed = probe("tcp://127.0.0.1:" + std::to_string(mlk::testing::free_port()));
    EXPECT_EQ(closed.status, Status::kFail);
    EXPECT_NE(closed.message.find("refused"), std::string::npos) << closed.message;
    mlk::testing::BlackholeServer hole;
    const auto start = SteadyClock::now();
    auto r = probe("tcp://127.0.0.1:" + std::to_string(hole.port()) + " timeout=300ms");
    EXPECT_EQ(r.status, Status::kFail);
    EXPECT_LT(SteadyClock::now() - start, 1500ms);
    EXPECT_NE(r.message.find("timed out after 300 ms"), std::string::npos) << r.message;
}

TEST(RedisProbe, PingWithoutPassword) {
    std::string why;
    auto redis = start_or_skip<mlk::testing::RedisServer>(why);
    if (!redis)
        GTEST_SKIP() << why;
    auto r = probe("redis://127.0.0.1:" + std::to_string(redis->port()));
    EXPECT_EQ(r.status, Status::kPass) << r.message;
    EXPECT_NE(r.message.find("PONG"), std::string::npos);
    // A password the server does not need: Redis 7 rejects AUTH then.
    auto extra = probe("redis://:x@127.0.0.1:" + std::to_string(redis->port()));
    EXPECT_EQ(extra.status, Status::kFail) << extra.message;
    EXPECT_NE(extra.message.find("AUTH rejected"), std::string::npos) << extra.message;
}

TEST(RedisProbe, RequirePass) {
    std::string why;
    auto redis = start_or_skip<mlk::testing::RedisServer>(why, "s3cret");
    if (!redis)
        GTEST_SKIP() << why;
    const std::string hp = "127.0.0.1:" + std::to_string(redis->port());
    auto good = probe("redis://:s3cret@" + hp);
    EXPECT_EQ(good.status, Status::kPass) << good.message;
    auto none = probe("redis://" + hp);
    EXPECT_EQ(none.status, Status::kFail);
    EXPECT_NE(none.message.find("NOAUTH"), std::string::npos) << none.message;
    auto bad = probe("redis://:wrong@" + hp);
    EXPECT_EQ(bad.status, Status::kFail);
    EXPECT_NE(bad.message.find("AUTH rejected: WRONGPASS"), std::string::npos) << bad.message;
    EXPECT_EQ(bad.message.find("wrong@"), std::string::npos);
}

TEST(RedisProbe, ClosedAndSilent) {
    EXPECT_EQ(probe("redis://127.0.0.1:" + std::to_string(mlk::testing::free_port())).status,
              Status::kFail);
    mlk::testing::SilentServer silent;
    expect_bounded_timeout("redis://127.0.0.1:" + std::to_string(silent.port()) + " timeout=300ms",
                           300ms);
}

TEST(PostgresProbe, RealServerClosedAndSilent) {
    std::string why;
    auto pg = start_or_skip<mlk::testing::PostgresServer>(why);
    if (!pg)
        GTEST_SKIP() << why;
    auto ok = probe(pg->uri() + " name=features-db");
    EXPECT_EQ(ok.status, Status::kPass) << ok.message;
    EXPECT_NE(ok.message.find("accepting connections"), std::string::npos);
    // PQping reports a running server even when the user/database are wrong (like pg_isready).
    auto other = probe("postgresql://nobody@127.0.0.1:" + std::to_string(pg->port()) + "/nodb");
    EXPECT_EQ(other.status, Status::kPass) << other.message;
}

TEST(PostgresProbe, ClosedAndSilentAreBounded) {
    auto closed = probe(
        "postgresql://postgres@127.0.0.1:" + std::to_string(mlk::testing::free_port()) + "/x");
    EXPECT_EQ(closed.status, Status::kFail);
    EXPECT_NE(closed.message.find("no response"), std::string::npos) << closed.message;
    mlk::testing::SilentServer silent;
    expect_bounded_timeout(
        "postgresql://postgres@127.0.0.1:" + std::to_string(silent.port()) + "/x timeout=500ms",
        500ms);
}

TEST(Probes, RunInParallel) {
    mlk::testing::SilentServer silent;
    const std::string s = "tcp://127.0.0.1:" + std::to_string(silent.port());
    mlk::testing::SilentServer silent2;
    std::vector<ProbeSpec> specs = {
        parse_probe_spec("redis://127.0.0.1:" + std::to_string(silent.port()) +
                         " timeout=400ms name=a"),
        parse_probe_spec("redis://127.0.0.1:" + std::to_string(silent2.port()) +
                         " timeout=400ms name=b"),
        parse_probe_spec(s + " name=c")};
    const auto start = SteadyClock::now();
    auto r = run_probes(specs);
    EXPECT_LT(SteadyClock::now() - start, 750ms);  // not 2 x 400 ms
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0].check, "Probe a");
    EXPECT_EQ(r[2].status, Status::kPass);
}

}  // namespace
}  // namespace mlk::health
