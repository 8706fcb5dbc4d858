// TZif (RFC 8536) reader and POSIX TZ rule evaluator behind mlk::util::TimeZone. Everything is
// computed from immutable data, so no locks and no process-wide TZ state are involved.
#include "mlkeeper/util/tz.hpp"

#include "mlkeeper/util/unique_fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

namespace mlk::util {

struct TimeZone::Data {
    // One transition date of a POSIX TZ string.
    struct Rule {
        enum class Kind : std::uint8_t { kJulian1, kJulian0, kMonthWeekDay };
        Kind kind = Kind::kMonthWeekDay;
        int month = 0;  // Mm.w.d
        int week = 0;
        int wday = 0;
        int day = 0;                   // Jn (1..365, never counting Feb 29) or n (0..365)
        std::int32_t secs = 2 * 3600;  // local time of day of the change; v3: -167h..167h
    };
    // A POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3"), as $TZ or a TZif footer holds it.
    struct Posix {
        std::string std_abbrev;
        std::string dst_abbrev;
        std::int32_t std_off = 0;  // seconds east of UTC (the string itself counts westwards)
        std::int32_t dst_off = 0;
        bool has_dst = false;
        Rule start;  // DST begins; `secs` is in standard time
        Rule end;    // DST ends; `secs` is in daylight time
    };
    struct Type {
        std::int32_t utoff = 0;
        bool is_dst = false;
        std::string abbrev;
    };
    std::string name;
    std::vector<std::int64_t> trans;       // strictly ascending
    std::vector<std::uint8_t> trans_type;  // index into types, one per transition
    std::vector<Type> types;               // non-empty unless footer holds the whole zone
    std::uint8_t initial_type = 0;         // in force before the first transition
    std::optional<Posix> footer;           // governs instants from the last transition on
    // The footer's changes worked out in advance up to kPrecomputeUntil, so that at() is a binary
    // search there too (slim zone files, $TZ rules, dates after 2037): rule_dst[i] holds from
    // rule_trans[i] to the next entry (the last one to rule_trans_end).
    std::vector<std::int64_t> rule_trans;
    std::vector<std::uint8_t> rule_dst;
    std::int64_t rule_trans_end = 0;
    std::int32_t min_off = 0;  // bounds of every offset the zone can have, so that
    std::int32_t max_off = 0;  // from_local() knows which instants to look at
};

namespace {

using Data = TimeZone::Data;
using PosixRule = Data::Rule;
using PosixTz = Data::Posix;

constexpr std::int64_t kMinT = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMaxT = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kSecsPerDay = 86400;
// The POSIX rule is only evaluated within +-2^55 s (about a billion years), far from int64
// overflow in the calendar arithmetic; standard time applies beyond.
constexpr std::int64_t kRuleLimit = std::int64_t{1} << 55;
// The footer rule's changes are tabulated from the last transition (from 1900 for a bare $TZ rule)
// up to 2201, past systemd's last calendar year (2199); rules are evaluated on the fly beyond.
constexpr std::int64_t kPrecomputeFrom = -2208988800;       // 1900-01-01T00:00:00Z
constexpr std::int64_t kPrecomputeUntil = 7289654400;       // 2201-01-01T00:00:00Z
constexpr std::size_t kMaxFileSize = std::size_t{1} << 20;  // real zone files are < 10 KiB
// RFC 8536 3.2: utoff SHOULD be in [-89999, 93599]; anything else is treated as corruption.
constexpr std::int32_t kMinUtoff = -89999;
constexpr std::int32_t kMaxUtoff = 93599;
constexpr const char* kDefaultZoneDir = "/usr/share/zoneinfo";
constexpr const char* kLocaltimePath = "/etc/localtime";

// ---- civil calendar (proleptic Gregorian, int64 years; H. Hinnant's algorithms) ----

constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

constexpr bool is_leap(std::int64_t y) {
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

constexpr int days_in_month(std::int64_t y, int m) {
    constexpr std::array<int, 12> kDays{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : kDays[static_cast<std::size_t>(m - 1)];
}

constexpr std::int64_t days_from_civil(std::int64_t y, int m, int d) {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const std::int64_t yoe = y - era * 400;
    const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

constexpr std::int64_t year_from_days(std::int64_t z) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10 ? 1 : 0);
}

constexpr int weekday_from_days(std::int64_t z) {  // 0 = Sunday
    return static_cast<int>(z >= -4 ? (z + 4) % 7 : (z + 5) % 7 + 6);
}

static_assert(days_from_civil(1970, 1, 1) == 0);
static_assert(days_from_civil(2000, 3, 1) == 11017);
static_assert(year_from_days(-1) == 1969 && year_from_days(11016) == 2000);
static_assert(weekday_from_days(0) == 4);  // Thursday

// ---- POSIX TZ strings ----

class PosixParser {
  public:
    explicit PosixParser(std::string_view s) : s_(s) {}

    std::optional<PosixTz> parse() {
        PosixTz tz;
        std::int32_t off = 0;
        if (!name(tz.std_abbrev) || !hms(off, 24)) {
            return std::nullopt;
        }
        tz.std_off = -off;
        tz.dst_off = tz.std_off;
        if (done()) {
            return tz;
        }
        if (!name(tz.dst_abbrev)) {
            return std::nullopt;
        }
        tz.has_dst = true;
        tz.dst_off = tz.std_off + 3600;
        if (!done() && peek() != ',') {
            if (!hms(off, 24)) {
                return std::nullopt;
            }
            tz.dst_off = -off;
        }
        if (done() || s_.substr(pos_) == ",") {
            // No rule: glibc falls back to the US rules (what its "posixrules" file gives for
            // current years).
            tz.start = PosixRule{PosixRule::Kind::kMonthWeekDay, 3, 2, 0, 0, 2 * 3600};
            tz.end = PosixRule{PosixRule::Kind::kMonthWeekDay, 11, 1, 0, 0, 2 * 3600};
            return tz;
        }
        if (!eat(',') || !rule(tz.start) || !eat(',') || !rule(tz.end) || !done()) {
            return std::nullopt;
        }
        return tz;
    }

  private:
    bool done() const { return pos_ == s_.size(); }
    char peek() const { return done() ? '\0' : s_[pos_]; }
    bool eat(char c) {
        if (peek() != c) {
            return false;
        }
        ++pos_;
        return true;
    }
    static bool is_digit(char c) { return c >= '0' && c <= '9'; }
    static bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

    // Up to `max_digits` digits, at least one, value in [lo, hi].
    bool number(int max_digits, int lo, int hi, int& out) {
        int v = 0;
        int n = 0;
        while (n < max_digits && is_digit(peek())) {
            v = v * 10 + (s_[pos_++] - '0');
            ++n;
        }
        if (n == 0 || v < lo || v > hi) {
            return false;
        }
        out = v;
        return true;
    }

    // "CET" (3+ letters) or "<+0330>" (3+ of [A-Za-z0-9+-] between angle brackets).
    bool name(std::string& out) {
        const std::size_t begin = pos_;
        if (eat('<')) {
            while (is_alpha(peek()) || is_digit(peek()) || peek() == '+' || peek() == '-') {
                ++pos_;
            }
            const std::size_t len = pos_ - begin - 1;
            if (len < 3 || !eat('>')) {
                return false;
            }
            out.assign(s_.substr(begin + 1, len));
            return true;
        }
        while (is_alpha(peek())) {
            ++pos_;
        }
        if (pos_ - begin < 3) {
            return false;
        }
        out.assign(s_.substr(begin, pos_ - begin));
        return true;
    }

    // [+-]hh[:mm[:ss]] in seconds; hours up to `max_hours` (24 for offsets, 167 for v3 rule times).
    bool hms(std::int32_t& out, int max_hours) {
        int sign = 1;
        if (eat('-')) {
            sign = -1;
        } else {
            eat('+');
        }
        int h = 0;
        int m = 0;
        int s = 0;
        if (!number(3, 0, max_hours, h)) {
            return false;
        }
        if (eat(':')) {
            if (!number(2, 0, 59, m)) {
                return false;
            }
            if (eat(':') && !number(2, 0, 59, s)) {
                return false;
            }
        }
        out = sign * (h * 3600 + m * 60 + s);
        return true;
    }

    bool rule(PosixRule& r) {
        if (eat('J')) {
            r.kind = PosixRule::Kind::kJulian1;
            if (!number(3, 1, 365, r.day)) {
                return false;
            }
        } else if (eat('M')) {
            r.kind = PosixRule::Kind::kMonthWeekDay;
            if (!number(2, 1, 12, r.month) || !eat('.') || !number(1, 1, 5, r.week) || !eat('.') ||
                !number(1, 0, 6, r.wday)) {
                return false;
            }
        } else {
            r.kind = PosixRule::Kind::kJulian0;
            if (!number(3, 0, 365, r.day)) {
                return false;
            }
        }
        if (eat('/')) {
            return hms(r.secs, 167);
        }
        return true;
    }

    std::string_view s_;
    std::size_t pos_ = 0;
};

// The day (days since 1970-01-01) on which `r` falls in year `y`.
std::int64_t rule_day(const PosixRule& r, std::int64_t y) {
    switch (r.kind) {
        case PosixRule::Kind::kJulian1:
            return days_from_civil(y, 1, 1) + r.day - 1 + (is_leap(y) && r.day >= 60 ? 1 : 0);
        case PosixRule::Kind::kJulian0:
            return days_from_civil(y, 1, 1) + r.day;
        case PosixRule::Kind::kMonthWeekDay:
            break;
    }
    const std::int64_t first = days_from_civil(y, r.month, 1);
    std::int64_t day = first + (r.wday - weekday_from_days(first) + 7) % 7 + 7 * (r.week - 1);
    while (day >= first + days_in_month(y, r.month)) {
        day -= 7;
    }
    return day;
}

// A stretch of time with one local time type: [start, end), where kMinT/kMaxT mean unbounded.
struct Segment {
    std::int64_t start;
    std::int64_t end;
    std::int32_t utoff;
    bool is_dst;
    const std::string* abbrev;
};

Segment std_segment(const PosixTz& p, std::int64_t start, std::int64_t end) {
    return Segment{start, end, p.std_off, false, &p.std_abbrev};
}

// The stretch of the rule's time containing t. Changes of neighbouring years are considered too,
// so a change that falls in another UTC year than its local one (v3 hours beyond 24, far
// offsets) is still seen, and "DST all year" (0/0,J365/25) comes out as one long DST stretch.
Segment rule_segment(const PosixTz& p, std::int64_t t) {
    if (!p.has_dst) {
        return std_segment(p, kMinT, kMaxT);
    }
    if (t >= kRuleLimit) {
        return std_segment(p, kRuleLimit, kMaxT);
    }
    if (t < -kRuleLimit) {
        return std_segment(p, kMinT, -kRuleLimit);
    }
    struct Event {
        std::int64_t time;
        bool to_dst;
    };
    const std::int64_t year = year_from_days(floor_div(t, kSecsPerDay));
    for (std::int64_t widen = 1; widen <= 2; ++widen) {
        std::array<Event, 10> ev{};
        std::size_t n = 0;
        for (std::int64_t y = year - widen; y <= year + widen; ++y) {
            ev[n++] = {rule_day(p.start, y) * kSecsPerDay + p.start.secs - p.std_off, true};
            ev[n++] = {rule_day(p.end, y) * kSecsPerDay + p.end.secs - p.dst_off, false};
        }
        // Stable insertion sort: equal times keep (year, start before end) order, so the later
        // event wins, as in glibc's comparison of the two change times.
        for (std::size_t i = 1; i < n; ++i) {
            const Event e = ev[i];
            std::size_t j = i;
            for (; j > 0 && ev[j - 1].time > e.time; --j) {
                ev[j] = ev[j - 1];
            }
            ev[j] = e;
        }
        std::size_t k = 0;
        while (k < n && ev[k].time <= t) {
            ++k;
        }
        if (k == 0 || k == n) {
            continue;  // t not bracketed (absurd rule times): look at more years
        }
        const Event& last = ev[k - 1];
        Segment s = last.to_dst ? Segment{last.time, ev[k].time, p.dst_off, true, &p.dst_abbrev}
                                : std_segment(p, last.time, ev[k].time);
        s.start = std::max(s.start, -kRuleLimit);
        s.end = std::min(s.end, kRuleLimit);
        return s;
    }
    return std_segment(p, t, t + 1);  // unreachable for rules the parser accepts
}

Segment type_segment(const Data& d, std::size_t type, std::int64_t start, std::int64_t end) {
    const Data::Type& ty = d.types[type];
    return Segment{start, end, ty.utoff, ty.is_dst, &ty.abbrev};
}

// The footer's stretch containing t, from the precomputed table where it covers t.
Segment footer_segment(const Data& d, std::int64_t t) {
    const PosixTz& p = *d.footer;
    if (d.rule_trans.empty() || t < d.rule_trans.front() || t >= d.rule_trans_end) {
        return rule_segment(p, t);
    }
    const auto it = std::upper_bound(d.rule_trans.begin(), d.rule_trans.end(), t);
    const auto i = static_cast<std::size_t>(it - d.rule_trans.begin()) - 1;
    const std::int64_t end = i + 1 < d.rule_trans.size() ? d.rule_trans[i + 1] : d.rule_trans_end;
    return d.rule_dst[i] != 0 ? Segment{d.rule_trans[i], end, p.dst_off, true, &p.dst_abbrev}
                              : std_segment(p, d.rule_trans[i], end);
}

Segment segment_at(const Data& d, std::int64_t t) {
    const std::size_t n = d.trans.size();
    if (n == 0) {
        return d.footer ? footer_segment(d, t) : type_segment(d, d.initial_type, kMinT, kMaxT);
    }
    if (t < d.trans.front()) {
        return type_segment(d, d.initial_type, kMinT, d.trans.front());
    }
    const auto it = std::upper_bound(d.trans.begin(), d.trans.end(), t);
    const auto i = static_cast<std::size_t>(it - d.trans.begin()) - 1;
    if (i + 1 < n) {
        return type_segment(d, d.trans_type[i], d.trans[i], d.trans[i + 1]);
    }
    if (!d.footer) {
        return type_segment(d, d.trans_type[i], d.trans[i], kMaxT);
    }
    Segment s = footer_segment(d, t);
    s.start = std::max(s.start, d.trans[i]);
    return s;
}

// Fills d.rule_trans from the rule evaluator itself, so table and evaluator agree by
// construction.
void precompute_footer(Data& d) {
    if (!d.footer || !d.footer->has_dst) {
        return;
    }
    const std::int64_t from = d.trans.empty() ? kPrecomputeFrom : d.trans.back();
    std::int64_t t = from;
    while (t < kPrecomputeUntil) {
        const Segment s = rule_segment(*d.footer, t);
        d.rule_trans.push_back(std::max(s.start, from));
        d.rule_dst.push_back(s.is_dst ? 1 : 0);
        t = s.end;  // > t: every segment contains the instant it was asked for
    }
    d.rule_trans_end = t;
}

// Derived data, once the transitions, types and footer are in place.
void finish(Data& d) {
    bool first = true;
    auto add = [&](std::int32_t off) {
        d.min_off = first ? off : std::min(d.min_off, off);
        d.max_off = first ? off : std::max(d.max_off, off);
        first = false;
    };
    for (const Data::Type& t : d.types) {
        add(t.utoff);
    }
    if (d.footer) {
        add(d.footer->std_off);
        add(d.footer->dst_off);
    }
    precompute_footer(d);
}

// ---- TZif files ----

std::uint32_t be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}

std::int64_t be64(const std::uint8_t* p) {
    return static_cast<std::int64_t>((std::uint64_t{be32(p)} << 32) | be32(p + 4));
}

class ByteReader {
  public:
    ByteReader(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
    bool has(std::uint64_t k) const { return k <= n_ - pos_; }
    // Only after has(k).
    const std::uint8_t* take(std::size_t k) {
        const std::uint8_t* r = p_ + pos_;
        pos_ += k;
        return r;
    }
    std::size_t remaining() const { return n_ - pos_; }

  private:
    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t pos_ = 0;
};

struct Header {
    std::uint8_t version = 0;
    std::uint32_t isutcnt = 0;
    std::uint32_t isstdcnt = 0;
    std::uint32_t leapcnt = 0;
    std::uint32_t timecnt = 0;
    std::uint32_t typecnt = 0;
    std::uint32_t charcnt = 0;

    std::uint64_t block_size(std::uint64_t time_size) const {
        return std::uint64_t{timecnt} * (time_size + 1) + std::uint64_t{typecnt} * 6 + charcnt +
               std::uint64_t{leapcnt} * (time_size + 4) + isstdcnt + isutcnt;
    }
};

std::optional<Header> read_header(ByteReader& r) {
    if (!r.has(44)) {
        return std::nullopt;
    }
    const std::uint8_t* h = r.take(44);
    if (std::memcmp(h, "TZif", 4) != 0) {
        return std::nullopt;
    }
    Header hd;
    hd.version = h[4];
    if (hd.version != 0 && (hd.version < '2' || hd.version > '4')) {
        return std::nullopt;
    }
    hd.isutcnt = be32(h + 20);
    hd.isstdcnt = be32(h + 24);
    hd.leapcnt = be32(h + 28);
    hd.timecnt = be32(h + 32);
    hd.typecnt = be32(h + 36);
    hd.charcnt = be32(h + 40);
    return hd;
}

// Reads one data block (v1: 4-byte times, v2+: 8-byte times) into d.
bool read_block(ByteReader& r, const Header& h, std::size_t time_size, Data& d) {
    if (h.typecnt == 0 || h.typecnt > 256 || h.charcnt == 0 ||
        (h.isstdcnt != 0 && h.isstdcnt != h.typecnt) ||
        (h.isutcnt != 0 && h.isutcnt != h.typecnt) || !r.has(h.block_size(time_size))) {
        return false;
    }
    d.trans.resize(h.timecnt);
    const std::uint8_t* times = r.take(std::size_t{h.timecnt} * time_size);
    for (std::size_t i = 0; i < h.timecnt; ++i) {
        const std::uint8_t* p = times + i * time_size;
        d.trans[i] = time_size == 8 ? be64(p) : std::int64_t{static_cast<std::int32_t>(be32(p))};
        if (i > 0 && d.trans[i] <= d.trans[i - 1]) {
            return false;
        }
    }
    const std::uint8_t* idx = r.take(h.timecnt);
    d.trans_type.assign(idx, idx + h.timecnt);
    for (const std::uint8_t t : d.trans_type) {
        if (t >= h.typecnt) {
            return false;
        }
    }
    const std::uint8_t* types = r.take(std::size_t{h.typecnt} * 6);
    const auto* chars = reinterpret_cast<const char*>(r.take(h.charcnt));
    d.types.resize(h.typecnt);
    for (std::size_t i = 0; i < h.typecnt; ++i) {
        const std::uint8_t* p = types + i * 6;
        const auto utoff = static_cast<std::int32_t>(be32(p));
        const std::uint8_t is_dst = p[4];
        const std::uint8_t desig = p[5];
        if (utoff < kMinUtoff || utoff > kMaxUtoff || is_dst > 1 || desig >= h.charcnt) {
            return false;
        }
        const void* nul = std::memchr(chars + desig, '\0', h.charcnt - desig);
        if (nul == nullptr) {
            return false;
        }
        d.types[i] = Data::Type{utoff, is_dst == 1,
                                std::string(chars + desig, static_cast<const char*>(nul))};
    }
    // Leap-second records only matter for the "right/" zones, which keep TAI-like clocks; for
    // the POSIX-clock zones we read they are skipped.
    r.take(std::size_t{h.leapcnt} * (time_size + 4));
    // Standard/wall and UT/local indicators only matter for POSIX-rule fallbacks built from a
    // zone file (glibc's "posixrules"); just check they are booleans.
    const std::uint8_t* flags = r.take(std::size_t{h.isstdcnt} + h.isutcnt);
    for (std::size_t i = 0; i < std::size_t{h.isstdcnt} + h.isutcnt; ++i) {
        if (flags[i] > 1) {
            return false;
        }
    }
    // glibc (and RFC 8536 in effect, as zic writes type 0 so) uses the first standard-time
    // type before the first transition.
    d.initial_type = 0;
    for (std::size_t i = 0; i < d.types.size(); ++i) {
        if (!d.types[i].is_dst) {
            d.initial_type = static_cast<std::uint8_t>(i);
            break;
        }
    }
    return true;
}

std::optional<Data> parse_tzif(const std::uint8_t* p, std::size_t n) {
    ByteReader r(p, n);
    const std::optional<Header> h1 = read_header(r);
    if (!h1) {
        return std::nullopt;
    }
    Data d;
    if (h1->version == 0) {
        if (!read_block(r, *h1, 4, d)) {
            return std::nullopt;
        }
        finish(d);
        return d;
    }
    // v2+: the v1 block only serves old readers; skip it and read the 64-bit one.
    const std::uint64_t v1_size = h1->block_size(4);
    if (!r.has(v1_size)) {
        return std::nullopt;
    }
    r.take(static_cast<std::size_t>(v1_size));
    const std::optional<Header> h2 = read_header(r);
    if (!h2 || h2->version < '2' || !read_block(r, *h2, 8, d)) {
        return std::nullopt;
    }
    // Footer: "\n<POSIX TZ string>\n"; an empty string means "unspecified after the last
    // transition" (we keep the last type).
    if (!r.has(1) || *r.take(1) != '\n') {
        return std::nullopt;
    }
    const auto* rest = reinterpret_cast<const char*>(r.take(0));
    const void* nl = std::memchr(rest, '\n', r.remaining());
    if (nl == nullptr) {
        return std::nullopt;
    }
    const std::string_view tz(rest, static_cast<std::size_t>(static_cast<const char*>(nl) - rest));
    if (!tz.empty()) {
        d.footer = PosixParser(tz).parse();
        if (!d.footer) {
            return std::nullopt;
        }
    }
    finish(d);
    return d;
}

// The whole file if it is a regular file of at most kMaxFileSize bytes.
std::optional<std::vector<std::uint8_t>> read_small_file(const std::string& path) {
    // O_NONBLOCK: a FIFO planted at the path must not hang us; it is rejected below.
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    struct stat st {};
    if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > static_cast<off_t>(kMaxFileSize)) {
        return std::nullopt;
    }
    // One byte more than fstat reported, so that a file still growing is noticed.
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(st.st_size) + 1);
    std::size_t got = 0;
    for (;;) {
        if (got == buf.size()) {
            if (buf.size() > kMaxFileSize) {
                return std::nullopt;
            }
            buf.resize(std::min(buf.size() * 2, kMaxFileSize + 1));
        }
        const ssize_t k = ::read(fd.get(), buf.data() + got, buf.size() - got);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0) {
            return std::nullopt;
        }
        if (k == 0) {
            break;
        }
        got += static_cast<std::size_t>(k);
    }
    buf.resize(got);
    return buf;
}

bool valid_zone_name(std::string_view n) {
    if (n.empty() || n.size() > 255 || n.front() == '/' || n.find("..") != std::string_view::npos) {
        return false;
    }
    return std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '+' || c == '.' || c == '/' || c == '-';
    });
}

// "Europe/Berlin" from ".../zoneinfo/Europe/Berlin" (or ".../zoneinfo/posix/Europe/Berlin");
// "" when the path does not name a zone that way.
std::string name_from_path(std::string_view path) {
    constexpr std::string_view kMarker = "zoneinfo/";
    const std::size_t pos = path.rfind(kMarker);
    if (pos == std::string_view::npos) {
        return "";
    }
    std::string_view name = path.substr(pos + kMarker.size());
    if (name.substr(0, 6) == "posix/") {
        name.remove_prefix(6);
    }
    return valid_zone_name(name) ? std::string(name) : std::string();
}

// Like glibc: $TZDIR when set (and absolute), else the system directory.
std::string zone_dir() {
    const char* dir = std::getenv("TZDIR");
    return dir != nullptr && dir[0] == '/' ? std::string(dir) : std::string(kDefaultZoneDir);
}

std::shared_ptr<const Data> make_utc_data(std::string name) {
    auto d = std::make_shared<Data>();
    d->name = std::move(name);
    d->types.push_back(Data::Type{0, false, "UTC"});
    return d;
}

}  // namespace

TimeZone TimeZone::utc() {
    static const std::shared_ptr<const Data> kUtc = make_utc_data("UTC");
    return TimeZone(kUtc);
}

std::optional<TimeZone> TimeZone::from_file(const std::string& path, std::string name) {
    const std::optional<std::vector<std::uint8_t>> bytes = read_small_file(path);
    if (!bytes) {
        return std::nullopt;
    }
    std::optional<Data> d = parse_tzif(bytes->data(), bytes->size());
    if (!d) {
        return std::nullopt;
    }
    d->name = std::move(name);
    return TimeZone(std::make_shared<const Data>(std::move(*d)));
}

std::optional<TimeZone> TimeZone::load(std::string_view iana_name) {
    if (!valid_zone_name(iana_name)) {
        return std::nullopt;
    }
    std::optional<TimeZone> tz =
        from_file(zone_dir() + "/" + std::string(iana_name), std::string(iana_name));
    if (!tz && (iana_name == "UTC" || iana_name == "Etc/UTC")) {
        // Minimal containers ship without tzdata; UTC must work there all the same.
        return TimeZone(make_utc_data(std::string(iana_name)));
    }
    return tz;
}

TimeZone TimeZone::local() {
    try {
        const char* env = std::getenv("TZ");
        std::string_view spec = env != nullptr ? env : ":";
        if (spec.empty()) {
            return utc();  // glibc: TZ="" is UTC
        }
        if (spec.front() == ':') {
            spec.remove_prefix(1);
        }
        if (spec.empty()) {
            std::error_code ec;
            const std::filesystem::path target = std::filesystem::read_symlink(kLocaltimePath, ec);
            std::optional<TimeZone> tz =
                from_file(kLocaltimePath, ec ? std::string() : name_from_path(target.string()));
            return tz ? *tz : utc();
        }
        if (spec.front() == '/') {
            if (std::optional<TimeZone> tz = from_file(std::string(spec), name_from_path(spec))) {
                return *tz;
            }
        } else if (std::optional<TimeZone> tz = load(spec)) {
            return *tz;
        }
        if (std::optional<PosixTz> rule = PosixParser(spec).parse()) {
            auto d = std::make_shared<Data>();
            d->footer = std::move(rule);
            finish(*d);
            return TimeZone(std::move(d));
        }
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented to fall back to UTC
    }
    return utc();
}

const std::string& TimeZone::name() const {
    return d_->name;
}

TimeZone::Offset TimeZone::at(std::chrono::sys_seconds t) const {
    const Segment s = segment_at(*d_, t.time_since_epoch().count());
    return Offset{std::chrono::seconds(s.utoff), s.is_dst, *s.abbrev};
}

std::vector<std::chrono::sys_seconds> TimeZone::from_local(std::chrono::local_seconds lt) const {
    // Every solution t of t + offset(t) == lt lies in [lt - max_off, lt - min_off]; walk the
    // segments covering that window and keep each one's candidate lt - utoff that it contains.
    std::vector<std::chrono::sys_seconds> out;
    const Data& d = *d_;
    const std::int64_t l = lt.time_since_epoch().count();
    std::int64_t lo = 0;
    std::int64_t hi = 0;
    if (__builtin_sub_overflow(l, std::int64_t{d.max_off}, &lo)) {
        lo = d.max_off > 0 ? kMinT : kMaxT;
    }
    if (__builtin_sub_overflow(l, std::int64_t{d.min_off}, &hi)) {
        hi = d.min_off > 0 ? kMinT : kMaxT;
    }
    Segment s = segment_at(d, lo);
    for (;;) {
        std::int64_t cand = 0;
        if (!__builtin_sub_overflow(l, std::int64_t{s.utoff}, &cand) && cand >= s.start &&
            (cand < s.end || s.end == kMaxT)) {
            if (out.empty()) {
                out.reserve(2);
            }
            out.emplace_back(std::chrono::seconds(cand));
        }
        if (s.end == kMaxT || s.end > hi) {
            break;
        }
        s = segment_at(d, s.end);
    }
    return out;
}

}  // namespace mlk::util
