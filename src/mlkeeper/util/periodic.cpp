#include "mlkeeper/util/periodic.hpp"

#include <utility>

namespace mlk::util {

PeriodicTask::PeriodicTask(std::chrono::milliseconds interval, std::function<void()> tick)
    : interval_(interval), tick_(std::move(tick)) {}

PeriodicTask::~PeriodicTask() {
    stop();
}

void PeriodicTask::start() {
    thread_ = std::thread([this] { run(); });
}

void PeriodicTask::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void PeriodicTask::poke() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        poked_ = true;
    }
    cv_.notify_all();
}

void PeriodicTask::run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
        lock.unlock();
        tick_();
        lock.lock();
        // Steady time: a clock step must neither stall nor flood the ticks.
        cv_.wait_for(lock, interval_, [this] { return stop_ || poked_; });
        poked_ = false;
    }
}

}  // namespace mlk::util
