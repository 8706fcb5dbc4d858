// Prometheus families and status-page data built from the state database's history: backups
// and cleanups (table runs), scheduled jobs (job_runs) and alerts (alerts, counters). The agent's
// /metrics and the one-shot commands' textfiles use the same functions, so dashboards and alert
// rules read one set of names whichever way the numbers arrive (docs/formats/metrics.md).
// Thread safety: a HistoryFamilies owns one read-only SQLite connection; call it from one thread
// at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/core/sqlite_db.hpp"

namespace mlk::metrics {

class HistoryFamilies {
  public:
    // Opens `state_db` read-only (a StateStore must have created and migrated it). Throws
    // core::SqliteError when it cannot be opened.
    explicit HistoryFamilies(const std::filesystem::path& state_db);

    // mlkeeper_backup_*: the last finished backup and the last successful one (dry runs and
    // `--verify` runs left out), and runs by result.
    void append_backup(core::MetricsText& m);
    // mlkeeper_cleanup_*: totals over every recorded cleanup (dry runs left out).
    void append_cleanup(core::MetricsText& m);
    // mlkeeper_job_*: scheduled runs per job and outcome, the last run of each job.
    void append_jobs(core::MetricsText& m);
    // mlkeeper_alerts_*: deliveries per channel (counters table) and firing alerts by severity.
    void append_alerts(core::MetricsText& m);

    // For the status page: the newest `limit` backups, newest first, as
    // [{"at", "archive", "kind", "bytes_out", "files", "seconds", "verified", "ok", "error"}].
    nlohmann::json recent_backups(std::size_t limit);
    // Every job seen: [{"job", "last", "last_outcome", "last_duration_seconds", "running"}].
    nlohmann::json jobs();
    // Firing alerts first, then the most recently seen: [{"key", "state", "severity", "summary",
    // "last_seen"}].
    nlohmann::json alerts(std::size_t limit);

  private:
    // Runs per (job, outcome), kept up to date incrementally: job_runs only grows, and a row
    // changes once, when its run ends. Rows up to `watermark` are all finished and counted in
    // `finished`; rows after it are read again on every refresh (a run still going holds the
    // watermark back). A year of a 5-minute job is 105,000 rows: read once, not per scrape.
    struct JobCounts {
        std::map<std::pair<std::string, std::string>, double> finished;
        std::set<std::string> jobs;
        std::int64_t watermark = 0;
    };
    // The counts as of now: `counts_` refreshed, plus the finished rows after its watermark.
    std::map<std::pair<std::string, std::string>, double> job_counts();
    // jobs() for the job names counts_ knows, without refreshing them.
    nlohmann::json job_rows();

    core::Database db_;
    JobCounts counts_;
};

}  // namespace mlk::metrics
