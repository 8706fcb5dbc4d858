// Crontab schedules ("*/5 * * * *", "0 2 * * mon-fri", "@daily"): parsing, the normalized form and
// the next run time, as Vixie cron / cronie run them, in any time zone.
// Thread safety: a CronSpec is an immutable value; share it and call next_after() from any thread.
//
// Syntax (5 fields: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12, day-of-week 0-7):
//   *  N  N-M  */S  N-M/S  N/S (= N-max/S, as croniter reads it; cronie itself rejects it, so
//   normalized() writes N-max/S)  and comma lists of these. Months jan..dec and weekdays sun..sat
//   by name, case-insensitive, also as range ends ("mon-fri", "jan-mar/2"). 0 and 7 are Sunday;
//   "fri-sun" / "5-0" mean 5-7. Macros: @yearly @annually @monthly @weekly @daily @midnight
//   @hourly, and @reboot (no next time: is_reboot() is true and next_after() returns nullopt).
//   Rejected: 6-field (seconds) lines and croniter's L, #, H and R extensions.
//
// Day-of-month / day-of-week: when both are restricted a day matches if EITHER matches, otherwise
// both must (Vixie's rule). A field counts as restricted when its values are not all of the
// field's values, as croniter decides; cronie instead looks only at whether the field's text
// starts with '*'. They differ for "*/2" (croniter and we: restricted, so "0 0 */2 * 1" runs on
// odd days OR Mondays; cronie: Mondays that are odd days) and for full explicit lists such as
// "1-31" or "0-6" (croniter and we: unrestricted; cronie: restricted). normalized() writes these
// fields so that cronie reads them our way: "*" when all values are set, never a leading '*'
// otherwise ("*/2" becomes "1-31/2").
//
// Time changes (DST), following cronie's cron(8) as it behaves in the code: a "wildcard" job is
// one whose minute or hour field starts with '*' (including @hourly and "0 */2 * * *", although
// the man page speaks of jobs "more frequent than hourly"); every other job is "fixed-time".
//   - Forward jump (a gap in local time) under 3 hours: fixed-time runs that fall in the gap happen
//     once at the first minute after the change; wildcard runs in the gap are skipped. Jumps of up
//     to 4 minutes catch up every job; jumps of 3 hours or more (clock corrections, zone changes)
//     catch up nothing.
//   - Backward jump (a repeated hour) of up to 3 hours: fixed-time jobs run only in the first pass;
//     wildcard jobs run in both. Larger jumps repeat every job.
// croniter 1.3.5 mishandles DST (it returns non-existent local times and shifts the day after a
// change by an hour), so DST is tested against these rules rather than against croniter.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "mlkeeper/util/tz.hpp"

namespace mlk::sched {

// A malformed expression. what() names the field and the bad token, e.g.
// "cron: minute field '61' out of range 0-59".
class CronError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class CronSpec {
  public:
    // Throws CronError. Leading and trailing whitespace is ignored; fields are separated by runs of
    // spaces or tabs.
    static CronSpec parse(std::string_view text);

    // The first run strictly after `base`, at a whole local minute of `zone` (see the DST rules
    // above). nullopt for @reboot, for schedules that can never run ("0 0 30 2 *") and for bases
    // beyond year 100000.
    std::optional<std::chrono::sys_seconds> next_after(std::chrono::sys_seconds base,
                                                       const mlk::util::TimeZone& zone) const;

    // Five numeric fields (or "@reboot") that cronie and croniter both read with our meaning:
    // names become numbers, macros are expanded ("@daily" -> "0 0 * * *"), N/S becomes N-max/S.
    // The structure of each field is otherwise kept, including a leading '*' in the minute and
    // hour fields, which decides the DST class.
    std::string normalized() const { return normalized_; }

    bool is_reboot() const { return reboot_; }

  private:
    CronSpec() = default;

    std::optional<std::int64_t> next_local_minute(std::int64_t from, std::int64_t limit) const;
    std::uint32_t day_mask(int year, int month) const;

    std::uint64_t minutes_ = 0;           // bit m: minute m
    std::uint32_t hours_ = 0;             // bit h: hour h
    std::uint32_t days_ = 0;              // bit d: day-of-month d (1..31)
    std::uint32_t months_ = 0;            // bit m: month m (1..12)
    std::uint32_t weekdays_ = 0;          // bit w: weekday w (0 = Sunday .. 6)
    std::uint32_t dow_by_first_[7] = {};  // [weekday of the 1st]: days 1..31 whose weekday matches
    bool dom_restricted_ = false;
    bool dow_restricted_ = false;
    bool wildcard_ = false;  // cronie's MIN_STAR | HR_STAR
    bool reboot_ = false;
    bool never_ = false;  // no month has any of the days (e.g. Feb 30)
    std::string normalized_;
};

}  // namespace mlk::sched
