#include "mlkeeper/health/network.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

namespace mlk::health {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string numeric(const sockaddr* sa, socklen_t len) {
    char host[NI_MAXHOST] = {};
    if (::getnameinfo(sa, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) {
        return {};
    }
    return host;
}

std::vector<std::string> addresses_of(const addrinfo* res) {
    std::vector<std::string> out;
    for (const addrinfo* ai = res; ai; ai = ai->ai_next) {
        auto a = numeric(ai->ai_addr, ai->ai_addrlen);
        if (!a.empty() && std::find(out.begin(), out.end(), a) == out.end()) {
            out.push_back(std::move(a));
        }
    }
    return out;
}

std::string format_ms(milliseconds ms) {
    return ms.count() % 1000 == 0 ? fmt::format("{} s", ms.count() / 1000)
                                  : fmt::format("{} ms", ms.count());
}

int remaining_ms(SteadyClock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = o.release();
    }
    return *this;
}

UniqueFd::~UniqueFd() {
    if (fd_ >= 0)
        ::close(fd_);
}

int UniqueFd::release() noexcept {
    int f = fd_;
    fd_ = -1;
    return f;
}

std::optional<HostPort> parse_host_port(const std::string& text) {
    HostPort hp;
    std::string port;
    if (!text.empty() && text[0] == '[') {
        auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return std::nullopt;
        }
        hp.host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string::npos || text.find(':') != colon) {
            return std::nullopt;
        }
        hp.host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    if (hp.host.empty() || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    hp.port = std::stoi(port);
    if (hp.port < 1 || hp.port > 65535) {
        return std::nullopt;
    }
    return hp;
}

Resolution resolve_host(const std::string& host, milliseconds timeout) {
    Resolution out;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    addrinfo* res = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) {
        out.addresses = addresses_of(res);
        ::freeaddrinfo(res);
        return out;
    }
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        int rc = 0;
        std::vector<std::string> addresses;
    };
    auto st = std::make_shared<State>();
    std::thread([st, host] {
        addrinfo h{};
        h.ai_socktype = SOCK_STREAM;
        h.ai_flags = AI_ADDRCONFIG;
        addrinfo* r = nullptr;
        int rc = ::getaddrinfo(host.c_str(), nullptr, &h, &r);
        std::vector<std::string> addrs;
        if (rc == 0) {
            addrs = addresses_of(r);
            ::freeaddrinfo(r);
        }
        std::lock_guard lock(st->mu);
        st->rc = rc;
        st->addresses = std::move(addrs);
        st->done = true;
        st->cv.notify_all();
    }).detach();
    std::unique_lock lock(st->mu);
    if (!st->cv.wait_for(lock, timeout, [&] { return st->done; })) {
        out.timed_out = true;
        out.error = fmt::format("lookup of {} timed out after {}", host, format_ms(timeout));
        return out;
    }
    if (st->rc != 0) {
        out.error = fmt::format("cannot resolve {}: {}", host, ::gai_strerror(st->rc));
    } else if (st->addresses.empty()) {
        out.error = fmt::format("cannot resolve {}: no addresses", host);
    } else {
        out.addresses = std::move(st->addresses);
    }
    return out;
}

TcpConnection tcp_connect(const std::string& host, int port, milliseconds timeout) {
    const auto start = SteadyClock::now();
    const auto deadline = start + timeout;
    TcpConnection out;
    auto finish = [&](ConnectFailure f, std::string err) {
        out.failure = f;
        out.error = std::move(err);
        out.elapsed = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start);
        return std::move(out);
    };
    auto res = resolve_host(host, timeout);
    if (!res.error.empty()) {
        return finish(res.timed_out ? ConnectFailure::kTimeout : ConnectFailure::kDns, res.error);
    }
    std::string last = "no address";
    ConnectFailure last_kind = ConnectFailure::kOther;
    for (const auto& addr : res.addresses) {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        addrinfo* ai = nullptr;
        const std::string service = std::to_string(port);
        if (::getaddrinfo(addr.c_str(), service.c_str(), &hints, &ai) != 0) {
            continue;
        }
        std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(ai, &::freeaddrinfo);
        UniqueFd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd.valid()) {
            last = fmt::format("socket: {}", std::strerror(errno));
            continue;
        }
        int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
        int err = rc == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
            pollfd p{fd.get(), POLLOUT, 0};
            int pr = 0;
            do {
                pr = ::poll(&p, 1, remaining_ms(deadline));
            } while (pr < 0 && errno == EINTR);
            if (pr == 0) {
                return finish(ConnectFailure::kTimeout,
                              fmt::format("connect to {}:{} timed out after {}", host, port,
                                          format_ms(timeout)));
            }
            socklen_t len = sizeof err;
            ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        }
        if (err == 0) {
            out.fd = std::move(fd);
            return finish(ConnectFailure::kNone, {});
        }
        last = fmt::format("connect to {}:{}: {}", addr, port, std::strerror(err));
        last_kind = err == ECONNREFUSED ? ConnectFailure::kRefused : ConnectFailure::kOther;
        if (remaining_ms(deadline) == 0) {
            break;
        }
    }
    return finish(last_kind, last);
}

std::string exchange(int fd, const std::string& data, SteadyClock::time_point deadline,
                     bool (*done)(const std::string&), std::string& error) {
    std::size_t sent = 0;
    std::string got;
    while (sent < data.size()) {
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, remaining_ms(deadline)) <= 0) {
            error = "timed out sending";
            return got;
        }
        ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            error = fmt::format("send: {}", std::strerror(errno));
            return got;
        }
        sent += static_cast<std::size_t>(n);
    }
    char buf[4096];
    while (!done(got)) {
        pollfd p{fd, POLLIN, 0};
        int pr = ::poll(&p, 1, remaining_ms(deadline));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            error = "timed out waiting for a reply";
            return got;
        }
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            error = fmt::format("recv: {}", std::strerror(errno));
            return got;
        }
        if (n == 0) {
            error = "connection closed by the server";
            return got;
        }
        got.append(buf, static_cast<std::size_t>(n));
        if (got.size() > (1u << 20)) {
            error = "reply too large";
            return got;
        }
    }
    return got;
}

CheckResult check_default_route(const HealthEnv& env) {
    CheckResult r;
    r.check = "Default route";
    r.key = "default_route";
    r.category = "network";
    std::vector<std::string> found;
    bool readable = false;
    if (std::ifstream in(env.proc_root / "net/route"); in) {
        readable = true;
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            std::string iface, dest, gw, flags, refcnt, use, metric, mask;
            if (ls >> iface >> dest >> gw >> flags >> refcnt >> use >> metric >> mask &&
                dest == "00000000" && mask == "00000000" &&
                (std::stoul(flags, nullptr, 16) & 0x1) != 0) {
                found.push_back("IPv4 via " + iface);
                break;
            }
        }
    }
    if (std::ifstream in(env.proc_root / "net/ipv6_route"); in) {
        readable = true;
        std::string dest, dlen, src, slen, next, metric, ref, use, flags, iface;
        while (in >> dest >> dlen >> src >> slen >> next >> metric >> ref >> use >> flags >>
               iface) {
            unsigned long f = std::stoul(flags, nullptr, 16);
            // RTF_UP set, RTF_REJECT (0x200) clear: the ::/0 on lo is the unreachable route.
            if (dest == std::string(32, '0') && dlen == "00" && (f & 0x1) && !(f & 0x200)) {
                found.push_back("IPv6 via " + iface);
                break;
            }
        }
    }
    if (!readable) {
        return error_result("Default route", "default_route", "network",
                            "cannot read " + (env.proc_root / "net/route").string());
    }
    r.value = found.empty() ? 0 : 1;
    if (found.empty()) {
        r.status = Status::kFail;
        r.message = "Default route: none (no IPv4 or IPv6 default route is up)";
    } else {
        r.message = "Default route: " + found.front() + (found.size() > 1 ? ", " + found[1] : "");
    }
    return r;
}

std::vector<CheckResult> check_dns(const std::vector<std::string>& names, milliseconds timeout) {
    std::vector<std::future<CheckResult>> jobs;
    for (const auto& name : names) {
        jobs.push_back(std::async(std::launch::async, [name, timeout] {
            const auto start = SteadyClock::now();
            auto res = resolve_host(name, timeout);
            const double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
            CheckResult r;
            r.check = "DNS " + name;
            r.key = "dns_" + name;
            r.category = "network";
            r.value = secs;
            r.unit = "s";
            r.metrics.push_back({"dns_lookup_seconds",
                                 {{"name", name}},
                                 secs,
                                 "Time the lookup took (up to the timeout)"});
            if (res.error.empty()) {
                r.message =
                    fmt::format("DNS {}: {} ({:.0f} ms)", name, res.addresses.front(), secs * 1000);
            } else {
                r.status = Status::kFail;
                r.message = "DNS " + name + ": " + res.error;
            }
            return r;
        }));
    }
    std::vector<CheckResult> out;
    for (auto& j : jobs)
        out.push_back(j.get());
    return out;
}

std::vector<CheckResult> check_tcp_targets(const std::vector<std::string>& targets,
                                           milliseconds timeout) {
    std::vector<std::future<CheckResult>> jobs;
    for (const auto& t : targets) {
        jobs.push_back(std::async(std::launch::async, [t, timeout] {
            CheckResult r;
            r.check = "TCP " + t;
            r.key = "tcp_" + t;
            r.category = "network";
            auto hp = parse_host_port(t);
            if (!hp) {
                return error_result(r.check, r.key, r.category,
                                    "bad target \"" + t + "\": expected host:port");
            }
            auto c = tcp_connect(hp->host, hp->port, timeout);
            const double secs = std::chrono::duration<double>(c.elapsed).count();
            r.value = secs;
            r.unit = "s";
            r.status = c.ok() ? Status::kPass : Status::kFail;
            r.message = c.ok() ? fmt::format("TCP {}: connected in {:.0f} ms", t, secs * 1000)
                               : "TCP " + t + ": " + c.error;
            return r;
        }));
    }
    std::vector<CheckResult> out;
    for (auto& j : jobs)
        out.push_back(j.get());
    return out;
}

}  // namespace mlk::health
