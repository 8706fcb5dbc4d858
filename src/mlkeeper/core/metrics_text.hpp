// Prometheus text exposition format (version 0.0.4) for `--format prometheus`
// and node_exporter textfile output: families with HELP/TYPE, escaped label
// values, base units. Names are checked so output always passes
// `promtool check metrics`. Thread safety: a MetricsText is not shared.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlk::core {

enum class MetricType { kGauge, kCounter };

using Labels = std::vector<std::pair<std::string, std::string>>;

class MetricsText {
  public:
    // Declares a family (once; repeated declarations must agree). Throws
    // std::invalid_argument for a name Prometheus would reject, or a counter
    // not ending in _total.
    void family(std::string_view name, MetricType type, std::string_view help);
    // Adds a sample to a declared family; NaN/Inf are written as Prometheus
    // spells them. Throws std::logic_error for an undeclared family.
    void sample(std::string_view name, const Labels& labels, double value);
    void sample(std::string_view name, double value) { sample(name, {}, value); }

    // Families in declaration order, each with its samples.
    std::string str() const;

  private:
    struct Family {
        std::string name;
        MetricType type;
        std::string help;
        std::vector<std::string> lines;
    };
    std::vector<Family> families_;
    std::map<std::string, std::size_t, std::less<>> index_;
};

// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);

// Writes `text` to dir/name atomically (temp + rename), as node_exporter's
// textfile collector requires so it never reads half a file.
void write_textfile(const std::filesystem::path& dir, std::string_view name, std::string_view text);

}  // namespace mlk::core
