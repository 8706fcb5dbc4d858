// A ModelBackend whose "process" the test controls (no process is started): it runs or not,
// can exit right after its start (reported once as kExited with code 1), can refuse to stop, or
// take a while to stop. Thread safety: FakeProc is locked; a backend may be called from the
// model manager's threads while the test changes its FakeProc.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "mlkeeper/homelab/model_backend.hpp"

namespace mlk::testing {

struct FakeProc {
    std::mutex mu;
    bool running = false;
    bool healthy = true;  // for the test's health probe
    bool exit_on_start = false;
    bool stop_throws = false;
    std::chrono::milliseconds stop_delay{0};
    int starts = 0;
    int stops = 0;
};

class FakeBackend final : public homelab::ModelBackend {
  public:
    explicit FakeBackend(std::shared_ptr<FakeProc> p) : p_(std::move(p)) {}
    void start() override {
        std::lock_guard lk(p_->mu);
        ++p_->starts;
        p_->running = !p_->exit_on_start;
        exited_ = p_->exit_on_start;
    }
    void stop(std::chrono::milliseconds) override {
        std::chrono::milliseconds d;
        {
            std::lock_guard lk(p_->mu);
            if (p_->stop_throws) {
                throw std::runtime_error("cannot stop");
            }
            d = p_->stop_delay;
        }
        std::this_thread::sleep_for(d);
        std::lock_guard lk(p_->mu);
        ++p_->stops;
        p_->running = false;
    }
    homelab::BackendStatus status() override {
        std::lock_guard lk(p_->mu);
        homelab::BackendStatus st;
        if (p_->running) {
            st.state = homelab::BackendState::kRunning;
            st.pid = 4242;
        } else if (exited_) {
            exited_ = false;
            st.state = homelab::BackendState::kExited;
            st.exit_code = 1;
        }
        return st;
    }

  private:
    std::shared_ptr<FakeProc> p_;
    bool exited_ = false;  // guarded by p_->mu
};

}  // namespace mlk::testing
