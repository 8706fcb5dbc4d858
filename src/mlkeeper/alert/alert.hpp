// What an alert is: a key that identifies the condition ("gpu0_temp"), a
// severity, a one-line summary and named fields (value, threshold, host...),
// and whether it fires or resolves. Channels format it; the dispatcher
// decides whether to send it (cooldown, escalation, recovery).
// Thread safety: plain value types.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace mlk::alert {

enum class Severity { kInfo, kWarning, kCritical, kEmergency };
std::string_view to_string(Severity s);  // "info", "warning", "critical", "emergency"
std::optional<Severity> parse_severity(std::string_view s);

enum class AlertState { kFiring, kResolved };

struct Alert {
    std::string key;  // stable identity of the condition, e.g. "gpu0_temp"
    Severity severity = Severity::kWarning;
    AlertState state = AlertState::kFiring;
    std::string summary;    // one line: "GPU 0 temperature 87°C exceeds 85°C"
    std::string check;      // what produced it: "gpu", "health", "backup", "cleanup", ...
    std::string value;      // observed value, e.g. "87°C" (may be empty)
    std::string threshold;  // e.g. "85°C" (may be empty)
    std::string action;     // what to do about it (one sentence; may be empty)
    std::string host;       // filled by the dispatcher when empty
    std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
    int suppressed = 0;   // repeats swallowed by cooldown since the last send
    int occurrences = 1;  // how many times the condition has fired in a row
    // A firing alert counts as active until then without a new notice (the
    // cooldown hides repeats); Alertmanager's endsAt. Set by the state rule.
    std::optional<std::chrono::system_clock::time_point> expires_at;
    std::map<std::string, std::string> fields;  // extra key/values (gpu_index, mount, ...)
};

// Outcome of one delivery attempt sequence on one channel.
struct DeliveryResult {
    bool ok = false;
    int attempts = 0;
    std::string error;  // the last error, exact ("connection refused to 127.0.0.1:2525")
};

}  // namespace mlk::alert
