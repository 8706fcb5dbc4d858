#include "mlkeeper/metrics/gpu_history.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/sqlite_db.hpp"

namespace mlk::metrics {
namespace {

namespace fs = std::filesystem;
using core::Database;
using core::Statement;
using core::StateStore;
using mlk::testing::TempDir;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using TimePoint = GpuHistory::TimePoint;

constexpr std::int64_t kT0 = 1'700'000'400;  // a multiple of 600: bucket arithmetic stays simple

TimePoint at(std::int64_t unix_s) {
    return TimePoint(seconds(unix_s));
}

GpuPoint point(int gpu, std::optional<double> temp, std::optional<double> util = 0.5,
               std::optional<double> mem = 1e9, std::optional<double> power = 100.0) {
    GpuPoint p;
    p.gpu = gpu;
    p.uuid = "GPU-" + std::to_string(gpu);
    p.name = "Test GPU";
    p.temp_c = temp;
    p.util_ratio = util;
    p.mem_used_bytes = mem;
    p.mem_total_bytes = 80e9;
    p.power_w = power;
    p.power_limit_w = 700.0;
    return p;
}

std::int64_t scalar(StateStore& store, const std::string& sql) {
    return store.with_db("test", [&](Database& db) {
        Statement st = db.prepare(sql);
        return st.step() ? st.column_int64(0) : std::int64_t{-1};
    });
}

std::int64_t rows(StateStore& store, Tier tier) {
    return scalar(store, "SELECT count(*) FROM gpu_samples WHERE tier = " +
                             std::to_string(static_cast<int>(tier)));
}

const GpuHistory::Series* find_gpu(const GpuHistory::Query& q, int gpu) {
    for (const auto& s : q.gpus) {
        if (s.gpu == gpu) {
            return &s;
        }
    }
    return nullptr;
}

// ---- storing ---------------------------------------------------------------------------

TEST(GpuHistory, RawPointsRoundTrip) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    h.add(at(kT0), {point(0, 40.0, 0.25, 2e9, 150.5), point(1, 50.0, 1.0, 3e9, 200.0)});
    h.add(at(kT0 + 10), {point(0, 42.0, 0.75, 4e9, 160.5), point(1, 52.0, 0.0, 5e9, 210.0)});

    const auto q = h.query(at(kT0), at(kT0 + 10));
    EXPECT_EQ(q.tier, Tier::kRaw);
    EXPECT_EQ(q.step, seconds(10));  // the spacing of the samples
    ASSERT_EQ(q.gpus.size(), 2u);
    const auto& g0 = q.gpus[0];
    EXPECT_EQ(g0.gpu, 0);
    EXPECT_EQ(g0.uuid, "GPU-0");
    EXPECT_EQ(g0.name, "Test GPU");
    EXPECT_EQ(g0.mem_total_bytes, 80e9);
    EXPECT_EQ(g0.power_limit_w, 700.0);
    EXPECT_EQ(g0.t, (std::vector<std::int64_t>{kT0, kT0 + 10}));
    EXPECT_EQ(g0.samples, (std::vector<std::int64_t>{1, 1}));
    EXPECT_EQ(g0.temp_c, (std::vector<std::optional<double>>{40.0, 42.0}));
    EXPECT_EQ(g0.util_ratio, (std::vector<std::optional<double>>{0.25, 0.75}));
    EXPECT_EQ(g0.mem_used_bytes, (std::vector<std::optional<double>>{2e9, 4e9}));
    EXPECT_EQ(g0.power_w, (std::vector<std::optional<double>>{150.5, 160.5}));
    EXPECT_EQ(g0.temp_c_max, g0.temp_c);  // one sample per point
    EXPECT_EQ(q.gpus[1].util_ratio, (std::vector<std::optional<double>>{1.0, 0.0}));

    // Each sample also lands in its minute and ten-minute bucket.
    EXPECT_EQ(rows(store, Tier::kRaw), 4);
    EXPECT_EQ(rows(store, Tier::kMinute), 2);
    EXPECT_EQ(rows(store, Tier::kTenMinute), 2);
    EXPECT_EQ(scalar(store, "SELECT n FROM gpu_samples WHERE tier = 1 AND gpu = 0"), 2);
    // Bytes stay integers, in the sums too (readers may use SQL on them).
    EXPECT_EQ(scalar(store,
                     "SELECT count(*) FROM gpu_samples WHERE typeof(mem_used_sum) != "
                     "'integer' OR typeof(mem_used_max) != 'integer'"),
              0);
    EXPECT_EQ(scalar(store, "SELECT mem_used_sum FROM gpu_samples WHERE tier = 2 AND gpu = 1"),
              8'000'000'000);
    EXPECT_EQ(scalar(store, "SELECT count(*) FROM gpu_devices WHERE typeof(mem_total) = 'integer'"),
              2);

    const auto devices = h.devices();
    ASSERT_EQ(devices.size(), 2u);
    EXPECT_EQ(devices[1].gpu, 1);
    EXPECT_EQ(devices[1].uuid, "GPU-1");
    EXPECT_EQ(devices[1].mem_total_bytes, 80e9);
    EXPECT_FALSE(devices[1].temp_c.has_value());
}

TEST(GpuHistory, SubSecondTimesRoundDownAndASecondSampleInTheSameSecondIsDropped) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    h.add(at(kT0) + milliseconds(300), {point(0, 40.0)});
    h.add(at(kT0) + milliseconds(900), {point(0, 90.0)});
    const auto q = h.query(at(kT0), at(kT0 + 1));
    ASSERT_EQ(q.gpus.size(), 1u);
    EXPECT_EQ(q.gpus[0].t, std::vector<std::int64_t>{kT0});
    EXPECT_EQ(q.gpus[0].temp_c, std::vector<std::optional<double>>{40.0});
    // The dropped sample did not count in the buckets either.
    EXPECT_EQ(scalar(store, "SELECT n FROM gpu_samples WHERE tier = 1"), 1);
    EXPECT_EQ(scalar(store, "SELECT temp_c_max FROM gpu_samples WHERE tier = 2"), 40);
}

TEST(GpuHistory, RejectsBadInputWithoutStoringAnything) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    EXPECT_THROW(h.add(at(kT0), {point(0, 40.0), point(-1, 40.0)}), std::invalid_argument);
    EXPECT_THROW(h.add(at(kT0), {point(0, 40.0), point(3, 1.0), point(0, 41.0)}),
                 std::invalid_argument);
    EXPECT_EQ(rows(store, Tier::kRaw), 0);
    EXPECT_TRUE(h.devices().empty());
    EXPECT_THROW(h.query(at(kT0 + 1), at(kT0)), std::invalid_argument);
    EXPECT_THROW(h.query(at(kT0), at(kT0 + 1), 0), std::invalid_argument);

    HistorySettings bad;
    bad.minute_keep = seconds(0);
    EXPECT_THROW(GpuHistory(store, bad), std::invalid_argument);
    bad = HistorySettings{};
    bad.raw_keep = seconds(-5);
    EXPECT_THROW(GpuHistory(store, bad), std::invalid_argument);
}

// ---- averaging and gaps ------------------------------------------------------------------

TEST(GpuHistory, BucketsAverageAndKeepTheMaximum) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    // Minute kT0: temps 10, 20, 60; minute kT0+60: 30, 50.
    const std::array<std::pair<int, double>, 5> samples = {
        {{0, 10.0}, {20, 20.0}, {40, 60.0}, {60, 30.0}, {80, 50.0}}};
    for (const auto& [dt, temp] : samples) {
        h.add(at(kT0 + dt), {point(0, temp, temp / 100.0, temp * 1e9, temp * 2)});
    }
    // 2 points allowed: 5 raw samples do not fit, 60 s buckets from the minute tier do.
    const auto q = h.query(at(kT0), at(kT0 + 119), 2);
    EXPECT_EQ(q.tier, Tier::kMinute);
    EXPECT_EQ(q.step, seconds(60));
    ASSERT_EQ(q.gpus.size(), 1u);
    const auto& s = q.gpus[0];
    EXPECT_EQ(s.t, (std::vector<std::int64_t>{kT0, kT0 + 60}));
    EXPECT_EQ(s.samples, (std::vector<std::int64_t>{3, 2}));
    ASSERT_EQ(s.temp_c.size(), 2u);
    EXPECT_DOUBLE_EQ(*s.temp_c[0], 30.0);
    EXPECT_DOUBLE_EQ(*s.temp_c[1], 40.0);
    EXPECT_DOUBLE_EQ(*s.temp_c_max[0], 60.0);
    EXPECT_DOUBLE_EQ(*s.temp_c_max[1], 50.0);
    EXPECT_DOUBLE_EQ(*s.util_ratio[0], 0.30);
    EXPECT_DOUBLE_EQ(*s.util_ratio_max[1], 0.50);
    EXPECT_DOUBLE_EQ(*s.mem_used_bytes[0], 30e9);
    EXPECT_DOUBLE_EQ(*s.mem_used_bytes_max[0], 60e9);
    EXPECT_DOUBLE_EQ(*s.power_w[1], 80.0);

    // One point for everything: two minute buckets folded into one of 120 s.
    const auto one = h.query(at(kT0), at(kT0 + 119), 1);
    EXPECT_EQ(one.tier, Tier::kMinute);
    EXPECT_EQ(one.step, seconds(120));
    ASSERT_EQ(one.gpus.size(), 1u);
    EXPECT_EQ(one.gpus[0].samples, std::vector<std::int64_t>{5});
    EXPECT_DOUBLE_EQ(*one.gpus[0].temp_c[0], 34.0);
    EXPECT_DOUBLE_EQ(*one.gpus[0].temp_c_max[0], 60.0);

    // Raw samples folded into 30 s buckets by the query itself.
    const auto half = h.query(at(kT0), at(kT0 + 89), 3);
    EXPECT_EQ(half.tier, Tier::kRaw);
    EXPECT_EQ(half.step, seconds(30));
    ASSERT_EQ(half.gpus.size(), 1u);
    EXPECT_EQ(half.gpus[0].t, (std::vector<std::int64_t>{kT0, kT0 + 30, kT0 + 60}));
    EXPECT_EQ(half.gpus[0].samples, (std::vector<std::int64_t>{2, 1, 2}));
    EXPECT_DOUBLE_EQ(*half.gpus[0].temp_c[0], 15.0);
    EXPECT_DOUBLE_EQ(*half.gpus[0].temp_c[2], 40.0);
}

TEST(GpuHistory, AMissingBucketIsAGapNotAZero) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    for (std::int64_t dt = 0; dt < 3600; dt += 10) {
        if (dt >= 600 && dt < 1800) {
            continue;  // the agent was down for 20 minutes
        }
        h.add(at(kT0 + dt), {point(0, 50.0)});
    }
    const auto q = h.query(at(kT0), at(kT0 + 3599), 60);
    EXPECT_EQ(q.tier, Tier::kMinute);
    EXPECT_EQ(q.step, seconds(60));
    ASSERT_EQ(q.gpus.size(), 1u);
    const auto& s = q.gpus[0];
    EXPECT_EQ(s.t.size(), 40u);  // 60 minutes less the 20 without samples
    for (std::size_t i = 0; i < s.t.size(); ++i) {
        EXPECT_TRUE(s.t[i] < kT0 + 600 || s.t[i] >= kT0 + 1800) << s.t[i];
        EXPECT_EQ(s.samples[i], 6);
        EXPECT_EQ(s.temp_c[i], 50.0);
    }
    // The raw points show the same hole.
    const auto raw = h.query(at(kT0), at(kT0 + 3599));
    EXPECT_EQ(raw.tier, Tier::kRaw);
    EXPECT_EQ(raw.step, seconds(10));
    ASSERT_EQ(raw.gpus.size(), 1u);
    EXPECT_EQ(raw.gpus[0].t.size(), 240u);
}

TEST(GpuHistory, NullValuesAreSkippedNotCountedAsZero) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    h.add(at(kT0), {point(0, 40.0, std::nullopt, std::nullopt, std::nullopt)});
    h.add(at(kT0 + 10), {point(0, std::nullopt, std::nullopt, nan, inf)});
    h.add(at(kT0 + 20), {point(0, 60.0, std::nullopt, -5.0, std::nullopt)});
    // A GPU that reported nothing at all still has a point: it was sampled.
    GpuPoint lost;
    lost.gpu = 1;
    h.add(at(kT0 + 30), {lost});

    const auto raw = h.query(at(kT0), at(kT0 + 30));
    ASSERT_EQ(raw.gpus.size(), 2u);
    EXPECT_EQ(raw.gpus[0].temp_c, (std::vector<std::optional<double>>{40.0, std::nullopt, 60.0}));
    EXPECT_EQ(raw.gpus[0].mem_used_bytes, (std::vector<std::optional<double>>(3, std::nullopt)));
    EXPECT_EQ(raw.gpus[1].samples, std::vector<std::int64_t>{1});
    EXPECT_EQ(raw.gpus[1].temp_c, std::vector<std::optional<double>>{std::nullopt});

    const auto q = h.query(at(kT0), at(kT0 + 30), 1);
    ASSERT_EQ(q.gpus.size(), 2u);
    const auto& s = q.gpus[0];
    EXPECT_EQ(s.samples, std::vector<std::int64_t>{3});
    EXPECT_EQ(s.temp_c, std::vector<std::optional<double>>{50.0});  // not (40 + 0 + 60) / 3
    EXPECT_EQ(s.temp_c_max, std::vector<std::optional<double>>{60.0});
    EXPECT_EQ(s.util_ratio, std::vector<std::optional<double>>{std::nullopt});
    EXPECT_EQ(s.util_ratio_max, std::vector<std::optional<double>>{std::nullopt});
    EXPECT_EQ(s.power_w, std::vector<std::optional<double>>{std::nullopt});
    EXPECT_EQ(scalar(store,
                     "SELECT count(*) FROM gpu_samples WHERE temp_c_sum IS NULL AND "
                     "temp_c_n > 0"),
              0);

    // A GPU without identity keeps the last one it reported.
    GpuPoint anon;
    anon.gpu = 0;
    h.add(at(kT0 + 40), {anon});
    const auto devices = h.devices();
    ASSERT_EQ(devices.size(), 2u);
    EXPECT_EQ(devices[0].uuid, "GPU-0");
    EXPECT_EQ(devices[0].name, "Test GPU");
    EXPECT_EQ(devices[0].mem_total_bytes, 80e9);
    EXPECT_EQ(devices[1].uuid, "");
    EXPECT_FALSE(devices[1].mem_total_bytes.has_value());
}

TEST(GpuHistory, AnotherGpuAtTheSameIndexReplacesTheIdentity) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    h.add(at(kT0), {point(0, 40.0)});
    GpuPoint other = point(0, 41.0);
    other.uuid = "GPU-new";
    other.name = "Other GPU";
    other.mem_total_bytes = std::nullopt;
    h.add(at(kT0 + 10), {other});
    const auto devices = h.devices();
    ASSERT_EQ(devices.size(), 1u);
    EXPECT_EQ(devices[0].uuid, "GPU-new");
    EXPECT_EQ(devices[0].name, "Other GPU");
    EXPECT_FALSE(devices[0].mem_total_bytes.has_value());  // not the old GPU's size
    EXPECT_EQ(devices[0].power_limit_w, 700.0);
}

// ---- tiers, retention ----------------------------------------------------------------------

// Two days of one sample a minute under short retentions, so every tier is exercised.
class TieredHistory : public ::testing::Test {
  protected:
    static HistorySettings short_settings() {
        HistorySettings s;
        s.raw_keep = hours(1);
        s.minute_keep = hours(6);
        s.ten_minute_keep = hours(48);
        return s;
    }

    // Filled once; every test gets a copy of the file.
    static void SetUpTestSuite() {
        filled_ = new TempDir;
        StateStore store(*filled_ / "state.db");
        GpuHistory history(store, short_settings());
        for (std::int64_t t = kT0; t <= end_; t += 60) {
            history.add(at(t), {point(0, static_cast<double>((t / 60) % 100))});
        }
    }  // closing the last connection folds the WAL into the file

    static void TearDownTestSuite() {
        delete filled_;
        filled_ = nullptr;
    }

    void SetUp() override {
        ASSERT_FALSE(fs::exists(*filled_ / "state.db-wal"));
        fs::copy_file(*filled_ / "state.db", dir_ / "state.db");
        store_.emplace(dir_ / "state.db");
        history_.emplace(*store_, short_settings());
    }

    static constexpr std::int64_t end_ = kT0 + 48 * 3600;
    static inline TempDir* filled_ = nullptr;
    TempDir dir_;
    std::optional<StateStore> store_;
    std::optional<GpuHistory> history_;
};

TEST_F(TieredHistory, PicksTheFinestTierThatReachesBackAndFits) {
    struct Case {
        std::int64_t back;
        std::size_t max_points;
        Tier tier;
        std::int64_t step;
    };
    const std::array<Case, 7> cases = {{
        {30 * 60, 720, Tier::kRaw, 60},           // raw points fit
        {3600, 30, Tier::kMinute, 180},           // 61 raw points do not: 3-minute buckets
        {3600, 7, Tier::kTenMinute, 600},         // 10-minute buckets
        {5 * 3600, 720, Tier::kMinute, 60},       // past raw retention; 30 s is not possible
        {24 * 3600, 720, Tier::kTenMinute, 600},  // past minute retention
        {40 * 3600, 100, Tier::kTenMinute, 1800},
        {24 * 3600, 2, Tier::kTenMinute, 86400},
    }};
    for (const auto& c : cases) {
        SCOPED_TRACE("back " + std::to_string(c.back) + " max " + std::to_string(c.max_points));
        const auto q = history_->query(at(end_ - c.back), at(end_), c.max_points);
        EXPECT_EQ(q.tier, c.tier);
        EXPECT_EQ(q.step, seconds(c.step));
        ASSERT_EQ(q.gpus.size(), 1u);
        EXPECT_LE(q.gpus[0].t.size(), c.max_points);
        EXPECT_GT(q.gpus[0].t.size(), 0u);
    }
}

TEST_F(TieredHistory, RangeOlderThanEveryRetentionReadsTheLongestKeptTier) {
    const auto q = history_->query(at(kT0 - 10 * 3600), at(kT0 - 9 * 3600));
    EXPECT_EQ(q.tier, Tier::kTenMinute);
    EXPECT_TRUE(q.gpus.empty());
    const auto edge = history_->query(at(kT0 - 3600), at(kT0 + 3599));
    EXPECT_EQ(edge.tier, Tier::kTenMinute);
    ASSERT_EQ(edge.gpus.size(), 1u);
    EXPECT_EQ(edge.gpus[0].t.front(), kT0);
}

TEST_F(TieredHistory, PruningHonoursEachRetentionToTheSecond) {
    // The last prune ran at most 10 minutes before end_; prune now with a fresh object.
    GpuHistory fresh(*store_, short_settings());
    fresh.add(at(end_ + 1), {point(0, 1.0)});
    const std::int64_t now = end_ + 1;
    EXPECT_EQ(scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 0"),
              kT0 + ((now - 3600 - kT0 + 59) / 60) * 60);
    EXPECT_EQ(scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 1"),
              kT0 + ((now - 6 * 3600 - kT0 + 59) / 60) * 60);
    EXPECT_EQ(scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 2"),
              kT0 + ((now - 48 * 3600 - kT0 + 599) / 600) * 600);
    EXPECT_EQ(rows(*store_, Tier::kRaw), 61);

    // A row exactly at the cutoff stays; one second later it goes, at the next pruning.
    const std::int64_t oldest = scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 0");
    GpuHistory exact(*store_, short_settings());
    exact.add(at(oldest + 3600), {point(0, 1.0)});
    EXPECT_EQ(scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 0"), oldest);
    // Within 10 minutes of the last pruning nothing is deleted...
    exact.add(at(oldest + 3601), {point(0, 1.0)});
    EXPECT_EQ(scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 0"), oldest);
    exact.add(at(oldest + 3600 + 599), {point(0, 1.0)});
    EXPECT_EQ(scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 0"), oldest);
    // ...and 10 minutes after it, everything past the retention goes at once.
    exact.add(at(oldest + 3600 + 600), {});
    EXPECT_EQ(scalar(*store_, "SELECT min(t) FROM gpu_samples WHERE tier = 0"), oldest + 600);
}

TEST_F(TieredHistory, AGpuGoneLongerThanEveryRetentionIsForgotten) {
    GpuHistory h(*store_, short_settings());
    // Only GPU 1 from now on; GPU 0's rows expire tier by tier.
    h.add(at(end_ + 3600 + 1), {point(1, 30.0)});
    EXPECT_EQ(h.devices().size(), 2u);
    EXPECT_EQ(scalar(*store_, "SELECT count(*) FROM gpu_samples WHERE tier = 0 AND gpu = 0"), 0);
    h.add(at(end_ + 48 * 3600 + 1), {point(1, 30.0)});
    const auto devices = h.devices();
    ASSERT_EQ(devices.size(), 1u);
    EXPECT_EQ(devices[0].gpu, 1);
    EXPECT_EQ(scalar(*store_, "SELECT count(*) FROM gpu_samples WHERE gpu = 0"), 0);
}

TEST_F(TieredHistory, NoQueryReturnsMorePointsThanAsked) {
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<std::int64_t> when(kT0 - 3600, end_ + 3600);
    std::uniform_int_distribution<std::size_t> max(1, 1500);
    for (int i = 0; i < 200; ++i) {
        std::int64_t a = when(rng);
        std::int64_t b = when(rng);
        if (a > b) {
            std::swap(a, b);
        }
        const std::size_t m = max(rng);
        const auto q = history_->query(at(a), at(b), m);
        ASSERT_GT(q.step.count(), 0);
        for (const auto& s : q.gpus) {
            ASSERT_LE(s.t.size(), m) << a << ".." << b;
            ASSERT_TRUE(std::is_sorted(s.t.begin(), s.t.end()));
            ASSERT_GE(s.t.front(), a - q.step.count());
            ASSERT_LE(s.t.back(), b);
            ASSERT_EQ(s.temp_c.size(), s.t.size());
            ASSERT_EQ(s.power_w_max.size(), s.t.size());
        }
    }
}

TEST(GpuHistory, QueriesAcrossTheEpochTerminate) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    h.add(at(-5), {point(0, 40.0)});
    h.add(at(5), {point(0, 50.0)});
    const auto q = h.query(at(-10), at(10), 1);
    ASSERT_EQ(q.gpus.size(), 1u);
    EXPECT_LE(q.gpus[0].t.size(), 2u);  // no step makes one bucket of [-10, 10]
    const auto raw = h.query(at(-10), at(10));
    ASSERT_EQ(raw.gpus.size(), 1u);
    EXPECT_EQ(raw.gpus[0].t, (std::vector<std::int64_t>{-5, 5}));
    EXPECT_EQ(scalar(store, "SELECT t FROM gpu_samples WHERE tier = 1 AND t < 0"), -60);
}

// ---- GPUs coming and going, empty ranges, odd clocks -----------------------------------------

TEST(GpuHistory, ZeroGpusStoreNothing) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    h.add(at(kT0), {});
    h.add(at(kT0 + 10), {});
    EXPECT_EQ(scalar(store, "SELECT count(*) FROM gpu_samples"), 0);
    EXPECT_TRUE(h.devices().empty());
    const auto q = h.query(at(kT0), at(kT0 + 10));
    EXPECT_TRUE(q.gpus.empty());
    EXPECT_GT(q.step.count(), 0);
}

TEST(GpuHistory, GpuCountChanging) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    h.add(at(kT0), {point(0, 40.0), point(1, 41.0)});
    h.add(at(kT0 + 10), {point(0, 40.0), point(1, 41.0), point(2, 42.0)});
    h.add(at(kT0 + 20), {point(1, 43.0)});
    h.add(at(kT0 + 30), {point(2, 44.0), point(0, 45.0)});  // order does not matter

    const auto q = h.query(at(kT0), at(kT0 + 30));
    ASSERT_EQ(q.gpus.size(), 3u);
    EXPECT_EQ(find_gpu(q, 0)->t, (std::vector<std::int64_t>{kT0, kT0 + 10, kT0 + 30}));
    EXPECT_EQ(find_gpu(q, 1)->t, (std::vector<std::int64_t>{kT0, kT0 + 10, kT0 + 20}));
    EXPECT_EQ(find_gpu(q, 2)->t, (std::vector<std::int64_t>{kT0 + 10, kT0 + 30}));
    EXPECT_EQ(find_gpu(q, 2)->temp_c, (std::vector<std::optional<double>>{42.0, 44.0}));
    EXPECT_EQ(h.devices().size(), 3u);

    const auto later = h.query(at(kT0 + 25), at(kT0 + 30));
    ASSERT_EQ(later.gpus.size(), 2u);  // GPU 1 has no point there
    EXPECT_EQ(later.gpus[0].gpu, 0);
    EXPECT_EQ(later.gpus[1].gpu, 2);
}

TEST(GpuHistory, RangeWithNoData) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    EXPECT_TRUE(h.query(at(kT0), at(kT0 + 3600)).gpus.empty());  // empty history
    h.add(at(kT0), {point(0, 40.0)});
    h.add(at(kT0 + 7200), {point(0, 40.0)});
    EXPECT_TRUE(h.query(at(kT0 + 1), at(kT0 + 7199)).gpus.empty());     // between samples
    EXPECT_TRUE(h.query(at(kT0 + 7201), at(kT0 + 9000)).gpus.empty());  // after them
    EXPECT_TRUE(h.query(at(kT0 - 900), at(kT0 - 1)).gpus.empty());      // before them
    EXPECT_EQ(h.query(at(kT0), at(kT0)).gpus.size(), 1u);               // one instant
}

TEST(GpuHistory, TimeGoingBackwardsIsStored) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory h(store);
    h.add(at(kT0 + 100), {point(0, 40.0)});
    h.add(at(kT0 + 50), {point(0, 60.0)});         // NTP stepped the clock back
    h.add(at(kT0 + 100), {point(0, 99.0)});        // the same second again: dropped
    h.add(at(kT0 - 3 * 86400), {point(0, 70.0)});  // far back: stored, pruning must not break
    EXPECT_EQ(scalar(store, "SELECT count(*) FROM gpu_samples WHERE tier = 0"), 3);
    EXPECT_EQ(scalar(store, "SELECT count(*) FROM gpu_samples WHERE t < " + std::to_string(kT0)),
              3);
    // Back at the present, the next pruning drops the raw row, not its 7- and 30-day buckets.
    h.add(at(kT0 + 110), {point(0, 50.0)});
    EXPECT_EQ(scalar(store, "SELECT count(*) FROM gpu_samples WHERE t < " + std::to_string(kT0)),
              2);

    const auto raw = h.query(at(kT0), at(kT0 + 200));
    ASSERT_EQ(raw.gpus.size(), 1u);
    EXPECT_EQ(raw.gpus[0].t, (std::vector<std::int64_t>{kT0 + 50, kT0 + 100, kT0 + 110}));
    EXPECT_EQ(raw.gpus[0].temp_c, (std::vector<std::optional<double>>{60.0, 40.0, 50.0}));
    const auto minute = h.query(at(kT0), at(kT0 + 119), 1);
    ASSERT_EQ(minute.gpus.size(), 1u);
    EXPECT_EQ(minute.gpus[0].samples, std::vector<std::int64_t>{3});
    EXPECT_DOUBLE_EQ(*minute.gpus[0].temp_c[0], 50.0);
    EXPECT_EQ(scalar(store, "SELECT count(*) FROM gpu_samples WHERE tier = 0"), 3);
    EXPECT_TRUE(store.check_integrity().ok());
}

// ---- concurrency and crashes ---------------------------------------------------------------

TEST(GpuHistory, ConcurrentAddAndQueryOnASharedStore) {
    TempDir dir;
    StateStore store(dir / "state.db");
    GpuHistory writer(store);
    GpuHistory reader(store);
    constexpr int kSamples = 300;
    std::atomic<bool> done{false};
    std::atomic<int> failures{0};
    std::atomic<int> queries{0};
    std::thread add_thread([&] {
        try {
            for (int i = 0; i < kSamples; ++i) {
                writer.add(at(kT0 + 10 * i), {point(0, 40.0), point(1, 50.0)});
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
            ++failures;
        }
        done = true;
    });
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
        readers.emplace_back([&] {
            try {
                while (!done) {
                    const auto q = reader.query(at(kT0), at(kT0 + 10 * kSamples), 50);
                    for (const auto& s : q.gpus) {
                        // Each add() is one transaction: both GPUs or neither.
                        if (s.samples != q.gpus.front().samples) {
                            ++failures;
                        }
                    }
                    (void)reader.devices();
                    ++queries;
                }
            } catch (const std::exception& e) {
                ADD_FAILURE() << e.what();
                ++failures;
            }
        });
    }
    std::thread other([&] {
        try {
            for (int i = 0; !done; ++i) {
                store.kv_set("other", std::to_string(i));
                store.counter_add("history_test", "", 1);
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << e.what();
            ++failures;
        }
    });
    add_thread.join();
    for (auto& t : readers) {
        t.join();
    }
    other.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_GT(queries.load(), 0);
    EXPECT_EQ(rows(store, Tier::kRaw), 2 * kSamples);
    EXPECT_EQ(scalar(store, "SELECT sum(n) FROM gpu_samples WHERE tier = 1"), 2 * kSamples);
}

// Children write as fast as they can and are killed (-9) at random moments, inside add() most
// of the time. Every add() is one transaction, so the file must stay sound and the tiers
// consistent with each other.
TEST(GpuHistory, KilledWriterLeavesASoundDatabase) {
    TempDir dir;
    const fs::path file = dir / "state.db";
    { StateStore create(file); }
    HistorySettings keep_all;  // nothing expires, so the tiers can be compared
    keep_all.raw_keep = keep_all.minute_keep = keep_all.ten_minute_keep = hours(24 * 3650);
    constexpr int kRounds = 5;
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> delay_ms(20, 120);
    for (int round = 0; round < kRounds; ++round) {
        std::array<int, 2> ready{};
        ASSERT_EQ(::pipe(ready.data()), 0);
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            ::close(ready[0]);
            try {
                StateStore store(file);
                GpuHistory h(store, keep_all);
                (void)!::write(ready[1], "x", 1);
                const std::int64_t base = kT0 + round * 1'000'000;
                for (std::int64_t i = 0;; ++i) {
                    std::vector<GpuPoint> gpus;
                    for (int g = 0; g < 8; ++g) {
                        gpus.push_back(point(g, 40.0 + g, 0.5, 1e9 * g, 100.0));
                    }
                    h.add(at(base + 10 * i), gpus);
                }
            } catch (...) {
                ::_exit(3);
            }
        }
        ::close(ready[1]);
        char b = 0;
        const ssize_t started = ::read(ready[0], &b, 1);  // 0: it failed before writing
        ::close(ready[0]);
        if (started == 1) {
            std::this_thread::sleep_for(milliseconds(delay_ms(rng)));
        }
        ::kill(child, SIGKILL);
        const int status = testing::wait_child_bounded(child, seconds(30));
        ASSERT_EQ(started, 1) << "the writer did not start: " << status;
        ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself: " << status;
    }
    StateStore store(file);
    const auto report = store.check_integrity();
    EXPECT_TRUE(report.ok()) << (report.problems.empty() ? "" : report.problems.front());
    const std::int64_t raw = rows(store, Tier::kRaw);
    EXPECT_GT(raw, 0);
    EXPECT_EQ(raw % 8, 0) << "a sample was stored for only some GPUs";
    EXPECT_EQ(scalar(store, "SELECT sum(n) FROM gpu_samples WHERE tier = 1"), raw);
    EXPECT_EQ(scalar(store, "SELECT sum(n) FROM gpu_samples WHERE tier = 2"), raw);
    GpuHistory h(store, keep_all);
    h.add(at(kT0 + kRounds * 1'000'000), {point(0, 1.0)});  // and it is still writable
    EXPECT_EQ(h.devices().size(), 8u);
}

}  // namespace
}  // namespace mlk::metrics
