// Runs child processes without a shell: run_process() for bounded commands with captured output,
// Subprocess for long-lived children owned by an RAII handle. Either can start the child with a
// niceness, an I/O priority, an address-space limit and in a given cgroup. Linux only.
// run_process() may be called from several threads at once; one Subprocess must be used by one
// thread at a time.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mlk::util {

// I/O scheduling classes (ionice -c); the values are the kernel's IOPRIO_CLASS_* numbers.
enum class IoPriorityClass { kNone = 0, kRealtime = 1, kBestEffort = 2, kIdle = 3 };

struct RunOptions {
    std::chrono::milliseconds timeout{0};  // 0 = no limit
    // After a timeout the whole process group gets SIGTERM, then SIGKILL after this grace.
    std::chrono::milliseconds kill_grace{2000};
    std::size_t output_cap = 1 << 20;       // bytes kept per stream; the rest is read and dropped
    std::optional<std::string> stdin_data;  // written to stdin, then closed; nullopt: /dev/null
    // Added or overriding variables on top of the parent environment. A PATH set here is also
    // the one used to look up argv[0].
    std::vector<std::pair<std::string, std::string>> env_set;
    std::filesystem::path cwd;  // empty = inherit

    // Which end of an over-long output is kept: a job's last lines usually say why it failed.
    enum class Keep { kHead, kTail };
    Keep keep = Keep::kHead;
    // kMergeIntoOut gives the child one pipe for both streams, so `out` holds them interleaved
    // in the order written and `err` stays empty.
    enum class Stderr { kSeparate, kMergeIntoOut };
    Stderr stderr_mode = Stderr::kSeparate;

    // Applied in the child before exec; any failure is kFailedToStart (Subprocess: a throw).
    int nice = 0;  // 0 = inherit; otherwise the absolute niceness, -20..19 (setpriority)
    IoPriorityClass io_class = IoPriorityClass::kNone;  // kNone = inherit
    int io_level = 4;                                   // 0 (highest)..7; unused for kIdle
    // RLIMIT_AS (soft and hard) in bytes, lowered to the current hard limit if that is smaller.
    std::optional<std::uint64_t> rlimit_as;
    // If set, the child writes its pid to cgroup_dir/"cgroup.procs" (which must exist) first,
    // so everything it starts is accounted and limited there.
    std::filesystem::path cgroup_dir;

    // Polled about every 50 ms while waiting (run_process only): once true, the group gets
    // SIGTERM, then SIGKILL after kill_grace, and the result is kCancelled. Already true before
    // the start: nothing is started. Must outlive the call.
    const std::atomic<bool>* cancel = nullptr;
    // run_process(): called in the parent as soon as the child exists (its pid is also its
    // process group id), e.g. to record it so a restarted supervisor can find it.
    std::function<void(pid_t)> on_spawn;
};

// kCancelled was added last so that the older values keep their numbers.
enum class ExitKind { kExited, kSignaled, kTimedOut, kFailedToStart, kCancelled };

struct RunResult {
    ExitKind kind = ExitKind::kFailedToStart;
    // For kExited (and kTimedOut/kCancelled when the child exited by itself).
    int exit_code = -1;
    // For kSignaled (and kTimedOut/kCancelled: usually SIGTERM or SIGKILL).
    int signal = 0;
    std::string out, err;
    bool out_truncated = false, err_truncated = false;
    std::chrono::milliseconds elapsed{0};
    std::string error;  // why it failed to start, for kFailedToStart

    bool ok() const { return kind == ExitKind::kExited && exit_code == 0; }
};

// Runs argv (argv[0] looked up in PATH if it has no '/'), never through a shell, in a new
// process group so that a timeout also kills grandchildren. Never throws for OS failures: a child
// that cannot be started is kFailedToStart with the reason in `error`.
//
// Once the direct child has exited, output still held open by background grandchildren is read
// for at most one more second (or until the timeout); such grandchildren are not killed, since
// the command finished. On a timeout the group is torn down: SIGTERM, then SIGKILL to whatever
// is left once the child has exited and closed its output, or when kill_grace runs out. A cancel
// (RunOptions::cancel) tears the group down the same way.
RunResult run_process(const std::vector<std::string>& argv, const RunOptions& opts = {});

// Owns a started child that leads its own process group (servers in tests, model backends in
// the agent). The destructor calls terminate(opts.kill_grace). The child's exit is observed
// without reaping it, so the group id stays valid for the handle's whole life and terminate()
// can always kill grandchildren safely; the zombie is reaped by terminate().
// Uses argv, env_set, cwd, stdin_data (at most the pipe capacity, about 1 MiB), kill_grace, and
// the nice/io/rlimit/cgroup settings from RunOptions; timeout, output_cap, keep, stderr_mode and
// cancel do not apply.
class Subprocess {
  public:
    enum class Output { kInherit, kDiscard, kToFile };  // where stdout and stderr go

    // Throws std::system_error if the child cannot be started (including an exec failure,
    // reported back through a CLOEXEC pipe), std::invalid_argument for bad arguments.
    // kToFile appends to log_file, creating it if needed.
    static Subprocess start(const std::vector<std::string>& argv, const RunOptions& opts = {},
                            Output output = Output::kDiscard,
                            const std::filesystem::path& log_file = {});
    // Like start(), with the child's stdout and stderr both on `out_fd` (e.g. a pipe's write
    // end, which the caller reads); -1 inherits ours. The caller keeps and closes its own fd.
    static Subprocess start_writing_to(const std::vector<std::string>& argv, const RunOptions& opts,
                                       int out_fd);

    Subprocess(Subprocess&& other) noexcept;
    Subprocess& operator=(Subprocess&& other) noexcept;
    Subprocess(const Subprocess&) = delete;
    Subprocess& operator=(const Subprocess&) = delete;
    ~Subprocess();

    pid_t pid() const { return pid_; }  // also the process group id; -1 once moved from
    bool running() const { return pid_ > 0 && !status_ && !reaped_; }

    // Non-blocking; the raw wait status (use WIFEXITED etc.) once the child has exited.
    std::optional<int> try_wait();
    // Waits at most `limit` for the child to exit.
    std::optional<int> wait_for(std::chrono::milliseconds limit);
    // SIGTERM to the group, SIGKILL to the group after `grace` (or as soon as the leader has
    // exited), then reaps. Safe to call more than once; no-op on a moved-from handle.
    void terminate(std::chrono::milliseconds grace);

  private:
    Subprocess(pid_t pid, int pidfd, std::chrono::milliseconds grace)
        : pid_(pid), pidfd_(pidfd), kill_grace_(grace) {}
    void release_fds() noexcept;

    pid_t pid_ = -1;
    int pidfd_ = -1;  // -1 where pidfd_open is unavailable; waits then poll on a short tick
    std::chrono::milliseconds kill_grace_{2000};
    std::optional<int> status_;  // raw wait status once observed
    bool reaped_ = false;
};

}  // namespace mlk::util
