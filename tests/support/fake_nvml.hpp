// Test-only helpers for the gpu tests: where the fake NVML libraries are
// (built from tests/fixtures/fake_nvml by CMake, or MLKEEPER_TEST_FAKE_NVML) and a scenario file
// that lives as long as the test. Thread safety: they change the process environment; tests only.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace mlk::gpu::testing {

// MLKEEPER_TEST_FAKE_NVML names libfake_nvml.so; the variants sit beside it:
// libfake_nvml_nov3.so, libfake_nvml_v1.so, libfake_nvml_notemp.so. Empty when unset.
inline std::string fake_nvml_path(std::string_view variant = "") {
    const char* base = std::getenv("MLKEEPER_TEST_FAKE_NVML");
    if (base == nullptr || *base == '\0') {
#ifdef MLK_FAKE_NVML
        base = MLK_FAKE_NVML;
#else
        return {};
#endif
    }
    if (variant.empty()) {
        return base;
    }
    std::filesystem::path p(base);
    return (p.parent_path() / ("libfake_nvml_" + std::string(variant) + ".so")).string();
}

// Skips the test when the fake library is not configured, and fails it when a configured
// variant is missing (the build forgot it).
#define MLK_REQUIRE_FAKE_NVML(var, variant)                                             \
    const std::string var = ::mlk::gpu::testing::fake_nvml_path(variant);               \
    if (var.empty()) {                                                                  \
        GTEST_SKIP() << "MLKEEPER_TEST_FAKE_NVML is not set (path of libfake_nvml.so)"; \
    }                                                                                   \
    ASSERT_TRUE(std::filesystem::exists(var)) << var                                    \
                                              << " is missing: build the fake_nvml "    \
                                                 "variants"

// A scenario file in a fresh temporary directory, named by FAKE_NVML_SCENARIO while it lives;
// FAKE_NVML_INIT_LOG points at init.log beside it.
class Scenario {
  public:
    explicit Scenario(const std::string& text) {
        std::string tmpl = ::testing::TempDir() + "gpu_fake_XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        dir_ = tmpl;
        std::ofstream(dir_ / "scenario.txt") << text;
        ::setenv("FAKE_NVML_SCENARIO", (dir_ / "scenario.txt").c_str(), 1);
        ::setenv("FAKE_NVML_INIT_LOG", init_log().c_str(), 1);
    }
    ~Scenario() {
        ::unsetenv("FAKE_NVML_SCENARIO");
        ::unsetenv("FAKE_NVML_INIT_LOG");
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    Scenario(const Scenario&) = delete;
    Scenario& operator=(const Scenario&) = delete;

    const std::filesystem::path& dir() const { return dir_; }
    std::filesystem::path init_log() const { return dir_ / "init.log"; }
    std::string read_init_log() const {
        std::ifstream in(init_log());
        return std::string(std::istreambuf_iterator<char>(in), {});
    }

  private:
    std::filesystem::path dir_;
};

}  // namespace mlk::gpu::testing
