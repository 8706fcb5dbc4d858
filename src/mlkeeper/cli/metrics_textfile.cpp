#include "mlkeeper/cli/metrics_textfile.hpp"

#include <spdlog/spdlog.h>

#include <string>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/metrics/history_families.hpp"

namespace mlk::cli {

bool writes_metrics_textfile(std::string_view command) {
    return command == "backup" || command == "cleanup";
}

void write_metrics_textfile(Context& ctx, std::string_view command) {
    const auto& cfg = ctx.config();
    if (!writes_metrics_textfile(command) || !cfg.is_set("metrics.textfile_dir") ||
        cfg.path("metrics.textfile_dir").empty()) {
        return;
    }
    const auto dir = cfg.path("metrics.textfile_dir");
    try {
        metrics::HistoryFamilies db(ctx.state().path());
        core::MetricsText m;
        if (command == "backup") {
            db.append_backup(m);
        } else {
            db.append_cleanup(m);
        }
        core::write_textfile(dir, "mlkeeper_" + std::string(command) + ".prom", m.str());
    } catch (const std::exception& e) {
        spdlog::warn("cannot write the metrics textfile in {}: {}", dir.string(), e.what());
    }
}

}  // namespace mlk::cli
