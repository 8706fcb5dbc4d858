// Whether an alert should go out now: per-key cooldown by severity, counted
// suppressed repeats, escalation after N repeats, one "resolved" notice when
// a condition clears. decide() is the pure rule; AlertStateStore applies it
// to the SQLite state store atomically, so separate processes agree.
// Thread safety: AlertStateStore serialises through SQLite transactions.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/alert/alert.hpp"
#include "mlkeeper/core/state_store.hpp"

namespace mlk::alert {

struct AlertPolicy {
    std::chrono::seconds cooldown_info{4 * 3600};
    std::chrono::seconds cooldown_warning{3600};  // ALERT_COOLDOWN
    std::chrono::seconds cooldown_critical{1800};
    std::chrono::seconds cooldown_emergency{300};
    int escalate_after = 5;  // occurrences before the severity rises; 0 = never

    std::chrono::seconds cooldown(Severity s) const;
};

// The persisted state of one key (a row of the `alerts` table).
struct KeyState {
    std::string key;
    AlertState state = AlertState::kFiring;
    Severity severity = Severity::kWarning;
    std::string summary;
    std::chrono::system_clock::time_point first_seen, last_seen;
    std::optional<std::chrono::system_clock::time_point> last_sent;
    int suppressed = 0;
    int occurrences = 0;
    bool escalated = false;
};

enum class Verdict { kSend, kSuppress, kIgnore };

struct Decision {
    Verdict verdict = Verdict::kIgnore;
    Alert alert;                   // what to send (severity after escalation, counts filled)
    bool escalation = false;       // this send is an escalation: also use escalate_to
    std::string reason;            // "new", "cooldown expired", "severity rose", "escalated", ...
    std::optional<KeyState> next;  // the state to store (nullopt: delete the row)
};

// The rule. `previous` is the stored state of alert.key, if any.
Decision decide_state(const std::optional<KeyState>& previous, const Alert& alert,
                      const AlertPolicy& policy, std::chrono::system_clock::time_point now);
// decide_state() plus the firing alert's expiry.
Decision decide(const std::optional<KeyState>& previous, const Alert& alert,
                const AlertPolicy& policy, std::chrono::system_clock::time_point now);

class AlertStateStore {
  public:
    AlertStateStore(core::StateStore& store, AlertPolicy policy);

    // Reads, decides and stores in one IMMEDIATE transaction.
    Decision record(const Alert& alert, std::chrono::system_clock::time_point now);
    // After a send that reached no channel: give the cooldown back, so the
    // next report tries again instead of waiting.
    void undo_send(const Decision& d);

    // Delivery failures per channel, kept for `alert status` and metrics (counter alerts_failed).
    void count_failure(const std::string& channel);
    // Notices delivered per channel and repeats the cooldown held back, for metrics (counters
    // alerts_sent, alerts_suppressed). Each is one atomic increment, safe across processes.
    void count_sent(const std::string& channel);
    void count_suppressed();
    std::map<std::string, std::int64_t> failure_counts();

    std::optional<KeyState> get(const std::string& key);
    std::vector<KeyState> all();

  private:
    core::StateStore& store_;
    AlertPolicy policy_;
    std::map<std::string, std::optional<std::chrono::system_clock::time_point>> previous_sent_;
};

}  // namespace mlk::alert
