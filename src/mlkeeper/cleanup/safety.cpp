#include "mlkeeper/cleanup/safety.hpp"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <system_error>

#include "mlkeeper/util/strings.hpp"

namespace mlk::cleanup {

Fd& Fd::operator=(Fd&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = o.release();
    }
    return *this;
}

Fd::~Fd() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

int Fd::release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
}

bool is_within(const std::filesystem::path& inner, const std::filesystem::path& outer) {
    auto i = inner.begin();
    for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
        if (o->empty()) {
            continue;  // trailing separator
        }
        if (i == inner.end() || *i != *o) {
            return false;
        }
    }
    return true;
}

std::vector<std::filesystem::path> home_dirs(const std::filesystem::path& passwd_file) {
    std::vector<std::filesystem::path> out;
    std::ifstream in(passwd_file);
    std::string line;
    while (std::getline(in, line)) {
        auto f = util::split(line, ':');
        if (f.size() < 7 || f[5].empty() || f[5][0] != '/') {
            continue;
        }
        std::filesystem::path home = std::filesystem::path(f[5]).lexically_normal();
        if (home == "/" || home == "/nonexistent") {
            continue;
        }
        out.push_back(home);
    }
    return out;
}

namespace {

std::filesystem::path resolve_if_exists(const std::filesystem::path& p) {
    std::unique_ptr<char, decltype(&::free)> r(::realpath(p.c_str(), nullptr), &::free);
    return r ? std::filesystem::path(r.get()) : p.lexically_normal();
}

}  // namespace

RootPolicy default_root_policy(const std::filesystem::path& backup_dir,
                               const std::vector<std::string>& allow_roots,
                               const std::filesystem::path& passwd_file) {
    RootPolicy p;
    for (const char* d : {"/", "/home", "/etc", "/usr", "/var", "/boot", "/bin", "/lib", "/lib64",
                          "/sbin", "/root", "/proc", "/sys", "/dev", "/run"}) {
        p.refused.emplace_back(d);
    }
    for (const char* d :
         {"/etc", "/usr", "/boot", "/bin", "/lib", "/lib64", "/sbin", "/proc", "/sys", "/dev"}) {
        p.refused_inside.emplace_back(d);
    }
    for (auto& h : home_dirs(passwd_file)) {
        p.refused.push_back(h);
        p.refused.push_back(resolve_if_exists(h));
    }
    if (!backup_dir.empty()) {
        p.refused.push_back(resolve_if_exists(backup_dir));
        p.refused_inside.push_back(resolve_if_exists(backup_dir));
    }
    for (const auto& a : allow_roots) {
        if (!a.empty()) {
            p.allowed.push_back(resolve_if_exists(a));
        }
    }
    return p;
}

ResolvedRoot resolve_root(const std::filesystem::path& configured, const RootPolicy& policy) {
    ResolvedRoot r;
    if (!configured.is_absolute()) {
        r.refusal = "root " + configured.string() + " is not an absolute path";
        return r;
    }
    std::unique_ptr<char, decltype(&::free)> real(::realpath(configured.c_str(), nullptr), &::free);
    if (!real) {
        if (errno == ENOENT || errno == ENOTDIR) {
            r.missing = true;
            r.resolved = configured.lexically_normal();
        } else {
            r.refusal = "cannot resolve " + configured.string() + ": " +
                        std::generic_category().message(errno);
        }
        return r;
    }
    r.resolved = real.get();
    for (const auto& a : policy.allowed) {
        if (r.resolved == a) {
            return r;
        }
    }
    std::string why = configured.string() == r.resolved.string()
                          ? r.resolved.string()
                          : configured.string() + " (resolves to " + r.resolved.string() + ")";
    for (const auto& bad : policy.refused) {
        if (is_within(bad, r.resolved)) {
            r.refusal = "refusing to clean " + why + ": it is or contains " + bad.string() +
                        " (add it to cleanup.allow_roots if this is really intended)";
            return r;
        }
    }
    for (const auto& bad : policy.refused_inside) {
        if (is_within(r.resolved, bad)) {
            r.refusal = "refusing to clean " + why + ": it lies inside " + bad.string() +
                        " (add it to cleanup.allow_roots if this is really intended)";
            return r;
        }
    }
    return r;
}

Fd open_dir_nofollow(const std::filesystem::path& abs) {
    if (!abs.is_absolute()) {
        throw std::system_error(EINVAL, std::generic_category(), "open " + abs.string());
    }
    Fd cur(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cur.valid()) {
        throw std::system_error(errno, std::generic_category(), "open /");
    }
    for (const auto& part : abs.relative_path()) {
        if (part.empty() || part == ".") {
            continue;
        }
        if (part == "..") {
            throw std::system_error(EINVAL, std::generic_category(), "open " + abs.string());
        }
        Fd next(::openat(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!next.valid()) {
            throw std::system_error(errno, std::generic_category(), "open " + abs.string());
        }
        cur = std::move(next);
    }
    return cur;
}

}  // namespace mlk::cleanup
