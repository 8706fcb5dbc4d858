#include "mlkeeper/sched/run_log.hpp"

#include <unistd.h>

#include <array>

#include "mlkeeper/core/sqlite_db.hpp"

namespace mlk::sched {
namespace {

using core::Statement;

constexpr std::array<std::pair<Outcome, std::string_view>, 7> kOutcomes = {{
    {Outcome::kSuccess, "success"},
    {Outcome::kFailed, "failed"},
    {Outcome::kTimedOut, "timeout"},
    {Outcome::kCancelled, "cancelled"},
    {Outcome::kFailedToStart, "failed-to-start"},
    {Outcome::kSkipped, "skipped"},
    {Outcome::kInterrupted, "interrupted"},
}};

int64_t to_ms(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TimePoint from_ms(int64_t ms) {
    return TimePoint{std::chrono::milliseconds{ms}};
}

Trigger trigger_from_string(std::string_view s) {
    if (s == "catch-up") {
        return Trigger::kCatchUp;
    }
    return s == "manual" ? Trigger::kManual : Trigger::kScheduled;
}

void bind_optional(Statement& st, int index, std::optional<int64_t> v) {
    if (v) {
        st.bind(index, *v);
    } else {
        st.bind(index, nullptr);
    }
}

std::optional<int64_t> column_optional(const Statement& st, int index) {
    if (st.column_is_null(index)) {
        return std::nullopt;
    }
    return st.column_int64(index);
}

constexpr std::string_view kSelect =
    "SELECT id, job, trigger, elapse_at, started_at, ended_at, outcome, exit_code, signal, "
    "attempts, pid, pid_start, agent_pid, output_tail FROM job_runs ";

JobRunRecord read_row(const Statement& st) {
    JobRunRecord r;
    r.id = st.column_int64(0);
    r.job = st.column_text(1);
    r.trigger = trigger_from_string(st.column_text(2));
    if (auto v = column_optional(st, 3)) {
        r.elapse = from_ms(*v);
    }
    r.started = from_ms(st.column_int64(4));
    if (auto v = column_optional(st, 5)) {
        r.ended = from_ms(*v);
    }
    if (!st.column_is_null(6)) {
        r.outcome = outcome_from_string(st.column_text(6));
    }
    if (auto v = column_optional(st, 7)) {
        r.exit_code = static_cast<int>(*v);
    }
    if (auto v = column_optional(st, 8)) {
        r.signal = static_cast<int>(*v);
    }
    r.attempts = static_cast<int>(st.column_int64(9));
    if (auto v = column_optional(st, 10)) {
        r.pid = static_cast<pid_t>(*v);
    }
    if (auto v = column_optional(st, 11)) {
        r.pid_start = static_cast<std::uint64_t>(*v);
    }
    if (auto v = column_optional(st, 12)) {
        r.agent_pid = static_cast<pid_t>(*v);
    }
    if (!st.column_is_null(13)) {
        r.output_tail = st.column_text(13);
    }
    return r;
}

std::optional<int64_t> elapse_ms(std::optional<TimePoint> t) {
    return t ? std::optional<int64_t>(to_ms(*t)) : std::nullopt;
}

}  // namespace

std::string_view to_string(Outcome o) {
    for (const auto& [k, v] : kOutcomes) {
        if (k == o) {
            return v;
        }
    }
    return "?";
}

std::optional<Outcome> outcome_from_string(std::string_view s) {
    for (const auto& [k, v] : kOutcomes) {
        if (v == s) {
            return k;
        }
    }
    return std::nullopt;
}

Outcome to_outcome(JobOutcome o) {
    switch (o) {
        case JobOutcome::kSuccess:
            return Outcome::kSuccess;
        case JobOutcome::kFailed:
            return Outcome::kFailed;
        case JobOutcome::kTimedOut:
            return Outcome::kTimedOut;
        case JobOutcome::kCancelled:
            return Outcome::kCancelled;
        case JobOutcome::kFailedToStart:
            return Outcome::kFailedToStart;
    }
    return Outcome::kFailed;
}

int64_t RunLog::begin(std::string_view job, Trigger trigger, std::optional<TimePoint> elapse,
                      TimePoint started) {
    auto& db = store_.db();
    Statement st = db.prepare(
        "INSERT INTO job_runs (job, trigger, elapse_at, started_at, agent_pid) "
        "VALUES (?, ?, ?, ?, ?)");
    st.bind(1, job).bind(2, to_string(trigger));
    bind_optional(st, 3, elapse_ms(elapse));
    st.bind(4, to_ms(started)).bind(5, static_cast<int64_t>(::getpid()));
    st.step();
    return db.last_insert_rowid();
}

void RunLog::set_process(int64_t id, pid_t pid, std::optional<std::uint64_t> pid_start) {
    Statement st = store_.db().prepare("UPDATE job_runs SET pid = ?, pid_start = ? WHERE id = ?");
    st.bind(1, static_cast<int64_t>(pid));
    bind_optional(
        st, 2, pid_start ? std::optional<int64_t>(static_cast<int64_t>(*pid_start)) : std::nullopt);
    st.bind(3, id);
    st.step();
}

void RunLog::finish(int64_t id, Outcome outcome, std::optional<int> exit_code,
                    std::optional<int> signal, int attempts, TimePoint ended,
                    std::string_view output_tail) {
    Statement st = store_.db().prepare(
        "UPDATE job_runs SET ended_at = ?, outcome = ?, exit_code = ?, signal = ?, attempts = ?, "
        "output_tail = ? WHERE id = ?");
    st.bind(1, to_ms(ended)).bind(2, to_string(outcome));
    bind_optional(st, 3, exit_code ? std::optional<int64_t>(*exit_code) : std::nullopt);
    bind_optional(st, 4, signal ? std::optional<int64_t>(*signal) : std::nullopt);
    st.bind(5, attempts).bind(6, output_tail).bind(7, id);
    st.step();
}

void RunLog::record_skip(std::string_view job, Trigger trigger, std::optional<TimePoint> elapse,
                         TimePoint when, std::string_view reason) {
    const int64_t id = begin(job, trigger, elapse, when);
    finish(id, Outcome::kSkipped, std::nullopt, std::nullopt, 0, when, reason);
}

std::vector<JobRunRecord> RunLog::unfinished() const {
    auto& db = store_.db();
    Statement st = db.prepare(std::string(kSelect) + "WHERE outcome IS NULL ORDER BY id");
    std::vector<JobRunRecord> out;
    while (st.step()) {
        out.push_back(read_row(st));
    }
    return out;
}

std::optional<TimePoint> RunLog::last_trigger(std::string_view job) const {
    auto& db = store_.db();
    Statement st = db.prepare(
        "SELECT MAX(started_at) FROM job_runs WHERE job = ? AND "
        "(outcome IS NULL OR outcome != 'skipped')");
    st.bind(1, job);
    if (st.step() && !st.column_is_null(0)) {
        return from_ms(st.column_int64(0));
    }
    return std::nullopt;
}

std::vector<JobRunRecord> RunLog::recent(std::string_view job, std::size_t limit) const {
    auto& db = store_.db();
    std::string sql(kSelect);
    if (!job.empty()) {
        sql += "WHERE job = ? ";
    }
    sql += "ORDER BY started_at DESC, id DESC LIMIT ?";
    Statement st = db.prepare(sql);
    int idx = 1;
    if (!job.empty()) {
        st.bind(idx++, job);
    }
    st.bind(idx, static_cast<int64_t>(std::min<std::size_t>(limit, 1u << 30)));
    std::vector<JobRunRecord> out;
    while (st.step()) {
        out.push_back(read_row(st));
    }
    return out;
}

}  // namespace mlk::sched
