// Test helper (only for the cleanup *_test.cpp files): a temporary directory tree with files of
// chosen sizes and ages, removed (and any test mount unmounted) on destruction.
// Thread safety: one per test.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mlk::cleanup::testing {

inline constexpr std::chrono::hours kDay{24};

class TempTree {
  public:
    TempTree() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "mlk-cleanup-XXXXXX").string();
        char* d = ::mkdtemp(tmpl.data());
        if (d == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        root_ = std::filesystem::canonical(d);
        ::chmod(root_.c_str(), 0755);  // dropped-privilege children must get in
        now_ = std::chrono::system_clock::now();
    }
    ~TempTree() {
        for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
            ::umount2(it->c_str(), MNT_DETACH);
        }
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
    }
    TempTree(const TempTree&) = delete;
    TempTree& operator=(const TempTree&) = delete;

    const std::filesystem::path& root() const { return root_; }
    std::chrono::system_clock::time_point now() const { return now_; }
    std::filesystem::path operator/(const std::string& rel) const { return root_ / rel; }

    // A file `rel` of `size` bytes whose mtime is `age` before now().
    std::filesystem::path file(const std::string& rel, std::chrono::seconds age,
                               std::size_t size = 10) const {
        auto p = root_ / rel;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << std::string(size, 'x');
        set_age(p, age);
        return p;
    }
    void set_age(const std::filesystem::path& p, std::chrono::seconds age) const {
        auto t = std::chrono::system_clock::to_time_t(now_ - age);
        struct timespec ts[2] = {{t, 0}, {t, 0}};
        ::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW);
    }
    std::filesystem::path dir(const std::string& rel) const {
        std::filesystem::create_directories(root_ / rel);
        return root_ / rel;
    }
    // Mounts a tmpfs at rel; false when this environment does not allow it.
    bool mount_tmpfs(const std::string& rel) {
        auto p = dir(rel);
        if (::mount("none", p.c_str(), "tmpfs", 0, "size=4m") != 0) {
            return false;
        }
        mounts_.push_back(p);
        return true;
    }

  private:
    std::filesystem::path root_;
    std::chrono::system_clock::time_point now_;
    std::vector<std::filesystem::path> mounts_;
};

inline bool exists_nofollow(const std::filesystem::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace mlk::cleanup::testing
