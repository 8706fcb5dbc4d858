// The agent's reverse proxy to the models: `/{prefix}/{model}/...` on a listener of its own is
// forwarded to 127.0.0.1:{port} of the model, responses relayed as they arrive (server-sent events
// flow), a stopped model started on demand (concurrent requests join one start), and every request
// reported to a RequestSink. One accept thread hands each client connection to the least busy of a
// few event-loop threads (one per core by default), where a coroutine serves it; upstream
// keep-alive connections are pooled per model.
// Thread safety: start()/stop() from one thread; the rest is internal. The ModelManager and the
// sink must outlive the proxy (or its stop()).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mlkeeper/homelab/model_manager.hpp"
#include "mlkeeper/homelab/request_event.hpp"
#include "mlkeeper/util/co_task.hpp"

namespace mlk::core {
class Config;
}

namespace mlk::homelab {

struct ProxySettings {
    bool enabled = false;  // the agent runs the proxy ([proxy] enabled)
    std::string address = "127.0.0.1";
    int port = 5080;  // 0 = any free port (tests)
    // Path prefix of the model URLs: "/models" serves /models/NAME/...; "/" or "" serves /NAME/...
    std::string prefix = "/models";
    std::size_t max_connections = 1024;  // client connections at once; more get 503 and are closed
    std::size_t max_header = 32 * 1024;  // request line plus headers; larger get 431
    // A client's request must arrive, and its reads and writes progress, within this; it is also
    // how long an idle keep-alive connection is kept.
    std::chrono::milliseconds client_timeout{60'000};
    // Longest wait for a model's response head and between two reads of its body (504 before
    // the head); the connect to the model is bounded by min(this, 5 s).
    std::chrono::milliseconds upstream_timeout{300'000};
    // Requests per model waiting for its cold start; more get 503 with Retry-After.
    std::size_t queue_limit = 64;
    // Idle upstream connections kept per model (0 = a new connection per request).
    std::size_t keepalive = 32;
    // Event-loop threads serving the connections (0 = one per core, at most 16).
    std::size_t workers = 0;
};

// The [proxy] keys of a loaded configuration (listed in keys-proxy.txt). Throws ConfigError for a
// listen address that is not HOST:PORT with an IP literal (or "localhost"), or a prefix that is
// not a path without "?", "%" or "..".
ProxySettings proxy_settings_from(const core::Config& cfg);

// "/models/" -> "/models", "/" or "" -> "" (models at the root). Throws std::invalid_argument
// for a prefix that is not a plain path (no "//", "..", "%", "?").
std::string normalize_proxy_prefix(std::string_view prefix);

class ModelProxy {
  public:
    // Counters for tests and logs.
    struct Stats {
        std::uint64_t connections = 0;        // accepted and served
        std::uint64_t rejected = 0;           // over max_connections (503)
        std::uint64_t upstream_connects = 0;  // new connections to models
        std::uint64_t upstream_reused = 0;    // requests sent on a kept-alive connection
        std::uint64_t upstream_retries = 0;   // stale kept-alive connection, resent on a new one
        std::uint64_t starts_on_demand = 0;   // requests that waited for a cold start
        std::uint64_t queue_full = 0;         // 503 for a full cold-start queue
        std::size_t active_connections = 0;   // now
        std::size_t idle_upstream = 0;        // pooled now, all models
    };

    // `sink` may be null (nothing counted).
    ModelProxy(ProxySettings settings, ModelManager& models, RequestSink* sink);
    // stop().
    ~ModelProxy();
    ModelProxy(const ModelProxy&) = delete;
    ModelProxy& operator=(const ModelProxy&) = delete;

    // Binds and starts accepting. Throws mlk::Error "proxy listener 127.0.0.1:5080: address
    // already in use" (nothing stays bound). Call once.
    void start();
    // Closes the listener, wakes every connection (their sockets and upstream sockets are shut
    // down, cold-start waits given up) and joins every thread. Bounded; idempotent.
    void stop();
    // The listening port after start() (port 0 resolved).
    int bound_port() const { return bound_port_; }
    Stats stats() const;

  private:
    struct Shared;  // the pool, the cold-start gate and the counters the sessions share
    struct Worker;  // an event loop and its thread

    void accept_loop();
    // One client connection, on worker `w`'s loop.
    util::Task<void> serve(Worker& w, int fd, std::string peer_ip);

    ProxySettings settings_;
    ModelManager& models_;
    RequestSink* sink_;
    std::unique_ptr<Shared> shared_;
    int listen_fd_ = -1;
    int bound_port_ = 0;
    std::atomic<bool> stopping_{false};
    bool started_ = false;
    std::thread acceptor_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::atomic<std::size_t> active_{0};
    struct Counters {
        std::atomic<std::uint64_t> connections{0};
        std::atomic<std::uint64_t> rejected{0};
    };
    Counters counters_;
};

}  // namespace mlk::homelab
