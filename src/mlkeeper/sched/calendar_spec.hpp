// systemd's OnCalendar= expressions (systemd.time(7)), parsed, normalised and evaluated exactly as
// systemd 252's calendarspec.c does: the same accepted and rejected inputs, the same normalized
// form, the same next elapse (DST gaps and folds included, through civil_time's glibc-equivalent
// mktime), so that `mlkeeper calendar` and `systemd-analyze calendar` agree line for line.
// Thread safety: a CalendarSpec is immutable after parse(); next_after() may run concurrently.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/util/tz.hpp"

namespace mlk::sched {

// An expression systemd rejects, or a next elapse it cannot compute. what() is systemd's message:
// "Failed to parse calendar specification 'X': Invalid argument" or "Failed to determine next
// elapse for 'X': Invalid argument"; code() is the errno systemd reports (EINVAL, ERANGE, ...).
class CalendarError : public std::runtime_error {
  public:
    enum class Stage { kParse, kNextElapse };
    CalendarError(Stage stage, std::string expression, int code);

    Stage stage() const { return stage_; }
    const std::string& expression() const { return expression_; }
    int code() const { return code_; }

  private:
    Stage stage_;
    std::string expression_;
    int code_;
};

// systemd's parse_fractional_part_u(), shared with the timestamp parser: up to `digits` digits
// after *p (padded with zeros), rounded by the next one, further digits skipped; advances *p.
// Returns 0, or -EINVAL / -ERANGE as systemd does.
int parse_fractional_part(const char** p, std::size_t digits, unsigned* res);

class CalendarSpec {
  public:
    // Microseconds since the Unix epoch (systemd's usec_t), UTC.
    using Usec = std::chrono::microseconds;

    // Parses `text` with the machine's zone (TimeZone::local()) as the local zone, which
    // expressions without a zone suffix are evaluated in. Throws CalendarError.
    static CalendarSpec parse(std::string_view text);
    // The same with an explicit local zone (tests, or a configured zone).
    static CalendarSpec parse(std::string_view text, const util::TimeZone& local);

    // systemd's normalized form: "*-*-* 02:00:00", "Mon..Fri *-*-* 09:00:00",
    // "*-*-* *:00/5:00", "Sun *-*-* 03:00:00 Europe/Berlin".
    std::string normalized() const;

    // The first elapse strictly after `base` (calendar_spec_next_usec()); nullopt when the
    // expression never elapses again (systemd's "never"). Throws CalendarError (kNextElapse) where
    // systemd fails: a negative base or one beyond year 9999, or its 1000-step search limit.
    std::optional<Usec> next_after(Usec base) const;

    // The zone the expression is evaluated in: UTC ("... UTC"), the suffix zone
    // ("... Europe/Berlin"), else the local zone given to parse().
    const util::TimeZone& zone() const { return zone_; }
    bool is_utc() const { return utc_; }
    // The IANA zone suffix ("Europe/Berlin"), empty if none.
    const std::string& timezone_name() const { return timezone_name_; }
    // The text as given to parse().
    const std::string& text() const { return text_; }

    // One element of a component list: start[..stop][/repeat]; stop -1 = open, repeat 0 = none.
    // The seconds list counts microseconds.
    struct Component {
        int start = 0;
        int stop = -1;
        int repeat = 0;
        friend bool operator==(const Component&, const Component&) = default;
    };
    using Chain = std::vector<Component>;  // empty = '*' (any value)

  private:
    explicit CalendarSpec(util::TimeZone zone) : zone_(std::move(zone)) {}
    friend class CalendarParser;
    friend class CalendarSearch;

    int weekdays_bits_ = -1;  // bit 0 = Monday; -1 = any day
    bool end_of_month_ = false;
    bool utc_ = false;
    int dst_ = -1;               // 0/1 when the local zone's standard/DST abbreviation was given
    std::string dst_abbrev_;     // that abbreviation, as the normalized form shows it
    std::string timezone_name_;  // IANA suffix, empty if none
    Chain year_, month_, day_, hour_, minute_, microsecond_;
    util::TimeZone zone_;
    std::string text_;
};

}  // namespace mlk::sched
