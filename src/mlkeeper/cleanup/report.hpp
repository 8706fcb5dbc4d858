// The result of a cleanup run as people and scripts read it: per target the files, directories
// and bytes deleted (or that a dry run would delete), protected and skipped counts, errors; disk
// free before and after; the aggressive steps. Text and JSON share one input.
// Thread safety: pure functions on their arguments (disk_space reads the filesystem).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/cleanup/aggressive.hpp"
#include "mlkeeper/cleanup/executor.hpp"
#include "mlkeeper/cleanup/scanner.hpp"

namespace mlk::cleanup {

struct DiskSpace {
    std::filesystem::path path;  // a target root on that filesystem
    dev_t dev = 0;
    std::uint64_t total = 0, free_before = 0;
    std::optional<std::uint64_t> free_after;
};

// One entry per filesystem holding a scanned root (statvfs f_bavail).
std::vector<DiskSpace> disk_space(const Plan& plan);
void measure_after(std::vector<DiskSpace>& disks);

enum class Outcome { kDeleted, kDryRun, kBreakerTripped, kNotConfirmed };
std::string_view to_string(Outcome o);

struct ReportInput {
    explicit ReportInput(const Plan& p) : plan(p) {}
    const Plan& plan;
    const ExecResult* exec = nullptr;  // set when deletion ran
    Outcome outcome = Outcome::kDryRun;
    std::optional<std::string> breaker;  // the breaker message (tripped or overridden by --force)
    std::vector<StepResult> steps;       // aggressive external steps
    std::vector<DiskSpace> disks;
    std::vector<std::string> notes;  // priority problems and the like
};

enum class FileList { kNo, kYes };  // list every planned file (dry runs)

nlohmann::json report_json(const ReportInput& in, FileList files);
std::string report_text(const ReportInput& in, FileList files);
// "deleted 12 files (1.5 GiB), 3 directories; 4 protected, 2 skipped" for logs and history.
std::string summary_line(const ReportInput& in);

}  // namespace mlk::cleanup
