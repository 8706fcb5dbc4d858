// Broken-down time with the exact semantics of glibc's gmtime_r/localtime_r and timegm/mktime
// (normalisation of out-of-range fields, DST gaps and folds, tm_isdst requests, the offset guess
// mktime keeps between calls), computed from a util::TimeZone instead of the process's $TZ.
// systemd's calendar and timestamp code is written in terms of those libc calls, so agreeing with
// it on every DST edge needs them reproduced step for step.
// Thread safety: pure functions of their arguments; a MktimeState belongs to one caller.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mlkeeper/util/tz.hpp"

namespace mlk::sched {

// struct tm, with the same field meanings (year since 1900, month 0-11, wday 0 = Sunday).
struct Tm {
    int sec = 0;
    int min = 0;
    int hour = 0;
    int mday = 1;
    int mon = 0;
    int year = 70;
    int wday = 4;
    int yday = 0;
    int isdst = 0;  // -1 in a request means "unknown", as for mktime
    std::int64_t gmtoff = 0;
};

// The zone a conversion runs in: nullptr means UTC through gmtime_r/timegm.
using ZonePtr = const util::TimeZone*;

// glibc's mktime remembers the offset of its last result and starts the next search there; in a
// DST fold that guess decides which of the two instants comes back. One state per computation
// (systemd computes zone-suffixed expressions in a fresh child process, i.e. from offset 0).
struct MktimeState {
    std::int64_t offset = 0;
};

// gmtime_r (zone == nullptr) or localtime_r of `t` seconds since the epoch.
Tm to_tm(std::int64_t t, ZonePtr zone);

// timegm (zone == nullptr) or mktime: normalises *tm in place and returns the instant. On failure
// returns -1 and leaves *tm alone, as glibc does. (A valid instant before 1970 is negative too.)
std::int64_t make_time(Tm& tm, ZonePtr zone, MktimeState& state);

// Proleptic Gregorian calendar helpers (days since 1970-01-01).
std::int64_t days_from_civil(std::int64_t year, int month /*1-12*/, int day /*1-31*/);
struct CivilDate {
    std::int64_t year = 1970;
    int month = 1;  // 1-12
    int day = 1;    // 1-31
};
CivilDate civil_from_days(std::int64_t days);

// glibc's tzname[0] and tzname[1] for `zone`: the abbreviations of its standard and daylight
// time (both the same for a zone without DST). glibc takes them from the rule in force; we take
// the zone's far-future rule (its TZif footer), which is what glibc shows once the process has
// formatted any current time. (glibc may still show a long-abolished DST name, e.g. Tokyo's
// "JDT", in a process that has not.)
struct ZoneNames {
    std::string standard;
    std::string daylight;
};
ZoneNames zone_names(const util::TimeZone& zone);

// glibc's `timezone == 0 && daylight == 0` for `zone`: no offset and no DST in its current rule.
bool is_utc_zone(const util::TimeZone& zone);

// systemd's timezone_is_valid() followed by loading the zone: a name of letters, digits, '-',
// '_', '+' and single '/' that names a zone file; "UTC" always works. nullopt otherwise.
std::optional<util::TimeZone> load_systemd_timezone(std::string_view name);

}  // namespace mlk::sched
