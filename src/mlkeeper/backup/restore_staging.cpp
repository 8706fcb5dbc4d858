#include "mlkeeper/backup/restore_staging.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <charconv>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;

// A staging directory whose restore no longer runs: its pid is gone.
bool is_abandoned(const std::string& name) {
    const std::string prefix = kStagingPrefix;
    if (!name.starts_with(prefix)) {
        return false;
    }
    pid_t pid = 0;
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    auto [end, ec] = std::from_chars(first, last, pid);
    if (ec != std::errc{} || end != last || pid <= 0) {
        return false;
    }
    return ::kill(pid, 0) != 0 && errno == ESRCH;
}

// Lets this process take entries out of a staged directory that the archive made read-only.
void make_writable(const fs::path& dir) {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) == 0 && (st.st_mode & S_IRWXU) != S_IRWXU) {
        (void)::chmod(dir.c_str(), (st.st_mode & 07777) | S_IRWXU);
    }
}

// The first staged path whose destination exists and would have to be replaced.
std::optional<fs::path> first_conflict(const fs::path& from, const fs::path& to) {
    for (const auto& entry : fs::directory_iterator(from)) {
        const fs::path dest = to / entry.path().filename();
        struct stat st {};
        if (::lstat(dest.c_str(), &st) != 0) {
            continue;
        }
        if (entry.is_directory() && !entry.is_symlink() && S_ISDIR(st.st_mode)) {
            if (auto c = first_conflict(entry.path(), dest)) {
                return c;
            }
            continue;
        }
        return dest;
    }
    return std::nullopt;
}

void check(int rc, const std::string& what) {
    if (rc != 0) {
        throw std::system_error(errno, std::generic_category(), what);
    }
}

void merge(const fs::path& from, const fs::path& to) {
    make_writable(from);
    // Listed first: entries are moved out of `from` while we go.
    std::vector<fs::path> entries;
    for (const auto& entry : fs::directory_iterator(from)) {
        entries.push_back(entry.path());
    }
    for (const fs::path& src : entries) {
        const fs::path dest = to / src.filename();
        struct stat d {};
        if (::lstat(dest.c_str(), &d) != 0) {
            check(::rename(src.c_str(), dest.c_str()), "cannot move " + dest.string());
            continue;
        }
        struct stat s {};
        check(::lstat(src.c_str(), &s), "cannot stat " + src.string());
        if (S_ISDIR(s.st_mode) && S_ISDIR(d.st_mode)) {
            merge(src, dest);
            check(::rmdir(src.c_str()), "cannot remove " + src.string());
            // The directory takes the archive's permissions and owner, as a fresh one would.
            check(::chmod(dest.c_str(), s.st_mode & 07777), "cannot chmod " + dest.string());
            if (::geteuid() == 0) {
                check(::lchown(dest.c_str(), s.st_uid, s.st_gid), "cannot chown " + dest.string());
            }
            continue;
        }
        if (S_ISDIR(d.st_mode)) {
            fs::remove_all(dest);  // a directory where the archive has a file or link
        }
        // rename() replaces a file or link atomically, and an empty directory with a directory.
        check(::rename(src.c_str(), dest.c_str()), "cannot move " + dest.string());
    }
}

}  // namespace

StagingDir::StagingDir(const fs::path& target) {
    std::error_code ec;
    if (!fs::exists(target, ec)) {
        fs::create_directories(target, ec);
        if (ec) {
            throw std::system_error(ec, "cannot create " + target.string());
        }
        created_target_ = true;
    }
    target_ = fs::canonical(target);
    // Making the staging directory changes the target's times; a failed restore puts them back.
    struct stat st {};
    if (::stat(target_.c_str(), &st) == 0) {
        target_times_[0] = st.st_atim;
        target_times_[1] = st.st_mtim;
    }
    for (const auto& entry : fs::directory_iterator(target_, ec)) {
        if (entry.is_directory() && is_abandoned(entry.path().filename().string())) {
            fs::remove_all(entry.path(), ec);
        }
    }
    staging_ = target_ / fmt::format("{}{}", kStagingPrefix, ::getpid());
    fs::remove_all(staging_, ec);  // a pid reused after a kill -9
    if (::mkdir(staging_.c_str(), 0700) != 0) {
        throw std::system_error(errno, std::generic_category(),
                                "cannot create " + staging_.string());
    }
}

StagingDir::~StagingDir() {
    if (committed_) {
        return;
    }
    std::error_code ec;
    // Read-only directories from the archive would stop remove_all() for a non-root user.
    for (auto it = fs::recursive_directory_iterator(staging_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec) && !it->is_symlink(ec)) {
            make_writable(it->path());
        }
    }
    make_writable(staging_);
    fs::remove_all(staging_, ec);
    if (created_target_) {
        (void)::rmdir(target_.c_str());  // only if still empty
    } else {
        (void)::utimensat(AT_FDCWD, target_.c_str(), target_times_, 0);
    }
}

void StagingDir::commit(Overwrite overwrite) {
    if (overwrite == Overwrite::kNo) {
        if (auto c = first_conflict(staging_, target_)) {
            throw RestoreError(
                RestoreError::Kind::kRefused,
                fmt::format("refusing to overwrite existing {} (use --overwrite)", c->string()));
        }
    }
    merge(staging_, target_);
    check(::rmdir(staging_.c_str()), "cannot remove " + staging_.string());
    committed_ = true;
}

}  // namespace mlk::backup
