// A job's schedule, whichever language it is written in: a systemd OnCalendar expression or a
// crontab line. The agent and `schedule list` only ever ask "when next, strictly after t?".
// Thread safety: immutable after parse(); share freely.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "mlkeeper/sched/job_spec.hpp"
#include "mlkeeper/util/tz.hpp"

namespace mlk::sched {

class CalendarSpec;
class CronSpec;

using TimePoint = std::chrono::sys_time<std::chrono::microseconds>;

class ScheduleError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Schedule {
  public:
    // Throws ScheduleError with the parser's one-line message. Expressions without a time zone
    // are read in the process's local zone, as systemd and cron do.
    static Schedule parse(ScheduleKind kind, std::string_view text);

    ScheduleKind kind() const { return kind_; }
    // systemd's normalized form for calendars; the cron line as written, for cron.
    std::string normalized() const;
    // The first elapse strictly after `t`; nullopt if the schedule never elapses again (a past
    // year, February 30th, @reboot).
    std::optional<TimePoint> next_after(TimePoint t) const;

  private:
    ScheduleKind kind_ = ScheduleKind::kCalendar;
    std::shared_ptr<const CalendarSpec> calendar_;
    std::shared_ptr<const CronSpec> cron_;
    std::shared_ptr<const util::TimeZone> zone_;  // cron: the local zone at parse time
};

}  // namespace mlk::sched
