#include "support/chromium.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

extern char** environ;

namespace mlk::testing {

namespace {

using namespace std::chrono_literals;
using nlohmann::json;

bool executable(const std::filesystem::path& p) {
    return ::access(p.c_str(), X_OK) == 0 && std::filesystem::is_regular_file(p);
}

// Closes an fd when it goes, unless released.
class Fd {
  public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            reset(other.release());
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(-1); }
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

  private:
    int fd_;
};

// A connected socket pair (sockets rather than pipes so that send() can refuse SIGPIPE), both
// ends close-on-exec. Chromium's end is moved above fd 10, so the child's dup2()s onto fds 3 and
// 4 cannot overwrite each other's source.
std::pair<Fd, Fd> socket_pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        throw std::system_error(errno, std::generic_category(), "socketpair for Chromium");
    }
    Fd ours(sv[0]);
    Fd theirs(sv[1]);
    const int high = ::fcntl(theirs.get(), F_DUPFD_CLOEXEC, 10);
    if (high < 0) {
        throw std::system_error(errno, std::generic_category(), "fcntl F_DUPFD_CLOEXEC");
    }
    theirs.reset(high);
    return {std::move(ours), std::move(theirs)};
}

std::string base64_decode(const std::string& in) {
    if (in.size() % 4 != 0) {
        throw std::runtime_error("screenshot: base64 data of odd length " +
                                 std::to_string(in.size()));
    }
    std::string out(in.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()),
                                  static_cast<int>(in.size()));
    if (n < 0) {
        throw std::runtime_error("screenshot: invalid base64 data");
    }
    std::size_t len = static_cast<std::size_t>(n);
    // EVP_DecodeBlock counts the padding as zero bytes.
    for (std::size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) {
        --len;
    }
    out.resize(len);
    return out;
}

// A console API argument as text: primitives by value, objects by their description.
std::string arg_text(const json& arg) {
    if (arg.contains("value")) {
        const json& v = arg["value"];
        return v.is_string() ? v.get<std::string>() : v.dump();
    }
    if (arg.contains("description")) {
        return arg["description"].get<std::string>();
    }
    if (arg.contains("unserializableValue")) {
        return arg["unserializableValue"].get<std::string>();
    }
    return arg.value("type", std::string("?"));
}

std::string str(const json& j, const char* key) {
    if (j.is_object() && j.contains(key) && j[key].is_string()) {
        return j[key].get<std::string>();
    }
    return {};
}

}  // namespace

std::optional<std::filesystem::path> find_chromium() {
    if (const char* env = std::getenv("MLK_CHROMIUM"); env != nullptr && *env != '\0') {
        if (executable(env)) {
            return std::filesystem::path(env);
        }
        return std::nullopt;
    }
    for (const char* p :
         {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}) {
        if (executable(p)) {
            return std::filesystem::path(p);
        }
    }
    return std::nullopt;
}

bool chromium_may_be_missing() {
    const char* env = std::getenv("MLK_ALLOW_NO_CHROMIUM");
    return env != nullptr && std::string(env) == "1";
}

std::string describe(const std::vector<ConsoleMessage>& messages) {
    std::string out;
    for (const auto& m : messages) {
        out += m.level + " [" + m.source + "] " + m.text;
        if (!m.url.empty()) {
            out += " (" + m.url + ")";
        }
        out += "\n";
    }
    return out.empty() ? "(none)\n" : out;
}

Chromium::Chromium(const ChromiumOptions& options) : options_(options) {
    end_ = Clock::now() + options_.total_limit;
    if (options_.binary.empty()) {
        auto found = find_chromium();
        if (!found) {
            throw std::runtime_error(kNoChromiumMessage);
        }
        options_.binary = *found;
    }
    std::string tmpl = (std::filesystem::temp_directory_path() / "mlk-chromium-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
    }
    dir_ = tmpl;
    try {
        auto [to_ours, to_theirs] = socket_pair();
        auto [from_ours, from_theirs] = socket_pair();

        const std::string log = (dir_ / "chromium.log").string();
        std::vector<std::string> args = {
            options_.binary.string(),
            "--headless",
            "--no-sandbox",  // tests run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--user-data-dir=" + (dir_ / "profile").string(),
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--mute-audio",
            "--hide-scrollbars",
            "--password-store=basic",
            "--use-mock-keychain",
            "--force-color-profile=srgb",
            "--window-size=" + std::to_string(options_.width) + "," +
                std::to_string(options_.height),
            "about:blank",
        };
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        posix_spawn_file_actions_adddup2(&fa, to_theirs.get(), 3);    // Chromium reads here
        posix_spawn_file_actions_adddup2(&fa, from_theirs.get(), 4);  // and writes here
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
        // Nothing else of the test process (listening sockets, other pipes) goes along.
        posix_spawn_file_actions_addclosefrom_np(&fa, 5);
#endif
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none, defaults;
        sigemptyset(&none);
        sigemptyset(&defaults);
        for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) {
            sigaddset(&defaults, sig);
        }
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        // Its own process group, so the renderer and GPU processes die with it.
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(
            &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        const int rc = ::posix_spawn(&pid_, argv[0], &fa, &attr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) {
            pid_ = -1;
            throw std::system_error(rc, std::generic_category(),
                                    "posix_spawn " + options_.binary.string());
        }
        // Only Chromium may hold its ends now, so that its exit reads as end-of-file here.
        to_theirs.reset(-1);
        from_theirs.reset(-1);
        to_browser_ = to_ours.release();
        from_browser_ = from_ours.release();

        const json targets = send("Target.getTargets", json::object(), false);
        std::string target_id;
        for (const auto& t : targets.value("targetInfos", json::array())) {
            if (str(t, "type") == "page") {
                target_id = str(t, "targetId");
                break;
            }
        }
        if (target_id.empty()) {
            target_id =
                str(send("Target.createTarget", {{"url", "about:blank"}}, false), "targetId");
        }
        session_ =
            str(send("Target.attachToTarget", {{"targetId", target_id}, {"flatten", true}}, false),
                "sessionId");
        if (session_.empty()) {
            fail("Target.attachToTarget gave no session");
        }
        send("Page.enable", json::object());
        send("Runtime.enable", json::object());
        send("Log.enable", json::object());
        send("Emulation.setDeviceMetricsOverride", {{"width", options_.width},
                                                    {"height", options_.height},
                                                    {"deviceScaleFactor", 1},
                                                    {"mobile", false}});
    } catch (...) {
        shutdown();
        throw;
    }
}

Chromium::~Chromium() {
    shutdown();
}

void Chromium::shutdown() noexcept {
    if (pid_ > 0) {
        // A polite close first, so the profile is not written to while it is removed; not for a
        // browser that has already stopped answering.
        if (to_browser_ >= 0 && responsive_) {
            try {
                send("Browser.close", json::object(), false, Clock::now() + 2s);
            } catch (...) {
            }
        }
        const auto limit = Clock::now() + (responsive_ ? 3s : 0s);
        siginfo_t info{};
        while (Clock::now() < limit) {
            info.si_pid = 0;
            // WNOWAIT: the leader stays a zombie, so its pid (the group id) cannot be reused
            // before the group is swept below.
            if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
                info.si_pid == pid_) {
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
        ::kill(-pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }
    for (int* fd : {&to_browser_, &from_browser_}) {
        if (*fd >= 0) {
            ::close(*fd);
            *fd = -1;
        }
    }
    if (!dir_.empty()) {
        // Helper processes may still be closing files for a moment after the kill.
        for (int tries = 0; tries < 20; ++tries) {
            std::error_code ec;
            std::filesystem::remove_all(dir_, ec);
            if (!ec && !std::filesystem::exists(dir_, ec)) {
                break;
            }
            std::this_thread::sleep_for(50ms);
        }
        dir_.clear();
    }
}

Chromium::Clock::time_point Chromium::deadline_after(std::chrono::milliseconds d) const {
    return std::min(Clock::now() + d, end_);
}

std::string Chromium::log_tail() const {
    std::ifstream in(dir_ / "chromium.log", std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    // D-Bus complaints are noise in a container.
    std::istringstream lines(text);
    std::string line, kept;
    while (std::getline(lines, line)) {
        if (line.find("dbus") == std::string::npos && line.find("D-Bus") == std::string::npos) {
            kept += line + "\n";
        }
    }
    return kept.size() > 3000 ? kept.substr(kept.size() - 3000) : kept;
}

void Chromium::fail(const std::string& what) const {
    throw std::runtime_error("chromium: " + what + "\n--- chromium log (end) ---\n" + log_tail());
}

json Chromium::send(const std::string& method, const json& params, bool to_page,
                    std::optional<Clock::time_point> deadline) {
    if (to_browser_ < 0) {
        fail(method + ": the browser is not running");
    }
    const int id = ++next_id_;
    json msg = {{"id", id}, {"method", method}, {"params", params}};
    if (to_page) {
        msg["sessionId"] = session_;
    }
    std::string bytes = msg.dump(-1, ' ', false, json::error_handler_t::replace);
    bytes.push_back('\0');
    const auto until =
        deadline ? std::min(*deadline, end_) : deadline_after(options_.command_limit);

    std::size_t done = 0;
    while (done < bytes.size()) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        pollfd p{to_browser_, POLLOUT, 0};
        const int r = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            responsive_ = false;
            fail(method + ": timed out sending the command");
        }
        const ssize_t n = ::send(to_browser_, bytes.data() + done, bytes.size() - done,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET) {
                responsive_ = false;
                fail(method + ": the browser closed the pipe (it exited or crashed)");
            }
            fail(method + ": sending failed: " + std::strerror(errno));
        }
        done += static_cast<std::size_t>(n);
    }

    awaited_id_ = id;
    response_.reset();
    while (!response_) {
        if (!pump(until)) {
            responsive_ = false;
            fail(method + ": no answer in time");
        }
    }
    json reply = std::move(*response_);
    response_.reset();
    if (reply.contains("error")) {
        fail(method + ": " + reply["error"].dump());
    }
    return reply.value("result", json::object());
}

bool Chromium::pump(Clock::time_point deadline) {
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p{from_browser_, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            fail(std::string("poll: ") + std::strerror(errno));
        }
        if (r == 0) {
            if (Clock::now() >= end_) {
                fail("the session passed its " +
                     std::to_string(options_.total_limit.count() / 1000) + " s limit");
            }
            return false;
        }
        char chunk[65536];
        const ssize_t n = ::recv(from_browser_, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            ::close(to_browser_);
            to_browser_ = -1;
            fail("the browser closed the pipe (it exited or crashed)");
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
        bool any = false;
        std::size_t start = 0;
        for (std::size_t nul = buffer_.find('\0'); nul != std::string::npos;
             nul = buffer_.find('\0', start)) {
            json message;
            try {
                message = json::parse(buffer_.begin() + static_cast<std::ptrdiff_t>(start),
                                      buffer_.begin() + static_cast<std::ptrdiff_t>(nul));
            } catch (const json::exception& e) {
                fail(std::string("unreadable DevTools message: ") + e.what());
            }
            start = nul + 1;
            handle(message);
            any = true;
        }
        buffer_.erase(0, start);
        if (crashed_) {
            fail("the page crashed");
        }
        if (any) {
            return true;
        }
    }
}

void Chromium::handle(const json& message) {
    if (message.contains("id")) {
        if (message["id"].is_number_integer() && message["id"].get<int>() == awaited_id_) {
            response_ = message;
        }
        return;
    }
    const std::string method = str(message, "method");
    const json params = message.value("params", json::object());
    if (method == "Page.loadEventFired") {
        ++load_events_;
    } else if (method == "Runtime.consoleAPICalled") {
        ConsoleMessage m;
        const std::string type = str(params, "type");
        m.level = type == "warning"                       ? "warning"
                  : (type == "error" || type == "assert") ? "error"
                                                          : type;
        m.source = "console";
        for (const auto& arg : params.value("args", json::array())) {
            m.text += (m.text.empty() ? "" : " ") + arg_text(arg);
        }
        const json frames =
            params.value("stackTrace", json::object()).value("callFrames", json::array());
        if (!frames.empty()) {
            m.url = str(frames[0], "url");
        }
        console_.push_back(std::move(m));
    } else if (method == "Runtime.exceptionThrown") {
        const json details = params.value("exceptionDetails", json::object());
        ConsoleMessage m;
        m.level = "error";
        m.source = "exception";
        m.text = str(details, "text");
        const std::string description =
            str(details.value("exception", json::object()), "description");
        if (!description.empty()) {
            m.text += (m.text.empty() ? "" : " ") + description;
        }
        m.url = str(details, "url");
        console_.push_back(std::move(m));
    } else if (method == "Log.entryAdded") {
        const json entry = params.value("entry", json::object());
        console_.push_back(
            {str(entry, "level"), str(entry, "source"), str(entry, "text"), str(entry, "url")});
    } else if (method == "Inspector.targetCrashed" || method == "Target.targetCrashed") {
        crashed_ = true;
    }
}

void Chromium::navigate(const std::string& url, std::chrono::milliseconds limit) {
    const auto until = deadline_after(limit);
    const std::uint64_t before = load_events_;
    const json r = send("Page.navigate", {{"url", url}}, true, until);
    if (const std::string err = str(r, "errorText"); !err.empty()) {
        fail("loading " + url + ": " + err);
    }
    while (load_events_ == before) {
        if (!pump(until) && Clock::now() >= until) {
            fail("loading " + url + ": no load event within " + std::to_string(limit.count()) +
                 " ms");
        }
    }
}

bool Chromium::wait_for(const std::string& expression, std::chrono::milliseconds limit) {
    const auto until = deadline_after(limit);
    const std::string guarded =
        "(() => { try { return !!(" + expression + "); } catch (e) { return false; } })()";
    for (;;) {
        const json r = send("Runtime.evaluate", {{"expression", guarded}, {"returnByValue", true}},
                            true, std::max(until, Clock::now() + 2s));
        if (r.value("result", json::object()).value("value", json()) == json(true)) {
            return true;
        }
        if (Clock::now() >= until) {
            return false;
        }
        // Handle events while waiting rather than sleeping.
        pump(std::min(until, Clock::now() + 50ms));
    }
}

json Chromium::evaluate(const std::string& expression) {
    const json r =
        send("Runtime.evaluate",
             {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}});
    if (r.contains("exceptionDetails")) {
        const json& d = r["exceptionDetails"];
        std::string text = str(d, "text");
        const std::string description = str(d.value("exception", json::object()), "description");
        throw std::runtime_error("evaluate(" + expression + "): " + text + " " + description);
    }
    return r.value("result", json::object()).value("value", json());
}

std::string Chromium::dom() {
    const json v = evaluate("document.documentElement.outerHTML");
    return v.is_string() ? v.get<std::string>() : std::string();
}

void Chromium::screenshot(const std::filesystem::path& png) {
    const json metrics = send("Page.getLayoutMetrics", json::object());
    const json size = metrics.value("cssContentSize", metrics.value("contentSize", json::object()));
    const double w = std::max(size.value("width", 0.0), static_cast<double>(options_.width));
    const double h = std::min(std::max(size.value("height", 0.0), 1.0), 16384.0);
    const json shot =
        send("Page.captureScreenshot",
             {{"format", "png"},
              {"captureBeyondViewport", true},
              {"clip", {{"x", 0}, {"y", 0}, {"width", w}, {"height", h}, {"scale", 1}}}});
    const std::string bytes = base64_decode(str(shot, "data"));
    if (bytes.size() < 8 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
        fail("Page.captureScreenshot did not return a PNG");
    }
    std::ofstream out(png, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
        throw std::system_error(errno, std::generic_category(), "write " + png.string());
    }
}

void Chromium::set_color_scheme(ColorScheme scheme) {
    send("Emulation.setEmulatedMedia",
         {{"features",
           json::array({{{"name", "prefers-color-scheme"},
                         {"value", scheme == ColorScheme::kDark ? "dark" : "light"}}})}});
}

std::vector<ConsoleMessage> Chromium::errors() const {
    std::vector<ConsoleMessage> out;
    std::copy_if(console_.begin(), console_.end(), std::back_inserter(out),
                 [](const ConsoleMessage& m) { return m.level == "error"; });
    return out;
}

PageResult load_page(const std::string& url, const std::string& wait_expression,
                     std::chrono::milliseconds limit, const std::filesystem::path& screenshot) {
    Chromium browser;
    PageResult result;
    browser.navigate(url, limit);
    result.ready = wait_expression.empty() || browser.wait_for(wait_expression, limit);
    if (!screenshot.empty()) {
        browser.screenshot(screenshot);
    }
    result.dom = browser.dom();
    result.console = browser.console();
    result.errors = browser.errors();
    return result;
}

std::filesystem::path artifact_path(const std::string& name) {
    const char* dir = std::getenv("MLK_TEST_ARTIFACTS");
    std::filesystem::path p = dir != nullptr && *dir != '\0' ? dir : ::testing::TempDir();
    std::filesystem::create_directories(p);
    return p / name;
}

}  // namespace mlk::testing
