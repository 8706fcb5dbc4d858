#include "mlkeeper/health/journal_errors.hpp"

#include <unistd.h>

#include <ctime>
#include <fstream>

#include <gtest/gtest.h>

namespace mlk::health {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;
using namespace std::chrono_literals;

std::string rfc3339(Clock::time_point tp) {
    std::time_t t = Clock::to_time_t(tp);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.123456+00:00", &tm);
    return buf;
}

std::string bsd(Clock::time_point tp) {
    std::time_t t = Clock::to_time_t(tp);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%b %e %H:%M:%S", &tm);
    return buf;
}

struct TempFile {
    TempFile() {
        std::string tmpl = (fs::temp_directory_path() / "mlk-syslog-XXXXXX").string();
        int fd = ::mkstemp(tmpl.data());
        if (fd < 0)
            throw std::runtime_error("mkstemp");
        ::close(fd);
        path = tmpl;
    }
    ~TempFile() { fs::remove(path); }
    fs::path path;
};

TEST(SyslogTime, ParsesRfc3339WithOffsetsAndBsd) {
    const auto now = Clock::now();
    auto t = syslog_line_time("2025-01-31T14:30:00.123+01:00 host kernel: x", now);
    ASSERT_TRUE(t);
    EXPECT_EQ(Clock::to_time_t(*t), 1738330200);  // 13:30:00Z
    t = syslog_line_time("2025-01-31T13:30:00Z host x", now);
    ASSERT_TRUE(t);
    EXPECT_EQ(Clock::to_time_t(*t), 1738330200);
    EXPECT_FALSE(syslog_line_time("2025-01-31T13:30:00 no zone", now));
    EXPECT_FALSE(syslog_line_time("\tcontinuation line", now));
    EXPECT_FALSE(syslog_line_time("", now));
    auto b = syslog_line_time(bsd(now - 10min) + " host sshd[1]: error", now);
    ASSERT_TRUE(b);
    EXPECT_NEAR(std::chrono::duration<double>(now - *b).count(), 600, 2);
}

TEST(SyslogTime, ErrorWords) {
    EXPECT_TRUE(syslog_line_is_error("kernel: EXT4-fs error (device sda1)"));
    EXPECT_TRUE(syslog_line_is_error("systemd[1]: docker.service: Failed with result"));
    EXPECT_TRUE(syslog_line_is_error("kernel: Out of memory: Killed process 123"));
    EXPECT_TRUE(syslog_line_is_error("<3>something"));
    EXPECT_FALSE(syslog_line_is_error("<6>something"));
    EXPECT_FALSE(syslog_line_is_error("CRON[1]: (root) CMD (run-parts)"));
}

TEST(SyslogErrors, CountsOnlyErrorsInsideTheWindow) {
    TempFile f;
    const auto now = Clock::now();
    {
        std::ofstream out(f.path);
        out << rfc3339(now - 3h) << " host kernel: old error\n";
        out << rfc3339(now - 30min) << " host kernel: I/O error, dev sda\n";
        out << rfc3339(now - 20min) << " host CRON[1]: fine\n";
        out << bsd(now - 10min) << " host app: fatal: cannot load model\n";
        out << "    continuation with error but no time\n";
        out << rfc3339(now - 1min) << " host systemd[1]: x.service failed\n";
        out << rfc3339(now - 1min);  // no newline at the end, no error word
    }
    ErrorsOptions o;
    o.count = {2, 5};
    auto r = check_syslog_errors(f.path, o, now);
    EXPECT_DOUBLE_EQ(*r.value, 3);
    EXPECT_EQ(r.status, Status::kWarn);
    EXPECT_NE(r.message.find("3 in the last 1h in " + f.path.string()), std::string::npos)
        << r.message;
    o.count = {5, 10};
    EXPECT_EQ(check_syslog_errors(f.path, o, now).status, Status::kPass);
    o.count = {0, 2};
    EXPECT_EQ(check_syslog_errors(f.path, o, now).status, Status::kFail);
    o.window = 4h;  // the old one counts too
    EXPECT_DOUBLE_EQ(*check_syslog_errors(f.path, o, now).value, 4);
}

TEST(SyslogErrors, ReadsOnlyTheTail) {
    TempFile f;
    const auto now = Clock::now();
    {
        std::ofstream out(f.path);
        for (int i = 0; i < 100; ++i)
            out << rfc3339(now - 1min) << " host a: error " << i << "\n";
    }
    ErrorsOptions o;
    o.syslog_tail_bytes = 1000;  // about 15 lines, the first partial one dropped
    auto r = check_syslog_errors(f.path, o, now);
    EXPECT_LE(*r.value, 20);
    EXPECT_GT(*r.value, 5);
}

TEST(SyslogErrors, MissingFileIsAnError) {
    auto r = check_syslog_errors("/nonexistent/syslog", {}, Clock::now());
    EXPECT_EQ(r.ran, Ran::kError);
    EXPECT_NE(r.message.find("/nonexistent/syslog"), std::string::npos);
}

TEST(RecentErrors, ConfiguredFileWinsAndNoJournalHere) {
    TempFile f;
    {
        std::ofstream out(f.path);
        out << rfc3339(Clock::now() - 1min) << " host kernel: segfault at 0\n";
    }
    ErrorsOptions o;
    o.syslog_file = f.path;
    auto r = check_recent_errors(HealthEnv{}, o);
    EXPECT_EQ(r.ran, Ran::kYes);
    EXPECT_DOUBLE_EQ(*r.value, 1);
    HealthEnv env;
    env.run_root = "/nonexistent-run";
    if (!has_journal(env)) {
        // Without a journal and no file configured: the syslog file or skipped.
        auto auto_r = check_recent_errors(env, {});
        EXPECT_NE(auto_r.ran, Ran::kError) << auto_r.message;
    }
}

TEST(RecentErrors, JournalNeedsJournalFilesNotJustADirectory) {
    TempFile marker;  // a unique name for the fake run root
    const fs::path run = marker.path.string() + ".run";
    HealthEnv env;
    env.run_root = run;
    fs::create_directories(run / "log/journal/0123abcd");
    HealthEnv none;
    none.run_root = "/nonexistent";
    const bool real_journal = has_journal(none);
    EXPECT_EQ(has_journal(env), real_journal);  // an empty directory is no journal
    std::ofstream(run / "log/journal/0123abcd/system.journal") << "x";
    EXPECT_TRUE(has_journal(env));
    fs::remove_all(run);
}

}  // namespace
}  // namespace mlk::health
