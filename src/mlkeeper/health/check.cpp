#include "mlkeeper/health/check.hpp"

namespace mlk::health {

std::string_view to_string(Status s) {
    switch (s) {
        case Status::kPass:
            return "pass";
        case Status::kWarn:
            return "warn";
        case Status::kFail:
            return "fail";
    }
    return "fail";
}

Status grade(double value, const Thresholds& t) {
    if (value > t.crit) {
        return Status::kFail;
    }
    if (value > t.warn) {
        return Status::kWarn;
    }
    return Status::kPass;
}

CheckResult error_result(std::string check, std::string key, std::string category,
                         std::string message) {
    CheckResult r;
    r.check = std::move(check);
    r.key = std::move(key);
    r.category = std::move(category);
    r.status = Status::kWarn;
    r.ran = Ran::kError;
    r.message = std::move(message);
    return r;
}

CheckResult skipped_result(std::string check, std::string key, std::string category,
                           std::string reason) {
    CheckResult r;
    r.check = std::move(check);
    r.key = std::move(key);
    r.category = std::move(category);
    r.status = Status::kPass;
    r.ran = Ran::kSkipped;
    r.message = r.check + ": skipped: " + std::move(reason);
    return r;
}

}  // namespace mlk::health
