#include "mlkeeper/homelab/proxy_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace mlk::homelab {

ssize_t recv_some(int fd, char* buf, std::size_t n) {
    for (;;) {
        const ssize_t r = ::recv(fd, buf, n, 0);
        if (r >= 0 || errno != EINTR) {
            if (r < 0 && errno == EWOULDBLOCK) {
                errno = EAGAIN;
            }
            return r;
        }
    }
}

bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t r = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (r > 0) {
            data.remove_prefix(static_cast<std::size_t>(r));
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    return true;
}

void tune_socket(int fd, std::chrono::milliseconds recv_timeout,
                 std::chrono::milliseconds send_timeout) {
    const auto tv = [](std::chrono::milliseconds d) {
        timeval t{};
        t.tv_sec = static_cast<time_t>(d.count() / 1000);
        t.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
        return t;
    };
    const timeval r = tv(recv_timeout);
    const timeval s = tv(send_timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof r);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof s);
    set_nodelay(fd);
}

void set_nodelay(int fd) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

UniqueFd begin_connect_loopback(int port, int& err) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        err = errno;
        return {};
    }
    set_nodelay(fd.get());
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    err = 0;
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        err = errno;
        if (err != EINPROGRESS) {
            return {};
        }
    }
    return fd;
}

bool still_open(int fd) {
    char c;
    const ssize_t r = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

UniqueFd connect_loopback(int port, std::chrono::milliseconds connect_timeout,
                          std::chrono::milliseconds io_timeout, std::string& error) {
    int started = 0;
    UniqueFd fd = begin_connect_loopback(port, started);
    if (!fd) {
        error = std::strerror(started);
        return {};
    }
    if (started == EINPROGRESS) {
        pollfd p{fd.get(), POLLOUT, 0};
        int n;
        do {
            n = ::poll(&p, 1,
                       static_cast<int>(std::min<long long>(connect_timeout.count(), INT_MAX)));
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
            error = "timed out";
            return {};
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (n < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
            error = std::strerror(errno);
            return {};
        }
        if (err != 0) {
            error = std::strerror(err);
            return {};
        }
    }
    const int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    tune_socket(fd.get(), io_timeout, io_timeout);
    // Lower-case first letter: it follows "connect: " in messages.
    return fd;
}

UniqueFd listen_tcp(const std::string& address, int port, int backlog, int& bound_port) {
    const std::string where =
        "proxy listener " +
        (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" +
        std::to_string(port);
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family = AF_INET;
    if (address.find(':') != std::string::npos) {
        family = AF_INET6;
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (::inet_pton(AF_INET6, address.c_str(), &a->sin6_addr) != 1) {
            throw std::system_error(EINVAL, std::generic_category(), where);
        }
        len = sizeof(sockaddr_in6);
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(static_cast<std::uint16_t>(port));
        if (::inet_pton(AF_INET, address.c_str(), &a->sin_addr) != 1) {
            throw std::system_error(EINVAL, std::generic_category(), where);
        }
        len = sizeof(sockaddr_in);
    }
    UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        throw std::system_error(errno, std::generic_category(), where);
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0 ||
        ::listen(fd.get(), backlog) != 0) {
        throw std::system_error(errno, std::generic_category(), where);
    }
    sockaddr_storage got{};
    socklen_t got_len = sizeof got;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&got), &got_len) != 0) {
        throw std::system_error(errno, std::generic_category(), where);
    }
    bound_port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
    return fd;
}

std::pair<std::string, int> parse_listen_address(std::string_view text) {
    std::string host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find("]:");
        if (close == std::string_view::npos) {
            throw std::invalid_argument("expected [IPv6]:PORT, got \"" + std::string(text) + "\"");
        }
        host = std::string(text.substr(1, close - 1));
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos || text.find(':') != colon) {
            throw std::invalid_argument("expected HOST:PORT, got \"" + std::string(text) + "\"");
        }
        host = std::string(text.substr(0, colon));
        port = text.substr(colon + 1);
    }
    if (host == "localhost") {
        host = "127.0.0.1";
    }
    unsigned char probe[sizeof(in6_addr)];
    const bool v6 = host.find(':') != std::string::npos;
    if (::inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), probe) != 1) {
        throw std::invalid_argument("\"" + host + "\" is not an IP address (or localhost)");
    }
    int p = 0;
    if (port.empty() || port.size() > 5) {
        p = -1;
    }
    for (const char c : port) {
        if (c < '0' || c > '9') {
            p = -1;
            break;
        }
        p = p * 10 + (c - '0');
    }
    if (p < 1 || p > 65535) {
        throw std::invalid_argument("port \"" + std::string(port) + "\" is not 1-65535");
    }
    return {host, p};
}

std::string_view reason_phrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 308:
            return "Permanent Redirect";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 408:
            return "Request Timeout";
        case 431:
            return "Request Header Fields Too Large";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Unknown";
    }
}

UniqueFd UpstreamPool::take(std::string_view model, int port) {
    std::vector<UniqueFd> stale;  // closed outside the lock
    UniqueFd got;
    {
        std::lock_guard lk(mu_);
        const auto it = idle_.find(model);
        if (it == idle_.end()) {
            return {};
        }
        auto& v = it->second;
        while (!v.empty()) {
            Idle i = std::move(v.back());
            v.pop_back();
            if (i.port == port && still_open(i.fd.get())) {
                got = std::move(i.fd);
                break;
            }
            stale.push_back(std::move(i.fd));
        }
    }
    return got;
}

void UpstreamPool::put(const std::string& model, int port, UniqueFd fd) {
    if (!fd || per_model_ == 0) {
        return;
    }
    std::lock_guard lk(mu_);
    auto& v = idle_[model];
    if (v.size() < per_model_) {
        v.push_back({port, std::move(fd)});
    }
}

std::size_t UpstreamPool::idle() const {
    std::lock_guard lk(mu_);
    std::size_t n = 0;
    for (const auto& [name, v] : idle_) {
        n += v.size();
    }
    return n;
}

}  // namespace mlk::homelab
