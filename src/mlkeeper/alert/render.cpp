// Plain-text rendering of an alert shared by the channels (email, command, logs): one subject
// line and a readable body. Pure functions; safe from any thread.
#include <algorithm>
#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mlkeeper/alert/channel.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::alert {
namespace {

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    return out;
}

// A subject is one header line: a summary or host carrying CR/LF must not end it early (header
// injection) nor break the line, so every run of control whitespace becomes one space.
std::string one_line(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    bool in_break = false;
    for (char c : s) {
        if (c == '\r' || c == '\n' || c == '\t' || c == '\v' || c == '\f') {
            if (!in_break) {
                out += ' ';
            }
            in_break = true;
            continue;
        }
        in_break = false;
        out += c;
    }
    return out;
}

std::string local_time(const Alert& a) {
    try {
        return util::format_local(a.time, "%Y-%m-%d %H:%M:%S %Z");
    } catch (const std::exception&) {
        // An alert must still go out even if its stamp is absurd; the stamp is not the news.
        return "(time out of range)";
    }
}

// Continuation lines of a multi-line value are indented under the value column.
void append_row(std::string& out, std::string_view prefix, std::string_view label,
                std::string_view value, std::size_t width) {
    std::string head(prefix);
    head += label;
    head += ':';
    head.resize(std::max(head.size() + 1, prefix.size() + width), ' ');
    out += head;
    const std::string indent(head.size(), ' ');
    std::size_t start = 0;
    while (true) {
        const std::size_t nl = value.find('\n', start);
        std::string_view line = value.substr(start, nl == std::string_view::npos ? nl : nl - start);
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (start != 0) {
            out += indent;
        }
        out += line;
        out += '\n';
        if (nl == std::string_view::npos) {
            break;
        }
        start = nl + 1;
    }
}

}  // namespace

std::string subject_line(const Alert& a) {
    std::string label =
        a.state == AlertState::kResolved ? "RESOLVED" : upper(to_string(a.severity));
    std::string out = "[mlkeeper " + label + "] ";
    if (!a.host.empty()) {
        out += a.host + ": ";
    }
    out += a.summary;
    return one_line(out);
}

std::string text_body(const Alert& a) {
    const bool resolved = a.state == AlertState::kResolved;
    std::string out;
    out += resolved ? "RESOLVED: " : upper(to_string(a.severity)) + ": ";
    out += one_line(a.summary);
    out += "\n\n";

    std::vector<std::pair<std::string_view, std::string>> rows;
    rows.emplace_back("Host", a.host.empty() ? std::string("(unknown)") : a.host);
    rows.emplace_back("Time", local_time(a));
    rows.emplace_back("Severity", std::string(to_string(a.severity)));
    rows.emplace_back("State", resolved ? "resolved" : "firing");
    if (!a.check.empty()) {
        rows.emplace_back("Check", a.check);
    }
    rows.emplace_back("Key", a.key);
    if (!a.value.empty()) {
        rows.emplace_back("Value", a.value);
    }
    if (!a.threshold.empty()) {
        rows.emplace_back("Threshold", a.threshold);
    }
    rows.emplace_back("Occurrences", std::to_string(a.occurrences));
    std::size_t width = 0;
    for (const auto& [label, value] : rows) {
        width = std::max(width, label.size() + 2);
    }
    for (const auto& [label, value] : rows) {
        append_row(out, "", label, value, width);
    }

    if (a.suppressed > 0) {
        out += '\n';
        out += std::to_string(a.suppressed);
        out += a.suppressed == 1 ? " repeat" : " repeats";
        out += " suppressed since the last notice\n";
    }
    if (!a.action.empty()) {
        out += '\n';
        append_row(out, "", "What to do", a.action, 0);
    }
    if (!a.fields.empty()) {
        out += "\nDetails:\n";
        // std::map keeps the keys sorted, so the order is stable between notices.
        std::size_t field_width = 0;
        for (const auto& [name, value] : a.fields) {
            field_width = std::max(field_width, name.size() + 2);
        }
        for (const auto& [name, value] : a.fields) {
            append_row(out, "  ", name, value, field_width);
        }
    }
    out += "\n-- mlkeeper on ";
    out += a.host.empty() ? std::string("(unknown host)") : a.host;
    out += '\n';
    return out;
}

}  // namespace mlk::alert
