#include "mlkeeper/util/progress.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "mlkeeper/util/units.hpp"

namespace mlk::util {

namespace {

constexpr std::string_view kClearToEol = "\x1b[K";

// ETAs beyond this (a stalled transfer) say nothing useful and would overflow a seconds count.
constexpr double kMaxEtaSeconds = 100.0 * 86400;

bool should_draw(ProgressMode mode, int fd) {
    switch (mode) {
        case ProgressMode::kAlways:
            return true;
        case ProgressMode::kNever:
            return false;
        case ProgressMode::kAuto:
            break;
    }
    if (::isatty(fd) != 1) {
        return false;
    }
    const char* term = std::getenv("TERM");
    return term == nullptr || std::strcmp(term, "dumb") != 0;
}

void write_all(int fd, std::string_view text) {
    while (!text.empty()) {
        const ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;  // the display is best effort; the work it reports on must go on
        }
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

enum class LineEnd { kStay, kNewline };

// Built by appending: GCC 12 at -O3 warns falsely (-Wrestrict) about "\r" + std::string&&.
std::string redraw_line(const std::string& text, LineEnd end) {
    std::string line;
    line.reserve(text.size() + kClearToEol.size() + 2);
    line += '\r';
    line += text;
    line += kClearToEol;
    if (end == LineEnd::kNewline) {
        line += '\n';
    }
    return line;
}

std::int64_t to_ns(std::chrono::steady_clock::time_point tp) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
}

}  // namespace

Progress::Progress(std::string label, std::uint64_t total_bytes, ProgressMode mode, int fd)
    : label_(std::move(label)),
      total_(total_bytes),
      enabled_(should_draw(mode, fd)),
      sink_([fd](std::string_view text) { write_all(fd, text); }),
      now_([] { return SteadyClock::now(); }),
      next_draw_ns_(std::numeric_limits<std::int64_t>::min()) {
    start_ = now_();
    last_sample_time_ = start_;
}

Progress::~Progress() {
    try {
        finish();
    } catch (...) {
        // A failing sink must not turn into std::terminate during unwinding.
    }
}

void Progress::set_sink(Sink sink) {
    std::lock_guard lock(mutex_);
    sink_ = std::move(sink);
}

void Progress::set_clock(NowFn now) {
    std::lock_guard lock(mutex_);
    now_ = std::move(now);
    start_ = now_();
    last_sample_time_ = start_;
    last_sample_done_ = done_.load(std::memory_order_relaxed);
    have_rate_ = false;
    rate_ = 0;
    next_draw_ns_.store(std::numeric_limits<std::int64_t>::min(), std::memory_order_relaxed);
}

void Progress::advance(std::uint64_t bytes) {
    done_.fetch_add(bytes, std::memory_order_relaxed);
    if (!enabled_) {
        return;
    }
    const auto now = now_();
    const std::int64_t now_ns = to_ns(now);
    if (now_ns < next_draw_ns_.load(std::memory_order_relaxed)) {
        return;
    }
    std::lock_guard lock(mutex_);
    // Re-check under the lock: another thread may have drawn since the load above.
    if (finished_ || now_ns < next_draw_ns_.load(std::memory_order_relaxed)) {
        return;
    }
    next_draw_ns_.store(now_ns + std::chrono::nanoseconds(kRedrawInterval).count(),
                        std::memory_order_relaxed);
    sample_locked(now, done_.load(std::memory_order_relaxed));
    drew_ = true;
    sink_(redraw_line(render_locked(now), LineEnd::kStay));
}

void Progress::finish() {
    std::lock_guard lock(mutex_);
    if (finished_) {
        return;
    }
    finished_ = true;
    if (!drew_) {
        return;
    }
    const auto now = now_();
    sample_locked(now, done_.load(std::memory_order_relaxed));
    sink_(redraw_line(render_locked(now), LineEnd::kNewline));
}

double Progress::rate() const {
    std::lock_guard lock(mutex_);
    return rate_locked(now_(), done_.load(std::memory_order_relaxed));
}

std::string Progress::render() const {
    std::lock_guard lock(mutex_);
    return render_locked(now_());
}

void Progress::sample_locked(SteadyClock::time_point now, std::uint64_t done) {
    const auto dt = now - last_sample_time_;
    if (dt < kRateSampleInterval) {
        return;  // too short to measure; the bytes count toward the next sample
    }
    const double seconds = std::chrono::duration<double>(dt).count();
    const double instant = static_cast<double>(done - last_sample_done_) / seconds;
    if (!have_rate_) {
        rate_ = instant;
        have_rate_ = true;
    } else {
        // Weight by elapsed time so the smoothing does not depend on how often we redraw.
        const double alpha =
            1.0 - std::exp(-seconds / std::chrono::duration<double>(kRateTimeConstant).count());
        rate_ += alpha * (instant - rate_);
    }
    last_sample_time_ = now;
    last_sample_done_ = done;
}

double Progress::rate_locked(SteadyClock::time_point now, std::uint64_t done) const {
    if (have_rate_) {
        return rate_;
    }
    const double seconds = std::chrono::duration<double>(now - start_).count();
    if (seconds <= 0) {
        return 0;
    }
    return static_cast<double>(done) / seconds;
}

std::string Progress::render_locked(SteadyClock::time_point now) const {
    const std::uint64_t done = done_.load(std::memory_order_relaxed);
    std::string out = label_;
    if (!out.empty()) {
        out += "  ";
    }
    if (total_ > 0) {
        auto percent = static_cast<unsigned>(static_cast<long double>(done) * 100 / total_);
        if (done >= total_) {
            percent = 100;
        } else if (percent > 99) {
            percent = 99;  // 100% promises completion
        }
        out += std::to_string(percent) + "% " + format_bytes(done) + " / " + format_bytes(total_);
    } else {
        out += format_bytes(done);
    }
    const bool rate_known = have_rate_ || now > start_;
    if (!rate_known) {
        return out;
    }
    const double rate = rate_locked(now, done);
    out += "  " + format_rate(rate);
    if (total_ > 0 && done < total_ && rate > 0) {
        const double eta = std::ceil(static_cast<double>(total_ - done) / rate);
        if (eta <= kMaxEtaSeconds) {
            out += "  ETA " + format_duration(std::chrono::seconds(static_cast<std::int64_t>(eta)));
        }
    }
    return out;
}

}  // namespace mlk::util
