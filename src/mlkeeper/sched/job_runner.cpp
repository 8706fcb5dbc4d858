// One job run: limits set up once, then attempts with backoff, then the cgroup cleaned up.
#include "mlkeeper/sched/job_runner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <thread>

namespace mlk::sched {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr long kCgroup2Magic = 0x63677270;  // CGROUP2_SUPER_MAGIC
constexpr milliseconds kCancelPoll{50};
// A cgroup can only be removed once its last process has been reaped; killed stragglers take a
// moment. Bounded so that an unreaped zombie (a container's pid 1 that never reaps) cannot hold
// up the agent: the cgroup is then left behind with a warning.
constexpr int kRmdirTries = 40;
constexpr milliseconds kRmdirPause{25};

std::string errno_text(int err) {
    return std::generic_category().message(err);
}

// Returns 0 or an errno value.
int write_text(const std::filesystem::path& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    ssize_t n;
    do {
        n = ::write(fd, text.data(), text.size());
    } while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : (static_cast<std::size_t>(n) == text.size() ? 0 : EIO);
    ::close(fd);
    return err;
}

// The whole (small) file, or nullopt if it cannot be read.
std::optional<std::string> read_text(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::string text;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return text;
}

bool is_cgroup2(const std::filesystem::path& dir) {
    struct statfs fs {};
    return ::statfs(dir.c_str(), &fs) == 0 && static_cast<long>(fs.f_type) == kCgroup2Magic;
}

bool populated(const std::filesystem::path& cgroup) {
    auto procs = read_text(cgroup / "cgroup.procs");
    return procs && procs->find_first_not_of(" \n") != std::string::npos;
}

// Job names become a directory name; anything that could climb out of the parent is refused.
bool safe_cgroup_name(const std::string& name) {
    if (name.empty() || name == "." || name == "..") {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
}

// The job's own cgroup for one run. Removal kills what is left in it, as systemd does for a
// finished service (KillMode=control-group).
class JobCgroup {
  public:
    explicit JobCgroup(std::filesystem::path path) : path_(std::move(path)) {}
    JobCgroup(const JobCgroup&) = delete;
    JobCgroup& operator=(const JobCgroup&) = delete;
    ~JobCgroup() { remove(nullptr); }

    const std::filesystem::path& path() const { return path_; }

    // Ends processes a finished attempt left behind (daemonized grandchildren).
    void kill_stragglers() const {
        if (!populated(path_)) {
            return;
        }
        if (write_text(path_ / "cgroup.kill", "1") == 0) {
            return;
        }
        // Kernels before 5.14 have no cgroup.kill: signal the members one by one (the window
        // between reading a pid and signalling it is too short for it to be reused in practice).
        auto procs = read_text(path_ / "cgroup.procs");
        if (!procs) {
            return;
        }
        std::size_t pos = 0;
        while (pos < procs->size()) {
            std::size_t end = procs->find('\n', pos);
            if (end == std::string::npos) {
                end = procs->size();
            }
            try {
                pid_t pid = static_cast<pid_t>(std::stol(procs->substr(pos, end - pos)));
                if (pid > 1) {
                    ::kill(pid, SIGKILL);
                }
            } catch (const std::exception&) {
                // A malformed line: nothing to kill.
            }
            pos = end + 1;
        }
    }

    void remove(std::vector<std::string>* warnings) {
        if (path_.empty()) {
            return;
        }
        int err = 0;
        for (int i = 0; i < kRmdirTries; ++i) {
            if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) {
                path_.clear();
                return;
            }
            err = errno;
            if (err != EBUSY) {
                break;
            }
            if (i == 0) {
                kill_stragglers();
            }
            std::this_thread::sleep_for(kRmdirPause);
        }
        if (warnings != nullptr) {
            warnings->push_back("cannot remove cgroup " + path_.string() + ": " + errno_text(err));
        }
        path_.clear();
    }

  private:
    std::filesystem::path path_;
};

// Writes a limit file, enabling the controller in the parent first if the file is missing.
// Returns why it failed, or an empty string.
std::string write_limit(const std::filesystem::path& parent, const std::filesystem::path& cgroup,
                        const char* file, const char* controller, const std::string& value) {
    int err = write_text(cgroup / file, value);
    if (err == ENOENT) {
        const auto control = parent / "cgroup.subtree_control";
        if (int enable = write_text(control, std::string("+") + controller); enable != 0) {
            if (enable == ENOENT) {  // the kernel's answer for a controller the parent lacks
                return "the " + std::string(controller) + " controller is not available in " +
                       parent.string();
            }
            return "cannot enable the " + std::string(controller) + " controller in " +
                   control.string() + ": " + errno_text(enable);
        }
        err = write_text(cgroup / file, value);
    }
    if (err != 0) {
        return "cannot set " + (cgroup / file).string() + ": " + errno_text(err);
    }
    return {};
}

struct Limits {
    std::unique_ptr<JobCgroup> cgroup;
    std::optional<std::uint64_t> rlimit_as;
};

// Creates the job's cgroup when a parent is configured, and decides how the memory and CPU
// limits are enforced; every shortfall becomes a warning.
Limits prepare_limits(const JobSpec& job, const RunnerOptions& opts,
                      std::vector<std::string>& warnings) {
    Limits limits;
    // A plain int (0 = none): GCC's -O2 maybe-uninitialized misfires on an optional here.
    int cpu = job.cpu_quota_percent.value_or(0);
    if (job.cpu_quota_percent && cpu <= 0) {
        warnings.push_back("CPU quota of job " + job.name + " (" + std::to_string(cpu) +
                           "%) is ignored: it must be at least 1%");
        cpu = 0;
    }

    bool memory_done = false, cpu_done = false;
    std::string memory_why, cpu_why;  // why the cgroup could not take the limit
    std::string no_cgroup_why;
    const std::filesystem::path& parent = opts.cgroup_parent;
    if (parent.empty()) {
        memory_why = cpu_why = "no cgroup parent is configured";
    } else if (!is_cgroup2(parent)) {
        no_cgroup_why = parent.string() + " is not a cgroup v2 directory";
    } else if (!safe_cgroup_name(job.name)) {
        no_cgroup_why = "the job name cannot name a cgroup";
    } else {
        // A cgroup by that name in use (the same job started by `schedule run` while the agent
        // runs it) must not be shared: the cleanup would kill the other run.
        std::filesystem::path path = parent / ("mlkeeper-job-" + job.name);
        int err = ::mkdir(path.c_str(), 0755) == 0 ? 0 : errno;
        if (err == EEXIST && populated(path)) {
            path += "." + std::to_string(::getpid());
            err = ::mkdir(path.c_str(), 0755) == 0 ? 0 : errno;
        }
        if (err != 0 && err != EEXIST) {
            no_cgroup_why = "cannot create cgroup " + path.string() + ": " + errno_text(err);
        } else {
            limits.cgroup = std::make_unique<JobCgroup>(path);
            if (err == EEXIST) {
                // Left behind by an earlier run that could not remove it: drop its old limits.
                write_text(path / "memory.max", "max");
                write_text(path / "cpu.max", "max 100000");
            }
            if (job.memory_max) {
                memory_why = write_limit(parent, path, "memory.max", "memory",
                                         std::to_string(*job.memory_max));
                memory_done = memory_why.empty();
            }
            if (cpu > 0) {
                // CPUQuota= as systemd writes it: quota per 100 ms period, may exceed one CPU.
                cpu_why =
                    write_limit(parent, path, "cpu.max", "cpu",
                                std::to_string(static_cast<long long>(cpu) * 1000) + " 100000");
                cpu_done = cpu_why.empty();
            }
        }
    }
    if (!no_cgroup_why.empty()) {
        memory_why = cpu_why = no_cgroup_why;
        if (!job.memory_max && cpu <= 0) {
            warnings.push_back("job " + job.name +
                               " runs without its own cgroup: " + no_cgroup_why);
        }
    }

    if (job.memory_max && !memory_done) {
        limits.rlimit_as = job.memory_max;
        warnings.push_back("memory limit of job " + job.name +
                           " is enforced as an address-space limit (RLIMIT_AS), which also "
                           "counts memory that is reserved but never used: " +
                           memory_why);
    }
    if (cpu > 0 && !cpu_done) {
        warnings.push_back("CPU quota of job " + job.name + " (" + std::to_string(cpu) +
                           "%) is not enforced: " + cpu_why);
    }
    return limits;
}

util::IoPriorityClass io_class_of(IoClass c) {
    switch (c) {
        case IoClass::kRealtime:
            return util::IoPriorityClass::kRealtime;
        case IoClass::kBestEffort:
            return util::IoPriorityClass::kBestEffort;
        case IoClass::kIdle:
            return util::IoPriorityClass::kIdle;
        case IoClass::kNone:
            break;
    }
    return util::IoPriorityClass::kNone;
}

JobOutcome outcome_of(const util::RunResult& r) {
    switch (r.kind) {
        case util::ExitKind::kExited:
            return r.ok() ? JobOutcome::kSuccess : JobOutcome::kFailed;
        case util::ExitKind::kSignaled:
            return JobOutcome::kFailed;
        case util::ExitKind::kTimedOut:
            return JobOutcome::kTimedOut;
        case util::ExitKind::kCancelled:
            return JobOutcome::kCancelled;
        case util::ExitKind::kFailedToStart:
            break;
    }
    return JobOutcome::kFailedToStart;
}

bool cancel_requested(const RunnerOptions& opts) {
    return opts.cancel != nullptr && opts.cancel->load(std::memory_order_relaxed);
}

bool real_sleep(milliseconds d, const std::atomic<bool>* cancel) {
    const auto until = SteadyClock::now() + d;
    while (true) {
        if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
            return false;
        }
        auto now = SteadyClock::now();
        if (now >= until) {
            return true;
        }
        auto left = std::chrono::ceil<milliseconds>(until - now);
        std::this_thread::sleep_for(cancel != nullptr ? std::min(left, kCancelPoll) : left);
    }
}

// Keeps the last `cap` bytes of everything appended.
class Tail {
  public:
    explicit Tail(std::size_t cap) : cap_(cap) {}
    void append(const std::string& text) {
        text_ += text;
        if (text_.size() > cap_) {
            text_.erase(0, text_.size() - cap_);
            truncated_ = true;
        }
    }
    void note_truncated() { truncated_ = true; }
    std::string& text() { return text_; }
    bool truncated() const { return truncated_; }

  private:
    std::size_t cap_;
    std::string text_;
    bool truncated_ = false;
};

}  // namespace

const char* to_string(JobOutcome outcome) {
    switch (outcome) {
        case JobOutcome::kSuccess:
            return "success";
        case JobOutcome::kFailed:
            return "failed";
        case JobOutcome::kTimedOut:
            return "timed-out";
        case JobOutcome::kCancelled:
            return "cancelled";
        case JobOutcome::kFailedToStart:
            break;
    }
    return "failed-to-start";
}

milliseconds retry_delay_before(const JobSpec& job, int next_attempt, milliseconds cap) {
    milliseconds d = std::chrono::duration_cast<milliseconds>(job.retry_delay);
    if (d <= milliseconds::zero() || cap <= milliseconds::zero()) {
        return milliseconds::zero();
    }
    for (int i = 2; i < next_attempt && d < cap; ++i) {
        d = d > milliseconds::max() / 2 ? milliseconds::max() : d * 2;
    }
    return std::min(d, cap);
}

JobRun run_job(const JobSpec& job, const std::vector<std::string>& argv,
               const RunnerOptions& opts) {
    auto now = [&opts] { return opts.now ? opts.now() : std::chrono::system_clock::now(); };
    auto sleep = [&opts](milliseconds d) {
        return opts.sleep_for ? opts.sleep_for(d) : real_sleep(d, opts.cancel);
    };

    JobRun run;
    run.start = now();
    Limits limits = prepare_limits(job, opts, run.warnings);

    util::RunOptions ro;
    ro.timeout = std::chrono::duration_cast<milliseconds>(job.timeout);
    ro.kill_grace = opts.kill_grace;
    ro.output_cap = opts.output_tail;
    ro.keep = util::RunOptions::Keep::kTail;
    ro.stderr_mode = util::RunOptions::Stderr::kMergeIntoOut;
    ro.env_set = opts.env_set;
    ro.cwd = opts.cwd;
    ro.nice = job.nice;
    ro.io_class = io_class_of(job.io_class);
    ro.io_level = job.io_level;
    ro.rlimit_as = limits.rlimit_as;
    if (limits.cgroup) {
        ro.cgroup_dir = limits.cgroup->path();
    }
    ro.cancel = opts.cancel;
    ro.on_spawn = opts.on_spawn;

    const int max_attempts = 1 + std::max(0, job.retries);
    Tail tail(opts.output_tail);
    run.exit_kind = util::ExitKind::kCancelled;
    run.outcome = JobOutcome::kCancelled;
    for (int attempt = 1; attempt <= max_attempts; ++attempt) {
        if (cancel_requested(opts)) {
            run.outcome = JobOutcome::kCancelled;
            break;
        }
        if (attempt > 1) {
            tail.append("--- mlkeeper: attempt " + std::to_string(attempt) + " of " +
                        std::to_string(max_attempts) + " ---\n");
        }
        const util::RunResult r = util::run_process(argv, ro);
        run.attempts = attempt;
        run.outcome = outcome_of(r);
        run.exit_kind = r.kind;
        run.exit_code = r.exit_code;
        run.signal = r.signal;
        run.error = r.error;
        if (r.out_truncated) {
            tail.note_truncated();
        }
        tail.append(r.out);
        if (limits.cgroup) {
            limits.cgroup->kill_stragglers();
        }

        AttemptReport report;
        report.attempt = attempt;
        report.max_attempts = max_attempts;
        report.outcome = run.outcome;
        report.exit_kind = r.kind;
        report.exit_code = r.exit_code;
        report.signal = r.signal;
        report.elapsed = r.elapsed;
        report.error = r.error;
        const bool retry = attempt < max_attempts && (run.outcome == JobOutcome::kFailed ||
                                                      run.outcome == JobOutcome::kTimedOut);
        milliseconds delay{0};
        if (retry) {
            delay = retry_delay_before(job, attempt + 1, opts.max_retry_delay);
            report.retry_in = delay;
        }
        if (opts.on_attempt) {
            opts.on_attempt(report);
        }
        if (!retry) {
            break;
        }
        if (delay > milliseconds::zero() ? !sleep(delay) : cancel_requested(opts)) {
            run.outcome = JobOutcome::kCancelled;
            break;
        }
    }
    run.cancelled = run.outcome == JobOutcome::kCancelled;
    run.timed_out = run.exit_kind == util::ExitKind::kTimedOut;
    run.output_tail = std::move(tail.text());
    run.output_truncated = tail.truncated();
    if (limits.cgroup) {
        limits.cgroup->remove(&run.warnings);
    }
    run.end = now();
    return run;
}

}  // namespace mlk::sched
