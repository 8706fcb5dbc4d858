#include "mlkeeper/cleanup/executor.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>
#include <thread>

#include "mlkeeper/cleanup/open_files.hpp"
#include "mlkeeper/util/units.hpp"

namespace mlk::cleanup {

std::optional<std::string> check_breakers(const Plan& plan, const BreakerLimits& limits) {
    if (limits.max_files > 0 && plan.files() > limits.max_files) {
        return "would delete " + std::to_string(plan.files()) + " files, more than max_files " +
               std::to_string(limits.max_files);
    }
    if (limits.max_bytes > 0 && plan.bytes() > limits.max_bytes) {
        return "would free " + util::format_bytes(plan.bytes()) + ", more than max_bytes " +
               util::format_bytes(limits.max_bytes);
    }
    return std::nullopt;
}

std::uint64_t ExecResult::files() const {
    std::uint64_t n = 0;
    for (const auto& t : targets) {
        n += t.files;
    }
    return n;
}

std::uint64_t ExecResult::bytes() const {
    std::uint64_t n = 0;
    for (const auto& t : targets) {
        n += t.bytes;
    }
    return n;
}

std::uint64_t ExecResult::dirs() const {
    std::uint64_t n = 0;
    for (const auto& t : targets) {
        n += t.dirs;
    }
    return n;
}

std::uint64_t ExecResult::failures() const {
    std::uint64_t n = 0;
    for (const auto& t : targets) {
        n += t.counts.skipped_permission + t.counts.skipped_other;
    }
    return n;
}

namespace {

class Pacer {
  public:
    explicit Pacer(double per_sec) {
        if (per_sec > 0) {
            interval_ = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                std::chrono::duration<double>(1.0 / per_sec));
        }
    }
    void wait() {
        if (interval_.count() == 0) {
            return;
        }
        auto now = std::chrono::steady_clock::now();
        if (next_ > now) {
            std::this_thread::sleep_until(next_);
            now = next_;
        }
        next_ = now + interval_;
    }

  private:
    std::chrono::steady_clock::duration interval_{0};
    std::chrono::steady_clock::time_point next_{};
};

class TargetExecutor {
  public:
    TargetExecutor(const TargetPlan& tp, TargetResult& r, const ExecOptions& o, Pacer& pacer)
        : tp_(tp), r_(r), o_(o), pacer_(pacer) {}

    void run() {
        try {
            Fd root = open_dir_nofollow(tp_.root);
            struct stat st {};
            if (::fstat(root.get(), &st) != 0 || st.st_dev != tp_.dirs[0].dev ||
                st.st_ino != tp_.dirs[0].ino) {
                fail_all(tp_.root.string() + " is not the directory that was scanned");
                return;
            }
            stack_.emplace_back(0, std::move(root));
        } catch (const std::system_error& e) {
            fail_all(e.what());
            return;
        }
        for (const auto& v : tp_.victims) {
            remove_file(v);
        }
        for (auto d = static_cast<std::uint32_t>(tp_.dirs.size()); d-- > 1;) {
            if (tp_.dirs[d].remove) {
                remove_dir(d);
            }
        }
    }

  private:
    void note(const std::string& what, int err) {
        if (err == EACCES || err == EPERM) {
            ++r_.counts.skipped_permission;
        } else {
            ++r_.counts.skipped_other;
        }
        if (r_.errors.size() < kMaxErrors) {
            r_.errors.push_back(what + ": " + std::generic_category().message(err));
        }
    }

    void fail_all(const std::string& why) {
        r_.counts.skipped_changed += tp_.victims.size();
        if (r_.errors.size() < kMaxErrors) {
            r_.errors.push_back(why + "; nothing deleted in this target");
        }
    }

    // The fd of planned directory `dir`, reusing the open chain from the root; -1 when the
    // directory is gone or is no longer the one scanned (a symlink or another inode).
    int open_dir(std::uint32_t dir) {
        std::vector<std::uint32_t> chain;
        for (std::uint32_t d = dir; d != 0; d = tp_.dirs[d].parent) {
            chain.push_back(d);
        }
        std::reverse(chain.begin(), chain.end());
        std::size_t keep = 1;
        while (keep < stack_.size() && keep - 1 < chain.size() &&
               stack_[keep].first == chain[keep - 1]) {
            ++keep;
        }
        stack_.resize(keep);
        for (std::size_t i = keep - 1; i < chain.size(); ++i) {
            const DirNode& n = tp_.dirs[chain[i]];
            Fd fd(::openat(stack_.back().second.get(), n.name.c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            struct stat st {};
            if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_dev != n.dev ||
                st.st_ino != n.ino) {
                if (fd.valid() || errno == ELOOP || errno == ENOTDIR || errno == ENOENT) {
                    if (failed_dir_ != chain[i] && r_.errors.size() < kMaxErrors) {
                        r_.errors.push_back(tp_.dir_path(chain[i]).string() +
                                            " changed since the scan (replaced, moved or a "
                                            "symlink now); its files were left alone");
                    }
                } else if (failed_dir_ != chain[i]) {
                    note("cannot open " + tp_.dir_path(chain[i]).string(), errno);
                }
                failed_dir_ = chain[i];
                return -1;
            }
            stack_.emplace_back(chain[i], std::move(fd));
        }
        return stack_.back().second.get();
    }

    void remove_file(const Victim& v) {
        int dfd = open_dir(v.dir);
        if (dfd < 0) {
            ++r_.counts.skipped_changed;
            return;
        }
        struct stat st {};
        if (::fstatat(dfd, v.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) {
                ++r_.counts.skipped_changed;
            } else {
                note("cannot stat " + tp_.path_of(v).string(), errno);
            }
            return;
        }
        std::int64_t mt =
            static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
        if (st.st_dev != v.dev || st.st_ino != v.ino ||
            static_cast<std::uint64_t>(st.st_size) != v.size || mt != v.mtime_ns ||
            (st.st_mode & S_IFMT) != v.type) {
            ++r_.counts.skipped_changed;
            return;
        }
        if (o_.open_files != nullptr && o_.open_files->contains(st.st_dev, st.st_ino)) {
            ++r_.counts.skipped_open;
            return;
        }
        pacer_.wait();
        if (::unlinkat(dfd, v.name.c_str(), 0) != 0) {
            if (errno == ENOENT) {
                ++r_.counts.skipped_changed;
            } else {
                note("cannot delete " + tp_.path_of(v).string(), errno);
            }
            return;
        }
        ++r_.files;
        r_.bytes += v.size;
        if (o_.on_deleted) {
            o_.on_deleted(tp_.path_of(v));
        }
    }

    void remove_dir(std::uint32_t d) {
        const DirNode& n = tp_.dirs[d];
        int pfd = open_dir(n.parent);
        if (pfd < 0) {
            return;
        }
        struct stat st {};
        if (::fstatat(pfd, n.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
            st.st_dev != n.dev || st.st_ino != n.ino) {
            return;  // gone or replaced: not ours to remove
        }
        pacer_.wait();
        if (::unlinkat(pfd, n.name.c_str(), AT_REMOVEDIR) == 0) {
            ++r_.dirs;
        } else if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT) {
            note("cannot remove directory " + tp_.dir_path(d).string(), errno);
        }
        // Not empty: something was kept or added since the scan; leaving it is right.
    }

    const TargetPlan& tp_;
    TargetResult& r_;
    const ExecOptions& o_;
    Pacer& pacer_;
    std::vector<std::pair<std::uint32_t, Fd>> stack_;
    std::uint32_t failed_dir_ = 0;
};

}  // namespace

ExecResult execute(const Plan& plan, const ExecOptions& opts) {
    ExecResult res;
    res.targets.resize(plan.targets.size());
    Pacer pacer(opts.rate_limit);
    for (std::size_t i = 0; i < plan.targets.size(); ++i) {
        const auto& tp = plan.targets[i];
        if (tp.status != TargetStatus::kOk || tp.dirs.empty() ||
            (tp.victims.empty() && tp.dirs_to_remove == 0)) {
            continue;
        }
        TargetExecutor(tp, res.targets[i], opts, pacer).run();
    }
    return res;
}

std::vector<std::string> lower_priority() {
    std::vector<std::string> notes;
    errno = 0;
    int cur = ::getpriority(PRIO_PROCESS, 0);
    if (!(cur == -1 && errno != 0) && cur < 10 && ::setpriority(PRIO_PROCESS, 0, 10) != 0) {
        notes.push_back(std::string("nice 10 failed: ") + std::generic_category().message(errno));
    }
    constexpr int kWhoProcess = 1, kClassIdle = 3, kClassShift = 13;
    if (::syscall(SYS_ioprio_set, kWhoProcess, 0, kClassIdle << kClassShift) != 0) {
        notes.push_back(std::string("idle I/O priority failed: ") +
                        std::generic_category().message(errno));
    }
    return notes;
}

}  // namespace mlk::cleanup
