#include "mlkeeper/util/sha256.hpp"

#include <fcntl.h>
#include <openssl/evp.h>

#include <cerrno>
#include <new>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace mlk::util {
namespace {

constexpr std::size_t kFileChunk = std::size_t{1} << 20;

}  // namespace

void Sha256::CtxDeleter::operator()(evp_md_ctx_st* ctx) const noexcept {
    EVP_MD_CTX_free(ctx);
}

Sha256::Sha256() {
    reset();
}

Sha256::~Sha256() = default;

Sha256::Sha256(Sha256&& other) noexcept
    : ctx_(std::move(other.ctx_)), finished_(std::exchange(other.finished_, true)) {}

Sha256& Sha256::operator=(Sha256&& other) noexcept {
    if (this != &other) {
        ctx_ = std::move(other.ctx_);
        finished_ = std::exchange(other.finished_, true);
    }
    return *this;
}

void Sha256::reset() {
    if (!ctx_) {
        ctx_.reset(EVP_MD_CTX_new());
        if (!ctx_) {
            throw std::bad_alloc();
        }
    }
    if (EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("SHA-256: EVP_DigestInit_ex failed");
    }
    finished_ = false;
}

void Sha256::update(const void* data, std::size_t n) {
    if (finished_ || !ctx_) {
        throw std::logic_error("Sha256::update after finish() without reset()");
    }
    if (n == 0) {
        return;
    }
    if (EVP_DigestUpdate(ctx_.get(), data, n) != 1) {
        throw std::runtime_error("SHA-256: EVP_DigestUpdate failed");
    }
}

Sha256::Digest Sha256::finish() {
    if (finished_ || !ctx_) {
        throw std::logic_error("Sha256::finish called twice without reset()");
    }
    Digest out{};
    unsigned int len = 0;
    // Marked finished first: after a failed EVP_DigestFinal_ex the context is unusable anyway.
    finished_ = true;
    if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1 || len != out.size()) {
        throw std::runtime_error("SHA-256: EVP_DigestFinal_ex failed");
    }
    return out;
}

std::string Sha256::finish_hex() {
    const Digest d = finish();
    return to_hex(d);
}

std::string sha256_hex(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.finish_hex();
}

std::string sha256_file_hex(const std::filesystem::path& p, const FsOps& ops) {
    int fd;
    do {
        fd = ops.open(p.c_str(), O_RDONLY | O_CLOEXEC, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "cannot open " + p.string());
    }
    // Closing a read-only fd reports nothing worth acting on.
    struct Closer {
        const FsOps& ops;
        int fd;
        ~Closer() { ops.close(fd); }
    } closer{ops, fd};

    // Heap buffer: 1 MiB is too much for a thread's stack.
    const auto buf = std::make_unique_for_overwrite<unsigned char[]>(kFileChunk);
    Sha256 h;
    for (;;) {
        const ssize_t n = ops.read(fd, buf.get(), kFileChunk);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "cannot read " + p.string());
        }
        if (n == 0) {
            break;
        }
        h.update(buf.get(), static_cast<std::size_t>(n));
    }
    return h.finish_hex();
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.resize(bytes.size() * 2);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        out[2 * i] = kDigits[bytes[i] >> 4];
        out[2 * i + 1] = kDigits[bytes[i] & 0x0F];
    }
    return out;
}

}  // namespace mlk::util
