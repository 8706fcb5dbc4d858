// Applying the retention policy to a destination: plan with
// plan_retention() over the catalog, then delete (or, dry-run, only report).
// Thread safety: needs the destination lock unless dry-run.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "mlkeeper/backup/catalog.hpp"
#include "mlkeeper/backup/retention.hpp"
#include "mlkeeper/core/config.hpp"

namespace mlk::backup {

enum class DryRun { kNo, kYes };

RetentionPolicy policy_from_config(const core::Config& cfg);

struct PruneResult {
    std::vector<Decision> decisions;  // oldest first
    std::vector<std::string> deleted;
    std::uint64_t bytes_freed = 0;
};

PruneResult prune_destination(const std::filesystem::path& dest, const RetentionPolicy& policy,
                              std::chrono::system_clock::time_point now, DryRun dry_run);

// Same, over an already loaded catalog of `dest` (saves parsing every
// manifest again right after a backup).
PruneResult prune_catalog(const std::filesystem::path& dest,
                          const std::vector<CatalogEntry>& catalog, const RetentionPolicy& policy,
                          std::chrono::system_clock::time_point now, DryRun dry_run);

// Decisions over an already loaded catalog (plus archives about to exist).
std::vector<Decision> plan_for(const std::vector<CatalogEntry>& catalog,
                               const RetentionPolicy& policy,
                               std::chrono::system_clock::time_point now);

}  // namespace mlk::backup
