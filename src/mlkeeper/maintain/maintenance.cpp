#include "mlkeeper/maintain/maintenance.hpp"

#include <fmt/format.h>

#include "mlkeeper/util/units.hpp"

namespace mlk::maintain {
namespace {

using std::chrono::milliseconds;

std::string last_line(const std::string& text) {
    std::string last;
    std::size_t pos = 0;
    // The most telling line of a failed task is its last non-empty one ("mlkeeper: ...").
    while (pos < text.size()) {
        const auto end = text.find('\n', pos);
        std::string line =
            text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        if (!line.empty()) {
            last = line;
        }
        if (end == std::string::npos) {
            break;
        }
        pos = end + 1;
    }
    return last;
}

TaskResult judge(const TaskPlan& plan, const util::RunResult& r) {
    TaskResult t;
    t.task = plan.task;
    t.duration = r.elapsed;
    t.output = r.err;
    t.details = nlohmann::json::parse(r.out, nullptr, false);
    if (t.details.is_discarded()) {
        t.details = nullptr;
    }
    switch (r.kind) {
        case util::ExitKind::kExited:
            t.exit_code = r.exit_code;
            if (r.exit_code == 0) {
                t.status = Status::kOk;
            } else if (r.exit_code == 1 &&
                       (plan.task == Task::kHealth || plan.task == Task::kGpu)) {
                t.status = Status::kWarning;
            } else {
                t.status = Status::kFailed;
                t.reason = fmt::format("exit {}: {}", r.exit_code, last_line(r.err));
            }
            break;
        case util::ExitKind::kSignaled:
            t.status = Status::kFailed;
            t.reason = fmt::format("killed by signal {}", r.signal);
            break;
        case util::ExitKind::kTimedOut:
            t.status = Status::kFailed;
            t.reason = fmt::format(
                "timed out after {}",
                util::format_duration(std::chrono::duration_cast<std::chrono::seconds>(r.elapsed)));
            break;
        case util::ExitKind::kCancelled:
        case util::ExitKind::kFailedToStart:
            t.status = Status::kFailed;
            t.reason = r.error.empty() ? "could not start" : r.error;
            break;
    }
    if (!t.details.is_null()) {
        t.figures = key_figures(plan.task, t.details);
    }
    return t;
}

}  // namespace

std::string_view to_string(Task t) {
    switch (t) {
        case Task::kHealth:
            return "health";
        case Task::kGpu:
            return "gpu";
        case Task::kBackup:
            return "backup";
        case Task::kCleanup:
            return "cleanup";
    }
    return "?";
}

std::string_view to_string(Status s) {
    switch (s) {
        case Status::kOk:
            return "ok";
        case Status::kWarning:
            return "warning";
        case Status::kFailed:
            return "failed";
        case Status::kSkipped:
            return "skipped";
    }
    return "?";
}

std::string key_figures(Task task, const nlohmann::json& d) {
    auto num = [&](const nlohmann::json& j, const char* k) -> double {
        return j.is_object() && j.contains(k) && j[k].is_number() ? j[k].get<double>() : 0.0;
    };
    auto bytes = [&](double b) { return util::format_bytes(static_cast<std::uint64_t>(b)); };
    switch (task) {
        case Task::kHealth: {
            const auto& s = d.is_object() && d.contains("summary") ? d["summary"] : d;
            return fmt::format("{} checks, {} warning(s), {} failed, score {}", num(s, "total"),
                               num(s, "warnings"), num(s, "failed"), num(s, "health_score"));
        }
        case Task::kGpu: {
            const auto n = num(d, "gpu_count");
            if (n == 0) {
                return "no GPU";
            }
            return fmt::format("{} GPU(s), status {}", n,
                               d.contains("status") && d["status"].is_string()
                                   ? d["status"].get<std::string>()
                                   : "?");
        }
        case Task::kBackup: {
            if (d.value("dry_run", false)) {
                return fmt::format("dry run: {} files, about {}", num(d, "files"),
                                   bytes(num(d, "bytes_out")));
            }
            const std::string kind = d.contains("kind") && d["kind"].is_string()
                                         ? d["kind"].get<std::string>()
                                         : "backup";
            return fmt::format("{} backup, {} files, {} -> {}{}", kind, num(d, "files"),
                               bytes(num(d, "bytes_in")), bytes(num(d, "bytes_out")),
                               d.contains("verified") && d["verified"].is_boolean()
                                   ? (d["verified"].get<bool>() ? ", verified" : ", NOT verified")
                                   : "");
        }
        case Task::kCleanup: {
            const auto& del = d.contains("deleted") ? d["deleted"] : nlohmann::json();
            const auto& plan = d.contains("planned") ? d["planned"] : nlohmann::json();
            if (d.value("dry_run", false)) {
                return fmt::format("dry run: would free {} in {} files", bytes(num(plan, "bytes")),
                                   num(plan, "files"));
            }
            return fmt::format("freed {} in {} files", bytes(num(del, "bytes")), num(del, "files"));
        }
    }
    return "";
}

nlohmann::json MaintainReport::to_json() const {
    nlohmann::json tasks_j = nlohmann::json::array();
    for (const auto& t : tasks) {
        tasks_j.push_back({{"task", to_string(t.task)},
                           {"status", to_string(t.status)},
                           {"reason", t.reason},
                           {"exit_code", t.exit_code >= 0 ? nlohmann::json(t.exit_code)
                                                          : nlohmann::json(nullptr)},
                           {"seconds", static_cast<double>(t.duration.count()) / 1000.0},
                           {"figures", t.figures},
                           {"details", t.details}});
    }
    return {{"tasks", tasks_j},
            {"summary",
             {{"ok", ok},
              {"warnings", warnings},
              {"failed", failed},
              {"skipped", skipped},
              {"seconds", static_cast<double>(duration.count()) / 1000.0}}},
            {"exit_code", exit_code()}};
}

MaintainReport run_maintenance(const std::vector<TaskPlan>& plans, const MaintainOptions& opts) {
    const auto start = std::chrono::steady_clock::now();
    MaintainReport rep;
    bool stop = false;
    bool backup_failed = false;
    std::size_t index = 0;
    for (const auto& plan : plans) {
        ++index;
        TaskResult t;
        t.task = plan.task;
        if (!plan.enabled) {
            t.reason = "disabled";
        } else if (stop) {
            t.reason = "an earlier task failed (use --continue-on-error to go on)";
        } else if (plan.task == Task::kCleanup && backup_failed &&
                   opts.cleanup_after_failed_backup == CleanupAfterFailedBackup::kSkip) {
            t.reason =
                "the backup of this run failed; cleaning up now could delete the only "
                "copy (use --force-cleanup to run it anyway)";
        } else {
            if (opts.on_start) {
                opts.on_start(plan, index, plans.size());
            }
            util::RunResult r;
            if (opts.run) {
                r = opts.run(plan.argv);
            } else {
                util::RunOptions ro;
                ro.timeout = opts.task_timeout;
                ro.output_cap = 16u << 20;  // --json of a big cleanup lists every target
                r = util::run_process(plan.argv, ro);
            }
            t = judge(plan, r);
        }
        switch (t.status) {
            case Status::kOk:
                ++rep.ok;
                break;
            case Status::kWarning:
                ++rep.warnings;
                break;
            case Status::kFailed:
                ++rep.failed;
                backup_failed = backup_failed || plan.task == Task::kBackup;
                stop = opts.on_error == OnError::kStop;
                break;
            case Status::kSkipped:
                ++rep.skipped;
                break;
        }
        if (opts.on_done) {
            opts.on_done(t);
        }
        rep.tasks.push_back(std::move(t));
    }
    rep.duration =
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
    return rep;
}

}  // namespace mlk::maintain
