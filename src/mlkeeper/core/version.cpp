#include "mlkeeper/core/version.hpp"

#include "mlkeeper/core/curl_lib.hpp"

#include <archive.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <sqlite3.h>
#include <zlib.h>
#include <zstd.h>

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/version.h>
#include <toml++/toml.h>
#include <CLI/Version.hpp>
#include <nlohmann/json.hpp>

namespace mlk::core {

std::string version() {
    return MLK_VERSION;
}

std::string revision() {
    return MLK_GIT_HASH;
}

std::string version_text() {
    std::string out = fmt::format("mlkeeper {} (git {}, {} build)\n", MLK_VERSION, MLK_GIT_HASH,
                                  std::string(MLK_BUILD_TYPE).empty() ? "default" : MLK_BUILD_TYPE);
    try {
        const auto* curl_info = curl().version_info(CURLVERSION_NOW);
        out += fmt::format("  libcurl {}, {} (loaded on demand)\n", curl_info->version,
                           curl_info->ssl_version ? curl_info->ssl_version : "no TLS");
    } catch (const std::exception& e) {
        out += fmt::format("  libcurl: {}\n", e.what());
    }
    out += fmt::format("  openssl {}\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    out += fmt::format("  libarchive {}\n", archive_version_string());
    out += fmt::format("  zstd {}, zlib {}\n", ZSTD_versionString(), zlibVersion());
    out += fmt::format("  sqlite {}\n", sqlite3_libversion());
    out += fmt::format("  libsodium {}\n", sodium_version_string());
    out += fmt::format("  spdlog {}.{}.{}, fmt {}, toml++ {}.{}.{}, nlohmann-json {}.{}.{}\n",
                       SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH, FMT_VERSION,
                       TOML_LIB_MAJOR, TOML_LIB_MINOR, TOML_LIB_PATCH, NLOHMANN_JSON_VERSION_MAJOR,
                       NLOHMANN_JSON_VERSION_MINOR, NLOHMANN_JSON_VERSION_PATCH);
    out += fmt::format("  CLI11 {}, cpp-httplib {}\n", CLI11_VERSION, CPPHTTPLIB_VERSION);
    return out;
}

}  // namespace mlk::core
