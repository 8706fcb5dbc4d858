#include "mlkeeper/homelab/model_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;

// Longest wait for a stop in progress before a cold start (the stop itself is bounded by the
// model's stop_timeout and SIGKILL).
constexpr std::chrono::milliseconds kStoppingWait = 2min;
// How long, and how many bytes, a closing connection's input is drained.
constexpr std::chrono::milliseconds kLinger{1000};
constexpr std::size_t kLingerBytes = 1024 * 1024;

// Closes a client connection without losing the last response: a close with unread input makes
// the kernel send a reset, which can destroy a response the client has not read yet (a 431 for a
// client still sending). So: FIN first, then what the client still sends is read and dropped,
// bounded in time and bytes.
void linger_close(ProxyConn& c) {
    const int fd = c.fd.get();
    ::shutdown(fd, SHUT_WR);
    tune_socket(fd, 100ms, 100ms);
    const auto until = std::chrono::steady_clock::now() + kLinger;
    char buf[4096];
    std::size_t dropped = 0;
    while (std::chrono::steady_clock::now() < until && dropped < kLingerBytes) {
        const ssize_t n = recv_some(fd, buf, sizeof buf);
        if (n <= 0) {
            break;
        }
        dropped += static_cast<std::size_t>(n);
    }
    std::lock_guard lk(c.mu);  // stop() may be shutting it down right now
    c.fd.reset();
}

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
    started_ = true;
    const bool loopback = settings_.address.rfind("127.", 0) == 0 || settings_.address == "::1";
    spdlog::info("proxy: listening on {}:{}, models under {}/NAME/", settings_.address, bound_port_,
                 settings_.prefix);
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
        auto conn = std::make_shared<ProxyConn>();
        conn->fd.reset(fd);
        char ip[INET6_ADDRSTRLEN] = "";
        if (peer.ss_family == AF_INET) {
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, ip, sizeof ip);
        } else if (peer.ss_family == AF_INET6) {
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, ip,
                        sizeof ip);
        }
        conn->peer_ip = ip;
        tune_socket(fd, settings_.client_timeout, settings_.client_timeout);
        std::lock_guard lk(conns_mu_);
        reap_finished();
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
        ++active_;
        counters_.connections++;
        try {
            conn->thread = std::thread([this, c = conn.get()] {
                try {
                    ProxySession session(shared_->ctx, *c);
                    session.run();
                } catch (const std::exception& e) {
                    spdlog::warn("proxy: connection from {} dropped: {}", c->peer_ip, e.what());
                }
                linger_close(*c);
                --active_;
                c->done = true;
            });
        } catch (const std::system_error& e) {
            --active_;
            spdlog::warn("proxy: cannot start a connection thread: {}", e.what());
            continue;
        }
        conns_.push_back(std::move(conn));
    }
}

void ModelProxy::reap_finished() {
    for (auto it = conns_.begin(); it != conns_.end();) {
        if ((*it)->done) {
            (*it)->thread.join();
            it = conns_.erase(it);
        } else {
            ++it;
        }
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
    std::list<std::shared_ptr<ProxyConn>> conns;
    {
        std::lock_guard lk(conns_mu_);
        conns.swap(conns_);
    }
    for (const auto& c : conns) {
        std::lock_guard lk(c->mu);
        if (c->fd) {
            ::shutdown(c->fd.get(), SHUT_RDWR);
        }
        if (c->upstream_fd >= 0) {
            ::shutdown(c->upstream_fd, SHUT_RDWR);
        }
    }
    for (const auto& c : conns) {
        if (c->thread.joinable()) {
            c->thread.join();
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
