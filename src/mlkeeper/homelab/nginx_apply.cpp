#include "mlkeeper/homelab/nginx_apply.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <system_error>

#include <fmt/format.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/util/file_lock.hpp"
#include "mlkeeper/util/strings.hpp"

namespace mlk::homelab {
namespace fs = std::filesystem;
namespace {

// Lines with their '\n' (the last one may lack it), so "x" and "x\n" differ as diff(1) says.
std::vector<std::string_view> split_lines(std::string_view s) {
    std::vector<std::string_view> lines;
    while (!s.empty()) {
        const auto nl = s.find('\n');
        const auto len = nl == std::string_view::npos ? s.size() : nl + 1;
        lines.push_back(s.substr(0, len));
        s.remove_prefix(len);
    }
    return lines;
}

void append_line(std::string& out, char tag, std::string_view line) {
    out += tag;
    out += line;
    if (line.empty() || line.back() != '\n') {
        out += "\n\\ No newline at end of file\n";
    }
}

struct Edit {
    char op;        // ' ', '-', '+'
    std::size_t a;  // index in before (for ' ' and '-')
    std::size_t b;  // index in after (for ' ' and '+')
};

// Edit script by longest common subsequence over the part between the common head and tail.
// Beyond kMaxCells the middle is shown as removed-then-added, which is still a correct diff.
std::vector<Edit> edit_script(const std::vector<std::string_view>& a,
                              const std::vector<std::string_view>& b) {
    constexpr std::size_t kMaxCells = std::size_t{16} << 20;
    std::size_t head = 0;
    while (head < a.size() && head < b.size() && a[head] == b[head]) {
        ++head;
    }
    std::size_t tail = 0;
    while (tail < a.size() - head && tail < b.size() - head &&
           a[a.size() - 1 - tail] == b[b.size() - 1 - tail]) {
        ++tail;
    }
    const std::size_t n = a.size() - head - tail;
    const std::size_t m = b.size() - head - tail;
    std::vector<Edit> edits;
    for (std::size_t i = 0; i < head; ++i) {
        edits.push_back({' ', i, i});
    }
    if ((n + 1) * (m + 1) <= kMaxCells) {
        // lcs[i][j]: LCS length of a[head+i..] and b[head+j..].
        std::vector<std::uint32_t> lcs((n + 1) * (m + 1), 0);
        const auto at = [&](std::size_t i, std::size_t j) -> std::uint32_t& {
            return lcs[i * (m + 1) + j];
        };
        for (std::size_t i = n; i-- > 0;) {
            for (std::size_t j = m; j-- > 0;) {
                at(i, j) = a[head + i] == b[head + j] ? at(i + 1, j + 1) + 1
                                                      : std::max(at(i + 1, j), at(i, j + 1));
            }
        }
        std::size_t i = 0, j = 0;
        while (i < n || j < m) {
            if (i < n && j < m && a[head + i] == b[head + j]) {
                edits.push_back({' ', head + i++, head + j++});
            } else if (i < n && (j == m || at(i + 1, j) >= at(i, j + 1))) {
                // Removals first on a tie, as diff(1) shows a changed line.
                edits.push_back({'-', head + i++, head + j});
            } else {
                edits.push_back({'+', head + i, head + j++});
            }
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            edits.push_back({'-', head + i, head});
        }
        for (std::size_t j = 0; j < m; ++j) {
            edits.push_back({'+', head + n, head + j});
        }
    }
    for (std::size_t k = 0; k < tail; ++k) {
        edits.push_back({' ', head + n + k, head + m + k});
    }
    return edits;
}

std::string describe(const std::vector<std::string>& argv, const util::RunResult& r) {
    std::string what = util::shell_join(argv);
    std::string why;
    switch (r.kind) {
        case util::ExitKind::kExited:
            why = fmt::format("exited with status {}", r.exit_code);
            break;
        case util::ExitKind::kSignaled:
            why = fmt::format("was killed by signal {}", r.signal);
            break;
        case util::ExitKind::kTimedOut:
            why = fmt::format("did not finish within {} ms", r.elapsed.count());
            break;
        case util::ExitKind::kFailedToStart:
            why = "could not be started: " + r.error;
            break;
        case util::ExitKind::kCancelled:
            why = "was cancelled";
            break;
    }
    const std::string both = r.out + r.err;
    const auto output = util::trim(both);
    return output.empty() ? fmt::format("{} {}", what, why)
                          : fmt::format("{} {}: {}", what, why, output);
}

std::optional<std::string> read_if_exists(const fs::path& p, const util::FsOps& ops) {
    std::error_code ec;
    const auto st = fs::symlink_status(p, ec);
    if (ec || !fs::exists(st)) {
        if (ec && ec != std::errc::no_such_file_or_directory) {
            throw std::system_error(ec, "stat " + p.string());
        }
        return std::nullopt;
    }
    return util::read_file(p, ops);
}

// Makes renames and unlinks in `dir` durable; a failure only weakens crash safety, so it is
// ignored (the rename itself already happened).
void fsync_dir(const fs::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

void remove_file(const fs::path& p) {
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
        throw std::system_error(errno, std::generic_category(), "unlink " + p.string());
    }
}

void rename_file(const fs::path& from, const fs::path& to) {
    if (::rename(from.c_str(), to.c_str()) != 0) {
        throw std::system_error(errno, std::generic_category(),
                                "rename " + from.string() + " to " + to.string());
    }
}

struct Paths {
    fs::path live, dir, lock, backup, absent;
};

Paths paths_for(const fs::path& live) {
    Paths p;
    p.live = live;
    p.dir = live.has_parent_path() ? live.parent_path() : fs::path(".");
    const auto name = live.filename().string();
    p.lock = p.dir / ("." + name + ".lock");
    p.backup = p.dir / ("." + name + ".mlkeeper-old");
    p.absent = p.dir / ("." + name + ".mlkeeper-absent");
    return p;
}

// Step 2: an apply that died after swapping in its candidate left the old file (or the note that
// there was none); put it back exactly as the failed check would have.
bool recover(const Paths& p) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(p.backup, ec))) {
        rename_file(p.backup, p.live);
        remove_file(p.absent);
        fsync_dir(p.dir);
        return true;
    }
    if (fs::exists(fs::symlink_status(p.absent, ec))) {
        remove_file(p.live);
        remove_file(p.absent);
        fsync_dir(p.dir);
        return true;
    }
    return false;
}

// Dry run: no lock and no writes, so it works for a user who may not write the directory. The
// "before" side is what step 2 would restore when an interrupted apply left its backup.
ApplyResult dry_run(const Paths& p, std::string_view candidate, const util::FsOps& ops) {
    ApplyResult res;
    res.path = p.live;
    std::error_code ec;
    std::optional<std::string> old;
    if (fs::exists(fs::symlink_status(p.backup, ec))) {
        old = read_if_exists(p.backup, ops);
    } else if (!fs::exists(fs::symlink_status(p.absent, ec))) {
        old = read_if_exists(p.live, ops);
    }
    if (old && *old == candidate) {
        return res;
    }
    res.outcome = ApplyOutcome::kWouldChange;
    res.diff = unified_diff(old.value_or(""), candidate, old ? p.live.string() : "/dev/null",
                            p.live.string() + " (rendered)");
    return res;
}

ApplyResult apply_locked(const NginxSettings& s, const Paths& p, std::string_view candidate,
                         const ApplyOptions& opts, const util::FsOps& ops) {
    ApplyResult res;
    res.path = p.live;
    res.recovered = recover(p);
    const auto old = read_if_exists(p.live, ops);
    if (old && *old == candidate) {
        return res;
    }
    res.diff = unified_diff(old.value_or(""), candidate, old ? p.live.string() : "/dev/null",
                            p.live.string() + " (rendered)");

    mode_t mode = 0644;
    if (old) {
        struct stat st {};
        if (::stat(p.live.c_str(), &st) == 0) {
            mode = st.st_mode & 07777;
        }
        remove_file(p.backup);
        if (::link(p.live.c_str(), p.backup.c_str()) != 0) {
            throw std::system_error(errno, std::generic_category(),
                                    "link " + p.live.string() + " to " + p.backup.string());
        }
    } else {
        util::write_file_atomic(p.absent, "", 0600, ops, opts.durability);
    }
    const auto drop_backup = [&] {
        remove_file(old ? p.backup : p.absent);
        fsync_dir(p.dir);
    };
    try {
        util::write_file_atomic(p.live, candidate, mode, ops, opts.durability);
    } catch (...) {
        // The live file is untouched (AtomicFileWriter's guarantee); only the backup goes.
        drop_backup();
        throw;
    }

    util::RunOptions run;
    run.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(s.command_timeout);
    run.stderr_mode = util::RunOptions::Stderr::kMergeIntoOut;
    run.output_cap = 64 * 1024;
    const auto test = opts.runner(s.test_command, run);
    if (!test.ok()) {
        if (old) {
            rename_file(p.backup, p.live);
        } else {
            remove_file(p.live);
            remove_file(p.absent);
        }
        fsync_dir(p.dir);
        res.outcome = ApplyOutcome::kTestFailed;
        res.error = describe(s.test_command, test);
        return res;
    }
    drop_backup();
    res.outcome = ApplyOutcome::kApplied;
    if (opts.reload == ApplyOptions::Reload::kNo) {
        return res;
    }
    const auto reload = opts.runner(s.reload_command, run);
    if (!reload.ok()) {
        res.outcome = ApplyOutcome::kReloadFailed;
        res.error = describe(s.reload_command, reload);
        return res;
    }
    res.reloaded = true;
    return res;
}

}  // namespace

std::string_view to_string(ApplyOutcome o) {
    switch (o) {
        case ApplyOutcome::kUnchanged:
            return "unchanged";
        case ApplyOutcome::kWouldChange:
            return "would-change";
        case ApplyOutcome::kApplied:
            return "applied";
        case ApplyOutcome::kTestFailed:
            return "test-failed";
        case ApplyOutcome::kReloadFailed:
            return "reload-failed";
    }
    return "unknown";
}

std::string unified_diff(std::string_view before, std::string_view after,
                         std::string_view before_label, std::string_view after_label) {
    if (before == after) {
        return {};
    }
    constexpr std::size_t kContext = 3;
    const auto a = split_lines(before);
    const auto b = split_lines(after);
    const auto edits = edit_script(a, b);
    std::string out = fmt::format("--- {}\n+++ {}\n", before_label, after_label);
    std::size_t k = 0;
    while (k < edits.size()) {
        while (k < edits.size() && edits[k].op == ' ') {
            ++k;
        }
        if (k == edits.size()) {
            break;
        }
        // A hunk: from kContext lines before this change to kContext lines after the last
        // change that is at most 2*kContext unchanged lines from the next.
        const std::size_t start = k >= kContext ? k - kContext : 0;
        std::size_t end = k;
        std::size_t run = 0;
        for (std::size_t i = k; i < edits.size(); ++i) {
            if (edits[i].op == ' ') {
                if (++run > 2 * kContext) {
                    break;
                }
            } else {
                run = 0;
                end = i + 1;
            }
        }
        const std::size_t stop = std::min(edits.size(), end + kContext);
        std::size_t a_count = 0, b_count = 0;
        for (std::size_t i = start; i < stop; ++i) {
            a_count += edits[i].op != '+';
            b_count += edits[i].op != '-';
        }
        // diff(1) numbers an empty side by the line before it.
        const auto a_start = a_count == 0 ? edits[start].a : edits[start].a + 1;
        const auto b_start = b_count == 0 ? edits[start].b : edits[start].b + 1;
        out += fmt::format("@@ -{},{} +{},{} @@\n", a_start, a_count, b_start, b_count);
        for (std::size_t i = start; i < stop; ++i) {
            const auto& e = edits[i];
            append_line(out, e.op, e.op == '+' ? b[e.b] : a[e.a]);
        }
        k = stop;
    }
    return out;
}

ApplyResult apply_nginx_config(const NginxSettings& s, std::string_view candidate,
                               const ApplyOptions& opts) {
    if (s.output.empty() || !s.output.has_filename()) {
        throw ConfigError("nginx.output: \"" + s.output.string() + "\" does not name a file");
    }
    const auto p = paths_for(s.output);
    const auto& ops = opts.fs_ops != nullptr ? *opts.fs_ops : util::real_fs_ops();
    try {
        if (opts.mode == ApplyOptions::Mode::kDryRun) {
            return dry_run(p, candidate, ops);
        }
        std::error_code ec;
        if (!fs::is_directory(p.dir, ec)) {
            throw Error(
                fmt::format("nginx.output: the directory {} does not exist; install nginx or point "
                            "[nginx] output at the directory its nginx.conf includes",
                            p.dir.string()));
        }
        pid_t holder = 0;
        auto lock = util::FileLock::acquire(p.lock, opts.lock_timeout, &holder);
        if (!lock) {
            throw Error(fmt::format(
                "{} is being applied by another mlkeeper (pid {}) for longer than {} ms; try "
                "again later",
                p.live.string(), holder, opts.lock_timeout.count()));
        }
        return apply_locked(s, p, candidate, opts, ops);
    } catch (const std::system_error& e) {
        throw Error(fmt::format("nginx config {}: {}; the previous file is in place",
                                p.live.string(), e.what()));
    }
}

ApplyResult render_and_apply(const NginxSettings& s, const std::vector<ModelSpec>& models,
                             const RenderOptions& render, const ApplyOptions& opts) {
    return apply_nginx_config(s, render_nginx_config(s, models, render), opts);
}

}  // namespace mlk::homelab
