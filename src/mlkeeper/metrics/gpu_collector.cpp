#include "mlkeeper/metrics/gpu_collector.hpp"

#include <spdlog/spdlog.h>

#include <utility>

#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/gpu/format.hpp"
#include "mlkeeper/gpu/format_xid.hpp"
#include "mlkeeper/metrics/gpu_history.hpp"

namespace mlk::metrics {
namespace {

constexpr std::chrono::minutes kDriverRetry{10};

std::vector<GpuPoint> history_points(const gpu::Snapshot& s) {
    std::vector<GpuPoint> out;
    for (const auto& g : s.gpus) {
        GpuPoint p;
        p.gpu = static_cast<int>(g.index);
        p.uuid = g.uuid;
        p.name = g.name;
        if (!g.lost) {
            if (g.temperature_c) {
                p.temp_c = *g.temperature_c;
            }
            if (g.util_gpu_pct) {
                p.util_ratio = *g.util_gpu_pct / 100.0;
            }
            if (g.mem_used_bytes) {
                p.mem_used_bytes = static_cast<double>(*g.mem_used_bytes);
            }
            if (g.mem_total_bytes) {
                p.mem_total_bytes = static_cast<double>(*g.mem_total_bytes);
            }
            p.power_w = g.power_draw_w;
            p.power_limit_w = g.power_limit_w;
        }
        out.push_back(std::move(p));
    }
    return out;
}

}  // namespace

GpuCollector::GpuCollector(GpuCollectorSettings settings, GpuHistory* history)
    : settings_(std::move(settings)),
      history_(history),
      latest_(std::make_shared<GpuReading>(GpuReading{std::nullopt, {}, "not read yet", ""})),
      task_(settings_.interval, [this] { sample_now(); }) {}

GpuCollector::~GpuCollector() {
    stop();
}

void GpuCollector::start() {
    task_.start();
}

void GpuCollector::stop() {
    task_.stop();
    if (xid_) {
        xid_->stop();
    }
}

void GpuCollector::sample_now() {
    auto next = std::make_shared<GpuReading>();
    try {
        const auto now = std::chrono::steady_clock::now();
        if (!sampler_ && now >= next_load_try_) {
            try {
                sampler_ = std::make_unique<gpu::Sampler>(settings_.library);
                start_xid_watcher();
            } catch (const gpu::nvml::NvmlError& e) {
                next_load_try_ = now + kDriverRetry;
                if (!e.means_no_driver()) {
                    throw;
                }
                next->error = e.what();
            }
        }
        if (sampler_) {
            next->snapshot = sampler_->sample();
            next->judgement = gpu::judge(*next->snapshot, settings_.thresholds);
            next->prometheus = gpu::to_prometheus(*next->snapshot, next->judgement);
            if (xid_) {
                core::MetricsText m;
                gpu::append_xid(m, xid_->counts());
                next->prometheus += m.str();
            }
        } else if (next->error.empty()) {
            next->error = latest()->error;  // still waiting to look for the driver again
        }
    } catch (const std::exception& e) {
        // An NVML that fails now may work after a driver reload: load it afresh next time.
        sampler_.reset();
        next->snapshot.reset();
        next->error = e.what();
        spdlog::warn("metrics: cannot read the GPUs: {}", e.what());
    }
    if (history_ != nullptr && next->snapshot && !next->snapshot->gpus.empty()) {
        try {
            history_->add(next->snapshot->time, history_points(*next->snapshot));
        } catch (const std::exception& e) {
            spdlog::warn("metrics: cannot store the GPU sample: {}", e.what());
        }
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        latest_ = std::move(next);
        sampled_once_ = true;
    }
    sampled_.notify_all();
}

std::shared_ptr<const GpuReading> GpuCollector::first_reading(
    std::chrono::milliseconds limit) const {
    std::unique_lock<std::mutex> lock(mu_);
    sampled_.wait_for(lock, limit, [this] { return sampled_once_; });
    return latest_;
}

void GpuCollector::start_xid_watcher() {
    if (xid_) {
        return;  // counts survive an NVML reload: they are since the agent started
    }
    try {
        auto w = std::make_unique<gpu::XidWatcher>(settings_.library, [](const gpu::XidCount& c) {
            spdlog::warn("GPU {} ({}) reported XID {} ({} since the agent started)", c.gpu, c.name,
                         c.last_xid, c.count);
        });
        if (!w->supported()) {
            spdlog::info("metrics: GPU XID errors are not counted: {}", w->unsupported_reason());
            return;
        }
        w->start();
        xid_ = std::move(w);
    } catch (const std::exception& e) {
        spdlog::info("metrics: GPU XID errors are not counted: {}", e.what());
    }
}

std::shared_ptr<const GpuReading> GpuCollector::latest() const {
    std::lock_guard<std::mutex> lock(mu_);
    return latest_;
}

std::vector<health::GpuReading> health_readings(const gpu::Snapshot& snapshot) {
    std::vector<health::GpuReading> out;
    for (const auto& g : snapshot.gpus) {
        health::GpuReading r;
        r.index = static_cast<int>(g.index);
        r.name = g.name;
        if (g.temperature_c) {
            r.temp_c = *g.temperature_c;
        }
        r.mem_used_pct = g.mem_used_pct();
        r.ecc_uncorrected =
            g.ecc.volatile_uncorrected ? g.ecc.volatile_uncorrected : g.ecc.aggregate_uncorrected;
        r.lost = g.lost;
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace mlk::metrics
