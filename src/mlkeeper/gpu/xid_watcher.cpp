#include "mlkeeper/gpu/xid_watcher.hpp"

#include <exception>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace mlk::gpu {

namespace {

// Bounds how long stop() waits for the thread, which sits in the driver's wait.
constexpr unsigned int kWaitMs = 200;
// After an unexpected wait error, so a broken driver is not asked again in a tight loop.
constexpr std::chrono::milliseconds kBackoff{1000};
// A lost GPU may fail every wait at once; pausing briefly keeps that from spinning while the
// other GPUs' events (queued by the driver meanwhile) still come through.
constexpr std::chrono::milliseconds kLostPause{100};
constexpr std::chrono::seconds kWarnEvery{60};

std::string describe(const nvml::Nvml& n, nvml::Return r) {
    return fmt::format("{} ({})", n.error_string(r), nvml::return_name(r));
}

}  // namespace

XidWatcher::XidWatcher(const std::string& library, std::function<void(const XidCount&)> on_xid)
    : nvml_(std::make_unique<nvml::Nvml>(library)), on_xid_(std::move(on_xid)) {
    unsigned int count = 0;
    if (nvml::Return r = nvml_->device_count(&count); r != nvml::kSuccess) {
        unsupported_reason_ = fmt::format("NVML cannot count the GPUs: {}", describe(*nvml_, r));
        return;
    }
    std::vector<nvml::Return> open_errors(count, nvml::kSuccess);
    for (unsigned int i = 0; i < count; ++i) {
        XidCount c;
        c.gpu = i;
        nvml::Device h = nullptr;
        open_errors[i] = nvml_->handle_by_index(i, &h);
        if (open_errors[i] != nvml::kSuccess) {
            h = nullptr;
        } else {
            if (nvml_->uuid(h, &c.uuid) != nvml::kSuccess) {
                c.uuid.clear();
            }
            if (nvml_->name(h, &c.name) != nvml::kSuccess) {
                c.name.clear();
            }
        }
        handles_.push_back(h);
        counts_.push_back(std::move(c));
    }
    if (count == 0) {
        unsupported_reason_ = "NVML lists no GPU";
        return;
    }
    if (!nvml_->has_events()) {
        unsupported_reason_ = fmt::format(
            "{} has no event calls (nvmlEventSetCreate, nvmlDeviceRegisterEvents, "
            "nvmlEventSetWait): the NVIDIA driver is too old to report XID errors",
            library);
        return;
    }
    if (nvml::Return r = nvml_->create_event_set(&set_); r != nvml::kSuccess) {
        unsupported_reason_ = fmt::format("nvmlEventSetCreate failed: {}", describe(*nvml_, r));
        return;
    }
    std::string refused;
    for (unsigned int i = 0; i < count; ++i) {
        nvml::Return r =
            handles_[i] != nullptr
                ? nvml_->register_events(handles_[i], nvml::kEventTypeXidCriticalError, set_)
                : open_errors[i];
        if (r == nvml::kSuccess) {
            supported_ = true;
            continue;
        }
        refused += fmt::format("{}GPU {}{}: {}", refused.empty() ? "" : "; ", i,
                               counts_[i].name.empty() ? "" : " (" + counts_[i].name + ")",
                               describe(*nvml_, r));
    }
    if (!refused.empty()) {
        unsupported_reason_ = "no XID events from " + refused;
    }
    if (!supported_) {
        set_.reset();
    }
}

XidWatcher::~XidWatcher() {
    stop();
}

void XidWatcher::start() {
    std::lock_guard lock(mu_);
    if (!supported_ || stop_ || thread_.joinable()) {
        return;
    }
    thread_ = std::thread([this] { run(); });
}

void XidWatcher::stop() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

std::vector<XidCount> XidWatcher::counts() const {
    std::lock_guard lock(mu_);
    return counts_;
}

bool XidWatcher::pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stop_; });
}

void XidWatcher::warn(const std::string& message) {
    const auto now = std::chrono::steady_clock::now();
    if (warned_ && now - last_warn_ < kWarnEvery) {
        ++suppressed_warnings_;
        return;
    }
    if (suppressed_warnings_ > 0) {
        spdlog::warn("{} ({} more XID watcher warnings in the last minute not shown)", message,
                     suppressed_warnings_);
    } else {
        spdlog::warn("{}", message);
    }
    warned_ = true;
    last_warn_ = now;
    suppressed_warnings_ = 0;
}

void XidWatcher::run() {
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (stop_) {
                return;
            }
        }
        nvml::EventData ev{};
        const nvml::Return r = nvml_->wait_event(set_, &ev, kWaitMs);
        if (r == nvml::kErrorTimeout) {
            continue;
        }
        std::size_t gpu = handles_.size();
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            if (ev.device != nullptr && handles_[i] == ev.device) {
                gpu = i;
            }
        }
        if (r == nvml::kErrorGpuIsLost) {
            warn(
                fmt::format("XID watcher: {} is lost (fallen off the bus?); still watching the "
                            "other GPUs",
                            gpu < handles_.size() ? fmt::format("GPU {}", gpu) : "a GPU"));
            if (!pause(kLostPause)) {
                return;
            }
            continue;
        }
        if (r != nvml::kSuccess) {
            warn(fmt::format("XID watcher: waiting for GPU events failed: {}; retrying in 1 s",
                             describe(*nvml_, r)));
            if (!pause(kBackoff)) {
                return;
            }
            continue;
        }
        if ((ev.event_type & nvml::kEventTypeXidCriticalError) == 0 || gpu >= handles_.size()) {
            continue;
        }
        XidCount now;
        {
            std::lock_guard lock(mu_);
            XidCount& c = counts_[gpu];
            ++c.count;
            c.last_xid = ev.event_data;
            c.last_at = std::chrono::system_clock::now();
            now = c;
        }
        if (on_xid_) {
            // The callback belongs to the agent; its failure must not end the thread (and with
            // it the process).
            try {
                on_xid_(now);
            } catch (const std::exception& e) {
                warn(fmt::format("XID watcher: handling XID {} of GPU {} failed: {}", now.last_xid,
                                 now.gpu, e.what()));
            }
        }
    }
}

}  // namespace mlk::gpu
