#include "mlkeeper/cleanup/scanner.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <unordered_set>

#include "mlkeeper/cleanup/open_files.hpp"

namespace mlk::cleanup {

std::string_view to_string(TargetStatus s) {
    switch (s) {
        case TargetStatus::kOk:
            return "ok";
        case TargetStatus::kDisabled:
            return "disabled";
        case TargetStatus::kMissing:
            return "missing";
        case TargetStatus::kRefused:
            return "refused";
        case TargetStatus::kError:
            return "error";
    }
    return "error";
}

std::filesystem::path TargetPlan::dir_path(std::uint32_t dir) const {
    std::vector<const std::string*> parts;
    for (std::uint32_t d = dir; d != 0; d = dirs[d].parent) {
        parts.push_back(&dirs[d].name);
    }
    std::filesystem::path p = root;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        p /= **it;
    }
    return p;
}

std::filesystem::path TargetPlan::path_of(const Victim& v) const {
    return dir_path(v.dir) / v.name;
}

std::uint64_t Plan::files() const {
    std::uint64_t n = 0;
    for (const auto& t : targets) {
        n += t.victims.size();
    }
    return n;
}

std::uint64_t Plan::bytes() const {
    std::uint64_t n = 0;
    for (const auto& t : targets) {
        n += t.bytes;
    }
    return n;
}

std::uint64_t Plan::dirs() const {
    std::uint64_t n = 0;
    for (const auto& t : targets) {
        n += t.dirs_to_remove;
    }
    return n;
}

namespace {

constexpr int kMaxDepth = 256;

std::int64_t to_ns(const struct timespec& ts) {
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct Entry {
    std::string name;
    unsigned char type;
};

struct Candidate {
    Victim v;
    bool file_old = false;
    bool keep = false;  // among the newest checkpoints
};

struct Ckpt {
    std::int64_t mtime_ns;
    ino_t ino;
    std::int64_t cand;  // index into the run's candidates, or -1
};

class Scanner {
  public:
    Scanner(TargetPlan& tp, const ScanOptions& o) : tp_(tp), o_(o) {
        auto now =
            std::chrono::duration_cast<std::chrono::nanoseconds>(o.now.time_since_epoch()).count();
        retention_cutoff_ = now - std::chrono::nanoseconds(tp.spec.retention).count();
        new_cutoff_ = now - std::chrono::nanoseconds(o.min_age).count();
    }

    void scan_root(int root_fd) {
        std::vector<Entry> entries;
        if (!read_dir(root_fd, 0, entries)) {
            return;
        }
        for (const auto& e : entries) {
            if (e.name == kKeepMarker) {
                continue;
            }
            if (!tp_.spec.entry_glob.empty() &&
                ::fnmatch(tp_.spec.entry_glob.c_str(), e.name.c_str(), FNM_PERIOD) != 0) {
                continue;
            }
            scan_run(root_fd, e);
        }
    }

  private:
    void error(const std::string& what, int err) {
        run_incomplete_ = true;
        if (err == EACCES || err == EPERM) {
            ++tp_.counts.skipped_permission;
        } else {
            ++tp_.counts.skipped_other;
        }
        if (tp_.errors.size() < kMaxErrors) {
            tp_.errors.push_back(what + ": " + std::generic_category().message(err));
        }
    }

    // Reads all entries first so no DIR stream stays open while we recurse.
    bool read_dir(int dfd, std::uint32_t dir, std::vector<Entry>& out) {
        int dup = ::fcntl(dfd, F_DUPFD_CLOEXEC, 0);
        DIR* d = dup < 0 ? nullptr : ::fdopendir(dup);
        if (d == nullptr) {
            int err = errno;
            if (dup >= 0) {
                ::close(dup);
            }
            error("cannot read " + tp_.dir_path(dir).string(), err);
            return false;
        }
        errno = 0;
        while (dirent* de = ::readdir(d)) {
            const char* n = de->d_name;
            if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) {
                continue;
            }
            out.push_back(Entry{n, de->d_type});
        }
        int err = errno;
        ::closedir(d);
        if (err != 0) {
            error("cannot read " + tp_.dir_path(dir).string(), err);
            return false;
        }
        std::sort(out.begin(), out.end(),
                  [](const Entry& a, const Entry& b) { return a.name < b.name; });
        return true;
    }

    void scan_run(int root_fd, const Entry& e) {
        cands_.clear();
        ckpts_.clear();
        newest_ = INT64_MIN;
        run_incomplete_ = false;
        auto first_dir = static_cast<std::uint32_t>(tp_.dirs.size());
        scan_entry(root_fd, 0, e, 1);
        finish_run(first_dir);
    }

    // One entry of directory `dir` (open as dfd).
    void scan_entry(int dfd, std::uint32_t dir, const Entry& e, int depth) {
        bool is_dir = e.type == DT_DIR;
        bool need_stat = e.type != DT_DIR;
        bool prot = matches_any(o_.protect, e.name.c_str());
        if (prot) {
            ++tp_.counts.protected_pattern;
            if (tp_.spec.mode == DeleteMode::kFiles || is_dir) {
                return;  // its age cannot matter; no stat needed
            }
        }
        struct stat st {};
        if (need_stat) {
            if (::fstatat(dfd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno != ENOENT) {
                    error("cannot stat " + (tp_.dir_path(dir) / e.name).string(), errno);
                }
                return;
            }
            is_dir = S_ISDIR(st.st_mode);
            if (is_dir && prot) {
                return;
            }
        }
        if (is_dir) {
            scan_subdir(dfd, dir, e, depth);
            return;
        }
        if (st.st_dev != tp_.dirs[0].dev) {
            ++tp_.counts.skipped_other_fs;
            return;
        }
        std::int64_t mt = to_ns(st.st_mtim);
        newest_ = std::max(newest_, mt);
        if (prot) {
            return;
        }
        if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
            ++tp_.counts.skipped_other;
            return;
        }
        bool ckpt = S_ISREG(st.st_mode) && o_.keep_checkpoints > 0 &&
                    matches_any(o_.checkpoint_patterns, e.name.c_str());
        std::int64_t cand = -1;
        auto size = static_cast<std::uint64_t>(st.st_size);
        if (!matches_any(tp_.spec.patterns, e.name.c_str()) || size < tp_.spec.min_size) {
            // not eligible: not counted
        } else if (mt > new_cutoff_) {
            ++tp_.counts.skipped_new;
        } else if (o_.open_files != nullptr && o_.open_files->contains(st.st_dev, st.st_ino)) {
            ++tp_.counts.skipped_open;
        } else {
            cand = static_cast<std::int64_t>(cands_.size());
            cands_.push_back(
                Candidate{Victim{dir, e.name, st.st_dev, st.st_ino, size, mt,
                                 static_cast<mode_t>(st.st_mode & S_IFMT), Reason::kFileAge},
                          mt < retention_cutoff_, false});
        }
        if (ckpt) {
            ckpts_.push_back(Ckpt{mt, st.st_ino, cand});
        }
    }

    void scan_subdir(int dfd, std::uint32_t dir, const Entry& e, int depth) {
        auto path = [&] { return (tp_.dir_path(dir) / e.name).string(); };
        if (depth > kMaxDepth) {
            error("not entering " + path(), ELOOP);
            return;
        }
        Fd sub(::openat(dfd, e.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub.valid()) {
            if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) {
                ++tp_.counts.skipped_changed;  // replaced or removed while we looked
            } else {
                error("cannot open " + path(), errno);
            }
            return;
        }
        struct stat st {};
        if (::fstat(sub.get(), &st) != 0) {
            error("cannot stat " + path(), errno);
            return;
        }
        if (st.st_dev != tp_.dirs[0].dev) {
            ++tp_.counts.skipped_other_fs;
            return;
        }
        newest_ = std::max(newest_, to_ns(st.st_mtim));
        auto idx = static_cast<std::uint32_t>(tp_.dirs.size());
        tp_.dirs.push_back(DirNode{dir, e.name, st.st_dev, st.st_ino, false});
        entries_.push_back(0);
        gone_.push_back(0);
        std::vector<Entry> entries;
        if (!read_dir(sub.get(), idx, entries)) {
            entries_[idx] = 1;  // unknown content: never removed
            return;
        }
        entries_[idx] = static_cast<std::uint32_t>(entries.size());
        for (const auto& c : entries) {
            if (c.name == kKeepMarker) {
                ++tp_.counts.protected_marker;
                return;
            }
        }
        for (const auto& c : entries) {
            scan_entry(sub.get(), idx, c, depth + 1);
        }
    }

    void finish_run(std::uint32_t first_dir) {
        std::size_t k = std::min(o_.keep_checkpoints, ckpts_.size());
        std::partial_sort(ckpts_.begin(), ckpts_.begin() + static_cast<std::ptrdiff_t>(k),
                          ckpts_.end(), [](const Ckpt& a, const Ckpt& b) {
                              return a.mtime_ns != b.mtime_ns ? a.mtime_ns > b.mtime_ns
                                                              : a.ino > b.ino;
                          });
        for (std::size_t i = 0; i < k; ++i) {
            if (ckpts_[i].cand >= 0) {
                cands_[static_cast<std::size_t>(ckpts_[i].cand)].keep = true;
                ++tp_.counts.protected_newest;
            }
        }
        // A run we could not read completely has an unknown age: never delete it as a whole.
        bool run_old = newest_ < retention_cutoff_ && !run_incomplete_;
        for (auto& c : cands_) {
            if (c.keep) {
                continue;
            }
            bool go = false;
            switch (tp_.spec.mode) {
                case DeleteMode::kFiles:
                    go = c.file_old;
                    break;
                case DeleteMode::kRuns:
                    go = run_old;
                    break;
                case DeleteMode::kBoth:
                    go = c.file_old || run_old;
                    break;
            }
            if (!go) {
                continue;
            }
            c.v.reason = c.file_old && tp_.spec.mode != DeleteMode::kRuns ? Reason::kFileAge
                                                                          : Reason::kRunAge;
            tp_.bytes += c.v.size;
            if (c.v.dir != 0) {
                ++gone_[c.v.dir];
            }
            tp_.victims.push_back(std::move(c.v));
        }
        // Children come after their parents, so walking back settles each directory before its
        // parent looks at it. The root (index 0) is never removed.
        for (auto d = static_cast<std::uint32_t>(tp_.dirs.size()); d-- > first_dir;) {
            if (entries_[d] > 0 && gone_[d] == entries_[d]) {
                tp_.dirs[d].remove = true;
                ++tp_.dirs_to_remove;
                if (tp_.dirs[d].parent != 0) {
                    ++gone_[tp_.dirs[d].parent];
                }
            }
        }
    }

    TargetPlan& tp_;
    const ScanOptions& o_;
    std::int64_t retention_cutoff_ = 0, new_cutoff_ = 0, newest_ = 0;
    bool run_incomplete_ = false;
    std::vector<Candidate> cands_;
    std::vector<Ckpt> ckpts_;
    std::vector<std::uint32_t> entries_{0}, gone_{0};  // per dir, parallel to tp_.dirs
};

bool marker_at_or_above(const std::filesystem::path& root) {
    struct stat st {};
    for (auto p = root;; p = p.parent_path()) {
        if (::fstatat(AT_FDCWD, (p / kKeepMarker).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            return true;
        }
        if (p == p.root_path() || p.empty()) {
            return false;
        }
    }
}

}  // namespace

TargetPlan plan_target(const TargetSpec& spec, const ScanOptions& opts) {
    TargetPlan tp;
    tp.spec = spec;
    if (!spec.enabled) {
        tp.status = TargetStatus::kDisabled;
        tp.note = "disabled in cleanup.targets";
        return tp;
    }
    ResolvedRoot rr = resolve_root(spec.root, opts.policy);
    tp.root = rr.resolved;
    if (!rr.refusal.empty()) {
        tp.status = TargetStatus::kRefused;
        tp.note = rr.refusal;
        return tp;
    }
    if (rr.missing) {
        tp.status = TargetStatus::kMissing;
        tp.note = spec.root.string() + " does not exist; nothing to clean";
        return tp;
    }
    Fd root;
    struct stat st {};
    try {
        root = open_dir_nofollow(tp.root);
    } catch (const std::system_error& e) {
        tp.status = TargetStatus::kError;
        tp.note = e.what();
        return tp;
    }
    if (::fstat(root.get(), &st) != 0) {
        tp.status = TargetStatus::kError;
        tp.note = "cannot stat " + tp.root.string() + ": " + std::strerror(errno);
        return tp;
    }
    tp.dirs.push_back(DirNode{0, "", st.st_dev, st.st_ino, false});
    if (marker_at_or_above(tp.root)) {
        ++tp.counts.protected_marker;
        tp.note = "protected by a " + std::string(kKeepMarker) + " marker at or above the root";
        return tp;
    }
    Scanner s(tp, opts);
    s.scan_root(root.get());
    return tp;
}

Plan plan(const std::vector<TargetSpec>& specs, const ScanOptions& opts) {
    Plan p;
    for (const auto& s : specs) {
        p.targets.push_back(plan_target(s, opts));
    }
    // Overlapping roots (say /tmp/ml-* and /tmp/*) would list a file twice and inflate the
    // breaker's count; later targets drop what earlier ones already planned.
    for (std::size_t i = 1; i < p.targets.size(); ++i) {
        auto& t = p.targets[i];
        bool overlap = false;
        for (std::size_t j = 0; j < i && !overlap; ++j) {
            const auto& u = p.targets[j];
            overlap = !u.dirs.empty() && !t.dirs.empty() &&
                      (is_within(t.root, u.root) || is_within(u.root, t.root));
        }
        if (!overlap) {
            continue;
        }
        std::unordered_set<std::uint64_t> seen;
        for (std::size_t j = 0; j < i; ++j) {
            for (const auto& v : p.targets[j].victims) {
                seen.insert(static_cast<std::uint64_t>(v.ino) * 1000003u ^ v.dev);
            }
        }
        std::erase_if(t.victims, [&](const Victim& v) {
            if (seen.count(static_cast<std::uint64_t>(v.ino) * 1000003u ^ v.dev) == 0) {
                return false;
            }
            t.bytes -= v.size;
            return true;
        });
    }
    return p;
}

}  // namespace mlk::cleanup
