#include "mlkeeper/metrics/history_families.hpp"

#include <array>
#include <chrono>
#include <map>
#include <string>
#include <utility>

#include "mlkeeper/util/time.hpp"

namespace mlk::metrics {
namespace {

using core::MetricType;

// A finished run that made (or tried to make) a backup: not a dry run, not `backup --verify`.
constexpr const char* kBackupRuns =
    "command = 'backup' AND ended_at IS NOT NULL AND json_valid(summary) "
    "AND coalesce(json_extract(summary, '$.dry_run'), 0) = 0 "
    "AND coalesce(json_type(summary, '$.verified'), '') <> 'array'";
constexpr const char* kCleanupRuns =
    "command = 'cleanup' AND ended_at IS NOT NULL AND json_valid(summary) "
    "AND coalesce(json_extract(summary, '$.dry_run'), 0) = 0";

double seconds_of_ms(std::int64_t ms) {
    return static_cast<double>(ms) / 1000.0;
}

std::string rfc3339_of_ms(std::int64_t ms) {
    return util::iso8601_utc(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

double column_or(core::Statement& st, int col, double fallback) {
    return st.column_is_null(col) ? fallback : st.column_double(col);
}

}  // namespace

HistoryFamilies::HistoryFamilies(const std::filesystem::path& state_db)
    : db_(state_db, core::OpenMode::kReadOnly) {
    db_.set_busy_timeout(2000);
}

void HistoryFamilies::append_backup(core::MetricsText& m) {
    m.family("mlkeeper_backup_last_run_timestamp_seconds", MetricType::kGauge,
             "When the last backup run ended, whatever its result (Unix time)");
    m.family("mlkeeper_backup_last_exit_code", MetricType::kGauge,
             "Exit code of the last backup run: 0 ok, 1 failed, 2 verification failed");
    m.family("mlkeeper_backup_last_success_timestamp_seconds", MetricType::kGauge,
             "When the last successful backup ended (Unix time)");
    m.family("mlkeeper_backup_duration_seconds", MetricType::kGauge,
             "How long the last successful backup took");
    m.family("mlkeeper_backup_size_bytes", MetricType::kGauge,
             "Size of the last successful backup's archive");
    m.family("mlkeeper_backup_source_bytes", MetricType::kGauge,
             "Bytes of model files the last successful backup covered");
    m.family("mlkeeper_backup_files", MetricType::kGauge,
             "Files in the last successful backup (stored or carried from the parent)");
    m.family("mlkeeper_backup_compression_ratio", MetricType::kGauge,
             "Archive bytes / source bytes of the last successful backup");
    m.family("mlkeeper_backup_verified", MetricType::kGauge,
             "1 when the last successful backup was verified after writing");
    m.family("mlkeeper_backup_runs_total", MetricType::kCounter,
             "Backup runs by result (success, failed, verify_failed)");

    auto last = db_.prepare(std::string("SELECT ended_at, exit_code FROM runs WHERE ") +
                            kBackupRuns + " ORDER BY started_at DESC, id DESC LIMIT 1");
    if (last.step()) {
        m.sample("mlkeeper_backup_last_run_timestamp_seconds", seconds_of_ms(last.column_int64(0)));
        m.sample("mlkeeper_backup_last_exit_code", column_or(last, 1, 1));
    }
    auto ok = db_.prepare(
        std::string("SELECT ended_at, json_extract(summary, '$.seconds'), "
                    "json_extract(summary, '$.bytes_out'), json_extract(summary, '$.bytes_in'), "
                    "json_extract(summary, '$.files'), json_extract(summary, '$.verified') "
                    "FROM runs WHERE ") +
        kBackupRuns + " AND exit_code = 0 ORDER BY started_at DESC, id DESC LIMIT 1");
    if (ok.step()) {
        m.sample("mlkeeper_backup_last_success_timestamp_seconds",
                 seconds_of_ms(ok.column_int64(0)));
        m.sample("mlkeeper_backup_duration_seconds", column_or(ok, 1, 0));
        const double out = column_or(ok, 2, 0);
        const double in = column_or(ok, 3, 0);
        m.sample("mlkeeper_backup_size_bytes", out);
        m.sample("mlkeeper_backup_source_bytes", in);
        m.sample("mlkeeper_backup_files", column_or(ok, 4, 0));
        if (in > 0) {
            m.sample("mlkeeper_backup_compression_ratio", out / in);
        }
        m.sample("mlkeeper_backup_verified", column_or(ok, 5, 0) != 0 ? 1 : 0);
    }
    std::array<double, 3> by_result{};  // success, failed, verify_failed
    auto runs = db_.prepare(std::string("SELECT exit_code, count(*) FROM runs WHERE ") +
                            kBackupRuns + " GROUP BY exit_code");
    while (runs.step()) {
        const auto code = runs.column_is_null(0) ? 1 : runs.column_int64(0);
        by_result[code == 0 ? 0 : code == 2 ? 2 : 1] += static_cast<double>(runs.column_int64(1));
    }
    m.sample("mlkeeper_backup_runs_total", {{"result", "success"}}, by_result[0]);
    m.sample("mlkeeper_backup_runs_total", {{"result", "failed"}}, by_result[1]);
    m.sample("mlkeeper_backup_runs_total", {{"result", "verify_failed"}}, by_result[2]);
}

void HistoryFamilies::append_cleanup(core::MetricsText& m) {
    m.family("mlkeeper_cleanup_freed_bytes_total", MetricType::kCounter,
             "Bytes cleanup runs deleted");
    m.family("mlkeeper_cleanup_deleted_files_total", MetricType::kCounter,
             "Files cleanup runs deleted");
    m.family("mlkeeper_cleanup_breaker_trips_total", MetricType::kCounter,
             "Cleanup runs the circuit breaker stopped");
    m.family("mlkeeper_cleanup_runs_total", MetricType::kCounter,
             "Cleanup runs by result (success, failed)");
    m.family("mlkeeper_cleanup_last_run_timestamp_seconds", MetricType::kGauge,
             "When the last cleanup run ended (Unix time)");
    m.family("mlkeeper_cleanup_last_success_timestamp_seconds", MetricType::kGauge,
             "When the last successful cleanup run ended (Unix time)");

    auto st = db_.prepare(
        std::string(
            "SELECT coalesce(sum(json_extract(summary, '$.deleted.bytes')), 0), "
            "coalesce(sum(json_extract(summary, '$.deleted.files')), 0), "
            "coalesce(sum(json_type(summary, '$.breaker') = 'object'), 0), "
            "coalesce(sum(exit_code = 0), 0), coalesce(sum(coalesce(exit_code, 1) <> 0), 0), "
            "max(ended_at), max(CASE WHEN exit_code = 0 THEN ended_at END) "
            "FROM runs WHERE ") +
        kCleanupRuns);
    if (!st.step()) {
        return;
    }
    m.sample("mlkeeper_cleanup_freed_bytes_total", st.column_double(0));
    m.sample("mlkeeper_cleanup_deleted_files_total", st.column_double(1));
    m.sample("mlkeeper_cleanup_breaker_trips_total", st.column_double(2));
    m.sample("mlkeeper_cleanup_runs_total", {{"result", "success"}}, st.column_double(3));
    m.sample("mlkeeper_cleanup_runs_total", {{"result", "failed"}}, st.column_double(4));
    if (!st.column_is_null(5)) {
        m.sample("mlkeeper_cleanup_last_run_timestamp_seconds", seconds_of_ms(st.column_int64(5)));
    }
    if (!st.column_is_null(6)) {
        m.sample("mlkeeper_cleanup_last_success_timestamp_seconds",
                 seconds_of_ms(st.column_int64(6)));
    }
}

void HistoryFamilies::append_jobs(core::MetricsText& m) {
    m.family("mlkeeper_job_runs_total", MetricType::kCounter,
             "Scheduled job runs by job and outcome");
    m.family("mlkeeper_job_last_run_timestamp_seconds", MetricType::kGauge,
             "When the job's last run started (Unix time)");
    m.family("mlkeeper_job_last_success_timestamp_seconds", MetricType::kGauge,
             "When the job's last successful run ended (Unix time)");
    m.family("mlkeeper_job_last_duration_seconds", MetricType::kGauge,
             "How long the job's last finished run took");
    m.family("mlkeeper_job_running", MetricType::kGauge, "1 while a run of the job is going");

    for (const auto& [key, n] : job_counts()) {
        m.sample("mlkeeper_job_runs_total", {{"job_name", key.first}, {"outcome", key.second}}, n);
    }
    for (const auto& j : job_rows()) {  // job_counts() just ran
        const core::Labels l = {{"job_name", j["job"].get<std::string>()}};
        if (j.contains("last_ms")) {
            m.sample("mlkeeper_job_last_run_timestamp_seconds", l,
                     seconds_of_ms(j["last_ms"].get<std::int64_t>()));
        }
        if (j.contains("success_ms")) {
            m.sample("mlkeeper_job_last_success_timestamp_seconds", l,
                     seconds_of_ms(j["success_ms"].get<std::int64_t>()));
        }
        if (!j["last_duration_seconds"].is_null()) {
            m.sample("mlkeeper_job_last_duration_seconds", l,
                     j["last_duration_seconds"].get<double>());
        }
        m.sample("mlkeeper_job_running", l, j["running"].get<bool>() ? 1 : 0);
    }
}

std::map<std::pair<std::string, std::string>, double> HistoryFamilies::job_counts() {
    auto st = db_.prepare("SELECT id, job, outcome FROM job_runs WHERE id > ?1 ORDER BY id");
    st.bind(1, counts_.watermark);
    auto out = counts_.finished;
    bool contiguous = true;  // every row so far has ended: the watermark may move past it
    while (st.step()) {
        const std::string job = st.column_text(1);
        counts_.jobs.insert(job);
        if (st.column_is_null(2)) {
            contiguous = false;
            continue;
        }
        const auto key = std::make_pair(job, st.column_text(2));
        out[key] += 1;
        if (contiguous) {
            counts_.finished[key] += 1;
            counts_.watermark = st.column_int64(0);
        }
    }
    return out;
}

nlohmann::json HistoryFamilies::jobs() {
    job_counts();  // learns the job names
    return job_rows();
}

nlohmann::json HistoryFamilies::job_rows() {
    // Each subquery walks the (job, started_at) index from the newest run and stops early.
    auto st = db_.prepare(
        "SELECT ?1, "
        " (SELECT started_at FROM job_runs WHERE job = ?1 AND outcome IS NOT 'skipped' "
        "  ORDER BY started_at DESC, id DESC LIMIT 1), "
        " (SELECT outcome FROM job_runs WHERE job = ?1 AND outcome IS NOT NULL "
        "  AND outcome <> 'skipped' ORDER BY started_at DESC, id DESC LIMIT 1), "
        " (SELECT ended_at - started_at FROM job_runs WHERE job = ?1 AND ended_at IS NOT NULL "
        "  AND outcome <> 'skipped' ORDER BY started_at DESC, id DESC LIMIT 1), "
        " (SELECT ended_at FROM job_runs WHERE job = ?1 AND outcome = 'success' "
        "  ORDER BY started_at DESC, id DESC LIMIT 1), "
        // A run still going is among the newest rows (later firings are skipped meanwhile).
        " EXISTS (SELECT 1 FROM (SELECT outcome FROM job_runs WHERE job = ?1 "
        "  ORDER BY started_at DESC, id DESC LIMIT 16) WHERE outcome IS NULL)");
    nlohmann::json out = nlohmann::json::array();
    for (const auto& job : counts_.jobs) {
        st.reset();
        st.bind(1, std::string_view(job));
        if (!st.step()) {
            continue;
        }
        nlohmann::json j = {{"job", st.column_text(0)},
                            {"last", nullptr},
                            {"last_outcome", nullptr},
                            {"last_duration_seconds", nullptr},
                            {"running", st.column_int64(5) != 0}};
        if (!st.column_is_null(1)) {
            j["last_ms"] = st.column_int64(1);
            j["last"] = rfc3339_of_ms(st.column_int64(1));
        }
        if (!st.column_is_null(2)) {
            j["last_outcome"] = st.column_text(2);
        }
        if (!st.column_is_null(3)) {
            j["last_duration_seconds"] = seconds_of_ms(st.column_int64(3));
        }
        if (!st.column_is_null(4)) {
            j["success_ms"] = st.column_int64(4);
        }
        out.push_back(std::move(j));
    }
    return out;
}

void HistoryFamilies::append_alerts(core::MetricsText& m) {
    m.family("mlkeeper_alerts_sent_total", MetricType::kCounter,
             "Alert notices delivered, by channel");
    m.family("mlkeeper_alerts_failed_total", MetricType::kCounter,
             "Alert notices a channel failed to deliver, by channel");
    m.family("mlkeeper_alerts_suppressed_total", MetricType::kCounter,
             "Repeats of a firing alert the cooldown held back");
    m.family("mlkeeper_alerts_firing", MetricType::kGauge, "Alerts firing now, by severity");

    // Kept by the alert dispatcher in the counters table (docs/STATE.md).
    double suppressed = 0;
    auto counters = db_.prepare(
        "SELECT name, labels, value FROM counters WHERE name IN "
        "('alerts_sent', 'alerts_failed', 'alerts_suppressed') ORDER BY name, labels");
    while (counters.step()) {
        const std::string name = counters.column_text(0);
        const std::string labels = counters.column_text(1);  // "channel=email"
        const double value = static_cast<double>(counters.column_int64(2));
        if (name == "alerts_suppressed") {
            suppressed += value;
            continue;
        }
        const std::string channel = labels.substr(labels.find('=') + 1);
        m.sample(
            name == "alerts_sent" ? "mlkeeper_alerts_sent_total" : "mlkeeper_alerts_failed_total",
            {{"channel", channel}}, value);
    }
    m.sample("mlkeeper_alerts_suppressed_total", suppressed);
    std::map<std::string, double> firing = {
        {"info", 0}, {"warning", 0}, {"critical", 0}, {"emergency", 0}};
    auto st = db_.prepare(
        "SELECT severity, count(*) FROM alerts WHERE state = 'firing' "
        "GROUP BY severity");
    while (st.step()) {
        firing[st.column_text(0)] = static_cast<double>(st.column_int64(1));
    }
    for (const auto& [severity, n] : firing) {
        m.sample("mlkeeper_alerts_firing", {{"severity", severity}}, n);
    }
}

nlohmann::json HistoryFamilies::recent_backups(std::size_t limit) {
    auto st = db_.prepare(
        std::string("SELECT ended_at, exit_code, json_extract(summary, '$.archive'), "
                    "json_extract(summary, '$.kind'), json_extract(summary, '$.bytes_out'), "
                    "json_extract(summary, '$.files'), json_extract(summary, '$.seconds'), "
                    "json_extract(summary, '$.verified'), json_extract(summary, '$.error') "
                    "FROM runs WHERE ") +
        kBackupRuns + " ORDER BY started_at DESC, id DESC LIMIT ?1");
    st.bind(1, static_cast<std::int64_t>(limit));
    nlohmann::json out = nlohmann::json::array();
    auto text_or_null = [&](int col) -> nlohmann::json {
        return st.column_is_null(col) ? nlohmann::json(nullptr)
                                      : nlohmann::json(st.column_text(col));
    };
    auto number_or_null = [&](int col) -> nlohmann::json {
        return st.column_is_null(col) ? nlohmann::json(nullptr)
                                      : nlohmann::json(st.column_double(col));
    };
    while (st.step()) {
        const bool ok = !st.column_is_null(1) && st.column_int64(1) == 0;
        out.push_back({{"at", rfc3339_of_ms(st.column_int64(0))},
                       {"archive", text_or_null(2)},
                       {"kind", text_or_null(3)},
                       {"bytes_out", number_or_null(4)},
                       {"files", number_or_null(5)},
                       {"seconds", number_or_null(6)},
                       {"verified", !st.column_is_null(7) && st.column_int64(7) != 0},
                       {"ok", ok},
                       {"error", st.column_is_null(8) ? std::string() : st.column_text(8)}});
    }
    return out;
}

nlohmann::json HistoryFamilies::alerts(std::size_t limit) {
    auto st = db_.prepare(
        "SELECT key, state, severity, summary, last_seen FROM alerts "
        "ORDER BY state = 'firing' DESC, last_seen DESC LIMIT ?1");
    st.bind(1, static_cast<std::int64_t>(limit));
    nlohmann::json out = nlohmann::json::array();
    while (st.step()) {
        out.push_back({{"key", st.column_text(0)},
                       {"state", st.column_text(1)},
                       {"severity", st.column_text(2)},
                       {"summary", st.column_text(3)},
                       {"last_seen", st.column_is_null(4)
                                         ? nlohmann::json(nullptr)
                                         : nlohmann::json(rfc3339_of_ms(st.column_int64(4)))}});
    }
    return out;
}

}  // namespace mlk::metrics
