#include "mlkeeper/crypto/age_keys.hpp"

#include <sodium.h>

#include <algorithm>
#include <stdexcept>

#include "mlkeeper/crypto/bech32.hpp"

namespace mlk::crypto {
namespace {

constexpr std::string_view kRecipientHrp = "age";
constexpr std::string_view kIdentityHrp = "AGE-SECRET-KEY-";
constexpr std::string_view kIdentityHrpLower = "age-secret-key-";

std::string_view trim(std::string_view s) {
    const auto is_space = [](char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
    };
    while (!s.empty() && is_space(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_space(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

void ensure_sodium() {
    static const int rc = sodium_init();
    if (rc < 0) {
        throw std::runtime_error("libsodium failed to initialise");
    }
}

void secure_wipe(void* p, std::size_t n) noexcept {
    sodium_memzero(p, n);
}

std::string X25519Recipient::to_string() const {
    return bech32_encode(kRecipientHrp, key, Bech32Case::kLower);
}

X25519Recipient parse_recipient(std::string_view s) {
    Bech32Decoded d;
    try {
        d = bech32_decode(s);
    } catch (const Bech32Error& e) {
        throw std::invalid_argument(std::string("invalid age recipient: ") + e.what());
    }
    if (d.hrp != kRecipientHrp) {
        throw std::invalid_argument("invalid age recipient: expected an \"age1...\" key");
    }
    if (d.bytes.size() != kX25519KeySize) {
        throw std::invalid_argument("invalid age recipient: the key is not 32 bytes");
    }
    X25519Recipient r;
    std::copy(d.bytes.begin(), d.bytes.end(), r.key.begin());
    return r;
}

X25519Identity X25519Identity::generate() {
    ensure_sodium();
    X25519Identity id;
    randombytes_buf(id.secret_.data(), id.secret_.size());
    id.derive_recipient();
    return id;
}

X25519Identity X25519Identity::parse(std::string_view s) {
    ensure_sodium();
    Bech32Decoded d;
    try {
        d = bech32_decode(s);
    } catch (const Bech32Error& e) {
        throw std::invalid_argument(std::string("invalid age identity: ") + e.what());
    }
    // Wipes the decoded secret whichever way we leave.
    struct Wipe {
        std::vector<std::uint8_t>& v;
        ~Wipe() { secure_wipe(v.data(), v.size()); }
    } wipe{d.bytes};
    if (d.hrp == kIdentityHrpLower) {
        throw std::invalid_argument("invalid age identity: age secret keys must be upper case");
    }
    if (d.hrp != kIdentityHrp) {
        throw std::invalid_argument(
            "invalid age identity: expected an \"AGE-SECRET-KEY-1...\" key");
    }
    if (d.bytes.size() != kX25519KeySize) {
        throw std::invalid_argument("invalid age identity: the key is not 32 bytes");
    }
    X25519Identity id;
    std::copy(d.bytes.begin(), d.bytes.end(), id.secret_.data());
    id.derive_recipient();
    return id;
}

void X25519Identity::derive_recipient() {
    if (crypto_scalarmult_base(recipient_.key.data(), secret_.data()) != 0) {
        throw std::runtime_error("X25519 public key derivation failed");
    }
}

std::string X25519Identity::to_string() const {
    return bech32_encode(kIdentityHrpLower, std::span<const std::uint8_t>(secret_.data(), 32),
                         Bech32Case::kUpper);
}

bool X25519Identity::shared_secret(const std::array<std::uint8_t, kX25519KeySize>& peer,
                                   SecretBytes<kX25519KeySize>& out) const {
    ensure_sodium();
    // libsodium returns -1 exactly when the result is all zeros (a low-order peer point).
    if (crypto_scalarmult(out.data(), secret_.data(), peer.data()) != 0) {
        out.wipe();
        return false;
    }
    return true;
}

std::vector<X25519Identity> parse_identity_file(std::string_view text) {
    std::vector<X25519Identity> out;
    std::size_t line_no = 0;
    while (!text.empty()) {
        ++line_no;
        const std::size_t nl = text.find('\n');
        const std::string_view raw = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        const std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#') {
            continue;
        }
        const std::string where = "identity file line " + std::to_string(line_no) + ": ";
        if (line.starts_with("AGE-PLUGIN-")) {
            throw std::invalid_argument(where + "age plugin identities are not supported");
        }
        if (line.starts_with("age1")) {
            throw std::invalid_argument(where +
                                        "found a public key (age1...), expected a secret key");
        }
        try {
            out.push_back(X25519Identity::parse(line));
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(where + e.what());
        }
    }
    if (out.empty()) {
        throw std::invalid_argument("identity file holds no AGE-SECRET-KEY-1... identity");
    }
    return out;
}

std::string identity_file_text(const X25519Identity& id, std::string_view created_iso8601) {
    std::string s;
    s.reserve(256);  // one allocation: no stale copies of the secret left behind by growth
    s.append("# created: ").append(created_iso8601).append("\n");
    s.append("# public key: ").append(id.recipient().to_string()).append("\n");
    s.append(id.to_string()).append("\n");
    return s;
}

}  // namespace mlk::crypto
