#include "mlkeeper/alert/syslog_channel.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::alert {

namespace {

struct FacilityName {
    SyslogFacility facility;
    std::string_view name;
    int code;
};

constexpr std::array<FacilityName, 10> kFacilities{{
    {SyslogFacility::kUser, "user", LOG_USER >> 3},
    {SyslogFacility::kDaemon, "daemon", LOG_DAEMON >> 3},
    {SyslogFacility::kLocal0, "local0", LOG_LOCAL0 >> 3},
    {SyslogFacility::kLocal1, "local1", LOG_LOCAL1 >> 3},
    {SyslogFacility::kLocal2, "local2", LOG_LOCAL2 >> 3},
    {SyslogFacility::kLocal3, "local3", LOG_LOCAL3 >> 3},
    {SyslogFacility::kLocal4, "local4", LOG_LOCAL4 >> 3},
    {SyslogFacility::kLocal5, "local5", LOG_LOCAL5 >> 3},
    {SyslogFacility::kLocal6, "local6", LOG_LOCAL6 >> 3},
    {SyslogFacility::kLocal7, "local7", LOG_LOCAL7 >> 3},
}};

constexpr std::size_t kMaxTag = 32;  // RFC 3164 section 4.1.3

class Socket {
  public:
    explicit Socket(int fd) : fd_(fd) {}
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    ~Socket() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    int get() const { return fd_; }

  private:
    int fd_;
};

std::string errno_text(int e) {
    return std::system_category().message(e);
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    return out;
}

// Syslog receivers split on newlines and some choke on other control bytes; UTF-8 (>= 0x80)
// passes through.
void append_flat(std::string& out, std::string_view s) {
    for (char c : s) {
        unsigned char u = static_cast<unsigned char>(c);
        out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
    }
}

// Length of the longest prefix of s that is at most `limit` bytes and does not end inside a
// UTF-8 sequence.
std::size_t utf8_cut(std::string_view s, std::size_t limit) {
    if (s.size() <= limit) {
        return s.size();
    }
    std::size_t cut = limit;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) {
        --cut;
    }
    return cut;
}

std::string this_hostname() {
    std::array<char, 256> buf{};
    if (::gethostname(buf.data(), buf.size() - 1) != 0) {
        return "localhost";
    }
    return buf.data();
}

bool valid_tag(std::string_view tag) {
    if (tag.empty() || tag.size() > kMaxTag) {
        return false;
    }
    for (char c : tag) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == ':' || c == '[' || c == ']') {
            return false;
        }
    }
    return true;
}

ChannelError socket_error(ChannelError::Kind kind, const std::string& what,
                          const std::filesystem::path& path, int e) {
    return ChannelError(kind, what + " syslog socket " + path.string() + ": " + errno_text(e));
}

ChannelError::Kind kind_for(int e) {
    switch (e) {
        case EACCES:
        case EPERM:
        case EPROTOTYPE:  // a stream socket: we only speak datagrams
        case EMSGSIZE:
        case ENOTSOCK:
        case ENAMETOOLONG:
            return ChannelError::Kind::kPermanent;
        default:
            return ChannelError::Kind::kTransient;
    }
}

}  // namespace

std::optional<SyslogFacility> parse_syslog_facility(std::string_view s) {
    const std::string lower = util::to_lower(s);
    for (const auto& f : kFacilities) {
        if (f.name == lower) {
            return f.facility;
        }
    }
    return std::nullopt;
}

std::string_view to_string(SyslogFacility f) {
    for (const auto& entry : kFacilities) {
        if (entry.facility == f) {
            return entry.name;
        }
    }
    return "user";
}

int syslog_facility_code(SyslogFacility f) {
    for (const auto& entry : kFacilities) {
        if (entry.facility == f) {
            return entry.code;
        }
    }
    return LOG_USER >> 3;
}

int syslog_severity(const Alert& a) {
    if (a.state == AlertState::kResolved) {
        return LOG_NOTICE;
    }
    switch (a.severity) {
        case Severity::kInfo:
            return LOG_INFO;
        case Severity::kWarning:
            return LOG_WARNING;
        case Severity::kCritical:
            return LOG_CRIT;
        case Severity::kEmergency:
            return LOG_EMERG;
    }
    return LOG_WARNING;
}

std::string alert_log_line(const Alert& a) {
    std::string line = "[";
    line +=
        a.state == AlertState::kResolved ? std::string("RESOLVED") : upper(to_string(a.severity));
    line += "] ";
    append_flat(line, a.key);
    line += ": ";
    append_flat(line, a.summary);
    if (!a.value.empty() || !a.threshold.empty()) {
        line += " (";
        if (!a.value.empty()) {
            line += "value=";
            append_flat(line, a.value);
        }
        if (!a.threshold.empty()) {
            line += a.value.empty() ? "threshold=" : ", threshold=";
            append_flat(line, a.threshold);
        }
        line += ")";
    }
    return line;
}

std::string syslog_datagram(const Alert& a, const SyslogOptions& opts, std::string_view hostname,
                            pid_t pid) {
    static constexpr std::array<std::string_view, 12> kMonths{
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const int pri = syslog_facility_code(opts.facility) * 8 + syslog_severity(a);

    // %b would follow LC_TIME; RFC 3164 wants the English abbreviations.
    int month = std::stoi(util::format_local(a.time, "%m"));
    std::string out = "<" + std::to_string(pri) + ">";
    out += kMonths.at(static_cast<std::size_t>(month - 1));
    out += util::format_local(a.time, " %e %H:%M:%S ");
    if (opts.header == SyslogHeader::kWithHostname) {
        std::string host(hostname.empty() ? std::string_view("localhost") : hostname);
        for (char& c : host) {
            unsigned char u = static_cast<unsigned char>(c);
            if (u <= 0x20 || u == 0x7f) {
                c = '_';
            }
        }
        out += host;
        out += ' ';
    }
    out += opts.tag;
    out += "[" + std::to_string(pid) + "]: ";

    const std::string line = alert_log_line(a);
    const std::size_t room = kMaxSyslogDatagram > out.size() ? kMaxSyslogDatagram - out.size() : 0;
    out.append(line, 0, utf8_cut(line, room));
    return out;
}

SyslogChannel::SyslogChannel(SyslogOptions opts) : opts_(std::move(opts)) {
    if (!valid_tag(opts_.tag)) {
        throw std::invalid_argument("bad syslog tag '" + opts_.tag +
                                    "': use 1 to 32 printable characters without spaces, ':', "
                                    "'[' or ']'");
    }
    const std::string& path = opts_.socket_path.native();
    if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path) ||
        path.find('\0') != std::string::npos) {
        throw std::invalid_argument("bad syslog socket path '" + path +
                                    "': it must be non-empty and at most 107 bytes");
    }
    if (opts_.send_timeout.count() <= 0) {
        throw std::invalid_argument("syslog send timeout must be positive");
    }
}

void SyslogChannel::send(const Alert& alert) {
    const std::string host = alert.host.empty() ? this_hostname() : alert.host;
    const std::string datagram = syslog_datagram(alert, opts_, host, ::getpid());

    Socket sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) {
        int e = errno;
        throw socket_error(ChannelError::Kind::kTransient, "cannot create a socket for the",
                           opts_.socket_path, e);
    }
    // A receiver that stops reading fills its queue; without a send timeout we would block
    // forever there.
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(opts_.send_timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((opts_.send_timeout.count() % 1000) * 1000);
    if (::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
        int e = errno;
        throw socket_error(ChannelError::Kind::kTransient, "cannot set a send timeout on the",
                           opts_.socket_path, e);
    }

    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string& path = opts_.socket_path.native();
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        int e = errno;
        throw socket_error(kind_for(e), "cannot connect to", opts_.socket_path, e);
    }

    ssize_t n = -1;
    do {
        n = ::send(sock.get(), datagram.data(), datagram.size(), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            throw ChannelError(ChannelError::Kind::kTransient,
                               "syslog socket " + opts_.socket_path.string() + " stayed full for " +
                                   std::to_string(opts_.send_timeout.count()) +
                                   " ms (is the syslog daemon reading?)");
        }
        throw socket_error(kind_for(e), "cannot send to", opts_.socket_path, e);
    }
}

}  // namespace mlk::alert
