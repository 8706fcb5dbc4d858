#include "mlkeeper/alert/alert_state.hpp"

#include <mutex>

#include "mlkeeper/core/sqlite_db.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::alert {
namespace {

Severity raise(Severity s) {
    return s == Severity::kInfo      ? Severity::kWarning
           : s == Severity::kWarning ? Severity::kCritical
                                     : Severity::kEmergency;
}

KeyState read_row(core::Statement& st) {
    KeyState k;
    k.key = st.column_text(0);
    k.state = st.column_text(1) == "resolved" ? AlertState::kResolved : AlertState::kFiring;
    k.severity = parse_severity(st.column_text(2)).value_or(Severity::kWarning);
    k.summary = st.column_text(3);
    k.first_seen = util::from_unix_ms(st.column_int64(4));
    k.last_seen = util::from_unix_ms(st.column_int64(5));
    if (!st.column_is_null(6)) {
        k.last_sent = util::from_unix_ms(st.column_int64(6));
    }
    k.suppressed = static_cast<int>(st.column_int64(7));
    k.occurrences = static_cast<int>(st.column_int64(8));
    k.escalated = st.column_int64(9) != 0;
    return k;
}

constexpr const char* kSelect =
    "SELECT key, state, severity, summary, first_seen, last_seen, last_sent, suppressed, "
    "occurrences, escalated FROM alerts";

std::optional<KeyState> load(core::Database& db, const std::string& key) {
    auto st = db.prepare(std::string(kSelect) + " WHERE key = ?");
    st.bind(1, std::string_view(key));
    if (!st.step()) {
        return std::nullopt;
    }
    return read_row(st);
}

void store(core::Database& db, const KeyState& k) {
    auto st = db.prepare(
        "INSERT INTO alerts (key, state, severity, summary, first_seen, last_seen, last_sent, "
        "suppressed, occurrences, escalated) VALUES (?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(key) DO UPDATE SET state=excluded.state, severity=excluded.severity, "
        "summary=excluded.summary, first_seen=excluded.first_seen, last_seen=excluded.last_seen, "
        "last_sent=excluded.last_sent, suppressed=excluded.suppressed, "
        "occurrences=excluded.occurrences, escalated=excluded.escalated");
    st.bind(1, std::string_view(k.key));
    st.bind(2, std::string_view(k.state == AlertState::kResolved ? "resolved" : "firing"));
    st.bind(3, to_string(k.severity));
    st.bind(4, std::string_view(k.summary));
    st.bind(5, util::to_unix_ms(k.first_seen));
    st.bind(6, util::to_unix_ms(k.last_seen));
    if (k.last_sent) {
        st.bind(7, util::to_unix_ms(*k.last_sent));
    } else {
        st.bind(7, nullptr);
    }
    st.bind(8, static_cast<std::int64_t>(k.suppressed));
    st.bind(9, static_cast<std::int64_t>(k.occurrences));
    st.bind(10, static_cast<std::int64_t>(k.escalated ? 1 : 0));
    st.step();
}

}  // namespace

std::chrono::seconds AlertPolicy::cooldown(Severity s) const {
    switch (s) {
        case Severity::kInfo:
            return cooldown_info;
        case Severity::kWarning:
            return cooldown_warning;
        case Severity::kCritical:
            return cooldown_critical;
        case Severity::kEmergency:
            return cooldown_emergency;
    }
    return cooldown_warning;
}

namespace {
// Twice the cooldown (at least 15 minutes): a repeat that the cooldown hid
// keeps the alert alive in receivers that expire alerts (Alertmanager).
std::chrono::system_clock::time_point expiry(Severity s, const AlertPolicy& policy,
                                             std::chrono::system_clock::time_point now) {
    return now + std::max<std::chrono::seconds>(2 * policy.cooldown(s), std::chrono::minutes(15));
}
}  // namespace

Decision decide(const std::optional<KeyState>& previous, const Alert& alert,
                const AlertPolicy& policy, std::chrono::system_clock::time_point now) {
    Decision d = decide_state(previous, alert, policy, now);
    if (d.alert.state == AlertState::kFiring) {
        d.alert.expires_at = expiry(d.alert.severity, policy, now);
    }
    return d;
}

Decision decide_state(const std::optional<KeyState>& previous, const Alert& alert,
                      const AlertPolicy& policy, std::chrono::system_clock::time_point now) {
    Decision d;
    d.alert = alert;
    if (alert.state == AlertState::kResolved) {
        if (!previous || previous->state != AlertState::kFiring) {
            d.verdict = Verdict::kIgnore;
            d.reason = "not firing";
            d.next = previous;
            return d;
        }
        KeyState next = *previous;
        d.verdict = Verdict::kSend;
        d.reason = "resolved";
        d.alert.severity = previous->severity;
        d.alert.occurrences = previous->occurrences;
        d.alert.suppressed = previous->suppressed;
        next.state = AlertState::kResolved;
        next.summary = alert.summary;
        next.last_seen = now;
        next.last_sent = now;
        next.suppressed = 0;
        next.occurrences = 0;
        next.escalated = false;
        d.next = next;
        return d;
    }

    if (!previous || previous->state == AlertState::kResolved) {
        d.verdict = Verdict::kSend;
        d.reason = "new";
        d.alert.occurrences = 1;
        d.alert.suppressed = 0;
        d.next = KeyState{
            alert.key, AlertState::kFiring, alert.severity, alert.summary, now, now, now, 0, 1,
            false};
        return d;
    }

    const KeyState& p = *previous;
    KeyState next = p;
    next.summary = alert.summary;
    next.last_seen = now;
    next.occurrences = p.occurrences + 1;
    Severity severity = alert.severity;
    if (p.escalated && p.severity > severity) {
        severity = p.severity;  // stays escalated until resolved
    }
    if (policy.escalate_after > 0 && !p.escalated && next.occurrences >= policy.escalate_after &&
        severity < Severity::kEmergency) {
        severity = raise(severity);
        next.escalated = true;
        d.verdict = Verdict::kSend;
        d.escalation = true;
        d.reason = "escalated after " + std::to_string(next.occurrences) + " occurrences";
    } else if (severity > p.severity) {
        d.verdict = Verdict::kSend;
        d.reason = "severity rose";
    } else if (!p.last_sent || now - *p.last_sent >= policy.cooldown(severity)) {
        d.verdict = Verdict::kSend;
        d.reason = "cooldown expired";
    } else {
        d.verdict = Verdict::kSuppress;
        d.reason = "in cooldown";
    }
    next.severity = severity;
    d.alert.severity = severity;
    d.alert.occurrences = next.occurrences;
    if (d.verdict == Verdict::kSend) {
        d.alert.suppressed = p.suppressed;
        next.suppressed = 0;
        next.last_sent = now;
    } else {
        next.suppressed = p.suppressed + 1;
        d.alert.suppressed = next.suppressed;
    }
    d.next = next;
    return d;
}

AlertStateStore::AlertStateStore(core::StateStore& store, AlertPolicy policy)
    : store_(store), policy_(policy) {}

Decision AlertStateStore::record(const Alert& alert, std::chrono::system_clock::time_point now) {
    auto& db = store_.db();
    core::Transaction tx(db, core::TransactionKind::kImmediate);
    auto previous = load(db, alert.key);
    auto d = decide(previous, alert, policy_, now);
    if (d.next) {
        store(db, *d.next);
    }
    tx.commit();
    // Remember what undo_send() restores if nothing gets through.
    previous_sent_[alert.key] = previous ? previous->last_sent : std::nullopt;
    return d;
}

void AlertStateStore::undo_send(const Decision& d) {
    if (!d.next || d.verdict != Verdict::kSend) {
        return;
    }
    auto& db = store_.db();
    core::Transaction tx(db, core::TransactionKind::kImmediate);
    auto current = load(db, d.alert.key);
    // Still our send (the store keeps milliseconds)? Then give it back.
    auto ms = [](const std::optional<std::chrono::system_clock::time_point>& t) {
        return t ? util::to_unix_ms(*t) : -1;
    };
    if (current && ms(current->last_sent) == ms(d.next->last_sent)) {
        auto it = previous_sent_.find(d.alert.key);
        current->last_sent = it != previous_sent_.end() ? it->second : std::nullopt;
        current->suppressed = d.alert.suppressed;  // keep the count for the next try
        store(db, *current);
    }
    tx.commit();
}

// Counters table (docs/STATE.md): one atomic UPSERT each, so processes raising alerts at once
// lose no count.
void AlertStateStore::count_failure(const std::string& channel) {
    store_.counter_add("alerts_failed", "channel=" + channel, 1);
}

void AlertStateStore::count_sent(const std::string& channel) {
    store_.counter_add("alerts_sent", "channel=" + channel, 1);
}

void AlertStateStore::count_suppressed() {
    store_.counter_add("alerts_suppressed", "", 1);
}

std::map<std::string, std::int64_t> AlertStateStore::failure_counts() {
    std::map<std::string, std::int64_t> out;
    for (const auto& c : store_.counters("alerts_failed")) {
        out[c.labels.substr(c.labels.find('=') + 1)] = c.value;
    }
    return out;
}

std::optional<KeyState> AlertStateStore::get(const std::string& key) {
    return load(store_.db(), key);
}

std::vector<KeyState> AlertStateStore::all() {
    auto st = store_.db().prepare(std::string(kSelect) + " ORDER BY key");
    std::vector<KeyState> out;
    while (st.step()) {
        out.push_back(read_row(st));
    }
    return out;
}

}  // namespace mlk::alert
