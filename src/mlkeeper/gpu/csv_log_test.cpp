#include "mlkeeper/gpu/csv_log.hpp"

#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <system_error>
#include <thread>

#include <gtest/gtest.h>

namespace mlk::gpu {
namespace {

namespace fs = std::filesystem;

class CsvLog : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = ::testing::TempDir() + "gpu_csv_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::vector<std::string> lines(const fs::path& p) {
        std::ifstream in(p);
        std::vector<std::string> out;
        for (std::string l; std::getline(in, l);) {
            out.push_back(l);
        }
        return out;
    }
    fs::path dir_;
};

Snapshot two_gpus() {
    Snapshot s;
    s.time = std::chrono::system_clock::now();
    GpuSample a;
    a.index = 0;
    a.name = "Tesla V100";
    a.temperature_c = 72;
    a.util_gpu_pct = 85;
    a.util_mem_pct = 90;
    a.mem_used_bytes = 15000ULL << 20;
    a.mem_total_bytes = 16384ULL << 20;
    a.power_draw_w = 250;
    a.power_limit_w = 300;
    GpuSample b;
    b.index = 1;
    b.name = "odd, \"name\"";
    s.gpus = {a, b};
    return s;
}

const std::regex kRow(R"(^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+,.*$)");

TEST_F(CsvLog, RowsInTheSeedsFormat) {
    std::string rows = csv_rows(two_gpus());
    std::istringstream in(rows);
    std::string a, b, extra;
    ASSERT_TRUE(std::getline(in, a));
    ASSERT_TRUE(std::getline(in, b));
    EXPECT_FALSE(std::getline(in, extra));
    EXPECT_TRUE(std::regex_match(a, kRow)) << a;
    // The seeds' example: 2025-01-31 14:30:00,0,Tesla V100,72,85,90,15000,16384,250,300
    EXPECT_TRUE(a.ends_with(",0,Tesla V100,72,85,90,15000,16384,250.00,300.00")) << a;
    EXPECT_EQ(a.size(),
              19 + std::string(",0,Tesla V100,72,85,90,15000,16384,250.00,300.00").size());
    // n/a fields are empty, a name with a comma or quote is quoted (RFC 4180).
    EXPECT_TRUE(b.ends_with(",1,\"odd, \"\"name\"\"\",,,,,,,")) << b;
}

TEST_F(CsvLog, HeaderOnceThenAppends) {
    fs::path p = dir_ / "gpu-metrics.csv";
    append_csv(p, two_gpus());
    append_csv(p, two_gpus());
    auto l = lines(p);
    ASSERT_EQ(l.size(), 5u);
    EXPECT_EQ(l[0], kCsvHeader);
    EXPECT_EQ(l[0],
              "timestamp,gpu_id,name,temp,util_gpu,util_mem,mem_used,mem_total,power_draw,"
              "power_limit");
    for (size_t i = 1; i < l.size(); ++i) {
        EXPECT_TRUE(std::regex_match(l[i], kRow)) << l[i];
    }
    EXPECT_EQ((fs::status(p).permissions() & fs::perms::all),
              fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                  fs::perms::others_read);
}

TEST_F(CsvLog, ExistingFileGetsNoHeader) {
    fs::path p = dir_ / "old.csv";
    std::ofstream(p) << "2025-01-31 14:30:00,0,Tesla V100,72,85,90,15000,16384,250,300\n";
    append_csv(p, two_gpus());
    auto l = lines(p);
    ASSERT_EQ(l.size(), 3u);
    EXPECT_NE(l[1], kCsvHeader);
}

TEST_F(CsvLog, EmptySnapshotWritesNothing) {
    fs::path p = dir_ / "none.csv";
    append_csv(p, Snapshot{});
    EXPECT_FALSE(fs::exists(p));
}

TEST_F(CsvLog, MissingDirectoryNamesThePath) {
    fs::path p = dir_ / "no" / "such" / "gpu.csv";
    try {
        append_csv(p, two_gpus());
        FAIL() << "wrote into a missing directory";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOENT);
        EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos);
    }
}

TEST_F(CsvLog, GivesUpWhenTheLockIsHeld) {
    fs::path p = dir_ / "locked.csv";
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX), 0);
    auto start = std::chrono::steady_clock::now();
    try {
        append_csv(p, two_gpus(), std::chrono::milliseconds(100));
        FAIL() << "ignored the lock";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ETIMEDOUT);
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    ::close(fd);
    EXPECT_EQ(fs::file_size(p), 0u);
}

// Two processes append at once to a new file: one header, no torn or interleaved rows.
TEST_F(CsvLog, ConcurrentWritersWriteTheHeaderOnce) {
    constexpr int kRounds = 200;
    for (int attempt = 0; attempt < 5; ++attempt) {
        fs::path p = dir_ / ("race" + std::to_string(attempt) + ".csv");
        std::vector<pid_t> kids;
        int go[2];
        ASSERT_EQ(::pipe(go), 0);
        for (int k = 0; k < 2; ++k) {
            pid_t pid = ::fork();
            ASSERT_GE(pid, 0);
            if (pid == 0) {
                ::close(go[1]);
                char c;
                (void)!::read(go[0], &c, 1);  // start together
                int rc = 0;
                try {
                    for (int i = 0; i < kRounds; ++i) {
                        append_csv(p, two_gpus());
                    }
                } catch (...) {
                    rc = 1;
                }
                ::_exit(rc);
            }
            kids.push_back(pid);
        }
        ::close(go[0]);
        ::close(go[1]);  // EOF releases both children at once
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        for (pid_t kid : kids) {
            int status = 0;
            pid_t r = 0;
            while ((r = ::waitpid(kid, &status, WNOHANG)) == 0 &&
                   std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            if (r == 0) {
                ::kill(kid, SIGKILL);
                ::waitpid(kid, &status, 0);
                FAIL() << "writer " << kid << " hung";
            }
            ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        auto l = lines(p);
        ASSERT_EQ(l.size(), 1u + 2 * kRounds * 2);
        EXPECT_EQ(l[0], kCsvHeader);
        size_t headers = 0;
        for (size_t i = 0; i < l.size(); ++i) {
            if (l[i] == kCsvHeader) {
                ++headers;
            } else {
                EXPECT_TRUE(std::regex_match(l[i], kRow)) << i << ": " << l[i];
            }
        }
        EXPECT_EQ(headers, 1u);
    }
}

}  // namespace
}  // namespace mlk::gpu
