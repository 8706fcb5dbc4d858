// The probe list of [health] probes: one string per probe, a URI optionally
// followed by space-separated options, e.g.
//   "http://127.0.0.1:8000/health expect=200 timeout=3s name=model-api"
//   "tcp://127.0.0.1:8001"   "redis://:secret@127.0.0.1:6379"
//   "postgresql://ml@127.0.0.1:5432/features timeout=5s"
// Parsing validates everything up front so a bad entry stops the command
// with a clear message. Thread safety: pure functions.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mlk::health {

enum class ProbeKind { kHttp, kTcp, kRedis, kPostgres };

struct ProbeSpec {
    ProbeKind kind = ProbeKind::kTcp;
    std::string uri;            // as configured (http(s) and postgresql URIs are used as is)
    std::string name;           // name=..., else derived: "http 127.0.0.1:8000/health"
    std::optional<int> expect;  // HTTP status; nullopt = any 2xx or 3xx (curl -f)
    std::chrono::milliseconds timeout{5000};
    std::string host;  // tcp and redis (and postgres/http, for display)
    int port = 0;
    std::string user, password;  // redis ACL user (may be empty) and password
    int redis_db = 0;  // redis://host/2 -> SELECT is not needed for PING; kept for display
};

class ProbeSpecError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

// Throws ProbeSpecError with a one-line reason naming the bad part.
ProbeSpec parse_probe_spec(const std::string& text);

// "500ms", "3s", "2m", "3" (seconds) -> milliseconds; nullopt when malformed or 0.
std::optional<std::chrono::milliseconds> parse_timeout(const std::string& text);

// Parses every entry; problems come back one per entry as
// "health.probes[2] \"...\": reason" and the good specs in order.
struct ParsedProbes {
    std::vector<ProbeSpec> specs;
    std::vector<std::string> errors;
};
ParsedProbes parse_probe_specs(const std::vector<std::string>& entries);

}  // namespace mlk::health
