#include "mlkeeper/alert/alert_state.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/temp_dir.hpp"

namespace mlk::alert {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

Alert firing(Severity s = Severity::kWarning) {
    Alert a;
    a.key = "gpu0_temp";
    a.severity = s;
    a.summary = "GPU 0 at 86C";
    return a;
}

Alert resolved() {
    Alert a = firing();
    a.state = AlertState::kResolved;
    a.summary = "GPU 0 back to 60C";
    return a;
}

// Applies decisions in sequence like the store does.
struct Sim {
    AlertPolicy policy;
    std::optional<KeyState> state;
    Clock::time_point t = Clock::time_point(std::chrono::hours(500000));
    Decision feed(const Alert& a, std::chrono::seconds after = 0s) {
        t += after;
        auto d = decide(state, a, policy, t);
        state = d.next;
        return d;
    }
};

TEST(AlertRule, CooldownSuppressesRepeatsAndCountsThem) {
    Sim s;
    EXPECT_EQ(s.feed(firing()).verdict, Verdict::kSend);
    EXPECT_EQ(s.feed(firing(), 300s).verdict, Verdict::kSuppress);
    EXPECT_EQ(s.feed(firing(), 300s).verdict, Verdict::kSuppress);
    auto d = s.feed(firing(), 3000s);  // 3600 s after the first send
    EXPECT_EQ(d.verdict, Verdict::kSend);
    EXPECT_EQ(d.reason, "cooldown expired");
    EXPECT_EQ(d.alert.suppressed, 2);
    EXPECT_EQ(s.state->suppressed, 0);
}

TEST(AlertRule, CooldownDependsOnSeverity) {
    Sim s;
    s.policy.escalate_after = 0;
    s.feed(firing(Severity::kCritical));
    EXPECT_EQ(s.feed(firing(Severity::kCritical), 1000s).verdict, Verdict::kSuppress);
    EXPECT_EQ(s.feed(firing(Severity::kCritical), 800s).verdict, Verdict::kSend);  // 30 min
    Sim e;
    e.policy.escalate_after = 0;
    e.feed(firing(Severity::kEmergency));
    EXPECT_EQ(e.feed(firing(Severity::kEmergency), 301s).verdict, Verdict::kSend);  // 5 min
    Sim i;
    i.feed(firing(Severity::kInfo));
    EXPECT_EQ(i.feed(firing(Severity::kInfo), 3h).verdict, Verdict::kSuppress);  // 4 h
}

TEST(AlertRule, WorseSeverityBypassesTheCooldown) {
    Sim s;
    s.feed(firing(Severity::kWarning));
    auto d = s.feed(firing(Severity::kCritical), 60s);
    EXPECT_EQ(d.verdict, Verdict::kSend);
    EXPECT_EQ(d.reason, "severity rose");
}

TEST(AlertRule, EscalatesAfterNOccurrences) {
    Sim s;
    s.policy.escalate_after = 5;
    for (int i = 0; i < 4; ++i) {
        auto d = s.feed(firing(), 60s);
        EXPECT_FALSE(d.escalation);
    }
    auto d = s.feed(firing(), 60s);
    EXPECT_EQ(d.verdict, Verdict::kSend);
    EXPECT_TRUE(d.escalation);
    EXPECT_EQ(d.alert.severity, Severity::kCritical);
    EXPECT_EQ(d.alert.occurrences, 5);
    // Stays escalated (critical) while it keeps firing, without re-escalating.
    auto next = s.feed(firing(), 60s);
    EXPECT_FALSE(next.escalation);
    EXPECT_EQ(next.alert.severity, Severity::kCritical);
}

TEST(AlertRule, RecoverySendsOneResolvedNoticeAndResets) {
    Sim s;
    s.feed(firing());
    s.feed(firing(), 60s);
    auto r = s.feed(resolved(), 60s);
    EXPECT_EQ(r.verdict, Verdict::kSend);
    EXPECT_EQ(r.reason, "resolved");
    EXPECT_EQ(s.feed(resolved(), 60s).verdict, Verdict::kIgnore);
    auto again = s.feed(firing(), 60s);  // a new incident: no cooldown carried over
    EXPECT_EQ(again.verdict, Verdict::kSend);
    EXPECT_EQ(again.reason, "new");
    EXPECT_EQ(again.alert.occurrences, 1);
}

TEST(AlertRule, ResolvingAnUnknownKeyDoesNothing) {
    Sim s;
    EXPECT_EQ(s.feed(resolved()).verdict, Verdict::kIgnore);
    EXPECT_FALSE(s.state.has_value());
}

TEST(AlertStore, StatePersistsAndUndoGivesTheCooldownBack) {
    mlk::testing::TempDir dir;
    core::StateStore db(dir / "state.db");
    AlertStateStore store(db, AlertPolicy{});
    auto now = Clock::now();
    auto d = store.record(firing(), now);
    EXPECT_EQ(d.verdict, Verdict::kSend);
    store.undo_send(d);  // nothing got through
    EXPECT_EQ(store.record(firing(), now + 10s).verdict, Verdict::kSend);
    EXPECT_EQ(store.record(firing(), now + 20s).verdict, Verdict::kSuppress);
    core::StateStore reopened(dir / "state.db");
    AlertStateStore again(reopened, AlertPolicy{});
    auto k = again.get("gpu0_temp");
    ASSERT_TRUE(k.has_value());
    EXPECT_EQ(k->suppressed, 1);
    EXPECT_EQ(k->occurrences, 3);
}

TEST(AlertStore, ConcurrentProcessesSendOnce) {
    mlk::testing::TempDir dir;
    { core::StateStore init(dir / "state.db"); }
    int pipes[2];
    ASSERT_EQ(::pipe(pipes), 0);
    std::vector<pid_t> kids;
    for (int i = 0; i < 6; ++i) {
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(pipes[0]);
            int sent = 0;
            try {
                core::StateStore db(dir / "state.db");
                AlertStateStore store(db, AlertPolicy{});
                for (int k = 0; k < 10; ++k) {
                    sent += store.record(firing(), Clock::now()).verdict == Verdict::kSend ? 1 : 0;
                }
            } catch (...) {
                ::_exit(2);
            }
            char c = static_cast<char>('0' + sent);
            (void)::write(pipes[1], &c, 1);
            ::_exit(0);
        }
        kids.push_back(pid);
    }
    ::close(pipes[1]);
    int total = 0;
    char c = 0;
    while (::read(pipes[0], &c, 1) == 1) {
        total += c - '0';
    }
    ::close(pipes[0]);
    for (auto pid : kids) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    // 60 reports of one condition within seconds: one notice, plus one
    // escalation after the 5th occurrence.
    EXPECT_EQ(total, 2);
}

}  // namespace
}  // namespace mlk::alert

namespace mlk::alert {
namespace {

TEST(AlertRule, FiringAlertsExpireAfterTwiceTheCooldown) {
    AlertPolicy p;
    Alert a;
    a.key = "k";
    auto now = std::chrono::system_clock::now();
    auto d = decide(std::nullopt, a, p, now);
    ASSERT_TRUE(d.alert.expires_at.has_value());
    EXPECT_EQ(*d.alert.expires_at - now, std::chrono::hours(2));
    a.severity = Severity::kEmergency;  // 5 min cooldown: at least 15 min
    EXPECT_EQ(*decide(std::nullopt, a, p, now).alert.expires_at - now, std::chrono::minutes(15));
}

}  // namespace
}  // namespace mlk::alert
