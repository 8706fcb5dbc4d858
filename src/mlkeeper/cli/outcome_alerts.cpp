#include "mlkeeper/cli/outcome_alerts.hpp"

#include <spdlog/spdlog.h>

#include "mlkeeper/alert/channels_config.hpp"
#include "mlkeeper/cli/command.hpp"

namespace mlk::cli {

OutcomeAlerts::OutcomeAlerts(Context& ctx)
    : ctx_(ctx), dispatcher_(alert::dispatcher_from_config(ctx.config())) {}

OutcomeAlerts::~OutcomeAlerts() = default;

void OutcomeAlerts::notify(const alert::Alert& a) {
    try {
        alert::AlertStateStore state(ctx_.state(), alert::policy_from_config(ctx_.config()));
        dispatcher_->notify(state, a);
    } catch (const std::exception& e) {
        spdlog::warn("could not process alert {}: {}", a.key, e.what());
    }
}

void OutcomeAlerts::fire(alert::Alert a) {
    notify(a);
}

void OutcomeAlerts::resolve(const std::string& key, const std::string& check,
                            const std::string& summary) {
    alert::Alert a;
    a.key = key;
    a.check = check;
    a.state = alert::AlertState::kResolved;
    a.summary = summary;
    notify(a);
}

}  // namespace mlk::cli
