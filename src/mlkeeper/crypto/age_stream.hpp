// Streaming encryption and decryption in the age v1 format (age-encryption.org/v1): X25519 and
// scrypt (passphrase) recipients, 64 KiB ChaCha20-Poly1305 STREAM chunks; interoperates with the
// age CLI. Binary format only (no ASCII armor), no plugins.
// Thread safety: an AgeEncryptor/AgeDecryptor belongs to one thread; free functions are safe
// from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlkeeper/crypto/age_keys.hpp"

namespace mlk::crypto {

inline constexpr std::size_t kAgeChunkSize = 64 * 1024;  // plaintext bytes per STREAM chunk
inline constexpr std::size_t kAgeTagSize = 16;
inline constexpr std::size_t kAgeFileKeySize = 16;
inline constexpr std::size_t kAgeNonceSize = 16;
inline constexpr std::size_t kAgeMaxHeaderSize = 1024 * 1024;

// A failure to decrypt. The message is one line and never holds key material or plaintext.
class AgeError : public std::runtime_error {
  public:
    enum class Kind {
        kNoIdentityMatched,  // no given identity (or no passphrase) opens the file
        kBadPassphrase,      // the scrypt stanza did not open with the given passphrase
        kMalformed,          // not age v1, bad header syntax, unsupported or over-limit values,
                             // data after the final chunk, an empty final chunk after data
        kTampered,           // header MAC or a full-size chunk failed authentication
        kTruncated,          // the file ends early: inside the header or nonce, at a chunk
                             // boundary without a final chunk, or inside a chunk (see below)
    };
    AgeError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const { return kind_; }

  private:
    Kind kind_;
};

const char* to_string(AgeError::Kind kind);

struct EncryptTo {
    std::vector<X25519Recipient> recipients;
    // A passphrase (scrypt stanza) must be the only recipient, as the spec requires.
    std::optional<std::string> passphrase;
    int scrypt_log_n = 18;  // age's default; 1..30
};

// Encrypts a stream: the header and the payload nonce go to the sink in the constructor, then
// 64 KiB chunks as write() fills them. A chunk is only sealed once it is known whether more data
// follows (the final chunk carries a flag), so at most one chunk is buffered.
// Usage errors (no recipient, passphrase mixed with recipients, bad work factor, low-order
// recipient key, write after finish) throw std::invalid_argument / std::logic_error; exceptions
// from the sink propagate and leave the encryptor unusable.
class AgeEncryptor {
  public:
    using Sink = std::function<void(const void*, std::size_t)>;

    AgeEncryptor(const EncryptTo& to, Sink out);
    AgeEncryptor(AgeEncryptor&&) = default;
    AgeEncryptor& operator=(AgeEncryptor&&) = default;
    AgeEncryptor(const AgeEncryptor&) = delete;
    AgeEncryptor& operator=(const AgeEncryptor&) = delete;
    ~AgeEncryptor() = default;

    void write(const void* data, std::size_t n);
    // Seals the final chunk (empty only when no data was written, as the spec requires). Without
    // finish() the output is a truncated file that decryption rejects.
    void finish();

    std::uint64_t bytes_out() const { return bytes_out_; }  // header + nonce + chunks so far
    std::uint64_t header_size() const { return header_size_; }
    // This file's key, for checking the file just written without the recipients' identities
    // (DecryptWith::file_key). Keep it in memory only; it decrypts this one file.
    const SecretBytes<kAgeFileKeySize>& file_key() const { return file_key_; }

  private:
    void seal(const std::uint8_t* plain, std::size_t n, bool last);
    void emit(const void* p, std::size_t n);

    Sink out_;
    SecretBytes<kAgeFileKeySize> file_key_;
    SecretBytes<32> payload_key_;
    std::array<std::uint8_t, 12> nonce_{};  // 11-byte big-endian counter + last-chunk flag
    std::vector<std::uint8_t> plain_;       // pending plaintext (kAgeChunkSize bytes)
    std::size_t plain_len_ = 0;             // at most one chunk, never sealed before more data
    std::vector<std::uint8_t> sealed_;      // one sealed chunk
    std::uint64_t bytes_out_ = 0;
    std::uint64_t header_size_ = 0;
    enum class State { kOpen, kFinished, kBroken } state_ = State::kOpen;
};

struct DecryptWith {
    std::vector<X25519Identity> identities;
    std::optional<std::string> passphrase;
    // Work factors above this are rejected (kMalformed) before any scrypt work: 2^22 takes
    // about 4 GiB and seconds, which bounds what a hostile file can cost.
    int max_scrypt_log_n = 22;
    // The file key itself (AgeEncryptor::file_key()), used instead of the stanzas; the header
    // MAC is still checked. Not owned: must outlive the decryptor's constructor.
    const SecretBytes<kAgeFileKeySize>* file_key = nullptr;
};

// Decrypts a stream pulled from `in` (returns up to `cap` bytes, 0 at end of input).
// The constructor reads and authenticates the header (throws AgeError); read() then returns
// plaintext only from chunks that authenticated, and 0 only after the authenticated final chunk
// with nothing after it. Exceptions from the source propagate. After an AgeError every further
// read() throws the same error.
// A file cut inside a chunk and a file whose short last chunk was modified look the same (a
// short final piece whose tag fails): no key can tell them apart, and both are reported as
// kTruncated ("truncated or corrupted"). A modified full-size chunk is kTampered; a file cut
// exactly at a chunk boundary is kTruncated.
// With cap >= kAgeChunkSize a chunk is opened straight into `buf` (no copy); if read() throws,
// `buf` holds zeros or authenticated data, never plaintext of a chunk that failed.
class AgeDecryptor {
  public:
    using Source = std::function<std::size_t(void* buf, std::size_t cap)>;

    AgeDecryptor(Source in, const DecryptWith& with);
    AgeDecryptor(AgeDecryptor&&) = default;
    AgeDecryptor& operator=(AgeDecryptor&&) = default;
    AgeDecryptor(const AgeDecryptor&) = delete;
    AgeDecryptor& operator=(const AgeDecryptor&) = delete;
    ~AgeDecryptor() = default;

    std::size_t read(void* buf, std::size_t cap);

    // The header's stanza types in order, e.g. {"X25519", "X25519"} or {"scrypt"}.
    const std::vector<std::string>& stanza_types() const { return stanza_types_; }
    std::uint64_t header_size() const { return header_size_; }
    bool finished() const { return done_ && plain_pos_ == plain_len_; }

  private:
    void fill_ciphertext();
    // Opens the next chunk into `out` (room for kAgeChunkSize bytes); returns its size.
    std::size_t open_next_chunk(std::uint8_t* out);
    [[noreturn]] void fail(AgeError::Kind kind, const std::string& message);

    Source in_;
    SecretBytes<32> payload_key_;
    std::array<std::uint8_t, 12> nonce_{};
    std::vector<std::uint8_t> cipher_;  // one sealed chunk + 1 byte of look-ahead
    std::size_t cipher_len_ = 0;
    bool eof_ = false;
    std::vector<std::uint8_t> plain_;  // the last opened chunk
    std::size_t plain_pos_ = 0;
    std::size_t plain_len_ = 0;
    std::uint64_t chunks_opened_ = 0;
    bool done_ = false;
    std::optional<AgeError> error_;
    std::vector<std::string> stanza_types_;
    std::uint64_t header_size_ = 0;
};

// The stanza types of a file's header without decrypting (X25519 stanzas show only an
// ephemeral share, so the recipients themselves cannot be listed). Reads the header from `in`,
// checks its syntax (not its MAC: that needs the key) and throws AgeError as the decryptor would.
std::vector<std::string> age_stanza_types(const AgeDecryptor::Source& in);

}  // namespace mlk::crypto
