#include "mlkeeper/crypto/age_stream.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string_view>

namespace mlk::crypto {
namespace {

using Kind = AgeError::Kind;
using Bytes = std::span<const std::uint8_t>;

constexpr std::string_view kVersionLine = "age-encryption.org/v1";
constexpr std::string_view kVersionPrefix = "age-encryption.org/";
constexpr std::string_view kArmorBegin = "-----BEGIN AGE ENCRYPTED FILE-----";
constexpr std::string_view kX25519Label = "age-encryption.org/v1/X25519";
constexpr std::string_view kScryptLabel = "age-encryption.org/v1/scrypt";
constexpr std::size_t kColumns = 64;
constexpr std::size_t kSealedChunk = kAgeChunkSize + kAgeTagSize;
constexpr std::size_t kScryptSaltSize = 16;
constexpr std::size_t kWrappedKeySize = kAgeFileKeySize + kAgeTagSize;
constexpr std::size_t kMacSize = 32;
constexpr std::size_t kHeaderReadBlock = 4096;
constexpr int kMaxEncryptLogN = 30;

static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == 32);
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12);
static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == kAgeTagSize);

Bytes as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// ---- primitives (OpenSSL for HKDF/HMAC/scrypt, libsodium for X25519/AEAD/base64) ----

struct KdfDeleter {
    void operator()(EVP_KDF* k) const noexcept { EVP_KDF_free(k); }
    void operator()(EVP_KDF_CTX* c) const noexcept { EVP_KDF_CTX_free(c); }
};

void hkdf_sha256(Bytes ikm, Bytes salt, std::string_view info, SecretBytes<32>& out) {
    std::unique_ptr<EVP_KDF, KdfDeleter> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
    if (!kdf) {
        throw std::runtime_error("OpenSSL: HKDF is not available");
    }
    std::unique_ptr<EVP_KDF_CTX, KdfDeleter> ctx(EVP_KDF_CTX_new(kdf.get()));
    if (!ctx) {
        throw std::bad_alloc();
    }
    char digest[] = "SHA256";
    OSSL_PARAM params[5];
    std::size_t i = 0;
    params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[i++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(ikm.data()), ikm.size());
    if (!salt.empty()) {  // an absent salt is HashLen zero bytes (RFC 5869), as age expects
        params[i++] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_SALT, const_cast<std::uint8_t*>(salt.data()), salt.size());
    }
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                    const_cast<char*>(info.data()), info.size());
    params[i] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
        throw std::runtime_error("OpenSSL: HKDF-SHA256 failed");
    }
}

std::array<std::uint8_t, kMacSize> hmac_sha256(const SecretBytes<32>& key, Bytes data) {
    std::array<std::uint8_t, kMacSize> mac{};
    std::size_t len = 0;
    if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(), data.data(),
                  data.size(), mac.data(), mac.size(), &len) == nullptr ||
        len != mac.size()) {
        throw std::runtime_error("OpenSSL: HMAC-SHA256 failed");
    }
    return mac;
}

void scrypt_key(std::string_view passphrase, Bytes salt, int log_n, SecretBytes<32>& out) {
    std::vector<std::uint8_t> full_salt(kScryptLabel.begin(), kScryptLabel.end());
    full_salt.insert(full_salt.end(), salt.begin(), salt.end());
    const std::uint64_t n = std::uint64_t{1} << log_n;
    constexpr std::uint64_t kR = 8;
    // OpenSSL's default limit is 32 MiB; allow what this N needs (128 * r * (N + 2) + slack).
    const std::uint64_t maxmem = 128 * kR * (n + 2) + (1U << 20);
    if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(), full_salt.data(), full_salt.size(), n,
                       kR, 1, maxmem, out.data(), out.size()) != 1) {
        throw std::runtime_error("OpenSSL: scrypt failed (out of memory?)");
    }
}

// ChaCha20-Poly1305 through OpenSSL's EVP: its assembly (AVX2/AVX-512) runs about twice as fast
// as libsodium's portable code here, and the payload is every byte of a backup. One context per
// thread, re-keyed per chunk.
EVP_CIPHER_CTX* aead_ctx() {
    struct Ctx {
        EVP_CIPHER_CTX* p = EVP_CIPHER_CTX_new();
        ~Ctx() { EVP_CIPHER_CTX_free(p); }
    };
    thread_local Ctx ctx;
    if (ctx.p == nullptr) {
        throw std::bad_alloc();
    }
    return ctx.p;
}

// Seals/opens with a caller-built nonce; `out` holds n + 16 (seal) or n - 16 (open) bytes.
void aead_seal(const SecretBytes<32>& key, const std::uint8_t* nonce, const std::uint8_t* in,
               std::size_t n, std::uint8_t* out) {
    EVP_CIPHER_CTX* c = aead_ctx();
    int len = 0;
    int fin = 0;
    if (EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), nullptr, key.data(), nonce) != 1 ||
        EVP_EncryptUpdate(c, out, &len, in, static_cast<int>(n)) != 1 ||
        EVP_EncryptFinal_ex(c, out + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, kAgeTagSize, out + n) != 1) {
        throw std::runtime_error("OpenSSL: ChaCha20-Poly1305 encryption failed");
    }
}

// OpenSSL checks the tag only at the end, so on a mismatch `out` is zeroed: no unauthenticated
// plaintext ever leaves this function.
bool aead_open(const SecretBytes<32>& key, const std::uint8_t* nonce, const std::uint8_t* in,
               std::size_t n, std::uint8_t* out) {
    if (n < kAgeTagSize) {
        return false;
    }
    const std::size_t m = n - kAgeTagSize;
    EVP_CIPHER_CTX* c = aead_ctx();
    int len = 0;
    int fin = 0;
    std::uint8_t tag[kAgeTagSize];
    std::memcpy(tag, in + m, kAgeTagSize);
    const bool ok =
        EVP_DecryptInit_ex(c, EVP_chacha20_poly1305(), nullptr, key.data(), nonce) == 1 &&
        EVP_DecryptUpdate(c, out, &len, in, static_cast<int>(m)) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kAgeTagSize, tag) == 1 &&
        EVP_DecryptFinal_ex(c, out + len, &fin) == 1;
    if (!ok) {
        OPENSSL_cleanse(out, m);
        ERR_clear_error();
    }
    return ok;
}

constexpr std::array<std::uint8_t, 12> kZeroNonce{};

std::string b64_encode(Bytes in) {
    constexpr int kVariant = sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    std::string out(sodium_base64_ENCODED_LEN(in.size(), kVariant), '\0');
    sodium_bin2base64(out.data(), out.size(), in.data(), in.size(), kVariant);
    out.pop_back();  // the terminating NUL
    return out;
}

// Strict: standard alphabet, no padding, no whitespace, canonical (unused bits zero; the
// re-encoding must give back the input).
std::optional<std::vector<std::uint8_t>> b64_decode(std::string_view s) {
    std::vector<std::uint8_t> out(s.size() * 3 / 4 + 1);
    std::size_t len = 0;
    if (sodium_base642bin(out.data(), out.size(), s.data(), s.size(), nullptr, &len, nullptr,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0) {
        return std::nullopt;
    }
    out.resize(len);
    if (b64_encode(out) != s) {
        return std::nullopt;
    }
    return out;
}

// ---- header ----

struct Stanza {
    std::vector<std::string> args;  // args[0] is the type
    std::vector<std::uint8_t> body;
};

struct Header {
    std::vector<Stanza> stanzas;
    std::array<std::uint8_t, kMacSize> mac{};
    std::string text;               // everything up to and including the MAC line's '\n'
    std::size_t mac_input_len = 0;  // through "---"
    std::string leftover;           // payload bytes read past the header
};

[[noreturn]] void bad(Kind kind, const std::string& message) {
    throw AgeError(kind, message);
}

bool is_vchar(char c) {
    return c >= 0x21 && c <= 0x7e;
}

class HeaderReader {
  public:
    explicit HeaderReader(const AgeDecryptor::Source& in) : in_(in) {}

    // The next line without its '\n'; the header must be printable ASCII.
    std::string_view next_line() {
        std::size_t nl;
        while ((nl = buf_.find('\n', pos_)) == std::string::npos) {
            if (pos_ == 0) {
                check_magic();
            }
            if (buf_.size() >= kAgeMaxHeaderSize) {
                bad(Kind::kMalformed, "age header is larger than 1 MiB");
            }
            if (!more()) {
                if (buf_.empty()) {
                    bad(Kind::kTruncated, "the age file is empty");
                }
                bad(Kind::kTruncated, "the age file ends inside its header");
            }
        }
        const std::string_view line = std::string_view(buf_).substr(pos_, nl - pos_);
        for (char c : line) {
            if (c != ' ' && !is_vchar(c)) {
                bad(Kind::kMalformed, "age header holds an invalid character (not ASCII, or CR)");
            }
        }
        line_start_ = pos_;
        pos_ = nl + 1;
        return line;
    }
    std::size_t line_start() const { return line_start_; }
    std::size_t pos() const { return pos_; }
    std::string& buffer() { return buf_; }

    // Fails fast on input that is plainly not an age file, before reading a whole "line".
    void check_magic() const {
        const std::string_view have = std::string_view(buf_).substr(0, kVersionPrefix.size());
        if (!kVersionPrefix.starts_with(have)) {
            const std::string_view armor = std::string_view(buf_).substr(0, kArmorBegin.size());
            if (kArmorBegin.starts_with(armor) && !armor.empty()) {
                bad(Kind::kMalformed, "ASCII-armored age files are not supported");
            }
            bad(Kind::kMalformed, "not an age file (no age-encryption.org/v1 header)");
        }
    }

  private:
    bool more() {
        const std::size_t old = buf_.size();
        buf_.resize(old + kHeaderReadBlock);
        std::size_t n = 0;
        try {
            n = in_(buf_.data() + old, kHeaderReadBlock);
        } catch (...) {
            buf_.resize(old);
            throw;
        }
        buf_.resize(old + std::min(n, kHeaderReadBlock));
        return n > 0;
    }

    const AgeDecryptor::Source& in_;
    std::string buf_;
    std::size_t pos_ = 0;
    std::size_t line_start_ = 0;
};

std::vector<std::string> split_args(std::string_view s) {
    std::vector<std::string> args;
    while (true) {
        const std::size_t sp = s.find(' ');
        const std::string_view a = s.substr(0, sp);
        if (a.empty()) {
            bad(Kind::kMalformed, "age header: empty stanza argument");
        }
        args.emplace_back(a);
        if (sp == std::string_view::npos) {
            return args;
        }
        s.remove_prefix(sp + 1);
    }
}

Header read_header(const AgeDecryptor::Source& in) {
    HeaderReader r(in);
    Header h;
    const std::string_view version = r.next_line();
    if (version != kVersionLine) {
        if (version.starts_with(kArmorBegin)) {
            bad(Kind::kMalformed, "ASCII-armored age files are not supported");
        }
        if (version.starts_with(kVersionPrefix)) {
            bad(Kind::kMalformed, "unsupported age format version (only v1 is supported)");
        }
        bad(Kind::kMalformed, "not an age file (no age-encryption.org/v1 header)");
    }
    while (true) {
        const std::string_view line = r.next_line();
        if (line.starts_with("-> ")) {
            Stanza st;
            st.args = split_args(line.substr(3));
            std::string body_b64;
            while (true) {
                const std::string_view body = r.next_line();
                if (body.size() > kColumns) {
                    bad(Kind::kMalformed, "age header: stanza body line longer than 64 columns");
                }
                body_b64.append(body);
                if (body.size() < kColumns) {
                    break;
                }
            }
            auto decoded = b64_decode(body_b64);
            if (!decoded) {
                bad(Kind::kMalformed, "age header: stanza body is not canonical base64");
            }
            st.body = std::move(*decoded);
            h.stanzas.push_back(std::move(st));
        } else if (line.starts_with("---")) {
            if (line.size() < 4 || line[3] != ' ') {
                bad(Kind::kMalformed, "age header: malformed MAC line");
            }
            const auto mac = b64_decode(line.substr(4));
            if (!mac || mac->size() != kMacSize) {
                bad(Kind::kMalformed, "age header: MAC is not 32 bytes of canonical base64");
            }
            std::copy(mac->begin(), mac->end(), h.mac.begin());
            h.mac_input_len = r.line_start() + 3;
            break;
        } else {
            bad(Kind::kMalformed, "age header: expected a stanza (\"-> \") or the MAC (\"--- \")");
        }
    }
    if (h.stanzas.empty()) {
        bad(Kind::kMalformed, "age header has no recipient stanza");
    }
    std::string& buf = r.buffer();
    h.leftover = buf.substr(r.pos());
    buf.resize(r.pos());
    h.text = std::move(buf);
    return h;
}

std::string stanza_text(const std::vector<std::string>& args, Bytes body) {
    std::string s = "->";
    for (const auto& a : args) {
        s += ' ';
        s += a;
    }
    s += '\n';
    const std::string b64 = b64_encode(body);
    // Full 64-column lines, then one shorter (possibly empty) line that ends the body.
    std::size_t i = 0;
    for (; b64.size() - i >= kColumns; i += kColumns) {
        s.append(b64, i, kColumns).append("\n");
    }
    s.append(b64, i).append("\n");
    return s;
}

bool parse_log_n(std::string_view s, int& out) {
    if (s.empty() || s.size() > 2 || s[0] == '0') {
        return false;
    }
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (c - '0');
    }
    out = v;
    return true;
}

void increment_counter(std::array<std::uint8_t, 12>& nonce) {
    for (int i = 10; i >= 0; --i) {
        if (++nonce[static_cast<std::size_t>(i)] != 0) {
            return;
        }
    }
    throw std::length_error("age STREAM counter overflow");
}

SecretBytes<kAgeFileKeySize> unwrap_file_key(const Header& h, const DecryptWith& with) {
    SecretBytes<kAgeFileKeySize> file_key;
    if (with.file_key != nullptr) {
        std::copy(with.file_key->data(), with.file_key->data() + kAgeFileKeySize, file_key.data());
        return file_key;
    }
    const auto is_scrypt = [](const Stanza& s) { return s.args[0] == "scrypt"; };
    const bool scrypt = std::any_of(h.stanzas.begin(), h.stanzas.end(), is_scrypt);
    if (scrypt) {
        if (h.stanzas.size() != 1) {
            bad(Kind::kMalformed, "age header: a scrypt (passphrase) stanza must be the only one");
        }
        const Stanza& st = h.stanzas[0];
        int log_n = 0;
        if (st.args.size() != 3) {
            bad(Kind::kMalformed, "age header: scrypt stanza needs a salt and a work factor");
        }
        const auto salt = b64_decode(st.args[1]);
        if (!salt || salt->size() != kScryptSaltSize) {
            bad(Kind::kMalformed, "age header: scrypt salt is not 16 bytes of canonical base64");
        }
        if (!parse_log_n(st.args[2], log_n)) {
            bad(Kind::kMalformed, "age header: scrypt work factor is not a canonical decimal");
        }
        if (st.body.size() != kWrappedKeySize) {
            bad(Kind::kMalformed, "age header: scrypt stanza body is not 32 bytes");
        }
        if (!with.passphrase) {
            bad(Kind::kNoIdentityMatched,
                "the file is passphrase-encrypted and no passphrase was given");
        }
        if (log_n > with.max_scrypt_log_n) {
            bad(Kind::kMalformed, "scrypt work factor 2^" + std::to_string(log_n) +
                                      " is above the limit 2^" +
                                      std::to_string(with.max_scrypt_log_n));
        }
        SecretBytes<32> key;
        scrypt_key(*with.passphrase, *salt, log_n, key);
        if (!aead_open(key, kZeroNonce.data(), st.body.data(), st.body.size(), file_key.data())) {
            bad(Kind::kBadPassphrase, "wrong passphrase (the scrypt stanza did not open)");
        }
        return file_key;
    }

    // Every X25519 stanza must be well-formed, whether or not it is ours.
    std::vector<std::array<std::uint8_t, kX25519KeySize>> shares;
    std::vector<const Stanza*> x25519;
    for (const Stanza& st : h.stanzas) {
        if (st.args[0] != "X25519") {
            continue;  // unknown types (including "grease") are skipped, as the spec says
        }
        if (st.args.size() != 2) {
            bad(Kind::kMalformed, "age header: X25519 stanza needs exactly one argument");
        }
        const auto share = b64_decode(st.args[1]);
        if (!share || share->size() != kX25519KeySize) {
            bad(Kind::kMalformed, "age header: X25519 share is not 32 bytes of canonical base64");
        }
        if (st.body.size() != kWrappedKeySize) {
            bad(Kind::kMalformed, "age header: X25519 stanza body is not 32 bytes");
        }
        auto& a = shares.emplace_back();
        std::copy(share->begin(), share->end(), a.begin());
        x25519.push_back(&st);
    }
    for (const X25519Identity& id : with.identities) {
        const X25519Recipient me = id.recipient();
        for (std::size_t i = 0; i < x25519.size(); ++i) {
            SecretBytes<32> shared;
            if (!id.shared_secret(shares[i], shared)) {
                bad(Kind::kMalformed, "age header: X25519 share is a low-order point");
            }
            std::array<std::uint8_t, 2 * kX25519KeySize> salt{};
            std::copy(shares[i].begin(), shares[i].end(), salt.begin());
            std::copy(me.key.begin(), me.key.end(), salt.begin() + kX25519KeySize);
            SecretBytes<32> wrap_key;
            hkdf_sha256(Bytes(shared.data(), shared.size()), salt, kX25519Label, wrap_key);
            const Stanza& st = *x25519[i];
            if (aead_open(wrap_key, kZeroNonce.data(), st.body.data(), st.body.size(),
                          file_key.data())) {
                return file_key;
            }
        }
    }
    if (with.identities.empty() && with.passphrase) {
        bad(Kind::kNoIdentityMatched,
            "the file is not passphrase-encrypted; an identity (secret key) is needed");
    }
    bad(Kind::kNoIdentityMatched, "no identity matched any of the file's " +
                                      std::to_string(h.stanzas.size()) + " recipient stanza(s)");
}

std::vector<std::string> types_of(const Header& h) {
    std::vector<std::string> types;
    for (const Stanza& st : h.stanzas) {
        types.push_back(st.args[0]);
    }
    return types;
}

}  // namespace

const char* to_string(AgeError::Kind kind) {
    switch (kind) {
        case Kind::kNoIdentityMatched:
            return "no identity matched";
        case Kind::kBadPassphrase:
            return "bad passphrase";
        case Kind::kMalformed:
            return "malformed";
        case Kind::kTampered:
            return "tampered";
        case Kind::kTruncated:
            return "truncated";
    }
    return "unknown";
}

// ---- encryption ----

AgeEncryptor::AgeEncryptor(const EncryptTo& to, Sink out) : out_(std::move(out)) {
    ensure_sodium();
    if (!out_) {
        throw std::invalid_argument("age: no output sink");
    }
    if (to.passphrase) {
        if (!to.recipients.empty()) {
            throw std::invalid_argument(
                "age: a passphrase cannot be combined with other recipients");
        }
        if (to.passphrase->empty()) {
            throw std::invalid_argument("age: the passphrase is empty");
        }
        if (to.scrypt_log_n < 1 || to.scrypt_log_n > kMaxEncryptLogN) {
            throw std::invalid_argument("age: scrypt work factor must be 1..30");
        }
    } else if (to.recipients.empty()) {
        throw std::invalid_argument("age: no recipients and no passphrase");
    }

    SecretBytes<kAgeFileKeySize>& file_key = file_key_;
    randombytes_buf(file_key.data(), file_key.size());
    std::string header(kVersionLine);
    header += '\n';
    std::array<std::uint8_t, kWrappedKeySize> body{};
    if (to.passphrase) {
        std::array<std::uint8_t, kScryptSaltSize> salt{};
        randombytes_buf(salt.data(), salt.size());
        SecretBytes<32> key;
        scrypt_key(*to.passphrase, salt, to.scrypt_log_n, key);
        aead_seal(key, kZeroNonce.data(), file_key.data(), file_key.size(), body.data());
        header += stanza_text({"scrypt", b64_encode(salt), std::to_string(to.scrypt_log_n)}, body);
    }
    for (std::size_t i = 0; i < to.recipients.size(); ++i) {
        const X25519Recipient& r = to.recipients[i];
        SecretBytes<32> ephemeral;
        randombytes_buf(ephemeral.data(), ephemeral.size());
        std::array<std::uint8_t, 2 * kX25519KeySize> salt{};  // share || recipient
        crypto_scalarmult_base(salt.data(), ephemeral.data());
        std::copy(r.key.begin(), r.key.end(), salt.begin() + kX25519KeySize);
        SecretBytes<32> shared;
        if (crypto_scalarmult(shared.data(), ephemeral.data(), r.key.data()) != 0) {
            throw std::invalid_argument("age: recipient " + std::to_string(i + 1) +
                                        " is not a usable X25519 key (low-order point)");
        }
        SecretBytes<32> wrap_key;
        hkdf_sha256(Bytes(shared.data(), shared.size()), salt, kX25519Label, wrap_key);
        aead_seal(wrap_key, kZeroNonce.data(), file_key.data(), file_key.size(), body.data());
        header += stanza_text({"X25519", b64_encode(Bytes(salt.data(), kX25519KeySize))}, body);
    }
    header += "---";
    SecretBytes<32> mac_key;
    hkdf_sha256(Bytes(file_key.data(), file_key.size()), {}, "header", mac_key);
    const auto mac = hmac_sha256(mac_key, as_bytes(header));
    header += ' ';
    header += b64_encode(mac);
    header += '\n';

    std::array<std::uint8_t, kAgeNonceSize> payload_nonce{};
    randombytes_buf(payload_nonce.data(), payload_nonce.size());
    hkdf_sha256(Bytes(file_key.data(), file_key.size()), payload_nonce, "payload", payload_key_);
    plain_.resize(kAgeChunkSize);
    sealed_.resize(kSealedChunk);
    header_size_ = header.size();
    emit(header.data(), header.size());
    emit(payload_nonce.data(), payload_nonce.size());
}

void AgeEncryptor::emit(const void* p, std::size_t n) {
    try {
        out_(p, n);
    } catch (...) {
        state_ = State::kBroken;
        throw;
    }
    bytes_out_ += n;
}

void AgeEncryptor::seal(const std::uint8_t* plain, std::size_t n, bool last) {
    nonce_[11] = last ? 1 : 0;
    aead_seal(payload_key_, nonce_.data(), plain, n, sealed_.data());
    increment_counter(nonce_);
    emit(sealed_.data(), n + kAgeTagSize);
}

void AgeEncryptor::write(const void* data, std::size_t n) {
    if (state_ != State::kOpen) {
        throw std::logic_error(state_ == State::kFinished
                                   ? "age: write() after finish()"
                                   : "age: encryptor unusable after an output error");
    }
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (n > 0) {
        // A full buffered chunk is sealed only now that more data shows it is not the last.
        if (plain_len_ == kAgeChunkSize) {
            seal(plain_.data(), kAgeChunkSize, false);
            plain_len_ = 0;
        }
        if (plain_len_ == 0 && n > kAgeChunkSize) {
            seal(p, kAgeChunkSize, false);  // more follows in this call: seal in place
            p += kAgeChunkSize;
            n -= kAgeChunkSize;
            continue;
        }
        const std::size_t take = std::min(n, kAgeChunkSize - plain_len_);
        std::memcpy(plain_.data() + plain_len_, p, take);
        plain_len_ += take;
        p += take;
        n -= take;
    }
}

void AgeEncryptor::finish() {
    if (state_ != State::kOpen) {
        throw std::logic_error(state_ == State::kFinished
                                   ? "age: finish() called twice"
                                   : "age: encryptor unusable after an output error");
    }
    // plain_len_ is 0 here only when nothing was written: the one case where the spec allows
    // an empty final chunk.
    seal(plain_.data(), plain_len_, true);
    plain_len_ = 0;
    state_ = State::kFinished;
    payload_key_.wipe();
}

// ---- decryption ----

AgeDecryptor::AgeDecryptor(Source in, const DecryptWith& with) : in_(std::move(in)) {
    ensure_sodium();
    if (!in_) {
        throw std::invalid_argument("age: no input source");
    }
    Header h = read_header(in_);
    stanza_types_ = types_of(h);
    header_size_ = h.text.size();
    {
        SecretBytes<kAgeFileKeySize> file_key = unwrap_file_key(h, with);
        SecretBytes<32> mac_key;
        hkdf_sha256(Bytes(file_key.data(), file_key.size()), {}, "header", mac_key);
        const auto mac = hmac_sha256(mac_key, as_bytes(h.text).first(h.mac_input_len));
        if (sodium_memcmp(mac.data(), h.mac.data(), kMacSize) != 0) {
            throw AgeError(Kind::kTampered, "age header MAC mismatch: the header was modified");
        }

        cipher_.resize(kSealedChunk + 1);
        plain_.resize(kAgeChunkSize);
        // The header reader reads in small blocks, so its read-ahead always fits.
        static_assert(kHeaderReadBlock < kSealedChunk);
        cipher_len_ = h.leftover.size();
        std::memcpy(cipher_.data(), h.leftover.data(), cipher_len_);
        fill_ciphertext();
        if (cipher_len_ < kAgeNonceSize) {
            throw AgeError(Kind::kTruncated, "the age file ends before its payload nonce");
        }
        hkdf_sha256(Bytes(file_key.data(), file_key.size()), Bytes(cipher_.data(), kAgeNonceSize),
                    "payload", payload_key_);
    }
    std::memmove(cipher_.data(), cipher_.data() + kAgeNonceSize, cipher_len_ - kAgeNonceSize);
    cipher_len_ -= kAgeNonceSize;
}

void AgeDecryptor::fill_ciphertext() {
    while (!eof_ && cipher_len_ < cipher_.size()) {
        const std::size_t n = in_(cipher_.data() + cipher_len_, cipher_.size() - cipher_len_);
        if (n == 0) {
            eof_ = true;
        } else {
            cipher_len_ += std::min(n, cipher_.size() - cipher_len_);
        }
    }
}

void AgeDecryptor::fail(AgeError::Kind kind, const std::string& message) {
    error_.emplace(kind, message);
    done_ = true;
    plain_pos_ = plain_len_ = 0;
    payload_key_.wipe();
    throw *error_;
}

std::size_t AgeDecryptor::open_next_chunk(std::uint8_t* out) {
    fill_ciphertext();
    const auto chunk = [this] { return "chunk " + std::to_string(chunks_opened_ + 1); };
    if (cipher_len_ == 0) {
        fail(Kind::kTruncated, chunks_opened_ == 0
                                   ? "the age file ends before its first chunk (truncated)"
                                   : "the age file ends without a final chunk (truncated)");
    }
    std::uint8_t* const c = cipher_.data();
    std::size_t plain_size = 0;
    if (cipher_len_ > kSealedChunk) {
        // A full chunk with more data after it: it must not be the last.
        nonce_[11] = 0;
        if (!aead_open(payload_key_, nonce_.data(), c, kSealedChunk, out)) {
            nonce_[11] = 1;
            if (aead_open(payload_key_, nonce_.data(), c, kSealedChunk, out)) {
                fail(Kind::kMalformed, "the age file has data after its final chunk");
            }
            fail(Kind::kTampered, chunk() + " failed authentication: the file was modified");
        }
        plain_size = kAgeChunkSize;
        c[0] = c[kSealedChunk];
        cipher_len_ = 1;
    } else {
        // The input ended: this must be the final chunk.
        const std::size_t n = cipher_len_;
        nonce_[11] = 1;
        if (!aead_open(payload_key_, nonce_.data(), c, n, out)) {
            if (n == kSealedChunk) {
                nonce_[11] = 0;
                if (aead_open(payload_key_, nonce_.data(), c, n, out)) {
                    fail(Kind::kTruncated, "the age file ends without a final chunk (truncated)");
                }
                fail(Kind::kTampered, chunk() + " failed authentication: the file was modified");
            }
            fail(Kind::kTruncated,
                 chunk() + " (the last) failed authentication: the file is truncated or corrupted");
        }
        if (n == kAgeTagSize && chunks_opened_ > 0) {
            fail(Kind::kMalformed, "the age file ends with an empty chunk after data");
        }
        plain_size = n - kAgeTagSize;
        cipher_len_ = 0;
        done_ = true;
        payload_key_.wipe();
    }
    ++chunks_opened_;
    try {
        increment_counter(nonce_);
    } catch (const std::length_error&) {
        fail(Kind::kMalformed, "the age file has more chunks than the STREAM counter allows");
    }
    return plain_size;
}

std::size_t AgeDecryptor::read(void* buf, std::size_t cap) {
    if (error_) {
        throw *error_;
    }
    if (cap == 0) {
        throw std::invalid_argument("age: read() with a zero-size buffer");
    }
    while (plain_pos_ == plain_len_) {
        if (done_) {
            return 0;
        }
        if (cap >= kAgeChunkSize) {
            // Room for a whole chunk: open it straight into the caller's buffer (on failure
            // libsodium writes zeros there, never unauthenticated plaintext).
            const std::size_t n = open_next_chunk(static_cast<std::uint8_t*>(buf));
            if (n > 0) {
                return n;
            }
        } else {
            plain_len_ = open_next_chunk(plain_.data());
            plain_pos_ = 0;
        }
    }
    const std::size_t n = std::min(cap, plain_len_ - plain_pos_);
    std::memcpy(buf, plain_.data() + plain_pos_, n);
    plain_pos_ += n;
    return n;
}

std::vector<std::string> age_stanza_types(const AgeDecryptor::Source& in) {
    ensure_sodium();
    return types_of(read_header(in));
}

}  // namespace mlk::crypto
