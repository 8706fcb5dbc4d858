// A temporary directory for one test, removed (recursively) when the test
// ends, plus small file helpers. Thread safety: one per test.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace mlk::testing {

class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

    // Writes `content` to path()/name (creating parent directories); returns the path.
    std::filesystem::path write(std::string_view name, std::string_view content) const;

  private:
    std::filesystem::path path_;
};

std::string slurp(const std::filesystem::path& p);

}  // namespace mlk::testing
