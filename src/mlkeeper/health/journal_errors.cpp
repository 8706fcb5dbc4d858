#include "mlkeeper/health/journal_errors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

namespace mlk::health {
namespace {

using Clock = std::chrono::system_clock;

bool icontains(std::string_view hay, std::string_view needle) {
    auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == b;
    });
    return it != hay.end();
}

CheckResult graded(const std::string& source, long long count, const ErrorsOptions& opts,
                   bool capped) {
    CheckResult r;
    r.check = "Recent errors";
    r.key = "recent_errors";
    r.category = "system";
    r.status = grade(static_cast<double>(count), opts.count);
    r.value = static_cast<double>(count);
    r.unit = "count";
    r.warn = opts.count.warn;
    r.crit = opts.count.crit;
    r.min = 0;
    r.threshold = r.status == Status::kFail ? opts.count.crit : opts.count.warn;
    auto minutes = opts.window.count() / 60;
    r.message = fmt::format(
        "Recent errors: {}{} in the last {} in {}", count, capped ? "+" : "",
        minutes % 60 == 0 ? fmt::format("{}h", minutes / 60) : fmt::format("{}m", minutes), source);
    r.metrics.push_back({"recent_errors",
                         {},
                         static_cast<double>(count),
                         "Log entries of priority err or worse in the window"});
    return r;
}

CheckResult journal_errors(const ErrorsOptions& opts) {
    sd_journal* j = nullptr;
    int r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);
    if (r < 0) {
        return error_result("Recent errors", "recent_errors", "system",
                            fmt::format("cannot open the journal: {}", std::strerror(-r)));
    }
    std::unique_ptr<sd_journal, decltype(&sd_journal_close)> guard(j, &sd_journal_close);
    // Matches on one field are ORed: priorities emerg..err.
    for (const char* m : {"PRIORITY=0", "PRIORITY=1", "PRIORITY=2", "PRIORITY=3"}) {
        sd_journal_add_match(j, m, 0);
    }
    const auto since = Clock::now() - opts.window;
    const auto usec =
        std::chrono::duration_cast<std::chrono::microseconds>(since.time_since_epoch()).count();
    r = sd_journal_seek_realtime_usec(j, static_cast<std::uint64_t>(usec));
    if (r < 0) {
        return error_result("Recent errors", "recent_errors", "system",
                            fmt::format("cannot seek the journal: {}", std::strerror(-r)));
    }
    constexpr long long kCap = 100000;  // bounded time on a flooded journal
    long long count = 0;
    while (count < kCap && sd_journal_next(j) > 0) {
        ++count;
    }
    return graded("the journal", count, opts, count >= kCap);
}

}  // namespace

bool has_journal(const HealthEnv& env) {
    // An empty /var/log/journal (journald installed but not running, as in
    // containers) is no journal: look for journal files one level down.
    std::error_code ec;
    for (const auto& dir :
         {env.run_root / "log/journal", std::filesystem::path("/var/log/journal")}) {
        for (const auto& sub : std::filesystem::directory_iterator(dir, ec)) {
            for (const auto& f : std::filesystem::directory_iterator(sub.path(), ec)) {
                if (f.path().extension() == ".journal") {
                    return true;
                }
            }
        }
    }
    return false;
}

std::optional<Clock::time_point> syslog_line_time(std::string_view line, Clock::time_point now) {
    if (line.size() >= 19 && std::isdigit(static_cast<unsigned char>(line[0])) && line[4] == '-' &&
        line[10] == 'T') {
        std::string s(line.substr(0, std::min<std::size_t>(line.size(), 40)));
        std::tm tm{};
        int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
        if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6) {
            return std::nullopt;
        }
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        std::size_t p = 19;
        while (p < s.size() && (s[p] == '.' || std::isdigit(static_cast<unsigned char>(s[p])))) {
            ++p;
        }
        long offset = 0;
        if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
            int oh = 0, om = 0;
            if (std::sscanf(s.c_str() + p + 1, "%2d:%2d", &oh, &om) != 2) {
                return std::nullopt;
            }
            offset = (s[p] == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
        } else if (p >= s.size() || (s[p] != 'Z' && s[p] != 'z')) {
            return std::nullopt;
        }
        return Clock::from_time_t(::timegm(&tm) - offset);
    }
    // BSD: "Jan 31 14:30:00" (day may be space-padded), local time, no year.
    if (line.size() < 15) {
        return std::nullopt;
    }
    std::string s(line.substr(0, 15));
    std::tm tm{};
    const char* end = ::strptime(s.c_str(), "%b %d %H:%M:%S", &tm);
    if (!end) {
        return std::nullopt;
    }
    std::time_t now_t = Clock::to_time_t(now);
    std::tm now_tm{};
    ::localtime_r(&now_t, &now_tm);
    tm.tm_year = now_tm.tm_year;
    tm.tm_isdst = -1;
    std::time_t t = std::mktime(&tm);
    if (t > now_t + 86400) {  // December lines read in January
        tm.tm_year -= 1;
        tm.tm_isdst = -1;
        t = std::mktime(&tm);
    }
    return Clock::from_time_t(t);
}

bool syslog_line_is_error(std::string_view line) {
    if (line.size() >= 3 && line[0] == '<' && line[2] == '>' && line[1] >= '0' && line[1] <= '3') {
        return true;
    }
    static constexpr std::string_view kWords[] = {"error", "failed",   "fatal",         "critical",
                                                  "panic", "segfault", "out of memory", "emerg"};
    return std::any_of(std::begin(kWords), std::end(kWords),
                       [&](std::string_view w) { return icontains(line, w); });
}

CheckResult check_syslog_errors(const std::filesystem::path& file, const ErrorsOptions& opts,
                                Clock::time_point now) {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return error_result("Recent errors", "recent_errors", "system",
                            fmt::format("cannot read {}: {}", file.string(), std::strerror(errno)));
    }
    struct stat st {};
    ::fstat(fd, &st);
    const auto size = static_cast<std::size_t>(std::max<off_t>(st.st_size, 0));
    const std::size_t start = size > opts.syslog_tail_bytes ? size - opts.syslog_tail_bytes : 0;
    std::string buf(size - start, '\0');
    std::size_t got = 0;
    while (got < buf.size()) {
        ssize_t n =
            ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(start + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    buf.resize(got);
    std::string_view text(buf);
    if (start > 0) {  // drop the partial first line
        auto nl = text.find('\n');
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    }
    const auto since = now - opts.window;
    long long count = 0;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        auto t = syslog_line_time(line, now);
        if (t && *t >= since && *t <= now + std::chrono::minutes(5) && syslog_line_is_error(line)) {
            ++count;
        }
    }
    return graded(file.string(), count, opts, false);
}

CheckResult check_recent_errors(const HealthEnv& env, const ErrorsOptions& opts) {
    if (opts.syslog_file.empty() && has_journal(env)) {
        return journal_errors(opts);
    }
    std::filesystem::path file = opts.syslog_file;
    std::error_code ec;
    if (file.empty()) {
        for (const char* p : {"/var/log/syslog", "/var/log/messages"}) {
            if (std::filesystem::exists(p, ec)) {
                file = p;
                break;
            }
        }
    }
    if (file.empty()) {
        return skipped_result("Recent errors", "recent_errors", "system",
                              "no journal and no /var/log/syslog or /var/log/messages");
    }
    return check_syslog_errors(file, opts, Clock::now());
}

}  // namespace mlk::health
