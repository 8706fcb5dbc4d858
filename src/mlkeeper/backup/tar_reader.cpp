#include "mlkeeper/backup/tar_reader.hpp"

#include "mlkeeper/backup/encryption.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace mlk::backup {
namespace {
constexpr std::size_t kBufSize = 1 << 20;
// Decompressed bytes read ahead: enough to ride out a slow entry, small
// enough for the constant-memory promise.
constexpr std::size_t kReadAheadChunks = 4;
}  // namespace

TarReader::Fd::~Fd() {
    if (fd >= 0) {
        ::close(fd);
    }
}

void TarReader::ArchiveFree::operator()(struct archive* a) const {
    archive_read_free(a);
}

TarReader::TarReader(const std::filesystem::path& archive, const crypto::DecryptWith* keys,
                     std::string_view name, RawHash raw_hash)
    : path_(archive),
      raw_hash_(raw_hash),
      raw_pipe_(kReadAheadChunks, kBufSize),
      plain_pipe_(kReadAheadChunks, kBufSize),
      pipe_(kReadAheadChunks, kBufSize) {
    const std::string shown = name.empty() ? archive.filename().string() : std::string(name);
    const bool encrypted = is_encrypted_name(shown);
    if (encrypted && (keys == nullptr || (keys->identities.empty() && !keys->passphrase &&
                                          keys->file_key == nullptr))) {
        throw NoKeyError(shown +
                         " is encrypted and no key is configured (set [backup] identity_file or "
                         "MLKEEPER_AGE_IDENTITY, or encrypt_passphrase_file)");
    }
    fd_.fd = ::open(archive.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_.fd < 0) {
        throw std::system_error(errno, std::generic_category(), "cannot open " + archive.string());
    }
    (void)::posix_fadvise(fd_.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    raw_reader_ = std::jthread([this] { read_raw(); });
    try {
        if (encrypted) {
            age_ = std::make_unique<crypto::AgeDecryptor>(
                [this](void* buf, std::size_t cap) { return next_raw(buf, cap); }, *keys);
            decrypt_ahead_ = std::jthread([this] { decrypt_ahead(); });
            decomp_ = std::make_unique<Decompressor>(
                [this](void* buf, std::size_t cap) { return next_plain(buf, cap); });
        } else {
            decomp_ = std::make_unique<Decompressor>(
                [this](void* buf, std::size_t cap) { return next_raw(buf, cap); });
        }
        read_ahead_ = std::jthread([this] { read_ahead(); });
        a_.reset(archive_read_new());
        archive_read_support_format_tar(a_.get());
        check(archive_read_open(a_.get(), this, nullptr, &TarReader::read_cb, nullptr),
              "cannot read the tar stream");
    } catch (...) {
        // No destructor runs: unblock the threads before they are joined.
        pipe_.cancel();
        plain_pipe_.cancel();
        raw_pipe_.cancel();
        throw;
    }
}

TarReader::~TarReader() {
    // Every thread unwinds (PipeCancelled); the jthreads join them.
    pipe_.cancel();
    plain_pipe_.cancel();
    raw_pipe_.cancel();
}

void TarReader::read_raw() {
    try {
        for (;;) {
            util::Chunk c = raw_pipe_.acquire();
            ssize_t n = ::read(fd_.fd, c.data.get(), c.capacity);
            if (n < 0 && errno == EINTR) {
                raw_pipe_.release(std::move(c));
                continue;
            }
            if (n < 0) {
                throw std::system_error(errno, std::generic_category(),
                                        "cannot read " + path_.string());
            }
            if (n == 0) {
                raw_pipe_.release(std::move(c));
                raw_pipe_.close();
                return;
            }
            c.size = static_cast<std::size_t>(n);
            if (raw_hash_ == RawHash::kCompute) {
                raw_sha_.update(c.data.get(), c.size);
            }
            raw_bytes_ += c.size;
            raw_pipe_.push(std::move(c));
        }
    } catch (const util::PipeCancelled&) {
        return;
    } catch (...) {
        raw_pipe_.close(std::current_exception());
    }
}

namespace {

// Copies up to `cap` bytes out of the chunks of `pipe` (`current`/`offset`: the chunk being read
// and how far); 0 at the end of the stream.
std::size_t pull(util::ChunkPipe& pipe, std::optional<util::Chunk>& current, std::size_t& offset,
                 void* buf, std::size_t cap) {
    if (current && offset == current->size) {
        pipe.release(std::move(*current));
        current.reset();
    }
    if (!current) {
        current = pipe.pop();
        offset = 0;
        if (!current) {
            return 0;
        }
    }
    const std::size_t k = std::min(cap, current->size - offset);
    std::memcpy(buf, current->data.get() + offset, k);
    offset += k;
    return k;
}

}  // namespace

std::size_t TarReader::next_raw(void* buf, std::size_t cap) {
    return pull(raw_pipe_, raw_current_, raw_offset_, buf, cap);
}

std::size_t TarReader::next_plain(void* buf, std::size_t cap) {
    return pull(plain_pipe_, plain_current_, plain_offset_, buf, cap);
}

void TarReader::decrypt_ahead() {
    try {
        for (;;) {
            util::Chunk c = plain_pipe_.acquire();
            // Whole chunks: a decrypted piece is one 64 KiB age chunk at most.
            while (c.size < c.capacity) {
                const std::size_t n = age_->read(c.data.get() + c.size, c.capacity - c.size);
                if (n == 0) {
                    break;
                }
                c.size += n;
            }
            if (c.size == 0) {
                plain_pipe_.release(std::move(c));
                plain_pipe_.close();
                return;
            }
            plain_pipe_.push(std::move(c));
        }
    } catch (const util::PipeCancelled&) {
        return;
    } catch (...) {
        plain_pipe_.close(std::current_exception());
    }
}

void TarReader::read_ahead() {
    try {
        for (;;) {
            util::Chunk c = pipe_.acquire();
            c.size = decomp_->read(c.data.get(), c.capacity);
            if (c.size == 0) {
                pipe_.release(std::move(c));
                pipe_.close();
                return;
            }
            pipe_.push(std::move(c));
        }
    } catch (const util::PipeCancelled&) {
        return;
    } catch (...) {
        pipe_.close(std::current_exception());
    }
}

long TarReader::read_cb(struct archive*, void* self, const void** buf) {
    auto* r = static_cast<TarReader*>(self);
    try {
        if (r->current_) {
            r->pipe_.release(std::move(*r->current_));
            r->current_.reset();
        }
        r->current_ = r->pipe_.pop();
        if (!r->current_) {
            return 0;
        }
        *buf = r->current_->data.get();
        return static_cast<long>(r->current_->size);
    } catch (...) {
        r->callback_error_ = std::current_exception();
        return -1;
    }
}

void TarReader::check(int rc, const char* what) {
    if (rc >= ARCHIVE_WARN) {
        return;
    }
    if (callback_error_) {
        auto e = callback_error_;
        callback_error_ = nullptr;
        std::rethrow_exception(e);
    }
    const char* msg = archive_error_string(a_.get());
    throw std::runtime_error(std::string(what) + ": " +
                             (msg != nullptr ? msg : "corrupt tar data"));
}

archive_entry* TarReader::next() {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(a_.get(), &e);
    if (rc == ARCHIVE_EOF) {
        return nullptr;
    }
    check(rc, "corrupt tar header");
    return e;
}

bool TarReader::read_block(const void** buf, std::size_t* size, std::int64_t* offset) {
    la_int64_t off = 0;
    int rc = archive_read_data_block(a_.get(), buf, size, &off);
    if (rc == ARCHIVE_EOF) {
        return false;
    }
    check(rc, "corrupt file data");
    *offset = off;
    return true;
}

std::uint64_t TarReader::read_data(std::uint64_t entry_size,
                                   const std::function<void(const char*, std::size_t)>& sink) {
    static const std::unique_ptr<char[]> zeros(new char[kBufSize]());
    std::uint64_t pos = 0;
    const void* buf = nullptr;
    std::size_t size = 0;
    std::int64_t offset = 0;
    auto fill = [&](std::uint64_t upto) {
        while (pos < upto) {
            auto k = static_cast<std::size_t>(std::min<std::uint64_t>(upto - pos, kBufSize));
            sink(zeros.get(), k);
            pos += k;
        }
    };
    while (read_block(&buf, &size, &offset)) {
        fill(static_cast<std::uint64_t>(offset));
        if (size > 0) {
            sink(static_cast<const char*>(buf), size);
            pos += size;
        }
    }
    fill(entry_size);  // a sparse file may end in a hole
    return pos;
}

std::string TarReader::finish() {
    // Drain the tar's trailing blocks and anything after them.
    archive_entry* entry = nullptr;
    while (archive_read_next_header(a_.get(), &entry) == ARCHIVE_OK) {
    }
    if (callback_error_) {
        auto err = callback_error_;
        callback_error_ = nullptr;
        std::rethrow_exception(err);
    }
    if (current_) {
        pipe_.release(std::move(*current_));
        current_.reset();
    }
    while (auto c = pipe_.pop()) {
        pipe_.release(std::move(*c));
    }
    read_ahead_.join();
    if (decrypt_ahead_.joinable()) {
        decrypt_ahead_.join();
    }
    raw_reader_.join();  // it closed its pipe before the decompressor saw the end
    return raw_hash_ == RawHash::kCompute ? raw_sha_.finish_hex() : std::string();
}

}  // namespace mlk::backup
