// This machine's uptime, boot time, boot id and load averages from /proc, for GET /uptime and for
// telling whether the machine rebooted since a shutdown was scheduled. The parsers take text and
// ProcReader takes a file-reading seam, so tests feed /proc contents without a real /proc.
// Thread safety: pure functions and an immutable reader; safe from any thread.
#pragma once

#include <array>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mlk::homelab {

using SysTime = std::chrono::system_clock::time_point;

// The first field of /proc/uptime ("12345.67 54321.00\n") in seconds. Throws
// std::invalid_argument for anything else (empty, negative, not a number, not finite).
double parse_proc_uptime(std::string_view text);

// The "btime SECONDS" line of /proc/stat: when the machine booted (whole seconds). Throws
// std::invalid_argument when the line is missing or malformed.
SysTime parse_proc_stat_btime(std::string_view proc_stat);

// The 1, 5 and 15 minute load averages, the first three fields of /proc/loadavg
// ("0.52 0.58 0.59 2/1234 56789\n"). Throws std::invalid_argument for anything else.
std::array<double, 3> parse_proc_loadavg(std::string_view text);

struct UptimeInfo {
    double uptime_seconds = 0;
    SysTime boot_time;
    std::array<double, 3> load_average{};
};

class ProcReader {
  public:
    // Returns a whole file's text; throws (std::system_error naming the path) when it cannot.
    using ReadFile = std::function<std::string(const std::filesystem::path&)>;

    // Reads `proc_root`/uptime, stat, loadavg and sys/kernel/random/boot_id through `read`
    // (default: util::read_file).
    explicit ProcReader(std::filesystem::path proc_root = "/proc", ReadFile read = {});

    // Throws std::runtime_error naming the file that could not be read or parsed.
    UptimeInfo uptime() const;
    // The btime of /proc/stat. Throws like uptime().
    SysTime boot_time() const;
    // The kernel's random id of this boot (a UUID), which unlike the boot time never moves when
    // the wall clock is stepped; nullopt when it cannot be read.
    std::optional<std::string> boot_id() const;

  private:
    std::string read(std::string_view name) const;

    std::filesystem::path root_;
    ReadFile read_;
};

}  // namespace mlk::homelab
