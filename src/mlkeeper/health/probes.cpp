#include "mlkeeper/health/probes.hpp"

#include "mlkeeper/health/pq_lib.hpp"

#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "mlkeeper/core/http_client.hpp"
#include "mlkeeper/health/network.hpp"

namespace mlk::health {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string format_ms(milliseconds ms) {
    return ms.count() % 1000 == 0 ? fmt::format("{} s", ms.count() / 1000)
                                  : fmt::format("{} ms", ms.count());
}

std::string resp_command(const std::vector<std::string>& args) {
    std::string out = fmt::format("*{}\r\n", args.size());
    for (const auto& a : args)
        out += fmt::format("${}\r\n{}\r\n", a.size(), a);
    return out;
}

std::size_t count_lines(const std::string& s) {
    std::size_t n = 0;
    for (std::size_t p = s.find("\r\n"); p != std::string::npos; p = s.find("\r\n", p + 2))
        ++n;
    return n;
}
bool one_reply(const std::string& s) {
    return count_lines(s) >= 1;
}
bool two_replies(const std::string& s) {
    return count_lines(s) >= 2;
}

std::string first_line(const std::string& s, std::size_t skip = 0) {
    std::size_t start = 0;
    for (std::size_t i = 0; i < skip; ++i) {
        auto p = s.find("\r\n", start);
        if (p == std::string::npos)
            return {};
        start = p + 2;
    }
    return s.substr(start, s.find("\r\n", start) - start);
}

struct Outcome {
    bool ok = false;
    std::string detail;
};

Outcome probe_http(const ProbeSpec& spec) {
    core::HttpRequest req;
    req.url = spec.uri;
    req.timeout = spec.timeout;
    req.connect_timeout = spec.timeout;
    try {
        auto resp = core::http_request(req);
        bool ok =
            spec.expect ? resp.status == *spec.expect : resp.status >= 200 && resp.status < 400;
        std::string want = spec.expect ? fmt::format(" (expected {})", *spec.expect)
                                       : std::string(ok ? "" : " (expected 2xx or 3xx)");
        return {ok, fmt::format("HTTP {}{}", resp.status, want)};
    } catch (const core::HttpError& e) {
        if (e.kind() == core::HttpError::Kind::kTimeout) {
            return {false, "no answer within " + format_ms(spec.timeout)};
        }
        return {false, e.detail()};
    }
}

Outcome probe_tcp(const ProbeSpec& spec) {
    auto c = tcp_connect(spec.host, spec.port, spec.timeout);
    return {c.ok(), c.ok() ? "connected" : c.error};
}

Outcome probe_redis(const ProbeSpec& spec) {
    const auto deadline = SteadyClock::now() + spec.timeout;
    auto c = tcp_connect(spec.host, spec.port, spec.timeout);
    if (!c.ok()) {
        return {false, c.error};
    }
    std::string request;
    const bool auth = !spec.password.empty();
    if (auth) {
        request += spec.user.empty() ? resp_command({"AUTH", spec.password})
                                     : resp_command({"AUTH", spec.user, spec.password});
    }
    request += resp_command({"PING"});
    std::string error;
    std::string got =
        exchange(c.fd.get(), request, deadline, auth ? two_replies : one_reply, error);
    if (!error.empty()) {
        if (error.starts_with("timed out")) {
            return {false, "no answer to PING within " + format_ms(spec.timeout)};
        }
        return {false, error};
    }
    if (auth) {
        std::string a = first_line(got);
        if (a != "+OK") {
            return {false, "AUTH rejected: " + a.substr(a.empty() ? 0 : 1)};
        }
    }
    std::string pong = first_line(got, auth ? 1 : 0);
    if (pong == "+PONG") {
        return {true, "PONG"};
    }
    return {false, "PING answered " + pong};
}

Outcome probe_postgres(const ProbeSpec& spec) {
    // libpq's connect_timeout counts whole seconds (and at least 2); the
    // thread wait below holds the probe to the configured timeout anyway.
    const auto secs = std::max<long long>(2, (spec.timeout.count() + 999) / 1000);
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        PGPing result = PQPING_NO_RESPONSE;
    };
    auto st = std::make_shared<State>();
    const PqLib* lib = &pq();  // loaded here: a load error must not escape the detached thread
    std::thread([st, lib, uri = spec.uri, timeout = std::to_string(secs)] {
        const char* keys[] = {"dbname", "connect_timeout", nullptr};
        const char* vals[] = {uri.c_str(), timeout.c_str(), nullptr};
        PGPing r = lib->ping_params(keys, vals, 1);
        std::lock_guard lock(st->mu);
        st->result = r;
        st->done = true;
        st->cv.notify_all();
    }).detach();
    std::unique_lock lock(st->mu);
    if (!st->cv.wait_for(lock, spec.timeout, [&] { return st->done; })) {
        return {false, "no answer within " + format_ms(spec.timeout)};
    }
    switch (st->result) {
        case PQPING_OK:
            return {true, "accepting connections"};
        case PQPING_REJECT:
            return {false, "rejecting connections (starting up, shutting down or in recovery)"};
        case PQPING_NO_RESPONSE:
            return {false, "no response"};
        case PQPING_NO_ATTEMPT:
            return {false, "bad connection parameters"};
    }
    return {false, "unknown ping result"};
}

}  // namespace

CheckResult run_probe(const ProbeSpec& spec) {
    const auto start = SteadyClock::now();
    Outcome o;
    switch (spec.kind) {
        case ProbeKind::kHttp:
            o = probe_http(spec);
            break;
        case ProbeKind::kTcp:
            o = probe_tcp(spec);
            break;
        case ProbeKind::kRedis:
            o = probe_redis(spec);
            break;
        case ProbeKind::kPostgres:
            o = probe_postgres(spec);
            break;
    }
    const double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
    CheckResult r;
    r.check = "Probe " + spec.name;
    r.key = "probe_" + spec.name;
    r.category = "probe";
    r.status = o.ok ? Status::kPass : Status::kFail;
    r.value = secs;
    r.unit = "s";
    r.threshold = std::chrono::duration<double>(spec.timeout).count();
    r.crit = r.threshold;
    r.min = 0;
    r.message = fmt::format("Probe {}: {} ({:.0f} ms)", spec.name, o.detail, secs * 1000);
    r.metrics.push_back({"probe_success",
                         {{"probe", spec.name}},
                         o.ok ? 1.0 : 0.0,
                         "1 when the probe answered as expected"});
    r.metrics.push_back(
        {"probe_duration_seconds", {{"probe", spec.name}}, secs, "Time the probe took"});
    return r;
}

std::vector<CheckResult> run_probes(const std::vector<ProbeSpec>& specs) {
    std::vector<std::future<CheckResult>> jobs;
    jobs.reserve(specs.size());
    for (const auto& s : specs) {
        jobs.push_back(std::async(std::launch::async, [&s] { return run_probe(s); }));
    }
    std::vector<CheckResult> out;
    for (auto& j : jobs)
        out.push_back(j.get());
    return out;
}

}  // namespace mlk::health
