#include "mlkeeper/metrics/svg_chart.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/scoped_tz.hpp"

namespace mlk::metrics {
namespace {

constexpr std::int64_t kT0 = 1'800'000'000;  // Fri 2027-01-15 08:00:00 UTC

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) {
        ++n;
    }
    return n;
}

// Every series' path `d` attribute, in document order. (std::regex recurses per character and
// overflows the stack on long paths, so this scans by hand.)
std::vector<std::string> paths(const std::string& svg) {
    std::vector<std::string> out;
    for (auto pos = svg.find("<path class=\"line s"); pos != std::string::npos;
         pos = svg.find("<path class=\"line s", pos + 1)) {
        const auto d = svg.find(" d=\"", pos);
        const auto end = svg.find('"', d + 4);
        out.push_back(svg.substr(d + 4, end - d - 4));
    }
    return out;
}

// The text of every element of class `cls`'s group ("x-labels", "y-labels").
std::vector<std::string> labels(const std::string& svg, const std::string& cls) {
    std::vector<std::string> out;
    const auto start = svg.find("<g class=\"" + cls + "\"");
    if (start == std::string::npos) {
        return out;
    }
    const auto end = svg.find("</g>", start);
    const std::string group = svg.substr(start, end - start);
    static const std::regex re(R"re(<text[^>]*>([^<]*)</text>)re");
    for (std::sregex_iterator it(group.begin(), group.end(), re), e; it != e; ++it) {
        out.push_back((*it)[1]);
    }
    return out;
}

// The y coordinates of a path's points ("M x y L x y ..." with "h0" dots).
std::vector<double> ys(const std::string& d) {
    std::vector<double> out;
    std::istringstream in(d);
    std::string tok;
    while (in >> tok) {
        if (tok == "M" || tok == "L") {
            double x = 0, y = 0;
            in >> x >> y;
            out.push_back(y);
        } else if (tok[0] == 'M' || tok[0] == 'L') {
            double y = 0;
            in >> y;
            out.push_back(y);
        }
    }
    return out;
}

// Samples every `step` seconds from kT0 with the given values.
ChartSeries series_of(std::string label, const std::vector<std::optional<double>>& v,
                      std::int64_t step = 10) {
    ChartSeries s{std::move(label), {}, {}};
    for (std::size_t i = 0; i < v.size(); ++i) {
        s.t.push_back(kT0 + static_cast<std::int64_t>(i) * step);
        s.v.push_back(v[i]);
    }
    return s;
}

ChartSpec hour_spec() {
    ChartSpec spec;
    spec.title = "GPU temperature";
    spec.unit = "°C";
    spec.t0 = kT0;
    spec.t1 = kT0 + 3600;
    return spec;
}

TEST(SvgChart, IsAStandaloneDeterministicDocument) {
    testing::ScopedTz tz("UTC");
    const auto s = series_of("GPU 0", {40.0, 42.0, 41.0, 44.0});
    const std::string a = render_line_chart(hour_spec(), {s});
    EXPECT_EQ(a, render_line_chart(hour_spec(), {s}));
    EXPECT_EQ(a.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
    EXPECT_NE(a.find("viewBox=\"0 0 640 200\""), std::string::npos);
    EXPECT_NE(a.find("<title>GPU temperature</title>"), std::string::npos);
    EXPECT_EQ(a.substr(a.size() - 7), "</svg>\n");
    EXPECT_EQ(count(a, "data-series=\"GPU 0\""), 1u);
    // The legend shows the latest value with the unit.
    EXPECT_NE(a.find(">44 °C</tspan>"), std::string::npos) << a;
    // Text takes the page's colour.
    EXPECT_NE(a.find("fill=\"currentColor\""), std::string::npos);
}

TEST(SvgChart, EscapesEveryText) {
    testing::ScopedTz tz("UTC");
    ChartSpec spec = hour_spec();
    spec.title = "<script>alert('x')</script> & \"more\" °";
    spec.unit = "<u>";
    // A control character and invalid UTF-8 (a lone continuation byte, a truncated sequence).
    const auto s = series_of("GPU <0> & \"A\"\x01 \x80 \xE2\x82", {1.0, 2.0});
    const std::string svg = render_line_chart(spec, {s});
    EXPECT_EQ(svg.find("<script>"), std::string::npos);
    EXPECT_EQ(svg.find("<u>"), std::string::npos);
    EXPECT_NE(svg.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot; °"),
              std::string::npos);
    EXPECT_NE(svg.find("2 &lt;u&gt;"), std::string::npos);
    EXPECT_NE(svg.find("data-series=\"GPU &lt;0&gt; &amp; &quot;A&quot;\xEF\xBF\xBD \xEF\xBF\xBD "
                       "\xEF\xBF\xBD\xEF\xBF\xBD\""),
              std::string::npos)
        << svg;
    EXPECT_EQ(svg.find('\x01'), std::string::npos);
}

TEST(SvgChart, MissingValuesBreakTheLine) {
    testing::ScopedTz tz("UTC");
    const auto s = series_of("GPU 0", {40.0, 41.0, std::nullopt, 43.0, 44.0});
    const auto p = paths(render_line_chart(hour_spec(), {s}));
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(count(p[0], "M"), 2u) << p[0];
    EXPECT_EQ(count(p[0], "L"), 2u) << p[0];
}

TEST(SvgChart, AJumpOverThreeMedianStepsBreaksTheLine) {
    testing::ScopedTz tz("UTC");
    ChartSeries s{"GPU 0", {}, {}};
    // Every 10 s, then a 40 s hole (over 3x), then a 30 s step (exactly 3x: still joined).
    for (std::int64_t t : {0, 10, 20, 30, 70, 80, 90, 120, 130}) {
        s.t.push_back(kT0 + t);
        s.v.push_back(50.0);
    }
    const auto p = paths(render_line_chart(hour_spec(), {s}));
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(count(p[0], "M"), 2u) << p[0];
    EXPECT_EQ(count(p[0], "L"), 7u) << p[0];
}

TEST(SvgChart, UnsortedSamplesAreDrawnInTimeOrder) {
    testing::ScopedTz tz("UTC");
    const auto sorted = series_of("GPU 0", {1.0, 5.0, 3.0, 4.0});
    ChartSeries shuffled{"GPU 0", {}, {}};
    for (std::size_t i : {2u, 0u, 3u, 1u}) {
        shuffled.t.push_back(sorted.t[i]);
        shuffled.v.push_back(sorted.v[i]);
    }
    EXPECT_EQ(render_line_chart(hour_spec(), {sorted}), render_line_chart(hour_spec(), {shuffled}));
}

TEST(SvgChart, NoDataShowsACentredText) {
    testing::ScopedTz tz("UTC");
    const ChartSpec spec = hour_spec();
    ChartSeries outside{"GPU 1", {kT0 - 100, kT0 + 7200}, {1.0, 2.0}};
    for (const auto& input :
         std::vector<std::vector<ChartSeries>>{{},
                                               {ChartSeries{"GPU 0", {}, {}}},
                                               {series_of("GPU 0", {std::nullopt, std::nullopt})},
                                               {outside}}) {
        const std::string svg = render_line_chart(spec, input);
        EXPECT_NE(svg.find(">no data</text>"), std::string::npos) << svg;
        EXPECT_NE(svg.find("text-anchor=\"middle\""), std::string::npos);
        EXPECT_NE(svg.find(">GPU temperature</text>"), std::string::npos);
        EXPECT_EQ(svg.find("<path"), std::string::npos) << svg;
        EXPECT_EQ(svg.find("data-series"), std::string::npos);
    }
}

TEST(SvgChart, ASinglePointIsADot) {
    testing::ScopedTz tz("UTC");
    const auto p = paths(render_line_chart(hour_spec(), {series_of("GPU 0", {55.0})}));
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(count(p[0], "M"), 1u);
    EXPECT_EQ(count(p[0], "L"), 0u);
    EXPECT_NE(p[0].find(" h0"), std::string::npos) << p[0];
    // So is a lone sample between two gaps.
    const auto q =
        paths(render_line_chart(hour_spec(), {series_of("GPU 0", {1.0, 2.0, std::nullopt, 3.0})}));
    EXPECT_EQ(count(q[0], "h0"), 1u) << q[0];
}

TEST(SvgChart, AutoAxisSnapsToNiceSteps) {
    testing::ScopedTz tz("UTC");
    const auto svg = render_line_chart(hour_spec(), {series_of("GPU 0", {35.0, 72.0, 50.0})});
    const auto y = labels(svg, "y-labels");
    EXPECT_EQ(y, (std::vector<std::string>{"30 °C", "40 °C", "50 °C", "60 °C", "70 °C", "80 °C"}))
        << svg;

    // Small ranges get decimals, in 1-2-5 steps.
    ChartSpec spec = hour_spec();
    spec.unit = "GiB";
    const auto small =
        labels(render_line_chart(spec, {series_of("GPU 0", {0.12, 0.31, 0.2})}), "y-labels");
    EXPECT_EQ(small, (std::vector<std::string>{"0.10 GiB", "0.15 GiB", "0.20 GiB", "0.25 GiB",
                                               "0.30 GiB", "0.35 GiB"}));

    // A flat line gets a range around its value; zero a range from -1 to 1.
    const auto flat =
        labels(render_line_chart(hour_spec(), {series_of("a", {50.0, 50.0})}), "y-labels");
    ASSERT_FALSE(flat.empty());
    EXPECT_EQ(flat.front(), "45 °C");
    EXPECT_EQ(flat.back(), "55 °C");
    const auto zero = labels(render_line_chart(hour_spec(), {series_of("a", {0.0})}), "y-labels");
    EXPECT_EQ(zero.front(), "-1.0 °C");
    EXPECT_EQ(zero.back(), "1.0 °C");
    for (const auto& l : zero) {
        EXPECT_NE(l, "-0.0 °C");
    }
}

TEST(SvgChart, FixedAxisKeepsItsRangeAndClampsOutliers) {
    testing::ScopedTz tz("UTC");
    ChartSpec spec = hour_spec();
    spec.title = "Utilisation";
    spec.unit = "%";
    spec.y_min = 0;
    spec.y_max = 100;
    const auto svg = render_line_chart(spec, {series_of("GPU 0", {10.0, 150.0, -20.0, 30.0})});
    EXPECT_EQ(labels(svg, "y-labels"),
              (std::vector<std::string>{"0%", "20%", "40%", "60%", "80%", "100%"}));
    const auto p = paths(svg);
    ASSERT_EQ(p.size(), 1u);
    const auto y = ys(p[0]);
    ASSERT_EQ(y.size(), 4u);
    // 150 sits on the 100% line, -20 on the 0% line: the highest and lowest points.
    EXPECT_DOUBLE_EQ(y[1], *std::min_element(y.begin(), y.end()));
    EXPECT_DOUBLE_EQ(y[2], *std::max_element(y.begin(), y.end()));
    EXPECT_GE(y[1], 24.0);
    EXPECT_LE(y[2], 200.0);

    // Only a minimum fixed: the top follows the data.
    spec.y_max.reset();
    const auto auto_top = labels(render_line_chart(spec, {series_of("a", {3.0, 7.0})}), "y-labels");
    EXPECT_EQ(auto_top.front(), "0%");
    EXPECT_EQ(auto_top.back(), "8%");

    // A minimum above all the data still gives a usable axis.
    spec.y_min = 100;
    const auto above = labels(render_line_chart(spec, {series_of("a", {3.0, 7.0})}), "y-labels");
    EXPECT_EQ(above.front(), "100%");

    // Contradicting or non-finite fixed sides fall back to the data.
    spec.y_min = 50;
    spec.y_max = 10;
    EXPECT_EQ(labels(render_line_chart(spec, {series_of("a", {3.0, 7.0})}), "y-labels").front(),
              "3%");
    spec.y_min = std::numeric_limits<double>::quiet_NaN();
    spec.y_max = std::numeric_limits<double>::infinity();
    EXPECT_EQ(labels(render_line_chart(spec, {series_of("a", {3.0, 7.0})}), "y-labels").back(),
              "7%");
}

TEST(SvgChart, NanAndInfinityAreIgnored) {
    testing::ScopedTz tz("UTC");
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    const auto svg = render_line_chart(
        hour_spec(), {series_of("GPU 0", {40.0, nan, 45.0, inf, 50.0, -inf, 60.0})});
    EXPECT_EQ(svg.find("nan"), std::string::npos);
    EXPECT_EQ(svg.find("inf"), std::string::npos);
    // The axis comes from the finite values only.
    const auto y = labels(svg, "y-labels");
    EXPECT_EQ(y.front(), "40 °C");
    EXPECT_EQ(y.back(), "60 °C");
    // Each non-number breaks the line: four lone dots.
    const auto p = paths(svg);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(count(p[0], "M"), 4u);
    EXPECT_EQ(count(p[0], "L"), 0u);

    // Only non-numbers: no data.
    EXPECT_NE(render_line_chart(hour_spec(), {series_of("a", {nan, inf})}).find("no data"),
              std::string::npos);
    // Huge values are clamped rather than overflowing the scale.
    const auto huge = render_line_chart(hour_spec(), {series_of("a", {-1e308, 1e308})});
    EXPECT_EQ(huge.find("nan"), std::string::npos);
    EXPECT_EQ(paths(huge).size(), 1u);
}

TEST(SvgChart, EightSeriesGetEightColours) {
    testing::ScopedTz tz("UTC");
    std::vector<ChartSeries> in;
    for (int i = 0; i < 9; ++i) {
        in.push_back(series_of("GPU " + std::to_string(i), {1.0 * i, 2.0 * i}));
    }
    const auto svg = render_line_chart(hour_spec(), in);
    EXPECT_EQ(count(svg, "data-series=\""), 9u);
    EXPECT_EQ(count(svg, "data-legend=\""), 9u);
    static const std::regex re(
        R"re(<path class="line s(\d+)" data-series="[^"]*" stroke="([^"]*)")re");
    std::vector<std::string> colours;
    int expect_index = 0;
    for (std::sregex_iterator it(svg.begin(), svg.end(), re), end; it != end; ++it) {
        EXPECT_EQ(std::stoi((*it)[1]), expect_index++);
        colours.push_back((*it)[2]);
    }
    ASSERT_EQ(colours.size(), 9u);
    EXPECT_EQ(std::set<std::string>(colours.begin(), colours.begin() + 8).size(), 8u);
    EXPECT_EQ(colours[8], colours[0]);  // the palette cycles
    // All 9 legend entries fit (wrapped onto more rows) inside the height.
    static const std::regex legend_y(R"re(data-legend="\d+"><line[^>]*y1="([\d.]+)")re");
    for (std::sregex_iterator it(svg.begin(), svg.end(), legend_y), end; it != end; ++it) {
        EXPECT_LT(std::stod((*it)[1]), 200.0);
    }
}

TEST(SvgChart, TimeLabelsAreLocalAndAligned) {
    testing::ScopedTz tz("UTC");
    const auto hour =
        labels(render_line_chart(hour_spec(), {series_of("a", {1.0, 2.0})}), "x-labels");
    EXPECT_EQ(hour, (std::vector<std::string>{"08:10", "08:20", "08:30", "08:40", "08:50"}));

    // Over a day: weekday names; 2027-01-15 is a Friday.
    ChartSpec week = hour_spec();
    week.t1 = kT0 + 7 * 86400;
    const auto days = labels(render_line_chart(week, {series_of("a", {1.0, 2.0})}), "x-labels");
    ASSERT_FALSE(days.empty());
    EXPECT_EQ(days.front(), "Sat 00:00");
    for (const auto& l : days) {
        EXPECT_EQ(l.size(), 9u) << l;
        EXPECT_EQ(l.substr(3), " 00:00") << l;
    }

    // A half-hour zone: 3-hour ticks over a day fall on local hours, not on UTC ones (which
    // would read xx:30 here).
    testing::ScopedTz india("IST-5:30");
    ChartSpec day = hour_spec();
    day.t1 = kT0 + 86400;
    const auto ist = labels(render_line_chart(day, {series_of("a", {1.0, 2.0})}), "x-labels");
    EXPECT_EQ(ist, (std::vector<std::string>{"15:00", "18:00", "21:00", "00:00", "03:00", "06:00",
                                             "09:00", "12:00"}));
}

// The x positions of the x labels.
std::vector<double> label_xs(const std::string& svg) {
    std::vector<double> xs;
    const auto start = svg.find("<g class=\"x-labels\"");
    const auto end = svg.find("</g>", start);
    for (auto pos = svg.find("<text x=\"", start); pos < end;
         pos = svg.find("<text x=\"", pos + 1)) {
        xs.push_back(std::stod(svg.substr(pos + 9)));
    }
    return xs;
}

TEST(SvgChart, TimeLabelsAcrossADstChange) {
    // US Eastern leaves DST on Sunday 2027-11-07 at 02:00: that day has 25 hours. Ticks stay on
    // the local 3-hour grid, and the one across the change is an hour wider.
    testing::ScopedTz tz(testing::kEastern);
    ChartSpec spec = hour_spec();
    spec.t0 = 1'825'560'000;  // 2027-11-07 00:00 EDT
    spec.t1 = spec.t0 + 86400;
    const ChartSeries s{"a", {spec.t0, spec.t0 + 60}, {1.0, 2.0}};
    const auto svg = render_line_chart(spec, {s});
    // 00:00 itself sits on the left edge, where its label would run into the y labels.
    EXPECT_EQ(labels(svg, "x-labels"), (std::vector<std::string>{"03:00", "06:00", "09:00", "12:00",
                                                                 "15:00", "18:00", "21:00"}));
    const auto xs = label_xs(svg);
    ASSERT_EQ(xs.size(), 7u);
    // 00:00 EDT (the plot's left edge, where the grid lines start) to 03:00 EST is four hours.
    const double left = std::stod(svg.substr(svg.find("<line x1=\"") + 10));
    const double normal = xs[2] - xs[1];
    EXPECT_NEAR(xs[0] - left, normal * 4 / 3, 0.2);
    for (std::size_t i = 1; i < xs.size(); ++i) {
        EXPECT_NEAR(xs[i] - xs[i - 1], normal, 0.2);
    }
}

TEST(SvgChart, LongSeriesAreReducedPerPixelAndKeepSpikes) {
    testing::ScopedTz tz("UTC");
    ChartSpec spec = hour_spec();
    spec.t1 = kT0 + 7 * 86400;
    spec.y_min = 0;
    spec.y_max = 100;
    ChartSeries s{"GPU 0", {}, {}};
    for (std::int64_t i = 0; i < 7 * 86400; i += 5) {
        s.t.push_back(kT0 + i);
        s.v.push_back(i == 300'000 ? 100.0 : 20.0 + static_cast<double>(i % 7));
    }
    const auto svg = render_line_chart(spec, {s});
    EXPECT_LT(svg.size(), 120'000u);
    const auto p = paths(svg);
    ASSERT_EQ(p.size(), 1u);
    const auto y = ys(p[0]);
    // The one spike to 100% survives: the top of the plot is the minimum y.
    const auto top = *std::min_element(y.begin(), y.end());
    EXPECT_EQ(std::count(y.begin(), y.end(), top), 1);
    EXPECT_LT(top, 40.0);
}

TEST(SvgChart, RejectsBadInput) {
    ChartSpec spec = hour_spec();
    spec.t1 = spec.t0;
    EXPECT_THROW(render_line_chart(spec, {}), std::invalid_argument);
    ChartSeries bad{"GPU 0", {kT0, kT0 + 10}, {1.0}};
    EXPECT_THROW(render_line_chart(hour_spec(), {bad}), std::invalid_argument);
    // A tiny size is raised to the minimum rather than drawing outside the box.
    ChartSpec tiny = hour_spec();
    tiny.width = 10;
    tiny.height = -5;
    const auto svg = render_line_chart(tiny, {series_of("a", {1.0, 2.0})});
    EXPECT_NE(svg.find("viewBox=\"0 0 160 100\""), std::string::npos);
}

}  // namespace
}  // namespace mlk::metrics
