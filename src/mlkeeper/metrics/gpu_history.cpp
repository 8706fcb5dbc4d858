#include "mlkeeper/metrics/gpu_history.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "mlkeeper/core/sqlite_db.hpp"

namespace mlk::metrics {
namespace {

using core::Database;
using core::Statement;

constexpr std::int64_t kMinuteBucket = 60;
constexpr std::int64_t kTenMinuteBucket = 600;
// Pruning deletes ranges from three tiers; once per 10 minutes of samples keeps the overshoot
// small (at most 10 minutes of rows past their retention) and the cost out of most adds.
constexpr std::int64_t kPruneEvery = 600;
constexpr std::int64_t kLongestStep = std::int64_t{86400} << 20;  // about 2.9 million years

// The metrics in `gpu_samples`, as column name prefixes: PREFIX_n (samples that reported the
// value), PREFIX_sum and PREFIX_max.
constexpr std::array<std::string_view, 4> kMetrics = {"temp_c", "util", "mem_used", "power_w"};

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

std::int64_t align_down(std::int64_t t, std::int64_t step) {
    return floor_div(t, step) * step;
}

std::int64_t unix_seconds(GpuHistory::TimePoint t) {
    return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::int64_t unix_ms(GpuHistory::TimePoint t) {
    return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::optional<double> finite(std::optional<double> v) {
    if (v && !std::isfinite(*v)) {
        return std::nullopt;
    }
    return v;
}

// Bytes are whole and stored as INTEGER (the column's affinity turns a whole REAL into one); a
// value that cannot be one counts as not reported.
std::optional<double> bytes(std::optional<double> v) {
    v = finite(v);
    if (!v || *v < 0 || *v >= 9.2e18) {
        return std::nullopt;
    }
    return std::round(*v);
}

void bind_opt(Statement& st, int index, std::optional<double> v) {
    if (v) {
        st.bind(index, *v);
    } else {
        st.bind(index, nullptr);
    }
}

std::string columns() {
    std::string out = "tier, gpu, t, n";
    for (const auto m : kMetrics) {
        out += ", " + std::string(m) + "_n, " + std::string(m) + "_sum, " + std::string(m) + "_max";
    }
    return out;
}

// Parameters: ?1 gpu, ?2 uuid, ?3 name, ?4 mem_total, ?5 power_limit_w, ?6 updated_at (ms).
constexpr const char* kUpsertDeviceSql =
    "INSERT INTO gpu_devices (gpu, uuid, name, mem_total, power_limit_w, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (gpu) DO UPDATE SET "
    // An unreadable GPU reports no identity: keep the last one known.
    "uuid = CASE WHEN excluded.uuid = '' THEN uuid ELSE excluded.uuid END, "
    "name = CASE WHEN excluded.uuid = '' AND excluded.name = '' THEN name "
    "ELSE excluded.name END, "
    // Sizes survive a sample that lacks them, unless another GPU took the index.
    "mem_total = CASE WHEN excluded.uuid IN ('', uuid) "
    "THEN coalesce(excluded.mem_total, mem_total) ELSE excluded.mem_total END, "
    "power_limit_w = CASE WHEN excluded.uuid IN ('', uuid) "
    "THEN coalesce(excluded.power_limit_w, power_limit_w) "
    "ELSE excluded.power_limit_w END, "
    "updated_at = excluded.updated_at";

// Parameters: ?1 tier, ?2 gpu, ?3 t, then per metric ?4+2k the count (0 or 1) and ?5+2k the
// value (sum and max of one sample). A raw row that exists already (same second) is kept.
const std::string& insert_raw_sql() {
    static const std::string sql = [] {
        std::string s = "INSERT INTO gpu_samples (" + columns() + ") VALUES (?1, ?2, ?3, 1";
        for (std::size_t k = 0; k < kMetrics.size(); ++k) {
            const std::string n = std::to_string(4 + 2 * k);
            const std::string v = std::to_string(5 + 2 * k);
            s += ", ?" + n + ", ?" + v + ", ?" + v;
        }
        return s + ") ON CONFLICT (tier, t, gpu) DO NOTHING";
    }();
    return sql;
}

// The same parameters, folded into an existing bucket: counts and sums add up (a NULL sum
// means no sample reported the value), maxima keep the larger.
const std::string& upsert_bucket_sql() {
    static const std::string sql = [] {
        std::string s = insert_raw_sql();
        s.resize(s.size() - std::string_view("DO NOTHING").size());
        s += "DO UPDATE SET n = n + excluded.n";
        for (const auto metric : kMetrics) {
            const std::string m(metric);
            s += ", " + m + "_n = " + m + "_n + excluded." + m + "_n";
            s += ", " + m + "_sum = coalesce(" + m + "_sum + excluded." + m + "_sum, " + m +
                 "_sum, excluded." + m + "_sum)";
            s += ", " + m + "_max = CASE WHEN " + m + "_max IS NULL OR excluded." + m + "_max > " +
                 m + "_max THEN excluded." + m + "_max ELSE " + m + "_max END";
        }
        return s;
    }();
    return sql;
}

// The rows of every GPU, oldest first: ?1 tier, ?2..?3 the t range. The primary key (tier, t,
// gpu) yields them in order in one range scan, so query() folds each GPU's rows into buckets as
// they stream by; a GROUP BY would sort them first. Column 0 is gpu, then t, n, ...
const std::string& select_rows_sql() {
    static const std::string sql =
        "SELECT gpu, " + columns().substr(std::string_view("tier, gpu, ").size()) +
        " FROM gpu_samples WHERE tier = ?1 AND t BETWEEN ?2 AND ?3 ORDER BY t, gpu";
    return sql;
}

// One point being built from the rows of its bucket.
class Bucket {
  public:
    void start(std::int64_t t) {
        t_ = t;
        n_ = 0;
        for (auto& m : metrics_) {
            m = Metric{};
        }
    }

    // Adds the current row of a select_rows_sql() statement.
    void add(const Statement& st) {
        n_ += st.column_int64(2);
        for (std::size_t k = 0; k < metrics_.size(); ++k) {
            const int col = static_cast<int>(3 + 3 * k);
            const std::int64_t n = st.column_int64(col);
            if (n <= 0) {
                continue;
            }
            Metric& m = metrics_[k];
            const double peak = st.column_double(col + 2);
            m.max = m.n == 0 ? peak : std::max(m.max, peak);
            m.n += n;
            m.sum += st.column_double(col + 1);
        }
    }

    void append_to(GpuHistory::Series& s) const {
        s.t.push_back(t_);
        s.samples.push_back(n_);
        const std::array<std::vector<std::optional<double>>*, 4> avg = {
            &s.temp_c, &s.util_ratio, &s.mem_used_bytes, &s.power_w};
        const std::array<std::vector<std::optional<double>>*, 4> peak = {
            &s.temp_c_max, &s.util_ratio_max, &s.mem_used_bytes_max, &s.power_w_max};
        for (std::size_t k = 0; k < metrics_.size(); ++k) {
            const Metric& m = metrics_[k];
            if (m.n > 0) {
                avg[k]->push_back(m.sum / static_cast<double>(m.n));
                peak[k]->push_back(m.max);
            } else {
                avg[k]->push_back(std::nullopt);
                peak[k]->push_back(std::nullopt);
            }
        }
    }

  private:
    struct Metric {
        std::int64_t n = 0;
        double sum = 0;  // byte sums stay exact: far below 2^53
        double max = 0;
    };
    std::int64_t t_ = 0;
    std::int64_t n_ = 0;
    std::array<Metric, kMetrics.size()> metrics_{};
};

struct Device {
    int gpu = 0;
    std::string uuid, name;
    std::optional<double> mem_total, power_limit;
    std::int64_t updated_ms = 0;
};

std::vector<Device> load_devices(Database& db) {
    std::vector<Device> out;
    Statement st = db.prepare(
        "SELECT gpu, uuid, name, mem_total, power_limit_w, updated_at FROM gpu_devices "
        "ORDER BY gpu");
    while (st.step()) {
        Device d;
        d.gpu = static_cast<int>(st.column_int64(0));
        d.uuid = st.column_text(1);
        d.name = st.column_text(2);
        if (!st.column_is_null(3)) {
            d.mem_total = static_cast<double>(st.column_int64(3));
        }
        if (!st.column_is_null(4)) {
            d.power_limit = st.column_double(4);
        }
        d.updated_ms = st.column_int64(5);
        out.push_back(std::move(d));
    }
    return out;
}

std::int64_t bucket_of(Tier tier) {
    switch (tier) {
        case Tier::kRaw:
            return 1;
        case Tier::kMinute:
            return kMinuteBucket;
        case Tier::kTenMinute:
            return kTenMinuteBucket;
    }
    return 1;
}

std::int64_t bucket_count(std::int64_t from, std::int64_t to, std::int64_t step) {
    return floor_div(to, step) - floor_div(from, step) + 1;
}

// The steps query() may choose, ascending; past a day it doubles.
std::int64_t nice_step(std::size_t i) {
    static constexpr std::array<std::int64_t, 20> kSteps = {
        1,   2,   5,    10,   15,   20,   30,    60,    120,   180,
        300, 600, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400};
    if (i < kSteps.size()) {
        return kSteps[i];
    }
    std::int64_t s = kSteps.back();
    for (std::size_t k = kSteps.size() - 1; k < i && s < kLongestStep; ++k) {
        s *= 2;
    }
    return s;
}

}  // namespace

GpuHistory::GpuHistory(core::StateStore& store, HistorySettings settings)
    : store_(store), settings_(settings) {
    using std::chrono::seconds;
    if (settings_.raw_keep <= seconds(0) || settings_.minute_keep <= seconds(0) ||
        settings_.ten_minute_keep <= seconds(0)) {
        throw std::invalid_argument("GpuHistory: every retention must be positive");
    }
}

void GpuHistory::add(TimePoint t, const std::vector<GpuPoint>& gpus) {
    std::set<int> seen;
    for (const auto& g : gpus) {
        if (g.gpu < 0) {
            throw std::invalid_argument("GpuHistory::add: negative GPU index " +
                                        std::to_string(g.gpu));
        }
        if (!seen.insert(g.gpu).second) {
            throw std::invalid_argument("GpuHistory::add: GPU " + std::to_string(g.gpu) +
                                        " appears twice in one sample");
        }
    }
    const std::int64_t ts = unix_seconds(t);
    const std::int64_t tms = unix_ms(t);

    store_.with_db("recording GPU samples", [&](Database& db) {
        const bool prune_due = !last_prune_ || ts >= *last_prune_ + kPruneEvery ||
                               ts < *last_prune_ - kPruneEvery;  // the clock stepped back
        if (gpus.empty() && !prune_due) {
            return;
        }
        core::Transaction tx(db, core::TransactionKind::kImmediate);
        if (!gpus.empty()) {
            if (!upsert_device_) {
                upsert_device_.emplace(db, kUpsertDeviceSql);
                insert_raw_.emplace(db, insert_raw_sql());
                upsert_bucket_.emplace(db, upsert_bucket_sql());
            }
            Statement& device = *upsert_device_;
            Statement& raw = *insert_raw_;
            Statement& bucket = *upsert_bucket_;
            for (const auto& g : gpus) {
                device.reset();
                device.bind(1, g.gpu).bind(2, g.uuid).bind(3, g.name);
                bind_opt(device, 4, bytes(g.mem_total_bytes));
                bind_opt(device, 5, finite(g.power_limit_w));
                device.bind(6, tms);
                device.step();

                // In kMetrics order.
                const std::array<std::optional<double>, kMetrics.size()> values = {
                    finite(g.temp_c), finite(g.util_ratio), bytes(g.mem_used_bytes),
                    finite(g.power_w)};
                const auto bind_sample = [&](Statement& st, Tier tier, std::int64_t at) {
                    st.reset();
                    st.bind(1, static_cast<int>(tier)).bind(2, g.gpu).bind(3, at);
                    for (std::size_t k = 0; k < kMetrics.size(); ++k) {
                        const int n = static_cast<int>(4 + 2 * k);
                        st.bind(n, values[k].has_value() ? 1 : 0);
                        bind_opt(st, n + 1, values[k]);
                    }
                    st.step();
                };
                bind_sample(raw, Tier::kRaw, ts);
                if (db.changes() == 0) {
                    continue;  // this GPU already has a sample in this second
                }
                bind_sample(bucket, Tier::kMinute, align_down(ts, kMinuteBucket));
                bind_sample(bucket, Tier::kTenMinute, align_down(ts, kTenMinuteBucket));
            }
        }
        if (prune_due) {
            Statement del = db.prepare(
                "DELETE FROM gpu_samples WHERE tier = ?1 "
                "AND gpu IN (SELECT gpu FROM gpu_devices) AND t < ?2");
            const std::array<std::pair<Tier, std::chrono::seconds>, 3> keeps = {{
                {Tier::kRaw, settings_.raw_keep},
                {Tier::kMinute, settings_.minute_keep},
                {Tier::kTenMinute, settings_.ten_minute_keep},
            }};
            std::chrono::seconds longest{0};
            for (const auto& [tier, keep] : keeps) {
                del.reset();
                del.bind(1, static_cast<int>(tier)).bind(2, ts - keep.count());
                del.step();
                longest = std::max(longest, keep);
            }
            Statement forget = db.prepare(
                "DELETE FROM gpu_devices WHERE updated_at < ?1 AND NOT EXISTS (SELECT 1 FROM "
                "gpu_samples s WHERE s.tier IN (0, 1, 2) AND s.gpu = gpu_devices.gpu)");
            forget.bind(1, tms - std::chrono::milliseconds(longest).count());
            forget.step();
        }
        tx.commit();
        if (prune_due) {
            last_prune_ = ts;  // only once the deletion is committed
        }
    });
}

GpuHistory::Query GpuHistory::query(TimePoint from, TimePoint to, std::size_t max_points) const {
    if (from > to) {
        throw std::invalid_argument("GpuHistory::query: from is after to");
    }
    if (max_points == 0) {
        throw std::invalid_argument("GpuHistory::query: max_points must be at least 1");
    }
    const std::int64_t from_s = unix_seconds(from);
    const std::int64_t to_s = unix_seconds(to);
    const auto max_n = static_cast<std::int64_t>(
        std::min<std::size_t>(max_points, std::numeric_limits<std::int64_t>::max() / 2));

    return store_.with_db("reading the GPU history", [&](Database& db) {
        Query q;
        const std::vector<Device> devices = load_devices(db);
        // Retention counts back from the newest sample, which updated_at holds.
        std::int64_t newest = to_s;
        if (!devices.empty()) {
            std::int64_t newest_ms = devices.front().updated_ms;
            for (const auto& d : devices) {
                newest_ms = std::max(newest_ms, d.updated_ms);
            }
            newest = floor_div(newest_ms, 1000);
        }
        const std::array<std::pair<Tier, std::chrono::seconds>, 3> tiers = {{
            {Tier::kRaw, settings_.raw_keep},
            {Tier::kMinute, settings_.minute_keep},
            {Tier::kTenMinute, settings_.ten_minute_keep},
        }};
        std::array<bool, 3> usable{};
        bool any = false;
        for (std::size_t i = 0; i < tiers.size(); ++i) {
            usable[i] = from_s >= newest - tiers[i].second.count();
            any = any || usable[i];
        }
        if (!any) {  // older than every retention: what is left is in the longest-kept tier
            std::size_t best = 0;
            for (std::size_t i = 1; i < tiers.size(); ++i) {
                if (tiers[i].second > tiers[best].second) {
                    best = i;
                }
            }
            usable[best] = true;
        }

        bool raw_points = false;
        if (usable[0]) {
            raw_points = true;
            // Reading (max_n + 1) rows per GPU at most is enough: by then some GPU has more
            // than max_n (pigeonhole), or the range has fewer rows.
            Statement rows = db.prepare(
                "SELECT gpu FROM gpu_samples WHERE tier = 0 AND t BETWEEN ?1 AND ?2 LIMIT ?3");
            rows.bind(1, from_s).bind(2, to_s);
            rows.bind(3, (max_n + 1) *
                             static_cast<std::int64_t>(std::max<std::size_t>(devices.size(), 1)));
            std::map<std::int64_t, std::int64_t> per_gpu;
            while (raw_points && rows.step()) {
                raw_points = ++per_gpu[rows.column_int64(0)] <= max_n;
            }
        }
        std::int64_t step = 1;
        q.tier = Tier::kRaw;
        if (!raw_points) {
            bool found = false;
            for (std::size_t i = 0; !found; ++i) {
                step = nice_step(i);
                // The cap only matters for a range across the epoch with max_points 1, which
                // no step brings down to one bucket.
                if (bucket_count(from_s, to_s, step) > max_n && step < kLongestStep) {
                    continue;
                }
                for (std::size_t k = tiers.size(); k-- > 0;) {
                    if (usable[k] && step % bucket_of(tiers[k].first) == 0) {
                        q.tier = tiers[k].first;
                        found = true;
                        break;
                    }
                }
            }
        }

        // One scan over every GPU's rows, each folded into its own series.
        struct Open {
            Series s;
            Bucket bucket;
            bool open = false;
            std::int64_t bucket_t = 0;
        };
        std::map<std::int64_t, Open> by_gpu;
        for (const auto& d : devices) {
            Open& o = by_gpu[d.gpu];
            o.s.gpu = d.gpu;
            o.s.uuid = d.uuid;
            o.s.name = d.name;
            o.s.mem_total_bytes = d.mem_total;
            o.s.power_limit_w = d.power_limit;
        }
        Statement st = db.prepare(select_rows_sql());
        st.bind(1, static_cast<int>(q.tier));
        st.bind(2, raw_points ? from_s : align_down(from_s, step)).bind(3, to_s);
        while (st.step()) {
            const auto it = by_gpu.find(st.column_int64(0));
            if (it == by_gpu.end()) {
                continue;  // a GPU whose device row was pruned meanwhile
            }
            Open& o = it->second;
            const std::int64_t b = align_down(st.column_int64(1), step);
            if (!o.open || b != o.bucket_t) {
                if (o.open) {
                    o.bucket.append_to(o.s);
                }
                o.bucket.start(b);
                o.bucket_t = b;
                o.open = true;
            }
            o.bucket.add(st);
        }
        std::vector<std::int64_t> spacings;
        for (auto& [gpu, o] : by_gpu) {
            if (o.open) {
                o.bucket.append_to(o.s);
            }
            for (std::size_t i = 1; raw_points && i < o.s.t.size(); ++i) {
                spacings.push_back(o.s.t[i] - o.s.t[i - 1]);
            }
            if (!o.s.t.empty()) {
                q.gpus.push_back(std::move(o.s));
            }
        }
        if (raw_points && !spacings.empty()) {
            auto mid = spacings.begin() + static_cast<std::ptrdiff_t>(spacings.size() / 2);
            std::nth_element(spacings.begin(), mid, spacings.end());
            step = *mid;
        }
        q.step = std::chrono::seconds(step);
        return q;
    });
}

std::vector<GpuPoint> GpuHistory::devices() const {
    return store_.with_db("reading the GPU devices", [](Database& db) {
        std::vector<GpuPoint> out;
        for (auto& d : load_devices(db)) {
            GpuPoint p;
            p.gpu = d.gpu;
            p.uuid = std::move(d.uuid);
            p.name = std::move(d.name);
            p.mem_total_bytes = d.mem_total;
            p.power_limit_w = d.power_limit;
            out.push_back(std::move(p));
        }
        return out;
    });
}

}  // namespace mlk::metrics
