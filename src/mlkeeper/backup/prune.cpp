#include "mlkeeper/backup/prune.hpp"

namespace mlk::backup {

RetentionPolicy policy_from_config(const core::Config& cfg) {
    RetentionPolicy p;
    p.max_age = cfg.duration("backup.retention_days");
    p.keep_min = static_cast<int>(cfg.integer("backup.keep_min"));
    p.keep_last = static_cast<int>(cfg.integer("backup.keep_last"));
    p.keep_daily = static_cast<int>(cfg.integer("backup.keep_daily"));
    p.keep_weekly = static_cast<int>(cfg.integer("backup.keep_weekly"));
    p.keep_monthly = static_cast<int>(cfg.integer("backup.keep_monthly"));
    return p;
}

std::vector<Decision> plan_for(const std::vector<CatalogEntry>& catalog,
                               const RetentionPolicy& policy,
                               std::chrono::system_clock::time_point now) {
    std::vector<ArchiveInfo> infos;
    infos.reserve(catalog.size());
    for (const auto& c : catalog) {
        infos.push_back({c.name, c.created, c.verified(), c.depends_on()});
    }
    return plan_retention(infos, policy, now);
}

PruneResult prune_destination(const std::filesystem::path& dest, const RetentionPolicy& policy,
                              std::chrono::system_clock::time_point now, DryRun dry_run) {
    return prune_catalog(dest, list_archives(dest), policy, now, dry_run);
}

PruneResult prune_catalog(const std::filesystem::path& dest,
                          const std::vector<CatalogEntry>& catalog, const RetentionPolicy& policy,
                          std::chrono::system_clock::time_point now, DryRun dry_run) {
    PruneResult r;
    r.decisions = plan_for(catalog, policy, now);
    for (std::size_t i = 0; i < catalog.size(); ++i) {
        if (r.decisions[i].verdict != Verdict::kDelete) {
            continue;
        }
        if (dry_run == DryRun::kNo) {
            delete_archive(dest, catalog[i].name);
        }
        r.deleted.push_back(catalog[i].name);
        r.bytes_freed += catalog[i].size;
    }
    return r;
}

}  // namespace mlk::backup
