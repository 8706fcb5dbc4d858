#include "mlkeeper/metrics/svg_chart.hpp"

#include <time.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string_view>

namespace mlk::metrics {

namespace {

// Layout works on estimates: the server cannot measure text, so widths assume an average glyph
// advance of an 11 px sans-serif font.
constexpr double kCharWidth = 6.2;
constexpr double kTitleRow = 24;
constexpr double kXLabelRow = 16;
constexpr double kLegendRow = 15;
constexpr double kMinPlotHeight = 30;
// Values are clamped to this magnitude so that ranges and scales stay finite.
constexpr double kMaxAbs = 1e15;
constexpr std::size_t kPaletteSize = sizeof(kChartPalette) / sizeof(kChartPalette[0]);

struct Point {
    std::int64_t t;
    double v;
};
using Segment = std::vector<Point>;

// Appends `s` escaped for XML text and attribute values. Bytes that would make the document
// unparsable (control characters, invalid UTF-8) become U+FFFD, because one bad GPU name must
// not break the whole chart.
void append_escaped(std::string& out, std::string_view s) {
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
                case '&':
                    out += "&amp;";
                    break;
                case '<':
                    out += "&lt;";
                    break;
                case '>':
                    out += "&gt;";
                    break;
                case '"':
                    out += "&quot;";
                    break;
                case '\'':
                    out += "&#39;";
                    break;
                case '\t':
                case '\n':
                case '\r':
                    out += ' ';
                    break;
                default:
                    if (c < 0x20 || c == 0x7f) {
                        out += kReplacement;
                    } else {
                        out += static_cast<char>(c);
                    }
            }
            ++i;
            continue;
        }
        // The lead byte fixes the length and the allowed range of the second byte (no overlong
        // forms, no surrogates, nothing above U+10FFFF).
        std::size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        }
        bool ok = len != 0 && i + len <= s.size();
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        }
        if (ok) {
            out.append(s.substr(i, len));
            i += len;
        } else {
            out += kReplacement;
            ++i;
        }
    }
}

std::string escaped(std::string_view s) {
    std::string out;
    append_escaped(out, s);
    return out;
}

// Characters as the reader sees them (UTF-8 code points), for width estimates.
double text_width(std::string_view s) {
    std::size_t n = 0;
    for (char c : s) {
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
            ++n;
        }
    }
    return static_cast<double>(n) * kCharWidth;
}

// Locale-independent fixed notation; never "-0".
std::string fixed(double v, int decimals) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed, decimals);
    std::string s(buf, r.ptr);
    if (!s.empty() && s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) {
        s.erase(0, 1);
    }
    return s;
}

std::string coord(double v) {
    return fixed(v, 1);
}

std::string with_unit(const std::string& number, const std::string& unit) {
    if (unit.empty()) {
        return number;
    }
    return unit == "%" ? number + unit : number + " " + unit;
}

// A latest value for the legend: whole numbers from 100 up, else one decimal without a ".0".
std::string short_value(double v) {
    std::string s = fixed(v, std::abs(v) >= 100 ? 0 : 1);
    if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) {
        s.resize(s.size() - 2);
    }
    return s;
}

bool is_drawable(const std::optional<double>& v) {
    return v && std::isfinite(*v);
}

// The series' samples inside [t0, t1] in time order, cut into runs that are drawn as one line.
std::vector<Segment> segments_of(const ChartSeries& s, std::int64_t t0, std::int64_t t1) {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < s.t.size(); ++i) {
        if (s.t[i] >= t0 && s.t[i] <= t1) {
            idx.push_back(i);
        }
    }
    std::stable_sort(idx.begin(), idx.end(),
                     [&](std::size_t a, std::size_t b) { return s.t[a] < s.t[b]; });

    // The sampling interval from every sample's timestamp, missing values included: they still
    // show the cadence.
    std::vector<std::int64_t> steps;
    for (std::size_t k = 1; k < idx.size(); ++k) {
        const std::int64_t d = s.t[idx[k]] - s.t[idx[k - 1]];
        if (d > 0) {
            steps.push_back(d);
        }
    }
    std::optional<std::int64_t> median;
    if (!steps.empty()) {
        auto mid = steps.begin() + static_cast<std::ptrdiff_t>((steps.size() - 1) / 2);
        std::nth_element(steps.begin(), mid, steps.end());
        median = *mid;
    }

    std::vector<Segment> out;
    Segment cur;
    auto close = [&] {
        if (!cur.empty()) {
            out.push_back(std::move(cur));
            cur.clear();
        }
    };
    for (std::size_t i : idx) {
        if (!is_drawable(s.v[i])) {
            close();
            continue;
        }
        if (!cur.empty() && median && s.t[i] - cur.back().t > 3 * *median) {
            close();
        }
        cur.push_back({s.t[i], std::clamp(*s.v[i], -kMaxAbs, kMaxAbs)});
    }
    close();
    return out;
}

double nice_step(double raw) {
    const double e = std::floor(std::log10(raw));
    const double base = std::pow(10.0, e);
    const double f = raw / base;
    const double nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * base;
}

struct YAxis {
    double lo, hi, step;
    int decimals;
};

YAxis y_axis(const ChartSpec& spec, double data_min, double data_max, int max_intervals) {
    std::optional<double> fix_lo, fix_hi;
    if (spec.y_min && std::isfinite(*spec.y_min)) {
        fix_lo = std::clamp(*spec.y_min, -kMaxAbs, kMaxAbs);
    }
    if (spec.y_max && std::isfinite(*spec.y_max)) {
        fix_hi = std::clamp(*spec.y_max, -kMaxAbs, kMaxAbs);
    }
    if (fix_lo && fix_hi && *fix_lo >= *fix_hi) {
        fix_lo.reset();
        fix_hi.reset();
    }
    double lo = fix_lo.value_or(data_min);
    double hi = fix_hi.value_or(data_max);
    if (hi <= lo) {
        // Flat data, or data entirely beyond one fixed side: open a range around what is known.
        const double anchor = fix_lo ? lo : hi;
        const double span = anchor == 0 ? 1 : std::abs(anchor) * 0.1;
        if (fix_lo) {
            hi = lo + span;
        } else if (fix_hi) {
            lo = hi - span;
        } else {
            lo = anchor - span;
            hi = anchor + span;
        }
    }
    double step = nice_step((hi - lo) / max_intervals);
    double a = lo, b = hi;
    for (int tries = 0; tries < 8; ++tries) {
        a = fix_lo ? lo : std::floor(lo / step) * step;
        b = fix_hi ? hi : std::ceil(hi / step) * step;
        if ((b - a) / step <= max_intervals + 1e-9) {
            break;
        }
        step = nice_step(step * 1.01);
    }
    const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
    return {a, b, step, decimals};
}

// X tick spacing candidates (seconds); longer ranges use whole weeks.
constexpr std::int64_t kTimeSteps[] = {60,   120,   300,   600,   900,   1800,   3600,
                                       7200, 10800, 21600, 43200, 86400, 172800, 604800};

std::string local_label(std::int64_t t, bool with_day) {
    const time_t tt = static_cast<time_t>(t);
    struct tm tm {};
    if (localtime_r(&tt, &tm) == nullptr) {
        return "?";
    }
    char buf[32];
    const std::size_t n = strftime(buf, sizeof(buf), with_day ? "%a %H:%M" : "%H:%M", &tm);
    return std::string(buf, n);
}

// Tick instants in [t0, t1] on local wall-clock multiples of `step` (midnights for days), so
// labels read 14:00, 14:15 ... in any time zone, half-hour offsets and DST days included.
std::vector<std::int64_t> time_ticks(std::int64_t t0, std::int64_t t1, std::int64_t step) {
    std::vector<std::int64_t> out;
    const time_t start = static_cast<time_t>(t0);
    struct tm base {};
    if (localtime_r(&start, &base) == nullptr) {
        return out;
    }
    // Wall-clock seconds since local midnight of t0's day. Every field handed to mktime stays in
    // range but the day of the month: glibc adds an out-of-range tm_sec as elapsed seconds, which
    // would put ticks an hour off the wall-clock grid after a DST change.
    const std::int64_t sod = base.tm_hour * 3600 + base.tm_min * 60 + base.tm_sec;
    std::int64_t wall = step >= 86400 ? 0 : (sod + step - 1) / step * step;
    for (int guard = 0; guard < 200 && out.size() < 60; ++guard, wall += step) {
        struct tm tm = base;
        tm.tm_mday += static_cast<int>(wall / 86400);
        tm.tm_hour = static_cast<int>(wall % 86400 / 3600);
        tm.tm_min = static_cast<int>(wall % 3600 / 60);
        tm.tm_sec = static_cast<int>(wall % 60);
        tm.tm_isdst = -1;
        const time_t t = mktime(&tm);
        if (t == static_cast<time_t>(-1) || t > t1) {
            break;
        }
        if (t >= t0 && (out.empty() || t > out.back())) {
            out.push_back(t);
        }
    }
    return out;
}

struct LegendItem {
    std::string label, value;
    double x, y, width;
};

}  // namespace

std::string render_line_chart(const ChartSpec& spec, const std::vector<ChartSeries>& series) {
    if (spec.t1 <= spec.t0) {
        throw std::invalid_argument("render_line_chart: t1 (" + std::to_string(spec.t1) +
                                    ") must be after t0 (" + std::to_string(spec.t0) + ")");
    }
    for (const auto& s : series) {
        if (s.t.size() != s.v.size()) {
            throw std::invalid_argument("render_line_chart: series \"" + s.label + "\" has " +
                                        std::to_string(s.t.size()) + " times but " +
                                        std::to_string(s.v.size()) + " values");
        }
    }
    const double width = std::max(spec.width, 160);
    const double height = std::max(spec.height, 100);

    std::vector<std::vector<Segment>> segs;
    bool any = false;
    double dmin = 0, dmax = 0;
    for (const auto& s : series) {
        segs.push_back(segments_of(s, spec.t0, spec.t1));
        for (const auto& seg : segs.back()) {
            for (const auto& p : seg) {
                dmin = any ? std::min(dmin, p.v) : p.v;
                dmax = any ? std::max(dmax, p.v) : p.v;
                any = true;
            }
        }
    }

    std::string out;
    out.reserve(4096);
    const std::string title = escaped(spec.title);
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"mlk-chart\" viewBox=\"0 0 ";
    out += fixed(width, 0) + " " + fixed(height, 0) + "\" width=\"" + fixed(width, 0) +
           "\" height=\"" + fixed(height, 0) + "\" role=\"img\" aria-label=\"" + title +
           "\" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\" "
           "font-size=\"11\">\n";
    out += "<title>" + title + "</title>\n";
    out +=
        "<text class=\"title\" x=\"8\" y=\"16\" font-size=\"12\" font-weight=\"600\" "
        "fill=\"currentColor\">" +
        title + "</text>\n";

    if (!any) {
        const double cy = kTitleRow + (height - kTitleRow) / 2;
        out += "<text class=\"no-data\" x=\"" + coord(width / 2) + "\" y=\"" + coord(cy) +
               "\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"currentColor\" "
               "fill-opacity=\"0.6\">no data</text>\n</svg>\n";
        return out;
    }

    // Legend rows at the bottom, wrapped to the width.
    std::vector<LegendItem> legend;
    {
        double x = 8;
        int row = 0;
        for (std::size_t i = 0; i < series.size(); ++i) {
            std::string value;
            if (!segs[i].empty()) {
                value = with_unit(short_value(segs[i].back().back().v), spec.unit);
            }
            const double w =
                18 + text_width(series[i].label) + (value.empty() ? 0 : 6 + text_width(value));
            if (x > 8 && x + w > width - 8) {
                x = 8;
                ++row;
            }
            legend.push_back({series[i].label, value, x, static_cast<double>(row), w});
            x += w + 14;
        }
    }
    int legend_rows = legend.empty() ? 0 : static_cast<int>(legend.back().y) + 1;
    double plot_top = kTitleRow + 4;
    double plot_bottom = height - kXLabelRow - legend_rows * kLegendRow - 4;
    if (plot_bottom - plot_top < kMinPlotHeight) {
        legend_rows = 0;  // too small for a legend; the lines keep their <title> tooltips
        plot_bottom = height - kXLabelRow - 4;
    }
    const double plot_h = plot_bottom - plot_top;

    const int max_intervals = std::clamp(static_cast<int>(plot_h / 24), 2, 6);
    const YAxis ya = y_axis(spec, dmin, dmax, max_intervals);
    std::vector<std::pair<double, std::string>> yticks;
    {
        const auto first = static_cast<long long>(std::ceil(ya.lo / ya.step - 1e-9));
        const auto last = static_cast<long long>(std::floor(ya.hi / ya.step + 1e-9));
        for (long long k = first; k <= last && yticks.size() < 50; ++k) {
            const double v = static_cast<double>(k) * ya.step;
            yticks.emplace_back(v, with_unit(fixed(v, ya.decimals), spec.unit));
        }
    }
    double label_w = 0;
    for (const auto& [v, text] : yticks) {
        label_w = std::max(label_w, text_width(text));
    }
    const double plot_left = 8 + label_w + 6;
    const double plot_right = width - 12;
    const double plot_w = std::max(plot_right - plot_left, 10.0);

    const double span_t = static_cast<double>(spec.t1 - spec.t0);
    auto x_of = [&](std::int64_t t) {
        return plot_left + static_cast<double>(t - spec.t0) / span_t * plot_w;
    };
    auto y_of = [&](double v) {
        const double c = std::clamp(v, ya.lo, ya.hi);
        return plot_bottom - (c - ya.lo) / (ya.hi - ya.lo) * plot_h;
    };

    out +=
        "<g class=\"grid\" stroke=\"currentColor\" stroke-opacity=\"0.15\" "
        "stroke-width=\"1\">\n";
    for (const auto& [v, text] : yticks) {
        const std::string y = coord(y_of(v));
        out += "<line x1=\"" + coord(plot_left) + "\" x2=\"" + coord(plot_right) + "\" y1=\"" + y +
               "\" y2=\"" + y + "\"/>\n";
    }
    out +=
        "</g>\n<g class=\"y-labels\" fill=\"currentColor\" fill-opacity=\"0.7\" "
        "text-anchor=\"end\">\n";
    for (const auto& [v, text] : yticks) {
        out += "<text x=\"" + coord(plot_left - 6) + "\" y=\"" + coord(y_of(v) + 4) + "\">" +
               escaped(text) + "</text>\n";
    }
    out += "</g>\n";

    // X ticks: the smallest step whose labels fit side by side.
    const bool with_day = spec.t1 - spec.t0 > 86400;
    const double xlabel_w = text_width(with_day ? "Mon 00:00" : "00:00") + 24;
    const auto max_xticks = std::max<std::int64_t>(2, static_cast<std::int64_t>(plot_w / xlabel_w));
    std::int64_t step = 0;
    for (std::int64_t s : kTimeSteps) {
        if ((spec.t1 - spec.t0) / s <= max_xticks) {
            step = s;
            break;
        }
    }
    if (step == 0) {
        const std::int64_t weeks = (spec.t1 - spec.t0) / max_xticks / 604800 + 1;
        step = weeks * 604800;
    }
    out +=
        "<g class=\"x-labels\" fill=\"currentColor\" fill-opacity=\"0.7\" "
        "text-anchor=\"middle\">\n";
    std::string xgrid;
    for (std::int64_t t : time_ticks(spec.t0, spec.t1, step)) {
        const double x = x_of(t);
        const std::string label = local_label(t, with_day);
        const double half = text_width(label) / 2;
        // Not into the y labels' column (the lowest one sits just above) nor off the edge.
        if (x - half < plot_left - 4 || x + half > width - 2) {
            continue;
        }
        out += "<text x=\"" + coord(x) + "\" y=\"" + coord(plot_bottom + 14) + "\">" +
               escaped(label) + "</text>\n";
        xgrid += "<line x1=\"" + coord(x) + "\" x2=\"" + coord(x) + "\" y1=\"" + coord(plot_top) +
                 "\" y2=\"" + coord(plot_bottom) + "\"/>\n";
    }
    out += "</g>\n<g class=\"x-grid\" stroke=\"currentColor\" stroke-opacity=\"0.07\">\n" + xgrid +
           "</g>\n";

    out +=
        "<g class=\"lines\" fill=\"none\" stroke-width=\"1.75\" stroke-linejoin=\"round\" "
        "stroke-linecap=\"round\">\n";
    const auto columns = static_cast<std::size_t>(plot_w) + 1;
    for (std::size_t i = 0; i < series.size(); ++i) {
        std::string d;
        auto add = [&](const Point& p, bool move) {
            d += move ? (d.empty() ? "M" : " M") : " L";
            d += coord(x_of(p.t)) + " " + coord(y_of(p.v));
        };
        for (const Segment& seg : segs[i]) {
            if (seg.size() == 1) {
                add(seg[0], true);
                d += " h0";  // a zero-length subpath with round caps: a dot
                continue;
            }
            if (seg.size() <= 2 * columns) {
                for (std::size_t k = 0; k < seg.size(); ++k) {
                    add(seg[k], k == 0);
                }
                continue;
            }
            // Per pixel column keep the first, lowest, highest and last sample, in time order.
            bool first_out = true;
            std::size_t k = 0;
            while (k < seg.size()) {
                const auto col = static_cast<long long>(x_of(seg[k].t) - plot_left);
                std::size_t end = k, lo = k, hi = k;
                while (end < seg.size() &&
                       static_cast<long long>(x_of(seg[end].t) - plot_left) == col) {
                    if (seg[end].v < seg[lo].v) {
                        lo = end;
                    }
                    if (seg[end].v > seg[hi].v) {
                        hi = end;
                    }
                    ++end;
                }
                std::size_t keep[] = {k, lo, hi, end - 1};
                std::sort(std::begin(keep), std::end(keep));
                for (std::size_t j = 0; j < 4; ++j) {
                    if (j > 0 && keep[j] == keep[j - 1]) {
                        continue;
                    }
                    add(seg[keep[j]], first_out);
                    first_out = false;
                }
                k = end;
            }
        }
        const std::string label = escaped(series[i].label);
        out += "<path class=\"line s" + std::to_string(i) + "\" data-series=\"" + label +
               "\" stroke=\"" + kChartPalette[i % kPaletteSize] + "\" d=\"" + d + "\"><title>" +
               label + "</title></path>\n";
    }
    out += "</g>\n";

    if (legend_rows > 0) {
        out += "<g class=\"legend\" fill=\"currentColor\">\n";
        for (std::size_t i = 0; i < legend.size(); ++i) {
            const LegendItem& it = legend[i];
            const double y = plot_bottom + kXLabelRow + 12 + it.y * kLegendRow;
            out += "<g class=\"legend-item\" data-legend=\"" + std::to_string(i) + "\">";
            out += "<line x1=\"" + coord(it.x) + "\" x2=\"" + coord(it.x + 12) + "\" y1=\"" +
                   coord(y - 4) + "\" y2=\"" + coord(y - 4) + "\" stroke=\"" +
                   kChartPalette[i % kPaletteSize] +
                   "\" stroke-width=\"3\" stroke-linecap=\"round\"/>";
            out +=
                "<text x=\"" + coord(it.x + 18) + "\" y=\"" + coord(y) + "\">" + escaped(it.label);
            if (!it.value.empty()) {
                out += "<tspan dx=\"6\" fill-opacity=\"0.7\">" + escaped(it.value) + "</tspan>";
            }
            out += "</text></g>\n";
        }
        out += "</g>\n";
    }
    out += "</svg>\n";
    return out;
}

}  // namespace mlk::metrics
