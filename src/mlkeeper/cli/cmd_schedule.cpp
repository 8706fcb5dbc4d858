// `mlkeeper schedule list|run|history|export`: the jobs the agent runs, like `systemctl
// list-timers`; running one now through the agent's path; its past runs; and the same jobs as
// systemd units or an /etc/cron.d file for hosts that schedule without the agent.
#include <iostream>

#include <fmt/format.h>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/cli/job_support.hpp"
#include "mlkeeper/cli/outcome_alerts.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/sched/job_config.hpp"
#include "mlkeeper/sched/run_log.hpp"
#include "mlkeeper/sched/scheduler.hpp"
#include "mlkeeper/sched/unit_export.hpp"
#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/time.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cli {
namespace {

using sched::TimePoint;

TimePoint now_us() {
    return std::chrono::time_point_cast<std::chrono::microseconds>(
        std::chrono::system_clock::now());
}

std::chrono::system_clock::time_point sys(TimePoint t) {
    return std::chrono::time_point_cast<std::chrono::system_clock::duration>(t);
}

std::string when(std::optional<TimePoint> t) {
    return t ? util::format_local(sys(*t), "%a %Y-%m-%d %H:%M:%S %Z") : "-";
}

std::string left_or_passed(std::optional<TimePoint> t, TimePoint now) {
    if (!t) {
        return "-";
    }
    const auto d = std::chrono::duration_cast<std::chrono::seconds>(*t - now);
    return d.count() >= 0 ? util::format_duration(d) + " left" : util::format_duration(-d) + " ago";
}

nlohmann::json time_json(std::optional<TimePoint> t) {
    return t ? nlohmann::json(util::iso8601_utc(sys(*t))) : nlohmann::json(nullptr);
}

std::string result_of(const sched::JobRunRecord& r) {
    if (!r.outcome) {
        return "running";
    }
    std::string s(sched::to_string(*r.outcome));
    if (r.exit_code && *r.exit_code != 0) {
        s += fmt::format(" ({})", *r.exit_code);
    }
    return s;
}

sched::RunLog open_log(Context& ctx) {
    return sched::RunLog(ctx.state());
}

int list(Context& ctx, bool json) {
    const auto jobs = sched::load_jobs(ctx.config());
    auto log = open_log(ctx);
    const auto now = now_us();
    nlohmann::json out = nlohmann::json::array();
    std::vector<std::array<std::string, 6>> rows;
    for (const auto& job : jobs) {
        const auto schedule = sched::Schedule::parse(job.schedule_kind, job.schedule);
        const auto next = schedule.next_after(now);
        const auto last = log.recent(job.name, 1);
        const sched::JobRunRecord* lr = last.empty() ? nullptr : &last.front();
        out.push_back({
            {"job", job.name},
            {"schedule", job.schedule},
            {"schedule_kind",
             job.schedule_kind == sched::ScheduleKind::kCron ? "cron" : "calendar"},
            {"normalized", schedule.normalized()},
            {"next", time_json(next)},
            {"randomized_delay_s", job.randomized_delay.count()},
            {"last", lr ? time_json(lr->started) : nlohmann::json(nullptr)},
            {"last_result", lr ? nlohmann::json(result_of(*lr)) : nlohmann::json(nullptr)},
            {"task", job.kind == sched::TaskKind::kBuiltin ? job.builtin : job.argv.front()},
        });
        rows.push_back({when(next), left_or_passed(next, now), lr ? when(lr->started) : "-",
                        lr ? left_or_passed(lr->started, now) : "-", job.name,
                        lr ? result_of(*lr) : "-"});
    }
    if (json) {
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::array<std::size_t, 6> w{4, 4, 4, 6, 3, 6};
    for (const auto& r : rows) {
        for (std::size_t i = 0; i < r.size(); ++i) {
            w[i] = std::max(w[i], r[i].size());
        }
    }
    auto line = [&](const std::array<std::string, 6>& r) {
        std::cout << fmt::format("{:<{}}  {:<{}}  {:<{}}  {:<{}}  {:<{}}  {}\n", r[0], w[0], r[1],
                                 w[1], r[2], w[2], r[3], w[3], r[4], w[4], r[5]);
    };
    line({"NEXT", "LEFT", "LAST", "PASSED", "JOB", "RESULT"});
    for (const auto& r : rows) {
        line(r);
    }
    std::cout << fmt::format("\n{} jobs listed. Times are elapses before any randomized delay.\n",
                             rows.size());
    return 0;
}

const sched::JobSpec& find_job(const std::vector<sched::JobSpec>& jobs, const std::string& name) {
    for (const auto& j : jobs) {
        if (j.name == name) {
            return j;
        }
    }
    std::string names;
    for (const auto& j : jobs) {
        names += (names.empty() ? "" : ", ") + j.name;
    }
    throw UsageError(
        fmt::format("no job named \"{}\" (jobs: {})", name, names.empty() ? "none" : names));
}

int run_now(Context& ctx, const std::string& name, bool json) {
    const auto jobs = sched::load_jobs(ctx.config());
    const auto& job = find_job(jobs, name);
    pid_t holder = 0;
    auto lock = util::FileLock::try_acquire(job_lock_dir(ctx) / (job.name + ".lock"), &holder);
    if (!lock) {
        throw Error(fmt::format("job {} is already running (pid {})", job.name, holder));
    }
    auto log = open_log(ctx);
    const auto id = log.begin(job.name, sched::Trigger::kManual, std::nullopt, now_us());
    sched::RunnerOptions ro;
    ro.cgroup_parent = ctx.config().path("schedule.cgroup_parent");
    ro.output_tail = ctx.config().size("schedule.output_tail");
    ro.env_set = {{"MLKEEPER_JOB", job.name}, {"MLKEEPER_RUN_ID", std::to_string(id)}};
    ro.on_spawn = [&](pid_t pid) { log.set_process(id, pid, std::nullopt); };
    const auto run = sched::run_job(job, job_argv(ctx, job), ro);
    log.finish(
        id, sched::to_outcome(run.outcome),
        run.exit_kind == util::ExitKind::kExited ? std::optional(run.exit_code) : std::nullopt,
        run.signal != 0 ? std::optional(run.signal) : std::nullopt, run.attempts,
        std::chrono::time_point_cast<std::chrono::microseconds>(run.end), run.output_tail);
    OutcomeAlerts alerts(ctx);
    report_job_outcome(alerts, job, run);
    ctx.summary()["job"] = job.name;
    ctx.summary()["outcome"] = sched::to_string(run.outcome);
    if (json) {
        std::cout << nlohmann::json{{"job", job.name},
                                    {"run_id", id},
                                    {"outcome", sched::to_string(run.outcome)},
                                    {"exit_code", run.exit_code},
                                    {"signal", run.signal},
                                    {"attempts", run.attempts},
                                    {"output_tail", run.output_tail}}
                         .dump(2)
                  << "\n";
    } else {
        std::cout << run.output_tail;
        if (!run.output_tail.empty() && run.output_tail.back() != '\n') {
            std::cout << "\n";
        }
        std::cout << fmt::format("job {} {} ({} attempt(s))\n", job.name, describe(run),
                                 run.attempts);
    }
    if (run.ok()) {
        return 0;
    }
    return run.exit_kind == util::ExitKind::kExited && run.exit_code > 0 && run.exit_code < 64
               ? run.exit_code
               : 1;
}

int history(Context& ctx, const std::string& name, std::size_t limit, bool json) {
    auto log = open_log(ctx);
    const auto runs = log.recent(name, limit);
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& r : runs) {
            out.push_back(
                {{"id", r.id},
                 {"job", r.job},
                 {"trigger", sched::to_string(r.trigger)},
                 {"elapse", time_json(r.elapse)},
                 {"started_at", time_json(r.started)},
                 {"ended_at", time_json(r.ended)},
                 {"outcome", r.outcome ? nlohmann::json(sched::to_string(*r.outcome))
                                       : nlohmann::json(nullptr)},
                 {"exit_code",
                  r.exit_code ? nlohmann::json(*r.exit_code) : nlohmann::json(nullptr)},
                 {"signal", r.signal ? nlohmann::json(*r.signal) : nlohmann::json(nullptr)},
                 {"attempts", r.attempts},
                 {"pid", r.pid ? nlohmann::json(*r.pid) : nlohmann::json(nullptr)},
                 {"output_tail", r.output_tail}});
        }
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    for (const auto& r : runs) {
        const auto took =
            r.ended ? util::format_duration(
                          std::chrono::duration_cast<std::chrono::seconds>(*r.ended - r.started))
                    : std::string("-");
        std::cout << fmt::format("{:>6}  {}  {:<10} {:<9} {:<16} {:>6}  attempts {}\n", r.id,
                                 when(r.started), r.job, sched::to_string(r.trigger), result_of(r),
                                 took, r.attempts);
    }
    if (runs.empty()) {
        std::cout << "no job runs recorded\n";
    }
    return 0;
}

sched::ExportOptions export_options(const Context& ctx, const std::string& user) {
    const auto& cfg = ctx.config();
    sched::ExportOptions o;
    o.binary = self_exe();
    if (cfg.file()) {
        o.config = std::filesystem::absolute(*cfg.file());
    }
    o.user = user;
    o.group = user;
    const auto state = std::filesystem::absolute(ctx.state_dir());
    std::vector<std::filesystem::path> common{state};
    if (!cfg.path("log.log_file").empty()) {
        common.push_back(std::filesystem::absolute(cfg.path("log.log_file")).parent_path());
    }
    auto with = [&](std::vector<std::filesystem::path> extra) {
        extra.insert(extra.end(), common.begin(), common.end());
        return extra;
    };
    // Every place each job writes: under ProtectSystem=strict nothing else is writable.
    auto abs = [&](const char* key) { return std::filesystem::absolute(cfg.path(key)); };
    auto dir_of = [&](const char* key) { return abs(key).parent_path(); };
    const std::vector<std::filesystem::path> backup{abs("backup.backup_dir")};
    const std::vector<std::filesystem::path> gpu{dir_of("gpu.metrics_file")};
    const std::vector<std::filesystem::path> health =
        cfg.path("health.textfile_dir").empty()
            ? std::vector<std::filesystem::path>{}
            : std::vector<std::filesystem::path>{abs("health.textfile_dir")};
    const std::vector<std::filesystem::path> cleanup{
        abs("cleanup.experiments_dir"), abs("cleanup.checkpoints_dir"), abs("cleanup.logs_dir"),
        abs("cleanup.temp_dir")};
    o.writes["backup"] = with(backup);
    o.reads["backup"] = {abs("backup.model_dir")};
    o.writes["gpu"] = with(gpu);
    o.writes["health"] = with(health);
    o.writes["cleanup"] = with(cleanup);
    std::vector<std::filesystem::path> all = backup;
    for (const auto* part : {&gpu, &health, &cleanup}) {
        all.insert(all.end(), part->begin(), part->end());
    }
    o.writes["maintain"] = with(all);
    o.reads["maintain"] = o.reads["backup"];
    o.alert_writes = common;
    return o;
}

int export_units(Context& ctx, const std::string& systemd_dir, bool cron, const std::string& user,
                 const std::string& systemd_version) {
    const auto jobs = sched::load_jobs(ctx.config());
    auto opts = export_options(ctx, user);
    if (!systemd_version.empty()) {
        opts.systemd_version = std::stoi(systemd_version);
    }
    if (cron) {
        std::cout << sched::crontab(jobs, opts);
        return 0;
    }
    const auto files = sched::systemd_units(jobs, opts);
    std::filesystem::create_directories(systemd_dir);
    for (const auto& f : files) {
        util::write_file_atomic(std::filesystem::path(systemd_dir) / f.filename, f.content);
        std::cout << (std::filesystem::path(systemd_dir) / f.filename).string() << "\n";
    }
    std::cerr << fmt::format(
        "wrote {} files; install with:\n  cp {}/mlkeeper-* /etc/systemd/system/ && systemctl "
        "daemon-reload && systemctl enable --now {}\n",
        files.size(), systemd_dir, [&] {
            std::string timers;
            for (const auto& j : jobs) {
                timers += (timers.empty() ? "" : " ") + ("mlkeeper-" + j.name + ".timer");
            }
            return timers;
        }());
    return 0;
}

}  // namespace

Command schedule_command() {
    return Command{
        "schedule", "Scheduled jobs: list them, run one now, see past runs, export units", "",
        Record::kNo, [](CLI::App& app, FlagBindings&) {
            struct Opts {
                bool json = false, cron = false;
                std::string job, systemd_dir, user = "mlkeeper", systemd_version;
                std::size_t limit = 20;
            };
            auto o = std::make_shared<Opts>();
            app.require_subcommand(1, 1);
            auto* ls = app.add_subcommand("list",
                                          "Jobs with next and last run, like "
                                          "systemctl list-timers");
            ls->add_flag("--json", o->json, "JSON array of jobs");
            auto* run = app.add_subcommand("run",
                                           "Run a job now (manual trigger), as the agent "
                                           "would: limits, timeout, retries, run log");
            run->add_option("JOB", o->job, "Job name (see schedule list)")->required();
            run->add_flag("--json", o->json, "JSON result");
            auto* hist = app.add_subcommand("history", "Past runs of one job or of all jobs");
            hist->add_option("JOB", o->job, "Job name (default: all)");
            hist->add_option("-n,--limit", o->limit, "How many runs")->check(CLI::Range(1, 100000));
            hist->add_flag("--json", o->json, "JSON array of runs");
            auto* ex = app.add_subcommand("export",
                                          "Write systemd units (--systemd DIR) or print "
                                          "an /etc/cron.d file (--cron)");
            auto* sd = ex->add_option("--systemd", o->systemd_dir,
                                      "Directory for the .service/.timer files");
            auto* cr = ex->add_flag("--cron", o->cron, "Print an /etc/cron.d/mlkeeper file");
            sd->excludes(cr);
            ex->add_option("--user", o->user, "Account the jobs run as")->capture_default_str();
            ex->add_option("--systemd-version", o->systemd_version,
                           "Target systemd version (default 252, Debian 12)");
            app.footer(R"(
Jobs come from [schedule.jobs.NAME] in the config file (see docs/SCHEDULING.md);
without any, the seeds' four: backup daily 02:00, gpu every 5 min,
cleanup Sun 03:00, maintain Sun 01:00.

Examples:
  mlkeeper schedule list
  mlkeeper schedule run backup
  mlkeeper schedule history backup -n 5
  mlkeeper schedule export --systemd ./units && systemd-analyze verify ./units/*
  mlkeeper schedule export --cron > /etc/cron.d/mlkeeper)");
            Handler h;
            h.run = [o, ls, run, hist, ex](Context& ctx) {
                if (ls->parsed()) {
                    return list(ctx, o->json);
                }
                if (run->parsed()) {
                    return run_now(ctx, o->job, o->json);
                }
                if (hist->parsed()) {
                    return history(ctx, o->job, o->limit, o->json);
                }
                if (o->systemd_dir.empty() && !o->cron) {
                    throw UsageError("schedule export needs --systemd DIR or --cron");
                }
                (void)ex;
                return export_units(ctx, o->systemd_dir, o->cron, o->user, o->systemd_version);
            };
            return h;
        }};
}

}  // namespace mlk::cli
