// Keeps the NGINX config in step with which models run ([nginx] render_on_model_change, direct
// upstreams): a thread looks at the model manager every interval and, when the set of running
// models changed, renders and applies the config again, so stopped models answer 503
// model_stopped from NGINX instead of a connection error. Applying runs nginx -t and a reload,
// which must never happen under a model's lock: hence a thread that looks, not a callback.
// Thread safety: construct and destroy on one thread; the destructor stops and joins the thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mlkeeper/homelab/model_manager.hpp"
#include "mlkeeper/homelab/nginx_apply.hpp"
#include "mlkeeper/homelab/nginx_config.hpp"

namespace mlk::agent {

class NginxFollower {
  public:
    // Renders and applies the config for `running` (a test passes a recording fake).
    using Apply = std::function<homelab::ApplyResult(const std::set<std::string>& running)>;

    // Starts the thread; the first look renders at once. `models` must outlive the follower.
    NginxFollower(const homelab::ModelManager& models, Apply apply,
                  std::chrono::milliseconds interval);
    ~NginxFollower();
    NginxFollower(const NginxFollower&) = delete;
    NginxFollower& operator=(const NginxFollower&) = delete;

    // The default Apply: homelab::render_and_apply with RenderOptions::running.
    static Apply render_and_apply(homelab::NginxSettings settings,
                                  std::vector<homelab::ModelSpec> specs);

    // A set of running models whose config failed (nginx -t, say) is not tried again before
    // this, unless the set changes.
    static constexpr std::chrono::seconds kRetryFailedAfter{60};

  private:
    void run();

    const homelab::ModelManager& models_;
    Apply apply_;
    std::chrono::milliseconds interval_;
    std::optional<std::set<std::string>> applied_;  // what NGINX routes now (thread only)
    std::optional<std::set<std::string>> failed_;   // the last set that failed (thread only)
    std::chrono::steady_clock::time_point failed_at_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;  // last: starts after every member it uses exists
};

}  // namespace mlk::agent
