#include "mlkeeper/core/metrics_text.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "mlkeeper/util/atomic_file.hpp"

namespace mlk::core {
namespace {

bool valid_name(std::string_view n, bool allow_colon) {
    if (n.empty())
        return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                           (allow_colon && c == ':');
        const bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && i > 0))
            return false;
    }
    return true;
}

std::string format_value(double v) {
    if (std::isnan(v))
        return "NaN";
    if (std::isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    if (v == std::floor(v) && std::fabs(v) < 1e15)
        return fmt::format("{}", std::int64_t(v));
    return fmt::format("{}", v);
}

std::string escape_help(std::string_view h) {
    std::string out;
    for (char c : h) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

}  // namespace

std::string escape_label_value(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

void MetricsText::family(std::string_view name, MetricType type, std::string_view help) {
    if (!valid_name(name, true))
        throw std::invalid_argument(fmt::format("bad metric name '{}'", name));
    if (type == MetricType::kCounter && !name.ends_with("_total"))
        throw std::invalid_argument(fmt::format("counter '{}' must end in _total", name));
    if (auto it = index_.find(name); it != index_.end()) {
        if (families_[it->second].type != type)
            throw std::invalid_argument(
                fmt::format("metric '{}' declared twice with two types", name));
        return;
    }
    index_.emplace(std::string(name), families_.size());
    families_.push_back(Family{std::string(name), type, std::string(help), {}});
}

void MetricsText::sample(std::string_view name, const Labels& labels, double value) {
    auto it = index_.find(name);
    if (it == index_.end())
        throw std::logic_error(fmt::format("metric '{}' not declared", name));
    std::string line(name);
    if (!labels.empty()) {
        line += '{';
        bool first = true;
        for (const auto& [k, v] : labels) {
            if (!valid_name(k, false) || k.starts_with("__"))
                throw std::invalid_argument(fmt::format("bad label name '{}'", k));
            if (!first)
                line += ',';
            first = false;
            line += fmt::format("{}=\"{}\"", k, escape_label_value(v));
        }
        line += '}';
    }
    line += ' ';
    line += format_value(value);
    families_[it->second].lines.push_back(std::move(line));
}

std::string MetricsText::str() const {
    std::string out;
    for (const auto& f : families_) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, escape_help(f.help), f.name,
                           f.type == MetricType::kGauge ? "gauge" : "counter");
        for (const auto& l : f.lines) {
            out += l;
            out += '\n';
        }
    }
    return out;
}

void write_textfile(const std::filesystem::path& dir, std::string_view name,
                    std::string_view text) {
    util::write_file_atomic(dir / std::string(name), text, 0644);
}

}  // namespace mlk::core
