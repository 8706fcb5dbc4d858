// A small real file system for full-disk tests: a tmpfs of a given size mounted for the life of
// the object (needs root, as CI runs). Thread safety: one per test.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

namespace mlk::testing {

class ScopedTmpfs {
  public:
    // Creates `dir` and mounts a tmpfs of `size` ("4m") there; nullptr when this environment
    // does not allow it (not root, no mount permission): the test should skip.
    static std::unique_ptr<ScopedTmpfs> mount(const std::filesystem::path& dir,
                                              const std::string& size);
    ~ScopedTmpfs();  // lazy unmount, so a file still open cannot keep it mounted
    ScopedTmpfs(const ScopedTmpfs&) = delete;
    ScopedTmpfs& operator=(const ScopedTmpfs&) = delete;

    const std::filesystem::path& path() const { return dir_; }

  private:
    explicit ScopedTmpfs(std::filesystem::path dir) : dir_(std::move(dir)) {}
    std::filesystem::path dir_;
};

}  // namespace mlk::testing
