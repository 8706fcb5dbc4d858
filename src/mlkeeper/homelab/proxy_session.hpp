// One client connection of the model proxy (homelab/model_proxy): reads HTTP/1.1 requests, routes
// /{prefix}/{model}/..., has the model started on demand, forwards over a kept-alive upstream
// connection and relays the response as it arrives; every request for a registered model is
// reported to the RequestSink. A session is a coroutine on one of the proxy's event loops: it
// waits for its sockets without holding a thread (a cold start waits on a thread of its own).
// Thread safety: a session runs on its loop's thread; what it shares (ProxyContext) is safe for
// concurrent use.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mlkeeper/homelab/cold_start.hpp"
#include "mlkeeper/homelab/http_relay.hpp"
#include "mlkeeper/homelab/model_manager.hpp"
#include "mlkeeper/homelab/proxy_socket.hpp"
#include "mlkeeper/homelab/request_event.hpp"
#include "mlkeeper/util/async_socket.hpp"
#include "mlkeeper/util/co_task.hpp"
#include "mlkeeper/util/event_loop.hpp"

namespace mlk::homelab {

struct ProxySettings;

struct ProxyCounters {
    std::atomic<std::uint64_t> upstream_connects{0};
    std::atomic<std::uint64_t> upstream_reused{0};
    std::atomic<std::uint64_t> upstream_retries{0};
};

// What every session of one proxy shares.
struct ProxyContext {
    const ProxySettings& settings;  // prefix already normalised
    ModelManager& models;
    RequestSink* sink;  // may be null
    UpstreamPool& pool;
    ColdStartGate& starts;
    ProxyCounters& counters;
    const std::atomic<bool>& stopping;
};

class ProxySession {
  public:
    ProxySession(const ProxyContext& ctx, util::EventLoop& loop, util::AsyncSocket client,
                 std::string peer_ip);
    // Returns the held upstream connection to the pool.
    ~ProxySession();
    ProxySession(const ProxySession&) = delete;
    ProxySession& operator=(const ProxySession&) = delete;

    // Serves requests until the client closes, a request cannot keep the connection, a timeout,
    // or the proxy stops.
    util::Task<void> run();
    // Closes the client connection without losing the last response: a close with unread input
    // makes the kernel send a reset, which can destroy a response the client has not read yet (a
    // 431 for a client still sending). So: FIN first, then what the client still sends is read
    // and dropped, bounded in time and bytes.
    util::Task<void> close();

  private:
    using Clock = std::chrono::steady_clock;
    template <typename T>
    using Task = util::Task<T>;
    enum class Reuse { kYes, kNo };
    enum class Exchange { kDone, kRetry };
    // What a request ended as: the status sent (0 = none) and whether the connection stays.
    struct Outcome {
        int status = 0;
        bool keep_client = false;
    };

    Task<bool> serve_one();
    Task<Outcome> handle(const http::RequestHead& req, Clock::time_point t0);
    Task<std::variant<int, ProxyRefusal>> running_port(const std::string& name,
                                                       const ModelInfo& info);
    Task<std::optional<ProxyRefusal>> acquire_upstream(const std::string& name, int port,
                                                       bool fresh, bool& reused);
    Task<Exchange> exchange(const http::RequestHead& req, const std::string& name, int port,
                            bool reused, bool last_try, Outcome& out);
    // Drops the model connection and answers the client with `r`.
    Task<Exchange> fail(const http::RequestHead& req, const ProxyRefusal& r, bool consumed,
                        Outcome& out);
    void release_upstream(Reuse reuse);
    Clock::time_point client_deadline() const;
    Clock::time_point upstream_deadline() const;
    Task<bool> send_client(std::string_view data);
    Task<ssize_t> recv_client();
    // Sends a small JSON error (or, with an empty code, an empty body) with the `extra` header
    // fields (may be null); false when the connection must close.
    Task<bool> answer(int status, std::string_view code, std::string_view message, bool keep,
                      int minor, const std::vector<http::Header>* extra = nullptr);
    // `consumed`: the request body was read whole (the connection may stay).
    Task<Outcome> refuse(const http::RequestHead& req, const ProxyRefusal& r,
                         bool consumed = false);
    // Appends the next body bytes of `avail` to out_ the way the model gets them; false on bad
    // chunked framing.
    bool encode_request_body(const http::RequestHead& req, std::string_view& avail);
    // Appends what the client gets of the model's body bytes `avail` (eof: the model closed).
    bool encode_response_body(const http::ResponseHead& res, http::BodyKind out_body,
                              std::string_view avail, bool eof);
    static bool body_pending(const http::RequestHead& req) {
        return req.body == http::BodyKind::kChunked ||
               (req.body == http::BodyKind::kLength && req.content_length > 0);
    }

    const ProxyContext& ctx_;
    util::EventLoop& loop_;
    util::AsyncSocket client_;
    std::string peer_ip_;
    const std::string& prefix_;
    std::string in_;  // client bytes read but not consumed
    std::vector<char> buf_;
    std::string resp_;     // model bytes read but not consumed
    std::string out_;      // bytes on their way to the client or the model
    std::string tmp_;      // decoded chunk data
    std::string up_path_;  // the request's target on the model
    bool continue_sent_ = false;
    // The model connection this session holds (kept across requests to the same model).
    std::string up_model_;
    int up_port_ = 0;
    util::AsyncSocket up_;
    // When up_ last finished an exchange: a connection used less than a second ago is taken as
    // open without asking the kernel (a MSG_PEEK per request is a sixth of the proxy's syscalls
    // under load); a model closing that soon anyway is caught by the retry of idempotent calls.
    std::chrono::steady_clock::time_point up_used_{};
    // Body progress of the current exchange.
    http::ChunkedDecoder req_chunks_;
    http::ChunkedDecoder res_chunks_;
    std::uint64_t req_left_ = 0;
    std::uint64_t res_left_ = 0;
    std::uint64_t req_bytes_ = 0;  // request body bytes sent to the model, unframed
    std::uint64_t res_bytes_ = 0;  // response body bytes given to the client, unframed
    bool req_done_ = true;
    bool res_done_ = true;
    bool up_clean_ = true;  // the model's connection may carry another request
};

}  // namespace mlk::homelab
