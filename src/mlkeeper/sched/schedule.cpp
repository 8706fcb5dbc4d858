#include "mlkeeper/sched/schedule.hpp"

#include "mlkeeper/sched/calendar_spec.hpp"
#include "mlkeeper/sched/cron_spec.hpp"

namespace mlk::sched {

Schedule Schedule::parse(ScheduleKind kind, std::string_view text) {
    Schedule s;
    s.kind_ = kind;
    try {
        if (kind == ScheduleKind::kCalendar) {
            s.calendar_ = std::make_shared<const CalendarSpec>(CalendarSpec::parse(text));
        } else {
            s.cron_ = std::make_shared<const CronSpec>(CronSpec::parse(text));
            s.zone_ = std::make_shared<const util::TimeZone>(util::TimeZone::local());
        }
    } catch (const CalendarError& e) {
        throw ScheduleError(e.what());
    } catch (const CronError& e) {
        throw ScheduleError(e.what());
    }
    return s;
}

std::string Schedule::normalized() const {
    return calendar_ ? calendar_->normalized() : cron_->normalized();
}

std::optional<TimePoint> Schedule::next_after(TimePoint t) const {
    if (calendar_) {
        try {
            const auto next = calendar_->next_after(t.time_since_epoch());
            return next ? std::optional<TimePoint>(TimePoint{*next}) : std::nullopt;
        } catch (const CalendarError&) {
            return std::nullopt;  // beyond what systemd computes (year 9999): never
        }
    }
    // Cron runs at whole minutes; a base with a fraction of a second lies within its minute.
    const auto base = std::chrono::floor<std::chrono::seconds>(t);
    const auto next = cron_->next_after(std::chrono::sys_seconds{base.time_since_epoch()}, *zone_);
    return next ? std::optional<TimePoint>(
                      std::chrono::time_point_cast<std::chrono::microseconds>(*next))
                : std::nullopt;
}

}  // namespace mlk::sched
