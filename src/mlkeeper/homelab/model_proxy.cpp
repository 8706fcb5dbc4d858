#include "mlkeeper/homelab/model_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <spdlog/spdlog.h>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/homelab/cold_start.hpp"
#include "mlkeeper/homelab/proxy_session.hpp"
#include "mlkeeper/homelab/proxy_socket.hpp"
#include "mlkeeper/util/event_loop.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;

// Longest wait for a stop in progress before a cold start (the stop itself is bounded by the
// model's stop_timeout and SIGKILL).
constexpr std::chrono::milliseconds kStoppingWait = 2min;
}  // namespace

std::string normalize_proxy_prefix(std::string_view prefix) {
    std::string p(prefix);
    while (!p.empty() && p.back() == '/') {
        p.pop_back();
    }
    if (p.empty()) {
        return p;
    }
    if (p.front() != '/' || p.find("//") != std::string::npos ||
        p.find("..") != std::string::npos) {
        throw std::invalid_argument("prefix " + std::string(prefix) +
                                    ": must be a path like /models (no \"//\" or \"..\")");
    }
    for (const char c : p) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '/' || c == '-' || c == '_' || c == '.' ||
                        c == '~';
        if (!ok) {
            throw std::invalid_argument("prefix " + std::string(prefix) +
                                        ": only A-Z a-z 0-9 / - _ . ~ are allowed");
        }
    }
    return p;
}

ProxySettings proxy_settings_from(const core::Config& cfg) {
    ProxySettings s;
    s.enabled = cfg.boolean("proxy.enabled");
    try {
        const auto hp = parse_listen_address(cfg.str("proxy.listen"));
        s.address = hp.first;
        s.port = hp.second;
    } catch (const std::invalid_argument& e) {
        throw ConfigError(std::string("proxy.listen: ") + e.what());
    }
    try {
        s.prefix = normalize_proxy_prefix(cfg.str("proxy.prefix"));
    } catch (const std::invalid_argument& e) {
        throw ConfigError(std::string("proxy.") + e.what());
    }
    s.max_connections = static_cast<std::size_t>(cfg.integer("proxy.max_connections"));
    s.queue_limit = static_cast<std::size_t>(cfg.integer("proxy.queue_limit"));
    s.keepalive = static_cast<std::size_t>(cfg.integer("proxy.keepalive"));
    s.workers = static_cast<std::size_t>(cfg.integer("proxy.workers"));
    s.max_header = static_cast<std::size_t>(cfg.size("proxy.max_header"));
    s.client_timeout = cfg.duration("proxy.client_timeout");
    s.upstream_timeout = cfg.duration("proxy.upstream_timeout");
    return s;
}

// ---------------------------------------------------------------------------------------------
// The server

struct ModelProxy::Shared {
    UpstreamPool pool;
    ColdStartGate starts;
    ProxyCounters counters;
    ProxyContext ctx;

    explicit Shared(ModelProxy& p)
        : pool(p.settings_.keepalive),
          starts(p.models_, p.settings_.queue_limit, kStoppingWait, p.stopping_),
          ctx{p.settings_, p.models_, p.sink_, pool, starts, counters, p.stopping_} {}
};

struct ModelProxy::Worker {
    util::EventLoop loop;
    std::thread thread;
    std::atomic<std::size_t> sessions{0};
};

namespace {
std::size_t proxy_workers(std::size_t configured) {
    if (configured > 0) {
        return configured;
    }
    return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
}
}  // namespace

ModelProxy::ModelProxy(ProxySettings settings, ModelManager& models, RequestSink* sink)
    : settings_(std::move(settings)), models_(models), sink_(sink) {
    settings_.prefix = normalize_proxy_prefix(settings_.prefix);
    shared_ = std::make_unique<Shared>(*this);
}

ModelProxy::~ModelProxy() {
    stop();
}

void ModelProxy::start() {
    if (started_) {
        throw std::logic_error("ModelProxy::start() called twice");
    }
    UniqueFd fd;
    try {
        fd = listen_tcp(settings_.address, settings_.port, 1024, bound_port_);
    } catch (const std::system_error& e) {
        std::string msg = e.what();
        // "proxy listener 127.0.0.1:5080: Address already in use" -> lower-case reason.
        if (const auto colon = msg.rfind(": ");
            colon != std::string::npos && colon + 2 < msg.size()) {
            msg[colon + 2] =
                static_cast<char>(std::tolower(static_cast<unsigned char>(msg[colon + 2])));
        }
        throw Error(msg);
    }
    listen_fd_ = fd.get();
    const std::size_t n = proxy_workers(settings_.workers);
    for (std::size_t i = 0; i < n; ++i) {
        workers_.push_back(std::make_unique<Worker>());
    }
    for (const auto& w : workers_) {
        w->thread = std::thread([&loop = w->loop] {
            try {
                loop.run();
            } catch (const std::exception& e) {
                spdlog::error("proxy: event loop failed: {}", e.what());
            }
        });
    }
    started_ = true;
    const bool loopback = settings_.address.rfind("127.", 0) == 0 || settings_.address == "::1";
    spdlog::info("proxy: listening on {}:{}, models under {}/NAME/, {} worker thread{}",
                 settings_.address, bound_port_, settings_.prefix, n, n == 1 ? "" : "s");
    if (!loopback) {
        spdlog::warn(
            "proxy: {} is not a loopback address and the proxy has no authentication: "
            "whoever reaches it can use (and start) every model",
            settings_.address);
    }
    acceptor_ = std::thread([this, owned = std::make_shared<UniqueFd>(std::move(fd))] {
        (void)owned;  // the listening socket lives as long as the accept loop
        accept_loop();
    });
}

util::Task<void> ModelProxy::serve(Worker& w, int fd, std::string peer_ip) {
    try {
        ProxySession session(shared_->ctx, w.loop, util::AsyncSocket(w.loop, fd),
                             std::move(peer_ip));
        try {
            co_await session.run();
        } catch (const std::exception& e) {
            spdlog::warn("proxy: a connection was dropped: {}", e.what());
        }
        co_await session.close();
    } catch (const std::exception& e) {
        spdlog::warn("proxy: a connection was dropped: {}", e.what());
    }
    --active_;
    --w.sessions;
}

void ModelProxy::accept_loop() {
    for (;;) {
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        const int fd =
            ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
        if (stopping_) {
            if (fd >= 0) {
                ::close(fd);
            }
            return;
        }
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                spdlog::warn("proxy: accept: {}; pausing 100 ms", std::strerror(errno));
                std::this_thread::sleep_for(100ms);
                continue;
            }
            if (!stopping_) {
                spdlog::error("proxy: accept: {}; no longer accepting", std::strerror(errno));
            }
            return;
        }
        UniqueFd conn(fd);
        if (active_ >= settings_.max_connections) {
            counters_.rejected++;
            static const std::string kBusy = [] {
                const std::string body =
                    R"({"error":{"code":"unavailable","message":"too many connections to the )"
                    R"(model proxy; retry later"}})";
                return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                       "Retry-After: 1\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
            }();
            ::send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            continue;  // conn closes the socket
        }
        char ip[INET6_ADDRSTRLEN] = "";
        if (peer.ss_family == AF_INET) {
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, ip, sizeof ip);
        } else if (peer.ss_family == AF_INET6) {
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, ip,
                        sizeof ip);
        }
        set_nodelay(fd);
        // The worker with the fewest connections takes it.
        Worker* w = workers_.front().get();
        for (const auto& other : workers_) {
            if (other->sessions < w->sessions) {
                w = other.get();
            }
        }
        ++active_;
        ++w->sessions;
        counters_.connections++;
        auto owned = std::make_shared<UniqueFd>(std::move(conn));
        w->loop.post([this, w, owned, peer_ip = std::string(ip)] {
            w->loop.spawn(serve(*w, owned->release(), peer_ip));
        });
    }
}

void ModelProxy::stop() {
    if (!started_ || stopping_.exchange(true)) {
        return;
    }
    // Wakes accept(): on Linux, shutdown() of a listening socket makes it fail with EINVAL.
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) {
        acceptor_.join();
    }
    // Every wait of every session ends (cancelled); each loop returns once its sessions did.
    for (const auto& w : workers_) {
        w->loop.stop();
    }
    for (const auto& w : workers_) {
        if (w->thread.joinable()) {
            w->thread.join();
        }
    }
}

ModelProxy::Stats ModelProxy::stats() const {
    Stats s;
    s.connections = counters_.connections;
    s.rejected = counters_.rejected;
    s.upstream_connects = shared_->counters.upstream_connects;
    s.upstream_reused = shared_->counters.upstream_reused;
    s.upstream_retries = shared_->counters.upstream_retries;
    s.starts_on_demand = shared_->starts.cold_waits();
    s.queue_full = shared_->starts.queue_full();
    s.active_connections = active_;
    s.idle_upstream = shared_->pool.idle();
    return s;
}

}  // namespace mlk::homelab
