#include "mlkeeper/homelab/idle_reaper.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include <spdlog/spdlog.h>

#include "mlkeeper/core/config.hpp"

namespace mlk::homelab {

using std::chrono::seconds;

ReaperSettings reaper_settings_from(const core::Config& cfg) {
    ReaperSettings s;
    s.interval =
        std::max<std::chrono::milliseconds>(cfg.duration("models.reaper_interval"), seconds(1));
    return s;
}

std::string format_idle(seconds s) {
    if (s.count() <= 0) {
        return "0s";
    }
    static constexpr std::pair<std::int64_t, char> kUnits[] = {
        {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    std::string out;
    auto left = s.count();
    for (const auto& [size, unit] : kUnits) {
        if (left >= size) {
            out += std::to_string(left / size);
            out += unit;
            left %= size;
        }
    }
    return out;
}

IdleReaper::IdleReaper(ReaperSettings settings, ModelManager& models,
                       const ActivityTracker& activity, const std::vector<ModelSpec>& specs,
                       OnStop on_stop, Clock now)
    : settings_(settings),
      models_(models),
      activity_(activity),
      on_stop_(std::move(on_stop)),
      now_(std::move(now)) {
    for (const auto& spec : specs) {
        Policy p;
        p.pinned = spec.pinned;
        if (spec.idle_timeout && spec.idle_timeout->count() > 0) {
            p.idle_timeout = spec.idle_timeout;
        }
        policies_[spec.name] = p;
    }
}

IdleReaper::~IdleReaper() {
    stop();
}

std::optional<seconds> IdleReaper::timeout_of(const std::string& name) const {
    const auto it = policies_.find(name);
    if (it == policies_.end() || it->second.pinned) {
        return std::nullopt;
    }
    return it->second.idle_timeout;
}

std::optional<ReaperStop> IdleReaper::due(const ModelInfo& info, const Policy& p,
                                          SysTime now) const {
    if (info.state != ModelState::kRunning || info.pinned || p.pinned || !p.idle_timeout ||
        activity_.in_flight(info.name) > 0) {
        return std::nullopt;
    }
    SysTime idle_since = info.since;
    if (const auto last = activity_.last_request(info.name); last && *last > idle_since) {
        idle_since = *last;
    }
    const auto idle = std::chrono::floor<seconds>(now - idle_since);
    if (idle <= *p.idle_timeout) {
        return std::nullopt;
    }
    ReaperStop s;
    s.name = info.name;
    s.idle = idle;
    s.idle_timeout = *p.idle_timeout;
    s.reason = "idle for " + format_idle(idle) + " > idle_timeout " + format_idle(*p.idle_timeout);
    return s;
}

std::vector<ReaperStop> IdleReaper::run_once() {
    std::lock_guard run_lk(run_mu_);
    std::vector<ReaperStop> done;
    std::vector<ModelInfo> infos;
    try {
        infos = models_.list();
    } catch (const std::exception& ex) {
        spdlog::error("idle reaper: cannot list the models: {}", ex.what());
        return done;
    }
    for (const auto& info : infos) {
        const auto pit = policies_.find(info.name);
        if (pit == policies_.end() || !due(info, pit->second, now_())) {
            continue;
        }
        // The decision above took a moment: a request may have started or finished since, or
        // someone stopped or restarted the model. Decide again on fresh readings.
        const auto fresh = models_.get(info.name);
        if (!fresh || fresh->since != info.since) {
            continue;
        }
        auto stop = due(*fresh, pit->second, now_());
        if (!stop) {
            continue;
        }
        stop->at = now_();
        spdlog::info("idle reaper: stopping model {}: {}", quote_name(stop->name), stop->reason);
        try {
            const auto r = models_.stop(stop->name, Wait::kYes, std::nullopt);
            if (r.outcome == OpOutcome::kAlreadyStopped) {
                continue;  // stopped by someone else meanwhile: not ours to report
            }
        } catch (const std::exception& ex) {
            stop->error = ex.what();
            spdlog::warn("idle reaper: could not stop model {}: {}", quote_name(stop->name),
                         ex.what());
        }
        {
            std::lock_guard lk(mu_);
            recent_.push_front(*stop);
            while (recent_.size() > settings_.history) {
                recent_.pop_back();
            }
        }
        if (on_stop_) {
            try {
                on_stop_(*stop);
            } catch (const std::exception& ex) {
                spdlog::error("idle reaper: the stop callback failed: {}", ex.what());
            }
        }
        done.push_back(std::move(*stop));
    }
    std::lock_guard lk(mu_);
    last_run_ = now_();
    return done;
}

void IdleReaper::start() {
    std::lock_guard lk(thread_mu_);
    if (thread_.joinable()) {
        return;
    }
    stop_ = false;
    thread_ = std::thread([this] {
        std::unique_lock wait_lk(thread_mu_);
        while (!cv_.wait_for(wait_lk, settings_.interval, [this] { return stop_; })) {
            wait_lk.unlock();
            run_once();
            wait_lk.lock();
        }
    });
}

void IdleReaper::stop() {
    {
        std::lock_guard lk(thread_mu_);
        if (!thread_.joinable()) {
            return;
        }
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

std::vector<ReaperStop> IdleReaper::recent() const {
    std::lock_guard lk(mu_);
    return {recent_.begin(), recent_.end()};
}

std::optional<SysTime> IdleReaper::last_run() const {
    std::lock_guard lk(mu_);
    return last_run_;
}

}  // namespace mlk::homelab
