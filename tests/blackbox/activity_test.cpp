// The access-log tailer against the real logrotate (`create` with a postrotate reopen, and
// `copytruncate`) while a writer thread appends lines continuously, and across a restart of the
// tailer and the counters in the middle. Each line carries its sequence number (as
// request_length), so the test checks that every line was counted exactly once.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/homelab/access_log_tailer.hpp"
#include "mlkeeper/homelab/activity.hpp"
#include "mlkeeper/util/process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace mlk::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using homelab::AccessLogTailer;
using homelab::ActivityTracker;

constexpr const char* kLogrotate = "/usr/sbin/logrotate";

// Writes one JSON access-log line after another, like nginx: one write() per line to an
// O_APPEND descriptor, reopened when the postrotate script leaves a "reopen" file.
class Writer {
  public:
    explicit Writer(fs::path dir) : dir_(std::move(dir)) {
        thread_ = std::thread([this] { run(); });
    }
    ~Writer() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    std::uint64_t written() const { return written_.load(); }

  private:
    void run() {
        const auto log = dir_ / "access.log";
        const auto flag = dir_ / "reopen";
        int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        while (!stop_) {
            if (::access(flag.c_str(), F_OK) == 0) {
                ::unlink(flag.c_str());
                ::close(fd);
                fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            }
            const auto n = written_.load();
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
            const std::string model = n % 3 == 0 ? "qwen" : "llama";
            char msec[32];
            std::snprintf(msec, sizeof msec, "%lld.%03lld", static_cast<long long>(ms / 1000),
                          static_cast<long long>(ms % 1000));
            const std::string line =
                R"({"msec":")" + std::string(msec) + R"(","request_length":")" + std::to_string(n) +
                R"(","model":")" + model +
                R"(","status":"200","bytes_sent":"512","request_time":"0.003","uri":"/models/)" +
                model + "/v1/completions\"}\n";
            if (fd < 0 ||
                ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
                ADD_FAILURE() << "write failed";
                break;
            }
            written_.fetch_add(1);
            std::this_thread::sleep_for(200us);
        }
        if (fd >= 0) {
            ::close(fd);
        }
    }

    fs::path dir_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> written_{0};
    std::thread thread_;
};

// Passes events to the tracker and remembers each line's sequence number.
class SeqSink : public homelab::RequestSink {
  public:
    explicit SeqSink(ActivityTracker* t) : tracker_(t) {}
    void set_tracker(ActivityTracker* t) {
        std::lock_guard lk(mu_);
        tracker_ = t;
    }
    void request_started(std::string_view) override {}
    void request_finished(const homelab::RequestEvent&) override {}
    void request_seen(const homelab::RequestEvent& e) override {
        std::lock_guard lk(mu_);
        if (!seen_.insert(e.bytes_in).second) {
            ++duplicates_;
        }
        tracker_->request_seen(e);
    }
    std::set<std::uint64_t> seen() const {
        std::lock_guard lk(mu_);
        return seen_;
    }
    std::uint64_t duplicates() const {
        std::lock_guard lk(mu_);
        return duplicates_;
    }

  private:
    mutable std::mutex mu_;
    ActivityTracker* tracker_;
    std::set<std::uint64_t> seen_;
    std::uint64_t duplicates_ = 0;
};

std::uint64_t total(const ActivityTracker& t) {
    std::uint64_t n = 0;
    for (const auto& m : t.all()) {
        n += m.requests;
    }
    return n;
}

// Sequence numbers of every line in access.log*.
std::set<std::uint64_t> lines_in_files(const fs::path& dir) {
    std::set<std::uint64_t> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().filename().string().rfind("access.log", 0) != 0) {
            continue;
        }
        std::ifstream in(e.path());
        std::string line;
        while (std::getline(in, line)) {
            const auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_object() && j.contains("request_length")) {
                out.insert(std::stoull(j["request_length"].get<std::string>()));
            }
        }
    }
    return out;
}

class ActivityLogrotateTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::access(kLogrotate, X_OK) != 0) {
            GTEST_SKIP() << kLogrotate << " is not installed";
        }
        store_ = std::make_unique<core::StateStore>(dir_ / "state.db");
        logs_ = dir_.path() / "logs";
        fs::create_directory(logs_);
        fs::permissions(logs_, fs::perms::owner_all);  // logrotate refuses insecure parents
    }

    void write_config(const std::string& mode) {
        std::ofstream conf(dir_ / "logrotate.conf");
        conf << (logs_ / "access.log").string() << " {\n"
             << "    rotate 20\n    missingok\n    nocompress\n    " << mode << "\n";
        if (mode == "create") {
            conf << "    postrotate\n        touch " << (logs_ / "reopen").string()
                 << "\n    endscript\n";
        }
        conf << "}\n";
    }

    void rotate() {
        util::RunOptions opts;
        opts.timeout = 20s;
        const auto r = util::run_process({kLogrotate, "-f", "-s", (dir_ / "lr.state").string(),
                                          (dir_ / "logrotate.conf").string()},
                                         opts);
        ASSERT_TRUE(r.ok()) << r.out << r.err << r.error;
    }

    homelab::TailerSettings settings() const {
        homelab::TailerSettings s;
        s.path = logs_ / "access.log";
        s.poll_interval = 10ms;
        s.persist_interval = 50ms;
        s.rotate_grace = 2s;
        return s;
    }

    std::unique_ptr<AccessLogTailer> make_tailer(SeqSink& sink, ActivityTracker& tracker) {
        auto t = std::make_unique<AccessLogTailer>(
            settings(), sink,
            homelab::TailerPersistence{store_.get(), [this, &tracker] { tracker.save(*store_); }});
        t->start();
        return t;
    }

    TempDir dir_;
    fs::path logs_;
    std::unique_ptr<core::StateStore> store_;
    const std::vector<std::string> names_{"llama", "qwen"};
};

TEST_F(ActivityLogrotateTest, CreateRotationWithARestartCountsEveryLineOnce) {
    write_config("create");
    auto tracker = std::make_unique<ActivityTracker>(names_);
    SeqSink sink(tracker.get());
    auto tailer = make_tailer(sink, *tracker);
    Writer writer(logs_);
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(150ms);
        rotate();
        if (i == 2) {
            // An agent restart: everything torn down and built again on the same state store.
            tailer.reset();
            auto fresh = std::make_unique<ActivityTracker>(names_);
            ASSERT_TRUE(fresh->load(*store_));
            sink.set_tracker(fresh.get());
            tracker = std::move(fresh);
            tailer = make_tailer(sink, *tracker);
        }
    }
    std::this_thread::sleep_for(150ms);
    writer.stop();
    const auto written = writer.written();
    ASSERT_GT(written, 100U);
    EXPECT_TRUE(wait_until([&] { return total(*tracker) >= written; }, 15s))
        << total(*tracker) << " of " << written;
    std::this_thread::sleep_for(100ms);  // nothing counted twice later either
    const auto st = tailer->stats();
    EXPECT_EQ(total(*tracker), written);
    EXPECT_EQ(sink.duplicates(), 0U);
    EXPECT_EQ(sink.seen().size(), written);
    EXPECT_EQ(st.malformed, 0U);
    EXPECT_GE(st.rotations, 2U);  // those after the restart
    std::printf("[ info ] create: %llu lines, %llu rotations seen after the restart\n",
                static_cast<unsigned long long>(written),
                static_cast<unsigned long long>(st.rotations));
    tailer.reset();
}

TEST_F(ActivityLogrotateTest, CopyTruncateCountsEveryLineInTheFilesOnce) {
    write_config("copytruncate");
    auto tracker = std::make_unique<ActivityTracker>(names_);
    SeqSink sink(tracker.get());
    auto tailer = make_tailer(sink, *tracker);
    Writer writer(logs_);
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(150ms);
        rotate();
        if (i == 2) {
            tailer.reset();
            auto fresh = std::make_unique<ActivityTracker>(names_);
            ASSERT_TRUE(fresh->load(*store_));
            sink.set_tracker(fresh.get());
            tracker = std::move(fresh);
            tailer = make_tailer(sink, *tracker);
        }
    }
    std::this_thread::sleep_for(150ms);
    writer.stop();
    const auto written = writer.written();
    ASSERT_GT(written, 100U);
    // copytruncate itself loses the lines written between the end of its copy and the
    // truncation (they are in neither file); a line is counted if it is in the files, or if the
    // tailer read it before the truncation.
    const auto in_files = lines_in_files(logs_);
    EXPECT_TRUE(wait_until(
        [&] {
            const auto seen = sink.seen();
            return std::includes(seen.begin(), seen.end(), in_files.begin(), in_files.end());
        },
        15s));
    std::this_thread::sleep_for(100ms);
    const auto seen = sink.seen();
    EXPECT_EQ(sink.duplicates(), 0U);
    EXPECT_EQ(total(*tracker), seen.size());
    EXPECT_TRUE(std::includes(seen.begin(), seen.end(), in_files.begin(), in_files.end()))
        << "missed lines that are in the files";
    EXPECT_LE(*seen.rbegin(), written - 1);
    const auto st = tailer->stats();
    EXPECT_GE(st.truncations, 2U);
    std::printf(
        "[ info ] copytruncate: %llu written, %zu in the files, %zu counted, %llu read "
        "from the copy after a truncation\n",
        static_cast<unsigned long long>(written), in_files.size(), seen.size(),
        static_cast<unsigned long long>(st.recovered_from_copy));
    tailer.reset();
}

}  // namespace
}  // namespace mlk::testing
