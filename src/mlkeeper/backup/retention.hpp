// Backup retention: decides which archives to keep and which to delete, with human-readable
// reasons for `backups prune --dry-run`. Pure logic on a list; it never touches the filesystem.
// Thread safety: plan_retention() is reentrant, but its day/week/month buckets read the process
// time zone (localtime_r), so a concurrent setenv("TZ")/tzset() changes its results.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace mlk::backup {

// One archive as listed by the caller. Archives still being written (temp files) must not be in
// the list: they are not archives yet.
struct ArchiveInfo {
    std::string name;                               // file name; unique within one list
    std::chrono::system_clock::time_point created;  // from the manifest, or the name's timestamp
    bool verified = false;                          // its checksums were verified after writing
    // Every archive this one needs to be restored (all incremental parents, or only the direct
    // one: the needs are followed transitively either way).
    std::vector<std::string> depends_on;
};

// For keep_last/keep_daily/keep_weekly/keep_monthly: no limit, as restic's "--keep-daily -1".
inline constexpr int kUnlimited = -1;

// Which archives to keep. An archive is KEPT if ANY of these rules keeps it:
//   1. it is the newest archive of all (a safety net: a prune never leaves nothing, even when
//      no backup was ever verified);
//   2. age: it is at most `max_age` old (the seeds' RETENTION_DAYS; "older than 30 days" is
//      deleted, exactly 30 days is kept). max_age == 0 turns this rule off, which gives pure
//      restic behaviour together with the keep_* rules;
//   3. keep_min: it is among the `keep_min` newest VERIFIED archives, however old. This is why a
//      month of failed backups no longer deletes every good one (the seeds' `find -mtime +30
//      -delete` did). Unverified archives never count toward keep_min;
//   4. keep_last: it is among the `keep_last` newest archives (verified or not);
//   5. keep_daily / keep_weekly / keep_monthly: like restic's `forget --keep-daily N` etc.: the
//      newest archive of each of the N newest local-time days (ISO 8601 weeks, calendar months)
//      that have archives at all. Verified or not, every archive counts;
//   6. it is needed (transitively) by an archive kept for any reason: an incremental can only be
//      restored with all of its parents.
// The age rule is NOT replaced by the keep_* rules: with both set, an archive younger than
// max_age is kept even if no keep_* rule selects it (keep = young OR keep_* OR keep_min OR
// needed). Every other archive is deleted. Counts of 0 disable a rule; kUnlimited (-1) keeps
// every bucket; other negative values, a negative keep_min and a negative max_age are invalid.
struct RetentionPolicy {
    std::chrono::seconds max_age{30 * 86400};
    int keep_min = 3;
    int keep_last = 0;
    int keep_daily = 0;
    int keep_weekly = 0;
    int keep_monthly = 0;
};

enum class Verdict { kKeep, kDelete };

// "keep" / "delete", for text and JSON output.
std::string_view to_string(Verdict v);

struct Decision {
    std::string name;
    Verdict verdict = Verdict::kDelete;
    // Why, one entry per rule that applied, in rule order: "newest archive (always kept)",
    // "within 30d retention", "keep_min: 2nd newest verified", "keep_last: newest",
    // "daily 2026-11-20", "weekly 2026-W47", "monthly 2026-11",
    // "needed by models_backup_20261122_020000.tar.zst" (one per kept dependent, newest first);
    // for deletions "older than 30d" and/or "no keep_* rule matched" (or "no keep rule matched").
    // Never empty.
    std::vector<std::string> reasons;
    // Problems that did not stop the plan: a dependency that is not in the list, an archive that
    // lists itself, a creation time in the future (clock skew).
    std::vector<std::string> warnings;
};

// Plans a prune of `archives` at time `now`. Returns one Decision per input archive, in the
// INPUT order. "Newest" means the latest `created`; equal times are ordered by name, the larger
// name counting as newer (timestamped names sort chronologically), so ties are deterministic.
// Ages are compared to the millisecond. Throws std::invalid_argument for duplicate names or an
// invalid policy, and std::system_error if a time needed for a day/week/month bucket cannot be
// represented as a calendar date.
std::vector<Decision> plan_retention(const std::vector<ArchiveInfo>& archives,
                                     const RetentionPolicy& policy,
                                     std::chrono::system_clock::time_point now);

}  // namespace mlk::backup
