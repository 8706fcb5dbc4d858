#include "mlkeeper/backup/retention.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::backup {

namespace {

using Clock = std::chrono::system_clock;

// "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "111th".
std::string ordinal(std::size_t n) {
    const std::size_t mod100 = n % 100;
    const char* suffix = "th";
    if (mod100 < 11 || mod100 > 13) {
        switch (n % 10) {
            case 1:
                suffix = "st";
                break;
            case 2:
                suffix = "nd";
                break;
            case 3:
                suffix = "rd";
                break;
            default:
                break;
        }
    }
    return std::to_string(n) + suffix;
}

// "newest", "2nd newest", ... for rank 0, 1, ...
std::string newest_rank(std::size_t rank) {
    return rank == 0 ? "newest" : ordinal(rank + 1) + " newest";
}

std::int64_t floor_ms(Clock::time_point tp) {
    // Milliseconds span +-292 million years, so neither this nor a difference of two of them can
    // overflow, unlike `now - created` in the nanosecond clock for extreme inputs.
    return std::chrono::floor<std::chrono::milliseconds>(tp.time_since_epoch()).count();
}

void validate(const RetentionPolicy& policy) {
    if (policy.max_age.count() < 0) {
        throw std::invalid_argument("retention: max_age must not be negative, got " +
                                    std::to_string(policy.max_age.count()) + "s");
    }
    if (policy.keep_min < 0) {
        throw std::invalid_argument("retention: keep_min must not be negative, got " +
                                    std::to_string(policy.keep_min));
    }
    const std::pair<const char*, int> counts[] = {{"keep_last", policy.keep_last},
                                                  {"keep_daily", policy.keep_daily},
                                                  {"keep_weekly", policy.keep_weekly},
                                                  {"keep_monthly", policy.keep_monthly}};
    for (const auto& [what, value] : counts) {
        if (value < kUnlimited) {
            throw std::invalid_argument(std::string("retention: ") + what +
                                        " must be >= 0 or -1 (unlimited), got " +
                                        std::to_string(value));
        }
    }
}

// restic's bucket rule: walking newest first, keep an archive when its bucket differs from the
// bucket of the last archive this rule kept, until `remaining` runs out. That is the newest
// archive of each of the N newest buckets that have archives.
class BucketRule {
  public:
    BucketRule(int count, const char* label, const char* strftime_fmt)
        : remaining_(count), label_(label), fmt_(strftime_fmt) {}

    // The reason to keep `tp`, or nullopt. Call in newest-first order.
    std::optional<std::string> consider(Clock::time_point tp) {
        if (remaining_ == 0) {
            return std::nullopt;
        }
        std::string key = util::format_local(tp, fmt_);
        if (last_ && *last_ == key) {
            return std::nullopt;
        }
        if (remaining_ > 0) {
            --remaining_;
        }
        last_ = key;
        return std::string(label_) + " " + key;
    }

  private:
    int remaining_;  // kUnlimited (-1) never reaches 0
    const char* label_;
    const char* fmt_;
    std::optional<std::string> last_;
};

}  // namespace

std::string_view to_string(Verdict v) {
    return v == Verdict::kKeep ? "keep" : "delete";
}

std::vector<Decision> plan_retention(const std::vector<ArchiveInfo>& archives,
                                     const RetentionPolicy& policy, Clock::time_point now) {
    validate(policy);

    std::unordered_map<std::string, std::size_t> by_name;
    by_name.reserve(archives.size());
    for (std::size_t i = 0; i < archives.size(); ++i) {
        if (!by_name.emplace(archives[i].name, i).second) {
            throw std::invalid_argument("retention: archive name listed twice: " +
                                        archives[i].name);
        }
    }

    std::vector<Decision> out(archives.size());
    for (std::size_t i = 0; i < archives.size(); ++i) {
        out[i].name = archives[i].name;
    }

    std::vector<std::size_t> order(archives.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        if (archives[a].created != archives[b].created) {
            return archives[a].created > archives[b].created;
        }
        return archives[a].name > archives[b].name;
    });

    const std::string age_text = util::format_duration_setting(policy.max_age);
    const bool age_rule = policy.max_age.count() > 0;
    // Beyond this many seconds the age in milliseconds would overflow: everything is young.
    const bool age_unbounded =
        policy.max_age.count() > std::numeric_limits<std::int64_t>::max() / 1000;
    const std::int64_t max_age_ms = age_unbounded ? 0 : policy.max_age.count() * 1000;
    const std::int64_t now_ms = floor_ms(now);
    const bool any_keep_rule = policy.keep_last != 0 || policy.keep_daily != 0 ||
                               policy.keep_weekly != 0 || policy.keep_monthly != 0;

    BucketRule daily(policy.keep_daily, "daily", "%Y-%m-%d");
    BucketRule weekly(policy.keep_weekly, "weekly", "%G-W%V");
    BucketRule monthly(policy.keep_monthly, "monthly", "%Y-%m");

    std::vector<char> kept(archives.size(), 0);
    std::size_t verified_seen = 0;
    for (std::size_t rank = 0; rank < order.size(); ++rank) {
        const std::size_t i = order[rank];
        const ArchiveInfo& a = archives[i];
        std::vector<std::string>& reasons = out[i].reasons;
        const std::int64_t age_ms = now_ms - floor_ms(a.created);

        if (rank == 0) {
            reasons.push_back("newest archive (always kept)");
        }
        if (age_rule && (age_unbounded || age_ms <= max_age_ms)) {
            reasons.push_back("within " + age_text + " retention");
        }
        if (a.verified) {
            if (verified_seen < static_cast<std::size_t>(policy.keep_min)) {
                reasons.push_back("keep_min: " + newest_rank(verified_seen) + " verified");
            }
            ++verified_seen;
        }
        if (policy.keep_last == kUnlimited ||
            rank < static_cast<std::size_t>(std::max(policy.keep_last, 0))) {
            reasons.push_back("keep_last: " + newest_rank(rank));
        }
        for (BucketRule* rule : {&daily, &weekly, &monthly}) {
            if (auto why = rule->consider(a.created)) {
                reasons.push_back(std::move(*why));
            }
        }
        if (age_ms < 0) {
            out[i].warnings.push_back("created in the future (" + util::iso8601_utc(a.created) +
                                      "); is a clock wrong?");
        }
        kept[i] = reasons.empty() ? 0 : 1;
    }

    // Dependencies that cannot be followed are reported on the archive that names them, kept or
    // not: a deleted archive with a missing parent was unrestorable anyway, worth knowing.
    for (std::size_t i = 0; i < archives.size(); ++i) {
        std::unordered_set<std::string_view> seen;
        for (const std::string& dep : archives[i].depends_on) {
            if (!seen.insert(dep).second) {
                continue;
            }
            if (dep == archives[i].name) {
                out[i].warnings.push_back("lists itself as a dependency");
            } else if (by_name.find(dep) == by_name.end()) {
                out[i].warnings.push_back("depends on " + dep + ", which is not in the list");
            }
        }
    }

    // Close the kept set over dependencies first, then label, so the "needed by" reasons do not
    // depend on the traversal order: each names a kept direct dependent, newest first.
    std::vector<std::size_t> work;
    for (std::size_t i = 0; i < archives.size(); ++i) {
        if (kept[i]) {
            work.push_back(i);
        }
    }
    while (!work.empty()) {
        const std::size_t i = work.back();
        work.pop_back();
        for (const std::string& dep : archives[i].depends_on) {
            const auto it = by_name.find(dep);
            if (it != by_name.end() && !kept[it->second]) {
                kept[it->second] = 1;
                work.push_back(it->second);
            }
        }
    }
    for (const std::size_t i : order) {
        if (!kept[i]) {
            continue;
        }
        std::unordered_set<std::size_t> labelled;
        for (const std::string& dep : archives[i].depends_on) {
            const auto it = by_name.find(dep);
            if (it != by_name.end() && it->second != i && labelled.insert(it->second).second) {
                out[it->second].reasons.push_back("needed by " + archives[i].name);
            }
        }
    }

    for (std::size_t i = 0; i < archives.size(); ++i) {
        Decision& d = out[i];
        d.verdict = kept[i] ? Verdict::kKeep : Verdict::kDelete;
        if (d.verdict == Verdict::kDelete) {
            if (age_rule) {
                d.reasons.push_back("older than " + age_text);
            }
            if (any_keep_rule) {
                d.reasons.push_back("no keep_* rule matched");
            }
            if (d.reasons.empty()) {
                d.reasons.push_back("no keep rule matched");
            }
        }
    }
    return out;
}

}  // namespace mlk::backup
