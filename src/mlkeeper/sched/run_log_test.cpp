#include "mlkeeper/sched/run_log.hpp"

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

namespace mlk::sched {
namespace {

using namespace std::chrono;

TimePoint t(int s) {
    return TimePoint{seconds{1'800'000'000 + s}};
}

TEST(RunLog, RecordsRunsSkipsAndLastTrigger) {
    testing::TempDir dir;
    core::StateStore store(dir.path() / "state.db");
    RunLog log(store);
    EXPECT_FALSE(log.last_trigger("backup"));
    const auto id = log.begin("backup", Trigger::kScheduled, t(0), t(5));
    log.set_process(id, 4242, 99);
    auto open = log.unfinished();
    ASSERT_EQ(open.size(), 1u);
    EXPECT_EQ(open[0].pid, 4242);
    EXPECT_EQ(open[0].pid_start, 99u);
    log.finish(id, Outcome::kFailed, 3, std::nullopt, 2, t(20), "boom\n");
    log.record_skip("backup", Trigger::kScheduled, t(100), t(101), "still going");
    EXPECT_TRUE(log.unfinished().empty());
    EXPECT_EQ(log.last_trigger("backup"), t(5));  // skips do not count
    const auto runs = log.recent("backup", 10);
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(runs[0].outcome, Outcome::kSkipped);
    EXPECT_EQ(runs[1].outcome, Outcome::kFailed);
    EXPECT_EQ(runs[1].exit_code, 3);
    EXPECT_EQ(runs[1].attempts, 2);
    EXPECT_EQ(runs[1].output_tail, "boom\n");
    EXPECT_EQ(runs[1].elapse, t(0));
    EXPECT_TRUE(log.recent("gpu", 10).empty());
    EXPECT_EQ(log.recent("", 1).size(), 1u);
}

TEST(RunLog, OutcomeNamesRoundTrip) {
    for (auto o : {Outcome::kSuccess, Outcome::kFailed, Outcome::kTimedOut, Outcome::kCancelled,
                   Outcome::kFailedToStart, Outcome::kSkipped, Outcome::kInterrupted}) {
        EXPECT_EQ(outcome_from_string(to_string(o)), o);
    }
    EXPECT_FALSE(outcome_from_string("exploded"));
    EXPECT_EQ(to_outcome(JobOutcome::kTimedOut), Outcome::kTimedOut);
}

}  // namespace
}  // namespace mlk::sched
