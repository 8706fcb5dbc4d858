#include "mlkeeper/sched/calendar_spec.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <tuple>
#include <utility>

#include "mlkeeper/sched/civil_time.hpp"

namespace mlk::sched {

namespace {

constexpr int kBitsWeekdays = 127;
constexpr int kMinYear = 1970;
constexpr int kMaxYear = 2199;
// systemd refuses longer comma lists (a recursion limit in its parser).
constexpr unsigned kComponentsMax = 240;
constexpr int kUsecPerSec = 1000000;
// systemd's USEC_TIMESTAMP_FORMATTABLE_MAX: 9999-12-30 23:59:59 UTC.
constexpr std::int64_t kTimestampFormattableMax = 253402214399000000LL;
// systemd gives up (EDEADLK) after this many rounds of its search.
constexpr unsigned kMaxCalendarIterations = 1000;

std::string make_message(CalendarError::Stage stage, const std::string& expression, int code) {
    const std::string reason = std::generic_category().message(code);
    if (stage == CalendarError::Stage::kParse) {
        return "Failed to parse calendar specification '" + expression + "': " + reason;
    }
    return "Failed to determine next elapse for '" + expression + "': " + reason;
}

char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// isspace() in the C locale.
bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool equal_no_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii_lower(x) == ascii_lower(y);
           });
}

// systemd's startswith_no_case(): the rest of `s` after `prefix`, or nullptr.
const char* starts_with_no_case(const char* s, std::string_view prefix) {
    for (char c : prefix) {
        if (*s == '\0' || ascii_lower(*s) != ascii_lower(c)) {
            return nullptr;
        }
        ++s;
    }
    return s;
}

// systemd's endswith_no_case(): where `suffix` starts in `s`, or npos.
std::size_t ends_with_no_case(std::string_view s, std::string_view suffix) {
    if (s.size() < suffix.size() || !equal_no_case(s.substr(s.size() - suffix.size()), suffix)) {
        return std::string_view::npos;
    }
    return s.size() - suffix.size();
}

// strtoul(p, &end, 10) as glibc implements it: leading white space, an optional sign (a minus
// negates modulo 2^64), ERANGE on overflow. Returns 0, -EINVAL (no digits) or -ERANGE.
int parse_one_number(const char* p, const char** end, unsigned long* ret) {
    const char* s = p;
    while (is_space(*s)) {
        ++s;
    }
    bool negative = false;
    if (*s == '+' || *s == '-') {
        negative = *s == '-';
        ++s;
    }
    if (!is_digit(*s)) {
        return -EINVAL;
    }
    unsigned long value = 0;
    bool overflow = false;
    while (is_digit(*s)) {
        const unsigned long digit = static_cast<unsigned long>(*s - '0');
        if (value > (ULONG_MAX - digit) / 10) {
            overflow = true;
        } else {
            value = value * 10 + digit;
        }
        ++s;
    }
    if (overflow) {
        return -ERANGE;
    }
    *ret = negative ? 0UL - value : value;
    *end = s;
    return 0;
}

}  // namespace

int parse_fractional_part(const char** p, std::size_t digits, unsigned* res) {
    const char* s = *p;
    unsigned val = 0;
    for (std::size_t i = 0; i < digits; ++i, ++s) {
        if (!is_digit(*s)) {
            if (i == 0) {
                return -EINVAL;
            }
            for (; i < digits; ++i) {
                val *= 10;
            }
            break;
        }
        val = val * 10 + static_cast<unsigned>(*s - '0');
    }
    if (*s >= '5' && *s <= '9') {
        ++val;
    }
    while (is_digit(*s)) {
        ++s;
    }
    *p = s;
    *res = val;
    return 0;
}

CalendarError::CalendarError(Stage stage, std::string expression, int code)
    : std::runtime_error(make_message(stage, expression, code)),
      stage_(stage),
      expression_(std::move(expression)),
      code_(code) {}

// ---------------------------------------------------------------------------------------------
// Parsing: the grammar of calendarspec.c, over a NUL-terminated copy of the text.

class CalendarParser {
  public:
    using Component = CalendarSpec::Component;
    using Chain = CalendarSpec::Chain;

    explicit CalendarParser(CalendarSpec& spec) : c_(spec) {}

    int parse(const std::string& text, const util::TimeZone& local) {
        std::string body = text;
        const std::size_t utc = ends_with_no_case(text, " UTC");
        if (utc != std::string_view::npos) {
            c_.utc_ = true;
            body = text.substr(0, utc);
        } else {
            const ZoneNames names = zone_names(local);
            const std::string& std_name = names.standard;
            const std::string& dst_name = names.daylight;
            int j = 0;
            std::size_t e = std::string_view::npos;
            for (; j <= 1; ++j) {
                const std::string& name = j == 0 ? std_name : dst_name;
                if (name.empty()) {
                    continue;
                }
                e = ends_with_no_case(text, name);
                if (e == std::string_view::npos || e == 0 || text[e - 1] != ' ') {
                    continue;
                }
                break;
            }
            if (j <= 1) {
                body = text.substr(0, e - 1);
                c_.dst_ = j;
                c_.dst_abbrev_ = j == 0 ? std_name : dst_name;
            } else {
                const std::size_t last_space = text.rfind(' ');
                if (last_space != std::string::npos) {
                    const std::string_view name = std::string_view(text).substr(last_space + 1);
                    if (std::optional<util::TimeZone> zone = load_systemd_timezone(name)) {
                        c_.timezone_name_ = std::string(name);
                        c_.zone_ = std::move(*zone);
                        body = text.substr(0, last_space);
                    }
                }
            }
        }

        if (body.empty()) {
            return -EINVAL;
        }
        if (int r = parse_body(body); r < 0) {
            return r;
        }
        normalize();
        return valid() ? 0 : -EINVAL;
    }

  private:
    static void add_const(Chain& chain, int value) { chain.push_back(Component{value, -1, 0}); }

    void time_zero() {
        add_const(c_.hour_, 0);
        add_const(c_.minute_, 0);
        add_const(c_.microsecond_, 0);
    }

    int parse_body(const std::string& body) {
        if (equal_no_case(body, "minutely")) {
            add_const(c_.microsecond_, 0);
        } else if (equal_no_case(body, "hourly")) {
            add_const(c_.minute_, 0);
            add_const(c_.microsecond_, 0);
        } else if (equal_no_case(body, "daily")) {
            time_zero();
        } else if (equal_no_case(body, "monthly")) {
            add_const(c_.day_, 1);
            time_zero();
        } else if (equal_no_case(body, "annually") || equal_no_case(body, "yearly") ||
                   equal_no_case(body, "anually")) {
            add_const(c_.month_, 1);
            add_const(c_.day_, 1);
            time_zero();
        } else if (equal_no_case(body, "weekly")) {
            c_.weekdays_bits_ = 1;
            time_zero();
        } else if (equal_no_case(body, "quarterly")) {
            for (int m : {1, 4, 7, 10}) {
                add_const(c_.month_, m);
            }
            add_const(c_.day_, 1);
            time_zero();
        } else if (equal_no_case(body, "biannually") || equal_no_case(body, "bi-annually") ||
                   equal_no_case(body, "semiannually") || equal_no_case(body, "semi-annually")) {
            add_const(c_.month_, 1);
            add_const(c_.month_, 7);
            add_const(c_.day_, 1);
            time_zero();
        } else {
            const char* p = body.c_str();
            c_.weekdays_bits_ = 0;
            if (int r = parse_weekdays(&p); r < 0) {
                return r;
            }
            int r = parse_date(&p);
            if (r < 0) {
                return r;
            }
            if (r == 0) {
                if (r = parse_time(&p); r < 0) {
                    return r;
                }
            }
            if (*p != '\0') {
                return -EINVAL;
            }
        }
        return 0;
    }

    int parse_weekdays(const char** p) {
        static constexpr struct {
            std::string_view name;
            int nr;
        } kDays[] = {{"Monday", 0},    {"Mon", 0}, {"Tuesday", 1},  {"Tue", 1},
                     {"Wednesday", 2}, {"Wed", 2}, {"Thursday", 3}, {"Thu", 3},
                     {"Friday", 4},    {"Fri", 4}, {"Saturday", 5}, {"Sat", 5},
                     {"Sunday", 6},    {"Sun", 6}};
        int l = -1;
        bool first = true;
        for (;;) {
            std::size_t i = 0;
            for (; i < std::size(kDays); ++i) {
                if (starts_with_no_case(*p, kDays[i].name) == nullptr) {
                    continue;
                }
                const std::size_t skip = kDays[i].name.size();
                const char next = (*p)[skip];
                if (next != '\0' && next != '-' && next != '.' && next != ',' && next != ' ') {
                    return -EINVAL;
                }
                c_.weekdays_bits_ |= 1 << kDays[i].nr;
                if (l >= 0) {
                    if (l > kDays[i].nr) {
                        return -EINVAL;
                    }
                    for (int j = l + 1; j < kDays[i].nr; ++j) {
                        c_.weekdays_bits_ |= 1 << j;
                    }
                }
                *p += skip;
                break;
            }
            if (i >= std::size(kDays)) {
                return first ? 0 : -EINVAL;  // no weekday: the date follows
            }
            if (**p == '\0') {
                return 0;
            }
            if (**p == ' ') {
                *p += std::strspn(*p, " ");
                return 0;
            }
            if (**p == '.') {
                if (l >= 0 || (*p)[1] != '.') {
                    return -EINVAL;
                }
                l = kDays[i].nr;
                *p += 2;
            } else if (**p == '-') {  // "Mon-Fri", the old range syntax
                if (l >= 0) {
                    return -EINVAL;
                }
                l = kDays[i].nr;
                *p += 1;
            } else if (**p == ',') {
                l = -1;
                *p += 1;
            }
            if (**p == '\0' || **p == ' ') {  // a trailing comma is fine, an open range is not
                *p += std::strspn(*p, " ");
                return l < 0 ? 0 : -EINVAL;
            }
            first = false;
        }
    }

    static int parse_component_decimal(const char** p, bool usec, int* res) {
        if (!is_digit(**p)) {
            return -EINVAL;
        }
        unsigned long value = 0;
        const char* e = nullptr;
        if (int r = parse_one_number(*p, &e, &value); r < 0) {
            return r;
        }
        if (usec) {
            if (value > ULONG_MAX / kUsecPerSec) {
                return -ERANGE;
            }
            value *= kUsecPerSec;
            if (e[0] == '.' && e[1] != '.') {  // one '.' is a decimal point, ".." a range
                ++e;
                unsigned add = 0;
                if (int r = parse_fractional_part(&e, 6, &add); r < 0) {
                    return r;
                }
                if (add + value < value) {
                    return -ERANGE;
                }
                value += add;
            }
        }
        if (value > static_cast<unsigned long>(INT_MAX)) {
            return -ERANGE;
        }
        *p = e;
        *res = static_cast<int>(value);
        return 0;
    }

    static int parse_components(const char** p, bool usec, unsigned nesting, Chain& chain) {
        for (;; ++nesting) {
            if (nesting > kComponentsMax) {
                return -ENOBUFS;
            }
            const char* e = *p;
            int start = 0;
            int stop = -1;
            int repeat = 0;
            if (int r = parse_component_decimal(&e, usec, &start); r < 0) {
                return r;
            }
            if (e[0] == '.' && e[1] == '.') {
                e += 2;
                if (int r = parse_component_decimal(&e, usec, &stop); r < 0) {
                    return r;
                }
                repeat = usec ? kUsecPerSec : 1;
            }
            if (*e == '/') {
                ++e;
                if (int r = parse_component_decimal(&e, usec, &repeat); r < 0) {
                    return r;
                }
                if (repeat == 0) {
                    return -ERANGE;
                }
            } else {
                if (start > INT_MAX - repeat) {
                    return -ERANGE;
                }
                // Without a repeat the seconds step by whole seconds; a shorter range is empty.
                if (usec && stop >= 0 && start + repeat > stop) {
                    return -EINVAL;
                }
            }
            if (*e != '\0' && *e != ' ' && *e != ',' && *e != '-' && *e != '~' && *e != ':') {
                return -EINVAL;
            }
            chain.push_back(Component{start, stop, repeat});
            *p = e;
            if (*e != ',') {
                return 0;
            }
            *p += 1;
        }
    }

    static int parse_chain(const char** p, bool usec, Chain& chain) {
        chain.clear();
        if (**p == '*') {
            if (usec) {
                chain.push_back(Component{0, -1, kUsecPerSec});
            }
            *p += 1;
            return 0;
        }
        return parse_components(p, usec, 0, chain);
    }

    // The date part, or "@EPOCH" (then 1: no time follows). 0 with *p unmoved when the text turns
    // out to be a time.
    int parse_date(const char** p) {
        const char* t = *p;
        if (*t == '\0') {
            return 0;
        }
        if (*t == '@') {
            unsigned long value = 0;
            if (int r = parse_one_number(t + 1, &t, &value); r < 0) {
                return r;
            }
            if (int r = from_epoch(static_cast<std::int64_t>(value)); r < 0) {
                return r;
            }
            *p = t;
            return 1;
        }
        Chain first;
        Chain second;
        Chain third;
        if (int r = parse_chain(&t, false, first); r < 0) {
            return r;
        }
        if (*t == '\0' || *t == ':') {
            return 0;
        }
        if (*t == '~') {
            c_.end_of_month_ = true;
        } else if (*t != '-') {
            return -EINVAL;
        }
        ++t;
        if (int r = parse_chain(&t, false, second); r < 0) {
            return r;
        }
        if (*t == '\0' || *t == ' ') {  // two parts: month and day
            *p = t + std::strspn(t, " ");
            c_.month_ = std::move(first);
            c_.day_ = std::move(second);
            return 0;
        }
        if (c_.end_of_month_) {
            return -EINVAL;
        }
        if (*t == '~') {
            c_.end_of_month_ = true;
        } else if (*t != '-') {
            return -EINVAL;
        }
        ++t;
        if (int r = parse_chain(&t, false, third); r < 0) {
            return r;
        }
        if (*t != '\0' && *t != ' ') {
            return -EINVAL;
        }
        *p = t + std::strspn(t, " ");
        c_.year_ = std::move(first);
        c_.month_ = std::move(second);
        c_.day_ = std::move(third);
        return 0;
    }

    int parse_time(const char** p) {
        const char* t = *p;
        Chain h;
        Chain m;
        Chain s;
        if (*t == '\0') {  // no time at all: 00:00:00
            add_const(h, 0);
            add_const(m, 0);
            add_const(s, 0);
        } else {
            if (int r = parse_chain(&t, false, h); r < 0) {
                return r;
            }
            if (*t != ':') {
                return -EINVAL;
            }
            ++t;
            if (int r = parse_chain(&t, false, m); r < 0) {
                return r;
            }
            if (*t == '\0') {
                add_const(s, 0);
            } else {
                if (*t != ':') {
                    return -EINVAL;
                }
                ++t;
                if (int r = parse_chain(&t, true, s); r < 0) {
                    return r;
                }
                if (*t != '\0') {
                    return -EINVAL;
                }
            }
        }
        *p = t;
        c_.hour_ = std::move(h);
        c_.minute_ = std::move(m);
        c_.microsecond_ = std::move(s);
        return 0;
    }

    // "@EPOCH": that one second, in UTC, as gmtime_r() splits it.
    int from_epoch(std::int64_t t) {
        const std::int64_t days = t >= 0 ? t / 86400 : -((-(t + 1)) / 86400) - 1;
        const CivilDate date = civil_from_days(days);
        if (date.year - 1900 > INT_MAX || date.year - 1900 < INT_MIN || date.year > INT_MAX) {
            return -ERANGE;  // gmtime_r() overflows, or the year does not fit
        }
        const std::int64_t secs = t - days * 86400;
        c_.year_ = {Component{static_cast<int>(date.year), -1, 0}};
        c_.month_ = {Component{date.month, -1, 0}};
        c_.day_ = {Component{date.day, -1, 0}};
        c_.hour_ = {Component{static_cast<int>(secs / 3600), -1, 0}};
        c_.minute_ = {Component{static_cast<int>(secs / 60 % 60), -1, 0}};
        c_.microsecond_ = {Component{static_cast<int>(secs % 60) * kUsecPerSec, -1, 0}};
        c_.utc_ = true;
        return 0;
    }

    static void normalize_chain(Chain& chain) {
        for (Component& i : chain) {
            if (i.stop > i.start && i.repeat > 0) {
                i.stop -= (i.stop - i.start) % i.repeat;  // a range is a whole number of steps
            }
            if ((i.stop > i.start && i.repeat > 0 && i.start + i.repeat > i.stop) ||
                i.start == i.stop) {
                i.repeat = 0;  // the step never fires, or the range is a single value
                i.stop = -1;
            }
        }
        if (chain.size() <= 1) {
            return;
        }
        std::sort(chain.begin(), chain.end(), [](const Component& a, const Component& b) {
            return std::tie(a.start, a.stop, a.repeat) < std::tie(b.start, b.stop, b.repeat);
        });
        chain.erase(std::unique(chain.begin(), chain.end()), chain.end());
    }

    void normalize() {
        if (c_.weekdays_bits_ <= 0 || c_.weekdays_bits_ >= kBitsWeekdays) {
            c_.weekdays_bits_ = -1;
        }
        if (c_.end_of_month_ && c_.day_.empty()) {
            c_.end_of_month_ = false;
        }
        for (Component& y : c_.year_) {  // 12 -> 2012, 89 -> 1989
            for (int* v : {&y.start, &y.stop}) {
                if (*v >= 0 && *v < 70) {
                    *v += 2000;
                } else if (*v >= 70 && *v < 100) {
                    *v += 1900;
                }
            }
        }
        for (Chain* chain :
             {&c_.year_, &c_.month_, &c_.day_, &c_.hour_, &c_.minute_, &c_.microsecond_}) {
            normalize_chain(*chain);
        }
    }

    static bool chain_valid(const Chain& chain, int from, int to, bool end_of_month) {
        for (const Component& c : chain) {
            // Counted from the end of the month, at most the 28th last day; systemd applies this
            // cut once more for every further element of the list, and so do we.
            if (end_of_month) {
                to -= 3;
            }
            if (c.start < from || c.start > to || c.repeat > to - from) {
                return false;
            }
            if (c.stop >= 0) {
                if (c.stop < from || c.stop > to || c.start + c.repeat > c.stop) {
                    return false;
                }
            } else if (end_of_month ? c.start - c.repeat < from : c.start + c.repeat > to) {
                return false;
            }
        }
        return true;
    }

    bool valid() const {
        return chain_valid(c_.year_, kMinYear, kMaxYear, false) &&
               chain_valid(c_.month_, 1, 12, false) &&
               chain_valid(c_.day_, 1, 31, c_.end_of_month_) &&
               chain_valid(c_.hour_, 0, 23, false) && chain_valid(c_.minute_, 0, 59, false) &&
               chain_valid(c_.microsecond_, 0, 60 * kUsecPerSec - 1, false);
    }

    CalendarSpec& c_;
};

CalendarSpec CalendarSpec::parse(std::string_view text) {
    return parse(text, util::TimeZone::local());
}

CalendarSpec CalendarSpec::parse(std::string_view text, const util::TimeZone& local) {
    // systemd sees a C string: nothing after a NUL exists for it.
    const std::string expr(text.substr(0, text.find('\0')));
    CalendarSpec spec(local);
    CalendarParser parser(spec);
    if (int r = parser.parse(expr, local); r < 0) {
        throw CalendarError(CalendarError::Stage::kParse, std::string(text), -r);
    }
    if (spec.utc_) {
        spec.zone_ = util::TimeZone::utc();
    }
    spec.text_ = std::string(text);
    return spec;
}

// ---------------------------------------------------------------------------------------------
// Formatting.

namespace {

void format_weekdays(std::string& out, int bits) {
    static constexpr const char* kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    bool need_comma = false;
    int l = -1;
    int x = 0;
    for (; x < 7; ++x) {
        if ((bits & (1 << x)) != 0) {
            if (l < 0) {
                if (need_comma) {
                    out += ',';
                }
                need_comma = true;
                out += kDays[x];
                l = x;
            }
        } else if (l >= 0) {
            if (x > l + 1) {
                out += x > l + 2 ? ".." : ",";
                out += kDays[x - 1];
            }
            l = -1;
        }
    }
    if (l >= 0 && x > l + 1) {
        out += x > l + 2 ? ".." : ",";
        out += kDays[x - 1];
    }
}

void append_printf(std::string& out, const char* fmt, int width, int value) {
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, fmt, width, value);
    out.append(buf, static_cast<std::size_t>(n));
}

void format_chain(std::string& out, int width, const CalendarSpec::Chain& chain, bool usec) {
    const int d = usec ? kUsecPerSec : 1;
    if (chain.empty()) {
        out += '*';
        return;
    }
    if (usec && chain.size() == 1 && chain[0].start == 0 && chain[0].repeat == kUsecPerSec) {
        out += '*';
        return;
    }
    bool first = true;
    for (const CalendarSpec::Component& c : chain) {
        if (!first) {
            out += ',';
        }
        first = false;
        append_printf(out, "%0*i", width, c.start / d);
        if (c.start % d > 0) {
            append_printf(out, ".%0*i", 6, c.start % d);
        }
        if (c.stop > 0) {
            out += "..";
            append_printf(out, "%0*i", width, c.stop / d);
        }
        if (c.stop % d > 0) {
            append_printf(out, ".%0*i", 6, c.stop % d);
        }
        if (c.repeat > 0 && !(c.stop > 0 && c.repeat == d)) {
            append_printf(out, "/%*i", 0, c.repeat / d);
        }
        if (c.repeat % d > 0) {
            append_printf(out, ".%0*i", 6, c.repeat % d);
        }
    }
}

}  // namespace

std::string CalendarSpec::normalized() const {
    std::string out;
    if (weekdays_bits_ > 0 && weekdays_bits_ <= kBitsWeekdays) {
        format_weekdays(out, weekdays_bits_);
        out += ' ';
    }
    format_chain(out, 4, year_, false);
    out += '-';
    format_chain(out, 2, month_, false);
    out += end_of_month_ ? '~' : '-';
    format_chain(out, 2, day_, false);
    out += ' ';
    format_chain(out, 2, hour_, false);
    out += ':';
    format_chain(out, 2, minute_, false);
    out += ':';
    format_chain(out, 2, microsecond_, true);
    if (utc_) {
        out += " UTC";
    } else if (!timezone_name_.empty()) {
        out += ' ';
        out += timezone_name_;
    } else if ((dst_ == 0 || dst_ == 1) && !dst_abbrev_.empty()) {
        out += ' ';
        out += dst_abbrev_;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// The search: calendarspec.c's find_next() on glibc-equivalent struct tm arithmetic.

class CalendarSearch {
  public:
    explicit CalendarSearch(const CalendarSpec& spec)
        : s_(spec), zone_(spec.utc_ ? nullptr : &spec.zone_) {}

    // calendar_spec_next_usec(): 0 and *next, or -ENOENT (never), -EINVAL, -EDEADLK.
    int next_usec(std::int64_t usec, std::int64_t* next) {
        if (usec < 0 || usec > kTimestampFormattableMax) {
            return -EINVAL;
        }
        ++usec;
        Tm tm = to_tm(usec / kUsecPerSec, zone_);
        int tm_usec = static_cast<int>(usec % kUsecPerSec);
        if (int r = find_next(tm, tm_usec); r < 0) {
            return r;
        }
        const std::int64_t t = mk(tm);
        if (t < 0) {
            return -EINVAL;
        }
        *next = t * kUsecPerSec + tm_usec;
        return 0;
    }

  private:
    using Chain = CalendarSpec::Chain;

    std::int64_t mk(Tm& tm) { return make_time(tm, zone_, state_); }

    int find_end_of_month(const Tm& tm, int day) {
        Tm t = tm;
        t.mon++;
        t.mday = 1 - day;
        if (mk(t) < 0 || t.mon != tm.mon) {
            return -1;
        }
        return t.mday;
    }

    // The earliest value >= *val any element of `chain` allows: 1 if *val changed, 0 if not,
    // -ENOENT if there is none.
    int find_matching_component(const Chain& chain, const Tm& tm, int* val) {
        if (chain.empty()) {
            return 0;
        }
        const bool end_of_month = s_.end_of_month_ && &chain == &s_.day_;
        int d = -1;
        bool d_set = false;
        for (const CalendarSpec::Component& c : chain) {
            int start = c.start;
            int stop = c.stop;
            if (end_of_month) {
                start = find_end_of_month(tm, c.start);
                stop = find_end_of_month(tm, c.stop);
                if (stop > 0) {
                    std::swap(start, stop);
                }
            }
            if (start >= *val) {
                if (!d_set || start < d) {
                    d = start;
                    d_set = true;
                }
            } else if (c.repeat > 0) {
                const int k = start + c.repeat * ((*val - start + c.repeat - 1) / c.repeat);
                if ((!d_set || k < d) && (stop < 0 || k <= stop)) {
                    d = k;
                    d_set = true;
                }
            }
        }
        if (!d_set) {
            return -ENOENT;
        }
        const int r = *val != d ? 1 : 0;
        *val = d;
        return r;
    }

    // 1 if *tm is a real time, 0 if mktime() moved it forward (then *tm is the moved time), < 0
    // if it is out of range or would move backwards.
    int tm_within_bounds(Tm& tm) {
        if (tm.year + 1900 > kMaxYear) {
            return -ERANGE;  // impossible dates like *-02-31 must not loop forever
        }
        Tm t = tm;
        if (mk(t) < 0) {
            return -EINVAL;
        }
        int cmp = 0;
        auto sign = [](int a, int b) { return a < b ? -1 : (a > b ? 1 : 0); };
        if ((cmp = sign(t.year, tm.year)) != 0) {
            t.mon = 0;
        } else if ((cmp = sign(t.mon, tm.mon)) != 0) {
            t.mday = 1;
        } else if ((cmp = sign(t.mday, tm.mday)) != 0) {
            t.hour = 0;
        } else if ((cmp = sign(t.hour, tm.hour)) != 0) {
            t.min = 0;
        } else if ((cmp = sign(t.min, tm.min)) != 0) {
            t.sec = 0;
        } else {
            cmp = sign(t.sec, tm.sec);
        }
        if (cmp < 0) {
            return -EDEADLK;
        }
        if (cmp > 0) {
            tm = t;
        }
        return cmp == 0 ? 1 : 0;
    }

    bool matches_weekday(const Tm& tm) {
        const int bits = s_.weekdays_bits_;
        if (bits < 0 || bits >= kBitsWeekdays) {
            return true;
        }
        Tm t = tm;
        if (mk(t) < 0) {
            return false;
        }
        const int k = t.wday == 0 ? 6 : t.wday - 1;
        return (bits & (1 << k)) != 0;
    }

    int find_next(Tm& tm, int& usec) {
        Tm c = tm;
        int tm_usec = usec;
        auto reset_below_month = [&] {
            c.mday = 1;
            c.hour = c.min = c.sec = tm_usec = 0;
        };
        for (unsigned iteration = 0; iteration < kMaxCalendarIterations; ++iteration) {
            (void)mk(c);  // normalise the current date
            c.isdst = s_.dst_;

            c.year += 1900;
            int r = find_matching_component(s_.year_, c, &c.year);
            c.year -= 1900;
            if (r > 0) {
                c.mon = 0;
                reset_below_month();
            }
            if (r < 0) {
                return r;
            }
            if (tm_within_bounds(c) <= 0) {
                return -ENOENT;
            }

            c.mon += 1;
            r = find_matching_component(s_.month_, c, &c.mon);
            c.mon -= 1;
            if (r > 0) {
                reset_below_month();
            }
            if (r < 0 || (r = tm_within_bounds(c)) < 0) {
                c.year++;
                c.mon = 0;
                reset_below_month();
                continue;
            }
            if (r == 0) {
                continue;
            }

            r = find_matching_component(s_.day_, c, &c.mday);
            if (r > 0) {
                c.hour = c.min = c.sec = tm_usec = 0;
            }
            if (r < 0 || (r = tm_within_bounds(c)) < 0) {
                c.mon++;
                reset_below_month();
                continue;
            }
            if (r == 0) {
                continue;
            }

            if (!matches_weekday(c)) {
                c.mday++;
                c.hour = c.min = c.sec = tm_usec = 0;
                continue;
            }

            r = find_matching_component(s_.hour_, c, &c.hour);
            if (r > 0) {
                c.min = c.sec = tm_usec = 0;
            }
            if (r < 0 || (r = tm_within_bounds(c)) < 0) {
                c.mday++;
                c.hour = c.min = c.sec = tm_usec = 0;
                continue;
            }
            if (r == 0) {
                continue;  // the hour may not exist (DST); start again from the normalised time
            }

            r = find_matching_component(s_.minute_, c, &c.min);
            if (r > 0) {
                c.sec = tm_usec = 0;
            }
            if (r < 0 || (r = tm_within_bounds(c)) < 0) {
                c.hour++;
                c.min = c.sec = tm_usec = 0;
                continue;
            }
            if (r == 0) {
                continue;
            }

            c.sec = c.sec * kUsecPerSec + tm_usec;
            r = find_matching_component(s_.microsecond_, c, &c.sec);
            tm_usec = c.sec % kUsecPerSec;
            c.sec /= kUsecPerSec;
            if (r < 0 || (r = tm_within_bounds(c)) < 0) {
                c.min++;
                c.sec = tm_usec = 0;
                continue;
            }
            if (r == 0) {
                continue;
            }

            tm = c;
            usec = tm_usec;
            return 0;
        }
        return -EDEADLK;  // systemd: "Infinite loop in calendar calculation"
    }

    const CalendarSpec& s_;
    ZonePtr zone_;
    MktimeState state_;
};

std::optional<CalendarSpec::Usec> CalendarSpec::next_after(Usec base) const {
    CalendarSearch search(*this);
    std::int64_t next = 0;
    const int r = search.next_usec(base.count(), &next);
    if (r == -ENOENT) {
        return std::nullopt;
    }
    if (r < 0) {
        throw CalendarError(CalendarError::Stage::kNextElapse, text_, -r);
    }
    return Usec{next};
}

}  // namespace mlk::sched
