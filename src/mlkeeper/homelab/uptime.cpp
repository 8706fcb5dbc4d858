#include "mlkeeper/homelab/uptime.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <utility>

#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::homelab {
namespace {

// A decimal number as the kernel writes it ("123.45"); nullopt for anything else, including
// the inf/nan/hex spellings strtod would take.
std::optional<double> parse_decimal(std::string_view word) {
    if (word.empty() || word.size() > 64) {
        return std::nullopt;
    }
    bool digit = false;
    for (char c : word) {
        if (c >= '0' && c <= '9') {
            digit = true;
        } else if (c != '.') {
            return std::nullopt;
        }
    }
    if (!digit) {
        return std::nullopt;
    }
    const std::string s(word);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || errno != 0 || !std::isfinite(v)) {
        return std::nullopt;
    }
    return v;
}

std::string excerpt(std::string_view text) {
    auto t = util::trim(text);
    return std::string(t.substr(0, 60));
}

}  // namespace

double parse_proc_uptime(std::string_view text) {
    auto fields = util::split_ws(text);
    if (fields.empty()) {
        throw std::invalid_argument("empty");
    }
    auto v = parse_decimal(fields[0]);
    if (!v) {
        throw std::invalid_argument("not an uptime: \"" + excerpt(text) + "\"");
    }
    return *v;
}

SysTime parse_proc_stat_btime(std::string_view proc_stat) {
    std::size_t pos = 0;
    while (pos < proc_stat.size()) {
        auto nl = proc_stat.find('\n', pos);
        auto line =
            proc_stat.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        auto fields = util::split_ws(line);
        if (!fields.empty() && fields[0] == "btime") {
            std::optional<std::int64_t> secs;
            if (fields.size() == 2) {
                secs = util::parse_int64(fields[1]);
            }
            // Beyond about 292 years the nanosecond clock overflows; no machine booted then.
            if (!secs || *secs <= 0 || *secs > (std::int64_t{1} << 33)) {
                throw std::invalid_argument("bad btime line: \"" + excerpt(line) + "\"");
            }
            return SysTime(std::chrono::seconds(*secs));
        }
        if (nl == std::string_view::npos) {
            break;
        }
        pos = nl + 1;
    }
    throw std::invalid_argument("no btime line");
}

std::array<double, 3> parse_proc_loadavg(std::string_view text) {
    auto fields = util::split_ws(text);
    std::array<double, 3> out{};
    if (fields.size() < 3) {
        throw std::invalid_argument("not a load average: \"" + excerpt(text) + "\"");
    }
    for (std::size_t i = 0; i < 3; ++i) {
        auto v = parse_decimal(fields[i]);
        if (!v) {
            throw std::invalid_argument("not a load average: \"" + excerpt(text) + "\"");
        }
        out[i] = *v;
    }
    return out;
}

ProcReader::ProcReader(std::filesystem::path proc_root, ReadFile read)
    : root_(std::move(proc_root)), read_(std::move(read)) {
    if (!read_) {
        read_ = [](const std::filesystem::path& p) { return util::read_file(p); };
    }
}

std::string ProcReader::read(std::string_view name) const {
    return read_(root_ / name);
}

UptimeInfo ProcReader::uptime() const {
    UptimeInfo info;
    info.boot_time = boot_time();
    const auto up = root_ / "uptime";
    const auto load = root_ / "loadavg";
    try {
        info.uptime_seconds = parse_proc_uptime(read("uptime"));
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error("cannot parse " + up.string() + ": " + e.what());
    }
    try {
        info.load_average = parse_proc_loadavg(read("loadavg"));
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error("cannot parse " + load.string() + ": " + e.what());
    }
    return info;
}

SysTime ProcReader::boot_time() const {
    const auto stat = root_ / "stat";
    try {
        return parse_proc_stat_btime(read("stat"));
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error("cannot parse " + stat.string() + ": " + e.what());
    }
}

std::optional<std::string> ProcReader::boot_id() const {
    try {
        auto id = std::string(util::trim(read("sys/kernel/random/boot_id")));
        if (id.empty()) {
            return std::nullopt;
        }
        return id;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

}  // namespace mlk::homelab
