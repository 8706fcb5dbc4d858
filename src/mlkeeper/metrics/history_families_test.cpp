#include "mlkeeper/metrics/history_families.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mlkeeper/core/state_store.hpp"
#include "support/promtool.hpp"
#include "support/temp_dir.hpp"

namespace mlk::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HistoryFamiliesTest : public ::testing::Test {
  protected:
    HistoryFamiliesTest() : store_(dir_ / "state.db") {}

    void run(const std::string& command, int code, const nlohmann::json& summary) {
        const auto id = store_.begin_run(command, {});
        store_.end_run(id, code, summary);
    }
    void sql(const std::string& text) { store_.db().exec(text); }

    std::string text(void (HistoryFamilies::*part)(core::MetricsText&)) {
        HistoryFamilies h(store_.path());
        core::MetricsText m;
        (h.*part)(m);
        return m.str();
    }

    testing::TempDir dir_;
    core::StateStore store_;
};

nlohmann::json backup(const std::string& archive, double seconds, bool dry_run = false) {
    return {{"archive", archive}, {"bytes_in", 1000}, {"bytes_out", 400}, {"files", 7},
            {"seconds", seconds}, {"verified", true}, {"kind", "full"},   {"dry_run", dry_run}};
}

TEST_F(HistoryFamiliesTest, BackupsLeaveOutDryRunsAndVerifyRuns) {
    run("backup", 0, backup("a.tar.zst", 2.5));
    run("backup", 0, backup("dry.tar.zst", 9, /*dry_run=*/true));
    run("backup", 2, {{"verified", nlohmann::json::array({"x"})}});  // `backup --verify FILE`
    run("backup", 1, {{"error", "disk full"}});
    const auto t = text(&HistoryFamilies::append_backup);
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_runs_total{result=\"success\"} 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_runs_total{result=\"failed\"} 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_runs_total{result=\"verify_failed\"} 0\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_last_exit_code 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_duration_seconds 2.5\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_size_bytes 400\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_compression_ratio 0.4\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_verified 1\n"));
    std::string out;
    EXPECT_TRUE(testing::promtool_accepts(t, &out)) << out << t;

    HistoryFamilies h(store_.path());
    const auto recent = h.recent_backups(10);
    ASSERT_EQ(recent.size(), 2u);  // newest first: the failure, then a.tar.zst
    EXPECT_EQ(recent[0]["ok"], false);
    EXPECT_EQ(recent[0]["error"], "disk full");
    EXPECT_EQ(recent[1]["archive"], "a.tar.zst");
    EXPECT_EQ(recent[1]["verified"], true);
}

TEST_F(HistoryFamiliesTest, NoBackupYetMeansNoSuccessTimestamp) {
    const auto t = text(&HistoryFamilies::append_backup);
    // Absent, not 0: an alert on "older than 26 h" must see "never" through absent().
    EXPECT_THAT(t, Not(HasSubstr("\nmlkeeper_backup_last_success_timestamp_seconds ")));
    EXPECT_THAT(t, HasSubstr("mlkeeper_backup_runs_total{result=\"success\"} 0\n"));
}

TEST_F(HistoryFamiliesTest, CleanupTotalsCountBreakerTripsAndSkipDryRuns) {
    run("cleanup", 0, {{"deleted", {{"bytes", 100}, {"files", 2}}}, {"breaker", nullptr}});
    run("cleanup", 0, {{"deleted", {{"bytes", 50}, {"files", 1}}}, {"dry_run", false}});
    run("cleanup", 1,
        {{"deleted", {{"bytes", 0}, {"files", 0}}}, {"breaker", {{"tripped", "max_files"}}}});
    run("cleanup", 0, {{"deleted", {{"bytes", 9999}, {"files", 99}}}, {"dry_run", true}});
    run("cleanup", 0, nullptr);  // no summary: nothing to tell, left out
    const auto t = text(&HistoryFamilies::append_cleanup);
    EXPECT_THAT(t, HasSubstr("mlkeeper_cleanup_freed_bytes_total 150\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_cleanup_deleted_files_total 3\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_cleanup_breaker_trips_total 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_cleanup_runs_total{result=\"success\"} 2\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_cleanup_runs_total{result=\"failed\"} 1\n"));
    std::string out;
    EXPECT_TRUE(testing::promtool_accepts(t, &out)) << out << t;
}

TEST_F(HistoryFamiliesTest, JobsByOutcomeAndTheirLastRun) {
    sql("INSERT INTO job_runs (job, trigger, started_at, ended_at, outcome) VALUES "
        "('backup', 'scheduled', 1000000, 1004000, 'success'),"
        "('backup', 'scheduled', 2000000, 2001500, 'failed'),"
        "('backup', 'scheduled', 3000000, NULL, 'skipped'),"
        "('gpu', 'scheduled', 5000000, NULL, NULL)");
    const auto t = text(&HistoryFamilies::append_jobs);
    EXPECT_THAT(t,
                HasSubstr("mlkeeper_job_runs_total{job_name=\"backup\",outcome=\"failed\"} 1\n"));
    EXPECT_THAT(t,
                HasSubstr("mlkeeper_job_runs_total{job_name=\"backup\",outcome=\"skipped\"} 1\n"));
    EXPECT_THAT(t,
                HasSubstr("mlkeeper_job_last_run_timestamp_seconds{job_name=\"backup\"} 2000\n"));
    EXPECT_THAT(
        t, HasSubstr("mlkeeper_job_last_success_timestamp_seconds{job_name=\"backup\"} 1004\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_last_duration_seconds{job_name=\"backup\"} 1.5\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_running{job_name=\"gpu\"} 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_running{job_name=\"backup\"} 0\n"));
    std::string out;
    EXPECT_TRUE(testing::promtool_accepts(t, &out)) << out << t;
}

// The agent keeps one HistoryFamilies and scrapes it again and again: runs that end between
// scrapes, and rows added after a run still going, must each be counted exactly once.
TEST_F(HistoryFamiliesTest, JobCountsStayRightAcrossScrapesAsRunsEnd) {
    sql("INSERT INTO job_runs (id, job, trigger, started_at, ended_at, outcome) VALUES "
        "(1, 'gpu', 'scheduled', 1000, 2000, 'success'),"
        "(2, 'gpu', 'scheduled', 3000, NULL, NULL),"
        "(3, 'gpu', 'scheduled', 4000, 4000, 'skipped'),"
        "(4, 'backup', 'scheduled', 5000, 6000, 'failed')");
    HistoryFamilies h(store_.path());
    auto scrape = [&] {
        core::MetricsText m;
        h.append_jobs(m);
        return m.str();
    };
    auto t = scrape();
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_runs_total{job_name=\"gpu\",outcome=\"success\"} 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_runs_total{job_name=\"gpu\",outcome=\"skipped\"} 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_running{job_name=\"gpu\"} 1\n"));
    t = scrape();  // nothing changed: nothing counted twice
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_runs_total{job_name=\"gpu\",outcome=\"success\"} 1\n"));
    EXPECT_THAT(t,
                HasSubstr("mlkeeper_job_runs_total{job_name=\"backup\",outcome=\"failed\"} 1\n"));
    sql("UPDATE job_runs SET ended_at = 3500, outcome = 'success' WHERE id = 2");
    sql("INSERT INTO job_runs (id, job, trigger, started_at, ended_at, outcome) VALUES "
        "(5, 'gpu', 'scheduled', 7000, 7100, 'success'), (6, 'nightly', 'manual', 8000, NULL, "
        "NULL)");
    t = scrape();
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_runs_total{job_name=\"gpu\",outcome=\"success\"} 3\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_runs_total{job_name=\"gpu\",outcome=\"skipped\"} 1\n"));
    EXPECT_THAT(t,
                HasSubstr("mlkeeper_job_runs_total{job_name=\"backup\",outcome=\"failed\"} 1\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_running{job_name=\"gpu\"} 0\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_running{job_name=\"nightly\"} 1\n"));
    t = scrape();
    EXPECT_THAT(t, HasSubstr("mlkeeper_job_runs_total{job_name=\"gpu\",outcome=\"success\"} 3\n"));
}

TEST_F(HistoryFamiliesTest, AlertCountersAndFiringBySeverity) {
    store_.counter_add("alerts_sent", "channel=email", 3);
    store_.counter_add("alerts_failed", "channel=webhook", 2);
    store_.counter_add("alerts_suppressed", "", 5);
    sql("INSERT INTO alerts (key, state, severity, summary, first_seen, last_seen) VALUES "
        "('gpu0_temp', 'firing', 'critical', 'hot', 1, 2000),"
        "('disk_/', 'resolved', 'warning', 'ok again', 1, 3000),"
        "('backup_failed', 'firing', 'critical', 'failed', 1, 1000)");
    const auto t = text(&HistoryFamilies::append_alerts);
    EXPECT_THAT(t, HasSubstr("mlkeeper_alerts_sent_total{channel=\"email\"} 3\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_alerts_failed_total{channel=\"webhook\"} 2\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_alerts_suppressed_total 5\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_alerts_firing{severity=\"critical\"} 2\n"));
    EXPECT_THAT(t, HasSubstr("mlkeeper_alerts_firing{severity=\"warning\"} 0\n"));
    HistoryFamilies h(store_.path());
    const auto a = h.alerts(10);
    ASSERT_EQ(a.size(), 3u);
    EXPECT_EQ(a[0]["key"], "gpu0_temp");  // firing first, newest first
    EXPECT_EQ(a[1]["key"], "backup_failed");
    EXPECT_EQ(a[2]["state"], "resolved");
}

}  // namespace
}  // namespace mlk::metrics
