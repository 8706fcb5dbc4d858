#include "mlkeeper/gpu/xid_watcher.hpp"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "support/fake_nvml.hpp"
#include "support/wait.hpp"

namespace mlk::gpu {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using mlk::testing::wait_until;
using testing::Scenario;

// Routes spdlog's default logger into a ring buffer while it lives.
class CapturedLog {
  public:
    CapturedLog()
        : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64)),
          old_(spdlog::default_logger()) {
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("xid_test", sink_));
    }
    ~CapturedLog() { spdlog::set_default_logger(old_); }
    CapturedLog(const CapturedLog&) = delete;
    CapturedLog& operator=(const CapturedLog&) = delete;

    int count(const std::string& needle) const {
        const auto lines = sink_->last_formatted();
        return static_cast<int>(std::count_if(lines.begin(), lines.end(), [&](const auto& l) {
            return l.find(needle) != std::string::npos;
        }));
    }

  private:
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
    std::shared_ptr<spdlog::logger> old_;
};

std::size_t thread_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
        ++n;
    }
    return n;
}

std::uint64_t total(const XidWatcher& w) {
    std::uint64_t n = 0;
    for (const auto& c : w.counts()) {
        n += c.count;
    }
    return n;
}

bool reaches(const XidWatcher& w, std::uint64_t n, std::chrono::milliseconds limit = 5000ms) {
    return wait_until([&] { return total(w) >= n; }, limit);
}

TEST(XidWatcher, CountsPerGpuWithTheLastXid) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc(
        "gpu 0 name=\"NVIDIA H100\" uuid=GPU-a xid=13,31,79\n"
        "gpu 1 uuid=GPU-b xid=48\n"
        "gpu 2\n");
    XidWatcher w(lib);
    ASSERT_TRUE(w.supported()) << w.unsupported_reason();
    EXPECT_EQ(w.unsupported_reason(), "");
    auto before = w.counts();
    ASSERT_EQ(before.size(), 3u);
    for (unsigned i = 0; i < 3; ++i) {
        EXPECT_EQ(before[i].gpu, i);
        EXPECT_EQ(before[i].count, 0u);
        EXPECT_EQ(before[i].last_xid, 0u);
        EXPECT_FALSE(before[i].last_at);
    }
    EXPECT_EQ(before[0].uuid, "GPU-a");
    EXPECT_EQ(before[0].name, "NVIDIA H100");
    EXPECT_EQ(before[2].uuid, "GPU-fake-2");

    const auto t0 = std::chrono::system_clock::now();
    w.start();
    ASSERT_TRUE(reaches(w, 4)) << "XIDs counted: " << total(w);
    std::this_thread::sleep_for(100ms);  // nothing more may come
    const auto t1 = std::chrono::system_clock::now();
    auto c = w.counts();
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c[0].count, 3u);
    EXPECT_EQ(c[0].last_xid, 79u);
    EXPECT_EQ(c[1].count, 1u);
    EXPECT_EQ(c[1].last_xid, 48u);
    EXPECT_EQ(c[1].uuid, "GPU-b");
    EXPECT_EQ(c[2].count, 0u);
    EXPECT_EQ(c[2].last_xid, 0u);
    EXPECT_FALSE(c[2].last_at);
    ASSERT_TRUE(c[0].last_at);
    EXPECT_GE(*c[0].last_at, t0);
    EXPECT_LE(*c[0].last_at, t1);
    w.stop();
    EXPECT_EQ(total(w), 4u) << "counts survive stop()";
}

TEST(XidWatcher, CallsOnXidOncePerEventOnItsOwnThread) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=13,31,79\ngpu 1 xid=48\n");
    std::mutex mu;
    std::vector<XidCount> calls;
    std::vector<std::thread::id> threads;
    XidWatcher w(lib, [&](const XidCount& c) {
        std::lock_guard lock(mu);
        calls.push_back(c);
        threads.push_back(std::this_thread::get_id());
    });
    w.start();
    ASSERT_TRUE(reaches(w, 4));
    std::this_thread::sleep_for(100ms);
    w.stop();
    std::lock_guard lock(mu);
    ASSERT_EQ(calls.size(), 4u);
    const std::pair<unsigned, std::uint64_t> want[] = {{0, 13}, {0, 31}, {0, 79}, {1, 48}};
    const std::uint64_t want_count[] = {1, 2, 3, 1};
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(calls[i].gpu, want[i].first) << i;
        EXPECT_EQ(calls[i].last_xid, want[i].second) << i;
        EXPECT_EQ(calls[i].count, want_count[i]) << i;
        EXPECT_TRUE(calls[i].last_at) << i;
        EXPECT_NE(threads[i], std::this_thread::get_id()) << i;
    }
}

TEST(XidWatcher, AGpuWithoutEventsStaysAtZeroAndIsNamed) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 name=\"Tesla K80\" unsupported=events xid=13\ngpu 1 xid=31\n");
    XidWatcher w(lib);
    ASSERT_TRUE(w.supported());
    EXPECT_NE(w.unsupported_reason().find("GPU 0 (Tesla K80)"), std::string::npos)
        << w.unsupported_reason();
    EXPECT_NE(w.unsupported_reason().find("NVML_ERROR_NOT_SUPPORTED"), std::string::npos);
    EXPECT_EQ(w.unsupported_reason().find("GPU 1"), std::string::npos);
    w.start();
    ASSERT_TRUE(reaches(w, 1));
    std::this_thread::sleep_for(100ms);
    auto c = w.counts();
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].count, 0u);
    EXPECT_EQ(c[1].count, 1u);
    EXPECT_EQ(c[1].last_xid, 31u);
}

TEST(XidWatcher, NoGpuAcceptingEventsMeansUnsupportedAndNoThread) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 unsupported=events xid=13\ngpu 1 lost=1\ngpu 2 handle_error=999\n");
    const std::size_t threads = thread_count();
    XidWatcher w(lib);
    EXPECT_FALSE(w.supported());
    EXPECT_NE(w.unsupported_reason().find("GPU 1: GPU is lost"), std::string::npos)
        << w.unsupported_reason();
    EXPECT_NE(w.unsupported_reason().find("GPU 2: "), std::string::npos);
    w.start();
    EXPECT_EQ(thread_count(), threads);
    auto c = w.counts();
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c[0].count, 0u);
    EXPECT_EQ(c[2].uuid, "");  // could not be opened
    w.stop();
}

TEST(XidWatcher, LibraryWithoutEventSymbolsIsUnsupported) {
    MLK_REQUIRE_FAKE_NVML(lib, "v1");
    Scenario sc("gpu 0 xid=13\ngpu 1 xid=31\n");
    const std::size_t threads = thread_count();
    XidWatcher w(lib);
    EXPECT_FALSE(w.supported());
    EXPECT_NE(w.unsupported_reason().find("no event calls"), std::string::npos)
        << w.unsupported_reason();
    w.start();
    EXPECT_EQ(thread_count(), threads) << "a thread started with nothing to wait on";
    auto c = w.counts();
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[1].uuid, "GPU-fake-1");
    EXPECT_EQ(total(w), 0u);
    w.stop();
}

TEST(XidWatcher, OlderDriversWaitWithoutV2) {
    MLK_REQUIRE_FAKE_NVML(lib, "nov3");
    Scenario sc("gpu 0 xid=79\n");
    XidWatcher w(lib);
    ASSERT_TRUE(w.supported());
    w.start();
    ASSERT_TRUE(reaches(w, 1));
    EXPECT_EQ(w.counts()[0].last_xid, 79u);
}

TEST(XidWatcher, MissingLibraryThrows) {
    try {
        XidWatcher w("/nonexistent/dir/libnvidia-ml.so.1");
        FAIL() << "a missing library was accepted";
    } catch (const nvml::NvmlError& e) {
        EXPECT_TRUE(e.means_no_driver());
    }
}

TEST(XidWatcher, CountErrorMeansUnsupported) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("count_error=999\ngpu 0 xid=13\n");
    XidWatcher w(lib);
    EXPECT_FALSE(w.supported());
    EXPECT_NE(w.unsupported_reason().find("cannot count"), std::string::npos);
    EXPECT_TRUE(w.counts().empty());
    w.start();
    w.stop();
}

TEST(XidWatcher, StopsQuicklyAndJoins) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0\ngpu 1\n");
    const std::size_t threads = thread_count();
    XidWatcher w(lib);
    w.start();
    EXPECT_EQ(thread_count(), threads + 1);
    std::this_thread::sleep_for(50ms);
    const auto t0 = Clock::now();
    w.stop();
    EXPECT_LT(Clock::now() - t0, 1s);
    EXPECT_EQ(thread_count(), threads);
    w.stop();   // idempotent
    w.start();  // after stop: stays stopped
    EXPECT_EQ(thread_count(), threads);
}

// The 1 s back-off after a wait error must not delay shutdown.
TEST(XidWatcher, StopInterruptsTheBackOff) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=e999\n");
    CapturedLog log;
    XidWatcher w(lib);
    w.start();
    ASSERT_TRUE(wait_until([&] { return log.count("waiting for GPU events failed") == 1; }, 5s));
    const auto t0 = Clock::now();
    w.stop();
    EXPECT_LT(Clock::now() - t0, 500ms);
}

TEST(XidWatcher, BacksOffAfterAWaitErrorAndWarnsOncePerMinute) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=e999,e999,13\n");
    CapturedLog log;
    XidWatcher w(lib);
    const auto t0 = Clock::now();
    w.start();
    ASSERT_TRUE(reaches(w, 1, 6s));
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 1900ms) << "no back-off after two errors";
    EXPECT_EQ(w.counts()[0].last_xid, 13u);
    w.stop();
    EXPECT_EQ(log.count("waiting for GPU events failed"), 1);
    EXPECT_EQ(log.count("NVML_ERROR_UNKNOWN"), 1);
}

TEST(XidWatcher, ALostGpuDoesNotStopTheOthers) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=e15,e15,13\ngpu 1 xid=31\n");
    CapturedLog log;
    XidWatcher w(lib);
    const auto t0 = Clock::now();
    w.start();
    ASSERT_TRUE(reaches(w, 2));
    EXPECT_LT(Clock::now() - t0, 900ms) << "a lost GPU cost the full back-off";
    auto c = w.counts();
    EXPECT_EQ(c[0].count, 1u);
    EXPECT_EQ(c[0].last_xid, 13u);
    EXPECT_EQ(c[1].count, 1u);
    EXPECT_EQ(c[1].last_xid, 31u);
    w.stop();
    EXPECT_EQ(log.count("GPU 0 is lost"), 1);
}

TEST(XidWatcher, AThrowingCallbackDoesNotEndTheThread) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=13,31\n");
    CapturedLog log;
    std::atomic<int> calls{0};
    XidWatcher w(lib, [&](const XidCount&) {
        ++calls;
        throw std::runtime_error("alert channel down");
    });
    w.start();
    ASSERT_TRUE(wait_until([&] { return calls.load() == 2; }, 5s));
    w.stop();
    EXPECT_EQ(total(w), 2u);
    EXPECT_EQ(log.count("alert channel down"), 1);  // the second is within the minute
}

// Its own NVML instance: the set is freed before its nvmlShutdown, and another user's
// initialisation survives the watcher.
TEST(XidWatcher, ReleasesNvmlInOrderAndLeavesOthersInitialised) {
    MLK_REQUIRE_FAKE_NVML(lib, "");
    Scenario sc("gpu 0 xid=13\n");
    nvml::Nvml other(lib);
    {
        XidWatcher w(lib);
        w.start();
        ASSERT_TRUE(reaches(w, 1));
    }
    EXPECT_EQ(sc.read_init_log(),
              "init nvmlInit_v2\ninit nvmlInit_v2\neventset create\neventset free\nshutdown\n");
    unsigned int n = 0;
    EXPECT_EQ(other.device_count(&n), nvml::kSuccess);
    EXPECT_EQ(n, 1u);
}

}  // namespace
}  // namespace mlk::gpu
