// A one-line progress display for long byte-moving work (backup, restore, upload): bytes done,
// percent, smoothed rate and ETA, redrawn in place on a terminal and silent under cron, journald
// or a pipe so logs stay clean.
// Thread safety: advance(), finish(), render(), rate() and enabled() may be called from any
// threads at once; set_sink() and set_clock() must be called before the object is shared.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace mlk::util {

enum class ProgressMode {
    kAuto,    // draw iff the fd is a terminal (isatty) and TERM is not "dumb"
    kAlways,  // draw even into a pipe or file (--progress)
    kNever,   // never draw (--no-progress, --json)
};

class Progress {
  public:
    using Sink = std::function<void(std::string_view)>;
    using SteadyClock = std::chrono::steady_clock;
    using NowFn = std::function<SteadyClock::time_point()>;

    // At most one redraw per interval, so a hot copy loop does not spend its time on the terminal.
    static constexpr std::chrono::milliseconds kRedrawInterval{100};
    // The rate is re-estimated at most this often, and smoothed with an exponential moving
    // average whose time constant is kRateTimeConstant, so bursts (page cache, network buffers)
    // do not make the rate and ETA jump around.
    static constexpr std::chrono::milliseconds kRateSampleInterval{500};
    static constexpr std::chrono::seconds kRateTimeConstant{3};

    // total_bytes 0 means unknown: no percent and no ETA. The default sink write(2)s to `fd`
    // (ignoring errors: a broken terminal must not fail a backup); the default clock is
    // steady_clock. Timing starts at construction (or at set_clock()).
    Progress(std::string label, std::uint64_t total_bytes, ProgressMode mode = ProgressMode::kAuto,
             int fd = 2);
    // Calls finish(); exceptions from the sink are swallowed here.
    ~Progress();

    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;

    // Receives each redraw: "\r" + render() + "\x1b[K", and the final line with "\n" added.
    void set_sink(Sink sink);
    // Replaces the clock and restarts timing from its current time.
    void set_clock(NowFn now);

    // Adds `bytes` to the count (atomic) and redraws if enabled, not finished and the last
    // redraw was at least kRedrawInterval ago. The first call always redraws.
    void advance(std::uint64_t bytes);

    // Draws the final line followed by a newline, but only if anything was drawn before, so a
    // disabled or unused Progress writes nothing. Later calls (and advance()) draw nothing.
    void finish();

    bool enabled() const { return enabled_; }
    std::uint64_t done() const { return done_.load(std::memory_order_relaxed); }

    // Bytes per second: the smoothed rate once one sample interval has passed, before that the
    // average since the start; 0 while no time has passed.
    double rate() const;

    // "label  45% 1.2 GiB / 2.6 GiB  120.0 MiB/s  ETA 12s". The percent shows 100 only when the
    // total is reached; the rate is left out while unknown, the ETA while the rate is 0 or the
    // work is complete; with an unknown total: "label  1.2 GiB  120.0 MiB/s".
    std::string render() const;

  private:
    void sample_locked(SteadyClock::time_point now, std::uint64_t done);
    double rate_locked(SteadyClock::time_point now, std::uint64_t done) const;
    std::string render_locked(SteadyClock::time_point now) const;

    const std::string label_;
    const std::uint64_t total_;
    const bool enabled_;
    Sink sink_;
    NowFn now_;

    std::atomic<std::uint64_t> done_{0};
    // steady_clock nanoseconds before which advance() does not even take the mutex.
    std::atomic<std::int64_t> next_draw_ns_;

    mutable std::mutex mutex_;  // guards everything below and serialises calls to the sink
    bool drew_ = false;
    bool finished_ = false;
    SteadyClock::time_point start_;
    SteadyClock::time_point last_sample_time_;
    std::uint64_t last_sample_done_ = 0;
    bool have_rate_ = false;
    double rate_ = 0;  // smoothed bytes per second, valid when have_rate_
};

}  // namespace mlk::util
