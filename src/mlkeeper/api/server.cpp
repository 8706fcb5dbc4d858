#include "mlkeeper/api/server.hpp"

#include "mlkeeper/util/unique_fd.hpp"

// Debian's libcpp-httplib is built with OpenSSL support, and some of the header's structs
// (httplib::Request among them) have extra members with it: the header must be read the way the
// library was built.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "mlkeeper/core/curl_lib.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/version.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::api {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using util::UniqueFd;

// A client may reuse a connection for this many requests; then it is closed (and reopened).
constexpr int kMaxRequestsPerConnection = 100;
constexpr std::size_t kReadChunk = 16 * 1024;
// After closing on a client that may still be sending, its bytes are dropped this long.
constexpr auto kLingerTime = 1s;

std::string lower_first(std::string s) {
    if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') {
        s[0] = static_cast<char>(s[0] - 'A' + 'a');
    }
    return s;
}

std::string host_port(const std::string& address, int port) {
    return (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" +
           std::to_string(port);
}

int ms_until(Clock::time_point t) {
    const auto left = t - Clock::now();
    if (left <= Clock::duration::zero()) {
        return 0;
    }
    // Round up, or a wait with under a millisecond left would spin.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

enum class Wait { kReady, kTimeout, kError };

// Waits for `events` on `fd` until `until`.
Wait wait_fd(int fd, short events, Clock::time_point until) {
    for (;;) {
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, ms_until(until));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return Wait::kError;
        }
        if (n == 0) {
            if (Clock::now() >= until) {
                return Wait::kTimeout;
            }
            continue;
        }
        // POLLHUP and POLLERR count as ready: the read or write that follows reports them.
        return Wait::kReady;
    }
}

// The bytes under one HTTP connection: a socket, TLS over a socket, or memory (fuzzing).
class Transport {
  public:
    static constexpr ssize_t kEof = 0;
    static constexpr ssize_t kError = -1;
    static constexpr ssize_t kTimeout = -2;

    virtual ~Transport() = default;
    // Some bytes (> 0), kEof, kError, or kTimeout once `deadline` passes.
    virtual ssize_t read_some(char* buf, std::size_t n, Clock::time_point deadline) = 0;
    virtual bool write_all(const char* buf, std::size_t n, Clock::time_point deadline) = 0;
    // Bytes already received but not yet read (TLS records decrypted ahead, memory input): the
    // next request may be waiting although the socket shows nothing.
    virtual bool has_pending() const = 0;
};

class SocketTransport final : public Transport {
  public:
    explicit SocketTransport(int fd) : fd_(fd) {}

    ssize_t read_some(char* buf, std::size_t n, Clock::time_point deadline) override {
        for (;;) {
            const ssize_t r = ::recv(fd_, buf, n, 0);
            if (r >= 0) {
                return r;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                return kError;
            }
            const auto w = wait_fd(fd_, POLLIN, deadline);
            if (w == Wait::kTimeout) {
                return kTimeout;
            }
            if (w != Wait::kReady) {
                return kError;
            }
        }
    }

    bool write_all(const char* buf, std::size_t n, Clock::time_point deadline) override {
        while (n > 0) {
            const ssize_t r = ::send(fd_, buf, n, MSG_NOSIGNAL);
            if (r > 0) {
                buf += r;
                n -= static_cast<std::size_t>(r);
                continue;
            }
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (wait_fd(fd_, POLLOUT, deadline) != Wait::kReady) {
                    return false;
                }
                continue;
            }
            return false;
        }
        return true;
    }

    bool has_pending() const override { return false; }

  private:
    int fd_;
};

class TlsTransport final : public Transport {
  public:
    TlsTransport(int fd, SSL_CTX* ctx) : fd_(fd), ssl_(SSL_new(ctx)) {
        if (ssl_ != nullptr && SSL_set_fd(ssl_, fd) != 1) {
            SSL_free(ssl_);
            ssl_ = nullptr;
        }
    }
    ~TlsTransport() override {
        if (ssl_ != nullptr) {
            if (established_ && !broken_) {
                ERR_clear_error();
                SSL_shutdown(ssl_);  // one try, non-blocking: a close_notify if it fits
            }
            SSL_free(ssl_);
        }
        ERR_clear_error();
    }
    TlsTransport(const TlsTransport&) = delete;
    TlsTransport& operator=(const TlsTransport&) = delete;

    bool handshake(Clock::time_point deadline) {
        if (ssl_ == nullptr) {
            return false;
        }
        for (;;) {
            ERR_clear_error();
            const int r = SSL_accept(ssl_);
            if (r == 1) {
                established_ = true;
                return true;
            }
            if (!await(SSL_get_error(ssl_, r), deadline)) {
                return false;
            }
        }
    }

    ssize_t read_some(char* buf, std::size_t n, Clock::time_point deadline) override {
        for (;;) {
            ERR_clear_error();
            const int r = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(n, INT_MAX)));
            if (r > 0) {
                return r;
            }
            const int err = SSL_get_error(ssl_, r);
            if (err == SSL_ERROR_ZERO_RETURN) {
                return kEof;
            }
            if (!await(err, deadline)) {
                return timed_out_ ? kTimeout : kError;
            }
        }
    }

    bool write_all(const char* buf, std::size_t n, Clock::time_point deadline) override {
        while (n > 0) {
            ERR_clear_error();
            const int r = SSL_write(ssl_, buf, static_cast<int>(std::min<std::size_t>(n, INT_MAX)));
            if (r > 0) {
                buf += r;
                n -= static_cast<std::size_t>(r);
                continue;
            }
            if (!await(SSL_get_error(ssl_, r), deadline)) {
                return false;
            }
        }
        return true;
    }

    bool has_pending() const override { return ssl_ != nullptr && SSL_pending(ssl_) > 0; }
    bool established() const { return established_; }

  private:
    // Waits for what OpenSSL needs to go on; false for any other outcome.
    bool await(int ssl_error, Clock::time_point deadline) {
        short events = 0;
        if (ssl_error == SSL_ERROR_WANT_READ) {
            events = POLLIN;
        } else if (ssl_error == SSL_ERROR_WANT_WRITE) {
            events = POLLOUT;
        } else {
            broken_ = true;
            return false;
        }
        const auto w = wait_fd(fd_, events, deadline);
        timed_out_ = w == Wait::kTimeout;
        if (w != Wait::kReady) {
            broken_ = true;
            return false;
        }
        return true;
    }

    int fd_;
    SSL* ssl_;
    bool established_ = false;
    bool broken_ = false;
    bool timed_out_ = false;
};

class MemoryTransport final : public Transport {
  public:
    MemoryTransport(std::string_view in, std::string& out) : in_(in), out_(out) {}
    ssize_t read_some(char* buf, std::size_t n, Clock::time_point) override {
        n = std::min(n, in_.size());
        std::memcpy(buf, in_.data(), n);
        in_.remove_prefix(n);
        return static_cast<ssize_t>(n);
    }
    bool write_all(const char* buf, std::size_t n, Clock::time_point) override {
        out_.append(buf, n);
        return true;
    }
    bool has_pending() const override { return !in_.empty(); }

  private:
    std::string_view in_;
    std::string& out_;
};

enum class Fault { kNone, kTimeout, kHeadTooLarge, kBodyTooLarge };

// What the hooks of one request learn and hand on to each other. cpp-httplib calls them one
// after another on the connection's thread, so a thread_local pointer finds it.
struct RequestState {
    Fault fault = Fault::kNone;
    bool decided = false;   // decide() ran (from the 100-continue hook or pre-routing)
    bool accepted = false;  // go on: read the body and dispatch
    bool health = false;
    bool close_after = false;  // the connection may hold unread bytes of this request
    Match match;
    std::string path;  // without the listener prefix
    std::string principal;
    const Route* audited = nullptr;  // set once the route is known, refused or not
    bool audit_done = false;
    std::string client;  // "127.0.0.1:53422"
    int status = 0;
};
thread_local RequestState* t_request = nullptr;

struct Peer {
    std::string remote_ip;
    int remote_port = 0;
    std::string local_ip;
    int local_port = 0;
};

bool address_of(int fd, bool peer, std::string& ip, int& port) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                       : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    if (r != 0) {
        return false;
    }
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
        port = ntohs(a->sin6_port);
    } else {
        return false;
    }
    ip = buf;
    return true;
}

// cpp-httplib reads through this: it enforces the request's deadline (first byte to last) and
// the size of its head and body, so a slow or endless client cannot hold a thread or memory.
class ConnStream final : public httplib::Stream {
  public:
    ConnStream(Transport& t, const ApiSettings& s, const Peer& peer, int fd)
        : t_(t), settings_(s), peer_(peer), fd_(fd) {}

    void begin_request(RequestState& st) {
        st_ = &st;
        in_body_ = false;
        head_bytes_ = 0;
        body_bytes_ = 0;
        line_len_ = 0;
        lines_ = 0;
        last_ = 0;
        wrote_ = false;
        deadline_ = Clock::now() + settings_.read_timeout;
    }
    bool has_buffered() const { return pos_ < len_; }
    std::size_t request_bytes() const { return head_bytes_ + body_bytes_; }
    bool wrote() const { return wrote_; }

    bool is_readable() const override { return true; }
    bool is_writable() const override { return true; }

    ssize_t read(char* ptr, size_t size) override {
        if (size == 0) {
            return 0;
        }
        if (st_->fault != Fault::kNone) {
            return -1;
        }
        if (pos_ == len_) {
            const ssize_t r = t_.read_some(buf_, sizeof(buf_), deadline_);
            if (r == Transport::kTimeout) {
                st_->fault = Fault::kTimeout;
                return -1;
            }
            if (r <= 0) {
                return r;
            }
            pos_ = 0;
            len_ = static_cast<std::size_t>(r);
        }
        std::size_t n = 0;
        if (!in_body_) {
            // cpp-httplib reads the head a byte at a time; the blank line ends it.
            while (n < size && pos_ < len_ && !in_body_) {
                if (head_bytes_ >= settings_.max_header) {
                    st_->fault = Fault::kHeadTooLarge;
                    return n > 0 ? static_cast<ssize_t>(n) : -1;
                }
                const char c = buf_[pos_++];
                ptr[n++] = c;
                ++head_bytes_;
                if (c == '\n') {
                    in_body_ = lines_ > 0 && line_len_ == 1 && last_ == '\r';
                    ++lines_;
                    line_len_ = 0;
                } else {
                    ++line_len_;
                }
                last_ = c;
            }
            return static_cast<ssize_t>(n);
        }
        // Chunked framing costs a few bytes a chunk, so the body may use twice the limit on the
        // wire; the handler checks the decoded size against the limit itself.
        const std::size_t budget = 2 * settings_.max_body + 4096;
        if (body_bytes_ >= budget) {
            st_->fault = Fault::kBodyTooLarge;
            return -1;
        }
        n = std::min({size, len_ - pos_, budget - body_bytes_});
        std::memcpy(ptr, buf_ + pos_, n);
        pos_ += n;
        body_bytes_ += n;
        return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, size_t size) override {
        wrote_ = true;
        return t_.write_all(ptr, size, Clock::now() + settings_.write_timeout)
                   ? static_cast<ssize_t>(size)
                   : -1;
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override {
        ip = peer_.remote_ip;
        port = peer_.remote_port;
    }
    void get_local_ip_and_port(std::string& ip, int& port) const override {
        ip = peer_.local_ip;
        port = peer_.local_port;
    }
    socket_t socket() const override { return fd_; }

  private:
    Transport& t_;
    const ApiSettings& settings_;
    const Peer& peer_;
    int fd_;
    RequestState* st_ = nullptr;
    char buf_[kReadChunk];
    std::size_t pos_ = 0;
    std::size_t len_ = 0;
    bool in_body_ = false;
    std::size_t head_bytes_ = 0;
    std::size_t body_bytes_ = 0;
    std::size_t line_len_ = 0;
    std::size_t lines_ = 0;
    char last_ = 0;
    bool wrote_ = false;
    Clock::time_point deadline_;
};

// process_request() is protected; everything else of httplib::Server (its listen loop, thread
// pool and socket handling) stays unused.
class HttpCore final : public httplib::Server {
  public:
    using httplib::Server::process_request;
};

// One accepted connection. It is always in exactly one place: parked in its listener's poller
// (waiting for bytes, with a deadline), in the pool's queue, or with the worker serving it.
struct Conn {
    Conn(int socket, std::atomic<int>& open) : fd(socket), open_count(open) { ++open_count; }
    ~Conn() { --open_count; }
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    UniqueFd fd;  // first member: closed after the TLS session and stream that use it
    std::atomic<int>& open_count;
    Peer peer;
    std::unique_ptr<Transport> transport;
    TlsTransport* tls = nullptr;  // the transport, when it is TLS
    std::unique_ptr<ConnStream> stream;
    int served = 0;
    bool draining = false;        // answered and closing: drop what the client still sends
    Clock::time_point deadline;   // while parked: closed when it passes
    Clock::time_point queued_at;  // while queued
};

// The request threads of one listener. Connections come here only once bytes have arrived, so
// idle keep-alive connections cost no thread; the queue is bounded by the listener's
// connection limit.
class Pool {
  public:
    using Run = std::function<void(std::unique_ptr<Conn>, bool shed)>;
    Pool(std::size_t threads, std::chrono::milliseconds max_wait, Run run)
        : max_wait_(max_wait), run_(std::move(run)) {
        for (std::size_t i = 0; i < threads; ++i) {
            threads_.emplace_back([this] { work(); });
        }
    }
    ~Pool() { shutdown(); }
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    void submit(std::unique_ptr<Conn> c) {
        c->queued_at = Clock::now();
        {
            std::lock_guard<std::mutex> lock(mu_);
            queue_.push_back(std::move(c));
        }
        cv_.notify_one();
    }
    // Connections still queued are shed (503); those being served finish. Then joins.
    void shutdown() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) {
            if (t.joinable()) {
                t.join();
            }
        }
    }

  private:
    void work() {
        for (;;) {
            std::unique_ptr<Conn> c;
            bool shed;
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
                if (queue_.empty()) {
                    return;
                }
                c = std::move(queue_.front());
                queue_.pop_front();
                shed = stop_;
            }
            // A request that waited this long for a thread (handlers all busy, e.g. on slow
            // model starts) is told so rather than kept waiting without end.
            shed = shed || Clock::now() - c->queued_at > max_wait_;
            run_(std::move(c), shed);
        }
    }

    const std::chrono::milliseconds max_wait_;
    const Run run_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Conn>> queue_;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

// A complete response for when cpp-httplib wrote none (the request line never ended).
std::string canned_response(int status, std::string_view reason, std::string_view code,
                            std::string_view message) {
    const auto body = Response::error(status, code, message).body.dump();
    return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n" + body;
}

// The query of a request target ("/models/x/start?wait=false&timeout=30"), decoded; the last
// value of a repeated key wins. Form bodies are never mixed in (cpp-httplib's params would).
std::map<std::string, std::string> parse_query(std::string_view target) {
    std::map<std::string, std::string> out;
    const auto q = target.find('?');
    if (q == std::string_view::npos) {
        return out;
    }
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const auto pair = rest.substr(0, amp);
        rest.remove_prefix(amp == std::string_view::npos ? rest.size() : amp + 1);
        if (pair.empty()) {
            continue;
        }
        const auto eq = pair.find('=');
        auto key = util::percent_decode(pair.substr(0, eq), util::PlusIs::kSpace);
        if (key.empty()) {
            continue;
        }
        out[std::move(key)] = eq == std::string_view::npos
                                  ? std::string()
                                  : util::percent_decode(pair.substr(eq + 1), util::PlusIs::kSpace);
    }
    return out;
}

bool may_carry_body(const httplib::Request& req) {
    if (req.has_header("Transfer-Encoding")) {
        return true;
    }
    const auto len = req.get_header_value("Content-Length");
    return !len.empty() && len != "0";
}

nlohmann::json library_parts() {
    nlohmann::json parts = {{"cpp_httplib", CPPHTTPLIB_VERSION},
                            {"openssl", OpenSSL_version(OPENSSL_VERSION)},
                            {"sqlite", sqlite3_libversion()}};
    try {
        parts["libcurl"] = core::curl().version_info(CURLVERSION_NOW)->version;
    } catch (const std::exception&) {
        parts["libcurl"] = nullptr;  // not installed: only outgoing HTTP needs it
    }
    return parts;
}

}  // namespace

void log_audit(const AuditRecord& r) {
    spdlog::info("api audit: listener={} principal={} client={} {} {} -> {}", r.listener,
                 r.principal.empty() ? "-" : util::escape_for_log(r.principal), r.client,
                 util::escape_for_log(r.method), util::escape_for_log(r.path), r.status);
}

struct ApiServer::Listener {
    Listener(ApiServer& owner, const ListenerSettings& cfg) : owner_(owner), cfg_(cfg) {
        install_hooks();
    }

    // What became of a connection after one request.
    enum class Next { kKeep, kClose, kLinger };
    // Reads, answers and audits one request.
    Next serve_one(Conn& c);
    // A worker's turn with a connection that has bytes waiting.
    void run(std::unique_ptr<Conn> c, bool shed);
    // The poller thread: accepts, hands connections with bytes to the pool, closes idle ones.
    void poll_loop();

    ApiServer& owner_;
    ListenerSettings cfg_;
    HttpCore http_;
    UniqueFd sock_;
    UniqueFd epoll_;
    int port_ = 0;
    int max_connections_ = 64;
    std::atomic<int> open_{0};
    std::unique_ptr<Pool> pool_;
    std::thread poller_;
    std::mutex parked_mu_;
    std::unordered_map<Conn*, std::unique_ptr<Conn>> parked_;
    char listen_tag_ = 0;  // epoll data for the listening socket and the stop eventfd
    char stop_tag_ = 0;
    Clock::time_point last_warning_{};

  private:
    void install_hooks();
    bool decide(const httplib::Request& req, httplib::Response& res, RequestState& st);
    void refuse(const httplib::Request& req, httplib::Response& res, RequestState& st,
                const Response& answer);
    void put(httplib::Response& res, const Response& answer, RequestState& st);
    void dispatch(const httplib::Request& req, httplib::Response& res);
    void on_error(httplib::Response& res);
    // Writes the audit record once the answer is known, before it is sent.
    void audit(RequestState& st);

    void accept_all();
    // Hands the connection to the poller until bytes arrive or its deadline passes.
    void park(std::unique_ptr<Conn> c, int op);
    std::unique_ptr<Conn> unpark(Conn* key);
    void expire_parked();
    void drain(std::unique_ptr<Conn> c);
    void linger(std::unique_ptr<Conn> c);
    void shed(Conn& c);
};

void ApiServer::Listener::install_hooks() {
    const auto& s = owner_.settings_;
    http_.set_default_headers(
        {{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}});
    http_.set_payload_max_length(s.max_body);
    // Only the text of the Keep-Alive header: serve() runs the connection loop.
    http_.set_keep_alive_max_count(kMaxRequestsPerConnection);
    http_.set_keep_alive_timeout(std::max<time_t>(
        1, std::chrono::duration_cast<std::chrono::seconds>(s.idle_timeout).count()));

    // "Expect: 100-continue": decide before the client sends its body, so a refused or too
    // large request never uploads it.
    http_.set_expect_100_continue_handler(
        [this](const httplib::Request& req, httplib::Response& res) -> int {
            auto& st = *t_request;
            return decide(req, res, st) ? 100 : res.status;
        });
    // Runs after the head is parsed and before the body is read.
    http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        auto& st = *t_request;
        if (!st.decided && !decide(req, res, st)) {
            return httplib::Server::HandlerResponse::Handled;
        }
        if (!st.accepted) {
            // Refused in the 100-continue hook; the answer is already written.
            return httplib::Server::HandlerResponse::Handled;
        }
        if (st.health) {
            Response r;
            r.body = {{"status", "ok"},
                      {"version", core::version()},
                      {"uptime_seconds",
                       std::chrono::duration<double>(Clock::now() - owner_.started_).count()},
                      {"listener", cfg_.name},
                      {"parts", owner_.parts_}};
            put(res, r, st);
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    const auto handler = [this](const httplib::Request& req, httplib::Response& res) {
        dispatch(req, res);
    };
    http_.Get(".*", handler);
    http_.Post(".*", handler);
    http_.Put(".*", handler);
    http_.Patch(".*", handler);
    http_.Delete(".*", handler);
    http_.Options(".*", handler);
    // Every status >= 400 passes here, ours included; only empty bodies (cpp-httplib's own
    // answers) and transport faults are filled in.
    http_.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request&, httplib::Response& res) {
            on_error(res);
            return httplib::Server::HandlerResponse::Handled;
        }));
    // Without this cpp-httplib would copy what() into an EXCEPTION_WHAT response header.
    http_.set_exception_handler([this](const httplib::Request&, httplib::Response& res,
                                       std::exception_ptr ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            spdlog::error("api {}: request failed: {}", cfg_.name, util::escape_for_log(e.what()));
        } catch (...) {
            spdlog::error("api {}: request failed", cfg_.name);
        }
        put(res, Response::error(500, "internal", "internal error; see the server log"),
            *t_request);
    });
}

void ApiServer::Listener::put(httplib::Response& res, const Response& answer, RequestState& st) {
    res.status = answer.status >= 100 && answer.status <= 599 ? answer.status : 500;
    for (const auto& [name, value] : answer.headers) {
        res.set_header(name, value);  // cpp-httplib drops values with CR or LF
    }
    // Replace, not throw, on invalid UTF-8: names echoed from a path may hold any bytes.
    if (answer.raw_body) {
        res.set_content(*answer.raw_body, answer.content_type);
    } else {
        res.set_content(answer.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                        "application/json");
    }
    if (st.close_after) {
        res.set_header("Connection", "close");
    }
    st.status = res.status;
    audit(st);
}

void ApiServer::Listener::refuse(const httplib::Request& req, httplib::Response& res,
                                 RequestState& st, const Response& answer) {
    // The body of a refused request is never read; the connection cannot be reused after it.
    st.close_after = st.close_after || may_carry_body(req);
    put(res, answer, st);
}

bool ApiServer::Listener::decide(const httplib::Request& req, httplib::Response& res,
                                 RequestState& st) {
    st.decided = true;
    // Ranges of a JSON document are of no use, and many ranges of one would multiply the
    // response; the Request object is ours to change (cpp-httplib passes it as const only).
    const_cast<httplib::Request&>(req).ranges.clear();

    const auto te = req.get_header_value("Transfer-Encoding");
    if (!te.empty() && (util::to_lower(te) != "chunked" || req.has_header("Content-Length"))) {
        st.close_after = true;
        put(res,
            Response::error(400, "bad_request",
                            "only Transfer-Encoding: chunked, and not with Content-Length"),
            st);
        return false;
    }
    const auto ce = req.get_header_value("Content-Encoding");
    if (!ce.empty() && util::to_lower(ce) != "identity") {
        refuse(req, res, st,
               Response::error(415, "unsupported_media_type",
                               "compressed request bodies are not accepted"));
        return false;
    }

    std::string path = req.path;
    if (!cfg_.prefix.empty() && path != "/health") {
        if (path.size() > cfg_.prefix.size() &&
            path.compare(0, cfg_.prefix.size(), cfg_.prefix) == 0 &&
            path[cfg_.prefix.size()] == '/') {
            path.erase(0, cfg_.prefix.size());
        } else {
            refuse(req, res, st,
                   Response::error(404, "not_found",
                                   "no such path; this listener serves " + cfg_.prefix + "/..."));
            return false;
        }
    }
    st.path = path;
    if (path == "/health") {
        if (req.method != "GET") {
            auto r = Response::error(405, "method_not_allowed",
                                     req.method + " is not allowed here; allowed: GET");
            r.headers.emplace_back("Allow", "GET");
            refuse(req, res, st, r);
            return false;
        }
        st.health = true;
        st.accepted = true;
        return true;
    }

    auto match = owner_.router_.match(req.method, path, cfg_.groups);
    if (match.route == nullptr) {
        Request none;
        none.method = req.method;
        refuse(req, res, st, owner_.router_.dispatch(match, none));
        return false;
    }
    const Route& route = *match.route;
    if (route.audit == Audit::kYes) {
        st.audited = &route;
    }

    if (owner_.tokens_ && route.access != Access::kPublic) {
        const auto who = owner_.tokens_->authenticate(req.get_header_value("Authorization"));
        if (!who) {
            auto r = Response::error(401, "unauthorized",
                                     "missing or unknown token; send Authorization: Bearer TOKEN");
            r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"mlkeeper\"");
            refuse(req, res, st, r);
            return false;
        }
        st.principal = who->name;
        if (route.access == Access::kAdmin && who->scope != Access::kAdmin) {
            refuse(req, res, st,
                   Response::error(
                       403, "forbidden",
                       "token '" + who->name + "' has read scope; this call needs an admin token"));
            return false;
        }
    }

    if (route.access == Access::kAdmin) {
        const auto d = owner_.limiter_.check(req.remote_addr);
        if (!d.allowed) {
            const auto secs = std::to_string(d.retry_after.count());
            auto r = Response::error(429, "rate_limited",
                                     "too many state-changing calls from " + req.remote_addr +
                                         "; retry in " + secs + " s");
            r.headers.emplace_back("Retry-After", secs);
            refuse(req, res, st, r);
            return false;
        }
    }

    const auto length = req.get_header_value("Content-Length");
    if (!length.empty()) {
        const bool digits =
            length.size() <= 19 &&
            std::all_of(length.begin(), length.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!digits) {
            st.close_after = true;
            put(res, Response::error(400, "bad_request", "bad Content-Length"), st);
            return false;
        }
        if (std::stoull(length) > owner_.settings_.max_body) {
            refuse(req, res, st,
                   Response::error(413, "body_too_large",
                                   "the request body is larger than " +
                                       std::to_string(owner_.settings_.max_body) + " bytes"));
            return false;
        }
    }

    st.match = std::move(match);
    st.accepted = true;
    return true;
}

void ApiServer::Listener::dispatch(const httplib::Request& req, httplib::Response& res) {
    auto& st = *t_request;
    if (!st.accepted || st.match.route == nullptr) {
        put(res, Response::error(500, "internal", "request was not routed"), st);
        return;
    }
    if (req.body.size() > owner_.settings_.max_body) {
        st.close_after = true;
        put(res,
            Response::error(413, "body_too_large",
                            "the request body is larger than " +
                                std::to_string(owner_.settings_.max_body) + " bytes"),
            st);
        return;
    }
    Request r;
    r.method = req.method;
    r.path = st.path;
    r.query = parse_query(req.target);
    r.body = req.body;
    r.client = host_port(req.remote_addr, req.remote_port);
    r.principal = st.principal;
    put(res, owner_.router_.dispatch(st.match, r), st);
}

void ApiServer::Listener::on_error(httplib::Response& res) {
    auto& st = *t_request;
    const auto& s = owner_.settings_;
    std::optional<Response> answer;
    switch (st.fault) {
        case Fault::kTimeout:
            answer = Response::error(
                408, "timeout",
                "the request did not arrive within " +
                    std::to_string(
                        std::chrono::duration_cast<std::chrono::milliseconds>(s.read_timeout)
                            .count()) +
                    " ms");
            break;
        case Fault::kHeadTooLarge:
            answer = Response::error(
                431, "headers_too_large",
                "the request line and headers exceed " + std::to_string(s.max_header) + " bytes");
            break;
        case Fault::kBodyTooLarge:
            answer = Response::error(
                413, "body_too_large",
                "the request body is larger than " + std::to_string(s.max_body) + " bytes");
            break;
        case Fault::kNone:
            if (!res.body.empty()) {
                st.status = res.status;
                return;
            }
            switch (res.status) {
                case 400:
                    answer = Response::error(400, "bad_request", "malformed HTTP request");
                    break;
                case 404:
                    answer = Response::error(404, "not_found", "no such path");
                    break;
                case 413:
                    answer = Response::error(
                        413, "body_too_large",
                        "the request body is larger than " + std::to_string(s.max_body) + " bytes");
                    break;
                case 414:
                    answer = Response::error(414, "uri_too_long", "the request target is too long");
                    break;
                default:
                    answer = Response::error(res.status, "http_error",
                                             "HTTP error " + std::to_string(res.status));
                    break;
            }
            break;
    }
    // cpp-httplib answers itself only when the request was malformed or not read whole.
    st.close_after = true;
    put(res, *answer, st);
}

void ApiServer::Listener::audit(RequestState& st) {
    if (st.audited == nullptr || st.audit_done || st.status == 0) {
        return;
    }
    st.audit_done = true;
    try {
        owner_.audit_(AuditRecord{cfg_.name, st.principal, st.client, st.audited->method, st.path,
                                  st.status});
    } catch (const std::exception& e) {
        spdlog::error("api {}: audit failed: {}", cfg_.name, util::escape_for_log(e.what()));
    }
}

ApiServer::Listener::Next ApiServer::Listener::serve_one(Conn& c) {
    RequestState st;
    st.client = host_port(c.peer.remote_ip, c.peer.remote_port);
    c.stream->begin_request(st);
    t_request = &st;
    const bool last = c.served + 1 >= kMaxRequestsPerConnection;
    bool closed = false;
    bool ok = false;
    try {
        ok = http_.process_request(*c.stream, last, closed, nullptr);
    } catch (const std::exception& e) {
        spdlog::error("api {}: {}", cfg_.name, util::escape_for_log(e.what()));
    }
    t_request = nullptr;
    ++c.served;
    audit(st);
    if (!ok) {
        // cpp-httplib gives up without an answer when the request line never ends.
        if (!c.stream->wrote() && c.stream->request_bytes() > 0) {
            std::string canned;
            if (st.fault == Fault::kTimeout) {
                canned = canned_response(408, "Request Timeout", "timeout",
                                         "the request did not arrive in time");
            } else if (st.fault == Fault::kHeadTooLarge) {
                canned = canned_response(431, "Request Header Fields Too Large",
                                         "headers_too_large", "the request head is too large");
            }
            if (!canned.empty()) {
                c.transport->write_all(canned.data(), canned.size(),
                                       Clock::now() + owner_.settings_.write_timeout);
            }
        }
        return c.stream->request_bytes() > 0 ? Next::kLinger : Next::kClose;
    }
    if (st.close_after || st.fault != Fault::kNone) {
        return Next::kLinger;
    }
    return closed || last ? Next::kClose : Next::kKeep;
}

void ApiServer::Listener::run(std::unique_ptr<Conn> c, bool shed_now) {
    try {
        if (shed_now) {
            shed(*c);
            return;
        }
        if (c->tls != nullptr && !c->tls->established() &&
            !c->tls->handshake(Clock::now() + owner_.settings_.read_timeout)) {
            spdlog::debug("api {}: TLS handshake with {} failed", cfg_.name,
                          host_port(c->peer.remote_ip, c->peer.remote_port));
            return;
        }
        for (;;) {
            const auto next = serve_one(*c);
            if (next == Next::kClose || owner_.stopping_) {
                return;
            }
            if (next == Next::kLinger) {
                linger(std::move(c));
                return;
            }
            if (!c->stream->has_buffered() && !c->transport->has_pending()) {
                break;
            }
        }
        c->deadline = Clock::now() + owner_.settings_.idle_timeout;
        park(std::move(c), EPOLL_CTL_MOD);
    } catch (const std::exception& e) {
        spdlog::error("api {}: connection failed: {}", cfg_.name, util::escape_for_log(e.what()));
    }
}

void ApiServer::Listener::park(std::unique_ptr<Conn> c, int op) {
    Conn* key = c.get();
    const int fd = c->fd.get();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = key;
    // Under the lock so the poller cannot see the event before the connection is parked.
    std::lock_guard<std::mutex> lock(parked_mu_);
    if (owner_.stopping_) {
        return;  // closes it
    }
    parked_.emplace(key, std::move(c));
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0) {
        parked_.erase(key);
    }
}

std::unique_ptr<Conn> ApiServer::Listener::unpark(Conn* key) {
    std::lock_guard<std::mutex> lock(parked_mu_);
    const auto it = parked_.find(key);
    if (it == parked_.end()) {
        return nullptr;
    }
    auto c = std::move(it->second);
    parked_.erase(it);
    return c;
}

void ApiServer::Listener::expire_parked() {
    const auto now = Clock::now();
    std::vector<std::unique_ptr<Conn>> expired;
    {
        std::lock_guard<std::mutex> lock(parked_mu_);
        for (auto it = parked_.begin(); it != parked_.end();) {
            if (it->second->deadline <= now) {
                expired.push_back(std::move(it->second));
                it = parked_.erase(it);
            } else {
                ++it;
            }
        }
    }
    // Closed here, outside the lock.
}

void ApiServer::Listener::linger(std::unique_ptr<Conn> c) {
    // After closing on a client that may still be sending, its bytes are read and dropped for
    // a while, so the kernel does not answer them with a reset that destroys our response.
    c->stream.reset();
    c->tls = nullptr;
    c->transport.reset();  // a TLS session sends its close_notify here
    ::shutdown(c->fd.get(), SHUT_WR);
    c->draining = true;
    c->deadline = Clock::now() + kLingerTime;
    park(std::move(c), EPOLL_CTL_MOD);
}

void ApiServer::Listener::drain(std::unique_ptr<Conn> c) {
    char buf[4096];
    for (int i = 0; i < 64; ++i) {  // at most 256 KiB a wake-up; the deadline ends it anyway
        const ssize_t r = ::recv(c->fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (r > 0 || (r < 0 && errno == EINTR)) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        return;  // the client closed (or failed): done
    }
    park(std::move(c), EPOLL_CTL_MOD);
}

void ApiServer::Listener::shed(Conn& c) {
    // No thread could take the request in time, or the server is stopping: say so at once.
    const auto msg = canned_response(503, "Service Unavailable", "unavailable",
                                     "the server is busy or stopping; retry shortly");
    if (c.tls != nullptr) {
        if (c.tls->established()) {
            c.tls->write_all(msg.data(), msg.size(), Clock::now() + 100ms);
        }
        return;
    }
    char drain[4096];
    while (::recv(c.fd.get(), drain, sizeof(drain), MSG_DONTWAIT) > 0) {
    }
    (void)!::send(c.fd.get(), msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::shutdown(c.fd.get(), SHUT_WR);
}

void ApiServer::Listener::accept_all() {
    for (;;) {
        const int fd = ::accept4(sock_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            const int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                return;
            }
            if (err == EINTR || err == ECONNABORTED || err == EPROTO) {
                continue;
            }
            // Out of descriptors or memory: the connection waits in the backlog; do not spin.
            if (Clock::now() - last_warning_ > 10s) {
                spdlog::warn("api {}: accept failed: {}", cfg_.name,
                             std::generic_category().message(err));
                last_warning_ = Clock::now();
            }
            std::this_thread::sleep_for(50ms);
            return;
        }
        auto c = std::make_unique<Conn>(fd, open_);
        if (open_ > max_connections_) {
            shed(*c);
            continue;
        }
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!address_of(fd, true, c->peer.remote_ip, c->peer.remote_port) ||
            !address_of(fd, false, c->peer.local_ip, c->peer.local_port)) {
            continue;
        }
        if (owner_.tls_ctx_) {
            auto t =
                std::make_unique<TlsTransport>(fd, static_cast<SSL_CTX*>(owner_.tls_ctx_.get()));
            c->tls = t.get();
            c->transport = std::move(t);
        } else {
            c->transport = std::make_unique<SocketTransport>(fd);
        }
        c->stream = std::make_unique<ConnStream>(*c->transport, owner_.settings_, c->peer, fd);
        // A new connection gets read_timeout for its first byte, later ones idle_timeout.
        c->deadline = Clock::now() + owner_.settings_.read_timeout;
        park(std::move(c), EPOLL_CTL_ADD);
    }
}

void ApiServer::Listener::poll_loop() {
    epoll_event events[64];
    auto next_sweep = Clock::now();
    for (;;) {
        const int n = ::epoll_wait(epoll_.get(), events, 64, 100);
        if (n < 0 && errno != EINTR) {
            if (Clock::now() - last_warning_ > 10s) {
                spdlog::error("api {}: epoll_wait failed: {}", cfg_.name, std::strerror(errno));
                last_warning_ = Clock::now();
            }
            std::this_thread::sleep_for(50ms);
        }
        for (int i = 0; i < n; ++i) {
            void* tag = events[i].data.ptr;
            if (tag == &stop_tag_) {
                return;
            }
            if (tag == &listen_tag_) {
                accept_all();
                continue;
            }
            auto c = unpark(static_cast<Conn*>(tag));
            if (!c) {
                continue;
            }
            if (c->draining) {
                drain(std::move(c));
            } else {
                pool_->submit(std::move(c));
            }
        }
        if (Clock::now() >= next_sweep) {
            expire_parked();
            next_sweep = Clock::now() + 100ms;
        }
    }
}

ApiServer::ApiServer(const ApiSettings& settings, const Router& router,
                     std::optional<TokenSet> tokens, AuditSink audit)
    : settings_(settings),
      router_(router),
      tokens_(std::move(tokens)),
      audit_(audit ? std::move(audit) : AuditSink(log_audit)),
      limiter_(settings.rate_per_minute),
      started_(Clock::now()),
      parts_(library_parts()) {
    for (const auto& l : settings_.listeners) {
        listeners_.push_back(std::make_unique<Listener>(*this, l));
    }
}

ApiServer::~ApiServer() {
    stop();
    if (stop_fd_ >= 0) {
        ::close(stop_fd_);
    }
}

namespace {

// A listening socket on address:port (SO_REUSEADDR, never SO_REUSEPORT: a second server on the
// port must fail, not share it). Throws mlk::Error naming the address and the reason.
int open_listening_socket(const ListenerSettings& l) {
    const auto where = "api listener " + l.name + " on " + host_port(l.address, l.port) + ": ";
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, l.address.c_str(), &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(static_cast<std::uint16_t>(l.port));
        len = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET6, l.address.c_str(), &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(static_cast<std::uint16_t>(l.port));
        len = sizeof(sockaddr_in6);
    } else {
        throw ConfigError(where + "'" + l.address + "' is not an IP address");
    }
    UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) {
        throw Error(where + lower_first(std::generic_category().message(errno)));
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) {
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
        ::listen(fd.get(), 128) != 0) {
        throw Error(where + lower_first(std::generic_category().message(errno)));
    }
    return fd.release();
}

std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) {
        return "unknown OpenSSL error";
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

std::shared_ptr<void> make_tls_context(const ApiSettings& s) {
    ERR_clear_error();
    std::shared_ptr<void> ctx(SSL_CTX_new(TLS_server_method()),
                              [](void* p) { SSL_CTX_free(static_cast<SSL_CTX*>(p)); });
    auto* c = static_cast<SSL_CTX*>(ctx.get());
    if (c == nullptr) {
        throw Error("api: cannot create a TLS context: " + openssl_error());
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(
        c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(c, s.tls_cert.c_str()) != 1) {
        throw ConfigError("api.tls_cert: " + s.tls_cert.string() +
                          ": cannot load the certificate: " + openssl_error());
    }
    if (SSL_CTX_use_PrivateKey_file(c, s.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
        throw ConfigError("api.tls_key: " + s.tls_key.string() +
                          ": cannot load the private key: " + openssl_error());
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        throw ConfigError("api.tls_key: " + s.tls_key.string() +
                          " does not belong to the certificate in " + s.tls_cert.string());
    }
    return ctx;
}

}  // namespace

void ApiServer::start() {
    if (started_once_) {
        throw std::logic_error("ApiServer::start() called twice");
    }
    started_once_ = true;
    if (!settings_.tls_cert.empty()) {
        tls_ctx_ = make_tls_context(settings_);
        // OpenSSL writes with write(2): a client that resets must not kill the process.
        std::signal(SIGPIPE, SIG_IGN);
    }
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) {
        throw std::system_error(errno, std::generic_category(), "api: eventfd");
    }
    try {
        for (auto& l : listeners_) {
            l->sock_.reset(open_listening_socket(l->cfg_));
            std::string ip;
            address_of(l->sock_.get(), false, ip, l->port_);
        }
    } catch (...) {
        for (auto& l : listeners_) {
            l->sock_.reset();
        }
        throw;
    }
    const std::size_t workers = static_cast<std::size_t>(std::max(1, settings_.workers));
    for (auto& l : listeners_) {
        Listener* raw = l.get();
        l->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        epoll_event listen_ev{};
        listen_ev.events = EPOLLIN;
        listen_ev.data.ptr = &l->listen_tag_;
        epoll_event stop_ev{};
        stop_ev.events = EPOLLIN;
        stop_ev.data.ptr = &l->stop_tag_;
        if (l->epoll_.get() < 0 ||
            ::epoll_ctl(l->epoll_.get(), EPOLL_CTL_ADD, l->sock_.get(), &listen_ev) != 0 ||
            ::epoll_ctl(l->epoll_.get(), EPOLL_CTL_ADD, stop_fd_, &stop_ev) != 0) {
            const int err = errno;
            stop();
            throw std::system_error(err, std::generic_category(), "api: epoll");
        }
        l->max_connections_ = static_cast<int>(64 * workers);
        l->pool_ = std::make_unique<Pool>(
            workers, std::chrono::duration_cast<std::chrono::milliseconds>(settings_.read_timeout),
            [raw](std::unique_ptr<Conn> c, bool shed) { raw->run(std::move(c), shed); });
        l->poller_ = std::thread([raw] { raw->poll_loop(); });
        spdlog::info("api {}: listening on {}{}", l->cfg_.name,
                     host_port(l->cfg_.address, l->port_), tls_ctx_ ? " (TLS)" : "");
        if (!is_loopback(l->cfg_.address) && !tls_ctx_) {
            spdlog::warn(
                "api {}: {} is reachable from the network without TLS; tokens cross it "
                "in clear text (set api.tls_cert and api.tls_key)",
                l->cfg_.name, host_port(l->cfg_.address, l->port_));
        }
    }
}

void ApiServer::stop() {
    if (stopping_.exchange(true)) {
        return;
    }
    if (stop_fd_ >= 0) {
        const std::uint64_t one = 1;
        (void)!::write(stop_fd_, &one, sizeof(one));
    }
    for (auto& l : listeners_) {
        if (l->poller_.joinable()) {
            l->poller_.join();
        }
        l->sock_.reset();  // refuse new connections while requests in flight finish
    }
    for (auto& l : listeners_) {
        if (l->pool_) {
            l->pool_->shutdown();
            l->pool_.reset();
        }
        std::lock_guard<std::mutex> lock(l->parked_mu_);
        l->parked_.clear();
    }
}

std::vector<int> ApiServer::bound_ports() const {
    std::vector<int> out;
    for (const auto& l : listeners_) {
        out.push_back(l->port_);
    }
    return out;
}

std::string ApiServer::handle_raw(std::size_t index, std::string_view raw) {
    auto& listener = *listeners_.at(index);
    std::string out;
    std::atomic<int> open{0};
    Conn c(-1, open);
    c.peer = {"127.0.0.1", 40000, "127.0.0.1", 5000};
    c.transport = std::make_unique<MemoryTransport>(raw, out);
    c.stream = std::make_unique<ConnStream>(*c.transport, settings_, c.peer, -1);
    while (c.stream->has_buffered() || c.transport->has_pending()) {
        if (listener.serve_one(c) != Listener::Next::kKeep) {
            break;
        }
    }
    return out;
}

}  // namespace mlk::api
