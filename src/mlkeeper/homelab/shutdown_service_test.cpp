#include "mlkeeper/homelab/shutdown_service.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "support/temp_dir.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;
using std::chrono::minutes;

const SysTime kStart = SysTime(std::chrono::seconds(1'800'000'000));  // 2027-01-15
const SysTime kBoot = kStart - 1h;

// Wall clock the test moves by hand.
class FakeClock {
  public:
    SysTime now() const {
        std::lock_guard<std::mutex> lock(mu_);
        return t_;
    }
    void set(SysTime t) {
        std::lock_guard<std::mutex> lock(mu_);
        t_ = t;
    }
    void advance(std::chrono::seconds d) { set(now() + d); }

  private:
    mutable std::mutex mu_;
    SysTime t_ = kStart;
};

// Records each power-off; a test can make it fail, throw or block until cancelled.
class FakePowerOff {
  public:
    enum class Mode { kOk, kFail, kThrow, kBlockUntilCancelled };

    util::RunResult operator()(const std::vector<std::string>& argv, const util::RunOptions& o) {
        Mode mode;
        {
            std::lock_guard<std::mutex> lock(mu_);
            calls_.push_back(argv);
            timeouts_.push_back(o.timeout);
            mode = mode_;
        }
        cv_.notify_all();
        util::RunResult r;
        switch (mode) {
            case Mode::kOk:
                r.kind = util::ExitKind::kExited;
                r.exit_code = 0;
                break;
            case Mode::kFail:
                r.kind = util::ExitKind::kExited;
                r.exit_code = 1;
                r.err = "Failed to power off system: Access denied\n";
                break;
            case Mode::kThrow:
                throw std::runtime_error("fork failed");
            case Mode::kBlockUntilCancelled: {
                const auto deadline = std::chrono::steady_clock::now() + 10s;
                while (o.cancel != nullptr && !o.cancel->load() &&
                       std::chrono::steady_clock::now() < deadline) {
                    std::this_thread::sleep_for(1ms);
                }
                r.kind = util::ExitKind::kCancelled;
                break;
            }
        }
        return r;
    }

    void set_mode(Mode m) {
        std::lock_guard<std::mutex> lock(mu_);
        mode_ = m;
    }
    std::size_t count() const {
        std::lock_guard<std::mutex> lock(mu_);
        return calls_.size();
    }
    // Waits (at most 5 s) until `n` power-offs were requested.
    bool wait_for(std::size_t n) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, 5s, [&] { return calls_.size() >= n; });
    }
    std::vector<std::string> argv(std::size_t i) const {
        std::lock_guard<std::mutex> lock(mu_);
        return calls_.at(i);
    }
    std::chrono::milliseconds timeout(std::size_t i) const {
        std::lock_guard<std::mutex> lock(mu_);
        return timeouts_.at(i);
    }

  private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::vector<std::string>> calls_;
    std::vector<std::chrono::milliseconds> timeouts_;
    Mode mode_ = Mode::kOk;
};

class ShutdownServiceTest : public ::testing::Test {
  protected:
    ShutdownServiceTest() : store_(std::make_unique<core::StateStore>(dir_ / "state.db")) {
        settings_.command = {"/bin/echo", "poweroff"};
        settings_.max_delay = minutes(120);
        settings_.command_timeout = 1234ms;
    }

    ShutdownSeams seams() {
        ShutdownSeams s;
        s.now = [this] { return clock_.now(); };
        s.power_off = [this](const std::vector<std::string>& argv, const util::RunOptions& o) {
            return power_off_(argv, o);
        };
        s.boot = [this] {
            std::lock_guard<std::mutex> lock(boot_mu_);
            return boot_;
        };
        s.max_sleep = 2ms;
        return s;
    }
    std::unique_ptr<ShutdownService> make(core::StateStore* store) {
        return std::make_unique<ShutdownService>(settings_, store, seams());
    }
    std::unique_ptr<ShutdownService> make() { return make(store_.get()); }

    void set_boot(std::optional<std::string> id, std::optional<SysTime> t) {
        std::lock_guard<std::mutex> lock(boot_mu_);
        boot_.boot_id = std::move(id);
        boot_.boot_time = t;
    }
    std::string saved() const { return store_->kv_get(kShutdownStateKey).value_or(""); }
    // Gives the timer thread time to (wrongly) act; used before asserting nothing happened.
    static void settle() { std::this_thread::sleep_for(30ms); }
    // Makes every write to the kv table fail, as a full disk would; reads still work.
    void break_store_writes() {
        store_->db().exec(
            "CREATE TRIGGER kv_full BEFORE INSERT ON kv BEGIN SELECT RAISE(FAIL, 'database or "
            "disk is full'); END;");
    }

    testing::TempDir dir_;
    std::unique_ptr<core::StateStore> store_;
    ShutdownSettings settings_;
    FakeClock clock_;
    FakePowerOff power_off_;
    std::mutex boot_mu_;
    BootIdentity boot_{std::string("boot-1"), kBoot};
};

// Runs once the lead has pasted keys-shutdown.txt into config_schema.cpp.
TEST(ShutdownSettingsConfig, FromConfigWhenTheKeysExist) {
    if (core::find_key("shutdown.command") == nullptr ||
        core::find_key("shutdown.max_delay") == nullptr) {
        GTEST_SKIP() << "[shutdown] keys are not in config_schema.cpp yet";
    }
    auto d = shutdown_settings_from(core::Config::defaults());
    EXPECT_EQ(d.command, (std::vector<std::string>{"systemctl", "poweroff"}));
    EXPECT_EQ(d.max_delay, minutes(7 * 24 * 60));

    testing::TempDir dir;
    auto load = [&](std::map<std::string, std::string> env) {
        core::ConfigInputs in;
        in.default_file = dir / "missing.toml";
        in.env = std::move(env);
        return core::Config::load(in);
    };
    auto s = shutdown_settings_from(
        load({{"MLKEEPER_SHUTDOWN_COMMAND", "sudo -n /usr/bin/systemctl poweroff"},
              {"MLKEEPER_SHUTDOWN_MAX_DELAY", "90"}}));
    EXPECT_EQ(s.command,
              (std::vector<std::string>{"sudo", "-n", "/usr/bin/systemctl", "poweroff"}));
    EXPECT_EQ(s.max_delay, minutes(90));
    EXPECT_THROW(shutdown_settings_from(load({{"MLKEEPER_SHUTDOWN_COMMAND", ""}})), ConfigError);
}

TEST(ShutdownValidate, DelayBounds) {
    EXPECT_EQ(validate_request(minutes(0), "", minutes(10)), std::nullopt);
    EXPECT_EQ(validate_request(minutes(10), "", minutes(10)), std::nullopt);
    EXPECT_NE(validate_request(minutes(11), "", minutes(10)), std::nullopt);
    EXPECT_NE(validate_request(minutes(-1), "", minutes(10)), std::nullopt);
    EXPECT_NE(validate_request(minutes(11), "", minutes(10))->find("between 0 and 10"),
              std::string::npos);
}

TEST(ShutdownValidate, ReasonLengthCountsCharacters) {
    EXPECT_EQ(validate_request(minutes(1), std::string(200, 'a'), minutes(10)), std::nullopt);
    EXPECT_NE(validate_request(minutes(1), std::string(201, 'a'), minutes(10)), std::nullopt);
    std::string accents;
    for (int i = 0; i < 200; ++i) {
        accents += "\xc3\xa9";  // é: 2 bytes, 1 character
    }
    EXPECT_EQ(validate_request(minutes(1), accents, minutes(10)), std::nullopt);
    EXPECT_NE(validate_request(minutes(1), accents + "\xc3\xa9", minutes(10)), std::nullopt);
    EXPECT_EQ(validate_request(minutes(1), "nightly \xf0\x9f\x92\xa4 power saving", minutes(10)),
              std::nullopt);
}

TEST(ShutdownValidate, ReasonRejectsControlsAndBadUtf8) {
    for (const std::string& bad :
         {std::string("line\nbreak"), std::string("tab\there"), std::string("cr\r"),
          std::string("nul\0x", 5), std::string("del\x7f"), std::string("c1 \xc2\x85 nel"),
          std::string("esc \x1b[31m"), std::string("\xff"), std::string("\xc0\xaf"),
          std::string("\xed\xa0\x80"), std::string("\xe2\x82"), std::string("\xf4\x90\x80\x80")}) {
        EXPECT_NE(validate_request(minutes(1), bad, minutes(10)), std::nullopt) << bad;
    }
}

TEST(ShutdownState, RoundTripsAndRejectsJunk) {
    ScheduledShutdown s;
    s.created_at = kStart;
    s.at = kStart + 30min;
    s.delay = 30min;
    s.reason = "nightly \"quoted\"";
    s.requested_by = "admin";
    s.boot_id = "boot-1";
    s.boot_time = kBoot;
    EXPECT_EQ(from_state_json(to_state_json(s)), s);
    s.boot_time.reset();
    s.boot_id.clear();
    EXPECT_EQ(from_state_json(to_state_json(s)), s);

    const auto doc = nlohmann::json::parse(to_state_json(s));
    auto patched = [&](const char* key, const nlohmann::json& v) {
        auto d = doc;
        d[key] = v;
        return d;
    };
    auto without = [&](const char* key) {
        auto d = doc;
        d.erase(key);
        return d;
    };
    const std::vector<nlohmann::json> broken = {
        nlohmann::json::object(), patched("version", 2),          patched("at", "yesterday"),
        patched("at", 5),         patched("delay_minutes", "30"), patched("reason", nullptr),
        without("created_at"),    without("requested_by"),
    };
    for (const auto& b : broken) {
        EXPECT_THROW(from_state_json(b.dump()), std::invalid_argument) << b.dump();
    }
    for (const char* text : {"", "null", "[]", "{not json"}) {
        EXPECT_THROW(from_state_json(text), std::invalid_argument) << text;
    }
}

TEST_F(ShutdownServiceTest, SchedulesAndPersists) {
    auto svc = make();
    EXPECT_EQ(svc->current(), std::nullopt);
    clock_.set(kStart + 500ms);  // sub-second part is dropped: times are whole seconds
    auto r = svc->schedule(minutes(30), "nightly", "admin");
    EXPECT_EQ(r.status, ScheduleResult::Status::kScheduled);
    EXPECT_EQ(r.shutdown.created_at, kStart);
    EXPECT_EQ(r.shutdown.at, kStart + 30min);
    EXPECT_EQ(r.shutdown.reason, "nightly");
    EXPECT_EQ(r.shutdown.requested_by, "admin");
    EXPECT_EQ(r.shutdown.boot_id, "boot-1");
    EXPECT_EQ(r.shutdown.boot_time, kBoot);
    EXPECT_EQ(r.replaced, std::nullopt);
    EXPECT_EQ(svc->current(), r.shutdown);
    EXPECT_EQ(from_state_json(saved()), r.shutdown);
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
}

TEST_F(ShutdownServiceTest, ConflictUnlessReplace) {
    auto svc = make();
    const auto first = svc->schedule(minutes(30), "a", "alice").shutdown;
    auto second = svc->schedule(minutes(10), "b", "bob");
    EXPECT_EQ(second.status, ScheduleResult::Status::kConflict);
    EXPECT_EQ(second.shutdown, first);
    EXPECT_EQ(svc->current(), first);
    EXPECT_EQ(from_state_json(saved()), first);

    auto third = svc->schedule(minutes(10), "b", "bob", Replace::kYes);
    EXPECT_EQ(third.status, ScheduleResult::Status::kReplaced);
    ASSERT_TRUE(third.replaced.has_value());
    EXPECT_EQ(*third.replaced, first);
    EXPECT_EQ(third.shutdown.at, kStart + 10min);
    EXPECT_EQ(svc->current(), third.shutdown);
    EXPECT_EQ(from_state_json(saved()), third.shutdown);
}

TEST_F(ShutdownServiceTest, OutOfRangeChangesNothing) {
    auto svc = make();
    EXPECT_THROW(svc->schedule(minutes(121), "", "x"), std::invalid_argument);
    EXPECT_THROW(svc->schedule(minutes(-1), "", "x"), std::invalid_argument);
    EXPECT_THROW(svc->schedule(minutes(5), "bad\nreason", "x"), std::invalid_argument);
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(saved(), "");
    EXPECT_EQ(svc->schedule(minutes(120), "", "x").status, ScheduleResult::Status::kScheduled);
}

TEST_F(ShutdownServiceTest, CancelClearsAndNothingRuns) {
    auto svc = make();
    EXPECT_EQ(svc->cancel(), std::nullopt);
    const auto s = svc->schedule(minutes(5), "", "x").shutdown;
    EXPECT_EQ(svc->cancel(), s);
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(svc->cancel(), std::nullopt);
    EXPECT_EQ(saved(), "");
    clock_.advance(1h);
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
}

TEST_F(ShutdownServiceTest, RunsTheCommandWhenDue) {
    auto svc = make();
    svc->schedule(minutes(10), "nightly", "admin");
    clock_.advance(9min + 59s);
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
    EXPECT_TRUE(svc->current().has_value());

    clock_.advance(1s);
    ASSERT_TRUE(power_off_.wait_for(1));
    EXPECT_EQ(power_off_.argv(0), settings_.command);
    EXPECT_EQ(power_off_.timeout(0), 1234ms);
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(saved(), "");
    // Once only.
    clock_.advance(1h);
    settle();
    EXPECT_EQ(power_off_.count(), 1u);
}

TEST_F(ShutdownServiceTest, ZeroDelayRunsAtOnce) {
    auto svc = make();
    svc->schedule(minutes(0), "now", "admin");
    ASSERT_TRUE(power_off_.wait_for(1));
    EXPECT_EQ(svc->current(), std::nullopt);
}

TEST_F(ShutdownServiceTest, ReplacedTimeIsTheOneThatCounts) {
    auto svc = make();
    svc->schedule(minutes(5), "", "x");
    svc->schedule(minutes(60), "", "x", Replace::kYes);
    clock_.advance(30min);
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
    clock_.advance(30min);
    ASSERT_TRUE(power_off_.wait_for(1));

    // And an earlier replacement wakes the timer early.
    svc->schedule(minutes(60), "", "x");
    svc->schedule(minutes(1), "", "x", Replace::kYes);
    clock_.advance(1min);
    ASSERT_TRUE(power_off_.wait_for(2));
}

TEST_F(ShutdownServiceTest, FailedCommandIsLoggedAndCleared) {
    power_off_.set_mode(FakePowerOff::Mode::kFail);
    auto svc = make();
    svc->schedule(minutes(0), "", "x");
    ASSERT_TRUE(power_off_.wait_for(1));
    settle();
    EXPECT_EQ(svc->power_offs(), 1u);
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(saved(), "");

    power_off_.set_mode(FakePowerOff::Mode::kThrow);
    svc->schedule(minutes(1), "", "x");
    clock_.advance(1min);
    ASSERT_TRUE(power_off_.wait_for(2));
    settle();
    EXPECT_EQ(svc->power_offs(), 2u);
    // The service keeps working after both failures.
    EXPECT_EQ(svc->schedule(minutes(5), "", "x").status, ScheduleResult::Status::kScheduled);
}

TEST_F(ShutdownServiceTest, SurvivesAnAgentRestartInTheSameBoot) {
    ScheduledShutdown s;
    {
        auto svc = make();
        s = svc->schedule(minutes(30), "nightly", "admin").shutdown;
    }
    clock_.advance(10min);
    auto svc = make();
    EXPECT_EQ(svc->current(), s);
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
    clock_.advance(20min);
    ASSERT_TRUE(power_off_.wait_for(1));
}

TEST_F(ShutdownServiceTest, DueWhileTheAgentWasDownRunsAtOnce) {
    {
        auto svc = make();
        svc->schedule(minutes(30), "nightly", "admin");
    }
    clock_.advance(2h);
    auto svc = make();
    ASSERT_TRUE(power_off_.wait_for(1));
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(saved(), "");
}

TEST_F(ShutdownServiceTest, DroppedAfterAReboot) {
    {
        auto svc = make();
        svc->schedule(minutes(30), "nightly", "admin");
    }
    // The machine rebooted 5 minutes later; the agent starts again after the old due time.
    set_boot("boot-2", kStart + 5min);
    clock_.advance(1h);
    auto svc = make();
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(saved(), "");
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
}

TEST_F(ShutdownServiceTest, BootTimeDecidesWithoutBootIds) {
    set_boot(std::nullopt, kBoot);
    {
        auto svc = make();
        svc->schedule(minutes(30), "", "x");
    }
    {
        // Same boot: kept.
        auto svc = make();
        EXPECT_TRUE(svc->current().has_value());
    }
    set_boot(std::nullopt, kStart + 1min);  // booted after the schedule was made
    auto svc = make();
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(saved(), "");
}

TEST_F(ShutdownServiceTest, UnknownBootKeepsTheSchedule) {
    {
        auto svc = make();
        svc->schedule(minutes(30), "", "x");
    }
    set_boot(std::nullopt, std::nullopt);
    auto svc = make();
    EXPECT_TRUE(svc->current().has_value());
}

TEST_F(ShutdownServiceTest, UnreadableSavedScheduleIsDropped) {
    store_->kv_set(kShutdownStateKey, "{\"version\": 1, \"at\": tomorrow");
    auto svc = make();
    EXPECT_EQ(svc->current(), std::nullopt);
    EXPECT_EQ(saved(), "");
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
}

TEST_F(ShutdownServiceTest, FailedSaveSchedulesNothing) {
    auto svc = make();
    break_store_writes();
    EXPECT_ANY_THROW(svc->schedule(minutes(0), "", "x"));
    EXPECT_EQ(svc->current(), std::nullopt);
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
}

TEST_F(ShutdownServiceTest, CancelWorksEvenWhenTheStoreCannotSave) {
    auto svc = make();
    svc->schedule(minutes(5), "", "x");
    break_store_writes();
    EXPECT_TRUE(svc->cancel().has_value());
    EXPECT_EQ(svc->current(), std::nullopt);
    clock_.advance(1h);
    settle();
    EXPECT_EQ(power_off_.count(), 0u);
}

TEST_F(ShutdownServiceTest, WorksWithoutAStore) {
    auto svc = make(nullptr);
    svc->schedule(minutes(1), "", "x");
    EXPECT_EQ(saved(), "");
    clock_.advance(1min);
    ASSERT_TRUE(power_off_.wait_for(1));
}

TEST_F(ShutdownServiceTest, OneWinnerAmongConcurrentSchedules) {
    auto svc = make();
    std::atomic<int> scheduled{0}, conflicts{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&, i] {
            auto r = svc->schedule(minutes(10 + i), "", "t" + std::to_string(i));
            (r.status == ScheduleResult::Status::kScheduled ? scheduled : conflicts)++;
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(scheduled.load(), 1);
    EXPECT_EQ(conflicts.load(), 7);
    EXPECT_EQ(from_state_json(saved()), svc->current());
}

TEST_F(ShutdownServiceTest, DestructorCancelsARunningCommand) {
    power_off_.set_mode(FakePowerOff::Mode::kBlockUntilCancelled);
    auto svc = make();
    svc->schedule(minutes(0), "", "x");
    ASSERT_TRUE(power_off_.wait_for(1));
    const auto t0 = std::chrono::steady_clock::now();
    svc.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST_F(ShutdownServiceTest, RealCommandRuns) {
    // The default seam: util::run_process with the configured argv.
    settings_.command = {"/bin/sh", "-c", "echo powered-off > \"$0\"", (dir_ / "marker").string()};
    ShutdownSeams s = seams();
    s.power_off = nullptr;
    ShutdownService svc(settings_, nullptr, s);
    svc.schedule(minutes(0), "", "x");
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (svc.power_offs() == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(2ms);
    }
    EXPECT_EQ(svc.power_offs(), 1u);
    EXPECT_EQ(testing::slurp(dir_ / "marker"), "powered-off\n");
}

}  // namespace
}  // namespace mlk::homelab
