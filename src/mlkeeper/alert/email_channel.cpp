// Email channel: RFC 5322 message assembly, SMTP submission through libcurl and the sendmail(8)
// fallback. Safe from several threads: every send() owns its curl handle or child process.
#include "mlkeeper/alert/email_channel.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/core/curl_lib.hpp"
#include "mlkeeper/util/process.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::alert {
namespace {

using Kind = ChannelError::Kind;

// RFC 5322 caps a line at 998 octets plus CRLF; RFC 2047 caps an encoded-word at 75 characters.
constexpr std::size_t kMaxLine = 998;
constexpr std::size_t kFoldAt = 78;
// 39 bytes -> 52 base64 characters -> a 64-character encoded-word, which still fits on the first
// line after "Subject: ".
constexpr std::size_t kEncodedChunk = 39;

constexpr std::array<std::string_view, 6> kPlaceholders = {"severity", "host",  "summary",
                                                           "key",      "check", "state"};

std::string base64(std::string_view in) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v = (std::uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                                (std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) |
                                std::uint32_t{static_cast<unsigned char>(in[i + 2])};
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    const std::size_t rest = in.size() - i;
    if (rest > 0) {
        std::uint32_t v = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
        if (rest == 2) {
            v |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
        }
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

bool has_line_break(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// Header values are single lines: CR/LF (header injection) and other controls become spaces.
std::string one_line(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? ' ' : c;
    }
    return out;
}

bool needs_encoding(std::string_view s) {
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f) {
            return true;
        }
    }
    // Literal "=?" would be taken for the start of an encoded-word by the reader.
    return s.find("=?") != std::string_view::npos;
}

// RFC 2047 "B" encoded-words, split on UTF-8 character boundaries and folded onto continuation
// lines; the whitespace between adjacent encoded-words is dropped when decoding.
std::string encoded_words(std::string_view text) {
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = std::min(start + kEncodedChunk, text.size());
        while (end < text.size() && end > start + 1 &&
               (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
            --end;
        }
        if (!out.empty()) {
            out += "\r\n ";
        }
        out += "=?UTF-8?B?";
        out += base64(text.substr(start, end - start));
        out += "?=";
        start = end;
    }
    return out;
}

// Unstructured header text (RFC 5322 section 2.2.3): plain ASCII is folded at spaces to keep
// lines near 78 characters; anything else becomes encoded-words. `used` is the width already
// taken on the first line ("Subject: ").
std::string header_text(std::string_view raw, std::size_t used) {
    const std::string text = one_line(raw);
    if (needs_encoding(text)) {
        return encoded_words(text);
    }
    const std::vector<std::string> words = util::split(text, ' ');
    std::string out;
    std::size_t line_len = used;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string& word = words[i];
        if (word.size() > kMaxLine - 2) {
            return encoded_words(text);  // an unbreakable run longer than a line allows
        }
        if (i > 0) {
            // Folding puts CRLF before a space, so unfolding restores the text exactly.
            if (line_len + 1 + word.size() > kFoldAt && !word.empty() && line_len > 1) {
                out += "\r\n";
                line_len = 0;
            }
            out += ' ';
            ++line_len;
        }
        out += word;
        line_len += word.size();
    }
    return out;
}

// "Ops <ops@example.com>" -> "ops@example.com"; a bare address is returned trimmed.
std::string bare_address(std::string_view addr) {
    const std::size_t open = addr.rfind('<');
    if (open != std::string_view::npos) {
        const std::size_t close = addr.find('>', open);
        if (close != std::string_view::npos) {
            return std::string(util::trim(addr.substr(open + 1, close - open - 1)));
        }
    }
    return std::string(util::trim(addr));
}

// An address for a header: a non-ASCII display name is encoded, everything else kept as typed.
std::string header_address(std::string_view raw) {
    const std::string addr = one_line(util::trim(raw));
    const std::size_t open = addr.rfind('<');
    if (open == std::string::npos || open == 0) {
        return addr;
    }
    const std::string_view name = util::trim(std::string_view(addr).substr(0, open));
    if (!needs_encoding(name)) {
        return addr;
    }
    return encoded_words(name) + " " + addr.substr(open);
}

std::string hostname() {
    std::array<char, 256> buf{};
    if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') {
        return "localhost";
    }
    return std::string(buf.data());
}

// RFC 5322 section 3.3 date with English names whatever the process locale says.
std::string rfc5322_date(std::chrono::system_clock::time_point tp) {
    static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                         "Thu", "Fri", "Sat"};
    static constexpr std::array<const char*, 12> kMonths = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::time_t t =
        std::chrono::system_clock::to_time_t(std::chrono::floor<std::chrono::seconds>(tp));
    std::tm tm{};
    if (::localtime_r(&t, &tm) == nullptr) {
        // An alert stamped outside the calendar still has to go out; say when it was sent.
        t = std::time(nullptr);
        ::localtime_r(&t, &tm);
    }
    const long off = tm.tm_gmtoff;
    const long abs_off = off < 0 ? -off : off;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
                  kDays[static_cast<std::size_t>(tm.tm_wday) % 7], tm.tm_mday,
                  kMonths[static_cast<std::size_t>(tm.tm_mon) % 12], tm.tm_year + 1900, tm.tm_hour,
                  tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', abs_off / 3600, (abs_off % 3600) / 60);
    return buf;
}

std::string message_id(const EmailOptions& options) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const std::string from = bare_address(options.from);
    const std::size_t at = from.rfind('@');
    std::string domain = at == std::string::npos ? std::string() : from.substr(at + 1);
    const bool domain_ok = !domain.empty() && std::all_of(domain.begin(), domain.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '-';
    });
    if (!domain_ok) {
        domain = hostname();
    }
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%lld.%016llx", static_cast<long long>(now_ms),
                  static_cast<unsigned long long>(rng()));
    return "<mlkeeper." + std::string(buf) + "@" + domain + ">";
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

// Calls `on_placeholder(name)` for each "{name}" and `on_text(text)` for the text between.
template <typename OnText, typename OnPlaceholder>
void scan_template(std::string_view tmpl, OnText on_text, OnPlaceholder on_placeholder) {
    std::size_t pos = 0;
    while (pos < tmpl.size()) {
        const std::size_t open = tmpl.find('{', pos);
        const std::size_t close = open == std::string_view::npos ? open : tmpl.find('}', open + 1);
        if (close == std::string_view::npos) {
            on_text(tmpl.substr(pos));
            return;
        }
        on_text(tmpl.substr(pos, open - pos));
        on_placeholder(tmpl.substr(open + 1, close - open - 1));
        pos = close + 1;
    }
}

std::string render_subject(const EmailOptions& options, const Alert& a) {
    if (options.subject_template.empty()) {
        return subject_line(a);
    }
    const bool resolved = a.state == AlertState::kResolved;
    std::string out;
    scan_template(
        options.subject_template, [&](std::string_view text) { out += text; },
        [&](std::string_view name) {
            if (name == "severity") {
                out += resolved ? "RESOLVED" : upper(to_string(a.severity));
            } else if (name == "host") {
                out += a.host;
            } else if (name == "summary") {
                out += a.summary;
            } else if (name == "key") {
                out += a.key;
            } else if (name == "check") {
                out += a.check;
            } else if (name == "state") {
                out += resolved ? "resolved" : "firing";
            } else {
                out += '{';
                out += name;
                out += '}';
            }
        });
    return out;
}

// Any mix of LF, CRLF and lone CR becomes CRLF; a line over 998 octets is broken on a UTF-8
// character boundary; the result ends with CRLF.
std::string crlf_body(std::string_view body) {
    std::string out;
    out.reserve(body.size() + body.size() / 16 + 2);
    std::size_t pos = 0;
    while (pos < body.size()) {
        std::size_t eol = body.find_first_of("\r\n", pos);
        const std::size_t end = eol == std::string_view::npos ? body.size() : eol;
        std::string_view line = body.substr(pos, end - pos);
        while (line.size() > kMaxLine) {
            std::size_t cut = kMaxLine;
            while (cut > 1 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) {
                --cut;
            }
            out += line.substr(0, cut);
            out += "\r\n";
            line.remove_prefix(cut);
        }
        out += line;
        out += "\r\n";
        if (eol == std::string_view::npos) {
            break;
        }
        pos = eol + (body[eol] == '\r' && eol + 1 < body.size() && body[eol + 1] == '\n' ? 2 : 1);
    }
    return out;
}

std::string to_lf(std::string_view crlf) {
    std::string out;
    out.reserve(crlf.size());
    for (std::size_t i = 0; i < crlf.size(); ++i) {
        if (crlf[i] == '\r' && i + 1 < crlf.size() && crlf[i + 1] == '\n') {
            continue;
        }
        out += crlf[i];
    }
    return out;
}

// Error text must never carry the password, even if a server or library echoes it back.
std::string redact(std::string text, const EmailOptions& options) {
    const std::string& secret = options.password;
    if (secret.empty()) {
        return text;
    }
    for (std::size_t pos = text.find(secret); pos != std::string::npos;
         pos = text.find(secret, pos + 3)) {
        text.replace(pos, secret.size(), "***");
    }
    return text;
}

// The URL as shown in errors: credentials embedded as user:password@ are dropped.
std::string display_url(const std::string& url) {
    const std::size_t scheme_end = url.find("://");
    if (scheme_end == std::string::npos) {
        return url;
    }
    const std::size_t authority = scheme_end + 3;
    const std::size_t path = url.find('/', authority);
    const std::size_t at = url.rfind('@', path == std::string::npos ? url.size() : path);
    if (at == std::string::npos || at < authority) {
        return url;
    }
    return url.substr(0, authority) + url.substr(at + 1);
}

// ---- SMTP through libcurl ----

struct Upload {
    std::string_view data;
    std::size_t pos = 0;
};

std::size_t read_upload(char* buffer, std::size_t size, std::size_t nitems, void* userp) {
    auto* up = static_cast<Upload*>(userp);
    const std::size_t n = std::min(size * nitems, up->data.size() - up->pos);
    std::memcpy(buffer, up->data.data() + up->pos, n);
    up->pos += n;
    return n;
}

// Keeps the server's last 4xx/5xx reply line ("550 5.1.1 No such user here") so the error can
// quote it: curl reports only the numeric code, and its QUIT afterwards brings a harmless 221.
int capture_reply(CURL* /*handle*/, curl_infotype type, char* data, std::size_t size, void* userp) {
    if (type != CURLINFO_HEADER_IN) {
        return 0;
    }
    for (const std::string& raw : util::split(std::string_view(data, size), '\n')) {
        const std::string_view line = util::trim(raw);
        if (line.size() >= 3 && (line[0] == '4' || line[0] == '5') && line[1] >= '0' &&
            line[1] <= '9' && line[2] >= '0' && line[2] <= '9') {
            *static_cast<std::string*>(userp) = std::string(line.substr(0, 300));
        }
    }
    return 0;
}

Kind classify(CURLcode rc, long reply) {
    if (reply >= 400 && reply < 500) {
        return Kind::kTransient;
    }
    if (reply >= 500 && reply < 600) {
        return Kind::kPermanent;
    }
    switch (rc) {
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
        case CURLE_LOGIN_DENIED:
        case CURLE_REMOTE_ACCESS_DENIED:
        case CURLE_AUTH_ERROR:
        case CURLE_USE_SSL_FAILED:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_BAD_FUNCTION_ARGUMENT:
        case CURLE_UNKNOWN_OPTION:
        case CURLE_FUNCTION_NOT_FOUND:
            return Kind::kPermanent;
        default:
            return Kind::kTransient;  // connect failures, timeouts, resets, TLS handshakes
    }
}

class SmtpTransfer {
  public:
    explicit SmtpTransfer(const EmailOptions& options) : options_(options) {}

    void send(std::string_view message) {
        try {
            (void)core::curl();
        } catch (const std::exception& e) {
            fail(Kind::kPermanent, e.what());
        }
        core::CurlEasy easy(core::curl().easy_init());
        if (!easy) {
            fail(Kind::kTransient, "curl_easy_init failed");
        }
        h_ = easy.get();

        core::CurlSlist rcpt;
        for (const std::string& to : options_.to) {
            curl_slist* next =
                core::curl().slist_append(rcpt.get(), ("<" + bare_address(to) + ">").c_str());
            if (next == nullptr) {
                fail(Kind::kTransient, "out of memory building the recipient list");
            }
            // curl_slist_append returns the same list head it was given (or a new one
            // when it was empty): keep ownership of exactly one head.
            (void)rcpt.release();
            rcpt.reset(next);
        }

        Upload upload{message, 0};
        errbuf_.fill('\0');
        const std::string url = url_with_ehlo_domain();
        const std::string mail_from = "<" + bare_address(options_.from) + ">";
        set(CURLOPT_ERRORBUFFER, errbuf_.data());
        set(CURLOPT_URL, url.c_str());
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85.0
        set(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#else
        set(CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
        set(CURLOPT_NOSIGNAL, 1L);
        set(CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
        set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.timeout.count()));
        set(CURLOPT_MAIL_FROM, mail_from.c_str());
        set(CURLOPT_MAIL_RCPT, rcpt.get());
        set(CURLOPT_UPLOAD, 1L);
        set(CURLOPT_READFUNCTION, &read_upload);
        set(CURLOPT_READDATA, &upload);
        set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
        set(CURLOPT_DEBUGFUNCTION, &capture_reply);
        set(CURLOPT_DEBUGDATA, &last_reply_);
        set(CURLOPT_VERBOSE, 1L);  // needed for the debug callback; nothing is printed
        switch (options_.tls) {
            case EmailOptions::Tls::kNone:
                set(CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_NONE));
                break;
            case EmailOptions::Tls::kStartTls:
                set(CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));
                break;
            case EmailOptions::Tls::kRequired:
                set(CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
                break;
        }
        if (!options_.username.empty()) {
            set(CURLOPT_USERNAME, options_.username.c_str());
            set(CURLOPT_PASSWORD, options_.password.c_str());
        }
        if (!options_.ca_file.empty()) {
            set(CURLOPT_CAINFO, options_.ca_file.c_str());
        }

        const CURLcode rc = core::curl().easy_perform(h_);
        if (rc != CURLE_OK) {
            long reply = 0;
            core::curl().easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &reply);
            long os_errno = 0;
            core::curl().easy_getinfo(h_, CURLINFO_OS_ERRNO, &os_errno);
            std::string msg = core::curl().easy_strerror(rc);
            if (os_errno != 0) {
                msg += " (" + util::to_lower(std::strerror(static_cast<int>(os_errno))) + ")";
            }
            // curl's detail often repeats the summary at its end; keep only what it adds.
            std::string_view detail = util::trim(errbuf_.data());
            const std::string_view summary = core::curl().easy_strerror(rc);
            if (detail.size() >= summary.size() &&
                detail.substr(detail.size() - summary.size()) == summary) {
                detail.remove_suffix(summary.size());
                detail = util::trim(detail);
                while (!detail.empty() && (detail.back() == ':' || detail.back() == ' ')) {
                    detail.remove_suffix(1);
                }
            }
            if (!detail.empty()) {
                msg += ": ";
                msg += detail;
            }
            if (reply >= 400 && last_reply_.compare(0, 3, std::to_string(reply)) == 0) {
                msg += "; server said \"" + last_reply_ + "\"";
            } else if (reply >= 400) {
                msg += "; server replied " + std::to_string(reply);
            }
            fail(classify(rc, reply), msg);
        }
    }

  private:
    template <typename T>
    void set(CURLoption option, T value) {
        const CURLcode rc = core::curl().easy_setopt(h_, option, value);
        if (rc != CURLE_OK) {
            fail(Kind::kPermanent, std::string("cannot configure libcurl (option ") +
                                       std::to_string(static_cast<int>(option)) +
                                       "): " + core::curl().easy_strerror(rc));
        }
    }

    [[noreturn]] void fail(Kind kind, const std::string& what) const {
        throw ChannelError(kind, redact(display_url(options_.url) + ": " + what, options_));
    }

    // curl takes the URL path as the EHLO/HELO name and says "localhost" without one, which
    // some servers refuse; give it this machine's name.
    std::string url_with_ehlo_domain() const {
        const std::size_t scheme_end = options_.url.find("://");
        if (scheme_end == std::string::npos ||
            options_.url.find('/', scheme_end + 3) != std::string::npos) {
            return options_.url;
        }
        return options_.url + "/" + hostname();
    }

    const EmailOptions& options_;
    CURL* h_ = nullptr;
    std::array<char, CURL_ERROR_SIZE + 1> errbuf_{};
    std::string last_reply_;
};

// ---- sendmail(8) ----

// sysexits(3) codes a sendmail uses for conditions that may clear up on a retry.
bool transient_exit(int code) {
    return code == 75 /* EX_TEMPFAIL */ || code == 71 /* EX_OSERR */ || code == 74 /* EX_IOERR */;
}

std::string one_line_output(std::string_view text) {
    std::string out;
    for (const std::string& line : util::split(util::trim(text), '\n')) {
        const std::string_view t = util::trim(line);
        if (t.empty()) {
            continue;
        }
        if (!out.empty()) {
            out += "; ";
        }
        out += t;
    }
    return out;
}

void send_with_sendmail(const EmailOptions& options, std::string_view message) {
    util::RunOptions run;
    run.timeout = options.timeout;
    run.kill_grace = std::chrono::milliseconds(1000);
    run.output_cap = 64 * 1024;
    // The local submission interface takes native line endings; CRLF is the SMTP wire form.
    run.stdin_data = to_lf(message);
    const std::string program = options.sendmail.string();
    const util::RunResult r = util::run_process({program, "-t", "-i"}, run);
    const std::string who = "sendmail " + program;
    switch (r.kind) {
        case util::ExitKind::kExited: {
            if (r.exit_code == 0) {
                return;
            }
            std::string output = one_line_output(r.err);
            if (output.empty()) {
                output = one_line_output(r.out);
            }
            if (output.empty()) {
                output = "(no output)";
            }
            throw ChannelError(
                transient_exit(r.exit_code) ? Kind::kTransient : Kind::kPermanent,
                who + " exited with status " + std::to_string(r.exit_code) + ": " + output);
        }
        case util::ExitKind::kSignaled:
            throw ChannelError(Kind::kTransient,
                               who + " was killed by signal " + std::to_string(r.signal));
        case util::ExitKind::kTimedOut:
            throw ChannelError(
                Kind::kTransient,
                who + " timed out after " + std::to_string(options.timeout.count()) + " ms");
        case util::ExitKind::kCancelled:
        case util::ExitKind::kFailedToStart:
            throw ChannelError(Kind::kPermanent, who + ": cannot start: " + r.error);
    }
    throw ChannelError(Kind::kPermanent, who + ": unexpected result");
}

}  // namespace

std::string default_from_address() {
    return "mlkeeper@" + hostname();
}

EmailChannel::EmailChannel(EmailOptions options) : options_(std::move(options)) {
    if (options_.to.empty()) {
        throw std::invalid_argument("email: no recipient (to) configured");
    }
    for (const std::string& to : options_.to) {
        if (has_line_break(to) || bare_address(to).empty()) {
            throw std::invalid_argument("email: bad recipient address '" + one_line(to) + "'");
        }
    }
    if (has_line_break(options_.from) || bare_address(options_.from).empty()) {
        throw std::invalid_argument("email: bad sender (from) address '" + one_line(options_.from) +
                                    "'");
    }
    if (!options_.url.empty()) {
        const std::string lower = util::to_lower(options_.url);
        if (has_line_break(options_.url) ||
            (lower.rfind("smtp://", 0) != 0 && lower.rfind("smtps://", 0) != 0) ||
            lower.size() <= lower.find("://") + 3) {
            throw std::invalid_argument("email: URL '" + display_url(one_line(options_.url)) +
                                        "' must be smtp://host[:port] or smtps://host[:port]");
        }
    }
    if (options_.timeout.count() <= 0) {
        throw std::invalid_argument("email: timeout must be positive");
    }
    scan_template(
        options_.subject_template, [](std::string_view) {},
        [](std::string_view name) {
            if (std::find(kPlaceholders.begin(), kPlaceholders.end(), name) ==
                kPlaceholders.end()) {
                throw std::invalid_argument("email: unknown placeholder {" + std::string(name) +
                                            "} in subject template (known: {severity}, {host}, "
                                            "{summary}, {key}, {check}, {state})");
            }
        });
}

void EmailChannel::send(const Alert& alert) {
    const std::string message = build_message(options_, alert);
    if (options_.url.empty()) {
        send_with_sendmail(options_, message);
    } else {
        SmtpTransfer(options_).send(message);
    }
}

std::string build_message(const EmailOptions& options, const Alert& alert) {
    std::string to;
    std::size_t line_len = 4;  // "To: "
    for (const std::string& addr : options.to) {
        const std::string h = header_address(addr);
        if (!to.empty()) {
            to += ',';
            ++line_len;
            if (line_len + 1 + h.size() > kFoldAt) {
                to += "\r\n";
                line_len = 0;
            }
            to += ' ';
            ++line_len;
        }
        to += h;
        line_len += h.size();
    }

    std::string msg;
    msg += "Date: " + rfc5322_date(alert.time) + "\r\n";
    msg += "From: " + header_address(options.from) + "\r\n";
    msg += "To: " + to + "\r\n";
    msg += "Subject: " + header_text(render_subject(options, alert), 9) + "\r\n";
    msg += "Message-ID: " + message_id(options) + "\r\n";
    msg += "MIME-Version: 1.0\r\n";
    msg += "Content-Type: text/plain; charset=utf-8\r\n";
    msg += "Content-Transfer-Encoding: 8bit\r\n";
    // RFC 3834: keeps vacation responders and ticket systems from answering a robot.
    msg += "Auto-Submitted: auto-generated\r\n";
    msg += "X-Mlkeeper-Key: " + header_text(alert.key, 16) + "\r\n";
    msg += "X-Mlkeeper-Severity: " + std::string(to_string(alert.severity)) + "\r\n";
    msg += std::string("X-Mlkeeper-State: ") +
           (alert.state == AlertState::kResolved ? "resolved" : "firing") + "\r\n";
    msg += "\r\n";
    msg += crlf_body(text_body(alert));
    return msg;
}

}  // namespace mlk::alert
