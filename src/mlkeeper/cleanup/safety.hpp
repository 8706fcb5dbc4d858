// Guards that decide whether a cleanup root may be touched at all: path resolution (realpath, so
// `..` and symlinks cannot lead to /etc), the refusal list (system directories, users' homes, the
// backup destination) and opening a root without following any symlink.
// Thread safety: pure functions and RAII handles; a Fd is owned by one thread at a time.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace mlk::cleanup {

// Owns one file descriptor; closes it on destruction.
class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd();

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() noexcept;

  private:
    int fd_ = -1;
};

// Which roots are refused. A root is refused when it equals or contains (is an ancestor of) any
// `refused` path, or lies inside any `refused_inside` path, unless it equals an `allowed` path.
struct RootPolicy {
    std::vector<std::filesystem::path> refused;
    std::vector<std::filesystem::path> refused_inside;
    std::vector<std::filesystem::path> allowed;
};

// Home directories listed in a passwd file (all users; "/" and /nonexistent left out).
// A missing file yields an empty list.
std::vector<std::filesystem::path> home_dirs(const std::filesystem::path& passwd_file);

// The built-in policy: /, /home, /etc, /usr, /var, /boot, /bin, /lib, /lib64, /sbin, /root,
// /proc, /sys, /dev, /run, every home from `passwd_file` and `backup_dir` (also refused inside);
// `allow_roots` are resolved (realpath when they exist) before they are compared.
RootPolicy default_root_policy(const std::filesystem::path& backup_dir,
                               const std::vector<std::string>& allow_roots,
                               const std::filesystem::path& passwd_file = "/etc/passwd");

struct ResolvedRoot {
    std::filesystem::path resolved;  // realpath of the configured root when it exists
    bool missing = false;            // the root does not exist: nothing to do
    std::string refusal;             // non-empty: why the root may not be cleaned
};

// realpath()s `configured` (which must be absolute) and applies the policy to the result.
ResolvedRoot resolve_root(const std::filesystem::path& configured, const RootPolicy& policy);

// Opens an absolute, already resolved directory path one component at a time with
// O_NOFOLLOW|O_DIRECTORY, so a component swapped for a symlink after resolution is refused.
// Throws std::system_error naming the path (ELOOP/ENOTDIR for a symlink).
Fd open_dir_nofollow(const std::filesystem::path& abs);

// True when `inner` is `outer` or lies below it (both lexically normal, absolute).
bool is_within(const std::filesystem::path& inner, const std::filesystem::path& outer);

}  // namespace mlk::cleanup
