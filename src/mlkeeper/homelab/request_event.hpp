// What the request counters of the home-lab services exchange: one finished request that reached
// a model (through the agent's proxy or seen in an NGINX access log), and the interface of
// whatever counts them (homelab/activity). Kept apart so the proxy and the log tailer depend on
// this small header only. Thread safety: RequestSink implementations must accept calls from any
// number of threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace mlk::homelab {

enum class RequestSource { kProxy, kNginx };

struct RequestEvent {
    std::string model;  // a registry name (events for unknown names are dropped by the sink)
    RequestSource source = RequestSource::kProxy;
    int status = 0;  // HTTP status sent to the client; 0 = no response (client or model gone)
    std::uint64_t bytes_in = 0;                // request body bytes
    std::uint64_t bytes_out = 0;               // response body bytes
    std::chrono::microseconds latency{0};      // first request byte to last response byte
    std::chrono::system_clock::time_point at;  // when the request finished
};

class RequestSink {
  public:
    virtual ~RequestSink() = default;
    // A request for `model` is now in flight (the idle reaper never stops a model with one).
    virtual void request_started(std::string_view model) = 0;
    // It finished (call once per request_started(), whatever the outcome).
    virtual void request_finished(const RequestEvent& event) = 0;
    // A request seen after the fact (NGINX's access log): counted, never in flight.
    virtual void request_seen(const RequestEvent& event) = 0;
};

}  // namespace mlk::homelab
