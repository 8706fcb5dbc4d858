#include "mlkeeper/homelab/access_log_tailer.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <system_error>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kPollBudget = 8 * 1024 * 1024;  // bytes per file per pass
constexpr std::size_t kHeadBytes = 64;                // the fingerprint of a file's start

// ---- parsing ---------------------------------------------------------------------------------

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    if (!all_digits(s) || s.size() > 19) {
        return std::nullopt;
    }
    std::uint64_t v = 0;
    for (char c : s) {
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}

// "1732290000.123" (seconds with a fraction) -> microseconds, without floating point.
std::optional<std::int64_t> parse_seconds_us(std::string_view s) {
    const auto dot = s.find('.');
    const auto whole = s.substr(0, dot);
    if (!all_digits(whole) || whole.size() > 12) {
        return std::nullopt;
    }
    std::int64_t us = static_cast<std::int64_t>(*parse_u64(whole)) * 1000000;
    if (dot != std::string_view::npos) {
        const auto frac = s.substr(dot + 1);
        if (!all_digits(frac)) {
            return std::nullopt;
        }
        std::int64_t scale = 100000;
        for (std::size_t i = 0; i < frac.size() && i < 6; ++i, scale /= 10) {
            us += (frac[i] - '0') * scale;
        }
    }
    return us;
}

std::optional<std::int64_t> json_seconds_us(const nlohmann::json& j) {
    if (j.is_string()) {
        return parse_seconds_us(j.get_ref<const std::string&>());
    }
    if (j.is_number_unsigned() || j.is_number_integer()) {
        const auto v = j.get<std::int64_t>();
        if (v < 0 || v > 999999999999) {
            return std::nullopt;
        }
        return v * 1000000;
    }
    if (j.is_number_float()) {
        const double d = j.get<double>();
        if (!std::isfinite(d) || d < 0 || d > 999999999999.0) {
            return std::nullopt;
        }
        return static_cast<std::int64_t>(std::llround(d * 1e6));
    }
    return std::nullopt;
}

// A count written as a number or a decimal string; "-" (nginx's "no value") is 0.
std::optional<std::uint64_t> json_count(const nlohmann::json& j) {
    if (j.is_number_unsigned()) {
        return j.get<std::uint64_t>();
    }
    if (j.is_string()) {
        const auto& s = j.get_ref<const std::string&>();
        return s == "-" ? std::optional<std::uint64_t>(0) : parse_u64(s);
    }
    return std::nullopt;
}

std::optional<int> status_of(std::uint64_t v) {
    return v <= 999 ? std::optional<int>(static_cast<int>(v)) : std::nullopt;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// "10/Oct/2000:13:55:36 -0700" ($time_local).
std::optional<SysTime> parse_time_local(std::string_view s) {
    static constexpr std::array<std::string_view, 12> kMonths = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (s.size() != 26 || s[2] != '/' || s[6] != '/' || s[11] != ':' || s[14] != ':' ||
        s[17] != ':' || s[20] != ' ' || (s[21] != '+' && s[21] != '-')) {
        return std::nullopt;
    }
    const auto num = [&](std::size_t pos, std::size_t len) -> std::optional<std::uint64_t> {
        return parse_u64(s.substr(pos, len));
    };
    const auto day = num(0, 2), year = num(7, 4), hh = num(12, 2), mm = num(15, 2), ss = num(18, 2),
               zh = num(22, 2), zm = num(24, 2);
    const auto mon = std::find(kMonths.begin(), kMonths.end(), s.substr(3, 3));
    if (!day || !year || !hh || !mm || !ss || !zh || !zm || mon == kMonths.end() || *day < 1 ||
        *day > 31 || *hh > 23 || *mm > 59 || *ss > 60 || *zh > 23 || *zm > 59) {
        return std::nullopt;
    }
    const auto m = static_cast<unsigned>(mon - kMonths.begin() + 1);
    std::int64_t secs =
        days_from_civil(static_cast<std::int64_t>(*year), m, static_cast<unsigned>(*day)) * 86400 +
        static_cast<std::int64_t>(*hh * 3600 + *mm * 60 + *ss);
    const auto zone = static_cast<std::int64_t>(*zh * 3600 + *zm * 60);
    secs += s[21] == '+' ? -zone : zone;  // local = UTC + offset
    return SysTime(std::chrono::seconds(secs));
}

// The model named by `uri` under `prefix`, or "" when it is not a model location.
std::string_view model_of_uri(std::string_view uri, std::string_view prefix) {
    uri = uri.substr(0, uri.find_first_of("?#"));
    if (uri.size() <= prefix.size() + 1 || uri.substr(0, prefix.size()) != prefix ||
        uri[prefix.size()] != '/') {
        return {};
    }
    const auto rest = uri.substr(prefix.size() + 1);
    return rest.substr(0, rest.find('/'));
}

// ---- files ---------------------------------------------------------------------------------

struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd = std::exchange(o.fd, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }
};

std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) {
        h = (h ^ c) * 1099511628211ULL;
    }
    return h;
}

// The first `n` bytes of the file (fewer when it is shorter); nullopt on a read error.
std::optional<std::string> read_head(int fd, std::size_t n) {
    std::string buf(n, '\0');
    std::size_t got = 0;
    while (got < n) {
        const auto r = ::pread(fd, buf.data() + got, n - got, static_cast<off_t>(got));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return std::nullopt;
        }
        if (r == 0) {
            break;
        }
        got += static_cast<std::size_t>(r);
    }
    buf.resize(got);
    return buf;
}

std::string hex64(std::uint64_t v) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, v >>= 4) {
        s[static_cast<std::size_t>(i)] = kHex[v & 15];
    }
    return s;
}

}  // namespace

// ---- public parsing ----------------------------------------------------------------------------

std::string_view to_string(AccessLogFormat f) {
    return f == AccessLogFormat::kJson ? "json" : "combined";
}

std::optional<AccessLogFormat> parse_access_log_format(std::string_view text) {
    if (text == "json") {
        return AccessLogFormat::kJson;
    }
    if (text == "combined") {
        return AccessLogFormat::kCombined;
    }
    return std::nullopt;
}

std::optional<TailerSettings> tailer_settings_from(const core::Config& cfg) {
    const auto path = cfg.path("activity.access_log");
    if (path.empty()) {
        return std::nullopt;
    }
    TailerSettings s;
    s.path = path;
    const auto& fmt = cfg.str("activity.access_log_format");
    const auto f = parse_access_log_format(fmt);
    if (!f) {
        throw ConfigError("activity.access_log_format: must be json or combined, not '" + fmt +
                          "'");
    }
    s.format = *f;
    s.location_prefix = cfg.str("activity.location_prefix");
    while (s.location_prefix.size() > 1 && s.location_prefix.back() == '/') {
        s.location_prefix.pop_back();
    }
    if (s.location_prefix.empty() || s.location_prefix[0] != '/' || s.location_prefix == "/") {
        throw ConfigError(
            "activity.location_prefix: must start with '/' and name a path, e.g. "
            "\"/models\", not '" +
            cfg.str("activity.location_prefix") + "'");
    }
    s.poll_interval = cfg.duration("activity.poll_interval");
    s.persist_interval = cfg.duration("activity.persist_interval");
    return s;
}

ParsedLine parse_json_line(std::string_view line) {
    ParsedLine out;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        return out;
    }
    const auto model = j.find("model");
    const auto status = j.find("status");
    const auto msec = j.find("msec");
    if (model == j.end() || !model->is_string() || status == j.end() || msec == j.end()) {
        return out;
    }
    const auto st = json_count(*status);
    const auto at_us = json_seconds_us(*msec);
    if (!st || !status_of(*st) || !at_us) {
        return out;
    }
    auto& e = out.event;
    e.source = RequestSource::kNginx;
    e.status = *status_of(*st);
    e.at =
        SysTime(std::chrono::duration_cast<SysTime::duration>(std::chrono::microseconds(*at_us)));
    // Optional fields: nginx writes a variable without a value as "" (or "-"); a value that
    // does not parse counts as absent too (docs/formats/nginx-access-log.md).
    if (const auto it = j.find("request_length"); it != j.end()) {
        e.bytes_in = json_count(*it).value_or(0);
    }
    if (const auto it = j.find("bytes_sent"); it != j.end()) {
        e.bytes_out = json_count(*it).value_or(0);
    }
    if (const auto it = j.find("request_time"); it != j.end()) {
        e.latency = std::chrono::microseconds(json_seconds_us(*it).value_or(0));
    }
    const auto& name = model->get_ref<const std::string&>();
    if (name.empty() || name == "-") {
        out.kind = LineKind::kNotModel;
        out.event = {};
        return out;
    }
    e.model = name;
    out.kind = LineKind::kEvent;
    return out;
}

ParsedLine parse_combined_line(std::string_view line, std::string_view location_prefix) {
    ParsedLine out;
    const auto open = line.find(" [");
    if (open == std::string_view::npos) {
        return out;
    }
    const auto close = line.find("] \"", open + 2);
    if (close == std::string_view::npos) {
        return out;
    }
    const auto at = parse_time_local(line.substr(open + 2, close - open - 2));
    if (!at) {
        return out;
    }
    // The request line up to its closing quote; nginx writes a '"' inside it as \x22, other
    // servers as \" (skipped here).
    const auto req_begin = close + 3;
    auto pos = req_begin;
    while (pos < line.size() && line[pos] != '"') {
        pos += line[pos] == '\\' ? 2 : 1;
    }
    if (pos >= line.size()) {
        return out;
    }
    const auto request = line.substr(req_begin, pos - req_begin);
    auto rest = line.substr(pos + 1);
    if (rest.empty() || rest[0] != ' ') {
        return out;
    }
    rest.remove_prefix(1);
    const auto sp1 = rest.find(' ');
    const auto status = parse_u64(rest.substr(0, sp1));
    if (!status || !status_of(*status)) {
        return out;
    }
    std::uint64_t bytes = 0;
    if (sp1 != std::string_view::npos) {
        auto tail = rest.substr(sp1 + 1);
        const auto b = tail.substr(0, tail.find(' '));
        if (b != "-") {
            const auto v = parse_u64(b);
            if (!v) {
                return out;
            }
            bytes = *v;
        }
    } else {
        return out;
    }
    // "METHOD URI PROTOCOL"; anything else (a TLS handshake sent to the plain port, "-") is a
    // request of no model.
    const auto parts = util::split(request, ' ');
    const std::string_view uri =
        parts.size() >= 2 ? std::string_view(parts[1]) : std::string_view();
    const auto model = model_of_uri(uri, location_prefix);
    if (model.empty()) {
        out.kind = LineKind::kNotModel;
        return out;
    }
    auto& e = out.event;
    e.source = RequestSource::kNginx;
    e.model = std::string(model);
    e.status = *status_of(*status);
    e.bytes_out = bytes;
    e.at = *at;
    out.kind = LineKind::kEvent;
    return out;
}

// ---- the tailer --------------------------------------------------------------------------------

struct AccessLogTailer::File {
    Fd fd;
    dev_t dev = 0;
    ino_t ino = 0;
    std::filesystem::path path;  // where it was opened (it may have moved since)
    std::uint64_t offset = 0;    // end of the last complete line
    std::uint64_t read_pos = 0;  // bytes read so far
    std::string partial;         // bytes of an incomplete line (read_pos - offset, unless skipping)
    bool skipping = false;       // inside a line longer than kMaxLogLineBytes
    std::string head;            // the first bytes of the file (up to kHeadBytes)
    Steady::time_point last_growth = Steady::now();
};

// Where reading stopped in one file.
struct SavedFile {
    std::uint64_t inode = 0;
    std::uint64_t offset = 0;
    std::size_t head_bytes = 0;
    std::uint64_t head_hash = 0;
};

struct AccessLogTailer::Saved {
    std::string path;
    std::optional<SavedFile> current;  // the file at `path` (none while it was missing)
    std::vector<SavedFile> rotated;    // files rotated away and still being read
};

namespace {

// Whether the file still starts with `head` (the bytes seen there before); refreshes `head` to
// more bytes while the file is young. false: it was truncated and rewritten.
bool head_matches(int fd, std::string& head) {
    const auto now = read_head(fd, kHeadBytes);
    if (!now) {
        return true;  // a read error is not evidence of a rewrite
    }
    if (now->compare(0, head.size(), head) != 0) {
        return false;
    }
    if (now->size() > head.size()) {
        head = *now;
    }
    return true;
}

bool head_has_hash(const std::string& head, std::size_t bytes, std::uint64_t hash) {
    return head.size() >= bytes && fnv1a(std::string_view(head).substr(0, bytes)) == hash;
}

}  // namespace

std::unique_ptr<AccessLogTailer::File> AccessLogTailer::open_file(
    const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return nullptr;
    }
    auto f = std::make_unique<File>();
    f->fd = Fd(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return nullptr;
    }
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return nullptr;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->path = path;
    f->head = read_head(fd, kHeadBytes).value_or("");
    return f;
}

AccessLogTailer::AccessLogTailer(TailerSettings settings, RequestSink& sink,
                                 TailerPersistence persist)
    : settings_(std::move(settings)), sink_(sink), persist_(std::move(persist)) {
    while (settings_.location_prefix.size() > 1 && settings_.location_prefix.back() == '/') {
        settings_.location_prefix.pop_back();
    }
    if (persist_.store == nullptr) {
        return;
    }
    std::optional<std::string> text;
    try {
        text = persist_.store->kv_get(kTailerStateKey);
    } catch (const std::exception& ex) {
        spdlog::error("access log: cannot read the saved position ({}); reading {} from its start",
                      ex.what(), settings_.path.string());
        return;
    }
    if (!text) {
        return;
    }
    try {
        const auto j = nlohmann::json::parse(*text);
        if (!j.is_object() || j.value("version", 0) != 1) {
            throw std::invalid_argument("not a version 1 object");
        }
        const auto file_of = [](const nlohmann::json& o) {
            SavedFile f;
            f.inode = o.at("inode").get<std::uint64_t>();
            f.offset = o.at("offset").get<std::uint64_t>();
            f.head_bytes = o.at("head_bytes").get<std::size_t>();
            const auto hash = o.at("head_fnv1a").get<std::string>();
            if (hash.size() != 16 || f.head_bytes > kHeadBytes ||
                hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
                throw std::invalid_argument("bad head_fnv1a or head_bytes");
            }
            f.head_hash = std::stoull(hash, nullptr, 16);
            return f;
        };
        auto s = std::make_unique<Saved>();
        s->path = j.at("path").get<std::string>();
        if (j.contains("inode")) {
            s->current = file_of(j);
        }
        if (const auto it = j.find("rotated"); it != j.end()) {
            for (const auto& r : it->get<std::vector<nlohmann::json>>()) {
                s->rotated.push_back(file_of(r));
            }
        }
        saved_ = std::move(s);
    } catch (const std::exception& ex) {
        spdlog::warn(
            "access log: ignoring the saved position in state key {} ({}); reading {} "
            "from its start",
            kTailerStateKey, ex.what(), settings_.path.string());
    }
}

AccessLogTailer::~AccessLogTailer() {
    stop();
}

void AccessLogTailer::start() {
    std::lock_guard lk(thread_mu_);
    if (thread_.joinable()) {
        return;
    }
    stop_ = false;
    thread_ = std::thread([this] { run(); });
}

void AccessLogTailer::stop() {
    {
        std::lock_guard lk(thread_mu_);
        if (!thread_.joinable()) {
            return;
        }
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    checkpoint();
}

void AccessLogTailer::run() {
    auto next_persist = Steady::now() + settings_.persist_interval;
    for (;;) {
        bool more = false;
        try {
            more = poll_once();
        } catch (const std::exception& ex) {
            spdlog::error("access log {}: {}", settings_.path.string(), ex.what());
        }
        if (settings_.persist_interval.count() > 0 && Steady::now() >= next_persist) {
            checkpoint();
            next_persist = Steady::now() + settings_.persist_interval;
        }
        std::unique_lock lk(thread_mu_);
        if (more ? stop_ : cv_.wait_for(lk, settings_.poll_interval, [this] { return stop_; })) {
            return;
        }
    }
}

bool AccessLogTailer::poll_once() {
    std::lock_guard lk(mu_);
    if (saved_) {
        resume_saved();
    }
    if (!current_) {
        open_current();
    }
    bool more = false;
    if (current_) {
        // Before reading on: a file truncated and already written past our offset again would
        // otherwise be read from the middle.
        check_truncation();
        more = drain(*current_, kPollBudget);
    }
    for (auto& f : draining_) {
        more = drain(*f, kPollBudget) || more;
    }
    if (!more) {
        check_rotation();
    }
    close_idle_drained();
    stats_.file_open = current_ != nullptr;
    stats_.inode = current_ ? std::optional<std::uint64_t>(current_->ino) : std::nullopt;
    stats_.offset = current_ ? current_->offset : 0;
    return more;
}

void AccessLogTailer::open_current() {
    auto f = open_file(settings_.path);
    if (!f) {
        const int err = errno;
        if (err != last_open_errno_) {
            last_open_errno_ = err;
            if (err == ENOENT) {
                spdlog::info("access log {} does not exist (yet); waiting for it",
                             settings_.path.string());
            } else {
                spdlog::warn("access log {} cannot be opened: {}; trying again every {} ms",
                             settings_.path.string(), std::strerror(err),
                             settings_.poll_interval.count());
            }
        }
        return;
    }
    last_open_errno_ = 0;
    // The file may be one still being drained (renamed away and back): carry on with it.
    for (auto it = draining_.begin(); it != draining_.end(); ++it) {
        if ((*it)->dev == f->dev && (*it)->ino == f->ino) {
            current_ = std::move(*it);
            current_->path = settings_.path;
            draining_.erase(it);
            return;
        }
    }
    current_ = std::move(f);
}

void AccessLogTailer::resume_saved() {
    const auto saved = std::move(saved_);
    if (saved->path != settings_.path.string()) {
        return;  // another file now: read it from its start
    }
    // The files rotated away before the last checkpoint, found by inode next to the log.
    std::vector<const SavedFile*> wanted;
    for (const auto& r : saved->rotated) {
        wanted.push_back(&r);
    }
    struct stat st {};
    const bool at_path = ::stat(settings_.path.c_str(), &st) == 0;
    if (saved->current) {
        if (at_path && static_cast<std::uint64_t>(st.st_ino) == saved->current->inode) {
            auto f = open_file(settings_.path);
            if (f) {
                const auto& c = *saved->current;
                struct stat fst {};
                if (head_has_hash(f->head, c.head_bytes, c.head_hash) &&
                    ::fstat(f->fd.fd, &fst) == 0 &&
                    static_cast<std::uint64_t>(fst.st_size) >= c.offset) {
                    f->offset = f->read_pos = c.offset;
                } else {
                    // Truncated (copytruncate) while we were away: the lines past the saved
                    // offset are in the copy, if it is still there.
                    ++stats_.truncations;
                    read_copy(c.offset, c.head_bytes, c.head_hash, f->dev, f->ino);
                    spdlog::info(
                        "access log {} was truncated since the last run; reading it "
                        "from the start",
                        settings_.path.string());
                }
                current_ = std::move(f);
            }
        } else {
            ++stats_.rotations;  // rotated while we were away
            wanted.push_back(&*saved->current);
        }
    }
    if (wanted.empty()) {
        return;
    }
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator(settings_.path.parent_path(), ec)) {
        struct stat est {};
        if (::stat(entry.path().c_str(), &est) != 0 || !S_ISREG(est.st_mode) ||
            (current_ && est.st_ino == current_->ino)) {
            continue;
        }
        for (auto it = wanted.begin(); it != wanted.end(); ++it) {
            const SavedFile& w = **it;
            if (static_cast<std::uint64_t>(est.st_ino) != w.inode) {
                continue;
            }
            auto old = open_file(entry.path());
            if (old && head_has_hash(old->head, w.head_bytes, w.head_hash) &&
                static_cast<std::uint64_t>(est.st_size) >= w.offset) {
                old->offset = old->read_pos = w.offset;
                spdlog::info("access log {}: finishing the rotated {} first",
                             settings_.path.string(), entry.path().string());
                draining_.push_back(std::move(old));
            }
            wanted.erase(it);
            break;
        }
    }
}

bool AccessLogTailer::drain(File& f, std::size_t budget) {
    std::string buf(kReadChunk, '\0');
    std::size_t total = 0;
    while (total < budget) {
        const auto r = ::pread(f.fd.fd, buf.data(), buf.size(), static_cast<off_t>(f.read_pos));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            spdlog::warn("access log {}: read failed: {}", f.path.string(), std::strerror(errno));
            return false;
        }
        if (r == 0) {
            return false;
        }
        const auto n = static_cast<std::size_t>(r);
        total += n;
        f.last_growth = Steady::now();
        std::string_view chunk(buf.data(), n);
        std::uint64_t chunk_pos = f.read_pos;
        f.read_pos += n;
        while (!chunk.empty()) {
            const auto nl = chunk.find('\n');
            const auto seg = chunk.substr(0, nl);
            if (f.skipping) {
                if (nl != std::string_view::npos) {
                    f.skipping = false;
                    f.offset = chunk_pos + nl + 1;
                }
            } else if (f.partial.size() + seg.size() > kMaxLogLineBytes) {
                ++stats_.lines;
                ++stats_.malformed;
                ++stats_.too_long;
                f.partial.clear();
                if (nl == std::string_view::npos) {
                    f.skipping = true;
                } else {
                    f.offset = chunk_pos + nl + 1;
                }
            } else if (nl == std::string_view::npos) {
                f.partial.append(seg);
            } else {
                if (f.partial.empty()) {
                    deliver(seg);
                } else {
                    f.partial.append(seg);
                    deliver(f.partial);
                    f.partial.clear();
                }
                f.offset = chunk_pos + nl + 1;
            }
            if (nl == std::string_view::npos) {
                break;
            }
            chunk.remove_prefix(nl + 1);
            chunk_pos += nl + 1;
        }
    }
    return true;
}

void AccessLogTailer::deliver(std::string_view line) {
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    if (line.empty()) {
        return;
    }
    ++stats_.lines;
    const auto parsed = settings_.format == AccessLogFormat::kJson
                            ? parse_json_line(line)
                            : parse_combined_line(line, settings_.location_prefix);
    switch (parsed.kind) {
        case LineKind::kEvent:
            ++stats_.events;
            sink_.request_seen(parsed.event);
            break;
        case LineKind::kNotModel:
            ++stats_.not_model;
            break;
        case LineKind::kMalformed:
            ++stats_.malformed;
            break;
    }
}

void AccessLogTailer::check_rotation() {
    if (!current_) {
        return;
    }
    struct stat st {};
    if (::stat(settings_.path.c_str(), &st) != 0) {
        if (errno == ENOENT) {
            // Renamed away (or deleted) and not recreated yet: read what is still written to it
            // and wait for the path to reappear.
            ++stats_.rotations;
            draining_.push_back(std::move(current_));
        }
        return;
    }
    if (st.st_ino != current_->ino || st.st_dev != current_->dev) {
        ++stats_.rotations;
        draining_.push_back(std::move(current_));
        open_current();
        if (current_) {
            drain(*current_, kPollBudget);
        }
        return;
    }
    if (check_truncation()) {
        drain(*current_, kPollBudget);
    }
}

bool AccessLogTailer::check_truncation() {
    struct stat st {};
    if (::fstat(current_->fd.fd, &st) != 0) {
        return false;
    }
    const bool shrank = static_cast<std::uint64_t>(st.st_size) < current_->read_pos;
    if (shrank || !head_matches(current_->fd.fd, current_->head)) {
        restart_after_truncation(*current_);
        return true;
    }
    return false;
}

void AccessLogTailer::restart_after_truncation(File& f) {
    ++stats_.truncations;
    // copytruncate copied the file, then truncated it: the lines written after our last read
    // and before the copy ended are only in the copy. Find it by its first bytes.
    if (f.offset > 0 && !f.head.empty()) {
        read_copy(f.offset, f.head.size(), fnv1a(f.head), f.dev, f.ino);
    }
    if (!f.partial.empty() || f.skipping) {
        ++stats_.lines;
        ++stats_.malformed;
    }
    f.offset = f.read_pos = 0;
    f.partial.clear();
    f.skipping = false;
    f.head = read_head(f.fd.fd, kHeadBytes).value_or("");
    spdlog::info("access log {} was truncated (copytruncate?); reading it from the start",
                 settings_.path.string());
}

bool AccessLogTailer::read_copy(std::uint64_t offset, std::size_t head_bytes,
                                std::uint64_t head_hash, dev_t dev, ino_t ino) {
    const auto base = settings_.path.filename().string();
    std::error_code ec;
    std::unique_ptr<File> best;
    struct timespec best_mtime {};
    for (const auto& entry :
         std::filesystem::directory_iterator(settings_.path.parent_path(), ec)) {
        const auto name = entry.path().filename().string();
        if (name.size() <= base.size() || name.compare(0, base.size(), base) != 0 ||
            (name[base.size()] != '.' && name[base.size()] != '-')) {
            continue;
        }
        struct stat st {};
        if (::stat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
            static_cast<std::uint64_t>(st.st_size) < offset ||
            (st.st_dev == dev && st.st_ino == ino)) {
            continue;
        }
        auto c = open_file(entry.path());
        if (!c || !head_has_hash(c->head, head_bytes, head_hash)) {
            continue;  // compressed, or another generation
        }
        if (!best || st.st_mtim.tv_sec > best_mtime.tv_sec ||
            (st.st_mtim.tv_sec == best_mtime.tv_sec && st.st_mtim.tv_nsec > best_mtime.tv_nsec)) {
            best = std::move(c);
            best_mtime = st.st_mtim;
        }
    }
    if (!best) {
        return false;
    }
    best->offset = best->read_pos = offset;
    const auto before = stats_.lines;
    while (drain(*best, std::numeric_limits<std::size_t>::max())) {
    }
    if (!best->partial.empty() || best->skipping) {
        ++stats_.lines;
        ++stats_.malformed;
    }
    stats_.recovered_from_copy += stats_.lines - before;
    spdlog::info("access log {}: read {} line(s) that were only in the rotated copy {}",
                 settings_.path.string(), stats_.lines - before, best->path.string());
    return true;
}

void AccessLogTailer::close_idle_drained() {
    const auto now = Steady::now();
    for (auto it = draining_.begin(); it != draining_.end();) {
        if (now - (*it)->last_growth >= settings_.rotate_grace) {
            if (!(*it)->partial.empty() || (*it)->skipping) {
                ++stats_.lines;
                ++stats_.malformed;  // a last line never finished
            }
            it = draining_.erase(it);
        } else {
            ++it;
        }
    }
}

void AccessLogTailer::checkpoint() {
    std::lock_guard lk(mu_);
    checkpoint_locked();
}

void AccessLogTailer::checkpoint_locked() {
    if (persist_.store == nullptr) {
        return;
    }
    try {
        if (persist_.save_counts) {
            persist_.save_counts();
        }
        const auto file_json = [](const File& f) {
            return nlohmann::json{{"inode", static_cast<std::uint64_t>(f.ino)},
                                  {"offset", f.offset},
                                  {"head_bytes", f.head.size()},
                                  {"head_fnv1a", hex64(fnv1a(f.head))}};
        };
        nlohmann::json j = current_ ? file_json(*current_) : nlohmann::json::object();
        j["version"] = 1;
        j["path"] = settings_.path.string();
        nlohmann::json rotated = nlohmann::json::array();
        for (const auto& f : draining_) {
            rotated.push_back(file_json(*f));
        }
        j["rotated"] = std::move(rotated);
        persist_.store->kv_set(kTailerStateKey, j.dump());
    } catch (const std::exception& ex) {
        spdlog::error("access log {}: cannot save the position: {}", settings_.path.string(),
                      ex.what());
    }
}

TailerStats AccessLogTailer::stats() const {
    std::lock_guard lk(mu_);
    return stats_;
}

}  // namespace mlk::homelab
