#include "mlkeeper/sched/unit_export.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <utility>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::sched {
namespace {

using Mask = std::uint64_t;
using std::chrono::seconds;

// ---------------------------------------------------------------------------------------------
// The schedule model both languages share: a set of values per field, at whole minutes.

struct Field {
    int lo;
    int hi;
    const char* what;
};

constexpr Field kMinute{0, 59, "minute"};
constexpr Field kHour{0, 23, "hour"};
constexpr Field kDom{1, 31, "day-of-month"};
constexpr Field kMonth{1, 12, "month"};
constexpr Field kDow{0, 6, "day-of-week"};      // 0 = Sunday
constexpr Field kCronDow{0, 7, "day-of-week"};  // cron also takes 7 for Sunday

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kCronDayNames = {"sun", "mon", "tue", "wed",
                                                           "thu", "fri", "sat"};
// systemd's weekday order starts on Monday.
constexpr std::array<std::string_view, 7> kSdDayNames = {"Mon", "Tue", "Wed", "Thu",
                                                         "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kSdDayLongNames = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};

Mask bit(int v) {
    return Mask{1} << v;
}

Mask full(const Field& f) {
    Mask m = 0;
    for (int v = f.lo; v <= f.hi; ++v) {
        m |= bit(v);
    }
    return m;
}

std::vector<int> values(Mask m, const Field& f) {
    std::vector<int> out;
    for (int v = f.lo; v <= f.hi; ++v) {
        if (m & bit(v)) {
            out.push_back(v);
        }
    }
    return out;
}

struct Schedule {
    Mask minute = 0;
    Mask hour = 0;
    Mask dom = 0;
    Mask month = 0;
    Mask dow = 0;         // bit 0 = Sunday
    bool day_or = false;  // cron with both day fields restricted: a day matching either runs
};

[[noreturn]] void fail(const std::string& message) {
    throw ConfigError(message);
}

std::optional<int> parse_digits(std::string_view s) {
    if (s.empty() || s.size() > 9) {
        return std::nullopt;
    }
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        v = v * 10 + (c - '0');
    }
    return v;
}

// An arithmetic progression of at least 3 values that runs to the end of the field: the values a
// repetition ("A/N" in systemd, "*/N" or "A-max/N" in cron) produces. Returns the step.
std::optional<int> repetition_step(const std::vector<int>& v, const Field& f) {
    if (v.size() < 3) {
        return std::nullopt;
    }
    int step = v[1] - v[0];
    for (std::size_t i = 2; i < v.size(); ++i) {
        if (v[i] - v[i - 1] != step) {
            return std::nullopt;
        }
    }
    if (step < 2 || v.back() + step <= f.hi) {
        return std::nullopt;
    }
    return step;
}

// Runs of consecutive values: three or more become a range, shorter runs single values.
template <typename Emit>
std::string runs(const std::vector<int>& v, std::string_view range_sep, Emit emit) {
    std::string out;
    for (std::size_t i = 0; i < v.size();) {
        std::size_t j = i;
        while (j + 1 < v.size() && v[j + 1] == v[j] + 1) {
            ++j;
        }
        auto add = [&](const std::string& s) {
            if (!out.empty()) {
                out += ',';
            }
            out += s;
        };
        if (j - i >= 2) {
            add(emit(v[i]) + std::string(range_sep) + emit(v[j]));
        } else {
            for (std::size_t k = i; k <= j; ++k) {
                add(emit(v[k]));
            }
        }
        i = j + 1;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// cron

std::string cron_error(std::string_view expr, const Field& f, std::string_view field_text,
                       std::string_view why) {
    return fmt::format("cron expression \"{}\": {} field \"{}\": {}", expr, f.what, field_text,
                       why);
}

template <std::size_t N>
int cron_value(std::string_view text, const Field& f, const std::array<std::string_view, N>* names,
               int name_base, std::string_view expr, std::string_view field_text) {
    if (auto v = parse_digits(text)) {
        if (*v < f.lo || *v > f.hi) {
            fail(cron_error(expr, f, field_text,
                            fmt::format("{} is out of range {}-{}", *v, f.lo, f.hi)));
        }
        return *v;
    }
    if (names != nullptr) {
        std::string lower = util::to_lower(text);
        for (std::size_t i = 0; i < names->size(); ++i) {
            if ((*names)[i] == lower) {
                return static_cast<int>(i) + name_base;
            }
        }
    }
    fail(cron_error(expr, f, field_text, fmt::format("\"{}\" is not a valid value", text)));
}

template <std::size_t N>
Mask parse_cron_field(std::string_view text, const Field& f,
                      const std::array<std::string_view, N>* names, int name_base,
                      std::string_view expr) {
    Mask m = 0;
    for (const auto& item : util::split(text, ',')) {
        if (item.empty()) {
            fail(cron_error(expr, f, text, "empty list element"));
        }
        auto slash = item.find('/');
        std::string_view range = std::string_view(item).substr(0, slash);
        int step = 1;
        if (slash != std::string::npos) {
            auto s = parse_digits(std::string_view(item).substr(slash + 1));
            if (!s || *s < 1) {
                fail(cron_error(expr, f, text, "the step after '/' must be a positive number"));
            }
            step = *s;
        }
        int a = f.lo;
        int b = f.hi;
        if (range != "*") {
            auto dash = range.find('-');
            a = cron_value(range.substr(0, dash), f, names, name_base, expr, text);
            if (dash != std::string_view::npos) {
                b = cron_value(range.substr(dash + 1), f, names, name_base, expr, text);
                if (f.hi == kCronDow.hi && b == 0 && a > 0) {
                    b = 7;  // "fri-sun" = 5-0 = 5-7
                }
            } else if (slash == std::string::npos) {
                b = a;
            }  // else "N/S": N to the end of the field, as croniter reads it
            if (a > b) {
                fail(cron_error(expr, f, text, fmt::format("range {}-{} runs backwards", a, b)));
            }
        }
        for (int v = a; v <= b; v += step) {
            m |= bit(v);
        }
    }
    return m;
}

Schedule parse_cron(std::string_view text) {
    std::string_view t = util::trim(text);
    std::string expanded;
    if (!t.empty() && t.front() == '@') {
        static const std::array<std::pair<std::string_view, std::string_view>, 7> kMacros = {{
            {"@yearly", "0 0 1 1 *"},
            {"@annually", "0 0 1 1 *"},
            {"@monthly", "0 0 1 * *"},
            {"@weekly", "0 0 * * 0"},
            {"@daily", "0 0 * * *"},
            {"@midnight", "0 0 * * *"},
            {"@hourly", "0 * * * *"},
        }};
        std::string lower = util::to_lower(t);
        if (lower == "@reboot") {
            fail(
                fmt::format("cron expression \"{}\": @reboot runs once at boot and has no calendar "
                            "equivalent (systemd: OnBootSec=)",
                            text));
        }
        for (const auto& [macro, fields] : kMacros) {
            if (macro == lower) {
                expanded = fields;
            }
        }
        if (expanded.empty()) {
            fail(fmt::format(
                "cron expression \"{}\": unknown macro (known: @yearly @annually @monthly @weekly "
                "@daily @midnight @hourly)",
                text));
        }
        t = expanded;
    }
    auto fields = util::split_ws(t);
    if (fields.size() != 5) {
        fail(
            fmt::format("cron expression \"{}\": expected 5 fields (minute hour day-of-month month "
                        "day-of-week), got {}",
                        text, fields.size()));
    }
    constexpr const std::array<std::string_view, 1>* kNoNames = nullptr;
    Schedule s;
    s.minute = parse_cron_field(fields[0], kMinute, kNoNames, 0, text);
    s.hour = parse_cron_field(fields[1], kHour, kNoNames, 0, text);
    s.dom = parse_cron_field(fields[2], kDom, kNoNames, 0, text);
    s.month = parse_cron_field(fields[3], kMonth, &kMonthNames, 1, text);
    Mask dow = parse_cron_field(fields[4], kCronDow, &kCronDayNames, 0, text);
    if (dow & bit(7)) {
        dow = (dow & ~bit(7)) | bit(0);
    }
    s.dow = dow;
    s.day_or = s.dom != full(kDom) && s.dow != full(kDow);
    return s;
}

// One cron field from a value set. `star_step`: a repetition from the field's first value may be
// written "*/N". Day-of-month never is: cronie decides its day-of-month/day-of-week rule on a
// leading '*', so only an unrestricted field may start with one.
std::string cron_field(Mask m, const Field& f, bool allow_step, bool star_step) {
    if (m == full(f)) {
        return "*";
    }
    auto v = values(m, f);
    if (allow_step) {
        if (auto step = repetition_step(v, f)) {
            if (v.front() == f.lo && star_step) {
                return fmt::format("*/{}", *step);
            }
            return fmt::format("{}-{}/{}", v.front(), f.hi, *step);
        }
    }
    return runs(v, "-", [](int x) { return std::to_string(x); });
}

// ---------------------------------------------------------------------------------------------
// systemd calendar expressions (the subset that maps onto cron)

std::string cal_error(std::string_view expr, std::string_view why) {
    return fmt::format("calendar expression \"{}\": {}", expr, why);
}

Mask parse_sd_component(std::string_view text, const Field& f, std::string_view expr) {
    if (text.find('~') != std::string_view::npos) {
        fail(
            cal_error(expr, "'~' (days counted from the end of the month) has no cron equivalent"));
    }
    Mask m = 0;
    for (const auto& item : util::split(text, ',')) {
        auto slash = item.find('/');
        std::string_view base = std::string_view(item).substr(0, slash);
        int step = 1;
        if (slash != std::string::npos) {
            auto s = parse_digits(std::string_view(item).substr(slash + 1));
            if (!s || *s < 1) {
                fail(cal_error(expr, fmt::format("bad repetition \"{}\" in the {}", item, f.what)));
            }
            step = *s;
        }
        int a = f.lo;
        int b = f.hi;
        if (base == "*") {
            if (slash != std::string::npos) {
                fail(cal_error(expr,
                               fmt::format("\"{}\" is not valid; write {}/{}", item, f.lo, step)));
            }
        } else {
            auto dots = base.find("..");
            auto first = parse_digits(base.substr(0, dots));
            std::optional<int> last = first;
            if (dots != std::string_view::npos) {
                last = parse_digits(base.substr(dots + 2));
            } else if (slash != std::string::npos) {
                last = f.hi;
            }
            if (!first || !last) {
                fail(cal_error(expr, fmt::format("\"{}\" is not a valid {} (numbers, A..B, A/N "
                                                 "and lists of these)",
                                                 item, f.what)));
            }
            a = *first;
            b = *last;
            if (a < f.lo || b > f.hi || a > b) {
                fail(cal_error(expr, fmt::format("{} \"{}\" is outside {}..{} or runs backwards",
                                                 f.what, item, f.lo, f.hi)));
            }
        }
        for (int v = a; v <= b; v += step) {
            m |= bit(v);
        }
    }
    return m;
}

std::optional<int> sd_weekday(std::string_view name) {
    std::string lower = util::to_lower(name);
    for (std::size_t i = 0; i < 7; ++i) {
        if (lower == util::to_lower(kSdDayNames[i]) || lower == kSdDayLongNames[i]) {
            return static_cast<int>(i);
        }
    }
    return std::nullopt;
}

// Weekdays in cron numbering (bit 0 = Sunday); nullopt if the token is not a weekday list.
std::optional<Mask> parse_sd_weekdays(std::string_view text) {
    Mask m = 0;
    for (const auto& item : util::split(text, ',')) {
        std::string_view it = item;
        std::size_t sep = it.find("..");
        std::size_t sep_len = 2;
        if (sep == std::string_view::npos) {
            sep = it.find('-');
            sep_len = 1;
        }
        auto a = sd_weekday(it.substr(0, sep));
        auto b = sep == std::string_view::npos ? a : sd_weekday(it.substr(sep + sep_len));
        if (!a || !b || *a > *b) {
            return std::nullopt;
        }
        for (int p = *a; p <= *b; ++p) {
            m |= bit((p + 1) % 7);  // Monday-first position -> cron number
        }
    }
    return m;
}

bool zero_seconds(std::string_view s) {
    auto dot = s.find('.');
    std::string_view whole = s.substr(0, dot);
    if (whole.empty() || whole.find_first_not_of('0') != std::string_view::npos) {
        return false;
    }
    return dot == std::string_view::npos ||
           s.substr(dot + 1).find_first_not_of('0') == std::string_view::npos;
}

Schedule parse_calendar(std::string_view text) {
    std::string_view t = util::trim(text);
    if (t.empty()) {
        fail(cal_error(text, "empty"));
    }
    if (t.front() == '@') {
        fail(cal_error(text, "a single @EPOCH instant does not repeat; nothing to schedule"));
    }
    auto tokens = util::split_ws(t);
    static const std::array<std::pair<std::string_view, std::string_view>, 9> kShorthands = {{
        {"minutely", "*-*-* *:*:00"},
        {"hourly", "*-*-* *:00:00"},
        {"daily", "*-*-* 00:00:00"},
        {"weekly", "Mon *-*-* 00:00:00"},
        {"monthly", "*-*-01 00:00:00"},
        {"yearly", "*-01-01 00:00:00"},
        {"annually", "*-01-01 00:00:00"},
        {"quarterly", "*-01,04,07,10-01 00:00:00"},
        {"semiannually", "*-01,07-01 00:00:00"},
    }};
    std::string first = util::to_lower(tokens[0]);
    for (const auto& [name, expansion] : kShorthands) {
        if (first == name) {
            if (tokens.size() > 1) {
                fail(cal_error(text, fmt::format("time zone \"{}\": cron runs in the system's "
                                                 "local time zone and cannot follow another",
                                                 tokens[1])));
            }
            return parse_calendar(expansion);
        }
    }

    Schedule s;
    s.minute = bit(0);
    s.hour = bit(0);
    s.dom = full(kDom);
    s.month = full(kMonth);
    s.dow = full(kDow);
    std::size_t i = 0;
    auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (is_alpha(tokens[0][0])) {
        auto dow = parse_sd_weekdays(tokens[0]);
        if (!dow) {
            fail(cal_error(text, fmt::format("\"{}\" is not a weekday list (Mon, Mon..Fri, "
                                             "Sat,Sun) and cron cannot express a time zone",
                                             tokens[0])));
        }
        s.dow = *dow;
        ++i;
    }
    if (i < tokens.size() && tokens[i].find(':') == std::string::npos &&
        tokens[i].find('-') != std::string::npos) {
        const std::string& date = tokens[i];
        if (date.find('~') != std::string::npos) {
            fail(cal_error(text,
                           "'~' (days counted from the end of the month) has no cron equivalent"));
        }
        auto parts = util::split(date, '-');
        if (parts.size() == 3) {
            if (parts[0] != "*") {
                fail(cal_error(text, fmt::format("year \"{}\": cron has no year field", parts[0])));
            }
            parts.erase(parts.begin());
        }
        if (parts.size() != 2) {
            fail(cal_error(
                text, fmt::format("\"{}\" is not a date (YEAR-MONTH-DAY or MONTH-DAY)", date)));
        }
        s.month = parse_sd_component(parts[0], kMonth, text);
        s.dom = parse_sd_component(parts[1], kDom, text);
        ++i;
    }
    if (i < tokens.size() && tokens[i].find(':') != std::string::npos) {
        auto parts = util::split(tokens[i], ':');
        if (parts.size() != 2 && parts.size() != 3) {
            fail(cal_error(text,
                           fmt::format("\"{}\" is not a time (HOUR:MINUTE[:SECOND])", tokens[i])));
        }
        s.hour = parse_sd_component(parts[0], kHour, text);
        s.minute = parse_sd_component(parts[1], kMinute, text);
        if (parts.size() == 3 && !zero_seconds(parts[2])) {
            fail(cal_error(text, fmt::format("seconds \"{}\": cron runs at whole minutes, so "
                                             "only :00 can be exported",
                                             parts[2])));
        }
        ++i;
    }
    if (i == 0) {
        fail(cal_error(text, "expected [WEEKDAYS] [YEAR-MONTH-DAY] [HOUR:MINUTE[:SECOND]]"));
    }
    if (i < tokens.size()) {
        fail(cal_error(text, fmt::format("time zone \"{}\": cron runs in the system's local time "
                                         "zone and cannot follow another",
                                         tokens[i])));
    }
    return s;
}

std::string sd_component(Mask m, const Field& f) {
    if (m == full(f)) {
        return "*";
    }
    auto v = values(m, f);
    if (auto step = repetition_step(v, f)) {
        return fmt::format("{:02}/{}", v.front(), *step);
    }
    return runs(v, "..", [](int x) { return fmt::format("{:02}", x); });
}

std::string sd_weekdays(Mask dow) {
    std::vector<int> positions;  // Monday = 0
    for (int p = 0; p < 7; ++p) {
        if (dow & bit((p + 1) % 7)) {
            positions.push_back(p);
        }
    }
    return runs(positions, "..", [](int p) { return std::string(kSdDayNames[p]); });
}

// The shortest time between two runs, in minutes of local wall-clock time over eight years (so
// that leap days count), or nullopt if it runs less than twice in that span.
std::optional<std::int64_t> min_gap_minutes(const Schedule& s) {
    using namespace std::chrono;
    std::vector<std::int64_t> day_minutes;
    for (int h = 0; h < 24; ++h) {
        for (int m = 0; m < 60; ++m) {
            if ((s.hour & bit(h)) && (s.minute & bit(m))) {
                day_minutes.push_back(h * 60 + m);
            }
        }
    }
    if (day_minutes.empty()) {
        return std::nullopt;
    }
    // Every matching day has the same minutes, so only day boundaries add new gaps.
    std::int64_t best = std::numeric_limits<std::int64_t>::max();
    for (std::size_t i = 1; i < day_minutes.size(); ++i) {
        best = std::min(best, day_minutes[i] - day_minutes[i - 1]);
    }
    const sys_days start = 2024y / 1 / 1;
    const sys_days end = 2032y / 1 / 1;
    std::optional<std::int64_t> prev_last;
    int matching_days = 0;
    for (sys_days d = start; d < end; d += days{1}) {
        year_month_day ymd{d};
        if (!(s.month & bit(static_cast<int>(static_cast<unsigned>(ymd.month()))))) {
            continue;
        }
        bool dm = (s.dom & bit(static_cast<int>(static_cast<unsigned>(ymd.day())))) != 0;
        bool wm = (s.dow & bit(static_cast<int>(weekday{d}.c_encoding()))) != 0;
        if (s.day_or ? !(dm || wm) : !(dm && wm)) {
            continue;
        }
        ++matching_days;
        std::int64_t base = (d - start).count() * 1440;
        if (prev_last) {
            best = std::min(best, base + day_minutes.front() - *prev_last);
        }
        prev_last = base + day_minutes.back();
    }
    if (matching_days == 0 || (matching_days == 1 && day_minutes.size() == 1)) {
        return std::nullopt;
    }
    return best;
}

// ---------------------------------------------------------------------------------------------
// Validation and helpers shared by both exporters.

bool has_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

bool valid_name(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

std::string job_where(const JobSpec& j) {
    return fmt::format("schedule.jobs.{}", j.name);
}

// Runs `fn`, prefixing a ConfigError's message with the job's config location.
template <typename Fn>
auto for_job(const JobSpec& j, Fn fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const ConfigError& e) {
        throw ConfigError(fmt::format("{}: {}", job_where(j), e.what()));
    }
}

void validate_job(const JobSpec& j) {
    if (!valid_name(j.name)) {
        fail(fmt::format("schedule.jobs.{}: job names may only use a-z, 0-9, '_' and '-'", j.name));
    }
    auto bad = [&](const std::string& why) { fail(fmt::format("{}: {}", job_where(j), why)); };
    if (has_control(j.description)) {
        bad("the description must be one line without control characters");
    }
    if (has_control(j.schedule) || util::trim(j.schedule).empty()) {
        bad("the schedule must be one non-empty line");
    }
    if (j.kind == TaskKind::kBuiltin && !valid_name(j.builtin)) {
        bad(fmt::format("\"{}\" is not a built-in task name", j.builtin));
    }
    if (j.kind == TaskKind::kCommand) {
        if (j.argv.empty() || j.argv[0].empty()) {
            bad("a command job needs a program (argv[0])");
        }
        if (j.argv[0].find('/') != std::string::npos && j.argv[0].front() != '/') {
            bad(fmt::format("program \"{}\" must be an absolute path or a bare name", j.argv[0]));
        }
    }
    if (j.nice < -20 || j.nice > 19) {
        bad(fmt::format("nice {} is outside -20..19", j.nice));
    }
    if (j.io_level < 0 || j.io_level > 7) {
        bad(fmt::format("ionice level {} is outside 0..7", j.io_level));
    }
    if (j.cpu_quota_percent && *j.cpu_quota_percent < 1) {
        bad("the CPU quota must be at least 1%");
    }
    if (j.memory_max && *j.memory_max == 0) {
        bad("the memory limit must be more than 0 bytes");
    }
    if (j.retries < 0) {
        bad("retries cannot be negative");
    }
    if (j.retries > 0 && j.retry_delay < seconds(1)) {
        bad("the retry delay must be at least 1 s");
    }
    if (j.timeout < seconds(0) || j.randomized_delay < seconds(0)) {
        bad("timeouts and delays cannot be negative");
    }
}

void validate_jobs(const std::vector<JobSpec>& jobs) {
    std::set<std::string> seen;
    for (const auto& j : jobs) {
        validate_job(j);
        if (!seen.insert(j.name).second) {
            fail(fmt::format("schedule.jobs.{}: defined twice", j.name));
        }
    }
}

std::filesystem::path checked_path(const std::filesystem::path& p, std::string_view what) {
    if (p.empty() || !p.is_absolute() || has_control(p.native())) {
        throw UsageError(
            fmt::format("schedule export: {} \"{}\" must be an absolute path on one "
                        "line",
                        what, p.native()));
    }
    auto n = p.lexically_normal();
    std::string s = n.native();
    while (s.size() > 1 && s.back() == '/') {
        s.pop_back();
    }
    return s;
}

void validate_options(const ExportOptions& o) {
    checked_path(o.binary, "binary");
    if (o.config) {
        checked_path(*o.config, "config file");
    }
    for (const auto* account : {&o.user, &o.group}) {
        if (account->empty() || std::any_of(account->begin(), account->end(), [](char c) {
                auto u = static_cast<unsigned char>(c);
                return u <= 0x20 || u == 0x7f || c == '"' || c == '\'' || c == '\\' || c == '%';
            })) {
            throw UsageError(fmt::format(
                "schedule export: user/group \"{}\" must be a plain account name", *account));
        }
    }
}

std::string plural(int n, std::string_view word) {
    return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

std::string size_value(std::uint64_t bytes) {
    static constexpr std::array<std::pair<int, char>, 4> kUnits = {
        {{40, 'T'}, {30, 'G'}, {20, 'M'}, {10, 'K'}}};
    for (const auto& [shift, suffix] : kUnits) {
        std::uint64_t unit = std::uint64_t{1} << shift;
        if (bytes % unit == 0) {
            return fmt::format("{}{}", bytes / unit, suffix);
        }
    }
    return std::to_string(bytes);
}

bool under(const std::filesystem::path& p, std::string_view dir) {
    const std::string& s = p.native();
    return s == dir ||
           (s.size() > dir.size() && s.compare(0, dir.size(), dir) == 0 && s[dir.size()] == '/');
}

// ---------------------------------------------------------------------------------------------
// systemd unit text

// A path value for ReadWritePaths= and friends: specifiers escaped, quoted when needed, and no
// '$' handling (those settings do not expand variables).
std::string sd_path_word(const std::string& path, std::string_view prefix) {
    std::string w = std::string(prefix) + path;
    std::string q = systemd_quote(w);
    std::string out;
    // systemd_quote() doubled '$' for ExecStart=; paths take '$' literally.
    for (std::size_t i = 0; i < q.size(); ++i) {
        out += q[i];
        if (q[i] == '$' && i + 1 < q.size() && q[i + 1] == '$') {
            ++i;
        }
    }
    return out;
}

std::string sd_escape_specifiers(std::string_view s) {
    std::string out;
    for (char c : s) {
        out += c;
        if (c == '%') {
            out += '%';
        }
    }
    return out;
}

std::string exec_line(const std::vector<std::string>& argv, Specifiers sp) {
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) {
            out += ' ';
        }
        out += systemd_quote(a, sp);
    }
    return out;
}

std::vector<std::filesystem::path> normalized_paths(
    const std::map<std::string, std::vector<std::filesystem::path>>& m, const std::string& key,
    std::string_view what) {
    std::vector<std::filesystem::path> out;
    if (auto it = m.find(key); it != m.end()) {
        for (const auto& p : it->second) {
            out.push_back(checked_path(p, what));
        }
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

// The sandbox settings: everything read-only except `writes`; /home hidden unless a path needs
// it; a private /tmp unless a path lives in the real one.
void hardening(std::string& out, const std::vector<std::filesystem::path>& writes,
               const std::vector<std::filesystem::path>& reads) {
    bool needs_home = false;
    bool needs_tmp = false;
    for (const auto* list : {&writes, &reads}) {
        for (const auto& p : *list) {
            needs_home =
                needs_home || under(p, "/home") || under(p, "/root") || under(p, "/run/user");
            needs_tmp = needs_tmp || under(p, "/tmp") || under(p, "/var/tmp");
        }
    }
    out +=
        "# Sandbox: the whole file system is read-only except the paths this job writes ('-': a\n"
        "# missing path is skipped, so mlkeeper itself reports it instead of systemd failing with\n"
        "# 226/NAMESPACE). No PrivateDevices=: GPU jobs need /dev/nvidia*.\n";
    out += "ProtectSystem=strict\n";
    if (writes.empty()) {
        out += "# This job writes nowhere.\n";
    } else {
        out += "ReadWritePaths=";
        for (std::size_t i = 0; i < writes.size(); ++i) {
            out += (i ? " " : "") + sd_path_word(writes[i].native(), "-");
        }
        out += '\n';
    }
    out += fmt::format("ProtectHome={}\n", needs_home ? "read-only" : "yes");
    if (needs_tmp) {
        out += "# A path of this job lives under /tmp or /var/tmp, so /tmp cannot be private.\n";
    }
    out += fmt::format("PrivateTmp={}\n", needs_tmp ? "no" : "yes");
    out +=
        "NoNewPrivileges=yes\n"
        "ProtectKernelTunables=yes\n"
        "ProtectKernelModules=yes\n"
        "ProtectControlGroups=yes\n"
        "RestrictSUIDSGID=yes\n"
        "RestrictRealtime=yes\n"
        "RestrictNamespaces=yes\n"
        "LockPersonality=yes\n"
        "SystemCallArchitectures=native\n";
}

std::string unit_name(const JobSpec& j, std::string_view suffix) {
    return fmt::format("mlkeeper-{}.{}", j.name, suffix);
}

std::string generated_header(const JobSpec* j) {
    std::string from = j ? fmt::format(" from [{}]", job_where(*j)) : std::string();
    return fmt::format(
        "# Generated by `mlkeeper schedule export`{}.\n"
        "# Change the configuration and export again rather than editing this file.\n",
        from);
}

std::vector<std::string> on_calendar_lines(const JobSpec& j) {
    if (j.schedule_kind == ScheduleKind::kCron) {
        return cron_to_on_calendar(j.schedule);
    }
    return {std::string(util::trim(j.schedule))};
}

std::optional<Schedule> schedule_model(const JobSpec& j) {
    try {
        return j.schedule_kind == ScheduleKind::kCron ? parse_cron(j.schedule)
                                                      : parse_calendar(j.schedule);
    } catch (const ConfigError&) {
        return std::nullopt;  // a calendar form beyond the cron subset: gap unknown
    }
}

struct StartLimit {
    seconds interval;
    int burst;
};

StartLimit start_limit(const JobSpec& j) {
    const int burst = j.retries + 1;
    const seconds delays = j.retry_delay * j.retries;
    const seconds per_run = j.timeout > seconds(0) ? j.timeout + seconds(90) : seconds(3600);
    seconds interval = delays + per_run * burst;
    if (auto s = schedule_model(j)) {
        if (auto gap_min = min_gap_minutes(*s)) {
            seconds gap(*gap_min * 60);
            seconds healthy = gap - j.randomized_delay - seconds(60) -
                              (gap >= seconds(7200) ? seconds(3600) : seconds(0));
            if (healthy <= delays) {
                fail(fmt::format(
                    "{} x {} s of retry delay do not fit between two runs ({} s apart, less {} s "
                    "of randomized delay and slack); lower retries or retry_delay",
                    j.retries, j.retry_delay.count(), gap.count(), (gap - healthy).count()));
            }
            interval = std::min(interval, healthy);
        }
    }
    return {interval, burst};
}

bool is_builtin(const JobSpec& j, std::string_view task) {
    return j.kind == TaskKind::kBuiltin && j.builtin == task;
}

std::string service_unit(const JobSpec& j, const std::vector<JobSpec>& all,
                         const ExportOptions& o) {
    auto writes = normalized_paths(o.writes, j.name, "written path");
    auto reads = normalized_paths(o.reads, j.name, "read path");
    // The program and its config must stay visible too (ProtectHome=, PrivateTmp=).
    const std::string program = job_argv(j, o).front();
    if (program.front() == '/') {
        reads.push_back(std::filesystem::path(program).lexically_normal());
    }
    if (o.config && j.kind == TaskKind::kBuiltin) {
        reads.push_back(o.config->lexically_normal());
    }
    bool online = o.offline_jobs.count(j.name) == 0;

    std::string out = generated_header(&j);
    out += "[Unit]\n";
    std::string desc = j.description.empty()
                           ? fmt::format("mlkeeper job {}", j.name)
                           : fmt::format("mlkeeper {}: {}", j.name, j.description);
    out += fmt::format("Description={}\n", sd_escape_specifiers(desc));
    std::vector<std::string> after;
    if (online) {
        out += "Wants=network-online.target\n";
        after.push_back("network-online.target");
    }
    if (is_builtin(j, "gpu") || is_builtin(j, "health") || is_builtin(j, "maintain")) {
        after.push_back("nvidia-persistenced.service");  // ordering only, as the seed unit had
    }
    if (is_builtin(j, "maintain")) {
        // maintain runs the other tasks itself: ordering (never Wants=/Requires=, which would
        // start a second backup) makes it wait for a job unit already queued or running at the
        // same time, e.g. when persistent timers all catch up at boot. Only maintain orders
        // itself, so no cycle can form.
        for (const auto& other : all) {
            if (other.name != j.name && !is_builtin(other, "maintain")) {
                after.push_back(unit_name(other, "service"));
            }
        }
    }
    if (!after.empty()) {
        out += fmt::format("After={}\n", util::join(after, " "));
    }
    if (j.alert_on_failure) {
        out += "OnFailure=mlkeeper-alert@%n.service\n";
    }
    if (j.retries > 0) {
        auto limit = start_limit(j);
        out += fmt::format(
            "# At most {}: the start after the last retry would exceed this rate limit, which\n"
            "# marks the unit failed (and alerts) instead. The interval stays below the time\n"
            "# between two timer runs, so ordinary runs never hit it.\n",
            plural(limit.burst, "attempt"));
        out += fmt::format("StartLimitIntervalSec={}\nStartLimitBurst={}\n", limit.interval.count(),
                           limit.burst);
    }

    out += "\n[Service]\nType=oneshot\n";
    out += fmt::format("User={}\nGroup={}\n", o.user, o.group);
    out += fmt::format("ExecStart={}\n", exec_line(job_argv(j, o), Specifiers::kEscape));
    if (j.nice != 0) {
        out += fmt::format("Nice={}\n", j.nice);
    }
    switch (j.io_class) {
        case IoClass::kNone:
            break;
        case IoClass::kRealtime:
            out += fmt::format("IOSchedulingClass=realtime\nIOSchedulingPriority={}\n", j.io_level);
            break;
        case IoClass::kBestEffort:
            out +=
                fmt::format("IOSchedulingClass=best-effort\nIOSchedulingPriority={}\n", j.io_level);
            break;
        case IoClass::kIdle:
            out += "IOSchedulingClass=idle\n";
            break;
    }
    if (j.memory_max) {
        out += fmt::format("MemoryMax={}\n", size_value(*j.memory_max));
    }
    if (j.cpu_quota_percent) {
        out += fmt::format("CPUQuota={}%\n", *j.cpu_quota_percent);
    }
    if (j.timeout > seconds(0)) {
        out += fmt::format("TimeoutStartSec={}\n", j.timeout.count());
    }
    if (j.retries > 0) {
        out += fmt::format("Restart=on-failure\nRestartSec={}\n", j.retry_delay.count());
        if (o.systemd_version >= 254) {
            out += "RestartMode=direct\n";
        } else {
            out +=
                "# systemd < 254 cannot grow RestartSec= per attempt (mlkeeper agent doubles "
                "it).\n";
        }
    }
    hardening(out, writes, reads);
    return out;
}

std::string timer_unit(const JobSpec& j) {
    std::string out = generated_header(&j);
    out += "[Unit]\n";
    out += fmt::format("Description=Schedule of {}\n", unit_name(j, "service"));
    out += "\n[Timer]\n";
    for (const auto& line : on_calendar_lines(j)) {
        out += fmt::format("OnCalendar={}\n", sd_escape_specifiers(line));
    }
    out += fmt::format("Persistent={}\n", j.persistent ? "true" : "false");
    if (j.randomized_delay > seconds(0)) {
        out += fmt::format("RandomizedDelaySec={}\n", j.randomized_delay.count());
    }
    out += "AccuracySec=1min\n";
    out += "\n[Install]\nWantedBy=timers.target\n";
    return out;
}

std::string alert_unit(const ExportOptions& o) {
    std::vector<std::filesystem::path> writes;
    for (const auto& p : o.alert_writes) {
        writes.push_back(checked_path(p, "alert hook path"));
    }
    std::sort(writes.begin(), writes.end());
    writes.erase(std::unique(writes.begin(), writes.end()), writes.end());

    std::vector<std::string> argv = {o.binary.lexically_normal().native()};
    if (o.config) {
        argv.push_back("--config");
        argv.push_back(o.config->lexically_normal().native());
    }
    for (const char* a : {"alert", "send", "--key", "unit_failed_%i", "--severity", "critical",
                          "--summary", "%i failed", "--check", "systemd OnFailure", "--action",
                          "Read journalctl -u %i, fix the cause, then systemctl reset-failed %i",
                          "--field", "unit=%i"}) {
        argv.emplace_back(a);
    }
    std::string out = generated_header(nullptr);
    out +=
        "# Started by OnFailure= of the mlkeeper job units, with the failed unit as instance\n"
        "# (mlkeeper-alert@mlkeeper-backup.service.service).\n";
    out += "[Unit]\nDescription=mlkeeper alert: %i failed\n";
    out += "Wants=network-online.target\nAfter=network-online.target\n";
    out += "\n[Service]\nType=oneshot\n";
    out += fmt::format("User={}\nGroup={}\n", o.user, o.group);
    out += fmt::format("ExecStart={}\n", exec_line(argv, Specifiers::kKeep));
    out += "TimeoutStartSec=300\n";
    std::vector<std::filesystem::path> reads = {o.binary.lexically_normal()};
    if (o.config) {
        reads.push_back(o.config->lexically_normal());
    }
    hardening(out, writes, reads);
    return out;
}

// ---------------------------------------------------------------------------------------------
// crontab text

std::string cron_schedule(const JobSpec& j) {
    if (j.schedule_kind == ScheduleKind::kCalendar) {
        return calendar_to_cron(j.schedule);
    }
    if (util::to_lower(util::trim(j.schedule)) == "@reboot") {
        return "@reboot";
    }
    Schedule s = parse_cron(j.schedule);
    return fmt::format("{} {} {} {} {}", cron_field(s.minute, kMinute, true, true),
                       cron_field(s.hour, kHour, true, true), cron_field(s.dom, kDom, true, false),
                       cron_field(s.month, kMonth, true, true),
                       cron_field(s.dow, kDow, false, false));
}

std::string cron_line(const JobSpec& j, const ExportOptions& o) {
    std::vector<std::string> words;
    auto add = [&](std::initializer_list<std::string> ws) {
        for (const auto& w : ws) {
            words.push_back(cron_quote(w));
        }
    };
    std::string cmd;
    if (j.randomized_delay > seconds(0)) {
        // `od` instead of $RANDOM: cron's /bin/sh may be dash, and each host must draw its own.
        cmd += fmt::format("sleep $(($(od -An -N4 -tu4 /dev/urandom) \\% {})) && ",
                           j.randomized_delay.count());
    }
    auto lock = checked_path(o.lock_dir, "lock dir") / fmt::format("mlkeeper-{}.lock", j.name);
    auto log = checked_path(o.log_dir, "log dir") / fmt::format("{}.log", j.name);
    add({"flock", "-n", lock.native()});
    if (j.timeout > seconds(0)) {
        // As systemd: SIGTERM at the timeout, SIGKILL 90 s later (TimeoutStopSec's default).
        add({"timeout", "-k", "90", std::to_string(j.timeout.count())});
    }
    if (j.nice != 0) {
        add({"nice", "-n", std::to_string(j.nice)});
    }
    switch (j.io_class) {
        case IoClass::kNone:
            break;
        case IoClass::kRealtime:
            add({"ionice", "-c", "1", "-n", std::to_string(j.io_level)});
            break;
        case IoClass::kBestEffort:
            add({"ionice", "-c", "2", "-n", std::to_string(j.io_level)});
            break;
        case IoClass::kIdle:
            add({"ionice", "-c", "3"});
            break;
    }
    for (const auto& a : job_argv(j, o)) {
        words.push_back(cron_quote(a));
    }
    cmd += util::join(words, " ");
    cmd += fmt::format(" >> {} 2>&1", cron_quote(log.native()));
    // Debian's cron (Vixie 3.0) reads at most 1000 bytes of command.
    if (cmd.size() >= 1000) {
        fail(fmt::format("the cron command is {} bytes; Vixie cron cuts commands at 999",
                         cmd.size()));
    }
    return fmt::format("{} {} {}", cron_schedule(j), o.user, cmd);
}

std::string cron_comment(const JobSpec& j) {
    std::string out = fmt::format(
        "# {}{}{} ({}{})\n", j.name, j.description.empty() ? "" : ": ", j.description,
        j.schedule_kind == ScheduleKind::kCalendar ? "OnCalendar=" : "", util::trim(j.schedule));
    std::vector<std::string> lost;
    if (j.persistent) {
        lost.push_back("catch-up of runs missed while down (Persistent=)");
    }
    if (j.memory_max) {
        lost.push_back("MemoryMax=" + size_value(*j.memory_max));
    }
    if (j.cpu_quota_percent) {
        lost.push_back(fmt::format("CPUQuota={}%", *j.cpu_quota_percent));
    }
    if (j.retries > 0) {
        lost.push_back(fmt::format("{} {}", j.retries, j.retries == 1 ? "retry" : "retries"));
    }
    if (!lost.empty()) {
        out += "# Not enforced by cron: " + util::join(lost, ", ") + "\n";
    }
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string systemd_quote(std::string_view word, Specifiers specifiers) {
    bool quote = word.empty() || word == ";";
    std::string body;
    for (char c : word) {
        auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '%':
                body += specifiers == Specifiers::kEscape ? "%%" : "%";
                break;
            case '$':
                body += "$$";
                break;
            case '\\':
                body += "\\\\";
                quote = true;
                break;
            case '"':
                body += "\\\"";
                quote = true;
                break;
            case '\n':
                body += "\\n";
                quote = true;
                break;
            case '\t':
                body += "\\t";
                quote = true;
                break;
            case '\r':
                body += "\\r";
                quote = true;
                break;
            case ' ':
            case '\'':
                body += c;
                quote = true;
                break;
            default:
                if (u < 0x20 || u == 0x7f) {
                    body += fmt::format("\\x{:02x}", u);
                    quote = true;
                } else {
                    body += c;
                }
        }
    }
    return quote ? "\"" + body + "\"" : body;
}

std::string cron_quote(std::string_view word) {
    for (char c : word) {
        auto u = static_cast<unsigned char>(c);
        if (c == '\\') {
            fail(fmt::format("\"{}\": a backslash cannot be written portably in a crontab", word));
        }
        if (u < 0x20 || u == 0x7f) {
            fail(fmt::format("\"{}\": control characters cannot be written in a crontab", word));
        }
    }
    auto safe = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("_@+=:,./-").find(c) != std::string_view::npos;
    };
    std::string out;
    if (!word.empty() && std::all_of(word.begin(), word.end(), safe)) {
        out = word;
    } else {
        out = "'";
        for (char c : word) {
            if (c == '\'') {
                out += "'\"'\"'";
            } else if (c == '%') {
                out += "\\%";
            } else {
                out += c;
            }
        }
        out += "'";
    }
    return out;
}

std::vector<std::string> job_argv(const JobSpec& job, const ExportOptions& opts) {
    if (job.kind == TaskKind::kCommand) {
        return job.argv;
    }
    std::vector<std::string> argv = {opts.binary.lexically_normal().native()};
    if (opts.config) {
        // Global options go before the subcommand, where no extra argument ("--") can hide them.
        argv.push_back("--config");
        argv.push_back(opts.config->lexically_normal().native());
    }
    argv.push_back(job.builtin);
    argv.insert(argv.end(), job.argv.begin(), job.argv.end());
    return argv;
}

std::vector<std::string> cron_to_on_calendar(std::string_view cron) {
    Schedule s = parse_cron(cron);
    std::string time =
        fmt::format("{}:{}:00", sd_component(s.hour, kHour), sd_component(s.minute, kMinute));
    std::string month = sd_component(s.month, kMonth);
    if (s.day_or) {
        return {fmt::format("{} *-{}-* {}", sd_weekdays(s.dow), month, time),
                fmt::format("*-{}-{} {}", month, sd_component(s.dom, kDom), time)};
    }
    std::string weekdays = s.dow == full(kDow) ? "" : sd_weekdays(s.dow) + " ";
    return {fmt::format("{}*-{}-{} {}", weekdays, month, sd_component(s.dom, kDom), time)};
}

std::string calendar_to_cron(std::string_view on_calendar) {
    Schedule s = parse_calendar(on_calendar);
    if (s.dom != full(kDom) && s.dow != full(kDow)) {
        fail(cal_error(on_calendar,
                       "restricts both the weekday and the day of the month; cron would run on "
                       "days matching either, systemd only on days matching both"));
    }
    return fmt::format("{} {} {} {} {}", cron_field(s.minute, kMinute, true, true),
                       cron_field(s.hour, kHour, true, true), cron_field(s.dom, kDom, true, false),
                       cron_field(s.month, kMonth, true, true),
                       cron_field(s.dow, kDow, false, false));
}

std::vector<UnitFile> systemd_units(const std::vector<JobSpec>& jobs, const ExportOptions& opts) {
    validate_options(opts);
    validate_jobs(jobs);
    std::vector<UnitFile> out;
    bool any_alert = false;
    for (const auto& j : jobs) {
        for_job(j, [&] {
            out.push_back({unit_name(j, "service"), service_unit(j, jobs, opts)});
            out.push_back({unit_name(j, "timer"), timer_unit(j)});
        });
        any_alert = any_alert || j.alert_on_failure;
    }
    if (any_alert) {
        out.push_back({"mlkeeper-alert@.service", alert_unit(opts)});
    }
    return out;
}

std::string crontab(const std::vector<JobSpec>& jobs, const ExportOptions& opts) {
    validate_options(opts);
    validate_jobs(jobs);
    if (has_control(opts.mailto) || opts.mailto.find('"') != std::string::npos) {
        throw UsageError("schedule export: MAILTO must be one line without quotes");
    }
    std::string out =
        "# /etc/cron.d/mlkeeper: mlkeeper's scheduled jobs for cron. Generated by\n"
        "# `mlkeeper schedule export --cron`; change the configuration and export again rather\n"
        "# than editing this file. Install as /etc/cron.d/mlkeeper (root-owned, mode 0644; cron\n"
        "# ignores names with a dot). Fields: minute hour day-of-month month day-of-week user\n"
        "# command, in the system's local time.\n"
        "# flock -n skips a run while the previous one still holds its lock (as systemd and\n"
        "# `mlkeeper agent` do); output is appended to one log per job. Failures are reported by\n"
        "# mlkeeper's own [alerts]; crashes and timeouts are not (systemd's OnFailure= hook is).\n";
    out += "SHELL=/bin/sh\n";
    out += "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n";
    out += opts.mailto.empty() ? std::string("MAILTO=\"\"\n")
                               : fmt::format("MAILTO={}\n", opts.mailto);
    for (const auto& j : jobs) {
        for_job(j, [&] {
            out += '\n';
            out += cron_comment(j);
            out += cron_line(j, opts) + "\n";
        });
    }
    return out;
}

}  // namespace mlk::sched
