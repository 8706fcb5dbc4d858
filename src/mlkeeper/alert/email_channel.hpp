// Email alert channel: renders an alert as an RFC 5322 message and submits it over SMTP
// (libcurl) or through the local sendmail(8). Thread safety: send() may be called from several
// threads at once (each call uses its own curl handle or child process); options are immutable.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "mlkeeper/alert/alert.hpp"
#include "mlkeeper/alert/channel.hpp"

namespace mlk::alert {

// "mlkeeper@<hostname>" for this machine ("mlkeeper@localhost" if the name cannot be read).
std::string default_from_address();

struct EmailOptions {
    // "smtp://host:port" or "smtps://host:port"; empty: submit through `sendmail`.
    std::string url;
    // Addresses, "ops@example.com" or "Ops Team <ops@example.com>".
    std::vector<std::string> to;
    std::string from = default_from_address();
    std::string username, password;  // optional AUTH; the password never appears in errors
    // kStartTls: upgrade if the server offers STARTTLS; kRequired: fail unless the session is
    // encrypted. smtps:// URLs are encrypted from the first byte whatever this says.
    enum class Tls { kNone, kStartTls, kRequired } tls = Tls::kStartTls;
    // Optional, e.g. "{severity} {host}: {summary}"; placeholders {severity} (CRITICAL, or
    // RESOLVED for a resolved alert), {host}, {summary}, {key}, {check}, {state}. Empty: the
    // shared subject_line().
    std::string subject_template;
    std::filesystem::path sendmail = "/usr/sbin/sendmail";
    std::chrono::milliseconds timeout{10000};  // whole submission, connect included
    std::string ca_file;                       // optional PEM bundle for TLS verification
};

class EmailChannel : public Channel {
  public:
    // Throws std::invalid_argument for options that can never work: no recipient, a URL that
    // is not smtp:// or smtps://, CR/LF in an address, an unknown template placeholder, a
    // non-positive timeout.
    explicit EmailChannel(EmailOptions options);

    std::string name() const override { return "email"; }

    // Throws ChannelError: kTransient for connection failures, timeouts, 4xx replies, a killed
    // or EX_TEMPFAIL sendmail; kPermanent for 5xx replies, failed AUTH, TLS refused, a missing
    // sendmail and other exits.
    void send(const Alert& alert) override;

  private:
    EmailOptions options_;
};

// The full message as submitted over SMTP: Date, From, To, Subject (RFC 2047 encoded-word when
// not plain ASCII), Message-ID, MIME-Version, Content-Type: text/plain; charset=utf-8,
// Content-Transfer-Encoding: 8bit, Auto-Submitted, X-Mlkeeper-* headers, then text_body().
// CRLF line endings, no line over 998 octets, ending in CRLF. Lines starting with '.' are left
// as they are: the transport escapes them (libcurl dot-stuffs SMTP DATA; sendmail runs with -i).
std::string build_message(const EmailOptions& options, const Alert& alert);

}  // namespace mlk::alert
