// GPU history benchmark: fills a fresh state.db with DAYS days of samples every INTERVAL seconds
// for GPUS GPUs through metrics::GpuHistory::add() on a fake clock (as fast as it goes, reported
// day by day), then prints the file size after a checkpoint, the rows per tier, the cost of one
// add() and the median time of 20 queries over 1 h, 24 h, 7 d and 30 d.
//
//   mlkeeper_history_bench [--dir DIR] [--days 30] [--gpus 8] [--interval 10] [--keep]
//                          [--until-now]
//
// DIR defaults to a new directory under $TMPDIR (removed at the end unless --keep). Targets:
// the database under 50 MB, the 24 h query under 20 ms.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/core/sqlite_db.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/metrics/gpu_history.hpp"

namespace {

namespace fs = std::filesystem;
using mlk::core::Database;
using mlk::core::Statement;
using mlk::core::StateStore;
using mlk::metrics::GpuHistory;
using mlk::metrics::GpuPoint;
using Clock = std::chrono::steady_clock;
using TimePoint = std::chrono::system_clock::time_point;

struct Options {
    fs::path dir;
    int days = 30;
    int gpus = 8;
    int interval_s = 10;
    bool keep = false;
    bool until_now = false;  // the samples end now, not in January 2026
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "history_bench: %s\nusage: history_bench [--dir DIR] [--days N] [--gpus N] "
                 "[--interval SECONDS] [--keep] [--until-now]\n",
                 why.c_str());
    std::exit(64);
}

int positive(const char* text, const char* flag) {
    char* end = nullptr;
    const long v = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || v <= 0 || v > 100000) {
        usage(std::string(flag) + " needs a positive number, not '" + text + "'");
    }
    return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                usage(std::string(a) + " needs a value");
            }
            return argv[++i];
        };
        if (a == "--dir") {
            o.dir = value();
        } else if (a == "--days") {
            o.days = positive(value(), "--days");
        } else if (a == "--gpus") {
            o.gpus = positive(value(), "--gpus");
        } else if (a == "--interval") {
            o.interval_s = positive(value(), "--interval");
            if (o.interval_s > 3600) {
                usage("--interval is at most 3600 seconds");
            }
        } else if (a == "--keep") {
            o.keep = true;
        } else if (a == "--until-now") {
            o.until_now = true;
        } else {
            usage("unknown argument '" + std::string(a) + "'");
        }
    }
    return o;
}

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Bytes this process handed to write(2)/pwrite(2) so far (wchar in /proc/self/io): WAL frames
// plus checkpoint copies, what the history costs the disk. -1 where the file is missing.
long long bytes_written() {
    std::FILE* f = std::fopen("/proc/self/io", "r");
    if (f == nullptr) {
        return -1;
    }
    long long value = -1;
    char key[32];
    long long v = 0;
    while (std::fscanf(f, "%31s %lld", key, &v) == 2) {
        if (std::string_view(key) == "wchar:") {
            value = v;
            break;
        }
    }
    std::fclose(f);
    return value;
}

std::uintmax_t size_or_zero(const fs::path& p) {
    std::error_code ec;
    const auto n = fs::file_size(p, ec);
    return ec ? 0 : n;
}

// Values shaped like NVML's: whole degrees, whole percent, MiB, milliwatts; each GPU wanders
// around its own load so the sums are not all alike.
class FakeGpus {
  public:
    explicit FakeGpus(int count) : load_(static_cast<std::size_t>(count), 0.5) {}

    std::vector<GpuPoint> sample() {
        std::vector<GpuPoint> out;
        out.reserve(load_.size());
        for (std::size_t i = 0; i < load_.size(); ++i) {
            double& load = load_[i];
            load = std::clamp(load + step_(rng_), 0.0, 1.0);
            GpuPoint p;
            p.gpu = static_cast<int>(i);
            p.uuid = "GPU-00000000-0000-0000-0000-00000000000" + std::to_string(i % 10);
            p.name = "NVIDIA H100 80GB HBM3";
            p.temp_c = std::round(32.0 + 50.0 * load);
            p.util_ratio = std::round(100.0 * load) / 100.0;
            p.mem_total_bytes = 85899345920.0;
            p.mem_used_bytes = std::round(1024.0 + 80000.0 * load) * 1048576.0;
            p.power_w = std::round(70000.0 + 630000.0 * load + noise_(rng_)) / 1000.0;
            p.power_limit_w = 700.0;
            out.push_back(std::move(p));
        }
        return out;
    }

  private:
    std::vector<double> load_;
    std::mt19937_64 rng_{20260101};
    std::normal_distribution<double> step_{0.0, 0.03};
    std::normal_distribution<double> noise_{0.0, 5000.0};
};

int run(const Options& opt) {
    fs::path dir = opt.dir;
    bool made_dir = false;
    if (dir.empty()) {
        std::string tmpl = (fs::temp_directory_path() / "mlk-history-bench-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed under " + fs::temp_directory_path().string());
        }
        dir = tmpl;
        made_dir = true;
    }
    const fs::path file = dir / StateStore::kFileName;
    for (const char* suffix : {"", "-wal", "-shm"}) {
        if (fs::exists(file.string() + suffix)) {
            throw std::runtime_error(file.string() + suffix +
                                     " exists; the bench needs a fresh "
                                     "database (choose another --dir)");
        }
    }

    StateStore store(file);
    GpuHistory history(store);
    FakeGpus gpus(opt.gpus);

    // 2026-01-01T00:00:00Z (or DAYS days ago with --until-now), then DAYS days on a fake clock.
    const std::int64_t start_s = opt.until_now
                                     ? std::chrono::duration_cast<std::chrono::seconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                               .count() -
                                           std::int64_t{opt.days} * 86400
                                     : 1767225600;
    const std::int64_t per_day = 86400 / opt.interval_s;
    std::printf("filling %s: %d days x %lld samples/day x %d GPUs (every %d s)\n", file.c_str(),
                opt.days, static_cast<long long>(per_day), opt.gpus, opt.interval_s);
    std::int64_t t = start_s;
    std::int64_t adds = 0;
    double fill_ms = 0;
    double last_day_ms = 0;
    std::vector<double> add_us;  // the last day's add() calls, one by one
    const long long written_before = bytes_written();
    for (int day = 0; day < opt.days; ++day) {
        const bool last = day == opt.days - 1;
        if (last) {
            add_us.reserve(static_cast<std::size_t>(per_day));
        }
        const auto day_start = Clock::now();
        for (std::int64_t i = 0; i < per_day; ++i, t += opt.interval_s) {
            const auto sample = gpus.sample();
            const auto one = Clock::now();
            history.add(TimePoint(std::chrono::seconds(t)), sample);
            if (last) {
                add_us.push_back(ms_since(one) * 1000.0);
            }
            ++adds;
        }
        const double ms = ms_since(day_start);
        fill_ms += ms;
        last_day_ms = ms;
        if (day == 0 || last || (day + 1) % 5 == 0) {
            std::printf("  day %2d: %7.0f ms (%.1f us per add)  db %6.1f MB  wal %5.1f MB\n",
                        day + 1, ms, ms * 1000.0 / static_cast<double>(per_day),
                        static_cast<double>(size_or_zero(file)) / 1e6,
                        static_cast<double>(size_or_zero(file.string() + "-wal")) / 1e6);
            std::fflush(stdout);
        }
    }
    const std::int64_t end_s = t - opt.interval_s;
    const long long written = bytes_written() - written_before;

    store.with_db("checkpointing", [](Database& db) {
        Statement st = db.prepare("PRAGMA wal_checkpoint(TRUNCATE)");
        while (st.step()) {
        }
    });
    const auto db_bytes = size_or_zero(file);
    const auto wal_bytes = size_or_zero(file.string() + "-wal");
    std::printf("\nfile: db %.1f MB + wal %.1f MB = %.1f MB (target < 50 MB)\n",
                static_cast<double>(db_bytes) / 1e6, static_cast<double>(wal_bytes) / 1e6,
                static_cast<double>(db_bytes + wal_bytes) / 1e6);
    store.with_db("counting rows", [](Database& db) {
        Statement st = db.prepare(
            "SELECT tier, count(*), min(t), max(t) FROM gpu_samples GROUP BY tier ORDER BY tier");
        static constexpr const char* kNames[] = {"raw", "1-minute", "10-minute"};
        while (st.step()) {
            const auto tier = st.column_int64(0);
            std::printf("  tier %lld (%-9s): %8lld rows, %.1f days\n", static_cast<long long>(tier),
                        tier >= 0 && tier < 3 ? kNames[tier] : "?",
                        static_cast<long long>(st.column_int64(1)),
                        static_cast<double>(st.column_int64(3) - st.column_int64(2)) / 86400.0);
        }
        Statement pages = db.prepare("PRAGMA page_count");
        Statement free_pages = db.prepare("PRAGMA freelist_count");
        if (pages.step() && free_pages.step()) {
            std::printf("  pages: %lld, free: %lld\n",
                        static_cast<long long>(pages.column_int64(0)),
                        static_cast<long long>(free_pages.column_int64(0)));
        }
    });

    std::sort(add_us.begin(), add_us.end());
    const auto pct = [&add_us](double p) {
        return add_us.empty()
                   ? 0.0
                   : add_us[std::min(
                         add_us.size() - 1,
                         static_cast<std::size_t>(p * static_cast<double>(add_us.size())))];
    };
    std::printf(
        "\ninsert: %lld add() calls in %.1f s: %.1f us per add (%d GPUs), %.2f us per "
        "GPU sample\n",
        static_cast<long long>(adds), fill_ms / 1000.0,
        fill_ms * 1000.0 / static_cast<double>(adds), opt.gpus,
        fill_ms * 1000.0 / static_cast<double>(adds * opt.gpus));
    std::printf(
        "  last day (full tiers, pruning every 10 min): %.1f us per add; p50 %.1f, p99 "
        "%.1f, max %.1f us\n",
        last_day_ms * 1000.0 / static_cast<double>(per_day), pct(0.5), pct(0.99),
        add_us.empty() ? 0.0 : add_us.back());
    if (written >= 0 && written_before >= 0) {
        std::printf("  written (WAL + checkpoints): %.0f MB per day, %.1f KB per add\n",
                    static_cast<double>(written) / 1e6 / opt.days,
                    static_cast<double>(written) / 1e3 / static_cast<double>(adds));
    }

    std::printf("\nquery (median of 20, max_points 720; to = the last sample):\n");
    struct Range {
        const char* name;
        std::int64_t seconds;
    };
    const TimePoint to{std::chrono::seconds(end_s)};
    for (const Range r : {Range{"1 h", 3600}, Range{"24 h", 86400}, Range{"7 d", 7 * 86400},
                          Range{"30 d", 30 * 86400}}) {
        const TimePoint from = to - std::chrono::seconds(r.seconds);
        std::vector<double> times;
        GpuHistory::Query q;
        for (int i = 0; i < 20; ++i) {
            const auto q_start = Clock::now();
            q = history.query(from, to);
            times.push_back(ms_since(q_start));
        }
        std::sort(times.begin(), times.end());
        std::size_t points = 0;
        for (const auto& s : q.gpus) {
            points = std::max(points, s.t.size());
        }
        std::printf(
            "  %-5s %7.2f ms (min %.2f, max %.2f)  tier %d, step %lld s, %zu GPUs x %zu "
            "points%s\n",
            r.name, (times[9] + times[10]) / 2, times.front(), times.back(),
            static_cast<int>(q.tier), static_cast<long long>(q.step.count()), q.gpus.size(), points,
            r.seconds == 86400 ? "  (target < 20 ms)" : "");
    }

    if (made_dir && !opt.keep) {
        std::error_code ec;
        fs::remove_all(dir, ec);
    } else {
        std::printf("\nkept %s\n", file.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "history_bench: %s\n", e.what());
        return 1;
    }
}
