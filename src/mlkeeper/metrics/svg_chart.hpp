// Server-side line charts as standalone SVG documents, for the agent's status page (which may
// not reach the internet, so no chart library runs in the browser). Thread safety: a pure
// function of its arguments; safe from any thread (x labels read the process time zone).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mlk::metrics {

// One line: samples at Unix seconds `t` with values `v` (nullopt: no sample, a gap). `t` and `v`
// have the same length; `t` need not be sorted.
struct ChartSeries {
    std::string label;
    std::vector<std::int64_t> t;
    std::vector<std::optional<double>> v;
};

struct ChartSpec {
    std::string title;
    std::string unit;     // "°C", "%", "GiB", "W"; appended to the y labels ("%" without a space)
    std::int64_t t0 = 0;  // Unix seconds: the x range shown, t0 < t1
    std::int64_t t1 = 0;
    std::optional<double> y_min, y_max;  // a fixed axis side (e.g. 0..100 %); else from the data
    int width = 640, height = 200;       // the viewBox; at least 160 x 100 is used
};

// Palette cycled through by series index: mid-tone colours readable on light and dark pages.
inline constexpr const char* kChartPalette[] = {"#3b82f6", "#f59e0b", "#10b981", "#ef4444",
                                                "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16"};

// A standalone SVG document (xmlns, viewBox, width/height attributes that CSS may override with
// width:100%; height:auto). The same input gives the same bytes (in the same time zone).
// Draws the title, y grid lines at 1-2-5 steps with labels carrying the unit, x labels in local
// time ("14:30", or "Mon 14:00" when t1 - t0 is over a day), one
// <path class="line sN" data-series="LABEL"> per series (N its index) in kChartPalette colours
// and a legend with each series' latest value. Only samples with t0 <= t <= t1 are drawn; NaN and
// infinite values count as missing. A line breaks at missing values and where consecutive
// samples are more than 3x the series' median sample interval apart; a lone sample is drawn as a
// dot. Values outside a fixed axis are clamped to its edge. Long series are reduced per pixel
// column (first, min, max, last), so the document stays small and spikes stay visible.
// With no drawable sample in any series: the title and a centred "no data" text, and no lines.
// Text is XML-escaped; text colour is currentColor, so the embedding page sets it.
// Throws std::invalid_argument when t1 <= t0 or a series' t and v differ in length.
std::string render_line_chart(const ChartSpec& spec, const std::vector<ChartSeries>& series);

}  // namespace mlk::metrics
