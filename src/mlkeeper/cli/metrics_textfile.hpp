// node_exporter textfile output for one-shot runs: after `backup` or `cleanup` has recorded its
// run, the command's families (the same the agent's /metrics serves, read back from the state
// database) go to [metrics] textfile_dir/mlkeeper_COMMAND.prom, atomically.
// Thread safety: call from the command's thread, after the run was recorded.
#pragma once

#include <string_view>

namespace mlk::cli {

class Context;

// Whether `command` has families to write (backup, cleanup).
bool writes_metrics_textfile(std::string_view command);

// Writes them when metrics.textfile_dir is set; a failure is logged as a warning (the run
// itself succeeded or failed on its own).
void write_metrics_textfile(Context& ctx, std::string_view command);

}  // namespace mlk::cli
