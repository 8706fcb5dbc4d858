#include "mlkeeper/util/units.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>

namespace mlk::util {

namespace {

// Exact arithmetic for "1.5 EiB" needs more than 64 bits: whole (< 2^64) times a multiplier
// (<= 2^60) and an 18-digit fraction times a multiplier both fit in 128.
__extension__ typedef unsigned __int128 U128;

constexpr int kMaxFractionDigits = 18;

struct Decimal {
    std::uint64_t whole = 0;
    std::uint64_t fraction = 0;   // the first `digits` fraction digits, trailing zeros removed
    int digits = 0;               // so the value is whole + fraction / 10^digits
    bool fraction_cut = false;    // a non-zero digit beyond kMaxFractionDigits was dropped
    bool whole_overflow = false;  // more than 2^64-1
};

std::uint64_t pow10_u64(int n) {
    std::uint64_t p = 1;
    for (int i = 0; i < n; ++i) {
        p *= 10;
    }
    return p;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

void skip_spaces(std::string_view& s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
}

// Consumes "<digits>[.<digits>]" from the front of `s`; nullopt (and `s` untouched) if there is
// no such number. Signs are not numbers here, so "-5" is rejected by the callers.
std::optional<Decimal> take_decimal(std::string_view& s) {
    std::string_view rest = s;
    Decimal d;
    if (rest.empty() || !is_digit(rest.front())) {
        return std::nullopt;
    }
    while (!rest.empty() && is_digit(rest.front())) {
        const auto digit = static_cast<std::uint64_t>(rest.front() - '0');
        if (d.whole > (UINT64_MAX - digit) / 10) {
            d.whole_overflow = true;
        } else {
            d.whole = d.whole * 10 + digit;
        }
        rest.remove_prefix(1);
    }
    if (!rest.empty() && rest.front() == '.') {
        rest.remove_prefix(1);
        if (rest.empty() || !is_digit(rest.front())) {
            return std::nullopt;  // "1." is a typo, not a number
        }
        int kept = 0;
        std::uint64_t raw = 0;
        while (!rest.empty() && is_digit(rest.front())) {
            const int digit = rest.front() - '0';
            if (kept < kMaxFractionDigits) {
                raw = raw * 10 + static_cast<std::uint64_t>(digit);
                ++kept;
            } else if (digit != 0) {
                d.fraction_cut = true;
            }
            rest.remove_prefix(1);
        }
        while (kept > 0 && raw % 10 == 0) {
            raw /= 10;
            --kept;
        }
        d.fraction = raw;
        d.digits = kept;
    }
    s = rest;
    return d;
}

std::string_view take_word(std::string_view& s) {
    std::size_t n = 0;
    while (n < s.size() && is_alpha(s[n])) {
        ++n;
    }
    const std::string_view word = s.substr(0, n);
    s.remove_prefix(n);
    return word;
}

std::string lower_ascii(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return out;
}

std::string printf_string(const char* fmt, double value, const char* unit) {
    const int n = std::snprintf(nullptr, 0, fmt, value, unit);
    std::string out(static_cast<std::size_t>(n > 0 ? n : 0), '\0');
    std::snprintf(out.data(), out.size() + 1, fmt, value, unit);
    return out;
}

// ---- durations ----

struct DurationUnitName {
    std::string_view name;
    std::int64_t seconds;
};

// Long spellings too, because "30 days" and "10min" are what people write in config files.
constexpr std::array<DurationUnitName, 21> kDurationUnits = {{
    {"s", 1},          {"sec", 1},     {"secs", 1},     {"second", 1},  {"seconds", 1},
    {"m", 60},         {"min", 60},    {"mins", 60},    {"minute", 60}, {"minutes", 60},
    {"h", 3600},       {"hr", 3600},   {"hrs", 3600},   {"hour", 3600}, {"hours", 3600},
    {"d", 86400},      {"day", 86400}, {"days", 86400}, {"w", 604800},  {"week", 604800},
    {"weeks", 604800},
}};

std::optional<std::int64_t> duration_unit_seconds(std::string_view word) {
    for (const auto& u : kDurationUnits) {
        if (u.name == word) {
            return u.seconds;
        }
    }
    return std::nullopt;
}

std::int64_t plain_unit_seconds(DurationUnit unit) {
    switch (unit) {
        case DurationUnit::kSeconds:
            return 1;
        case DurationUnit::kMinutes:
            return 60;
        case DurationUnit::kHours:
            return 3600;
        case DurationUnit::kDays:
            return 86400;
    }
    return 1;
}

[[noreturn]] void throw_duration(std::string_view text, std::string_view why) {
    throw std::invalid_argument("invalid duration \"" + std::string(text) +
                                "\": " + std::string(why));
}

[[noreturn]] void throw_duration_syntax(std::string_view text) {
    throw_duration(text,
                   "expected a number with an optional unit s, m, h, d or w (e.g. 30d, 10m, 90s)");
}

// ---- sizes ----

std::optional<std::uint64_t> size_unit_multiplier(const std::string& unit) {
    static constexpr std::string_view kPrefixes = "kmgtpe";
    if (unit.empty() || unit == "b") {
        return 1;
    }
    const auto power = kPrefixes.find(unit[0]);
    if (power == std::string_view::npos) {
        return std::nullopt;
    }
    const std::string_view tail = std::string_view(unit).substr(1);
    const int exponent = static_cast<int>(power) + 1;
    if (tail.empty() || tail == "b") {
        return pow10_u64(3 * exponent);
    }
    if (tail == "i" || tail == "ib") {
        return std::uint64_t{1} << (10 * exponent);
    }
    return std::nullopt;
}

[[noreturn]] void throw_size(std::string_view text, std::string_view why) {
    throw std::invalid_argument("invalid size \"" + std::string(text) + "\": " + std::string(why));
}

constexpr std::array<const char*, 6> kBinaryUnits = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};

// One decimal from KiB up; a value that would round to "1024.0 KiB" moves to the next unit.
std::string format_binary(double value, const char* per) {
    if (!std::isfinite(value) || value < 0) {
        value = 0;
    }
    if (std::round(value) < 1024) {
        return printf_string("%.0f B%s", value, per);
    }
    std::size_t unit = 0;
    value /= 1024;
    while (value >= 1024 && unit + 1 < kBinaryUnits.size()) {
        value /= 1024;
        ++unit;
    }
    if (std::round(value * 10) / 10 >= 1024 && unit + 1 < kBinaryUnits.size()) {
        value /= 1024;
        ++unit;
    }
    const std::string unit_text = std::string(kBinaryUnits[unit]) + per;
    return printf_string("%.1f %s", value, unit_text.c_str());
}

}  // namespace

std::chrono::seconds parse_duration(std::string_view text, DurationUnit plain_unit) {
    std::string_view s = text;
    U128 total = 0;
    int parts = 0;
    skip_spaces(s);
    if (s.empty()) {
        throw_duration_syntax(text);
    }
    while (true) {
        skip_spaces(s);
        if (s.empty()) {
            break;
        }
        const auto number = take_decimal(s);
        if (!number) {
            throw_duration_syntax(text);
        }
        skip_spaces(s);
        const std::string_view word = take_word(s);
        std::int64_t unit_seconds = 0;
        if (word.empty()) {
            // A bare number is only unambiguous on its own: "1h30" could mean 30s or 30m.
            skip_spaces(s);
            if (parts > 0 || !s.empty()) {
                throw_duration_syntax(text);
            }
            unit_seconds = plain_unit_seconds(plain_unit);
        } else if (const auto u = duration_unit_seconds(word)) {
            unit_seconds = *u;
        } else {
            throw_duration_syntax(text);
        }
        if (number->whole_overflow) {
            throw_duration(text, "too large, expected at most 36525d (100 years)");
        }
        const auto unit = static_cast<U128>(unit_seconds);
        const U128 scale = pow10_u64(number->digits);
        const U128 fraction_part = number->fraction * unit;
        if (fraction_part % scale != 0 || number->fraction_cut) {
            throw_duration(text, "expected a whole number of seconds (e.g. 1.5m, not 1.5s)");
        }
        total += number->whole * unit + fraction_part / scale;
        if (total > static_cast<U128>(kMaxDuration.count())) {
            throw_duration(text, "too large, expected at most 36525d (100 years)");
        }
        ++parts;
    }
    return std::chrono::seconds(static_cast<std::int64_t>(total));
}

std::uint64_t parse_size(std::string_view text) {
    static constexpr std::string_view kExpected =
        "expected a number with an optional unit B, K, M, G, T, P, E (powers of 1000) or KiB, "
        "MiB, GiB, TiB, PiB, EiB (powers of 1024) (e.g. 500GB, 2GiB, 100M)";
    std::string_view s = text;
    skip_spaces(s);
    const auto number = take_decimal(s);
    if (!number) {
        throw_size(text, kExpected);
    }
    skip_spaces(s);
    const std::string unit = lower_ascii(take_word(s));
    skip_spaces(s);
    const auto multiplier = size_unit_multiplier(unit);
    if (!s.empty() || !multiplier) {
        throw_size(text, kExpected);
    }
    const U128 value =
        static_cast<U128>(number->whole) * *multiplier +
        static_cast<U128>(number->fraction) * *multiplier / pow10_u64(number->digits);
    if (number->whole_overflow || value > UINT64_MAX) {
        throw_size(text, "too large, expected at most 16 EiB (2^64-1 bytes)");
    }
    return static_cast<std::uint64_t>(value);
}

std::string format_bytes(std::uint64_t bytes) {
    if (bytes < 1024) {
        return std::to_string(bytes) + " B";
    }
    return format_binary(static_cast<double>(bytes), "");
}

std::string format_rate(double bytes_per_sec) {
    return format_binary(bytes_per_sec, "/s");
}

std::string format_duration(std::chrono::seconds s) {
    const bool negative = s.count() < 0;
    // Negate in unsigned arithmetic so INT64_MIN does not overflow.
    std::uint64_t left = negative ? 0 - static_cast<std::uint64_t>(s.count())
                                  : static_cast<std::uint64_t>(s.count());
    static constexpr std::array<std::pair<std::uint64_t, char>, 4> kUnits = {
        {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}}};
    std::array<std::uint64_t, 4> counts{};
    for (std::size_t i = 0; i < kUnits.size(); ++i) {
        counts[i] = left / kUnits[i].first;
        left %= kUnits[i].first;
    }
    std::size_t first = 0;
    while (first + 1 < counts.size() && counts[first] == 0) {
        ++first;
    }
    std::string out = negative ? "-" : "";
    out += std::to_string(counts[first]) + kUnits[first].second;
    if (first + 1 < counts.size() && counts[first + 1] != 0) {
        out += ' ' + std::to_string(counts[first + 1]) + kUnits[first + 1].second;
    }
    return out;
}

std::string format_duration_setting(std::chrono::seconds s) {
    const bool negative = s.count() < 0;
    const std::uint64_t total = negative ? 0 - static_cast<std::uint64_t>(s.count())
                                         : static_cast<std::uint64_t>(s.count());
    if (total == 0) {
        return "0s";
    }
    static constexpr std::array<std::pair<std::uint64_t, char>, 5> kUnits = {
        {{604800, 'w'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}}};
    // Try every set of units, each filled largest-first; keep the shortest exact spelling.
    // Subsets are visited so that, at equal length and part count, larger units come first.
    std::string best;
    int best_parts = 0;
    for (unsigned mask = (1u << kUnits.size()) - 1; mask > 0; --mask) {
        std::uint64_t left = total;
        std::string text;
        int parts = 0;
        bool valid = true;
        for (std::size_t i = 0; i < kUnits.size() && valid; ++i) {
            if ((mask & (1u << (kUnits.size() - 1 - i))) == 0) {
                continue;
            }
            const std::uint64_t count = left / kUnits[i].first;
            left %= kUnits[i].first;
            valid = count > 0;
            text += std::to_string(count) + kUnits[i].second;
            ++parts;
        }
        if (!valid || left != 0) {
            continue;
        }
        if (best.empty() || text.size() < best.size() ||
            (text.size() == best.size() && parts < best_parts)) {
            best = text;
            best_parts = parts;
        }
    }
    return negative ? "-" + best : best;
}

}  // namespace mlk::util
