// Alerts about a command's own outcome (a backup failed, verification
// failed, it works again): built from [alerts] before the work starts, so a
// bad alert configuration stops the command early (exit 78), and sending
// never turns a finished command into a failure.
// Thread safety: one per command run.
#pragma once

#include <memory>
#include <string>

#include "mlkeeper/alert/alert.hpp"

namespace mlk::alert {
class Dispatcher;
}

namespace mlk::cli {

class Context;

class OutcomeAlerts {
  public:
    explicit OutcomeAlerts(Context& ctx);
    ~OutcomeAlerts();

    void fire(alert::Alert a);
    void resolve(const std::string& key, const std::string& check, const std::string& summary);

  private:
    void notify(const alert::Alert& a);

    Context& ctx_;
    std::unique_ptr<alert::Dispatcher> dispatcher_;
};

}  // namespace mlk::cli
