#include "mlkeeper/alert/syslog_channel.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mlk::alert {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using mlk::testing::TempDir;

// A bound unix socket standing in for /dev/log.
class Receiver {
  public:
    Receiver(const fs::path& path, int type = SOCK_DGRAM) : path_(path) {
        fd_ = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            throw std::runtime_error("socket failed");
        }
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            throw std::runtime_error("bind failed: " + std::string(std::strerror(errno)));
        }
        if (type == SOCK_STREAM && ::listen(fd_, 4) != 0) {
            throw std::runtime_error("listen failed");
        }
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;
    ~Receiver() { close(); }

    void close() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

    // One datagram, or nullopt after `limit`.
    std::optional<std::string> recv(std::chrono::milliseconds limit = 2000ms) {
        pollfd p{fd_, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(limit.count()));
        if (r <= 0) {
            return std::nullopt;
        }
        std::array<char, 65536> buf{};
        ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
        if (n < 0) {
            return std::nullopt;
        }
        return std::string(buf.data(), static_cast<std::size_t>(n));
    }

  private:
    fs::path path_;
    int fd_ = -1;
};

Alert sample_alert() {
    Alert a;
    a.key = "gpu0_temp";
    a.severity = Severity::kCritical;
    a.summary = "GPU 0 temperature 87°C exceeds 85°C";
    a.check = "gpu";
    a.value = "87°C";
    a.threshold = "85°C";
    a.host = "gpu-box";
    return a;
}

int pri_of(const std::string& datagram) {
    EXPECT_EQ(datagram.front(), '<');
    std::size_t end = datagram.find('>');
    EXPECT_NE(end, std::string::npos);
    return std::stoi(datagram.substr(1, end - 1));
}

TEST(SyslogFacility, ParsesKnownNamesCaseInsensitively) {
    EXPECT_EQ(parse_syslog_facility("user"), SyslogFacility::kUser);
    EXPECT_EQ(parse_syslog_facility("DAEMON"), SyslogFacility::kDaemon);
    EXPECT_EQ(parse_syslog_facility("local0"), SyslogFacility::kLocal0);
    EXPECT_EQ(parse_syslog_facility("Local7"), SyslogFacility::kLocal7);
    EXPECT_EQ(parse_syslog_facility("local8"), std::nullopt);
    EXPECT_EQ(parse_syslog_facility("kern"), std::nullopt);
    EXPECT_EQ(parse_syslog_facility(""), std::nullopt);
    EXPECT_EQ(parse_syslog_facility(" user"), std::nullopt);
    EXPECT_EQ(parse_syslog_facility("local"), std::nullopt);
}

TEST(SyslogFacility, CodesAndNamesRoundTrip) {
    EXPECT_EQ(syslog_facility_code(SyslogFacility::kUser), 1);
    EXPECT_EQ(syslog_facility_code(SyslogFacility::kDaemon), 3);
    EXPECT_EQ(syslog_facility_code(SyslogFacility::kLocal0), 16);
    EXPECT_EQ(syslog_facility_code(SyslogFacility::kLocal7), 23);
    for (const char* name : {"user", "daemon", "local0", "local3", "local7"}) {
        auto f = parse_syslog_facility(name);
        ASSERT_TRUE(f.has_value()) << name;
        EXPECT_EQ(to_string(*f), name);
    }
}

TEST(SyslogSeverity, MapsSeveritiesAndResolved) {
    Alert a = sample_alert();
    a.severity = Severity::kInfo;
    EXPECT_EQ(syslog_severity(a), LOG_INFO);
    a.severity = Severity::kWarning;
    EXPECT_EQ(syslog_severity(a), LOG_WARNING);
    a.severity = Severity::kCritical;
    EXPECT_EQ(syslog_severity(a), LOG_CRIT);
    a.severity = Severity::kEmergency;
    EXPECT_EQ(syslog_severity(a), LOG_EMERG);
    a.state = AlertState::kResolved;
    EXPECT_EQ(syslog_severity(a), LOG_NOTICE);
}

TEST(AlertLogLine, IncludesValueAndThresholdOnlyWhenSet) {
    Alert a = sample_alert();
    EXPECT_EQ(alert_log_line(a),
              "[CRITICAL] gpu0_temp: GPU 0 temperature 87°C exceeds 85°C (value=87°C, "
              "threshold=85°C)");
    a.value.clear();
    EXPECT_EQ(alert_log_line(a),
              "[CRITICAL] gpu0_temp: GPU 0 temperature 87°C exceeds 85°C (threshold=85°C)");
    a.threshold.clear();
    a.value = "87°C";
    EXPECT_EQ(alert_log_line(a),
              "[CRITICAL] gpu0_temp: GPU 0 temperature 87°C exceeds 85°C (value=87°C)");
    a.value.clear();
    a.severity = Severity::kInfo;
    EXPECT_EQ(alert_log_line(a), "[INFO] gpu0_temp: GPU 0 temperature 87°C exceeds 85°C");
    a.state = AlertState::kResolved;
    a.summary = "GPU 0 temperature back to 70°C";
    EXPECT_EQ(alert_log_line(a), "[RESOLVED] gpu0_temp: GPU 0 temperature back to 70°C");
}

TEST(AlertLogLine, FlattensControlCharacters) {
    Alert a = sample_alert();
    a.summary = "line one\nline two\r\tend";
    a.value = "1\n2";
    a.threshold.clear();
    EXPECT_EQ(alert_log_line(a), "[CRITICAL] gpu0_temp: line one line two  end (value=1 2)");
}

TEST(SyslogDatagram, LocalHeaderHasNoHostname) {
    SyslogOptions opts;
    opts.facility = SyslogFacility::kLocal0;
    Alert a = sample_alert();
    std::string d = syslog_datagram(a, opts, "gpu-box", 4242);
    EXPECT_EQ(pri_of(d), 16 * 8 + LOG_CRIT);
    std::regex header(
        R"(^<130>(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3][0-9] )"
        R"([0-2][0-9]:[0-5][0-9]:[0-6][0-9] mlkeeper\[4242\]: \[CRITICAL\] gpu0_temp: GPU 0 )");
    EXPECT_TRUE(std::regex_search(d, header)) << d;
    EXPECT_EQ(d.find("gpu-box"), std::string::npos) << d;
}

TEST(SyslogDatagram, NetworkHeaderCarriesSanitizedHostname) {
    SyslogOptions opts;
    opts.header = SyslogHeader::kWithHostname;
    opts.tag = "gpu-monitor";
    Alert a = sample_alert();
    a.severity = Severity::kWarning;
    std::string d = syslog_datagram(a, opts, "my host", 7);
    EXPECT_EQ(pri_of(d), 1 * 8 + LOG_WARNING);
    EXPECT_NE(d.find(" my_host gpu-monitor[7]: [WARNING] gpu0_temp: "), std::string::npos) << d;
    std::regex header(R"(^<12>[A-Z][a-z]{2} [ 1-3][0-9] [0-9:]{8} my_host gpu-monitor\[7\]: )");
    EXPECT_TRUE(std::regex_search(d, header)) << d;
}

TEST(SyslogDatagram, DayIsSpacePaddedAndTimeIsLocal) {
    std::tm local{};
    local.tm_year = 2026 - 1900;
    local.tm_mon = 2;  // March
    local.tm_mday = 5;
    local.tm_hour = 13;
    local.tm_min = 4;
    local.tm_sec = 9;
    local.tm_isdst = -1;
    Alert a = sample_alert();
    a.time = std::chrono::system_clock::from_time_t(std::mktime(&local));
    std::string d = syslog_datagram(a, SyslogOptions{}, "", 1);
    EXPECT_EQ(d.substr(d.find('>') + 1, 16), "Mar  5 13:04:09 ") << d;
    local.tm_mon = 11;  // December
    local.tm_mday = 25;
    local.tm_isdst = -1;
    a.time = std::chrono::system_clock::from_time_t(std::mktime(&local));
    d = syslog_datagram(a, SyslogOptions{}, "", 1);
    EXPECT_EQ(d.substr(d.find('>') + 1, 16), "Dec 25 13:04:09 ") << d;
}

TEST(SyslogDatagram, LongSummaryIsCutAtCharacterBoundary) {
    Alert a = sample_alert();
    a.summary.clear();
    for (int i = 0; i < 10000; ++i) {
        a.summary += "é";  // two bytes each
    }
    std::string d = syslog_datagram(a, SyslogOptions{}, "", 1);
    EXPECT_LE(d.size(), kMaxSyslogDatagram);
    EXPECT_GE(d.size(), kMaxSyslogDatagram - 1);
    // The last byte must complete a character: "é" is C3 A9.
    EXPECT_EQ(static_cast<unsigned char>(d.back()), 0xA9);
}

TEST(SyslogChannel, RejectsBadOptions) {
    auto make = [](auto edit) {
        SyslogOptions o;
        edit(o);
        return SyslogChannel(o);
    };
    EXPECT_THROW(make([](SyslogOptions& o) { o.tag = ""; }), std::invalid_argument);
    EXPECT_THROW(make([](SyslogOptions& o) { o.tag = "ml keeper"; }), std::invalid_argument);
    EXPECT_THROW(make([](SyslogOptions& o) { o.tag = "ml:keeper"; }), std::invalid_argument);
    EXPECT_THROW(make([](SyslogOptions& o) { o.tag = "ml[1]"; }), std::invalid_argument);
    EXPECT_THROW(make([](SyslogOptions& o) { o.tag = std::string(33, 'a'); }),
                 std::invalid_argument);
    EXPECT_THROW(make([](SyslogOptions& o) { o.socket_path = ""; }), std::invalid_argument);
    EXPECT_THROW(make([](SyslogOptions& o) { o.socket_path = "/tmp/" + std::string(120, 'x'); }),
                 std::invalid_argument);
    EXPECT_THROW(make([](SyslogOptions& o) { o.send_timeout = 0ms; }), std::invalid_argument);
    EXPECT_NO_THROW(make([](SyslogOptions& o) { o.tag = std::string(32, 'a'); }));
    SyslogChannel ch{SyslogOptions{}};
    EXPECT_EQ(ch.name(), "syslog");
    EXPECT_EQ(ch.options().socket_path, "/dev/log");
    EXPECT_EQ(ch.options().tag, "mlkeeper");
}

TEST(SyslogChannel, SendsOneDatagramWithPriorityAndText) {
    TempDir dir;
    Receiver rx(dir.path() / "log");
    SyslogOptions opts;
    opts.socket_path = dir.path() / "log";
    opts.facility = SyslogFacility::kDaemon;
    opts.tag = "mlk-test";
    SyslogChannel ch(opts);

    Alert a = sample_alert();
    a.severity = Severity::kEmergency;
    ch.send(a);
    auto got = rx.recv();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(pri_of(*got), 3 * 8 + LOG_EMERG);
    const std::string tail = "mlk-test[" + std::to_string(::getpid()) +
                             "]: [EMERGENCY] gpu0_temp: GPU 0 temperature 87°C exceeds 85°C "
                             "(value=87°C, threshold=85°C)";
    EXPECT_TRUE(got->ends_with(tail)) << *got;
    EXPECT_EQ(rx.recv(100ms), std::nullopt);  // exactly one datagram

    a.state = AlertState::kResolved;
    a.summary = "GPU 0 temperature back to 70°C";
    a.value = "70°C";
    ch.send(a);
    got = rx.recv();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(pri_of(*got), 3 * 8 + LOG_NOTICE);
    EXPECT_NE(got->find("[RESOLVED] gpu0_temp: GPU 0 temperature back to 70°C"), std::string::npos)
        << *got;
}

TEST(SyslogChannel, MissingSocketIsTransientErrorNamingPath) {
    TempDir dir;
    SyslogOptions opts;
    opts.socket_path = dir.path() / "nothing-here";
    SyslogChannel ch(opts);
    try {
        ch.send(sample_alert());
        FAIL() << "send to a missing socket succeeded";
    } catch (const ChannelError& e) {
        EXPECT_EQ(e.kind(), ChannelError::Kind::kTransient);
        std::string msg = e.what();
        EXPECT_NE(msg.find(opts.socket_path.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    }
}

TEST(SyslogChannel, StaleSocketIsRefused) {
    TempDir dir;
    const fs::path path = dir.path() / "log";
    {
        Receiver rx(path);  // the file stays after close: a daemon that died
    }
    SyslogOptions opts;
    opts.socket_path = path;
    SyslogChannel ch(opts);
    try {
        ch.send(sample_alert());
        FAIL() << "send to a dead socket succeeded";
    } catch (const ChannelError& e) {
        EXPECT_EQ(e.kind(), ChannelError::Kind::kTransient);
        std::string msg = e.what();
        EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find("Connection refused"), std::string::npos) << msg;
    }
}

TEST(SyslogChannel, StreamSocketIsPermanentError) {
    TempDir dir;
    Receiver rx(dir.path() / "log", SOCK_STREAM);
    SyslogOptions opts;
    opts.socket_path = dir.path() / "log";
    SyslogChannel ch(opts);
    try {
        ch.send(sample_alert());
        FAIL() << "send to a stream socket succeeded";
    } catch (const ChannelError& e) {
        EXPECT_EQ(e.kind(), ChannelError::Kind::kPermanent) << e.what();
    }
}

TEST(SyslogChannel, FullQueueTimesOutInsteadOfBlocking) {
    TempDir dir;
    Receiver rx(dir.path() / "log");  // never read
    SyslogOptions opts;
    opts.socket_path = dir.path() / "log";
    opts.send_timeout = 100ms;
    SyslogChannel ch(opts);
    Alert a = sample_alert();
    a.summary = std::string(4000, 'x');
    const auto start = std::chrono::steady_clock::now();
    std::optional<ChannelError> error;
    for (int i = 0; i < 5000 && !error; ++i) {
        try {
            ch.send(a);
        } catch (const ChannelError& e) {
            error = e;
        }
    }
    ASSERT_TRUE(error.has_value()) << "5000 datagrams fit into an unread socket";
    EXPECT_EQ(error->kind(), ChannelError::Kind::kTransient);
    EXPECT_NE(std::string(error->what()).find("stayed full"), std::string::npos) << error->what();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(SyslogChannel, ConcurrentSendsWithDifferentTagsAllArrive) {
    TempDir dir;
    Receiver rx(dir.path() / "log");
    constexpr int kThreads = 4;
    constexpr int kEach = 25;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            SyslogOptions opts;
            opts.socket_path = dir.path() / "log";
            opts.tag = "tag" + std::to_string(t);
            SyslogChannel ch(opts);
            for (int i = 0; i < kEach; ++i) {
                try {
                    ch.send(sample_alert());
                } catch (const ChannelError&) {
                    ++failures;
                }
            }
        });
    }
    std::array<int, kThreads> counts{};
    std::vector<std::string> bad;
    for (int i = 0; i < kThreads * kEach; ++i) {
        auto got = rx.recv();
        if (!got) {
            break;
        }
        std::size_t at = got->find(" tag");
        int t = at == std::string::npos ? -1 : (*got)[at + 4] - '0';
        if (t >= 0 && t < kThreads) {
            ++counts[static_cast<std::size_t>(t)];
        } else {
            bad.push_back(*got);
        }
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(failures.load(), 0);
    EXPECT_TRUE(bad.empty()) << bad.front();
    for (int c : counts) {
        EXPECT_EQ(c, kEach);
    }
}

}  // namespace
}  // namespace mlk::alert
