#include "mlkeeper/cleanup/report.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <fmt/format.h>

#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cleanup {

std::string_view to_string(Outcome o) {
    switch (o) {
        case Outcome::kDeleted:
            return "deleted";
        case Outcome::kDryRun:
            return "dry-run";
        case Outcome::kBreakerTripped:
            return "breaker-tripped";
        case Outcome::kNotConfirmed:
            return "not-confirmed";
    }
    return "dry-run";
}

std::vector<DiskSpace> disk_space(const Plan& plan) {
    std::vector<DiskSpace> out;
    for (const auto& t : plan.targets) {
        if (t.dirs.empty()) {
            continue;
        }
        bool seen = false;
        for (const auto& d : out) {
            seen = seen || d.dev == t.dirs[0].dev;
        }
        struct statvfs vs {};
        if (seen || ::statvfs(t.root.c_str(), &vs) != 0) {
            continue;
        }
        DiskSpace d;
        d.path = t.root;
        d.dev = t.dirs[0].dev;
        d.total = static_cast<std::uint64_t>(vs.f_blocks) * vs.f_frsize;
        d.free_before = static_cast<std::uint64_t>(vs.f_bavail) * vs.f_frsize;
        out.push_back(d);
    }
    return out;
}

void measure_after(std::vector<DiskSpace>& disks) {
    for (auto& d : disks) {
        struct statvfs vs {};
        if (::statvfs(d.path.c_str(), &vs) == 0) {
            d.free_after = static_cast<std::uint64_t>(vs.f_bavail) * vs.f_frsize;
        }
    }
}

namespace {

const TargetResult* result_of(const ReportInput& in, std::size_t i) {
    return in.exec != nullptr && i < in.exec->targets.size() ? &in.exec->targets[i] : nullptr;
}

Counts merged(const TargetPlan& t, const TargetResult* r) {
    Counts c = t.counts;
    if (r != nullptr) {
        c.skipped_open += r->counts.skipped_open;
        c.skipped_changed += r->counts.skipped_changed;
        c.skipped_permission += r->counts.skipped_permission;
        c.skipped_other += r->counts.skipped_other;
    }
    return c;
}

nlohmann::json counts_json(const Counts& c) {
    return {{"protected",
             {{"pattern", c.protected_pattern},
              {"marker", c.protected_marker},
              {"newest_checkpoints", c.protected_newest}}},
            {"skipped",
             {{"open", c.skipped_open},
              {"new", c.skipped_new},
              {"other_fs", c.skipped_other_fs},
              {"changed", c.skipped_changed},
              {"permission_denied", c.skipped_permission},
              {"other", c.skipped_other}}}};
}

std::string iso_ns(std::int64_t ns) {
    return util::iso8601_utc(std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(ns))));
}

}  // namespace

nlohmann::json report_json(const ReportInput& in, FileList files) {
    nlohmann::json j;
    bool ran = in.exec != nullptr;
    j["outcome"] = to_string(in.outcome);
    j["dry_run"] = in.outcome == Outcome::kDryRun;
    j["breaker"] = in.breaker ? nlohmann::json(*in.breaker) : nlohmann::json(nullptr);
    j["planned"] = {
        {"files", in.plan.files()}, {"bytes", in.plan.bytes()}, {"dirs", in.plan.dirs()}};
    j["deleted"] = {{"files", ran ? in.exec->files() : 0},
                    {"bytes", ran ? in.exec->bytes() : 0},
                    {"dirs", ran ? in.exec->dirs() : 0}};
    j["targets"] = nlohmann::json::array();
    for (std::size_t i = 0; i < in.plan.targets.size(); ++i) {
        const auto& t = in.plan.targets[i];
        const TargetResult* r = result_of(in, i);
        nlohmann::json tj = {
            {"name", t.spec.name},
            {"path", t.spec.display_path()},
            {"root", t.root.string()},
            {"delete", to_string(t.spec.mode)},
            {"retention_seconds", t.spec.retention.count()},
            {"status", to_string(t.status)},
            {"note", t.note},
            {"planned",
             {{"files", t.victims.size()}, {"bytes", t.bytes}, {"dirs", t.dirs_to_remove}}},
            {"deleted",
             {{"files", r ? r->files : 0}, {"bytes", r ? r->bytes : 0}, {"dirs", r ? r->dirs : 0}}},
        };
        tj.update(counts_json(merged(t, r)));
        nlohmann::json errs = t.errors;
        if (r != nullptr) {
            for (const auto& e : r->errors) {
                errs.push_back(e);
            }
        }
        tj["errors"] = errs;
        if (files == FileList::kYes) {
            nlohmann::json vs = nlohmann::json::array();
            for (const auto& v : t.victims) {
                vs.push_back({{"path", t.path_of(v).string()},
                              {"size", v.size},
                              {"mtime", iso_ns(v.mtime_ns)},
                              {"reason", v.reason == Reason::kFileAge ? "file-age" : "run-age"}});
            }
            tj["files"] = vs;
        }
        j["targets"].push_back(tj);
    }
    j["disk"] = nlohmann::json::array();
    for (const auto& d : in.disks) {
        j["disk"].push_back(
            {{"path", d.path.string()},
             {"total", d.total},
             {"free_before", d.free_before},
             {"free_after", d.free_after ? nlohmann::json(*d.free_after) : nullptr}});
    }
    j["aggressive"] = nlohmann::json::array();
    for (const auto& s : in.steps) {
        j["aggressive"].push_back({{"step", s.name},
                                   {"command", s.command},
                                   {"status", to_string(s.status)},
                                   {"freed", s.freed},
                                   {"note", s.note}});
    }
    j["notes"] = in.notes;
    return j;
}

std::string summary_line(const ReportInput& in) {
    std::uint64_t prot = 0, skipped = 0;
    for (std::size_t i = 0; i < in.plan.targets.size(); ++i) {
        Counts c = merged(in.plan.targets[i], result_of(in, i));
        prot += c.protected_pattern + c.protected_marker + c.protected_newest;
        skipped += c.skipped_open + c.skipped_new + c.skipped_other_fs + c.skipped_changed +
                   c.skipped_permission + c.skipped_other;
    }
    std::string tail = fmt::format("; {} protected, {} skipped", prot, skipped);
    switch (in.outcome) {
        case Outcome::kDeleted:
            return fmt::format("deleted {} files ({}), {} directories", in.exec->files(),
                               util::format_bytes(in.exec->bytes()), in.exec->dirs()) +
                   tail;
        case Outcome::kDryRun:
            return fmt::format("dry run: would delete {} files ({}), {} directories",
                               in.plan.files(), util::format_bytes(in.plan.bytes()),
                               in.plan.dirs()) +
                   tail;
        case Outcome::kBreakerTripped:
            return "circuit breaker tripped, nothing deleted: " + in.breaker.value_or("");
        case Outcome::kNotConfirmed:
            return "not confirmed, nothing deleted";
    }
    return "";
}

std::string report_text(const ReportInput& in, FileList files) {
    std::string s = "cleanup: " + summary_line(in) + "\n";
    if (in.breaker && in.outcome != Outcome::kBreakerTripped) {
        s += "  breaker: " + *in.breaker +
             (in.outcome == Outcome::kDeleted ? " (overridden by --force)\n" : "\n");
    }
    for (std::size_t i = 0; i < in.plan.targets.size(); ++i) {
        const auto& t = in.plan.targets[i];
        const TargetResult* r = result_of(in, i);
        s += fmt::format("  {:<12} {}  (delete {}, older than {})\n", t.spec.name,
                         t.spec.display_path(), to_string(t.spec.mode),
                         util::format_duration(t.spec.retention));
        if (t.status != TargetStatus::kOk) {
            s += fmt::format("      {}: {}\n", to_string(t.status), t.note);
            continue;
        }
        if (r != nullptr) {
            s += fmt::format("      deleted {} files ({}), {} directories (planned {})\n", r->files,
                             util::format_bytes(r->bytes), r->dirs, t.victims.size());
        } else {
            s += fmt::format("      {} files ({}), {} directories\n", t.victims.size(),
                             util::format_bytes(t.bytes), t.dirs_to_remove);
        }
        Counts c = merged(t, r);
        s += fmt::format(
            "      protected: {} by pattern, {} by marker, {} newest checkpoints\n"
            "      skipped: {} open, {} new, {} other fs, {} changed, {} permission denied, "
            "{} other\n",
            c.protected_pattern, c.protected_marker, c.protected_newest, c.skipped_open,
            c.skipped_new, c.skipped_other_fs, c.skipped_changed, c.skipped_permission,
            c.skipped_other);
        if (!t.note.empty()) {
            s += "      note: " + t.note + "\n";
        }
        for (const auto& e : t.errors) {
            s += "      error: " + e + "\n";
        }
        if (r != nullptr) {
            for (const auto& e : r->errors) {
                s += "      error: " + e + "\n";
            }
        }
        if (files == FileList::kYes) {
            for (const auto& v : t.victims) {
                s += fmt::format("      delete {}  ({})\n", t.path_of(v).string(),
                                 util::format_bytes(v.size));
            }
        }
    }
    for (const auto& d : in.disks) {
        s += fmt::format("  disk {}: {} free", d.path.string(), util::format_bytes(d.free_before));
        if (d.free_after) {
            s += fmt::format(" -> {}", util::format_bytes(*d.free_after));
        }
        s += fmt::format(" of {}\n", util::format_bytes(d.total));
    }
    for (const auto& st : in.steps) {
        s += fmt::format("  aggressive {}: {} `{}`", st.name, to_string(st.status), st.command);
        if (st.status == StepStatus::kRan) {
            s += ", freed " + util::format_bytes(st.freed);
        }
        if (!st.note.empty()) {
            s += " (" + st.note + ")";
        }
        s += "\n";
    }
    for (const auto& n : in.notes) {
        s += "  note: " + n + "\n";
    }
    return s;
}

}  // namespace mlk::cleanup
