// A real S3-compatible server for tests: s3rver (npm) on a free 127.0.0.1 port, behind
// tests/fixtures/s3gate.py, which verifies SigV4 signatures (with botocore), payload hashes and
// Content-MD5 the way S3 does, injects faults on request and logs every request. Both processes
// live in one temporary directory and are always stopped by the destructor. The constructor
// throws ServerUnavailable when s3rver, node, /usr/bin/python3 or botocore is missing (tests
// GTEST_SKIP) and std::runtime_error (with the logs) when a process fails to start.
// Thread safety: one per test; the control calls may be made from any one thread at a time.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/util/process.hpp"
#include "support/servers.hpp"
#include "support/temp_dir.hpp"

namespace mlk::testing {

class S3Server {
  public:
    static constexpr const char* kAccessKey = "S3RVER";
    static constexpr const char* kSecretKey = "S3RVER";
    static constexpr const char* kRegion = "us-east-1";

    // $MLK_S3RVER, or /opt/mlkeeper-test/node_modules/.bin/s3rver.
    static std::filesystem::path s3rver_binary();
    // $MLK_S3GATE, or tests/fixtures/s3gate.py under MLK_SOURCE_DIR (empty when neither is set).
    static std::filesystem::path gate_script();

    // Starts s3rver with each bucket created empty, then the gate in front of it.
    explicit S3Server(std::vector<std::string> buckets = {"mlk-test"});
    ~S3Server();
    S3Server(const S3Server&) = delete;
    S3Server& operator=(const S3Server&) = delete;

    // "http://127.0.0.1:GATEPORT": every request is checked by the gate.
    std::string endpoint() const;
    // "http://127.0.0.1:S3RVERPORT": s3rver itself, unchecked (benchmarks, peeking).
    std::string direct_endpoint() const;
    int gate_port() const { return gate_port_; }
    int upstream_port() const { return upstream_port_; }

    // Replaces the gate's fault rules with `json_rules`, a JSON list (see s3gate.py), e.g.
    // R"([{"method":"PUT","times":2,"action":"status","status":503,"code":"SlowDown"}])".
    // Throws std::runtime_error if the gate rejects them.
    void set_faults(const std::string& json_rules);
    // Every request the gate has seen since the start or the last reset(), oldest first:
    // {"method","path","query","status" (0: dropped),"headers","body_bytes","start","end"};
    // start/end are CLOCK_MONOTONIC seconds (std::chrono::steady_clock on Linux).
    nlohmann::json request_log() const;
    // Clears the fault rules and the log.
    void reset();

    // s3rver's -d directory (objects live under data_dir()/BUCKET/).
    std::filesystem::path data_dir() const { return dir_ / "data"; }
    // The gate's stderr so far (one line per request; canonical requests of signature
    // mismatches), for failure messages.
    std::string gate_output() const;

    // Stops s3rver only: the gate stays up and answers 503 ServiceUnavailable.
    void stop_upstream();

  private:
    nlohmann::json control(const std::string& method, const std::string& path,
                           const std::string& body) const;

    TempDir dir_;
    int upstream_port_ = 0;
    int gate_port_ = 0;
    std::optional<util::Subprocess> upstream_;
    std::optional<util::Subprocess> gate_;
};

}  // namespace mlk::testing
