#include "mlkeeper/alert/dispatcher.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "support/temp_dir.hpp"

namespace mlk::alert {
namespace {

using namespace std::chrono_literals;

class FakeChannel : public Channel {
  public:
    FakeChannel(std::string name, int failures,
                ChannelError::Kind kind = ChannelError::Kind::kTransient,
                std::chrono::milliseconds delay = 0ms)
        : name_(std::move(name)), failures_(failures), kind_(kind), delay_(delay) {}
    std::string name() const override { return name_; }
    void send(const Alert& a) override {
        ++calls;
        std::this_thread::sleep_for(delay_);
        if (failures_-- > 0) {
            throw ChannelError(kind_, name_ + " is down");
        }
        last = a;
        ++delivered;
    }
    std::atomic<int> calls{0};
    std::atomic<int> delivered{0};
    Alert last;

  private:
    std::string name_;
    std::atomic<int> failures_;
    ChannelError::Kind kind_;
    std::chrono::milliseconds delay_;
};

TEST(Dispatcher, RetriesTransientFailuresAndKeepsOtherChannelsGoing) {
    auto flaky = std::make_unique<FakeChannel>("webhook", 2);
    auto dead = std::make_unique<FakeChannel>("email", 100);
    auto* f = flaky.get();
    auto* d = dead.get();
    std::vector<std::unique_ptr<Channel>> chans;
    chans.push_back(std::move(flaky));
    chans.push_back(std::move(dead));
    Dispatcher disp(std::move(chans), nullptr, RetryPolicy{3, 10ms});
    Alert a;
    a.key = "k";
    auto reports = disp.deliver(a);
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_TRUE(reports[0].result.ok);
    EXPECT_EQ(reports[0].result.attempts, 3);
    EXPECT_FALSE(reports[1].result.ok);
    EXPECT_EQ(reports[1].result.error, "email is down");
    EXPECT_EQ(f->delivered, 1);
    EXPECT_EQ(d->calls, 3);
}

TEST(Dispatcher, PermanentFailuresAreNotRetried) {
    auto bad = std::make_unique<FakeChannel>("email", 5, ChannelError::Kind::kPermanent);
    auto* b = bad.get();
    std::vector<std::unique_ptr<Channel>> chans;
    chans.push_back(std::move(bad));
    Dispatcher disp(std::move(chans), nullptr, RetryPolicy{3, 10ms});
    auto r = disp.deliver(Alert{});
    EXPECT_FALSE(r[0].result.ok);
    EXPECT_EQ(b->calls, 1);
}

TEST(Dispatcher, ASlowChannelDoesNotDelayTheOthers) {
    auto slow = std::make_unique<FakeChannel>("slow", 0, ChannelError::Kind::kTransient, 800ms);
    auto fast = std::make_unique<FakeChannel>("fast", 0);
    std::vector<std::unique_ptr<Channel>> chans;
    chans.push_back(std::move(slow));
    chans.push_back(std::move(fast));
    Dispatcher disp(std::move(chans), nullptr, RetryPolicy{1, 10ms});
    auto start = std::chrono::steady_clock::now();
    auto r = disp.deliver(Alert{});
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(r[0].result.ok && r[1].result.ok);
    EXPECT_LT(took, 1500ms);  // parallel, not 800 + retries
}

TEST(Dispatcher, EscalationChannelOnlyOnEscalation) {
    mlk::testing::TempDir dir;
    core::StateStore db(dir / "state.db");
    AlertPolicy policy;
    policy.escalate_after = 3;
    policy.cooldown_warning = 0s;
    policy.cooldown_critical = 0s;
    AlertStateStore state(db, policy);
    auto normal = std::make_unique<FakeChannel>("webhook", 0);
    auto pager = std::make_unique<FakeChannel>("command", 0);
    auto* n = normal.get();
    auto* p = pager.get();
    std::vector<std::unique_ptr<Channel>> chans;
    chans.push_back(std::move(normal));
    Dispatcher disp(std::move(chans), std::move(pager), RetryPolicy{1, 1ms});
    Alert a;
    a.key = "disk_/data";
    a.severity = Severity::kWarning;
    for (int i = 0; i < 3; ++i) {
        disp.notify(state, a);
    }
    EXPECT_EQ(n->delivered, 3);
    EXPECT_EQ(p->delivered, 1);
    EXPECT_EQ(p->last.severity, Severity::kCritical);
    EXPECT_FALSE(p->last.host.empty());
}

TEST(Dispatcher, NothingDeliveredMeansTheNextReportTriesAgain) {
    mlk::testing::TempDir dir;
    core::StateStore db(dir / "state.db");
    AlertStateStore state(db, AlertPolicy{});
    auto down = std::make_unique<FakeChannel>("webhook", 3);
    auto* d = down.get();
    std::vector<std::unique_ptr<Channel>> chans;
    chans.push_back(std::move(down));
    Dispatcher disp(std::move(chans), nullptr, RetryPolicy{3, 1ms});
    Alert a;
    a.key = "backup_failed";
    EXPECT_FALSE(disp.notify(state, a).delivered());
    auto second = disp.notify(state, a);  // within the cooldown, but nothing went out before
    EXPECT_EQ(second.decision.verdict, Verdict::kSend);
    EXPECT_TRUE(second.delivered());
    EXPECT_EQ(d->delivered, 1);
}

}  // namespace
}  // namespace mlk::alert
