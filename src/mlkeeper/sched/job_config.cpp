#include "mlkeeper/sched/job_config.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/sched/schedule.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::sched {
namespace {

constexpr std::array<std::string_view, 5> kBuiltins = {"backup", "gpu", "cleanup", "health",
                                                       "maintain"};

constexpr std::array<std::string_view, 19> kJobKeys = {
    "enabled",    "description", "task",
    "command",    "args",        "on_calendar",
    "cron",       "persistent",  "randomized_delay",
    "timeout",    "retries",     "retry_delay",
    "nice",       "io_class",    "io_level",
    "memory_max", "cpu_quota",   "alert_on_failure",
    "user"};

bool valid_name(std::string_view n) {
    return !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    });
}

class JobReader {
  public:
    JobReader(std::string origin, std::vector<std::string>& errors)
        : origin_(std::move(origin)), errors_(errors) {}

    std::string where(const toml::node& n) const {
        return fmt::format("{}:{}:{}", origin_, n.source().begin.line, n.source().begin.column);
    }
    void error(const toml::node& n, const std::string& msg) {
        errors_.push_back(where(n) + ": " + msg);
    }

    // Applies the table's keys over `job`; returns false when the job is disabled.
    bool apply(const toml::table& t, JobSpec& job, const std::string& name) {
        bool enabled = true;
        for (const auto& [k, v] : t) {
            const std::string key(k.str());
            if (std::find(kJobKeys.begin(), kJobKeys.end(), key) == kJobKeys.end()) {
                error(v, fmt::format("unknown key `{}` in [schedule.jobs.{}]", key, name));
                continue;
            }
            read_key(key, v, job, enabled);
        }
        return enabled;
    }

  private:
    std::optional<std::string> text(const toml::node& v, const std::string& key) {
        if (auto s = v.value<std::string>()) {
            return s;
        }
        error(v, fmt::format("`{}` must be a string", key));
        return std::nullopt;
    }
    std::optional<bool> boolean(const toml::node& v, const std::string& key) {
        if (auto b = v.value_exact<bool>()) {
            return b;
        }
        error(v, fmt::format("`{}` must be true or false", key));
        return std::nullopt;
    }
    std::optional<std::int64_t> integer(const toml::node& v, const std::string& key,
                                        std::int64_t lo, std::int64_t hi) {
        auto i = v.value_exact<std::int64_t>();
        if (!i || *i < lo || *i > hi) {
            error(v, fmt::format("`{}` must be a whole number from {} to {}", key, lo, hi));
            return std::nullopt;
        }
        return i;
    }
    std::optional<std::vector<std::string>> strings(const toml::node& v, const std::string& key) {
        const auto* arr = v.as_array();
        std::vector<std::string> out;
        if (arr != nullptr) {
            for (const auto& e : *arr) {
                if (auto s = e.value<std::string>()) {
                    out.push_back(*s);
                } else {
                    arr = nullptr;
                    break;
                }
            }
        }
        if (arr == nullptr) {
            error(v, fmt::format("`{}` must be an array of strings, e.g. [\"/usr/bin/x\", \"-v\"]",
                                 key));
            return std::nullopt;
        }
        return out;
    }
    std::optional<std::chrono::seconds> duration(const toml::node& v, const std::string& key) {
        if (auto i = v.value_exact<std::int64_t>()) {
            if (*i >= 0 && *i <= util::kMaxDuration.count()) {
                return std::chrono::seconds{*i};
            }
        } else if (auto s = v.value<std::string>()) {
            try {
                return util::parse_duration(*s);
            } catch (const std::invalid_argument& e) {
                error(v, fmt::format("`{}`: {}", key, e.what()));
                return std::nullopt;
            }
        }
        error(v,
              fmt::format("`{}` must be a duration such as \"10m\" or a number of seconds", key));
        return std::nullopt;
    }

    void read_key(const std::string& key, const toml::node& v, JobSpec& job, bool& enabled) {
        if (key == "enabled") {
            enabled = boolean(v, key).value_or(enabled);
        } else if (key == "description") {
            job.description = text(v, key).value_or(job.description);
        } else if (key == "task") {
            if (auto s = text(v, key)) {
                if (!is_builtin_task(*s)) {
                    error(v, fmt::format("unknown task \"{}\" (one of backup, gpu, cleanup, "
                                         "health, maintain; use `command` for other programs)",
                                         *s));
                } else {
                    job.kind = TaskKind::kBuiltin;
                    job.builtin = *s;
                    job.argv.clear();
                }
            }
        } else if (key == "command") {
            if (auto a = strings(v, key)) {
                if (a->empty() || a->front().empty()) {
                    error(v, "`command` needs at least the program to run");
                } else {
                    job.kind = TaskKind::kCommand;
                    job.builtin.clear();
                    job.argv = *a;
                }
            }
        } else if (key == "args") {
            if (auto a = strings(v, key)) {
                args_ = *a;
            }
        } else if (key == "on_calendar" || key == "cron") {
            if (auto s = text(v, key)) {
                const auto kind = key == "cron" ? ScheduleKind::kCron : ScheduleKind::kCalendar;
                try {
                    (void)Schedule::parse(kind, *s);
                    job.schedule_kind = kind;
                    job.schedule = *s;
                    ++schedules_;
                } catch (const ScheduleError& e) {
                    error(v, e.what());
                }
            }
        } else if (key == "persistent") {
            job.persistent = boolean(v, key).value_or(job.persistent);
        } else if (key == "alert_on_failure") {
            job.alert_on_failure = boolean(v, key).value_or(job.alert_on_failure);
        } else if (key == "randomized_delay") {
            job.randomized_delay = duration(v, key).value_or(job.randomized_delay);
        } else if (key == "timeout") {
            job.timeout = duration(v, key).value_or(job.timeout);
        } else if (key == "retry_delay") {
            job.retry_delay = duration(v, key).value_or(job.retry_delay);
        } else if (key == "retries") {
            job.retries = static_cast<int>(integer(v, key, 0, 100).value_or(job.retries));
        } else if (key == "nice") {
            job.nice = static_cast<int>(integer(v, key, -20, 19).value_or(job.nice));
        } else if (key == "io_level") {
            job.io_level = static_cast<int>(integer(v, key, 0, 7).value_or(job.io_level));
        } else if (key == "io_class") {
            read_io_class(v, job);
        } else if (key == "memory_max") {
            read_memory(v, job);
        } else if (key == "cpu_quota") {
            read_cpu_quota(v, job);
        } else if (key == "user") {
            error(v, "`user` is set for the whole agent (run it as that user), not per job");
        }
    }

    void read_io_class(const toml::node& v, JobSpec& job) {
        auto s = text(v, "io_class");
        if (!s) {
            return;
        }
        if (*s == "none") {
            job.io_class = IoClass::kNone;
        } else if (*s == "realtime") {
            job.io_class = IoClass::kRealtime;
        } else if (*s == "best-effort") {
            job.io_class = IoClass::kBestEffort;
        } else if (*s == "idle") {
            job.io_class = IoClass::kIdle;
        } else {
            error(v,
                  fmt::format("io_class \"{}\" must be none, realtime, best-effort or idle", *s));
        }
    }

    void read_memory(const toml::node& v, JobSpec& job) {
        if (auto i = v.value_exact<std::int64_t>(); i && *i > 0) {
            job.memory_max = static_cast<std::uint64_t>(*i);
            return;
        }
        if (auto s = v.value<std::string>()) {
            if (*s == "none" || s->empty()) {
                job.memory_max.reset();
                return;
            }
            try {
                if (auto b = util::parse_size(*s); b > 0) {
                    job.memory_max = b;
                    return;
                }
            } catch (const std::invalid_argument&) {
            }
        }
        error(v, "`memory_max` must be a size such as \"2G\" or \"512MiB\" (or \"none\")");
    }

    void read_cpu_quota(const toml::node& v, JobSpec& job) {
        std::optional<std::int64_t> pct = v.value_exact<std::int64_t>();
        if (auto s = v.value<std::string>()) {
            if (*s == "none" || s->empty()) {
                job.cpu_quota_percent.reset();
                return;
            }
            std::string t = *s;
            if (!t.empty() && t.back() == '%') {
                t.pop_back();
            }
            if (!t.empty() &&
                std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                t.size() <= 6) {
                pct = std::stoll(t);
            }
        }
        if (!pct || *pct < 1 || *pct > 100000) {
            error(v, "`cpu_quota` must be a percentage of one core such as \"50%\" (1-100000)");
            return;
        }
        job.cpu_quota_percent = static_cast<int>(*pct);
    }

  public:
    std::optional<std::vector<std::string>> args_;
    int schedules_ = 0;

  private:
    std::string origin_;
    std::vector<std::string>& errors_;
};

}  // namespace

bool is_builtin_task(std::string_view name) {
    return std::find(kBuiltins.begin(), kBuiltins.end(), name) != kBuiltins.end();
}

std::vector<JobSpec> parse_jobs(std::string_view toml_text, std::string_view origin,
                                const std::vector<JobSpec>& defaults) {
    std::vector<JobSpec> jobs = defaults;
    toml::table root;
    try {
        root = toml::parse(toml_text, std::string(origin));
    } catch (const toml::parse_error& e) {
        throw ConfigError(fmt::format("{}:{}:{}: {}", origin, e.source().begin.line,
                                      e.source().begin.column, e.description()));
    }
    const auto* tables = root["schedule"]["jobs"].as_table();
    if (tables == nullptr) {
        if (auto node = root["schedule"]["jobs"]; node) {
            throw ConfigError(fmt::format(
                "{}:{}:{}: [schedule] jobs must be tables "
                "([schedule.jobs.NAME])",
                origin, node.node()->source().begin.line, node.node()->source().begin.column));
        }
        return jobs;
    }
    std::vector<std::string> errors;
    for (const auto& [k, node] : *tables) {
        const std::string name(k.str());
        JobReader reader(std::string(origin), errors);
        const auto* t = node.as_table();
        if (t == nullptr || !valid_name(name)) {
            reader.error(node, t == nullptr
                                   ? fmt::format("schedule.jobs.{} must be a table", name)
                                   : fmt::format("job name \"{}\": use a-z, 0-9, '-' and '_' "
                                                 "(at most 64)",
                                                 name));
            continue;
        }
        auto it = std::find_if(jobs.begin(), jobs.end(),
                               [&](const JobSpec& j) { return j.name == name; });
        const bool is_new = it == jobs.end();
        JobSpec job = is_new ? JobSpec{} : *it;
        job.name = name;
        const std::size_t before = errors.size();
        const bool enabled = reader.apply(*t, job, name);
        if (reader.args_) {
            if (job.kind == TaskKind::kBuiltin) {
                job.argv = *reader.args_;
            } else {
                job.argv.insert(job.argv.end(), reader.args_->begin(), reader.args_->end());
            }
        }
        if (t->contains("on_calendar") && t->contains("cron")) {
            reader.error(node, fmt::format("job {}: set on_calendar or cron, not both", name));
        }
        if (is_new && enabled && errors.size() == before) {
            if (job.builtin.empty() && job.argv.empty()) {
                reader.error(node, fmt::format("job {}: set `task` (a built-in such as backup) or "
                                               "`command` (a program and its arguments)",
                                               name));
            }
            if (reader.schedules_ == 0) {
                reader.error(node, fmt::format("job {}: set `on_calendar` (systemd syntax, e.g. "
                                               "\"daily\") or `cron` (e.g. \"0 2 * * *\")",
                                               name));
            }
        }
        if (!enabled) {
            if (!is_new) {
                jobs.erase(it);
            }
            continue;
        }
        if (is_new) {
            jobs.push_back(std::move(job));
        } else {
            *it = std::move(job);
        }
    }
    if (!errors.empty()) {
        std::string msg;
        for (const auto& e : errors) {
            msg += (msg.empty() ? "" : "\n") + e;
        }
        throw ConfigError(msg);
    }
    return jobs;
}

std::vector<JobSpec> load_jobs(const core::Config& cfg) {
    const auto defaults =
        cfg.boolean("schedule.default_jobs") ? default_jobs() : std::vector<JobSpec>{};
    if (!cfg.file()) {
        return defaults;
    }
    std::ifstream in(*cfg.file(), std::ios::binary);
    if (!in) {
        throw ConfigError(cfg.file()->string() + ": cannot be read for [schedule.jobs]");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_jobs(text.str(), cfg.file()->string(), defaults);
}

}  // namespace mlk::sched
