#include "mlkeeper/alert/alert.hpp"

namespace mlk::alert {

std::string_view to_string(Severity s) {
    switch (s) {
        case Severity::kInfo:
            return "info";
        case Severity::kWarning:
            return "warning";
        case Severity::kCritical:
            return "critical";
        case Severity::kEmergency:
            return "emergency";
    }
    return "warning";
}

std::optional<Severity> parse_severity(std::string_view s) {
    for (auto sev :
         {Severity::kInfo, Severity::kWarning, Severity::kCritical, Severity::kEmergency}) {
        if (to_string(sev) == s) {
            return sev;
        }
    }
    return std::nullopt;
}

}  // namespace mlk::alert
