#include "mlkeeper/agent/nginx_follower.hpp"

#include <spdlog/spdlog.h>

namespace mlk::agent {

NginxFollower::NginxFollower(const homelab::ModelManager& models, Apply apply,
                             std::chrono::milliseconds interval)
    : models_(models), apply_(std::move(apply)), interval_(interval), thread_([this] { run(); }) {}

NginxFollower::~NginxFollower() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

NginxFollower::Apply NginxFollower::render_and_apply(homelab::NginxSettings settings,
                                                     std::vector<homelab::ModelSpec> specs) {
    return [settings = std::move(settings),
            specs = std::move(specs)](const std::set<std::string>& running) {
        homelab::RenderOptions opts;
        opts.running = running;
        return homelab::render_and_apply(settings, specs, opts);
    };
}

void NginxFollower::run() {
    std::unique_lock lk(mu_);
    while (!stop_) {
        lk.unlock();
        std::set<std::string> running;
        for (const auto& m : models_.list()) {
            if (m.state == homelab::ModelState::kRunning) {
                running.insert(m.name);
            }
        }
        const bool retry_due = running != failed_ ||
                               std::chrono::steady_clock::now() - failed_at_ >= kRetryFailedAfter;
        if (running != applied_ && retry_due) {
            try {
                const auto r = apply_(running);
                if (r.ok()) {
                    applied_ = running;
                    failed_.reset();
                    if (r.outcome == homelab::ApplyOutcome::kApplied) {
                        spdlog::info("nginx: {} now routes {} running model(s){}", r.path.string(),
                                     running.size(), r.reloaded ? "; nginx reloaded" : "");
                    }
                } else {
                    // Tried again once the running models change, or after a while.
                    failed_ = running;
                    failed_at_ = std::chrono::steady_clock::now();
                    spdlog::error("nginx: {} kept its previous content: {}", r.path.string(),
                                  r.error);
                }
            } catch (const std::exception& e) {
                failed_ = running;
                failed_at_ = std::chrono::steady_clock::now();
                spdlog::error("nginx: cannot render the models' configuration: {}", e.what());
            }
        }
        lk.lock();
        cv_.wait_for(lk, interval_, [this] { return stop_; });
    }
}

}  // namespace mlk::agent
