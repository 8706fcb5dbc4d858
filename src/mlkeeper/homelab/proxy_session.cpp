#include "mlkeeper/homelab/proxy_session.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <utility>
#include <variant>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "mlkeeper/homelab/model_proxy.hpp"

namespace mlk::homelab {
namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr std::size_t kReadChunk = 16 * 1024;
// A model's response head may be larger than what clients may send.
constexpr std::size_t kMaxResponseHead = 64 * 1024;
// How long, and how many bytes, a closing connection's input is drained.
constexpr std::chrono::milliseconds kLinger{1000};
constexpr std::size_t kLingerBytes = 1024 * 1024;

std::string error_json(std::string_view code, std::string_view message) {
    return nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump();
}

bool idempotent(std::string_view m) {
    return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" ||
           m == "DELETE";
}

// Counts one request for a model: request_started() now, request_finished() exactly once when
// it goes out of scope, whatever happened in between.
class Tracked {
  public:
    Tracked(RequestSink* sink, const std::string& model, std::chrono::steady_clock::time_point t0)
        : sink_(sink), model_(model), t0_(t0) {
        if (sink_ != nullptr) {
            sink_->request_started(model_);
        }
    }
    ~Tracked() {
        if (sink_ == nullptr) {
            return;
        }
        RequestEvent ev;
        ev.model = model_;
        ev.source = RequestSource::kProxy;
        ev.status = status;
        ev.bytes_in = bytes_in;
        ev.bytes_out = bytes_out;
        ev.latency = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - t0_);
        ev.at = std::chrono::system_clock::now();
        try {
            sink_->request_finished(ev);
        } catch (const std::exception& e) {
            spdlog::warn("proxy: request counter failed: {}", e.what());
        }
    }
    Tracked(const Tracked&) = delete;
    Tracked& operator=(const Tracked&) = delete;

    int status = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;

  private:
    RequestSink* sink_;
    const std::string& model_;
    std::chrono::steady_clock::time_point t0_;
};

}  // namespace

ProxySession::ProxySession(const ProxyContext& ctx, util::EventLoop& loop, util::AsyncSocket client,
                           std::string peer_ip)
    : ctx_(ctx),
      loop_(loop),
      client_(std::move(client)),
      peer_ip_(std::move(peer_ip)),
      prefix_(ctx.settings.prefix),
      buf_(kReadChunk) {}

ProxySession::~ProxySession() {
    release_upstream(Reuse::kYes);
}

ProxySession::Clock::time_point ProxySession::client_deadline() const {
    return Clock::now() + ctx_.settings.client_timeout;
}

ProxySession::Clock::time_point ProxySession::upstream_deadline() const {
    return Clock::now() + ctx_.settings.upstream_timeout;
}

util::Task<bool> ProxySession::send_client(std::string_view data) {
    return client_.send_all(data, client_deadline());
}

util::Task<ssize_t> ProxySession::recv_client() {
    return client_.recv(buf_.data(), buf_.size(), client_deadline());
}

util::Task<void> ProxySession::run() {
    while (!ctx_.stopping) {
        const bool keep_going = co_await serve_one();
        if (!keep_going) {
            co_return;
        }
    }
}

util::Task<void> ProxySession::close() {
    release_upstream(Reuse::kYes);
    if (!client_) {
        co_return;
    }
    ::shutdown(client_.fd(), SHUT_WR);
    const auto until = Clock::now() + kLinger;
    std::size_t dropped = 0;
    while (!ctx_.stopping && Clock::now() < until && dropped < kLingerBytes) {
        const ssize_t n = co_await client_.recv(buf_.data(), buf_.size(), until);
        if (n <= 0) {
            break;
        }
        dropped += static_cast<std::size_t>(n);
    }
    client_.close();
}

void ProxySession::release_upstream(Reuse reuse) {
    if (!up_) {
        return;
    }
    if (reuse == Reuse::kYes && !ctx_.stopping) {
        ctx_.pool.put(up_model_, up_port_, UniqueFd(up_.release()));
    }
    up_.close();
}

util::Task<bool> ProxySession::answer(int status, std::string_view code, std::string_view message,
                                      bool keep, int minor,
                                      const std::vector<http::Header>* extra) {
    const std::string body = code.empty() ? std::string() : error_json(code, message);
    std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
    out.append(reason_phrase(status));
    out.append("\r\n");
    if (!body.empty()) {
        out += "Content-Type: application/json\r\n";
    }
    if (extra != nullptr) {
        for (const auto& h : *extra) {
            out += h.name + ": " + h.value + "\r\n";
        }
    }
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (!keep) {
        out += "Connection: close\r\n";
    } else if (minor == 0) {
        out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
    out += body;
    co_return co_await send_client(out) && keep;
}

util::Task<ProxySession::Outcome> ProxySession::refuse(const http::RequestHead& req,
                                                       const ProxyRefusal& r, bool consumed) {
    std::vector<http::Header> extra;
    if (r.retry_after > 0) {
        extra.push_back({"Retry-After", std::to_string(r.retry_after)});
    }
    // An unread request body would be taken for the next request: close instead.
    const bool keep = req.keep_alive && (consumed || !body_pending(req)) && !ctx_.stopping;
    const bool sent = co_await answer(r.status, r.code, r.message, keep, req.minor, &extra);
    co_return Outcome{r.status, sent};
}

util::Task<bool> ProxySession::serve_one() {
    // Blank lines between requests are allowed (RFC 9112 2.2).
    std::size_t blank = 0;
    while (blank < in_.size() && (in_[blank] == '\r' || in_[blank] == '\n')) {
        ++blank;
    }
    in_.erase(0, blank);
    auto t0 = Clock::now();
    std::size_t head = in_.empty() ? 0 : http::head_length(in_);
    std::optional<Clock::time_point> first_byte;
    if (!in_.empty()) {
        first_byte = t0;
    }
    while (head == 0) {
        if (in_.size() > ctx_.settings.max_header) {
            co_await answer(431, "headers_too_large", "the request line and headers are too large",
                            false, 1);
            co_return false;
        }
        const ssize_t n = co_await recv_client();
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN && !in_.empty()) {
                co_await answer(408, "request_timeout", "the request did not arrive in time", false,
                                1);
            }
            co_return false;
        }
        if (in_.empty()) {
            t0 = Clock::now();
        }
        // A head sent a byte at a time must still arrive whole within client_timeout (blank lines
        // before it included), or one client could hold a thread for ever.
        if (!first_byte) {
            first_byte = Clock::now();
        } else if (Clock::now() - *first_byte > ctx_.settings.client_timeout) {
            co_await answer(408, "request_timeout", "the request did not arrive in time", false, 1);
            co_return false;
        }
        // Search only the new bytes (and the 3 before them, for a split empty line).
        const std::size_t from = in_.size() > 3 ? in_.size() - 3 : 0;
        in_.append(buf_.data(), static_cast<std::size_t>(n));
        while (from == 0 && !in_.empty() && (in_[0] == '\r' || in_[0] == '\n')) {
            in_.erase(0, 1);
        }
        const auto h = http::head_length(std::string_view(in_).substr(from));
        head = h == 0 ? 0 : from + h;
    }
    if (head > ctx_.settings.max_header) {
        co_await answer(431, "headers_too_large", "the request line and headers are too large",
                        false, 1);
        co_return false;
    }
    http::RequestHead req;
    if (const auto err = http::parse_request(std::string_view(in_).substr(0, head), req)) {
        const char* code = err->status == 431   ? "headers_too_large"
                           : err->status == 501 ? "not_implemented"
                           : err->status == 505 ? "http_version_not_supported"
                                                : "bad_request";
        co_await answer(err->status, code, err->message, false, 1);
        co_return false;
    }
    in_.erase(0, head);
    continue_sent_ = false;
    co_return (co_await handle(req, t0)).keep_client;
}

util::Task<ProxySession::Outcome> ProxySession::handle(const http::RequestHead& req,
                                                       Clock::time_point t0) {
    const bool can_keep = req.keep_alive && !body_pending(req);
    const std::string_view target = req.target;
    const auto q = target.find('?');
    const auto path = target.substr(0, q);
    const auto query = q == std::string_view::npos ? std::string_view{} : target.substr(q);
    std::string missing;
    if (path.size() <= prefix_.size() + 1 || path.substr(0, prefix_.size()) != prefix_ ||
        path[prefix_.size()] != '/') {
        missing = "no such path; models are served under " + prefix_ + "/NAME/";
        co_return Outcome{404, co_await answer(404, "not_found", missing, can_keep, req.minor)};
    }
    const auto rest = path.substr(prefix_.size() + 1);
    const auto slash = rest.find('/');
    const std::string name(rest.substr(0, slash));
    // Checked before the manager sees it: hostile names ("..", "%2e%2e", ";", long) stop here.
    std::optional<ModelInfo> info;
    if (valid_model_name(name)) {
        info = ctx_.models.get(name);
    }
    if (!info) {
        missing = "no model named " + quote_name(name);
        co_return Outcome{404, co_await answer(404, "not_found", missing, can_keep, req.minor)};
    }
    if (slash == std::string_view::npos) {
        const std::vector<http::Header> location{
            {"Location", prefix_ + "/" + name + "/" + std::string(query)}};
        co_return Outcome{308, co_await answer(308, "", "", can_keep, req.minor, &location)};
    }

    // From here the request counts against the model, whatever happens.
    Tracked track(ctx_.sink, name, t0);

    req_bytes_ = 0;
    res_bytes_ = 0;
    const auto port = co_await running_port(name, *info);
    Outcome result;
    if (const auto* r = std::get_if<ProxyRefusal>(&port)) {
        result = co_await refuse(req, *r);
    } else {
        up_path_.assign(rest.substr(slash));
        up_path_.append(query);
        for (int attempt = 0; attempt < 2; ++attempt) {
            bool reused = false;
            const auto refusal =
                co_await acquire_upstream(name, std::get<int>(port), attempt > 0, reused);
            if (refusal) {
                result = co_await refuse(req, *refusal);
                break;
            }
            const Exchange done =
                co_await exchange(req, name, std::get<int>(port), reused, attempt > 0, result);
            if (done == Exchange::kDone) {
                break;
            }
            ctx_.counters.upstream_retries++;
            release_upstream(Reuse::kNo);
        }
    }
    track.status = result.status;
    track.bytes_in = req_bytes_;
    track.bytes_out = res_bytes_;
    co_return result;
}

util::Task<std::variant<int, ProxyRefusal>> ProxySession::running_port(const std::string& name,
                                                                       const ModelInfo& info) {
    // A running model (or one without a port) is answered at once; only a cold start blocks,
    // and it does so on a thread of its own, not the loop's.
    if (info.state == ModelState::kRunning || !info.port) {
        co_return ctx_.starts.running_port(name, info);
    }
    std::variant<int, ProxyRefusal> port;
    const std::function<void()> wait = [&] { port = ctx_.starts.running_port(name, info); };
    co_await loop_.run_blocking(wait);
    co_return port;
}

util::Task<std::optional<ProxyRefusal>> ProxySession::acquire_upstream(const std::string& name,
                                                                       int port, bool fresh,
                                                                       bool& reused) {
    const bool recent = std::chrono::steady_clock::now() - up_used_ < std::chrono::seconds(1);
    if (up_ &&
        (fresh || up_model_ != name || up_port_ != port || (!recent && !still_open(up_.fd())))) {
        release_upstream(up_model_ == name && up_port_ == port ? Reuse::kNo : Reuse::kYes);
    }
    reused = static_cast<bool>(up_);
    if (!up_ && !fresh) {
        if (UniqueFd pooled = ctx_.pool.take(name, port)) {
            up_ = util::AsyncSocket(loop_, pooled.release());
        }
        reused = static_cast<bool>(up_);
    }
    if (!up_) {
        const auto limit = std::min<milliseconds>(ctx_.settings.upstream_timeout, 5s);
        int err = 0;
        UniqueFd fd = begin_connect_loopback(port, err);
        if (fd) {
            up_ = util::AsyncSocket(loop_, fd.release());
            if (err == EINPROGRESS) {
                err = co_await up_.connected(Clock::now() + limit);
            }
        }
        if (err != 0) {
            up_.close();
            const bool timeout = err == ETIMEDOUT;
            const std::string error = timeout ? "timed out" : std::strerror(err);
            co_return ProxyRefusal{timeout ? 504 : 502, timeout ? "gateway_timeout" : "bad_gateway",
                                   "model " + quote_name(name) + " on 127.0.0.1:" +
                                       std::to_string(port) + ": connect: " + error};
        }
        ctx_.counters.upstream_connects++;
    } else {
        ctx_.counters.upstream_reused++;
    }
    up_model_ = name;
    up_port_ = port;
    co_return std::nullopt;
}

bool ProxySession::encode_request_body(const http::RequestHead& req, std::string_view& avail) {
    if (req.body == http::BodyKind::kLength) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(req_left_, avail.size()));
        out_.append(avail.substr(0, n));
        avail.remove_prefix(n);
        req_left_ -= n;
        req_bytes_ += n;
        req_done_ = req_left_ == 0;
        return true;
    }
    tmp_.clear();
    const auto st = req_chunks_.feed(avail, tmp_);
    http::append_chunk(out_, tmp_);
    req_bytes_ += tmp_.size();
    if (st == http::ChunkedDecoder::Status::kDone) {
        out_.append(http::kLastChunk);
        req_done_ = true;
    }
    return st != http::ChunkedDecoder::Status::kError;
}

bool ProxySession::encode_response_body(const http::ResponseHead& res, http::BodyKind out_body,
                                        std::string_view avail, bool eof) {
    const bool chunk_out = out_body == http::BodyKind::kChunked;
    const auto emit = [&](std::string_view data) {
        res_bytes_ += data.size();
        if (chunk_out) {
            http::append_chunk(out_, data);
        } else {
            out_.append(data);
        }
    };
    switch (res.body) {
        case http::BodyKind::kNone:
            up_clean_ = up_clean_ && avail.empty();
            return true;
        case http::BodyKind::kLength: {
            const auto n =
                static_cast<std::size_t>(std::min<std::uint64_t>(res_left_, avail.size()));
            emit(avail.substr(0, n));
            res_left_ -= n;
            res_done_ = res_left_ == 0;
            up_clean_ = up_clean_ && avail.size() == n;
            return true;
        }
        case http::BodyKind::kChunked: {
            tmp_.clear();
            const auto st = res_chunks_.feed(avail, tmp_);
            emit(tmp_);
            if (st == http::ChunkedDecoder::Status::kDone) {
                res_done_ = true;
                up_clean_ = up_clean_ && avail.empty();
                if (chunk_out) {
                    out_.append(http::kLastChunk);
                }
            }
            return st != http::ChunkedDecoder::Status::kError;
        }
        case http::BodyKind::kClose:
            emit(avail);
            if (eof) {
                res_done_ = true;
                if (chunk_out) {
                    out_.append(http::kLastChunk);
                }
            }
            return true;
    }
    return false;
}

util::Task<ProxySession::Exchange> ProxySession::fail(const http::RequestHead& req,
                                                      const ProxyRefusal& r, bool consumed,
                                                      Outcome& out) {
    release_upstream(Reuse::kNo);
    if (ctx_.stopping) {
        // The wait on the model was cancelled, not answered: say so, not that the model failed.
        const ProxyRefusal stopping{503, "unavailable", "the model proxy is stopping", 1};
        out = co_await refuse(req, stopping, consumed);
    } else {
        out = co_await refuse(req, r, consumed);
    }
    co_return Exchange::kDone;
}

util::Task<ProxySession::Exchange> ProxySession::exchange(const http::RequestHead& req,
                                                          const std::string& name, int port,
                                                          bool reused, bool last_try,
                                                          Outcome& out) {
    const auto& s = ctx_.settings;
    const auto model = "model " + quote_name(name);
    // A client that asked for 100-continue waits for it before sending its body; the model never
    // sees the Expect field.
    if (req.expect_continue && body_pending(req) && in_.empty() && !continue_sent_) {
        continue_sent_ = true;
        const bool continued = co_await send_client("HTTP/1.1 100 Continue\r\n\r\n");
        if (!continued) {
            out = {0, false};
            co_return Exchange::kDone;
        }
    }
    const http::Forwarded fwd{up_path_, peer_ip_, prefix_ + "/" + name,
                              "127.0.0.1:" + std::to_string(port)};
    out_ = http::upstream_request_head(req, fwd);
    req_left_ = req.content_length;
    req_chunks_ = http::ChunkedDecoder();
    req_done_ = !body_pending(req);
    req_bytes_ = 0;
    res_bytes_ = 0;
    std::string_view avail = in_;
    if (!req_done_ && !encode_request_body(req, avail)) {
        out = {400,
               co_await answer(400, "bad_request", "malformed chunked request body", false, 1)};
        release_upstream(Reuse::kYes);
        co_return Exchange::kDone;
    }
    // Bytes of in_ sent with the head; dropped from in_ once they cannot be sent again.
    const std::size_t first = in_.size() - avail.size();
    bool committed = false;
    const auto commit = [&] {
        if (!committed) {
            in_.erase(0, first);
            committed = true;
        }
    };
    // The whole request went out in one piece: it can be sent again if a kept-alive connection
    // turns out to be stale (only then, and only once).
    const bool whole = req_done_;
    const bool may_retry =
        reused && !last_try && whole && (idempotent(req.method) || !body_pending(req));
    const auto stale_closed = [&] {
        return ProxyRefusal{502, "bad_gateway", model + " closed the connection before answering"};
    };
    const bool sent_head = co_await up_.send_all(out_, upstream_deadline());
    if (!sent_head) {
        if (may_retry) {
            co_return Exchange::kRetry;
        }
        commit();
        const ProxyRefusal refusal = stale_closed();
        co_return co_await fail(req, refusal, whole, out);
    }
    if (!whole) {
        commit();
    }
    while (!req_done_) {
        const ssize_t n = co_await recv_client();
        if (n <= 0) {
            release_upstream(Reuse::kNo);
            const bool timeout = n < 0 && errno == EAGAIN;
            out = {timeout ? 408 : 0, false};
            if (timeout) {
                co_await answer(408, "request_timeout", "the request body did not arrive in time",
                                false, req.minor);
            }
            co_return Exchange::kDone;
        }
        std::string_view more(buf_.data(), static_cast<std::size_t>(n));
        out_.clear();
        if (!encode_request_body(req, more)) {
            release_upstream(Reuse::kNo);
            out = {400,
                   co_await answer(400, "bad_request", "malformed chunked request body", false, 1)};
            co_return Exchange::kDone;
        }
        in_.append(more);  // bytes after the body: the client's next request
        const bool sent_body = co_await up_.send_all(out_, upstream_deadline());
        if (!sent_body) {
            const ProxyRefusal refusal{502, "bad_gateway",
                                       model + " closed the connection during the request"};
            co_return co_await fail(req, refusal, req_done_, out);
        }
    }

    // The response head (interim 1xx responses are dropped: the client never asked for them).
    http::ResponseHead res;
    std::size_t head = 0;
    resp_.clear();
    for (;;) {
        while ((head = http::head_length(resp_)) == 0) {
            if (resp_.size() > kMaxResponseHead) {
                const ProxyRefusal refusal{502, "bad_gateway",
                                           model + " sent a response head over 64 KiB"};
                co_return co_await fail(req, refusal, true, out);
            }
            const ssize_t n = co_await up_.recv(buf_.data(), buf_.size(), upstream_deadline());
            if (n <= 0) {
                const bool timeout = n < 0 && errno == EAGAIN;
                if (!timeout && resp_.empty() && may_retry && !ctx_.stopping) {
                    co_return Exchange::kRetry;
                }
                commit();
                const ProxyRefusal refusal =
                    timeout
                        ? ProxyRefusal{504, "gateway_timeout",
                                       model + " did not answer within " +
                                           std::to_string(s.upstream_timeout.count() / 1000) + " s"}
                        : stale_closed();
                co_return co_await fail(req, refusal, true, out);
            }
            resp_.append(buf_.data(), static_cast<std::size_t>(n));
        }
        commit();
        if (const auto err =
                http::parse_response(std::string_view(resp_).substr(0, head), req.method, res)) {
            const ProxyRefusal refusal{502, "bad_gateway",
                                       model + " sent an invalid response: " + *err};
            co_return co_await fail(req, refusal, true, out);
        }
        if (res.status == 101) {
            const ProxyRefusal refusal{
                502, "bad_gateway", model + " switched protocols, which the proxy does not tunnel"};
            co_return co_await fail(req, refusal, true, out);
        }
        if (res.status >= 200) {
            break;
        }
        resp_.erase(0, head);  // an interim response: the real one follows
    }

    // The body, relayed as it comes: one read, one write.
    auto out_body = res.body;
    if (out_body == http::BodyKind::kChunked || out_body == http::BodyKind::kClose) {
        out_body = req.minor == 1 ? http::BodyKind::kChunked : http::BodyKind::kClose;
    }
    const bool keep = req.keep_alive && out_body != http::BodyKind::kClose && !ctx_.stopping;
    out_ = http::client_response_head(res, out_body, keep, req.minor);
    res_left_ = res.content_length;
    res_chunks_ = http::ChunkedDecoder();
    res_done_ = res.body == http::BodyKind::kNone ||
                (res.body == http::BodyKind::kLength && res.content_length == 0);
    up_clean_ = res.keep_alive;
    bool framing_ok =
        encode_response_body(res, out_body, std::string_view(resp_).substr(head), false);
    const bool sent_head_to_client = co_await send_client(out_);
    if (!sent_head_to_client) {
        release_upstream(Reuse::kNo);
        out = {0, false};
        co_return Exchange::kDone;
    }
    out = {res.status, keep};
    while (!res_done_ && framing_ok) {
        const ssize_t n = co_await up_.recv(buf_.data(), buf_.size(), upstream_deadline());
        out_.clear();
        if (n == 0 && res.body == http::BodyKind::kClose) {
            encode_response_body(res, out_body, {}, true);
            const bool sent_end = co_await send_client(out_);
            if (!sent_end) {
                out.keep_client = false;
            }
            break;
        }
        if (n <= 0) {
            framing_ok = false;  // the model died or stalled mid-body: the client must notice
            break;
        }
        const std::string_view got(buf_.data(), static_cast<std::size_t>(n));
        framing_ok = encode_response_body(res, out_body, got, false);
        const bool relayed = co_await send_client(out_);
        if (!relayed) {
            release_upstream(Reuse::kNo);
            out.keep_client = false;
            co_return Exchange::kDone;
        }
    }
    if (!framing_ok || !res_done_) {
        release_upstream(Reuse::kNo);
        out.keep_client = false;
    } else if (!up_clean_) {
        release_upstream(Reuse::kNo);
    } else {
        up_used_ = std::chrono::steady_clock::now();
    }
    co_return Exchange::kDone;
}

}  // namespace mlk::homelab
