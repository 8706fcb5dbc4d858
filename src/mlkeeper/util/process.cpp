// fork/exec child runner. Everything the child needs (paths, argv, envp) is prepared before fork,
// so the child only makes async-signal-safe calls: the parent may have other threads.
#include "mlkeeper/util/process.hpp"

#include "mlkeeper/util/unique_fd.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

extern char** environ;

namespace mlk::util {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long output is still read after the direct child exited while background grandchildren
// keep the pipes open; bounded so a daemonizing command cannot make us wait for it.
constexpr milliseconds kDrainAfterExit{1000};
// How long we wait for a SIGKILLed leader to be reapable (uninterruptible sleep, e.g. a hung NFS
// mount, can delay it) before handing the reap to a background thread.
constexpr milliseconds kReapBound{5000};
// Poll interval for child exit where pidfd_open is not available (kernels before 5.3).
constexpr milliseconds kTick{10};
// How often RunOptions::cancel is looked at while waiting: fast enough for an operator, cheap
// enough (20 wake-ups a second) for a daemon that waits on long jobs.
constexpr milliseconds kCancelPoll{50};
constexpr std::size_t kChunk = 64 * 1024;

std::string errno_text(int err) {
    return std::generic_category().message(err);
}

struct Pipe {
    UniqueFd read, write;
};

// Returns 0 or an errno value.
int make_pipe(Pipe& p) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        return errno;
    }
    p.read.reset(fds[0]);
    p.write.reset(fds[1]);
    return 0;
}

int set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return errno;
    }
    return 0;
}

UniqueFd open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
    // pidfds are always close-on-exec.
    return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#else
    (void)pid;
    return UniqueFd();
#endif
}

// The outcome of a failed start: errno plus what we were doing.
struct StartError {
    int err = 0;
    std::string what;

    std::string text() const { return what + ": " + errno_text(err); }
};

// Where the child's fd 0, 1 and 2 come from; -1 leaves the parent's.
struct ChildStdio {
    int in = -1, out = -1, err = -1;
};

// Stages a child can fail at, sent back over the error pipe.
enum class ChildStage : int {
    kSetpgid,
    kCgroup,
    kStdio,
    kNice,
    kIoPriority,
    kRlimit,
    kChdir,
    kExec
};
struct ChildFailure {
    ChildStage stage;
    int err;
};

struct ExecPlan {
    std::string exe;
    std::vector<std::string> env;
    std::vector<char*> argv_ptrs;
    std::vector<char*> env_ptrs;
    std::string cgroup_procs;  // empty: stay in our cgroup
    std::optional<int> nice;
    std::optional<int> ioprio;  // the kernel's packed class/level value
    std::optional<rlimit> as_limit;
};

// From linux/ioprio.h, spelled out so that older kernel headers do not matter.
constexpr int kIoprioClassShift = 13;
constexpr int kIoprioWhoProcess = 1;

bool has_nul(std::string_view s) {
    return s.find('\0') != std::string_view::npos;
}

std::vector<std::string> build_env(const RunOptions& opts) {
    auto overridden = [&](std::string_view name) {
        return std::any_of(opts.env_set.begin(), opts.env_set.end(),
                           [&](const auto& kv) { return kv.first == name; });
    };
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string_view entry(*e);
        if (!overridden(entry.substr(0, entry.find('=')))) {
            env.emplace_back(entry);
        }
    }
    // A name given twice in env_set: the last one wins.
    for (std::size_t i = 0; i < opts.env_set.size(); ++i) {
        const auto& entry = opts.env_set[i];
        bool later = std::any_of(opts.env_set.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                                 opts.env_set.end(),
                                 [&](const auto& kv) { return kv.first == entry.first; });
        if (!later) {
            env.push_back(entry.first + "=" + entry.second);
        }
    }
    return env;
}

// The PATH the child will see is the one searched.
std::string effective_path(const RunOptions& opts) {
    for (auto it = opts.env_set.rbegin(); it != opts.env_set.rend(); ++it) {
        if (it->first == "PATH") {
            return it->second;
        }
    }
    const char* p = ::getenv("PATH");
    return p != nullptr ? p : "/bin:/usr/bin";  // glibc's execvp default
}

// Resolves a bare program name like execvp does, but in the parent, so that "not found" is a
// clear error without a fork. A name with a '/' is left for execve (relative to opts.cwd).
bool resolve_program(const std::string& name, const RunOptions& opts, std::string& exe,
                     StartError& failure) {
    if (name.find('/') != std::string::npos) {
        exe = name;
        return true;
    }
    std::string path = effective_path(opts);
    std::string not_executable;
    std::size_t begin = 0;
    while (begin <= path.size()) {
        std::size_t end = path.find(':', begin);
        if (end == std::string::npos) {
            end = path.size();
        }
        std::string dir = path.substr(begin, end - begin);
        begin = end + 1;
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        if (::access(candidate.c_str(), X_OK) == 0) {
            exe = std::move(candidate);
            return true;
        }
        if (not_executable.empty()) {
            not_executable = std::move(candidate);
        }
    }
    if (!not_executable.empty()) {
        failure = {EACCES, "cannot execute " + not_executable};
    } else {
        failure = {ENOENT, "program not found in PATH: " + name};
    }
    return false;
}

bool prepare(const std::vector<std::string>& argv, const RunOptions& opts, ExecPlan& plan,
             StartError& failure) {
    if (argv.empty()) {
        failure = {EINVAL, "cannot start a process: empty argv"};
        return false;
    }
    for (const auto& a : argv) {
        if (has_nul(a)) {
            failure = {EINVAL, "cannot start " + argv[0] + ": argument contains a NUL byte"};
            return false;
        }
    }
    for (const auto& [name, value] : opts.env_set) {
        if (name.empty() || name.find('=') != std::string::npos || has_nul(name) ||
            has_nul(value)) {
            failure = {EINVAL, "cannot start " + argv[0] + ": bad environment variable '" +
                                   name.substr(0, name.find('\0')) + "'"};
            return false;
        }
    }
    if (has_nul(opts.cwd.native())) {
        failure = {EINVAL, "cannot start " + argv[0] + ": working directory contains a NUL"};
        return false;
    }
    if (opts.nice < -20 || opts.nice > 19) {
        failure = {EINVAL, "cannot start " + argv[0] + ": nice " + std::to_string(opts.nice) +
                               " is outside -20..19"};
        return false;
    }
    if (opts.io_class == IoPriorityClass::kRealtime ||
        opts.io_class == IoPriorityClass::kBestEffort) {
        if (opts.io_level < 0 || opts.io_level > 7) {
            failure = {EINVAL, "cannot start " + argv[0] + ": I/O priority level " +
                                   std::to_string(opts.io_level) + " is outside 0..7"};
            return false;
        }
    } else if (opts.io_class != IoPriorityClass::kNone && opts.io_class != IoPriorityClass::kIdle) {
        failure = {EINVAL, "cannot start " + argv[0] + ": unknown I/O priority class"};
        return false;
    }
    if (has_nul(opts.cgroup_dir.native())) {
        failure = {EINVAL, "cannot start " + argv[0] + ": cgroup path contains a NUL"};
        return false;
    }
    if (!resolve_program(argv[0], opts, plan.exe, failure)) {
        return false;
    }
    if (!opts.cgroup_dir.empty()) {
        plan.cgroup_procs = (opts.cgroup_dir / "cgroup.procs").string();
    }
    if (opts.nice != 0) {
        plan.nice = opts.nice;
    }
    if (opts.io_class != IoPriorityClass::kNone) {
        const int level = opts.io_class == IoPriorityClass::kIdle ? 0 : opts.io_level;
        plan.ioprio = (static_cast<int>(opts.io_class) << kIoprioClassShift) | level;
    }
    if (opts.rlimit_as) {
        // Never ask for more than the hard limit: only privileged processes may raise it.
        rlimit current{};
        if (::getrlimit(RLIMIT_AS, &current) != 0) {
            failure = {errno, "cannot read the address-space limit to start " + argv[0]};
            return false;
        }
        rlim_t want = *opts.rlimit_as >= static_cast<std::uint64_t>(RLIM_INFINITY)
                          ? RLIM_INFINITY
                          : static_cast<rlim_t>(*opts.rlimit_as);
        if (current.rlim_max != RLIM_INFINITY && want > current.rlim_max) {
            want = current.rlim_max;
        }
        plan.as_limit = rlimit{want, want};
    }
    plan.env = build_env(opts);
    for (const auto& a : argv) {
        plan.argv_ptrs.push_back(const_cast<char*>(a.c_str()));
    }
    plan.argv_ptrs.push_back(nullptr);
    for (auto& e : plan.env) {
        plan.env_ptrs.push_back(e.data());
    }
    plan.env_ptrs.push_back(nullptr);
    return true;
}

[[noreturn]] void child_fail(int err_fd, ChildStage stage) {
    ChildFailure f{stage, errno};
    // Nothing useful to do if this write fails; the parent then sees a plain exit 127.
    [[maybe_unused]] ssize_t n = ::write(err_fd, &f, sizeof f);
    ::_exit(127);
}

// Writes our pid to an existing cgroup.procs; async-signal-safe. Returns false with errno set.
bool join_cgroup(const char* procs_path) {
    int fd = ::open(procs_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    char buf[24];
    char* end = buf + sizeof buf;
    char* p = end;
    for (auto v = static_cast<unsigned long>(::getpid()); p == end || v != 0; v /= 10) {
        *--p = static_cast<char>('0' + v % 10);
    }
    const auto len = static_cast<std::size_t>(end - p);
    ssize_t n;
    do {
        n = ::write(fd, p, len);
    } while (n < 0 && errno == EINTR);
    int saved = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(len)) {
        errno = n < 0 ? saved : EIO;
        return false;
    }
    return true;
}

// Runs in the forked child: only async-signal-safe calls from here on.
[[noreturn]] void child_exec(const ExecPlan& plan, const ChildStdio& io, const char* cwd,
                             int err_fd) {
    if (err_fd < 3) {
        // Parent ran with closed stdio: keep the report pipe clear of the dup2 targets below.
        err_fd = ::fcntl(err_fd, F_DUPFD_CLOEXEC, 3);
        if (err_fd < 0) {
            ::_exit(127);
        }
    }
    if (::setpgid(0, 0) != 0) {
        child_fail(err_fd, ChildStage::kSetpgid);
    }
    // Before anything else runs, so the limits cover all of the program's life.
    if (!plan.cgroup_procs.empty() && !join_cgroup(plan.cgroup_procs.c_str())) {
        child_fail(err_fd, ChildStage::kCgroup);
    }
    // Ignored signals stay ignored across exec and our handlers must not run here; give the
    // program the default dispositions (SIGPIPE included), then an empty mask below.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            ::sigaction(sig, &dfl, nullptr);  // fails harmlessly for glibc's internal signals
        }
    }
    // Move the sources above 2 first so that one of them sitting on 0..2 (the parent had closed
    // its stdio) is not clobbered, and so that dup2 always clears close-on-exec.
    const std::array<int, 3> sources{io.in, io.out, io.err};
    std::array<int, 3> high{-1, -1, -1};
    for (std::size_t i = 0; i < sources.size(); ++i) {
        if (sources[i] >= 0 && (high[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, 3)) < 0) {
            child_fail(err_fd, ChildStage::kStdio);
        }
    }
    for (int i = 0; i < 3; ++i) {
        if (high[static_cast<std::size_t>(i)] >= 0 &&
            ::dup2(high[static_cast<std::size_t>(i)], i) < 0) {
            child_fail(err_fd, ChildStage::kStdio);
        }
    }
#ifdef SYS_close_range
    // Descriptors some library opened without O_CLOEXEC must not leak into the program.
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);  // best effort (kernel >= 5.11)
#endif
    if (plan.nice && ::setpriority(PRIO_PROCESS, 0, *plan.nice) != 0) {
        child_fail(err_fd, ChildStage::kNice);
    }
    if (plan.ioprio && ::syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, *plan.ioprio) != 0) {
        child_fail(err_fd, ChildStage::kIoPriority);
    }
    if (plan.as_limit && ::setrlimit(RLIMIT_AS, &*plan.as_limit) != 0) {
        child_fail(err_fd, ChildStage::kRlimit);
    }
    if (cwd != nullptr && ::chdir(cwd) != 0) {
        child_fail(err_fd, ChildStage::kChdir);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(plan.exe.c_str(), plan.argv_ptrs.data(), plan.env_ptrs.data());
    child_fail(err_fd, ChildStage::kExec);
}

// Starts the child in its own process group. Returns its pid, or -1 with `failure` filled.
pid_t spawn(const std::vector<std::string>& argv, const RunOptions& opts, const ChildStdio& io,
            StartError& failure) {
    ExecPlan plan;
    if (!prepare(argv, opts, plan, failure)) {
        return -1;
    }
    Pipe report;
    if (int e = make_pipe(report); e != 0) {
        failure = {e, "cannot create a pipe to start " + argv[0]};
        return -1;
    }
    const char* cwd = opts.cwd.empty() ? nullptr : opts.cwd.c_str();

    // Block every signal across fork so no handler of ours runs in the child before it resets
    // the dispositions.
    sigset_t all, saved;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = ::fork();
    if (pid == 0) {
        child_exec(plan, io, cwd, report.write.get());
    }
    int fork_err = errno;
    ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    if (pid < 0) {
        failure = {fork_err, "cannot fork to start " + argv[0]};
        return -1;
    }
    // Also set the group here: whichever of parent and child runs first, the group exists
    // before we could signal it. EACCES after the child's exec is expected.
    ::setpgid(pid, pid);
    report.write.reset();

    ChildFailure f{};
    ssize_t n;
    do {
        n = ::read(report.read.get(), &f, sizeof f);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        return pid;  // exec succeeded and closed the CLOEXEC pipe
    }
    if (n != static_cast<ssize_t>(sizeof f)) {
        ::kill(pid, SIGKILL);  // state unknown: do not wait on a program that might be running
    }
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (n != static_cast<ssize_t>(sizeof f)) {
        failure = {EIO, "cannot start " + argv[0] + ": lost the child's start report"};
        return -1;
    }
    failure.err = f.err;
    switch (f.stage) {
        case ChildStage::kSetpgid:
            failure.what = "cannot create a process group for " + argv[0];
            break;
        case ChildStage::kCgroup:
            failure.what = "cannot move " + argv[0] + " into cgroup " + opts.cgroup_dir.string() +
                           " (writing " + plan.cgroup_procs + ")";
            break;
        case ChildStage::kStdio:
            failure.what = "cannot set up stdin/stdout/stderr for " + argv[0];
            break;
        case ChildStage::kNice:
            failure.what = "cannot set nice " + std::to_string(opts.nice) + " for " + argv[0];
            break;
        case ChildStage::kIoPriority:
            failure.what = "cannot set the I/O priority (class " +
                           std::to_string(static_cast<int>(opts.io_class)) + ", level " +
                           std::to_string(opts.io_level) + ") for " + argv[0];
            break;
        case ChildStage::kRlimit:
            failure.what = "cannot set the address-space limit (" +
                           std::to_string(opts.rlimit_as.value_or(0)) + " bytes) for " + argv[0];
            break;
        case ChildStage::kChdir:
            failure.what = "cannot change directory to " + opts.cwd.string() + " for " + argv[0];
            break;
        case ChildStage::kExec:
            failure.what = "cannot execute " + plan.exe;
            break;
    }
    return -1;
}

int raw_status(const siginfo_t& info) {
    switch (info.si_code) {
        case CLD_EXITED:
            return (info.si_status & 0xff) << 8;
        case CLD_DUMPED:
            return (info.si_status & 0x7f) | 0x80;
        default:
            return info.si_status & 0x7f;  // CLD_KILLED
    }
}

enum class Peek { kRunning, kExited, kLost };

// Observes the child's exit without reaping it: while it is an unreaped zombie its pid, and
// so its process group id, cannot be reused, so signalling the group stays safe.
Peek peek_exit(pid_t pid, int& status) {
    siginfo_t info{};
    while (true) {
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
            if (info.si_pid != pid) {
                return Peek::kRunning;
            }
            status = raw_status(info);
            return Peek::kExited;
        }
        if (errno != EINTR) {
            return Peek::kLost;  // ECHILD: SIGCHLD ignored (auto-reaped) or reaped elsewhere
        }
    }
}

// Waits until `pid` has exited (not reaped) or `until`; true if it has, or if it is gone.
bool wait_exit_until(pid_t pid, int pidfd, Clock::time_point until, int& status, Peek& peek) {
    while (true) {
        peek = peek_exit(pid, status);
        if (peek != Peek::kRunning) {
            return true;
        }
        auto now = Clock::now();
        if (now >= until) {
            return false;
        }
        auto left = std::chrono::ceil<milliseconds>(until - now);
        if (pidfd >= 0) {
            pollfd p{pidfd, POLLIN, 0};
            ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), INT_MAX)));
        } else {
            std::this_thread::sleep_for(std::min(left, kTick));
        }
    }
}

// Last resort for a child that outlives SIGKILL (uninterruptible sleep): reap it whenever it
// finally dies instead of blocking the caller or leaving a zombie.
void reap_in_background(pid_t pid) {
    try {
        std::thread([pid] {
            int status;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }).detach();
    } catch (const std::system_error&) {
        // No thread to spare: the zombie stays until we exit, which beats blocking forever.
    }
}

int reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

// Keeps a SIGPIPE from a child that closed its stdin early from killing us, without changing
// the process-wide disposition: block it in this thread, and consume the one our write raised.
class SigpipeGuard {
  public:
    SigpipeGuard() {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        ::sigpending(&pending);
        was_pending_ = sigismember(&pending, SIGPIPE) == 1;
        ::pthread_sigmask(SIG_BLOCK, &pipe_, &saved_);
    }
    SigpipeGuard(const SigpipeGuard&) = delete;
    SigpipeGuard& operator=(const SigpipeGuard&) = delete;
    ~SigpipeGuard() {
        if (raised_ && !was_pending_) {
            timespec zero{};
            while (::sigtimedwait(&pipe_, nullptr, &zero) > 0) {
            }
        }
        ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
    }
    void note_epipe() { raised_ = true; }

  private:
    sigset_t pipe_{}, saved_{};
    bool was_pending_ = false;
    bool raised_ = false;
};

struct Capture {
    UniqueFd fd;
    std::string* data;
    bool* truncated;
    std::size_t cap;
    RunOptions::Keep keep;

    // Reads once; closes the fd on EOF or error. True if bytes came.
    bool read_some() {
        std::array<char, kChunk> buf;
        ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n > 0) {
            std::size_t got = static_cast<std::size_t>(n);
            if (keep == RunOptions::Keep::kTail) {
                keep_tail(buf.data(), got);
                return true;
            }
            std::size_t room = cap > data->size() ? cap - data->size() : 0;
            data->append(buf.data(), std::min(got, room));
            if (got > room) {
                *truncated = true;
            }
            return true;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            fd.reset();
        }
        return false;
    }

    // Lets the buffer run up to about twice the cap before dropping the front, so that a chatty
    // child costs amortized O(1) per byte instead of a memmove of the whole tail per read.
    void keep_tail(const char* bytes, std::size_t got) {
        if (got > cap) {
            bytes += got - cap;
            *truncated = true;
            data->clear();
            got = cap;
        }
        data->append(bytes, got);
        if (data->size() > cap + std::max(cap, kChunk)) {
            trim();
        }
    }

    // Leaves at most `cap` bytes (the tail in kTail mode).
    void trim() {
        if (keep == RunOptions::Keep::kTail && data->size() > cap) {
            data->erase(0, data->size() - cap);
            *truncated = true;
        }
    }
};

RunResult classify(int status, bool timed_out) {
    RunResult r;
    if (WIFEXITED(status)) {
        r.kind = ExitKind::kExited;
        r.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r.kind = ExitKind::kSignaled;
        r.signal = WTERMSIG(status);
    }
    if (timed_out) {
        r.kind = ExitKind::kTimedOut;
    }
    return r;
}

}  // namespace

RunResult run_process(const std::vector<std::string>& argv, const RunOptions& opts) {
    const auto start = Clock::now();
    RunResult result;
    auto failed = [&](const std::string& error) {
        result.kind = ExitKind::kFailedToStart;
        result.error = error;
        result.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
        return result;
    };
    const std::string name = argv.empty() ? std::string("a process") : argv[0];

    auto cancel_requested = [&opts] {
        return opts.cancel != nullptr && opts.cancel->load(std::memory_order_relaxed);
    };
    if (cancel_requested()) {
        result.kind = ExitKind::kCancelled;
        result.error = name + " was not started: cancelled";
        return result;
    }
    const bool merge = opts.stderr_mode == RunOptions::Stderr::kMergeIntoOut;

    Pipe out, err, in;
    if (int e = make_pipe(out); e != 0) {
        return failed("cannot create a pipe for " + name + ": " + errno_text(e));
    }
    if (int e = merge ? 0 : make_pipe(err); e != 0) {
        return failed("cannot create a pipe for " + name + ": " + errno_text(e));
    }
    if (opts.stdin_data) {
        if (int e = make_pipe(in); e != 0) {
            return failed("cannot create a pipe for " + name + ": " + errno_text(e));
        }
    } else {
        in.read.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!in.read) {
            return failed("cannot open /dev/null for " + name + ": " + errno_text(errno));
        }
    }
    for (int fd : {out.read.get(), err.read.get(), in.write.get()}) {
        if (fd >= 0) {
            if (int e = set_nonblocking(fd); e != 0) {
                return failed("cannot set up pipes for " + name + ": " + errno_text(e));
            }
        }
    }

    StartError start_error;
    const pid_t pid = spawn(
        argv, opts, {in.read.get(), out.write.get(), merge ? out.write.get() : err.write.get()},
        start_error);
    in.read.reset();
    out.write.reset();
    err.write.reset();
    if (pid < 0) {
        return failed(start_error.text());
    }
    if (opts.on_spawn) {
        opts.on_spawn(pid);
    }

    UniqueFd pidfd = open_pidfd(pid);
    Capture cap_out{std::move(out.read), &result.out, &result.out_truncated, opts.output_cap,
                    opts.keep};
    Capture cap_err{std::move(err.read), &result.err, &result.err_truncated, opts.output_cap,
                    opts.keep};
    UniqueFd stdin_fd = std::move(in.write);
    std::string_view pending_in = opts.stdin_data ? std::string_view(*opts.stdin_data) : "";
    if (pending_in.empty()) {
        stdin_fd.reset();
    }
    std::optional<SigpipeGuard> sigpipe_guard;
    if (stdin_fd) {
        sigpipe_guard.emplace();
    }

    enum class Phase { kRunning, kTerminating };
    Phase phase = Phase::kRunning;
    const std::optional<Clock::time_point> deadline =
        opts.timeout.count() > 0 ? std::optional(start + opts.timeout) : std::nullopt;
    Clock::time_point kill_at{};
    Clock::time_point exited_at{};
    bool exited = false;  // leader exit observed (still unreaped unless `lost`)
    bool lost = false;
    bool timed_out = false;
    bool cancelled = false;
    int status = 0;

    while (true) {
        auto now = Clock::now();
        if (!exited) {
            Peek p = peek_exit(pid, status);
            if (p != Peek::kRunning) {
                exited = true;
                lost = p == Peek::kLost;
                exited_at = now;
            }
        }
        if (exited) {
            stdin_fd.reset();  // nobody left to read it
        }
        const bool pipes_open = cap_out.fd || cap_err.fd;
        if (phase == Phase::kRunning) {
            if (exited) {
                // The command is done; a cancel only cuts short reading what grandchildren write.
                if (!pipes_open || now >= exited_at + kDrainAfterExit ||
                    (deadline && now >= *deadline) || cancel_requested()) {
                    break;
                }
            } else if (deadline && now >= *deadline) {
                ::kill(-pid, SIGTERM);
                timed_out = true;
                phase = Phase::kTerminating;
                kill_at = now + opts.kill_grace;
            } else if (cancel_requested()) {
                ::kill(-pid, SIGTERM);
                cancelled = true;
                phase = Phase::kTerminating;
                kill_at = now + opts.kill_grace;
            }
        }
        if (phase == Phase::kTerminating && ((exited && !pipes_open) || now >= kill_at)) {
            // The leader is at worst an unreaped zombie, so -pid is still our group: this
            // finishes off members that ignored SIGTERM or are still running without it.
            if (!lost) {
                ::kill(-pid, SIGKILL);
            }
            break;
        }

        std::optional<Clock::time_point> wake;
        if (phase == Phase::kTerminating) {
            wake = kill_at;
        } else if (exited) {
            wake = exited_at + kDrainAfterExit;
        }
        if (phase == Phase::kRunning && deadline && (!wake || *deadline < *wake)) {
            wake = deadline;
        }
        int wait_ms = -1;
        if (wake) {
            auto left = std::chrono::ceil<milliseconds>(*wake - now).count();
            wait_ms = static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
        }
        std::array<pollfd, 4> fds{};
        nfds_t nfds = 0;
        int out_i = -1, err_i = -1, in_i = -1;
        if (cap_out.fd) {
            out_i = static_cast<int>(nfds);
            fds[nfds++] = {cap_out.fd.get(), POLLIN, 0};
        }
        if (cap_err.fd) {
            err_i = static_cast<int>(nfds);
            fds[nfds++] = {cap_err.fd.get(), POLLIN, 0};
        }
        if (stdin_fd) {
            in_i = static_cast<int>(nfds);
            fds[nfds++] = {stdin_fd.get(), POLLOUT, 0};
        }
        if (!exited) {
            if (pidfd) {
                fds[nfds++] = {pidfd.get(), POLLIN, 0};
            } else if (wait_ms < 0 || wait_ms > kTick.count()) {
                wait_ms = static_cast<int>(kTick.count());
            }
        }
        if (opts.cancel != nullptr && phase == Phase::kRunning &&
            (wait_ms < 0 || wait_ms > kCancelPoll.count())) {
            wait_ms = static_cast<int>(kCancelPoll.count());
        }
        int ready = ::poll(fds.data(), nfds, wait_ms);
        if (ready <= 0) {
            continue;  // timeout or EINTR: the checks above decide
        }
        if (out_i >= 0 && fds[static_cast<std::size_t>(out_i)].revents != 0) {
            cap_out.read_some();
        }
        if (err_i >= 0 && fds[static_cast<std::size_t>(err_i)].revents != 0) {
            cap_err.read_some();
        }
        if (in_i >= 0) {
            short rev = fds[static_cast<std::size_t>(in_i)].revents;
            // On POLLERR (the child closed its stdin) the write fails with EPIPE: one path for
            // that and for the reader going away between poll and write.
            if (rev != 0) {
                ssize_t n =
                    ::write(stdin_fd.get(), pending_in.data(), std::min(pending_in.size(), kChunk));
                if (n > 0) {
                    pending_in.remove_prefix(static_cast<std::size_t>(n));
                    if (pending_in.empty()) {
                        stdin_fd.reset();  // EOF for the child
                    }
                } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                    if (errno == EPIPE) {
                        sigpipe_guard->note_epipe();
                    }
                    stdin_fd.reset();
                }
            }
        }
    }

    // Take what is already buffered, without waiting on writers outside the group.
    for (Capture* c : {&cap_out, &cap_err}) {
        // Bounded: a writer outside the group could keep the pipe busy forever.
        for (int i = 0; i < 64 && c->fd && c->read_some(); ++i) {
        }
        c->fd.reset();
        c->trim();
    }
    // Why the group was torn down, when it was; otherwise what the child did.
    auto stopped_kind = [&](ExitKind natural) {
        return cancelled ? ExitKind::kCancelled : timed_out ? ExitKind::kTimedOut : natural;
    };
    stdin_fd.reset();

    if (lost) {
        result.kind = stopped_kind(ExitKind::kExited);
        result.error = "exit status of " + name + " is unavailable (is SIGCHLD ignored?)";
    } else {
        Peek peek = Peek::kExited;
        if (!exited &&
            !wait_exit_until(pid, pidfd.get(), Clock::now() + kReapBound, status, peek)) {
            reap_in_background(pid);
            result.kind = stopped_kind(ExitKind::kTimedOut);
            result.signal = SIGKILL;
            result.error = name + " did not exit after SIGKILL; reaping it in the background";
            result.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
            return result;
        }
        if (peek == Peek::kLost) {
            result.kind = stopped_kind(ExitKind::kExited);
            result.error = "exit status of " + name + " is unavailable (is SIGCHLD ignored?)";
        } else {
            RunResult decided = classify(reap(pid), timed_out);
            result.kind = cancelled ? ExitKind::kCancelled : decided.kind;
            result.exit_code = decided.exit_code;
            result.signal = decided.signal;
        }
    }
    result.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    return result;
}

// ---- Subprocess ----

Subprocess Subprocess::start(const std::vector<std::string>& argv, const RunOptions& opts,
                             Output output, const std::filesystem::path& log_file) {
    if (output == Output::kToFile && log_file.empty()) {
        throw std::invalid_argument("Subprocess::start: Output::kToFile needs a log file path");
    }
    UniqueFd sink;
    const std::string name = argv.empty() ? std::string("a process") : argv[0];
    if (output == Output::kDiscard) {
        sink.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
        if (!sink) {
            throw std::system_error(errno, std::generic_category(),
                                    "cannot open /dev/null for " + name);
        }
    } else if (output == Output::kToFile) {
        sink.reset(::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        if (!sink) {
            throw std::system_error(errno, std::generic_category(),
                                    "cannot open log file " + log_file.string());
        }
    }
    return start_writing_to(argv, opts, sink.get());
}

Subprocess Subprocess::start_writing_to(const std::vector<std::string>& argv,
                                        const RunOptions& opts, int out_fd) {
    const std::string name = argv.empty() ? std::string("a process") : argv[0];

    UniqueFd stdin_read;
    if (opts.stdin_data) {
        Pipe in;
        if (int e = make_pipe(in); e != 0) {
            throw std::system_error(e, std::generic_category(), "cannot create a pipe for " + name);
        }
        // The whole input goes into the pipe before the child starts, so nothing has to feed
        // it later; grow the pipe if needed (up to /proc/sys/fs/pipe-max-size).
        const std::string& data = *opts.stdin_data;
        if (data.size() > kChunk) {
            ::fcntl(in.write.get(), F_SETPIPE_SZ,
                    static_cast<int>(std::min<std::size_t>(data.size(), INT_MAX)));
        }
        if (int e = set_nonblocking(in.write.get()); e != 0) {
            throw std::system_error(e, std::generic_category(), "cannot set up stdin for " + name);
        }
        std::size_t done = 0;
        while (done < data.size()) {
            ssize_t n = ::write(in.write.get(), data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                throw std::invalid_argument("Subprocess::start: stdin_data for " + name + " (" +
                                            std::to_string(data.size()) +
                                            " bytes) does not fit in a pipe");
            }
            done += static_cast<std::size_t>(n);
        }
        stdin_read = std::move(in.read);
    } else {
        stdin_read.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!stdin_read) {
            throw std::system_error(errno, std::generic_category(),
                                    "cannot open /dev/null for " + name);
        }
    }

    StartError failure;
    pid_t pid = spawn(argv, opts, {stdin_read.get(), out_fd, out_fd}, failure);
    if (pid < 0) {
        throw std::system_error(failure.err, std::generic_category(), failure.what);
    }
    return Subprocess(pid, open_pidfd(pid).release(), opts.kill_grace);
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      kill_grace_(other.kill_grace_),
      status_(std::exchange(other.status_, std::nullopt)),
      reaped_(std::exchange(other.reaped_, false)) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
    if (this != &other) {
        terminate(kill_grace_);
        release_fds();
        pid_ = std::exchange(other.pid_, -1);
        pidfd_ = std::exchange(other.pidfd_, -1);
        kill_grace_ = other.kill_grace_;
        status_ = std::exchange(other.status_, std::nullopt);
        reaped_ = std::exchange(other.reaped_, false);
    }
    return *this;
}

Subprocess::~Subprocess() {
    terminate(kill_grace_);
    release_fds();
}

void Subprocess::release_fds() noexcept {
    if (pidfd_ >= 0) {
        ::close(pidfd_);
        pidfd_ = -1;
    }
}

std::optional<int> Subprocess::try_wait() {
    if (pid_ <= 0 || status_) {
        return status_;
    }
    int status = 0;
    switch (peek_exit(pid_, status)) {
        case Peek::kRunning:
            return std::nullopt;
        case Peek::kExited:
            status_ = status;
            break;
        case Peek::kLost:
            reaped_ = true;        // nothing left for us to reap
            status_ = (255 << 8);  // unknown: report like a failed exit
            break;
    }
    return status_;
}

std::optional<int> Subprocess::wait_for(std::chrono::milliseconds limit) {
    if (pid_ <= 0 || status_) {
        return status_;
    }
    int status = 0;
    Peek peek = Peek::kRunning;
    if (wait_exit_until(pid_, pidfd_, Clock::now() + limit, status, peek)) {
        return try_wait();
    }
    return std::nullopt;
}

void Subprocess::terminate(std::chrono::milliseconds grace) {
    if (pid_ <= 0 || reaped_) {
        return;
    }
    if (!try_wait()) {
        ::kill(-pid_, SIGTERM);
        wait_for(grace);
    }
    if (reaped_) {
        return;  // status lost: the pid may already be someone else's
    }
    // The leader is unreaped, so -pid_ is still our group; this also ends grandchildren that
    // outlived it or ignored SIGTERM.
    ::kill(-pid_, SIGKILL);
    if (!wait_for(kReapBound)) {
        reap_in_background(pid_);
        reaped_ = true;
        return;
    }
    if (!reaped_) {
        status_ = reap(pid_);
        reaped_ = true;
    }
    release_fds();
}

}  // namespace mlk::util
