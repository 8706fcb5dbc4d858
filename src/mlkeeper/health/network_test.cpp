#include "mlkeeper/health/network.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "support/servers.hpp"

namespace mlk::health {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

TEST(HostPort, Parses) {
    auto hp = parse_host_port("db.local:5432");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "db.local");
    EXPECT_EQ(hp->port, 5432);
    hp = parse_host_port("[::1]:6379");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "::1");
    for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:65536", "host:80x",
                            "::1:80", "[::1]80", "[::1]", "h:123456"}) {
        EXPECT_FALSE(parse_host_port(bad)) << bad;
    }
}

TEST(Resolve, NumericLocalhostAndInvalid) {
    auto r = resolve_host("127.0.0.1", 1s);
    ASSERT_TRUE(r.error.empty());
    EXPECT_EQ(r.addresses, std::vector<std::string>{"127.0.0.1"});
    r = resolve_host("localhost", 2s);
    EXPECT_TRUE(r.error.empty()) << r.error;
    const auto start = SteadyClock::now();
    r = resolve_host("no-such-host.invalid", 2s);
    EXPECT_FALSE(r.error.empty());
    EXPECT_LT(SteadyClock::now() - start, 3s);  // bounded even if the resolver hangs
}

TEST(TcpConnect, OpenClosedAndBlackhole) {
    mlk::testing::SilentServer open;
    auto c = tcp_connect("127.0.0.1", open.port(), 1s);
    EXPECT_TRUE(c.ok()) << c.error;

    const int closed = mlk::testing::free_port();
    c = tcp_connect("127.0.0.1", closed, 1s);
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(c.failure, ConnectFailure::kRefused);
    EXPECT_NE(c.error.find("Connection refused"), std::string::npos) << c.error;

    mlk::testing::BlackholeServer hole;
    const auto start = SteadyClock::now();
    c = tcp_connect("127.0.0.1", hole.port(), 300ms);
    const auto took = SteadyClock::now() - start;
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(c.failure, ConnectFailure::kTimeout) << c.error;
    EXPECT_GE(took, 290ms);
    EXPECT_LT(took, 1500ms);
    EXPECT_EQ(c.error,
              "connect to 127.0.0.1:" + std::to_string(hole.port()) + " timed out after 300 ms");
}

TEST(Exchange, TimesOutOnASilentPeer) {
    mlk::testing::SilentServer silent;
    auto c = tcp_connect("127.0.0.1", silent.port(), 1s);
    ASSERT_TRUE(c.ok());
    std::string err;
    const auto start = SteadyClock::now();
    exchange(
        c.fd.get(), "PING\r\n", start + 200ms, [](const std::string& s) { return !s.empty(); },
        err);
    EXPECT_EQ(err, "timed out waiting for a reply");
    EXPECT_LT(SteadyClock::now() - start, 1s);
}

struct FakeProc {
    FakeProc() {
        std::string tmpl = (fs::temp_directory_path() / "mlk-net-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp");
        env.proc_root = tmpl;
        fs::create_directories(env.proc_root / "net");
    }
    ~FakeProc() { fs::remove_all(env.proc_root); }
    void write(const char* name, const std::string& text) {
        std::ofstream(env.proc_root / "net" / name) << text;
    }
    HealthEnv env;
};

const char* kRouteHeader =
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

TEST(DefaultRoute, Ipv4Ipv6AndNone) {
    FakeProc f;
    f.write("route", std::string(kRouteHeader) +
                         "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n");
    auto r = check_default_route(f.env);
    EXPECT_EQ(r.status, Status::kPass);
    EXPECT_EQ(r.message, "Default route: IPv4 via eth0");

    // Only a local route; the IPv6 ::/0 on lo is the reject route, not a default.
    f.write("route", std::string(kRouteHeader) +
                         "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
    f.write("ipv6_route",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n");
    r = check_default_route(f.env);
    EXPECT_EQ(r.status, Status::kFail);

    f.write("ipv6_route",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            "fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth1\n");
    r = check_default_route(f.env);
    EXPECT_EQ(r.status, Status::kPass);
    EXPECT_EQ(r.message, "Default route: IPv6 via eth1");

    FakeProc empty;
    fs::remove_all(empty.env.proc_root / "net");
    EXPECT_EQ(check_default_route(empty.env).ran, Ran::kError);
}

TEST(NetworkChecks, DnsAndTcpTargets) {
    auto d = check_dns({"localhost", "no-such-host.invalid"}, 2s);
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0].status, Status::kPass) << d[0].message;
    EXPECT_EQ(d[1].status, Status::kFail);
    EXPECT_EQ(d[1].check, "DNS no-such-host.invalid");

    mlk::testing::SilentServer open;
    const std::string up = "127.0.0.1:" + std::to_string(open.port());
    const std::string down = "127.0.0.1:" + std::to_string(mlk::testing::free_port());
    auto t = check_tcp_targets({up, down, "nonsense"}, 1s);
    ASSERT_EQ(t.size(), 3u);
    EXPECT_EQ(t[0].status, Status::kPass) << t[0].message;
    EXPECT_EQ(t[1].status, Status::kFail);
    EXPECT_EQ(t[2].ran, Ran::kError);
}

}  // namespace
}  // namespace mlk::health
