#include "mlkeeper/cli/command.hpp"

namespace mlk::cli {

const std::vector<Command>& commands() {
    static const std::vector<Command> kTable = {
        maintain_command(), backup_command(),   verify_command(),   restore_command(),
        backups_command(),  gpu_command(),      health_command(),   cleanup_command(),
        alert_command(),    calendar_command(), schedule_command(), agent_command(),
        models_command(),   shutdown_command(), nginx_command(),    keygen_command(),
        config_command(),   history_command(),
    };
    return kTable;
}

}  // namespace mlk::cli
