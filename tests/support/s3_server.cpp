#include "support/s3_server.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <regex>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "mlkeeper/core/http_client.hpp"

namespace mlk::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kPython = "/usr/bin/python3";
constexpr auto kStartLimit = 30s;

bool executable(const std::filesystem::path& p) {
    return !p.empty() && ::access(p.c_str(), X_OK) == 0;
}

// s3rver is a node script started through "#!/usr/bin/env node".
bool node_in_path() {
    const char* path = std::getenv("PATH");
    std::string_view rest = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!rest.empty()) {
        const auto colon = rest.find(':');
        const auto dir = rest.substr(0, colon);
        if (!dir.empty() && executable(std::filesystem::path(dir) / "node")) {
            return true;
        }
        rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    }
    return false;
}

// Asked once per test binary: the import takes about 0.1 s.
bool botocore_importable() {
    static const bool ok = [] {
        util::RunOptions ro;
        ro.timeout = 30s;
        return util::run_process({kPython, "-c", "import botocore.auth"}, ro).ok();
    }();
    return ok;
}

// Polls `ready` (which returns a port, or 0 while not ready) until it succeeds, failing early
// when the child exits; throws with the child's log.
template <class Ready>
int wait_ready(util::Subprocess& proc, const std::string& what, const std::filesystem::path& log,
               Ready ready) {
    const auto deadline = SteadyClock::now() + kStartLimit;
    while (SteadyClock::now() < deadline) {
        if (const int port = ready(); port > 0 && wait_for_port(port, 1s)) {
            return port;
        }
        if (proc.try_wait()) {
            throw std::runtime_error(what + " exited during startup: " + slurp(log));
        }
        std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error(fmt::format("{} not ready within {} s: {}", what,
                                         std::chrono::seconds(kStartLimit).count(), slurp(log)));
}

}  // namespace

std::filesystem::path S3Server::s3rver_binary() {
    if (const char* env = std::getenv("MLK_S3RVER"); env != nullptr && *env != '\0') {
        return env;
    }
    return "/opt/mlkeeper-test/node_modules/.bin/s3rver";
}

std::filesystem::path S3Server::gate_script() {
    if (const char* env = std::getenv("MLK_S3GATE"); env != nullptr && *env != '\0') {
        return env;
    }
#ifdef MLK_SOURCE_DIR
    return std::filesystem::path(MLK_SOURCE_DIR) / "tests" / "fixtures" / "s3gate.py";
#else
    return {};
#endif
}

S3Server::S3Server(std::vector<std::string> buckets) {
    const auto s3rver = s3rver_binary();
    if (!executable(s3rver)) {
        throw ServerUnavailable(s3rver.string() +
                                " is not installed (npm install --prefix /opt/mlkeeper-test "
                                "s3rver@3.7.1, or set MLK_S3RVER)");
    }
    if (!node_in_path()) {
        throw ServerUnavailable("node is not in PATH (s3rver needs it)");
    }
    const auto script = gate_script();
    if (script.empty() || !std::filesystem::exists(script)) {
        throw ServerUnavailable("the S3 gate script is missing: '" + script.string() +
                                "' (set MLK_S3GATE)");
    }
    if (!executable(kPython) || !botocore_importable()) {
        throw ServerUnavailable(std::string(kPython) +
                                " cannot import botocore (apt-get install python3-botocore)");
    }

    std::filesystem::create_directories(data_dir());
    // -p 0: s3rver binds a free port itself and prints it, so no other process can take it
    // between a probe and the bind.
    std::vector<std::string> argv = {
        s3rver.string(), "-d", data_dir().string(), "-a", "127.0.0.1", "-p", "0", "--silent"};
    for (auto& b : buckets) {
        argv.insert(argv.end(), {"--configure-bucket", std::move(b)});
    }
    const auto upstream_log = dir_ / "s3rver.log";
    util::RunOptions ro;
    ro.cwd = dir_.path();
    upstream_.emplace(
        util::Subprocess::start(argv, ro, util::Subprocess::Output::kToFile, upstream_log));
    static const std::regex kListening(R"(listening on 127\.0\.0\.1:(\d+))");
    upstream_port_ = wait_ready(*upstream_, "s3rver", upstream_log, [&] {
        std::smatch m;
        const std::string text = slurp(upstream_log);
        return std::regex_search(text, m, kListening) ? std::stoi(m[1].str()) : 0;
    });

    const auto port_file = dir_ / "gate.port";
    const auto gate_log = dir_ / "s3gate.log";
    gate_.emplace(util::Subprocess::start(
        {kPython, script.string(), "--listen-port", "0", "--port-file", port_file.string(),
         "--upstream-port", std::to_string(upstream_port_), "--access-key", kAccessKey,
         "--secret-key", kSecretKey, "--region", kRegion, "--spool-dir", dir_.path().string()},
        ro, util::Subprocess::Output::kToFile, gate_log));
    gate_port_ = wait_ready(*gate_, "s3gate", gate_log, [&] {
        const std::string text = slurp(port_file);  // written atomically: whole or absent
        return text.empty() ? 0 : std::stoi(text);
    });
}

S3Server::~S3Server() {
    // The gate first, so that nothing is forwarded to a dying s3rver.
    if (gate_)
        gate_->terminate(2s);
    if (upstream_)
        upstream_->terminate(2s);
}

std::string S3Server::endpoint() const {
    return fmt::format("http://127.0.0.1:{}", gate_port_);
}

std::string S3Server::direct_endpoint() const {
    return fmt::format("http://127.0.0.1:{}", upstream_port_);
}

nlohmann::json S3Server::control(const std::string& method, const std::string& path,
                                 const std::string& body) const {
    core::HttpRequest req;
    req.method = method;
    req.url = endpoint() + path;
    req.body = body;
    if (!body.empty()) {
        req.headers.emplace_back("Content-Type", "application/json");
    }
    const auto resp = core::http_request(req);
    if (resp.status != 200) {
        throw std::runtime_error(
            fmt::format("s3gate {} {} answered {}: {}", method, path, resp.status, resp.body));
    }
    return nlohmann::json::parse(resp.body);
}

void S3Server::set_faults(const std::string& json_rules) {
    control("POST", "/__gate/faults", json_rules);
}

nlohmann::json S3Server::request_log() const {
    return control("GET", "/__gate/log", "");
}

void S3Server::reset() {
    control("POST", "/__gate/reset", "");
}

std::string S3Server::gate_output() const {
    return slurp(dir_ / "s3gate.log");
}

void S3Server::stop_upstream() {
    if (upstream_)
        upstream_->terminate(2s);
}

}  // namespace mlk::testing
