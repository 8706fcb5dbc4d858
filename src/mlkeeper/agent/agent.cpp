#include "mlkeeper/agent/agent.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/sched/run_log.hpp"
#include "mlkeeper/sched/scheduler.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::agent {
namespace {

using sched::TimePoint;
using namespace std::chrono_literals;

TimePoint now_us() {
    return std::chrono::time_point_cast<std::chrono::microseconds>(
        std::chrono::system_clock::now());
}

// An owned file descriptor.
class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

  private:
    int fd_;
};

int checked(int rc, const char* what) {
    if (rc < 0) {
        throw std::system_error(errno, std::generic_category(), what);
    }
    return rc;
}

// Field 22 of /proc/PID/stat: the process start time in clock ticks after boot. With the pid it
// names one process for the life of the machine (pids are reused, start times are not).
std::optional<std::uint64_t> process_start_time(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) {
        return std::nullopt;
    }
    const auto close = stat.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::size_t pos = close + 2;
    for (int field = 3; field < 22; ++field) {
        pos = stat.find(' ', pos);
        if (pos == std::string::npos) {
            return std::nullopt;
        }
        ++pos;
    }
    try {
        return std::stoull(stat.substr(pos, stat.find(' ', pos) - pos));
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

struct Running {
    int64_t run_id = 0;
    sched::JobSpec spec;
    std::atomic<bool> cancel{false};
    std::thread thread;
    std::optional<util::FileLock> lock;
};

struct Finished {
    std::string job;
    sched::JobRun run;
};

// A job an earlier agent started that outlived it: watched until it exits.
struct Orphan {
    int64_t run_id = 0;
    pid_t pid = 0;
    std::uint64_t start = 0;
};

class Agent {
  public:
    explicit Agent(const AgentOptions& opts)
        : opts_(opts),
          log_(*opts.state),
          wake_(checked(::eventfd(0, EFD_CLOEXEC), "eventfd")),
          signals_(block_signals()) {}

    int run() {
        config_ = opts_.load();
        recover();
        rebuild(now_us());
        std::shared_ptr<void> services;
        if (opts_.start_services) {
            services = opts_.start_services();
        }
        sd_notify(0, "READY=1");
        update_status();
        std::uint64_t watchdog_usec = 0;
        const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
        auto next_ping = std::chrono::steady_clock::now();
        while (!stopping_) {
            if (watchdog && std::chrono::steady_clock::now() >= next_ping) {
                sd_notify(0, "WATCHDOG=1");
                next_ping =
                    std::chrono::steady_clock::now() + std::chrono::microseconds(watchdog_usec / 2);
            }
            wait(watchdog ? std::optional(next_ping) : std::nullopt);
            collect_finished();
            check_orphans();
            start_due(now_us());
            if (opts_.exit_after_runs > 0 && finished_runs_ >= opts_.exit_after_runs) {
                stopping_ = true;
            }
        }
        shutdown();
        return 0;
    }

  private:
    static int block_signals() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        checked(::pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0 ? 0 : -1, "sigprocmask");
        return checked(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd");
    }

    void recover() {
        for (const auto& r : log_.unfinished()) {
            const bool alive = r.pid && r.pid_start && process_start_time(*r.pid) == r.pid_start;
            if (alive) {
                spdlog::warn(
                    "job {}: run {} started by an earlier agent (pid {}) is still "
                    "running; not starting it again until it ends",
                    r.job, r.id, *r.pid);
                orphans_[r.job] = Orphan{r.id, *r.pid, *r.pid_start};
            } else {
                spdlog::warn("job {}: run {} was interrupted (the agent stopped while it ran)",
                             r.job, r.id);
                log_.finish(r.id, sched::Outcome::kInterrupted, std::nullopt, std::nullopt,
                            r.attempts, now_us(), "the agent stopped while this run was going");
            }
        }
    }

    void check_orphans() {
        for (auto it = orphans_.begin(); it != orphans_.end();) {
            if (process_start_time(it->second.pid) == it->second.start) {
                ++it;
                continue;
            }
            log_.finish(it->second.run_id, sched::Outcome::kInterrupted, std::nullopt, std::nullopt,
                        0, now_us(),
                        "outlived the agent that started it; its exit status is unknown");
            spdlog::info("job {}: the run left by an earlier agent has ended", it->first);
            it = orphans_.erase(it);
        }
    }

    void rebuild(TimePoint now) {
        std::vector<sched::ScheduledJob> jobs;
        for (const auto& spec : config_.jobs) {
            jobs.push_back(
                sched::ScheduledJob{spec, sched::Schedule::parse(spec.schedule_kind, spec.schedule),
                                    log_.last_trigger(spec.name)});
        }
        scheduler_ = std::make_unique<sched::Scheduler>(std::move(jobs));
        scheduler_->start(now);
        for (std::size_t i = 0; i < scheduler_->jobs().size(); ++i) {
            const auto& p = scheduler_->plan(i);
            const auto& name = scheduler_->jobs()[i].spec.name;
            if (p.fire_at) {
                spdlog::debug("job {}: next {} at {}", name, sched::to_string(p.trigger),
                              util::iso8601_utc(
                                  std::chrono::time_point_cast<std::chrono::system_clock::duration>(
                                      *p.fire_at)));
            } else {
                spdlog::info("job {}: its schedule never elapses again", name);
            }
        }
    }

    void wait(std::optional<std::chrono::steady_clock::time_point> ping) {
        auto timeout = std::chrono::milliseconds(60000);
        if (auto next = scheduler_->next_wake()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - now_us());
            timeout = std::clamp(left, std::chrono::milliseconds(0), timeout);
        }
        if (ping) {
            timeout = std::min(timeout, std::chrono::ceil<std::chrono::milliseconds>(
                                            *ping - std::chrono::steady_clock::now()));
        }
        if (!orphans_.empty()) {
            timeout = std::min(timeout, std::chrono::milliseconds(1000));
        }
        timeout = std::max(timeout, std::chrono::milliseconds(0));
        pollfd fds[2] = {{signals_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
        const int n = ::poll(fds, 2, static_cast<int>(timeout.count()));
        if (n < 0 && errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "poll");
        }
        if (n > 0 && (fds[0].revents & POLLIN) != 0) {
            handle_signals();
        }
        if (n > 0 && (fds[1].revents & POLLIN) != 0) {
            std::uint64_t v = 0;
            (void)!::read(wake_.get(), &v, sizeof v);
        }
    }

    void handle_signals() {
        signalfd_siginfo si{};
        while (::read(signals_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            if (si.ssi_signo == SIGHUP) {
                reload();
            } else {
                spdlog::info("agent: {} received, stopping",
                             strsignal(static_cast<int>(si.ssi_signo)));
                stopping_ = true;
            }
        }
    }

    void reload() {
        sd_notify(0, "RELOADING=1");
        if (opts_.on_reload) {
            opts_.on_reload();
        }
        try {
            AgentConfig fresh = opts_.load();
            config_ = std::move(fresh);
            rebuild(now_us());
            spdlog::info("agent: configuration reloaded ({} jobs)", config_.jobs.size());
        } catch (const std::exception& e) {
            spdlog::error("agent: reload failed, keeping the previous configuration: {}", e.what());
        }
        sd_notify(0, "READY=1");
        update_status();
    }

    void start_due(TimePoint now) {
        for (const auto& f : scheduler_->take_due(now)) {
            const auto& spec = scheduler_->jobs()[f.job].spec;
            if (running_.count(spec.name) != 0 || orphans_.count(spec.name) != 0) {
                spdlog::warn("job {}: previous run still active, skipping this one", spec.name);
                log_.record_skip(spec.name, f.trigger, f.elapse, now,
                                 "the previous run was still going");
                continue;
            }
            pid_t holder = 0;
            auto lock =
                util::FileLock::try_acquire(opts_.lock_dir / (spec.name + ".lock"), &holder);
            if (!lock) {
                spdlog::warn("job {}: already running elsewhere (pid {}), skipping", spec.name,
                             holder);
                log_.record_skip(spec.name, f.trigger, f.elapse, now,
                                 fmt::format("already running (pid {})", holder));
                continue;
            }
            scheduler_->triggered(f.job, now);
            launch(spec, f.trigger, f.elapse, std::move(*lock));
        }
        update_status();
    }

    void launch(const sched::JobSpec& spec, sched::Trigger trigger, std::optional<TimePoint> elapse,
                util::FileLock lock) {
        auto r = std::make_unique<Running>();
        r->spec = spec;
        r->lock.emplace(std::move(lock));
        r->run_id = log_.begin(spec.name, trigger, elapse, now_us());
        const auto argv =
            spec.kind == sched::TaskKind::kBuiltin ? opts_.builtin_argv(spec) : spec.argv;
        spdlog::info("job {}: starting ({})", spec.name, sched::to_string(trigger));
        sched::RunnerOptions ro;  // built here: the thread must not read config_ (SIGHUP)
        ro.cgroup_parent = config_.cgroup_parent;
        ro.cancel = &r->cancel;
        ro.kill_grace = config_.stop_timeout;
        ro.output_tail = config_.output_tail;
        const int64_t run_id = r->run_id;
        ro.env_set = {{"MLKEEPER_JOB", spec.name}, {"MLKEEPER_RUN_ID", std::to_string(run_id)}};
        // Recorded by the main loop at once: a restarted agent finds the job by this pid.
        ro.on_spawn = [this, run_id](pid_t pid) {
            {
                std::lock_guard guard(mu_);
                spawned_.push_back({run_id, pid});
            }
            wake_up();
        };
        ro.on_attempt = [name = spec.name](const sched::AttemptReport& a) {
            if (a.retry_in) {
                spdlog::warn("job {}: attempt {}/{} {}; retrying in {} ms", name, a.attempt,
                             a.max_attempts, sched::to_string(a.outcome), a.retry_in->count());
            }
        };
        r->thread = std::thread([this, job = spec, argv, ro = std::move(ro)] {
            sched::JobRun result = sched::run_job(job, argv, ro);
            {
                std::lock_guard guard(mu_);
                finished_.push_back(Finished{job.name, std::move(result)});
            }
            wake_up();
        });
        running_[spec.name] = std::move(r);
    }

    void wake_up() {
        const std::uint64_t one = 1;
        (void)!::write(wake_.get(), &one, sizeof one);
    }

    void collect_finished() {
        std::deque<Finished> done;
        std::vector<std::pair<int64_t, pid_t>> spawned;
        {
            std::lock_guard lock(mu_);
            done.swap(finished_);
            spawned.swap(spawned_);
        }
        for (const auto& [id, pid] : spawned) {
            log_.set_process(id, pid, process_start_time(pid));
        }
        for (auto& f : done) {
            auto it = running_.find(f.job);
            if (it == running_.end()) {
                continue;
            }
            it->second->thread.join();
            const auto& spec = it->second->spec;
            const auto outcome = sched::to_outcome(f.run.outcome);
            log_.finish(it->second->run_id, outcome,
                        f.run.exit_kind == util::ExitKind::kExited ? std::optional(f.run.exit_code)
                                                                   : std::nullopt,
                        f.run.signal != 0 ? std::optional(f.run.signal) : std::nullopt,
                        f.run.attempts,
                        std::chrono::time_point_cast<std::chrono::microseconds>(f.run.end),
                        f.run.output_tail);
            for (const auto& w : f.run.warnings) {
                if (warned_.insert(spec.name + "\n" + w).second) {
                    spdlog::warn("job {}: {}", spec.name, w);
                }
            }
            if (f.run.ok()) {
                spdlog::info("job {}: succeeded", spec.name);
            } else {
                spdlog::error("job {}: {} (exit {}, signal {}, {} attempt(s)){}", spec.name,
                              sched::to_string(f.run.outcome), f.run.exit_code, f.run.signal,
                              f.run.attempts, f.run.error.empty() ? "" : ": " + f.run.error);
            }
            if (opts_.on_finished) {
                try {
                    opts_.on_finished(spec, f.run);
                } catch (const std::exception& e) {
                    spdlog::error("job {}: reporting the result failed: {}", spec.name, e.what());
                }
            }
            running_.erase(it);
            ++finished_runs_;
        }
        update_status();
    }

    void update_status() {
        std::string status =
            fmt::format("{} jobs, {} running", config_.jobs.size(), running_.size());
        if (scheduler_) {
            if (auto next = scheduler_->next_wake()) {
                status +=
                    "; next at " +
                    util::format_local(
                        std::chrono::time_point_cast<std::chrono::system_clock::duration>(*next));
            }
        }
        if (status != last_status_) {
            sd_notifyf(0, "STATUS=%s", status.c_str());
            last_status_ = status;
        }
    }

    void shutdown() {
        sd_notify(0, "STOPPING=1");
        for (auto& [name, r] : running_) {
            spdlog::info("job {}: stopping (SIGTERM, SIGKILL after {}s)", name,
                         config_.stop_timeout.count());
            r->cancel = true;
        }
        while (!running_.empty()) {
            wait(std::nullopt);
            collect_finished();
        }
    }

    const AgentOptions& opts_;
    sched::RunLog log_;
    Fd wake_;
    Fd signals_;
    AgentConfig config_;
    std::unique_ptr<sched::Scheduler> scheduler_;
    std::map<std::string, std::unique_ptr<Running>> running_;
    std::map<std::string, Orphan> orphans_;
    std::mutex mu_;
    std::deque<Finished> finished_;
    std::vector<std::pair<int64_t, pid_t>> spawned_;
    std::set<std::string> warned_;
    std::string last_status_;
    bool stopping_ = false;
    int finished_runs_ = 0;
};

}  // namespace

int run(const AgentOptions& opts) {
    Agent agent(opts);
    return agent.run();
}

}  // namespace mlk::agent
