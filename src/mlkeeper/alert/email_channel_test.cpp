// Tests for the email channel: message assembly checked by Python's email parser, SMTP delivery
// to a real aiosmtpd server (python3-aiosmtpd) started per test, SMTP faults (refused, silent,
// AUTH failure, 4xx/5xx replies, TLS refused) and the sendmail path with fake sendmail scripts.
#include "mlkeeper/alert/email_channel.hpp"
#include "support/temp_dir.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "mlkeeper/util/process.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::alert {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kPython = "/usr/bin/python3";  // the system one, where python3-aiosmtpd is

using mlk::testing::TempDir;

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const fs::path& p, const std::string& text, fs::perms perms = fs::perms(0644)) {
    {
        std::ofstream out(p, std::ios::binary);
        out << text;
        if (!out) {
            throw std::runtime_error("cannot write " + p.string());
        }
    }
    fs::permissions(p, perms);
}

// An owned socket fd bound to 127.0.0.1 on a port the kernel picked.
class BoundSocket {
  public:
    enum class Listen { kNo, kYes };
    explicit BoundSocket(Listen listen) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            throw std::system_error(errno, std::generic_category(), "socket");
        }
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            const int e = errno;
            ::close(fd_);
            throw std::system_error(e, std::generic_category(), "bind 127.0.0.1:0");
        }
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        // Bound but not listening: connects are refused. Listening but never accepting: the
        // kernel completes the handshake and the client then waits for a greeting forever.
        if (listen == Listen::kYes && ::listen(fd_, 16) != 0) {
            const int e = errno;
            ::close(fd_);
            throw std::system_error(e, std::generic_category(), "listen");
        }
    }
    BoundSocket(const BoundSocket&) = delete;
    BoundSocket& operator=(const BoundSocket&) = delete;
    ~BoundSocket() { ::close(fd_); }
    int port() const { return port_; }

  private:
    int fd_ = -1;
    int port_ = 0;
};

int free_port() {
    BoundSocket s(BoundSocket::Listen::kNo);
    return s.port();  // released on return; a race with another process is very unlikely
}

bool port_open(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

constexpr const char* kServerScript = R"PY(
import os, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out_dir, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Handler:
    def __init__(self):
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if mode == "rcpt451":
            return "451 4.3.0 Mailbox busy, try again later"
        if mode == "rcpt550":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(out_dir, "msg%03d" % self.count)
        with open(base + ".env.tmp", "w") as f:
            f.write("FROM " + envelope.mail_from + "\n")
            for r in envelope.rcpt_tos:
                f.write("RCPT " + r + "\n")
            f.write("AUTH " + str(bool(session.authenticated)) + "\n")
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".env.tmp", base + ".env")
        os.rename(base + ".tmp", base + ".eml")
        return "250 Message accepted for delivery"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"alice"
          and auth_data.password == b"s3cret-Pa55")
    return AuthResult(success=ok, handled=False)

kwargs = {}
if mode == "auth":
    kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
controller = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10, **kwargs)
controller.start()
print("listening on", port, flush=True)
while True:
    time.sleep(3600)
)PY";

// Python's own email parser as an independent reader of what we build.
constexpr const char* kParseScript = R"PY(
import email, email.policy, email.utils, json, sys
raw = open(sys.argv[1], "rb").read()
m = email.message_from_bytes(raw, policy=email.policy.default)
out = {
    "subject": str(m["Subject"]),
    "from": str(m["From"]),
    "to": [a.addr_spec for a in m["To"].addresses],
    "to_names": [a.display_name for a in m["To"].addresses],
    "date": email.utils.parsedate_to_datetime(str(m["Date"])).timestamp(),
    "message_id": str(m["Message-ID"]),
    "content_type": m.get_content_type(),
    "charset": m.get_content_charset(),
    "cte": str(m["Content-Transfer-Encoding"]),
    "mime": str(m["MIME-Version"]),
    "body": m.get_content(),
    "defects": [repr(d) for d in m.defects] +
               [repr(d) for k in m.keys() for d in m[k].defects],
}
print(json.dumps(out))
)PY";

bool have_aiosmtpd() {
    util::RunOptions o;
    o.timeout = 20s;
    return util::run_process({kPython, "-c", "import aiosmtpd"}, o).ok();
}

// A real SMTP server (aiosmtpd) on 127.0.0.1 for one test; killed with its process group when
// the handle goes out of scope.
class SmtpServer {
  public:
    explicit SmtpServer(const fs::path& dir, const std::string& mode = "plain")
        : dir_(dir), port_(free_port()) {
        fs::create_directories(dir_ / "inbox");
        write_file(dir_ / "server.py", kServerScript);
        util::RunOptions o;
        o.kill_grace = 2000ms;
        proc_.emplace(
            util::Subprocess::start({kPython, (dir_ / "server.py").string(),
                                     (dir_ / "inbox").string(), std::to_string(port_), mode},
                                    o, util::Subprocess::Output::kToFile, dir_ / "server.log"));
        const auto deadline = SteadyClock::now() + 10s;
        while (!port_open(port_)) {
            if (!proc_->running() || SteadyClock::now() > deadline) {
                throw std::runtime_error("aiosmtpd did not come up on port " +
                                         std::to_string(port_) + ": " +
                                         read_file(dir_ / "server.log"));
            }
            std::this_thread::sleep_for(50ms);
        }
    }
    int port() const { return port_; }
    std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }
    fs::path inbox() const { return dir_ / "inbox"; }

    std::vector<fs::path> messages() const {
        std::vector<fs::path> out;
        for (const auto& e : fs::directory_iterator(inbox())) {
            if (e.path().extension() == ".eml") {
                out.push_back(e.path());
            }
        }
        std::sort(out.begin(), out.end());
        return out;
    }
    std::string log() const { return read_file(dir_ / "server.log"); }

  private:
    fs::path dir_;
    int port_;
    std::optional<util::Subprocess> proc_;
};

Alert sample_alert() {
    Alert a;
    a.key = "gpu0_temp";
    a.severity = Severity::kCritical;
    a.summary = "GPU 0 temperature 87°C exceeds 85°C";
    a.check = "gpu";
    a.value = "87°C";
    a.threshold = "85°C";
    a.action = "Check the fans and the airflow of the chassis.";
    a.host = "gpu-box";
    a.time = std::chrono::system_clock::time_point(std::chrono::seconds(1'790'000'123));
    a.suppressed = 12;
    a.occurrences = 4;
    a.fields = {{"gpu_index", "0"}, {"gpu_name", "NVIDIA H100"}, {"lone_dot", "x\n.\ny"}};
    return a;
}

EmailOptions smtp_options(const std::string& url) {
    EmailOptions o;
    o.url = url;
    o.to = {"ops@example.com", "Pager Duty <pager@example.org>"};
    o.from = "mlkeeper@gpu-box.example.net";
    o.tls = EmailOptions::Tls::kNone;
    o.timeout = 5000ms;
    return o;
}

nlohmann::json parse_with_python(const fs::path& eml) {
    const fs::path script = eml.parent_path() / "parse.py";
    write_file(script, kParseScript);
    util::RunOptions o;
    o.timeout = 20s;
    const util::RunResult r = util::run_process({kPython, script.string(), eml.string()}, o);
    if (!r.ok()) {
        throw std::runtime_error("parse.py failed: " + r.err);
    }
    return nlohmann::json::parse(r.out);
}

std::string base64_decode(const std::string& in) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v;
        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';
        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;
        } else if (c == '+') {
            v = 62;
        } else if (c == '/') {
            v = 63;
        } else {
            break;  // '=' padding
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    return out;
}

// The header block (up to the blank line) and the body of a CRLF message.
std::pair<std::string, std::string> split_message(const std::string& msg) {
    const std::size_t sep = msg.find("\r\n\r\n");
    if (sep == std::string::npos) {
        return {msg, ""};
    }
    return {msg.substr(0, sep + 2), msg.substr(sep + 4)};
}

// The unfolded value of the first header `name`, nullopt if absent.
std::optional<std::string> header(const std::string& headers, const std::string& name) {
    const std::string needle = "\r\n" + name + ": ";
    const std::string block = "\r\n" + headers;
    const std::size_t at = block.find(needle);
    if (at == std::string::npos) {
        return std::nullopt;
    }
    std::size_t pos = at + needle.size();
    std::string value;
    while (true) {
        const std::size_t eol = block.find("\r\n", pos);
        value += block.substr(pos, eol - pos);
        if (eol + 2 < block.size() && (block[eol + 2] == ' ' || block[eol + 2] == '\t')) {
            pos = eol + 2;  // folded continuation: CRLF removed, whitespace kept
            continue;
        }
        return value;
    }
}

// Decodes a header made of RFC 2047 "=?UTF-8?B?...?=" words separated by folding whitespace.
std::string decode_encoded_words(const std::string& value) {
    static const std::regex word(R"(=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=)");
    std::string out;
    for (auto it = std::sregex_iterator(value.begin(), value.end(), word);
         it != std::sregex_iterator(); ++it) {
        out += base64_decode((*it)[1].str());
    }
    return out;
}

void expect_crlf_only(const std::string& msg) {
    for (std::size_t i = 0; i < msg.size(); ++i) {
        if (msg[i] == '\n') {
            ASSERT_TRUE(i > 0 && msg[i - 1] == '\r') << "bare LF at offset " << i;
        }
        if (msg[i] == '\r') {
            ASSERT_TRUE(i + 1 < msg.size() && msg[i + 1] == '\n') << "bare CR at offset " << i;
        }
    }
    ASSERT_GE(msg.size(), 2u);
    EXPECT_EQ(msg.substr(msg.size() - 2), "\r\n");
}

std::vector<std::string> crlf_lines(const std::string& msg) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < msg.size()) {
        const std::size_t eol = msg.find("\r\n", pos);
        if (eol == std::string::npos) {
            out.push_back(msg.substr(pos));
            break;
        }
        out.push_back(msg.substr(pos, eol - pos));
        pos = eol + 2;
    }
    return out;
}

// Runs `fn`, expecting a ChannelError; returns it with the elapsed time.
template <typename Fn>
std::pair<std::optional<ChannelError>, std::chrono::milliseconds> catch_channel_error(Fn fn) {
    const auto start = SteadyClock::now();
    std::optional<ChannelError> err;
    try {
        fn();
    } catch (const ChannelError& e) {
        err = e;
    }
    return {err, std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start)};
}

#define REQUIRE_AIOSMTPD()                                                                \
    do {                                                                                  \
        if (!have_aiosmtpd()) {                                                           \
            FAIL() << "python3-aiosmtpd is missing for " << kPython                       \
                   << ": apt-get install python3-aiosmtpd (scripts/install-deps --test)"; \
        }                                                                                 \
    } while (0)

// ---------------------------------------------------------------- message assembly

TEST(EmailMessage, HeadersBodyAndLineEndings) {
    const Alert a = sample_alert();
    const EmailOptions o = smtp_options("smtp://127.0.0.1:25");
    const std::string msg = build_message(o, a);
    expect_crlf_only(msg);
    const auto [headers, body] = split_message(msg);
    ASSERT_FALSE(body.empty());

    EXPECT_EQ(header(headers, "From"), "mlkeeper@gpu-box.example.net");
    EXPECT_EQ(header(headers, "To"), "ops@example.com, Pager Duty <pager@example.org>");
    EXPECT_EQ(header(headers, "MIME-Version"), "1.0");
    EXPECT_EQ(header(headers, "Content-Type"), "text/plain; charset=utf-8");
    EXPECT_EQ(header(headers, "Content-Transfer-Encoding"), "8bit");
    EXPECT_EQ(header(headers, "Auto-Submitted"), "auto-generated");
    EXPECT_EQ(header(headers, "X-Mlkeeper-Key"), "gpu0_temp");
    EXPECT_EQ(header(headers, "X-Mlkeeper-Severity"), "critical");
    EXPECT_EQ(header(headers, "X-Mlkeeper-State"), "firing");
    const auto date = header(headers, "Date");
    ASSERT_TRUE(date);
    EXPECT_TRUE(std::regex_match(
        *date, std::regex(R"((Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|)"
                          R"(Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4})")))
        << *date;
    const auto id = header(headers, "Message-ID");
    ASSERT_TRUE(id);
    EXPECT_TRUE(
        std::regex_match(*id, std::regex(R"(<mlkeeper\.\d+\.[0-9a-f]{16}@gpu-box\.example\.net>)")))
        << *id;

    // The body is text_body() with CRLF line endings, nothing added or lost.
    std::string lf_body;
    for (const std::string& l : crlf_lines(body)) {
        lf_body += l + "\n";
    }
    EXPECT_EQ(lf_body, text_body(a));
    for (const std::string& l : crlf_lines(msg)) {
        EXPECT_LE(l.size(), 998u);
    }
}

TEST(EmailMessage, NonAsciiSubjectIsEncodedAndDecodesBack) {
    const Alert a = sample_alert();
    const std::string msg = build_message(smtp_options("smtp://h:25"), a);
    const auto [headers, body] = split_message(msg);
    const auto subject = header(headers, "Subject");
    ASSERT_TRUE(subject);
    EXPECT_EQ(subject->rfind("=?UTF-8?B?", 0), 0u) << *subject;
    EXPECT_EQ(decode_encoded_words(*subject), subject_line(a));
    // Every header byte is ASCII, every encoded-word at most 75 characters, every line <= 78.
    for (char c : headers) {
        EXPECT_LT(static_cast<unsigned char>(c), 0x80u);
    }
    static const std::regex word(R"(=\?UTF-8\?B\?[A-Za-z0-9+/=]*\?=)");
    for (auto it = std::sregex_iterator(subject->begin(), subject->end(), word);
         it != std::sregex_iterator(); ++it) {
        EXPECT_LE(it->length(), 75);
    }
    for (const std::string& l : crlf_lines(headers)) {
        EXPECT_LE(l.size(), 78u) << l;
    }
}

TEST(EmailMessage, LongMultiByteSubjectSplitsOnCharacterBoundaries) {
    Alert a = sample_alert();
    a.summary.clear();
    for (int i = 0; i < 60; ++i) {
        a.summary += "温度";  // 3-byte characters: a naive 39-byte split would cut them
    }
    const auto [headers, body] = split_message(build_message(smtp_options("smtp://h:25"), a));
    const auto subject = header(headers, "Subject");
    ASSERT_TRUE(subject);
    static const std::regex word(R"(=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=)");
    int words = 0;
    for (auto it = std::sregex_iterator(subject->begin(), subject->end(), word);
         it != std::sregex_iterator(); ++it) {
        ++words;
        const std::string chunk = base64_decode((*it)[1].str());
        ASSERT_FALSE(chunk.empty());
        // A chunk must not start with a UTF-8 continuation byte.
        EXPECT_NE(static_cast<unsigned char>(chunk[0]) & 0xC0, 0x80) << "word " << words;
    }
    EXPECT_GT(words, 5);
    EXPECT_EQ(decode_encoded_words(*subject), subject_line(a));
}

TEST(EmailMessage, AsciiSubjectIsPlainAndLongOnesFold) {
    Alert a = sample_alert();
    a.summary = "Disk /data is 97 percent full";
    auto [headers, body] = split_message(build_message(smtp_options("smtp://h:25"), a));
    EXPECT_EQ(header(headers, "Subject"),
              "[mlkeeper CRITICAL] gpu-box: Disk /data is 97 percent full");

    a.summary.clear();
    for (int i = 0; i < 40; ++i) {
        a.summary += "word" + std::to_string(i) + " ";
    }
    a.summary += "end";
    std::tie(headers, body) = split_message(build_message(smtp_options("smtp://h:25"), a));
    EXPECT_EQ(header(headers, "Subject"), subject_line(a));  // unfolding restores it exactly
    for (const std::string& l : crlf_lines(headers)) {
        EXPECT_LE(l.size(), 78u) << l;
    }
    EXPECT_NE(headers.find("\r\n word"), std::string::npos) << headers;
}

TEST(EmailMessage, AsciiLookingLikeEncodedWordIsEncoded) {
    Alert a = sample_alert();
    a.summary = "value =?UTF-8?B?SGk=?= literal";
    const auto [headers, body] = split_message(build_message(smtp_options("smtp://h:25"), a));
    const auto subject = header(headers, "Subject");
    ASSERT_TRUE(subject);
    EXPECT_EQ(decode_encoded_words(*subject), subject_line(a));
}

TEST(EmailMessage, SubjectCannotInjectHeaders) {
    Alert a = sample_alert();
    a.summary = "disk full\r\nBcc: victim@example.com\r\n\r\nforged body";
    const std::string msg = build_message(smtp_options("smtp://h:25"), a);
    const auto [headers, body] = split_message(msg);
    EXPECT_EQ(headers.find("\r\nBcc:"), std::string::npos) << headers;
    EXPECT_FALSE(header(headers, "Bcc"));
    EXPECT_EQ(header(headers, "Subject"),
              "[mlkeeper CRITICAL] gpu-box: disk full Bcc: victim@example.com forged body");
}

TEST(EmailMessage, SubjectTemplate) {
    EmailOptions o = smtp_options("smtp://h:25");
    o.subject_template = "{severity} {host}: {summary} [{key}/{check}/{state}] {unknown";
    Alert a = sample_alert();
    a.summary = "Disk full";
    auto [headers, body] = split_message(build_message(o, a));
    EXPECT_EQ(header(headers, "Subject"),
              "CRITICAL gpu-box: Disk full [gpu0_temp/gpu/firing] {unknown");
    a.state = AlertState::kResolved;
    std::tie(headers, body) = split_message(build_message(o, a));
    EXPECT_EQ(header(headers, "Subject"),
              "RESOLVED gpu-box: Disk full [gpu0_temp/gpu/resolved] {unknown");
}

TEST(EmailMessage, NonAsciiDisplayNameIsEncoded) {
    EmailOptions o = smtp_options("smtp://h:25");
    o.from = "Überwachung <mlkeeper@gpu-box.example.net>";
    o.to = {"Jürgen <j@example.com>"};
    const auto [headers, body] = split_message(build_message(o, sample_alert()));
    for (char c : headers) {
        ASSERT_LT(static_cast<unsigned char>(c), 0x80u) << headers;
    }
    const auto from = header(headers, "From");
    ASSERT_TRUE(from);
    EXPECT_EQ(decode_encoded_words(*from), "Überwachung");
    EXPECT_NE(from->find(" <mlkeeper@gpu-box.example.net>"), std::string::npos) << *from;
}

TEST(EmailMessage, ManyRecipientsFoldTheToHeader) {
    EmailOptions o = smtp_options("smtp://h:25");
    o.to.clear();
    for (int i = 0; i < 12; ++i) {
        o.to.push_back("operator" + std::to_string(i) + "@example.com");
    }
    const auto [headers, body] = split_message(build_message(o, sample_alert()));
    for (const std::string& l : crlf_lines(headers)) {
        EXPECT_LE(l.size(), 78u) << l;
    }
    const auto to = header(headers, "To");
    ASSERT_TRUE(to);
    EXPECT_EQ(util::split(*to, ',').size(), 12u);
    EXPECT_NE(to->find("operator11@example.com"), std::string::npos);
}

TEST(EmailMessage, OverlongBodyLinesAreBroken) {
    Alert a = sample_alert();
    a.fields["blob"] = std::string(1500, 'x') + std::string(700, 'y');
    std::string huge;
    for (int i = 0; i < 800; ++i) {
        huge += "é";  // 1600 bytes of 2-byte characters
    }
    a.fields["utf8"] = huge;
    const std::string msg = build_message(smtp_options("smtp://h:25"), a);
    expect_crlf_only(msg);
    for (const std::string& l : crlf_lines(msg)) {
        ASSERT_LE(l.size(), 998u);
        if (!l.empty()) {
            EXPECT_NE(static_cast<unsigned char>(l[0]) & 0xC0, 0x80) << "split inside a character";
        }
    }
    std::string joined;
    for (const std::string& l : crlf_lines(msg)) {
        joined += l;
    }
    EXPECT_NE(joined.find(std::string(1500, 'x') + std::string(700, 'y')), std::string::npos);
    EXPECT_NE(joined.find(huge), std::string::npos);
}

TEST(EmailMessage, MessageIdsAreUnique) {
    const EmailOptions o = smtp_options("smtp://h:25");
    const Alert a = sample_alert();
    const auto id1 = header(split_message(build_message(o, a)).first, "Message-ID");
    const auto id2 = header(split_message(build_message(o, a)).first, "Message-ID");
    ASSERT_TRUE(id1 && id2);
    EXPECT_NE(*id1, *id2);
}

TEST(EmailMessage, DefaultSenderIsThisHost) {
    char host[256] = {};
    ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
    EXPECT_EQ(default_from_address(), std::string("mlkeeper@") + host);
    EXPECT_EQ(EmailOptions{}.from, default_from_address());
}

// ---------------------------------------------------------------- option validation

TEST(EmailChannel, RejectsOptionsThatCanNeverWork) {
    auto make = [](auto mutate) {
        EmailOptions o = smtp_options("smtp://127.0.0.1:25");
        mutate(o);
        return EmailChannel(o);
    };
    EXPECT_NO_THROW(make([](EmailOptions&) {}));
    EXPECT_NO_THROW(make([](EmailOptions& o) { o.url = "SMTPS://mail.example.com:465"; }));
    EXPECT_NO_THROW(make([](EmailOptions& o) { o.url.clear(); }));  // sendmail
    EXPECT_THROW(make([](EmailOptions& o) { o.to.clear(); }), std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.to = {"a@example.com\r\nBcc: x@y"}; }),
                 std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.to = {"  "}; }), std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.from = "x@y\nBcc: z@w"; }), std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.url = "http://mail.example.com"; }),
                 std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.url = "smtp://"; }), std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.url = "mail.example.com:25"; }),
                 std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.timeout = 0ms; }), std::invalid_argument);
    EXPECT_THROW(make([](EmailOptions& o) { o.subject_template = "{sevrity} {host}"; }),
                 std::invalid_argument);
    EXPECT_EQ(make([](EmailOptions&) {}).name(), "email");
}

TEST(EmailChannel, UrlValidationErrorHidesCredentials) {
    EmailOptions o = smtp_options("http://alice:hunter2-secret@mail.example.com");
    try {
        EmailChannel ch(o);
        FAIL() << "accepted an http URL";
    } catch (const std::invalid_argument& e) {
        EXPECT_EQ(std::string(e.what()).find("hunter2-secret"), std::string::npos) << e.what();
    }
}

// ---------------------------------------------------------------- SMTP against aiosmtpd

TEST(EmailChannel, SmtpDeliversAParsableMessage) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path());
    const Alert a = sample_alert();
    EmailChannel ch(smtp_options(server.url()));
    ASSERT_NO_THROW(ch.send(a)) << server.log();

    const auto msgs = server.messages();
    ASSERT_EQ(msgs.size(), 1u) << server.log();
    const std::string envelope = read_file(fs::path(msgs[0]).replace_extension(".env"));
    EXPECT_EQ(envelope,
              "FROM mlkeeper@gpu-box.example.net\nRCPT ops@example.com\nRCPT "
              "pager@example.org\nAUTH False\n");

    const std::string raw = read_file(msgs[0]);
    expect_crlf_only(raw);
    const auto [headers, body] = split_message(raw);
    EXPECT_NE(header(headers, "Subject")->find("=?UTF-8?B?"), std::string::npos);

    const nlohmann::json m = parse_with_python(msgs[0]);
    EXPECT_EQ(m["subject"], subject_line(a));
    EXPECT_EQ(m["subject"], "[mlkeeper CRITICAL] gpu-box: GPU 0 temperature 87°C exceeds 85°C");
    EXPECT_EQ(m["from"], "mlkeeper@gpu-box.example.net");
    EXPECT_EQ(m["to"], nlohmann::json::array({"ops@example.com", "pager@example.org"}));
    EXPECT_EQ(m["to_names"], nlohmann::json::array({"", "Pager Duty"}));
    EXPECT_EQ(m["date"].get<double>(), 1'790'000'123.0);
    EXPECT_TRUE(std::regex_match(m["message_id"].get<std::string>(),
                                 std::regex(R"(<mlkeeper\.\d+\.[0-9a-f]+@gpu-box\.example\.net>)")))
        << m["message_id"];
    EXPECT_EQ(m["content_type"], "text/plain");
    EXPECT_EQ(m["charset"], "utf-8");
    EXPECT_EQ(m["cte"], "8bit");
    EXPECT_EQ(m["mime"], "1.0");
    EXPECT_TRUE(m["defects"].empty()) << m["defects"];

    std::string text = m["body"].get<std::string>();
    text.erase(std::remove(text.begin(), text.end(), '\r'), text.end());
    // Delivered intact: dot lines survive SMTP's end-of-data convention, the footer arrives.
    EXPECT_EQ(text, text_body(a));
    for (const char* want :
         {"Host:        gpu-box", "Severity:    critical", "Value:       87°C", "Threshold:   85°C",
          "12 repeats suppressed since the last notice", "What to do: Check the fans",
          "  gpu_name:  NVIDIA H100", "-- mlkeeper on gpu-box"}) {
        EXPECT_NE(text.find(want), std::string::npos) << want << " missing in:\n" << text;
    }
}

TEST(EmailChannel, SmtpSeveralSendsFromSeveralThreads) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path());
    EmailChannel ch(smtp_options(server.url()));
    std::vector<std::thread> threads;
    std::vector<std::string> errors(4);
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&, i] {
            Alert a = sample_alert();
            a.key = "key" + std::to_string(i);
            try {
                ch.send(a);
            } catch (const std::exception& e) {
                errors[static_cast<std::size_t>(i)] = e.what();
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    for (const auto& e : errors) {
        EXPECT_EQ(e, "");
    }
    EXPECT_EQ(server.messages().size(), 4u) << server.log();
}

TEST(EmailChannel, SmtpAuthWithTheRightPasswordDelivers) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path(), "auth");
    EmailOptions o = smtp_options(server.url());
    o.username = "alice";
    o.password = "s3cret-Pa55";
    o.tls = EmailOptions::Tls::kStartTls;  // not offered by the server: continue in the clear
    EmailChannel ch(o);
    ASSERT_NO_THROW(ch.send(sample_alert())) << server.log();
    const auto msgs = server.messages();
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_NE(read_file(fs::path(msgs[0]).replace_extension(".env")).find("AUTH True"),
              std::string::npos);
}

TEST(EmailChannel, SmtpWrongPasswordIsPermanentAndNeverShown) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path(), "auth");
    EmailOptions o = smtp_options(server.url());
    o.username = "alice";
    o.password = "hunter2-Wr0ng";
    EmailChannel ch(o);
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err) << "wrong password was accepted";
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent) << err->what();
    const std::string what = err->what();
    EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
    EXPECT_NE(what.find(server.url()), std::string::npos) << what;
    EXPECT_NE(what.find("535"), std::string::npos) << what;
    EXPECT_TRUE(server.messages().empty());
}

TEST(EmailChannel, SmtpMissingAuthIsPermanent) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path(), "auth");
    EmailChannel ch(smtp_options(server.url()));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent) << err->what();
    EXPECT_NE(std::string(err->what()).find("530"), std::string::npos) << err->what();
}

TEST(EmailChannel, SmtpPasswordInUrlIsNeverShown) {
    BoundSocket closed(BoundSocket::Listen::kNo);
    EmailOptions o =
        smtp_options("smtp://alice:Url-Pa55word@127.0.0.1:" + std::to_string(closed.port()));
    o.password = "Other-Pa55word";
    EmailChannel ch(o);
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    const std::string what = err->what();
    EXPECT_EQ(what.find("Pa55word"), std::string::npos) << what;
    EXPECT_NE(what.find("127.0.0.1:" + std::to_string(closed.port())), std::string::npos) << what;
}

TEST(EmailChannel, SmtpTemporaryRejectionIsTransient) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path(), "rcpt451");
    EmailChannel ch(smtp_options(server.url()));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient) << err->what();
    EXPECT_NE(std::string(err->what()).find("451"), std::string::npos) << err->what();
    EXPECT_NE(std::string(err->what()).find("Mailbox busy"), std::string::npos) << err->what();
}

TEST(EmailChannel, SmtpPermanentRejectionIsPermanent) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path(), "rcpt550");
    EmailChannel ch(smtp_options(server.url()));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent) << err->what();
    EXPECT_NE(std::string(err->what()).find("550"), std::string::npos) << err->what();
    EXPECT_NE(std::string(err->what()).find("No such user"), std::string::npos) << err->what();
}

TEST(EmailChannel, SmtpRequiredTlsNotOfferedIsPermanent) {
    REQUIRE_AIOSMTPD();
    TempDir dir;
    SmtpServer server(dir.path());
    EmailOptions o = smtp_options(server.url());
    o.tls = EmailOptions::Tls::kRequired;
    EmailChannel ch(o);
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err) << "sent in the clear although TLS was required";
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent) << err->what();
    EXPECT_TRUE(server.messages().empty());
}

TEST(EmailChannel, SmtpConnectionRefusedIsTransientAndQuick) {
    BoundSocket closed(BoundSocket::Listen::kNo);  // bound, not listening: refused
    const std::string url = "smtp://127.0.0.1:" + std::to_string(closed.port());
    EmailChannel ch(smtp_options(url));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient) << err->what();
    const std::string what = err->what();
    EXPECT_EQ(what.rfind(url + ": Couldn't connect to server", 0), 0u) << what;
    EXPECT_NE(what.find("connection refused"), std::string::npos) << what;
    EXPECT_LT(elapsed, 3000ms);
}

TEST(EmailChannel, SmtpSilentServerTimesOut) {
    BoundSocket silent(BoundSocket::Listen::kYes);  // accepts TCP, never says a word
    EmailOptions o = smtp_options("smtp://127.0.0.1:" + std::to_string(silent.port()));
    o.timeout = 1000ms;
    EmailChannel ch(o);
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient) << err->what();
    EXPECT_NE(std::string(err->what()).find("Timeout"), std::string::npos) << err->what();
    EXPECT_GE(elapsed, 900ms);
    EXPECT_LT(elapsed, 5000ms);
}

// ---------------------------------------------------------------- sendmail

// A fake sendmail that records its arguments (one per line) and stdin, then runs `tail`.
fs::path fake_sendmail(const fs::path& dir, const std::string& tail) {
    const fs::path script = dir / "sendmail";
    write_file(script,
               "#!/bin/sh\n"
               "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '" +
                   (dir / "argv").string() + "'\n" + "cat > '" + (dir / "stdin").string() + "'\n" +
                   tail + "\n",
               fs::perms(0755));
    return script;
}

EmailOptions sendmail_options(const fs::path& sendmail) {
    EmailOptions o;
    o.to = {"ops@example.com"};
    o.from = "mlkeeper@gpu-box.example.net";
    o.sendmail = sendmail;
    o.timeout = 5000ms;
    return o;
}

TEST(EmailChannel, SendmailGetsDashTDashIAndTheMessage) {
    TempDir dir;
    EmailChannel ch(sendmail_options(fake_sendmail(dir.path(), "exit 0")));
    const Alert a = sample_alert();
    ASSERT_NO_THROW(ch.send(a));
    EXPECT_EQ(read_file(dir.path() / "argv"), "-t\n-i\n");
    const std::string in = read_file(dir.path() / "stdin");
    // Local submission takes native line endings: no CR anywhere, same headers and body.
    EXPECT_EQ(in.find('\r'), std::string::npos);
    const std::size_t sep = in.find("\n\n");
    ASSERT_NE(sep, std::string::npos) << in;
    const std::string headers = "\n" + in.substr(0, sep + 1);
    EXPECT_NE(headers.find("\nTo: ops@example.com\n"), std::string::npos) << headers;
    EXPECT_NE(headers.find("\nFrom: mlkeeper@gpu-box.example.net\n"), std::string::npos);
    EXPECT_NE(headers.find("\nSubject: =?UTF-8?B?"), std::string::npos);
    EXPECT_NE(headers.find("\nMessage-ID: <mlkeeper."), std::string::npos);
    EXPECT_NE(headers.find("\nContent-Type: text/plain; charset=utf-8\n"), std::string::npos);
    EXPECT_EQ(in.substr(sep + 2), text_body(a));
}

TEST(EmailChannel, SendmailFailureCarriesItsStderr) {
    TempDir dir;
    EmailChannel ch(sendmail_options(fake_sendmail(
        dir.path(),
        "echo '  sendmail: fatal: ops@example.com: bad address syntax  ' >&2; exit 1")));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent);
    const std::string what = err->what();
    EXPECT_NE(what.find("exited with status 1: sendmail: fatal: ops@example.com: bad address "
                        "syntax"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find((dir.path() / "sendmail").string()), std::string::npos) << what;
    EXPECT_NE(what.back(), ' ');  // trimmed
}

TEST(EmailChannel, SendmailTempfailIsTransient) {
    TempDir dir;
    EmailChannel ch(
        sendmail_options(fake_sendmail(dir.path(), "echo 'queue file write error' >&2; exit 75")));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient);
    EXPECT_NE(std::string(err->what()).find("queue file write error"), std::string::npos);
}

TEST(EmailChannel, SendmailThatFailsBeforeReadingStdin) {
    TempDir dir;
    const fs::path script = dir.path() / "sendmail";
    write_file(script, "#!/bin/sh\necho 'no config' >&2\nexit 78\n", fs::perms(0755));
    EmailChannel ch(sendmail_options(script));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent);
    EXPECT_NE(std::string(err->what()).find("no config"), std::string::npos) << err->what();
}

TEST(EmailChannel, MissingSendmailIsPermanent) {
    TempDir dir;
    EmailChannel ch(sendmail_options(dir.path() / "no-such-sendmail"));
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kPermanent);
    EXPECT_NE(std::string(err->what()).find("no-such-sendmail"), std::string::npos) << err->what();
}

TEST(EmailChannel, HangingSendmailTimesOut) {
    TempDir dir;
    EmailOptions o = sendmail_options(fake_sendmail(dir.path(), "exec sleep 30"));
    o.timeout = 500ms;
    EmailChannel ch(o);
    const auto [err, elapsed] = catch_channel_error([&] { ch.send(sample_alert()); });
    ASSERT_TRUE(err);
    EXPECT_EQ(err->kind(), ChannelError::Kind::kTransient);
    EXPECT_NE(std::string(err->what()).find("timed out"), std::string::npos) << err->what();
    EXPECT_LT(elapsed, 5000ms);
}

}  // namespace
}  // namespace mlk::alert
