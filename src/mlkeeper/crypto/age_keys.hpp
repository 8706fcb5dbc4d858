// age X25519 keys: "age1..." recipients, "AGE-SECRET-KEY-1..." identities and the identity file
// age-keygen writes. Secrets are wiped from memory when the objects holding them go away.
// Thread safety: value types; a const object may be shared between threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mlk::crypto {

inline constexpr std::size_t kX25519KeySize = 32;

// Initialises libsodium once (thread-safe, idempotent); every entry point of this folder calls
// it, so callers need not. Throws std::runtime_error if libsodium cannot initialise.
void ensure_sodium();

// Overwrites memory in a way the compiler may not optimise away (sodium_memzero).
void secure_wipe(void* p, std::size_t n) noexcept;

// A fixed-size secret that wipes itself on destruction. Copies are independent secrets that wipe
// themselves too; a move copies (arrays cannot be moved) and wipes the source.
template <std::size_t N>
class SecretBytes {
  public:
    SecretBytes() = default;
    ~SecretBytes() { secure_wipe(bytes_.data(), N); }
    SecretBytes(const SecretBytes&) = default;
    SecretBytes& operator=(const SecretBytes&) = default;
    SecretBytes(SecretBytes&& other) noexcept : bytes_(other.bytes_) { other.wipe(); }
    SecretBytes& operator=(SecretBytes&& other) noexcept {
        if (this != &other) {
            bytes_ = other.bytes_;
            other.wipe();
        }
        return *this;
    }

    std::uint8_t* data() { return bytes_.data(); }
    const std::uint8_t* data() const { return bytes_.data(); }
    static constexpr std::size_t size() { return N; }
    void wipe() noexcept { secure_wipe(bytes_.data(), N); }

  private:
    std::array<std::uint8_t, N> bytes_{};
};

// A public key to encrypt to.
struct X25519Recipient {
    std::array<std::uint8_t, kX25519KeySize> key{};

    std::string to_string() const;  // "age1..." (lower case bech32)
    friend bool operator==(const X25519Recipient&, const X25519Recipient&) = default;
};

// "age1..." -> recipient. Throws std::invalid_argument (the message does not quote the input).
X25519Recipient parse_recipient(std::string_view s);

// A secret key to decrypt with.
class X25519Identity {
  public:
    static X25519Identity generate();
    // "AGE-SECRET-KEY-1..." (upper case, as age requires). Throws std::invalid_argument whose
    // message never contains the key.
    static X25519Identity parse(std::string_view s);

    std::string to_string() const;  // "AGE-SECRET-KEY-1..."; the caller owns the copy
    X25519Recipient recipient() const { return recipient_; }

    // X25519(secret, peer) into `out`. Returns false (and zeroes `out`) when the result is the
    // all-zero value, i.e. `peer` is a low-order point, which age must reject.
    bool shared_secret(const std::array<std::uint8_t, kX25519KeySize>& peer,
                       SecretBytes<kX25519KeySize>& out) const;

  private:
    X25519Identity() = default;
    void derive_recipient();

    SecretBytes<kX25519KeySize> secret_;
    X25519Recipient recipient_;
};

// Parses an identity file as age-keygen writes it ("# created: ...", "# public key: age1...",
// "AGE-SECRET-KEY-1..."): blank lines and lines starting with '#' are skipped, surrounding
// whitespace and a trailing CR are ignored, several keys are allowed. Throws
// std::invalid_argument naming the 1-based line ("identity file line 3: ...") for anything else,
// or when the file holds no identity.
std::vector<X25519Identity> parse_identity_file(std::string_view text);

// The text age-keygen writes for `id`: "# created: <created_iso8601>\n# public key: age1...\n
// AGE-SECRET-KEY-1...\n". Holds the secret: write it with mode 0600.
std::string identity_file_text(const X25519Identity& id, std::string_view created_iso8601);

}  // namespace mlk::crypto
