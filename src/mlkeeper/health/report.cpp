#include "mlkeeper/health/report.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "mlkeeper/core/metrics_text.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::health {
namespace {

// Fixed notation with at most 3 decimals: Nagios parsers reject exponents.
std::string number(double v) {
    std::string s = fmt::format("{:.3f}", v);
    while (!s.empty() && s.back() == '0')
        s.pop_back();
    if (!s.empty() && s.back() == '.')
        s.pop_back();
    return s == "-0" ? "0" : s;
}

std::string perf_uom(const std::string& unit) {
    if (unit == "%" || unit == "s")
        return unit;
    return "";
}

nlohmann::ordered_json opt(const std::optional<double>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

}  // namespace

Summary summarize(const std::vector<CheckResult>& checks) {
    Summary s;
    for (const auto& c : checks) {
        ++s.total;
        switch (c.status) {
            case Status::kPass:
                ++s.passed;
                break;
            case Status::kWarn:
                ++s.warnings;
                break;
            case Status::kFail:
                ++s.failed;
                break;
        }
        if (c.ran == Ran::kSkipped)
            ++s.skipped;
        if (c.ran == Ran::kError)
            ++s.errors;
    }
    if (s.total > 0) {
        s.health_score =
            std::round(static_cast<double>(s.passed) / s.total * 100.0 * 100.0) / 100.0;
    }
    return s;
}

std::optional<Format> parse_format(std::string_view s) {
    if (s == "text")
        return Format::kText;
    if (s == "json")
        return Format::kJson;
    if (s == "prometheus")
        return Format::kPrometheus;
    if (s == "nagios")
        return Format::kNagios;
    return std::nullopt;
}

int exit_code(const std::vector<CheckResult>& checks, Format format) {
    const bool fail = std::any_of(checks.begin(), checks.end(),
                                  [](const auto& c) { return c.status == Status::kFail; });
    const bool warn = std::any_of(checks.begin(), checks.end(),
                                  [](const auto& c) { return c.status == Status::kWarn; });
    const bool error = std::any_of(checks.begin(), checks.end(),
                                   [](const auto& c) { return c.ran == Ran::kError; });
    if (fail)
        return 2;
    if (format == Format::kNagios && error)
        return 3;
    return warn ? 1 : 0;
}

std::string to_text(const HealthReport& report, Colour colour, Verbosity verbosity) {
    const bool c = colour == Colour::kYes;
    std::string out;
    for (const auto& r : report.checks) {
        std::string_view mark, col;
        switch (r.status) {
            case Status::kPass:
                mark = r.ran == Ran::kSkipped ? "SKIP" : "PASS";
                col = r.ran == Ran::kSkipped ? "\033[2m" : "\033[32m";
                break;
            case Status::kWarn:
                mark = r.ran == Ran::kError ? "ERR " : "WARN";
                col = "\033[33m";
                break;
            case Status::kFail:
                mark = "FAIL";
                col = "\033[1;31m";
                break;
        }
        out += c ? fmt::format("{}{}\033[0m  {}\n", col, mark, r.message)
                 : fmt::format("{}  {}\n", mark, r.message);
        if (verbosity == Verbosity::kVerbose && r.value) {
            out += fmt::format("      value={}{}", number(*r.value), r.unit == "%" ? "%" : "");
            if (r.warn)
                out += " warn=" + number(*r.warn);
            if (r.crit)
                out += " crit=" + number(*r.crit);
            out += "\n";
        }
    }
    const auto s = summarize(report.checks);
    out += fmt::format("\n{} checks: {} passed, {} warnings, {} failed; health score {}%", s.total,
                       s.passed, s.warnings, s.failed, number(s.health_score));
    if (verbosity == Verbosity::kVerbose) {
        out += fmt::format(" ({} ms)", report.elapsed.count());
    }
    out += "\n";
    return out;
}

nlohmann::ordered_json to_json(const HealthReport& report) {
    nlohmann::ordered_json j;
    j["timestamp"] = util::format_local(report.time);
    j["hostname"] = report.hostname;
    j["checks"] = nlohmann::ordered_json::array();
    for (const auto& r : report.checks) {
        nlohmann::ordered_json c;
        c["check"] = r.check;
        c["status"] = std::string(to_string(r.status));
        c["message"] = r.message;
        c["value"] = opt(r.value);
        c["threshold"] = opt(r.threshold);
        c["unit"] = r.unit;
        if (r.ran == Ran::kSkipped)
            c["skipped"] = true;
        if (r.ran == Ran::kError)
            c["error"] = true;
        j["checks"].push_back(std::move(c));
    }
    const auto s = summarize(report.checks);
    j["summary"] = {{"total", s.total},
                    {"passed", s.passed},
                    {"warnings", s.warnings},
                    {"failed", s.failed},
                    {"health_score", s.health_score},
                    {"skipped", s.skipped}};
    return j;
}

std::string nagios_label(std::string_view key) {
    std::string out;
    for (char ch : key) {
        if (ch == '\'')
            out += "''";
        else if (ch == '=')
            out += '_';
        else
            out += ch;
    }
    return out;
}

std::string to_nagios(const HealthReport& report) {
    const auto s = summarize(report.checks);
    const int code = exit_code(report.checks, Format::kNagios);
    static constexpr std::string_view kNames[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
    std::string problems;
    // Worst first, so a truncated status line still shows what matters.
    for (auto want : {Status::kFail, Status::kWarn}) {
        for (const auto& r : report.checks) {
            if (r.status == want) {
                std::string msg = r.message;
                std::replace(msg.begin(), msg.end(), '|', '/');
                problems += (problems.empty() ? "" : "; ") + msg;
            }
        }
    }
    std::string line = fmt::format("HEALTH {} - ", kNames[code]);
    line += problems.empty()
                ? fmt::format("{} checks passed", s.total)
                : fmt::format("{} ({} of {} checks passed)", problems, s.passed, s.total);
    std::string perf;
    for (const auto& r : report.checks) {
        if (!r.value)
            continue;
        auto o = [](const std::optional<double>& v) { return v ? number(*v) : std::string(); };
        std::string item =
            fmt::format("'{}'={}{};{};{};{};{}", nagios_label(r.key), number(*r.value),
                        perf_uom(r.unit), o(r.warn), o(r.crit), o(r.min), o(r.max));
        while (item.back() == ';')
            item.pop_back();
        perf += (perf.empty() ? "" : " ") + item;
    }
    perf += fmt::format("{}'health_score'={}%;;;0;100", perf.empty() ? "" : " ",
                        number(s.health_score));
    return line + " | " + perf + "\n";
}

std::string to_prometheus(const HealthReport& report) {
    core::MetricsText m;
    m.family("mlkeeper_health_check_status", core::MetricType::kGauge,
             "Result of each health check: 0 pass, 1 warn, 2 fail");
    for (const auto& r : report.checks) {
        m.sample("mlkeeper_health_check_status", {{"check", r.check}, {"category", r.category}},
                 static_cast<double>(static_cast<int>(r.status)));
    }
    const auto s = summarize(report.checks);
    m.family("mlkeeper_health_checks", core::MetricType::kGauge, "Number of checks by result");
    m.sample("mlkeeper_health_checks", {{"status", "pass"}}, s.passed);
    m.sample("mlkeeper_health_checks", {{"status", "warn"}}, s.warnings);
    m.sample("mlkeeper_health_checks", {{"status", "fail"}}, s.failed);
    m.family("mlkeeper_health_score_ratio", core::MetricType::kGauge,
             "Share of checks that passed (health_score / 100)");
    m.sample("mlkeeper_health_score_ratio", s.health_score / 100.0);
    m.family("mlkeeper_health_last_run_timestamp_seconds", core::MetricType::kGauge,
             "When the health check ran (Unix time)");
    m.sample("mlkeeper_health_last_run_timestamp_seconds",
             std::chrono::duration<double>(report.time.time_since_epoch()).count());
    m.family("mlkeeper_health_run_duration_seconds", core::MetricType::kGauge,
             "How long the health check took");
    m.sample("mlkeeper_health_run_duration_seconds",
             std::chrono::duration<double>(report.elapsed).count());
    for (const auto& r : report.checks) {
        for (const auto& x : r.metrics) {
            const std::string name = "mlkeeper_health_" + x.name;
            m.family(name, x.type, x.help);
            m.sample(name, x.labels, x.value);
        }
    }
    return m.str();
}

}  // namespace mlk::health
