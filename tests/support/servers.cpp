#include "support/servers.hpp"

#include "mlkeeper/health/pq_lib.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

namespace mlk::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// Binds a listening socket on an ephemeral loopback port.
int listen_socket(int backlog, int& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "socket");
    auto a = loopback(0);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, backlog) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        int e = errno;
        ::close(fd);
        throw std::system_error(e, std::generic_category(), "bind/listen on 127.0.0.1");
    }
    port = ntohs(a.sin_port);
    return fd;
}

void require_binary(const std::filesystem::path& p) {
    if (::access(p.c_str(), X_OK) != 0) {
        throw ServerUnavailable(p.string() + " is not installed");
    }
}

// Waits for `ready`, failing early when the child exits; throws with its log.
template <class Ready>
void wait_ready(util::Subprocess& proc, const std::string& what, const std::filesystem::path& log,
                std::chrono::milliseconds limit, Ready ready) {
    const auto deadline = SteadyClock::now() + limit;
    while (SteadyClock::now() < deadline) {
        if (ready())
            return;
        if (proc.try_wait()) {
            throw std::runtime_error(what + " exited during startup: " + slurp(log));
        }
        std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error(
        fmt::format("{} not ready within {} ms: {}", what, limit.count(), slurp(log)));
}

}  // namespace

int free_port() {
    int port = 0;
    int fd = listen_socket(1, port);
    ::close(fd);
    return port;
}

bool wait_for_port(int port, std::chrono::milliseconds limit) {
    const auto deadline = SteadyClock::now() + limit;
    while (SteadyClock::now() < deadline) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        auto a = loopback(port);
        bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        if (ok)
            return true;
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

std::string nginx_main_conf(const std::string& prefix, const std::string& http_body) {
    return fmt::format(R"(worker_processes 1;
pid {0}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {0}/body;
    proxy_temp_path {0}/proxy;
    fastcgi_temp_path {0}/fastcgi;
    uwsgi_temp_path {0}/uwsgi;
    scgi_temp_path {0}/scgi;
{1}}}
)",
                       prefix, http_body);
}

NginxServer::NginxServer() {
    require_binary(kBinary);
    port_ = free_port();
    const auto d = dir_.path().string();
    auto conf = dir_.write(
        "nginx.conf",
        fmt::format("daemon off;\nmaster_process on;\nerror_log {}/error.log warn;\n", d) +
            nginx_main_conf(d, fmt::format(R"(    server {{
        listen 127.0.0.1:{0};
        location = /health {{ return 200 "ok\n"; }}
        location = /broken {{ return 500 "broken\n"; }}
        location / {{ return 404; }}
    }}
)",
                                           port_)));
    const auto log = dir_ / "stderr.log";
    proc_.emplace(util::Subprocess::start(
        {kBinary, "-p", d, "-c", conf.string(), "-e", (dir_ / "error.log").string()}, {},
        util::Subprocess::Output::kToFile, log));
    wait_ready(*proc_, "nginx", log, 10s, [&] { return wait_for_port(port_, 50ms); });
}

std::string NginxServer::url(const std::string& path) const {
    return fmt::format("http://127.0.0.1:{}{}", port_, path);
}

RedisServer::RedisServer(std::string password) {
    require_binary(kBinary);
    port_ = free_port();
    std::vector<std::string> argv = {kBinary,
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     dir_.path().string(),
                                     "--daemonize",
                                     "no"};
    if (!password.empty()) {
        argv.insert(argv.end(), {"--requirepass", password});
    }
    const auto log = dir_ / "redis.log";
    proc_.emplace(util::Subprocess::start(argv, {}, util::Subprocess::Output::kToFile, log));
    wait_ready(*proc_, "redis-server", log, 10s, [&] { return wait_for_port(port_, 50ms); });
}

std::filesystem::path PostgresServer::bin_dir() {
    std::error_code ec;
    std::filesystem::path best;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
        auto bin = e.path() / "bin";
        if (std::filesystem::exists(bin / "initdb", ec) &&
            (best.empty() || std::stoi(e.path().filename().string()) >
                                 std::stoi(best.parent_path().filename().string()))) {
            best = bin;
        }
    }
    return best;
}

PostgresServer::PostgresServer() {
    const auto bin = bin_dir();
    if (bin.empty())
        throw ServerUnavailable("no /usr/lib/postgresql/*/bin/initdb");
    require_binary("/usr/bin/setpriv");
    const passwd* pw = ::getpwnam("postgres");
    if (!pw)
        throw ServerUnavailable("no postgres user to run initdb as");
    // initdb refuses root; the cluster belongs to postgres, so the temp dir
    // must be traversable and writable by it.
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::all);
    if (::chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        throw std::system_error(errno, std::generic_category(), "chown " + dir_.path().string());
    }
    const std::vector<std::string> as_postgres = {"/usr/bin/setpriv", "--reuid=postgres",
                                                  "--regid=postgres", "--init-groups",
                                                  "--reset-env",      "--"};
    const auto data = (dir_ / "data").string();
    auto initdb = as_postgres;
    initdb.insert(initdb.end(), {(bin / "initdb").string(), "-D", data, "-A", "trust", "-U",
                                 "postgres", "--no-sync", "-E", "UTF8", "--locale=C"});
    util::RunOptions ro;
    ro.timeout = 60s;
    ro.cwd = dir_.path();
    auto r = util::run_process(initdb, ro);
    if (!r.ok()) {
        throw std::runtime_error("initdb failed: " + r.error + r.err + r.out);
    }
    port_ = free_port();
    auto postgres = as_postgres;
    postgres.insert(postgres.end(),
                    {(bin / "postgres").string(), "-D", data, "-p", std::to_string(port_), "-k",
                     dir_.path().string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                     "-c", "shared_buffers=16MB"});
    const auto log = dir_ / "postgres.log";
    util::RunOptions so;
    so.cwd = dir_.path();
    so.kill_grace = 5000ms;
    proc_.emplace(util::Subprocess::start(postgres, so, util::Subprocess::Output::kToFile, log));
    const std::string conninfo = fmt::format(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2", port_);
    wait_ready(*proc_, "postgres", log, 30s,
               [&] { return mlk::health::pq().ping(conninfo.c_str()) == PQPING_OK; });
}

std::string PostgresServer::uri() const {
    return fmt::format("postgresql://postgres@127.0.0.1:{}/postgres", port_);
}

SilentServer::SilentServer() {
    listen_fd_ = listen_socket(16, port_);
    if (::pipe2(wake_, O_CLOEXEC) != 0) {
        ::close(listen_fd_);
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    thread_ = std::thread([this] {
        std::vector<int> clients;
        for (;;) {
            std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
            for (int c : clients)
                fds.push_back({c, POLLIN, 0});
            if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR)
                break;
            if (fds[1].revents)
                break;
            if (fds[0].revents & POLLIN) {
                int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
                if (c >= 0)
                    clients.push_back(c);
            }
            for (std::size_t i = 2; i < fds.size(); ++i) {
                if (fds[i].revents) {  // drain requests, never answer
                    char buf[4096];
                    if (::recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT) == 0) {
                        ::close(fds[i].fd);
                        std::erase(clients, fds[i].fd);
                    }
                }
            }
        }
        for (int c : clients)
            ::close(c);
    });
}

SilentServer::~SilentServer() {
    (void)::write(wake_[1], "x", 1);
    if (thread_.joinable())
        thread_.join();
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
}

BlackholeServer::BlackholeServer() {
    listen_fd_ = listen_socket(0, port_);
    // Fill the accept queue (backlog 0 still admits one); later SYNs are dropped.
    for (int i = 0; i < 2; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        auto a = loopback(port_);
        (void)::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        fillers_.push_back(fd);
    }
    std::this_thread::sleep_for(50ms);
}

BlackholeServer::~BlackholeServer() {
    for (int fd : fillers_)
        ::close(fd);
    ::close(listen_fd_);
}

}  // namespace mlk::testing
