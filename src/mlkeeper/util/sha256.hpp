// SHA-256 through OpenSSL's EVP interface, which uses the CPU's SHA extensions where present.
// Thread safety: a Sha256 object belongs to one thread; the free functions are safe from any
// thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "mlkeeper/util/fs_ops.hpp"

// Forward declaration so callers need no OpenSSL headers.
struct evp_md_ctx_st;

namespace mlk::util {

// An incremental SHA-256. After finish() the object must be reset() before it is used again;
// update() or finish() in between throws std::logic_error (a second digest of a finished context
// would silently be wrong). A moved-from object behaves like a finished one.
// OpenSSL failures (only allocation in practice) throw std::runtime_error / std::bad_alloc.
class Sha256 {
  public:
    static constexpr std::size_t kDigestSize = 32;
    using Digest = std::array<std::uint8_t, kDigestSize>;

    Sha256();
    ~Sha256();
    Sha256(Sha256&& other) noexcept;
    Sha256& operator=(Sha256&& other) noexcept;
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(const void* data, std::size_t n);
    void update(std::string_view s) { update(s.data(), s.size()); }

    Digest finish();
    std::string finish_hex();  // lower-case hex

    // Starts a new digest; valid in any state, including after a move.
    void reset();

  private:
    struct CtxDeleter {
        void operator()(evp_md_ctx_st* ctx) const noexcept;
    };
    std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx_;
    bool finished_ = false;
};

// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

// Lower-case hex SHA-256 of a file's content, read in 1 MiB chunks (constant memory).
// Throws std::system_error naming the path if the file cannot be opened or read.
std::string sha256_file_hex(const std::filesystem::path& p, const FsOps& ops = real_fs_ops());

// Lower-case hex of arbitrary bytes.
std::string to_hex(std::span<const std::uint8_t> bytes);

}  // namespace mlk::util
