// Alert channel that writes RFC 3164 datagrams straight to the local syslog socket (/dev/log),
// without syslog(3): openlog() state is process-global and its socket path is fixed, so two
// channels with different tags could not coexist and tests could not point it elsewhere.
// Thread safety: SyslogChannel is immutable after construction; send() opens its own socket per
// call, so concurrent sends are safe. The free functions are pure.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "mlkeeper/alert/alert.hpp"
#include "mlkeeper/alert/channel.hpp"

namespace mlk::alert {

enum class SyslogFacility {
    kUser,
    kDaemon,
    kLocal0,
    kLocal1,
    kLocal2,
    kLocal3,
    kLocal4,
    kLocal5,
    kLocal6,
    kLocal7
};

// "user", "daemon", "local0".."local7", case-insensitively; nullopt for anything else.
std::optional<SyslogFacility> parse_syslog_facility(std::string_view s);
std::string_view to_string(SyslogFacility f);
int syslog_facility_code(SyslogFacility f);  // LOG_USER >> 3 == 1, daemon 3, local0..7 16..23

// LOG_INFO, LOG_WARNING, LOG_CRIT, LOG_EMERG by severity; LOG_NOTICE for a resolved alert.
int syslog_severity(const Alert& a);

// Whether the header carries a HOSTNAME. glibc's syslog(3) leaves it out on the local socket,
// and journald and rsyslog's imuxsock parse local datagrams that way: with a hostname present
// they would take the hostname for the tag. kWithHostname is for receivers that expect the
// network form of RFC 3164.
enum class SyslogHeader { kLocal, kWithHostname };

struct SyslogOptions {
    std::filesystem::path socket_path = "/dev/log";
    SyslogFacility facility = SyslogFacility::kUser;
    std::string tag = "mlkeeper";  // no whitespace, ':' or brackets; at most 32 bytes
    SyslogHeader header = SyslogHeader::kLocal;
    // How long send() may block when the receiver's queue is full.
    std::chrono::milliseconds send_timeout{2000};
};

// "[CRITICAL] gpu0_temp: GPU 0 temperature 87°C exceeds 85°C (value=87°C, threshold=85°C)";
// "[RESOLVED] ..." for a resolved alert. Control characters (newlines) become spaces, since
// syslog receivers treat one datagram as one line. Shared with the journal channel's MESSAGE.
std::string alert_log_line(const Alert& a);

// The whole datagram: "<PRI>Mmm dd hh:mm:ss [host ]tag[pid]: line", with English month names
// whatever the locale, local time from a.time, and at most kMaxSyslogDatagram bytes (the line is
// cut at a UTF-8 character boundary). `hostname` is used only with SyslogHeader::kWithHostname
// (a.host if set, else this machine's name); spaces in it become '_'.
inline constexpr std::size_t kMaxSyslogDatagram = 8192;
std::string syslog_datagram(const Alert& a, const SyslogOptions& opts, std::string_view hostname,
                            pid_t pid);

class SyslogChannel : public Channel {
  public:
    // Throws std::invalid_argument for a bad tag, an empty or too long socket path (a unix socket
    // address holds at most 107 bytes) or a non-positive send timeout.
    explicit SyslogChannel(SyslogOptions opts);

    std::string name() const override { return "syslog"; }

    // Throws ChannelError: transient when the socket is missing, refused (no daemon bound to it)
    // or stays full past send_timeout; permanent for permission errors, a stream socket, or a
    // datagram the receiver rejects as too large. The message names the path and the errno text.
    void send(const Alert& alert) override;

    const SyslogOptions& options() const { return opts_; }

  private:
    SyslogOptions opts_;
};

}  // namespace mlk::alert
