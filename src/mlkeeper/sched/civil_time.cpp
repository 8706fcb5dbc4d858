#include "mlkeeper/sched/civil_time.hpp"

#include <chrono>
#include <climits>

namespace mlk::sched {

namespace {

constexpr std::int64_t kSecsPerDay = 86400;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

struct Probe {
    std::int64_t utoff = 0;
    int isdst = 0;
};

Probe probe(std::int64_t t, ZonePtr zone) {
    if (zone == nullptr) {
        return {};
    }
    const util::TimeZone::Offset o = zone->at(std::chrono::sys_seconds{std::chrono::seconds{t}});
    return Probe{o.utc_offset.count(), o.is_dst ? 1 : 0};
}

// glibc's isdst_differ(): one zero and the other positive; a negative value matches anything.
bool isdst_differ(int a, int b) {
    return (!a != !b) && a >= 0 && b >= 0;
}

}  // namespace

std::int64_t days_from_civil(std::int64_t year, int month, int day) {
    // Howard Hinnant's algorithm, valid far beyond any year a struct tm can hold.
    const std::int64_t y = year - (month <= 2 ? 1 : 0);
    const std::int64_t era = floor_div(y, 400);
    const std::int64_t yoe = y - era * 400;
    const std::int64_t mp = (month + 9) % 12;
    const std::int64_t doy = (153 * mp + 2) / 5 + day - 1;
    const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

CivilDate civil_from_days(std::int64_t days) {
    const std::int64_t z = days + 719468;
    const std::int64_t era = floor_div(z, 146097);
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
    const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
    return CivilDate{yoe + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

Tm to_tm(std::int64_t t, ZonePtr zone) {
    const Probe p = probe(t, zone);
    const std::int64_t local = t + p.utoff;
    const std::int64_t days = floor_div(local, kSecsPerDay);
    const std::int64_t secs = local - days * kSecsPerDay;
    const CivilDate c = civil_from_days(days);
    Tm tm;
    tm.year = static_cast<int>(c.year - 1900);
    tm.mon = c.month - 1;
    tm.mday = c.day;
    tm.hour = static_cast<int>(secs / 3600);
    tm.min = static_cast<int>(secs / 60 % 60);
    tm.sec = static_cast<int>(secs % 60);
    tm.yday = static_cast<int>(days - days_from_civil(c.year, 1, 1));
    tm.wday = static_cast<int>(days + 4 - floor_div(days + 4, 7) * 7);  // 1970-01-01: Thursday
    tm.isdst = p.isdst;
    tm.gmtoff = p.utoff;
    return tm;
}

std::int64_t make_time(Tm& req, ZonePtr zone, MktimeState& state) {
    // Fold the month into the year, then count the day of month from the first of that month;
    // hours, minutes and seconds may be out of range too (they are linear in seconds).
    const int mon_remainder = req.mon % 12;
    const int negative_mon_remainder = mon_remainder < 0 ? 1 : 0;
    const std::int64_t year = std::int64_t{req.year} + req.mon / 12 - negative_mon_remainder + 1900;
    const int month = mon_remainder + 12 * negative_mon_remainder + 1;
    const std::int64_t days = days_from_civil(year, month, 1) + req.mday - 1;

    if (zone == nullptr) {
        // timegm(): no offsets, so the search of mktime collapses to plain arithmetic.
        const std::int64_t t = days * kSecsPerDay + std::int64_t{req.hour} * 3600 +
                               std::int64_t{req.min} * 60 + req.sec;
        req = to_tm(t, nullptr);
        return t;
    }

    // glibc clamps the seconds for the search (leap seconds) and adds the rest back at the end.
    const int sec_requested = req.sec;
    const int sec = sec_requested < 0 ? 0 : (sec_requested > 59 ? 59 : sec_requested);
    const std::int64_t local =
        days * kSecsPerDay + std::int64_t{req.hour} * 3600 + std::int64_t{req.min} * 60 + sec;
    const int isdst = req.isdst;

    const std::int64_t off = state.offset;
    const std::int64_t t0 = local + off;
    std::int64_t t = t0;
    std::int64_t t1 = t0;
    std::int64_t t2 = t0;
    int dst2 = 0;
    int remaining_probes = 6;
    Probe p;
    bool found = false;

    for (;;) {
        p = probe(t, zone);
        const std::int64_t dt = local - (t + p.utoff);
        if (dt == 0) {
            break;
        }
        if (t == t1 && t != t2 &&
            (isdst < 0 ? dst2 <= (p.isdst != 0) : (isdst != 0) != (p.isdst != 0))) {
            // Oscillating around a spring-forward gap: glibc returns the probe it is at.
            found = true;
            break;
        }
        if (--remaining_probes == 0) {
            return -1;
        }
        t1 = t2;
        t2 = t;
        t += dt;
        dst2 = p.isdst != 0 ? 1 : 0;
    }

    if (!found && isdst_differ(isdst, p.isdst)) {
        // The requested tm_isdst differs from the one in force: glibc borrows the UTC offset of
        // the nearest instant (probing a week at a time, up to about 7 years away) that has it,
        // and failing that assumes a one-hour difference.
        const int dst_difference = (isdst == 0 ? 1 : 0) - (p.isdst == 0 ? 1 : 0);
        constexpr std::int64_t kStride = 601200;
        constexpr std::int64_t kDurationMax = 457243200;
        constexpr std::int64_t kDeltaBound = kDurationMax / 2 + kStride;
        bool ok = false;
        for (std::int64_t delta = kStride; delta < kDeltaBound && !ok; delta += kStride) {
            for (int direction = -1; direction <= 1; direction += 2) {
                const std::int64_t ot = t + delta * direction;
                const Probe op = probe(ot, zone);
                if (!isdst_differ(isdst, op.isdst)) {
                    t = ot + (local - (ot + op.utoff));
                    ok = true;
                    break;
                }
            }
        }
        if (!ok) {
            t += std::int64_t{3600} * dst_difference;
        }
    }

    state.offset = t - t0 + off;
    Tm tm = to_tm(t, zone);
    if (sec_requested != tm.sec) {
        const std::int64_t adjustment =
            ((sec == 0 && tm.sec == 60) ? 1 : 0) - sec + std::int64_t{sec_requested};
        t += adjustment;
        tm = to_tm(t, zone);
    }
    req = tm;
    return t;
}

namespace {

constexpr std::int64_t kFarFutureWinter = 4102444800LL;  // 2100-01-01 00:00:00 UTC
constexpr std::int64_t kFarFutureSummer = 4118083200LL;  // 2100-07-01 00:00:00 UTC

util::TimeZone::Offset offset_at(const util::TimeZone& zone, std::int64_t t) {
    return zone.at(std::chrono::sys_seconds{std::chrono::seconds{t}});
}

}  // namespace

ZoneNames zone_names(const util::TimeZone& zone) {
    ZoneNames names;
    for (const std::int64_t t : {kFarFutureWinter, kFarFutureSummer}) {
        const util::TimeZone::Offset o = offset_at(zone, t);
        (o.is_dst ? names.daylight : names.standard) = o.abbrev;
    }
    if (names.standard.empty()) {
        names.standard = names.daylight;
    }
    if (names.daylight.empty()) {
        names.daylight = names.standard;
    }
    return names;
}

bool is_utc_zone(const util::TimeZone& zone) {
    for (const std::int64_t t : {kFarFutureWinter, kFarFutureSummer}) {
        const util::TimeZone::Offset o = offset_at(zone, t);
        if (o.utc_offset.count() != 0 || o.is_dst) {
            return false;
        }
    }
    return true;
}

std::optional<util::TimeZone> load_systemd_timezone(std::string_view name) {
    if (name.empty() || name.front() == '/' || name.size() >= PATH_MAX) {
        return std::nullopt;
    }
    bool slash = false;
    for (char c : name) {
        const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                        (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '+' || c == '/';
        if (!ok || (c == '/' && slash)) {
            return std::nullopt;
        }
        slash = c == '/';
    }
    if (slash) {
        return std::nullopt;
    }
    std::optional<util::TimeZone> zone = util::TimeZone::load(name);
    if (!zone && name == "UTC") {
        zone = util::TimeZone::utc();  // systemd accepts "UTC" even without tzdata
    }
    return zone;
}

}  // namespace mlk::sched
