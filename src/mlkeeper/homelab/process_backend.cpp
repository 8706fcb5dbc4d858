#include "mlkeeper/homelab/process_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "mlkeeper/homelab/systemd_backend.hpp"

namespace mlk::homelab {
namespace {

constexpr std::size_t kMaxPartialLine = 64 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;
// After the child is gone, output still in the pipe is read for at most this long.
constexpr std::chrono::milliseconds kDrainLinger{1000};

std::size_t count_lines(std::string_view s) {
    const auto n = static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
    return n == 0 && !s.empty() ? 1 : n;
}

void close_fd(int& fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

std::string signal_name(int sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

std::string utc_now() {
    const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// The argv as one line for the log: arguments with spaces or quotes are quoted.
std::string show_argv(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) {
            out += ' ';
        }
        const bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
            return static_cast<unsigned char>(c) > 0x20 && c != '"' && c != '\'' && c != '\\' &&
                   c != 0x7f;
        });
        out += plain ? a : fmt::format("{:?}", a);
    }
    return out;
}

}  // namespace

// ---- RotatingLog ----

RotatingLog::RotatingLog(std::filesystem::path file, std::uint64_t max_size, int keep)
    : file_(std::move(file)), max_size_(max_size), keep_(std::max(keep, 0)) {}

RotatingLog::~RotatingLog() {
    flush();
    close_fd(fd_);
}

bool RotatingLog::ensure_open() {
    if (fd_ >= 0) {
        return true;
    }
    std::error_code ec;
    std::filesystem::create_directories(file_.parent_path(), ec);
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd_ < 0) {
        last_errno_ = errno;
        return false;
    }
    struct stat st {};
    size_ =
        ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) ? static_cast<std::uint64_t>(st.st_size) : 0;
    return true;
}

void RotatingLog::rotate() {
    close_fd(fd_);
    size_ = 0;
    const std::string base = file_.string();
    if (keep_ == 0) {
        fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOCTTY,
                     0640);
        if (fd_ < 0) {
            last_errno_ = errno;
        }
        return;
    }
    // Failed renames (a file vanished) only cost an old log; the current one must move on so
    // that it stays bounded.
    for (int i = keep_ - 1; i >= 1; --i) {
        ::rename(fmt::format("{}.{}", base, i).c_str(), fmt::format("{}.{}", base, i + 1).c_str());
    }
    if (::rename(base.c_str(), (base + ".1").c_str()) != 0 && errno != ENOENT) {
        // Cannot move it aside: start it over rather than let it grow without bound.
        ::truncate(base.c_str(), 0);
    }
    (void)ensure_open();
}

bool RotatingLog::append(std::string_view block) {
    if (dropped_pending_ > 0 && fd_ >= 0) {
        // Said first so that a reader of the log sees the gap where it happened.
        const std::string gap = fmt::format("---- mlkeeper: {} output line(s) lost: {} ----\n",
                                            dropped_pending_, ::strerror(last_errno_));
        const ssize_t n = ::write(fd_, gap.data(), gap.size());
        if (n == static_cast<ssize_t>(gap.size())) {
            size_ += gap.size();
            dropped_pending_ = 0;
        } else {
            if (n < 0) {
                last_errno_ = errno;
            }
            dropped_pending_ += count_lines(block);
            dropped_total_ += count_lines(block);
            return false;
        }
    }
    std::size_t done = 0;
    while (done < block.size() && fd_ >= 0) {
        const ssize_t n = ::write(fd_, block.data() + done, block.size() - done);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            size_ += static_cast<std::uint64_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        last_errno_ = n < 0 ? errno : ENOSPC;
        if (n < 0 && errno != ENOSPC && errno != EDQUOT) {
            close_fd(fd_);  // EIO, a removed mount: try a fresh open next time
        }
        break;
    }
    if (done == block.size()) {
        return true;
    }
    const auto lost = count_lines(block.substr(done));
    dropped_pending_ += lost;
    dropped_total_ += lost;
    if (done > 0 && fd_ >= 0) {
        // End the torn line so the gap note starts on a line of its own.
        if (::write(fd_, "\n", 1) == 1) {
            ++size_;
        }
    }
    return false;
}

void RotatingLog::write_lines(std::string_view lines) {
    while (!lines.empty()) {
        if (!ensure_open()) {
            const auto lost = count_lines(lines);
            dropped_pending_ += lost;
            dropped_total_ += lost;
            return;
        }
        std::string_view block = lines;
        if (max_size_ > 0 && size_ + block.size() > max_size_) {
            if (size_ > 0 && size_ >= max_size_) {
                rotate();
                continue;
            }
            // As many whole lines as fit; a first line longer than max_size goes whole.
            const std::uint64_t room = max_size_ - size_;
            const auto cut = block.rfind('\n', static_cast<std::size_t>(room) - 1);
            if (cut == std::string_view::npos) {
                if (size_ > 0) {
                    rotate();
                    continue;
                }
                block = block.substr(0, block.find('\n') + 1);
            } else {
                block = block.substr(0, cut + 1);
            }
        }
        (void)append(block);
        lines.remove_prefix(block.size());
        if (max_size_ > 0 && size_ >= max_size_) {
            rotate();
        }
    }
}

void RotatingLog::write(std::string_view data) {
    std::lock_guard lock(mu_);
    const auto last_nl = data.rfind('\n');
    if (last_nl == std::string_view::npos) {
        partial_.append(data);
        if (partial_.size() >= kMaxPartialLine) {
            partial_ += '\n';
            std::string held = std::move(partial_);
            partial_.clear();
            write_lines(held);
        }
        return;
    }
    if (!partial_.empty()) {
        std::string first = std::move(partial_);
        partial_.clear();
        first.append(data.substr(0, last_nl + 1));
        write_lines(first);
    } else {
        write_lines(data.substr(0, last_nl + 1));
    }
    partial_.assign(data.substr(last_nl + 1));
}

void RotatingLog::flush() {
    std::lock_guard lock(mu_);
    if (!partial_.empty()) {
        std::string held = std::move(partial_);
        partial_.clear();
        held += '\n';
        write_lines(held);
    }
}

void RotatingLog::note(std::string_view line) {
    flush();
    std::lock_guard lock(mu_);
    std::string l(line);
    l += '\n';
    write_lines(l);
}

// ---- LogPump: the reader thread ----

// Reads the child's output pipe until EOF (every writer gone) or until told to finish, so the
// child can never block on a full pipe while the thread lives.
class LogPump {
  public:
    LogPump(int read_fd, std::shared_ptr<RotatingLog> log)
        : read_fd_(read_fd), log_(std::move(log)) {
        int wake[2];
        if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
            const int e = errno;
            close_fd(read_fd_);
            throw std::system_error(e, std::generic_category(), "cannot create a wake pipe");
        }
        wake_read_ = wake[0];
        wake_write_ = wake[1];
        ::fcntl(read_fd_, F_SETFL, ::fcntl(read_fd_, F_GETFL) | O_NONBLOCK);
        thread_ = std::thread([this] { run(); });
    }
    ~LogPump() { finish(std::chrono::milliseconds{0}); }
    LogPump(const LogPump&) = delete;
    LogPump& operator=(const LogPump&) = delete;

    // Lets the thread read to EOF for at most `linger`, then makes it drain what is buffered and
    // stop; joins it. Output a leftover grandchild writes later is lost (and it may get EPIPE).
    void finish(std::chrono::milliseconds linger) {
        if (!thread_.joinable()) {
            return;
        }
        {
            std::unique_lock lock(mu_);
            cv_.wait_for(lock, linger, [this] { return done_; });
        }
        const char c = 'q';
        (void)!::write(wake_write_, &c, 1);
        thread_.join();
        log_->flush();
        close_fd(read_fd_);
        close_fd(wake_read_);
        close_fd(wake_write_);
    }

  private:
    // Returns false at EOF or on a read error.
    bool drain(char* buf) {
        for (;;) {
            const ssize_t n = ::read(read_fd_, buf, kReadChunk);
            if (n > 0) {
                log_->write(std::string_view(buf, static_cast<std::size_t>(n)));
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        }
    }

    void run() {
        std::string buf(kReadChunk, '\0');
        for (;;) {
            pollfd fds[2] = {{read_fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
            const int r = ::poll(fds, 2, -1);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r < 0) {
                break;
            }
            if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !drain(buf.data())) {
                break;
            }
            if ((fds[1].revents & POLLIN) != 0) {
                (void)drain(buf.data());
                break;
            }
        }
        std::lock_guard lock(mu_);
        done_ = true;
        cv_.notify_all();
    }

    int read_fd_;
    int wake_read_ = -1;
    int wake_write_ = -1;
    std::shared_ptr<RotatingLog> log_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;
};

// ---- ProcessBackend ----

ProcessBackend::ProcessBackend(ModelSpec spec, BackendEnv env)
    : spec_(std::move(spec)), env_(std::move(env)) {
    if (spec_.command.empty() || spec_.command.front().empty()) {
        throw std::invalid_argument("model " + spec_.name + ": a process model needs a command");
    }
    if (!valid_model_name(spec_.name)) {
        throw std::invalid_argument("invalid model name for a log file: " + spec_.name);
    }
    log_ = std::make_shared<RotatingLog>(env_.log_dir / (spec_.name + ".log"), env_.log_max_size,
                                         env_.log_keep);
}

ProcessBackend::~ProcessBackend() {
    try {
        stop(spec_.stop_timeout);
    } catch (...) {
        // Nothing to do in a destructor; the Subprocess handle has killed the group anyway.
    }
}

std::uint64_t ProcessBackend::dropped_lines() const {
    return log_->dropped_lines();
}

std::filesystem::path ProcessBackend::log_path() const {
    return log_->path();
}

void ProcessBackend::finish_pump(std::chrono::milliseconds linger) {
    if (pump_) {
        pump_->finish(linger);
        pump_.reset();
    }
}

void ProcessBackend::start() {
    std::lock_guard op(op_mu_);
    {
        std::lock_guard lock(mu_);
        if (child_ && !child_->try_wait()) {
            return;  // already running
        }
        if (child_) {
            // Exited but not yet seen by status(): a new start supersedes that report.
            child_->terminate(std::chrono::milliseconds{0});
            child_.reset();
        }
    }
    finish_pump(kDrainLinger);

    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
        throw std::runtime_error(fmt::format("model {}: cannot create the output pipe: {}",
                                             spec_.name, ::strerror(errno)));
    }
    int read_end = p[0];
    int write_end = p[1];
    util::RunOptions opts;
    for (const auto& [k, v] : spec_.env) {
        opts.env_set.emplace_back(k, v);
    }
    opts.cwd = spec_.workdir;
    opts.kill_grace = std::chrono::duration_cast<std::chrono::milliseconds>(spec_.stop_timeout);
    log_->note(fmt::format("---- mlkeeper: starting {} at {}: {} ----", spec_.name, utc_now(),
                           show_argv(spec_.command)));
    std::optional<util::Subprocess> child;
    try {
        child.emplace(util::Subprocess::start_writing_to(spec_.command, opts, write_end));
    } catch (const std::exception& e) {
        close_fd(read_end);
        close_fd(write_end);
        log_->note(fmt::format("---- mlkeeper: {} failed to start: {} ----", spec_.name, e.what()));
        {
            std::lock_guard lock(mu_);
            last_detail_ = std::string("failed to start: ") + e.what();
        }
        throw std::runtime_error(fmt::format("model {}: cannot start {}: {}", spec_.name,
                                             spec_.command.front(), e.what()));
    }
    close_fd(write_end);  // the child holds the only writers now: EOF once they are gone
    try {
        pump_ = std::make_unique<LogPump>(read_end, log_);
    } catch (const std::exception& e) {
        child->terminate(std::chrono::milliseconds{0});
        throw std::runtime_error(
            fmt::format("model {}: cannot capture its output: {}", spec_.name, e.what()));
    }
    std::lock_guard lock(mu_);
    last_detail_ = fmt::format("running (pid {})", child->pid());
    child_ = std::move(child);
}

void ProcessBackend::stop(std::chrono::milliseconds timeout) {
    std::lock_guard op(op_mu_);
    std::optional<util::Subprocess> child;
    {
        std::lock_guard lock(mu_);
        if (child_) {
            stopping_pid_ = child_->pid();
            child = std::move(child_);
            child_.reset();
        }
    }
    if (child) {
        const bool was_running = !child->try_wait();
        // Blocks for at most `timeout` plus the reap; status() meanwhile reports "stopping".
        child->terminate(timeout);
        const auto st = child->try_wait();
        std::string how = "stopped";
        if (was_running && st && WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL) {
            how = fmt::format("stopped (SIGKILL after {} ms)", timeout.count());
        }
        finish_pump(kDrainLinger);
        log_->note(fmt::format("---- mlkeeper: {} {} at {} ----", spec_.name, how, utc_now()));
        std::lock_guard lock(mu_);
        stopping_pid_.reset();
        last_detail_ = how;
    } else {
        finish_pump(kDrainLinger);
    }
}

BackendStatus ProcessBackend::status() {
    std::lock_guard lock(mu_);
    BackendStatus s;
    if (stopping_pid_) {
        s.state = BackendState::kRunning;
        s.pid = *stopping_pid_;
        s.detail = "stopping";
        return s;
    }
    if (!child_) {
        s.state = BackendState::kStopped;
        s.detail = last_detail_;
        return s;
    }
    const auto st = child_->try_wait();
    if (!st) {
        s.state = BackendState::kRunning;
        s.pid = child_->pid();
        s.detail = last_detail_;
        return s;
    }
    s.state = BackendState::kExited;
    s.pid = child_->pid();
    if (WIFEXITED(*st)) {
        s.exit_code = WEXITSTATUS(*st);
        s.detail = fmt::format("exited with code {}", *s.exit_code);
    } else if (WIFSIGNALED(*st)) {
        s.signal = WTERMSIG(*st);
        s.detail = fmt::format("killed by {}", signal_name(*s.signal));
    } else {
        s.detail = "exited";
    }
    // The leader is gone: kill what it left in its group (immediate, no grace) and reap it.
    child_->terminate(std::chrono::milliseconds{0});
    child_.reset();
    last_detail_ = s.detail;
    log_->note(fmt::format("---- mlkeeper: {} {} at {} ----", spec_.name, s.detail, utc_now()));
    return s;
}

// ---- make_backend ----

std::unique_ptr<ModelBackend> make_backend(const ModelSpec& spec, const BackendEnv& env) {
    if (spec.backend == ModelSpec::Backend::kSystemd) {
        return std::make_unique<SystemdBackend>(spec, env);
    }
    return std::make_unique<ProcessBackend>(spec, env);
}

}  // namespace mlk::homelab
