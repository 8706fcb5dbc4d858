// Time zones read from the system's TZif files (/usr/share/zoneinfo), without touching the
// process-wide TZ state: offsets at an instant, and the UTC instants a local wall-clock time maps
// to (none in a DST gap, two in a repeated hour). Used by the calendar engine, which must handle
// "Europe/Berlin"-suffixed expressions while other threads format local times.
// Thread safety: a TimeZone is immutable after construction; share it freely between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mlk::util {

class TimeZone {
  public:
    struct Offset {
        std::chrono::seconds utc_offset{0};  // local = utc + utc_offset
        bool is_dst = false;
        std::string abbrev;  // "CET", "CEST", "UTC"
    };

    // UTC (offset 0, abbreviation "UTC").
    static TimeZone utc();
    // The process's zone: $TZ (":Area/City", "Area/City" or a POSIX rule such as "CET-1CEST,M3.5.0,
    // M10.5.0/3"), else /etc/localtime, else UTC. Never throws: an unreadable zone is UTC.
    static TimeZone local();
    // An IANA name ("Europe/Berlin", "UTC"); nullopt if no such zone file exists or it is not a
    // valid TZif file. Names with "..", a leading '/' or other path tricks are rejected.
    static std::optional<TimeZone> load(std::string_view iana_name);
    // Reads a TZif file (v1, v2 or v3) from an explicit path; nullopt if it is not valid.
    static std::optional<TimeZone> from_file(const std::string& path, std::string name);

    const std::string& name() const;  // "Europe/Berlin", "UTC", or "" for an unnamed local zone

    // The offset in force at `t`. Beyond the last transition of the file the POSIX rule in the
    // TZif footer applies (so dates after 2037 are right too).
    Offset at(std::chrono::sys_seconds t) const;

    // Every UTC instant whose local time is `lt`, earliest first: one normally, none when `lt`
    // falls in a gap (spring forward), two in a fold (fall back).
    std::vector<std::chrono::sys_seconds> from_local(std::chrono::local_seconds lt) const;

    // The local wall-clock time of `t`.
    std::chrono::local_seconds to_local(std::chrono::sys_seconds t) const {
        return std::chrono::local_seconds{t.time_since_epoch() + at(t).utc_offset};
    }

    struct Data;  // defined in tz.cpp

  private:
    explicit TimeZone(std::shared_ptr<const Data> d) : d_(std::move(d)) {}
    std::shared_ptr<const Data> d_;
};

}  // namespace mlk::util
