#include "mlkeeper/homelab/shutdown_service.hpp"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "mlkeeper/core/config.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/homelab/uptime.hpp"
#include "mlkeeper/util/strings.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::homelab {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

constexpr int kStateVersion = 1;

// Decodes one UTF-8 sequence at `i`; returns the code point and advances `i`, or nullopt for a
// malformed, overlong or surrogate sequence.
std::optional<char32_t> next_code_point(std::string_view s, std::size_t& i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = 0;
    char32_t cp = 0;
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    if ((b0 & 0xE0) == 0xC0) {
        len = 2;
        cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3;
        cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4;
        cp = b0 & 0x07;
    } else {
        return std::nullopt;
    }
    if (i + static_cast<std::size_t>(len) > s.size()) {
        return std::nullopt;
    }
    for (int k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
        if ((b & 0xC0) != 0x80) {
            return std::nullopt;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return std::nullopt;
    }
    i += static_cast<std::size_t>(len);
    return cp;
}

std::string describe(const util::RunResult& r) {
    switch (r.kind) {
        case util::ExitKind::kExited:
            return fmt::format("exit code {}", r.exit_code);
        case util::ExitKind::kSignaled:
            return fmt::format("killed by signal {}", r.signal);
        case util::ExitKind::kTimedOut:
            return "timed out";
        case util::ExitKind::kFailedToStart:
            return "could not start: " + r.error;
        case util::ExitKind::kCancelled:
            return "cancelled (the agent is stopping)";
    }
    return "unknown outcome";
}

// The last line a command wrote, for one log line.
std::string last_line(const util::RunResult& r) {
    auto text = util::trim(r.err.empty() ? r.out : r.err);
    auto nl = text.rfind('\n');
    if (nl != std::string_view::npos) {
        text = text.substr(nl + 1);
    }
    return std::string(text.substr(0, 300));
}

std::string summary(const ScheduledShutdown& s) {
    return fmt::format("{} (delay {} min, requested by {}{}{})", util::iso8601_utc(s.at),
                       s.delay.count(), s.requested_by.empty() ? "-" : s.requested_by,
                       s.reason.empty() ? "" : ": ", s.reason);
}

SysTime parse_time(const nlohmann::json& j, const char* key) {
    const auto& v = j.at(key);
    if (!v.is_string()) {
        throw std::invalid_argument(std::string(key) + " is not a string");
    }
    auto t = util::parse_iso8601_utc(v.get<std::string>());
    if (!t) {
        throw std::invalid_argument(std::string(key) + " is not an RFC 3339 time");
    }
    return *t;
}

}  // namespace

ShutdownSettings shutdown_settings_from(const core::Config& cfg) {
    ShutdownSettings s;
    s.command = cfg.list("shutdown.command");
    if (s.command.empty() || s.command.front().empty()) {
        throw ConfigError(
            "shutdown.command: empty; set the power-off command, e.g. [\"systemctl\", "
            "\"poweroff\"] or [\"sudo\", \"-n\", \"/usr/bin/systemctl\", \"poweroff\"]");
    }
    const auto max = cfg.duration("shutdown.max_delay");
    if (max < minutes(1)) {
        throw ConfigError("shutdown.max_delay: " + util::format_duration(max) +
                          " is under one minute; use e.g. 7d");
    }
    s.max_delay = std::chrono::duration_cast<minutes>(max);
    return s;
}

std::string to_state_json(const ScheduledShutdown& s) {
    nlohmann::json j = {
        {"version", kStateVersion},
        {"at", util::iso8601_utc(s.at)},
        {"delay_minutes", s.delay.count()},
        {"reason", s.reason},
        {"requested_by", s.requested_by},
        {"created_at", util::iso8601_utc(s.created_at)},
        {"boot_id", s.boot_id},
        {"boot_time", s.boot_time ? nlohmann::json(util::iso8601_utc(*s.boot_time)) : nullptr},
    };
    return j.dump();
}

ScheduledShutdown from_state_json(std::string_view text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        throw std::invalid_argument("not a JSON object");
    }
    try {
        if (j.at("version") != kStateVersion) {
            throw std::invalid_argument("unknown version " + j.at("version").dump());
        }
        ScheduledShutdown s;
        s.at = parse_time(j, "at");
        s.created_at = parse_time(j, "created_at");
        s.delay = minutes(j.at("delay_minutes").get<std::int64_t>());
        s.reason = j.at("reason").get<std::string>();
        s.requested_by = j.at("requested_by").get<std::string>();
        s.boot_id = j.value("boot_id", std::string());
        if (j.contains("boot_time") && !j.at("boot_time").is_null()) {
            s.boot_time = parse_time(j, "boot_time");
        }
        return s;
    } catch (const nlohmann::json::exception& e) {
        throw std::invalid_argument(e.what());
    }
}

std::optional<std::string> validate_request(minutes delay, std::string_view reason,
                                            minutes max_delay) {
    if (delay < minutes(0) || delay > max_delay) {
        return fmt::format("delay_minutes must be between 0 and {} (shutdown.max_delay), not {}",
                           max_delay.count(), delay.count());
    }
    std::size_t chars = 0;
    for (std::size_t i = 0; i < reason.size();) {
        auto cp = next_code_point(reason, i);
        if (!cp) {
            return std::string("reason is not valid UTF-8");
        }
        // C0 controls, DEL and C1 controls: they would break log lines and terminals.
        if (*cp < 0x20 || (*cp >= 0x7F && *cp <= 0x9F)) {
            return std::string("reason must not contain control characters (newlines, tabs, ...)");
        }
        ++chars;
    }
    if (chars > kMaxReasonChars) {
        return fmt::format("reason is {} characters long; at most {} are allowed", chars,
                           kMaxReasonChars);
    }
    return std::nullopt;
}

ShutdownService::ShutdownService(ShutdownSettings settings, core::StateStore* store,
                                 ShutdownSeams seams)
    : settings_(std::move(settings)), store_(store), seams_(std::move(seams)) {
    if (!seams_.now) {
        seams_.now = [] { return std::chrono::system_clock::now(); };
    }
    if (!seams_.power_off) {
        seams_.power_off = [](const std::vector<std::string>& argv, const util::RunOptions& o) {
            return util::run_process(argv, o);
        };
    }
    if (!seams_.boot) {
        seams_.boot = [] {
            ProcReader proc;
            BootIdentity b;
            b.boot_id = proc.boot_id();
            try {
                b.boot_time = proc.boot_time();
            } catch (const std::exception& e) {
                spdlog::warn("shutdown: {}", e.what());
            }
            return b;
        };
    }
    if (seams_.max_sleep <= std::chrono::milliseconds(0)) {
        seams_.max_sleep = std::chrono::milliseconds(5000);
    }
    load();
    timer_ = std::thread([this] { run_timer(); });
}

ShutdownService::~ShutdownService() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cancel_run_ = true;
    cv_.notify_all();
    if (timer_.joinable()) {
        timer_.join();
    }
}

SysTime ShutdownService::now_seconds() const {
    return std::chrono::floor<seconds>(seams_.now());
}

void ShutdownService::load() {
    if (store_ == nullptr) {
        return;
    }
    std::optional<std::string> text;
    try {
        text = store_->kv_get(kShutdownStateKey);
    } catch (const std::exception& e) {
        // Not fatal: the agent still serves the API; a lost schedule errs on the side of
        // leaving the machine running.
        spdlog::error("shutdown: cannot read the saved schedule: {}", e.what());
        return;
    }
    if (!text || util::trim(*text).empty() || util::trim(*text) == "null") {
        return;
    }
    ScheduledShutdown s;
    try {
        s = from_state_json(*text);
    } catch (const std::invalid_argument& e) {
        spdlog::warn("shutdown: dropping an unreadable saved schedule ({}): {}", e.what(),
                     text->substr(0, 200));
        try {
            persist_locked(std::nullopt);
        } catch (const std::exception& e2) {
            spdlog::error("shutdown: cannot clear the saved schedule: {}", e2.what());
        }
        return;
    }
    const auto boot = seams_.boot();
    bool rebooted = false;
    bool known = true;
    if (!s.boot_id.empty() && boot.boot_id) {
        rebooted = s.boot_id != *boot.boot_id;
    } else if (boot.boot_time) {
        // Made before this boot began (2 s for btime's rounding).
        rebooted = s.created_at + seconds(2) < *boot.boot_time;
    } else {
        known = false;
    }
    if (rebooted) {
        spdlog::warn(
            "shutdown: dropping the power-off scheduled for {}: the machine rebooted since it "
            "was requested at {}",
            summary(s), util::iso8601_utc(s.created_at));
        try {
            persist_locked(std::nullopt);
        } catch (const std::exception& e) {
            spdlog::error("shutdown: cannot clear the saved schedule: {}", e.what());
        }
        return;
    }
    if (!known) {
        spdlog::warn(
            "shutdown: cannot tell whether the machine rebooted since the power-off scheduled "
            "for {} was requested (no boot id or boot time); keeping it",
            summary(s));
    }
    if (s.at <= seams_.now()) {
        spdlog::warn(
            "shutdown: the power-off scheduled for {} came due while the agent was down; "
            "powering off now",
            summary(s));
    } else {
        spdlog::info("shutdown: resuming the power-off scheduled for {}", summary(s));
    }
    current_ = std::move(s);
}

void ShutdownService::persist_locked(const std::optional<ScheduledShutdown>& s) {
    if (store_ == nullptr) {
        return;
    }
    store_->kv_set(kShutdownStateKey, s ? to_state_json(*s) : std::string());
}

ScheduleResult ShutdownService::schedule(minutes delay, std::string reason,
                                         std::string requested_by, Replace replace) {
    if (auto why = validate_request(delay, reason, settings_.max_delay)) {
        throw std::invalid_argument(*why);
    }
    // Read outside the lock: /proc may be slow, and it does not change within a boot.
    const auto boot = seams_.boot();
    ScheduledShutdown s;
    s.created_at = now_seconds();
    s.at = s.created_at + delay;
    s.delay = delay;
    s.reason = std::move(reason);
    s.requested_by = std::move(requested_by);
    s.boot_id = boot.boot_id.value_or("");
    s.boot_time = boot.boot_time;

    ScheduleResult result;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (current_ && replace != Replace::kYes) {
            result.status = ScheduleResult::Status::kConflict;
            result.shutdown = *current_;
            return result;
        }
        persist_locked(s);  // throws: nothing changed
        result.status =
            current_ ? ScheduleResult::Status::kReplaced : ScheduleResult::Status::kScheduled;
        result.replaced = current_;
        result.shutdown = s;
        current_ = s;
    }
    cv_.notify_all();
    if (result.replaced) {
        spdlog::info("shutdown: power-off rescheduled for {}; it replaces the one for {}",
                     summary(s), summary(*result.replaced));
    } else {
        spdlog::info("shutdown: power-off scheduled for {}", summary(s));
    }
    return result;
}

std::optional<ScheduledShutdown> ShutdownService::cancel() {
    std::optional<ScheduledShutdown> old;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!current_) {
            return std::nullopt;
        }
        old = std::move(current_);
        current_.reset();
        try {
            persist_locked(std::nullopt);
        } catch (const std::exception& e) {
            spdlog::error(
                "shutdown: the power-off for {} is cancelled, but the state store could not "
                "record it ({}); an agent restart before the next schedule change would bring "
                "it back",
                summary(*old), e.what());
        }
    }
    cv_.notify_all();
    spdlog::info("shutdown: cancelled the power-off scheduled for {}", summary(*old));
    return old;
}

std::optional<ScheduledShutdown> ShutdownService::current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
}

void ShutdownService::run_timer() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
        if (!current_) {
            cv_.wait(lock, [this] { return stop_ || current_.has_value(); });
            continue;
        }
        const auto now = seams_.now();
        if (current_->at <= now) {
            ScheduledShutdown due = std::move(*current_);
            current_.reset();
            // Cleared before the command runs: a power-off that fails must not be retried by
            // every later agent start.
            try {
                persist_locked(std::nullopt);
            } catch (const std::exception& e) {
                spdlog::error("shutdown: cannot clear the saved schedule: {}", e.what());
            }
            lock.unlock();
            fire(due);
            lock.lock();
            continue;
        }
        const auto left = current_->at - now;
        cv_.wait_for(lock, std::min<std::chrono::nanoseconds>(left, seams_.max_sleep));
    }
}

void ShutdownService::fire(const ScheduledShutdown& s) {
    spdlog::warn("shutdown: powering off now as scheduled for {}: running {}", summary(s),
                 util::shell_join(settings_.command));
    util::RunOptions opts;
    opts.timeout = settings_.command_timeout;
    opts.cancel = &cancel_run_;
    util::RunResult r;
    try {
        r = seams_.power_off(settings_.command, opts);
    } catch (const std::exception& e) {
        r.kind = util::ExitKind::kFailedToStart;
        r.error = e.what();
    }
    ++power_offs_;
    if (r.ok()) {
        spdlog::info("shutdown: {} finished (exit code 0)", util::shell_join(settings_.command));
        return;
    }
    if (r.kind == util::ExitKind::kCancelled) {
        spdlog::warn("shutdown: {} was stopped because the agent is stopping",
                     util::shell_join(settings_.command));
        return;
    }
    const auto line = last_line(r);
    spdlog::error(
        "shutdown: the power-off command {} failed: {}{}{}; the machine stays up (see "
        "docs/SHUTDOWN.md for the polkit rule or sudoers line it needs)",
        util::shell_join(settings_.command), describe(r), line.empty() ? "" : ": ", line);
}

}  // namespace mlk::homelab
