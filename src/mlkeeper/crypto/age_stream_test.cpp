#include "mlkeeper/crypto/age_stream.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mlk::crypto {
namespace {

namespace fs = std::filesystem;
using Kind = AgeError::Kind;

constexpr std::size_t kChunk = kAgeChunkSize;
constexpr std::size_t kSealed = kAgeChunkSize + kAgeTagSize;

std::string random_data(std::size_t n, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        s[i] = static_cast<char>(rng() & 0xFF);
    }
    return s;
}

std::string encrypt(const std::string& plain, const EncryptTo& to,
                    std::size_t write_size = 100'000) {
    std::string out;
    AgeEncryptor enc(
        to, [&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); });
    for (std::size_t i = 0; i < plain.size(); i += write_size) {
        enc.write(plain.data() + i, std::min(write_size, plain.size() - i));
    }
    enc.finish();
    EXPECT_EQ(enc.bytes_out(), out.size());
    return out;
}

// Hands out `data` in pieces of at most `piece` bytes, counting what was pulled.
struct MemorySource {
    const std::string* data;
    std::size_t piece = SIZE_MAX;
    std::size_t pos = 0;

    std::size_t operator()(void* buf, std::size_t cap) {
        const std::size_t n = std::min({cap, piece, data->size() - pos});
        std::memcpy(buf, data->data() + pos, n);
        pos += n;
        return n;
    }
};

AgeDecryptor::Source source_of(const std::string& data, std::size_t piece = SIZE_MAX) {
    return MemorySource{&data, piece, 0};
}

// Decrypts into `out` (what read() returned before any error); returns the error, if any.
std::optional<AgeError> try_decrypt(const std::string& cipher, const DecryptWith& with,
                                    std::string& out, std::size_t read_size = 100'000,
                                    std::size_t source_piece = SIZE_MAX) {
    out.clear();
    try {
        AgeDecryptor dec(source_of(cipher, source_piece), with);
        std::vector<char> buf(read_size);
        while (true) {
            const std::size_t n = dec.read(buf.data(), buf.size());
            if (n == 0) {
                break;
            }
            out.append(buf.data(), n);
        }
        EXPECT_TRUE(dec.finished());
        EXPECT_EQ(dec.read(buf.data(), buf.size()), 0u);  // stays at the end
    } catch (const AgeError& e) {
        return e;
    }
    return std::nullopt;
}

std::string decrypt(const std::string& cipher, const DecryptWith& with,
                    std::size_t read_size = 100'000, std::size_t source_piece = SIZE_MAX) {
    std::string out;
    const auto err = try_decrypt(cipher, with, out, read_size, source_piece);
    if (err) {
        ADD_FAILURE() << "decryption failed: " << to_string(err->kind()) << ": " << err->what();
    }
    return out;
}

Kind decrypt_error(const std::string& cipher, const DecryptWith& with, std::string* out = nullptr) {
    std::string local;
    const auto err = try_decrypt(cipher, with, out != nullptr ? *out : local);
    if (!err) {
        ADD_FAILURE() << "decryption unexpectedly succeeded";
        return Kind::kMalformed;
    }
    return err->kind();
}

EncryptTo to_recipient(const X25519Identity& id) {
    EncryptTo to;
    to.recipients.push_back(id.recipient());
    return to;
}

DecryptWith with_identity(const X25519Identity& id) {
    DecryptWith w;
    w.identities.push_back(id);
    return w;
}

std::uint64_t expected_size(std::uint64_t header, std::uint64_t plain) {
    const std::uint64_t chunks = plain == 0 ? 1 : (plain + kChunk - 1) / kChunk;
    return header + kAgeNonceSize + plain + chunks * kAgeTagSize;
}

std::size_t header_len(const std::string& cipher) {
    const std::size_t mac = cipher.find("\n--- ");
    return cipher.find('\n', mac + 1) + 1;
}

// ---- round trips ----

TEST(AgeStream, RoundTripSizes) {
    const X25519Identity id = X25519Identity::generate();
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, kChunk - 1, kChunk, kChunk + 1,
                          2 * kChunk, 3 * kChunk + 17, std::size_t{5} << 20}) {
        SCOPED_TRACE(n);
        const std::string plain = random_data(n, static_cast<unsigned>(n));
        const std::string cipher = encrypt(plain, to_recipient(id));
        EXPECT_EQ(cipher.size(), expected_size(header_len(cipher), n));
        EXPECT_TRUE(decrypt(cipher, with_identity(id)) == plain);
    }
}

TEST(AgeStream, EmptyInputIsOneEmptyFinalChunk) {
    const X25519Identity id = X25519Identity::generate();
    const std::string cipher = encrypt("", to_recipient(id));
    EXPECT_EQ(cipher.size(), header_len(cipher) + kAgeNonceSize + kAgeTagSize);
    EXPECT_EQ(decrypt(cipher, with_identity(id)), "");
}

TEST(AgeStream, OddWriteReadAndSourceSizes) {
    const X25519Identity id = X25519Identity::generate();
    const std::string plain = random_data(2 * kChunk + 4321, 11);
    std::set<std::string> ciphers;
    for (std::size_t w : {std::size_t{1}, std::size_t{7}, kChunk, kChunk + 1}) {
        SCOPED_TRACE(w);
        const std::string cipher = encrypt(plain, to_recipient(id), w);
        EXPECT_EQ(cipher.size(), expected_size(header_len(cipher), plain.size()));
        ciphers.insert(cipher);
        for (std::size_t r : {std::size_t{1}, std::size_t{7}, kChunk, kChunk + 1, kChunk * 3}) {
            EXPECT_TRUE(decrypt(cipher, with_identity(id), r) == plain) << "read size " << r;
        }
        EXPECT_TRUE(decrypt(cipher, with_identity(id), 4096, 1) == plain) << "1-byte source";
        EXPECT_TRUE(decrypt(cipher, with_identity(id), 4096, 65537) == plain);
    }
    EXPECT_EQ(ciphers.size(), 4u);  // fresh file key and nonce every time
}

TEST(AgeStream, LargeRandomWithOddWrites) {
    const X25519Identity id = X25519Identity::generate();
    const std::string plain = random_data(5 << 20, 5);
    const std::string cipher = encrypt(plain, to_recipient(id), 65537);
    EXPECT_EQ(cipher.size(), expected_size(header_len(cipher), plain.size()));
    EXPECT_TRUE(decrypt(cipher, with_identity(id), 7919) == plain);
}

TEST(AgeStream, ManyRecipients) {
    std::vector<X25519Identity> ids;
    EncryptTo to;
    for (int i = 0; i < 12; ++i) {
        ids.push_back(X25519Identity::generate());
        to.recipients.push_back(ids.back().recipient());
    }
    const std::string plain = random_data(100'000, 3);
    const std::string cipher = encrypt(plain, to);
    EXPECT_EQ(age_stanza_types(source_of(cipher)), std::vector<std::string>(12, "X25519"));
    for (const auto& id : ids) {
        EXPECT_TRUE(decrypt(cipher, with_identity(id)) == plain);
    }
    // Strangers first, then the right one.
    DecryptWith w;
    w.identities.push_back(X25519Identity::generate());
    w.identities.push_back(X25519Identity::generate());
    w.identities.push_back(ids[7]);
    EXPECT_TRUE(decrypt(cipher, w) == plain);
}

TEST(AgeStream, Passphrase) {
    EncryptTo to;
    to.passphrase = "correct horse battery staple";
    to.scrypt_log_n = 10;
    const std::string plain = random_data(kChunk + 5, 4);
    const std::string cipher = encrypt(plain, to);
    EXPECT_NE(cipher.find("\n-> scrypt "), std::string::npos);
    EXPECT_NE(cipher.find(" 10\n"), std::string::npos);
    EXPECT_EQ(age_stanza_types(source_of(cipher)), std::vector<std::string>{"scrypt"});

    DecryptWith right;
    right.passphrase = "correct horse battery staple";
    EXPECT_TRUE(decrypt(cipher, right) == plain);

    DecryptWith wrong;
    wrong.passphrase = "correct horse battery stapler";
    EXPECT_EQ(decrypt_error(cipher, wrong), Kind::kBadPassphrase);

    DecryptWith none;
    none.identities.push_back(X25519Identity::generate());
    EXPECT_EQ(decrypt_error(cipher, none), Kind::kNoIdentityMatched);

    DecryptWith low_limit = right;
    low_limit.max_scrypt_log_n = 9;
    EXPECT_EQ(decrypt_error(cipher, low_limit), Kind::kMalformed);
}

TEST(AgeStream, TheWritersFileKeyDecryptsWithoutAnyIdentity) {
    const auto id = X25519Identity::generate();
    EncryptTo to;
    to.recipients = {id.recipient()};
    std::string cipher;
    AgeEncryptor enc(
        to, [&](const void* p, std::size_t n) { cipher.append(static_cast<const char*>(p), n); });
    const std::string plain = random_data(200000, 5);
    enc.write(plain.data(), plain.size());
    enc.finish();
    DecryptWith with;
    with.file_key = &enc.file_key();
    EXPECT_EQ(decrypt(cipher, with), plain);
    // Another file's key fails the header MAC.
    std::string other;
    AgeEncryptor enc2(
        to, [&](const void* p, std::size_t n) { other.append(static_cast<const char*>(p), n); });
    enc2.finish();
    with.file_key = &enc2.file_key();
    std::string out;
    auto err = try_decrypt(cipher, with, out);
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->kind(), AgeError::Kind::kTampered);
}

TEST(AgeStream, WrongIdentityAndPassphraseForX25519File) {
    const X25519Identity id = X25519Identity::generate();
    const std::string cipher = encrypt("secret", to_recipient(id));
    EXPECT_EQ(decrypt_error(cipher, with_identity(X25519Identity::generate())),
              Kind::kNoIdentityMatched);
    DecryptWith pw;
    pw.passphrase = "x";
    EXPECT_EQ(decrypt_error(cipher, pw), Kind::kNoIdentityMatched);
    EXPECT_EQ(decrypt_error(cipher, DecryptWith{}), Kind::kNoIdentityMatched);
}

TEST(AgeStream, EncryptorRejectsBadUse) {
    const auto sink = [](const void*, std::size_t) {};
    const X25519Identity id = X25519Identity::generate();
    EXPECT_THROW(AgeEncryptor(EncryptTo{}, sink), std::invalid_argument);
    EncryptTo mixed = to_recipient(id);
    mixed.passphrase = "pw";
    EXPECT_THROW(AgeEncryptor(mixed, sink), std::invalid_argument);
    EncryptTo empty_pw;
    empty_pw.passphrase = "";
    EXPECT_THROW(AgeEncryptor(empty_pw, sink), std::invalid_argument);
    for (int log_n : {0, 31, -1}) {
        EncryptTo bad_n;
        bad_n.passphrase = "pw";
        bad_n.scrypt_log_n = log_n;
        EXPECT_THROW(AgeEncryptor(bad_n, sink), std::invalid_argument) << log_n;
    }
    EncryptTo low_order;
    low_order.recipients.push_back(X25519Recipient{});  // the all-zero point
    EXPECT_THROW(AgeEncryptor(low_order, sink), std::invalid_argument);
    EXPECT_THROW(AgeEncryptor(to_recipient(id), nullptr), std::invalid_argument);

    AgeEncryptor enc(to_recipient(id), sink);
    enc.write("abc", 3);
    enc.finish();
    EXPECT_THROW(enc.write("x", 1), std::logic_error);
    EXPECT_THROW(enc.finish(), std::logic_error);
}

TEST(AgeStream, SinkErrorPropagatesAndBreaksTheEncryptor) {
    const X25519Identity id = X25519Identity::generate();
    std::size_t calls = 0;
    AgeEncryptor enc(to_recipient(id), [&](const void*, std::size_t) {
        if (++calls > 2) {  // header and nonce pass, the first chunk fails
            throw std::runtime_error("disk full");
        }
    });
    const std::string data = random_data(3 * kChunk, 1);
    EXPECT_THROW(enc.write(data.data(), data.size()), std::runtime_error);
    EXPECT_THROW(enc.write("x", 1), std::logic_error);
    EXPECT_THROW(enc.finish(), std::logic_error);
}

struct ConnectionReset : std::exception {
    const char* what() const noexcept override { return "connection reset"; }
};

TEST(AgeStream, SourceErrorPropagates) {
    const X25519Identity id = X25519Identity::generate();
    const std::string cipher = encrypt(random_data(3 * kChunk, 2), to_recipient(id));
    std::size_t pos = 0;
    AgeDecryptor dec(
        [&](void* buf, std::size_t cap) -> std::size_t {
            if (pos > 2 * kSealed) {
                throw ConnectionReset();
            }
            const std::size_t n = std::min(cap, cipher.size() - pos);
            std::memcpy(buf, cipher.data() + pos, n);
            pos += n;
            return n;
        },
        with_identity(id));
    std::vector<char> buf(kChunk);
    EXPECT_THROW(
        {
            while (dec.read(buf.data(), buf.size()) > 0) {
            }
        },
        ConnectionReset);
}

TEST(AgeStream, ReadArgumentsAndStickyErrors) {
    const X25519Identity id = X25519Identity::generate();
    std::string cipher = encrypt(random_data(2 * kChunk + 9, 6), to_recipient(id));
    AgeDecryptor ok(source_of(cipher), with_identity(id));
    char c = 0;
    EXPECT_THROW(ok.read(&c, 0), std::invalid_argument);
    EXPECT_EQ(ok.header_size(), header_len(cipher));
    EXPECT_EQ(ok.stanza_types(), std::vector<std::string>{"X25519"});

    cipher[header_len(cipher) + kAgeNonceSize + kSealed + 5] ^= 1;  // second chunk
    AgeDecryptor bad(source_of(cipher), with_identity(id));
    std::vector<char> buf(kChunk);
    EXPECT_EQ(bad.read(buf.data(), buf.size()), kChunk);
    for (int i = 0; i < 2; ++i) {
        std::fill(buf.begin(), buf.end(), '\xEE');
        try {
            bad.read(buf.data(), buf.size());
            ADD_FAILURE() << "read past a tampered chunk";
        } catch (const AgeError& e) {
            EXPECT_EQ(e.kind(), Kind::kTampered);
        }
        if (i == 0) {
            // The chunk was opened straight into buf: it holds zeros, not unauthenticated data.
            EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](char b) { return b == 0; }));
        }
    }
}

// ---- tampering, truncation, trailing data ----

// Checks that what read() returned before failing is a prefix of the plaintext that ends at a
// chunk boundary no later than the chunk holding `damaged_at` (a payload offset).
void expect_safe_prefix(const std::string& out, const std::string& plain, std::size_t max_chunks) {
    EXPECT_LE(out.size(), max_chunks * kChunk);
    EXPECT_EQ(out.size() % kChunk, 0u);
    EXPECT_TRUE(out == plain.substr(0, out.size()));
}

TEST(AgeStream, FlippedBytesAreAlwaysDetected) {
    const X25519Identity id = X25519Identity::generate();
    const DecryptWith with = with_identity(id);
    const std::string plain = random_data(3 * kChunk + 1000, 8);  // 3 full chunks + 1 short
    const std::string cipher = encrypt(plain, to_recipient(id));
    const std::size_t h = header_len(cipher);
    const std::size_t payload = h + kAgeNonceSize;
    std::mt19937 rng(99);

    // Every header byte, two ways: a changed character and a non-ASCII one.
    for (std::size_t off = 0; off < h; ++off) {
        for (unsigned char mask : {0x01, 0x80}) {
            std::string bad = cipher;
            bad[off] = static_cast<char>(bad[off] ^ mask);
            std::string out;
            const Kind k = decrypt_error(bad, with, &out);
            EXPECT_TRUE(k == Kind::kTampered || k == Kind::kMalformed ||
                        k == Kind::kNoIdentityMatched)
                << "header offset " << off << ": " << to_string(k);
            EXPECT_EQ(out, "");
        }
    }
    // The payload nonce: a different payload key, so the first chunk fails.
    for (std::size_t off = h; off < payload; ++off) {
        std::string bad = cipher;
        bad[off] ^= 0x10;
        std::string out;
        EXPECT_EQ(decrypt_error(bad, with, &out), Kind::kTampered) << off;
        EXPECT_EQ(out, "");
    }
    // Each chunk: its first byte, its tag's last byte and random bytes in between.
    for (std::size_t chunk = 0; chunk < 4; ++chunk) {
        const std::size_t start = payload + chunk * kSealed;
        const std::size_t end = std::min(start + kSealed, cipher.size());
        std::vector<std::size_t> offsets = {start, end - 1, end - kAgeTagSize};
        for (int i = 0; i < 12; ++i) {
            offsets.push_back(start + rng() % (end - start));
        }
        for (std::size_t off : offsets) {
            std::string bad = cipher;
            bad[off] = static_cast<char>(bad[off] ^ (1 << (rng() % 8)));
            std::string out;
            const Kind k = decrypt_error(bad, with, &out);
            // The last chunk is short: a damaged short final chunk cannot be told apart from a
            // cut one, and is reported as truncated-or-corrupted.
            EXPECT_EQ(k, chunk < 3 ? Kind::kTampered : Kind::kTruncated)
                << "chunk " << chunk << " offset " << off;
            expect_safe_prefix(out, plain, chunk);
        }
    }
}

TEST(AgeStream, FlippedByteInFullSizeFinalChunkIsTampered) {
    const X25519Identity id = X25519Identity::generate();
    const std::string plain = random_data(2 * kChunk, 9);
    std::string cipher = encrypt(plain, to_recipient(id));
    cipher[cipher.size() - 100] ^= 4;
    std::string out;
    EXPECT_EQ(decrypt_error(cipher, with_identity(id), &out), Kind::kTampered);
    expect_safe_prefix(out, plain, 1);
}

TEST(AgeStream, TruncationIsAlwaysReported) {
    const X25519Identity id = X25519Identity::generate();
    const DecryptWith with = with_identity(id);
    for (std::size_t size : {3 * kChunk + 1000, 3 * kChunk, std::size_t{0}, std::size_t{10}}) {
        SCOPED_TRACE(size);
        const std::string plain = random_data(size, 10);
        const std::string cipher = encrypt(plain, to_recipient(id));
        const std::size_t h = header_len(cipher);
        const std::size_t payload = h + kAgeNonceSize;
        std::vector<std::size_t> cuts = {
            0, 1, 10, h / 2, h - 1, h, h + 1, payload - 1, payload, payload + 1, cipher.size() - 1};
        for (std::size_t c = 0; payload + c * kSealed < cipher.size(); ++c) {
            const std::size_t start = payload + c * kSealed;
            for (std::size_t d :
                 {std::size_t{0}, std::size_t{1}, kAgeTagSize, kSealed / 2, kSealed - 1}) {
                cuts.push_back(start + d);
            }
        }
        for (std::size_t cut : cuts) {
            if (cut >= cipher.size()) {
                continue;
            }
            std::string out;
            EXPECT_EQ(decrypt_error(cipher.substr(0, cut), with, &out), Kind::kTruncated)
                << "cut at " << cut << " of " << cipher.size();
            EXPECT_LT(out.size(), std::max<std::size_t>(plain.size(), 1));
            EXPECT_TRUE(out == plain.substr(0, out.size()));
        }
    }
}

TEST(AgeStream, TrailingDataIsRejected) {
    const X25519Identity id = X25519Identity::generate();
    const DecryptWith with = with_identity(id);
    for (std::size_t size : {std::size_t{0}, std::size_t{1000}, 2 * kChunk}) {
        const std::string plain = random_data(size, 12);
        const std::string cipher = encrypt(plain, to_recipient(id));
        for (std::size_t extra : {std::size_t{1}, std::size_t{16}, std::size_t{70'000}}) {
            SCOPED_TRACE(std::to_string(size) + " + " + std::to_string(extra));
            std::string out;
            const Kind k = decrypt_error(cipher + std::string(extra, 'x'), with, &out);
            if (size == 2 * kChunk) {
                // A full final chunk authenticates as final, then data follows.
                EXPECT_EQ(k, Kind::kMalformed);
            } else {
                EXPECT_TRUE(k == Kind::kTruncated || k == Kind::kTampered) << to_string(k);
            }
            EXPECT_LT(out.size(), std::max<std::size_t>(plain.size(), 1));
        }
    }
}

TEST(AgeStream, NotAnAgeFile) {
    const X25519Identity id = X25519Identity::generate();
    const DecryptWith with = with_identity(id);
    EXPECT_EQ(decrypt_error("", with), Kind::kTruncated);
    EXPECT_EQ(decrypt_error("hello world\n", with), Kind::kMalformed);
    EXPECT_EQ(decrypt_error("age-encryption.org/v2\n-> X25519 x\n\n--- x\n", with),
              Kind::kMalformed);
    std::string out;
    const auto armor = try_decrypt("-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n", with, out);
    ASSERT_TRUE(armor);
    EXPECT_EQ(armor->kind(), Kind::kMalformed);
    EXPECT_NE(std::string(armor->what()).find("armor"), std::string::npos);

    // Binary input is refused after the first read, not after a megabyte.
    const std::string junk = random_data(4 << 20, 1);
    MemorySource src{&junk, SIZE_MAX, 0};
    try {
        AgeDecryptor dec(std::ref(src), with);
        ADD_FAILURE() << "accepted junk";
    } catch (const AgeError& e) {
        EXPECT_EQ(e.kind(), Kind::kMalformed);
    }
    EXPECT_LE(src.pos, 8192u);
}

TEST(AgeStream, HeaderSizeIsBounded) {
    std::string header = "age-encryption.org/v1\n";
    while (header.size() <= kAgeMaxHeaderSize) {
        header += "-> grease\n\n";
    }
    const X25519Identity id = X25519Identity::generate();
    EXPECT_EQ(decrypt_error(header, with_identity(id)), Kind::kMalformed);
}

// ---- C2SP age testkit (header-level vectors from FiloSottile/age testdata/testkit) ----
// The file key of every vector is "YELLOW SUBMARINE". Only the headers are used: a header that
// opens (file key unwrapped, MAC verified) is what "success" means here.

constexpr const char* kKitId1 =
    "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6";
constexpr const char* kKitId2 =
    "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";
constexpr const char* kKitId3 =
    "AGE-SECRET-KEY-143WN7DCXU4G8R5AXQSSYD9AEPYDNT3HXSLWSPK36CDU6E8M59SSSAGZ3KG";

struct KitVector {
    const char* name;
    const char* identity;
    const char* passphrase;
    std::optional<Kind> expect;  // nullopt: the header opens
    std::string header;
};

const std::vector<KitVector>& kit_vectors() {
    static const std::vector<KitVector> v = {
        {"x25519", kKitId1, nullptr, std::nullopt, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- Vn+54jqiiUCE+WZcEVY3f1sqHjlu/z1LCQ/T7Xm7qI0
)"},
        {"x25519_multiple_recipients", kKitId1, nullptr, std::nullopt, R"(age-encryption.org/v1
-> X25519 ajtqAvDEkVNr2B7zUOtq2mAQXDSBlNrVAuM/dKb5sT4
0evrK/HQXVsQ4YaDe+659l5OQzvAzD2ytLGHQLQiqxg
-> X25519 0qC7u6AbLxuwnM8tPFOWVtWZn/ZZe7z7gcsP5kgA0FI
T/PZg76MmVt2IaLntrxppzDnzeFDYHsHFcnTnhbRLQ8
--- 7W07ef2PhsTAl74pn+9vSj/Xzukwa6SuTqMc16cdBk0
)"},
        {"x25519_grease", kKitId1, nullptr, std::nullopt, R"(age-encryption.org/v1
-> grease

-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> grease

--- 7NLrfbRUZt6qK0pdtARUf59dHwo12ReldjJKjMlbE3I
)"},
        {"stanza_valid_characters", kKitId1, nullptr, std::nullopt, R"age(age-encryption.org/v1
-> !"#$%&' ()*+,-./ 01234567 89:;<=>? @ABCDEFG HIJKLMNO

-> PQRSTUVW XYZ[\]^_ `abcdefg hijklmno pqrstuvw xyz{|}~

-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- x538z9xJq9XEK1aTTTv80aWDVvVdROvaXn2tpqXPC8g
)age"},
        {"stanza_empty_body", kKitId1, nullptr, std::nullopt, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> empty

--- 697zSC9pa/ZLNIaXGtuwcUobmxv+Dpx48Hv0papk5c0
)"},
        {"stanza_empty_last_line", kKitId1, nullptr, std::nullopt, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB

--- +3PC416gxa7Mk7WxpX0kb6DVfSuCun0niGre+G4bZhE
)"},
        {"x25519_bad_tag", kKitId1, nullptr, Kind::kNoIdentityMatched, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw0o
--- tG0k9bg4iIuBdMWb13n7FFYDzoBbtsLppNLhbh22aKg
)"},
        {"x25519_lowercase", kKitId1, nullptr, Kind::kNoIdentityMatched, R"(age-encryption.org/v1
-> x25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- SwXKO3dXLh9l5QiSgMWgPhCkwstT8oB4jLDv7aBgC+c
)"},
        {"x25519_low_order", kKitId2, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEdc
3E0NpFans/m0WLWF7+54ZBdNj3iqQqpraGDFiaRkvBA
--- sXw327YMT1/ULXe+ZyRMbMY0Z2jnWHGgI9j1we6yQ8A
)"},
        {"x25519_not_canonical_share", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCd
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- AO6haEGU6BGJ8Tzeqnr2fSLEo31JrWodGtZuCZmijI8
)"},
        {"x25519_extra_argument", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc 1234
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- hQQySEUXL8pOuIOuw0qXzi66RphDJP9IKMNEChNJIPk
)"},
        {"stanza_not_canonical", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB
QUF
--- nQM2VCzmNLPrUurNWN+SW9wVp/9uTMQ/6CTUM7l8c84
)"},
        {"stanza_base64_padding", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB
QUE=
--- OtG7IuNHaf2SHZuowmxg/fhbhtz0/DI5g5OGd7WH7S0
)"},
        {"stanza_missing_final_line", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- GRjUy1ShNhFoV3cQikdtUZqDeDEZSrbtNXUgDtDbwC8
)"},
        {"stanza_long_line", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA

--- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmug
)"},
        {"stanza_multiple_short_lines", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-> stanza
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- ct87HSIMoTC4nUsQva+8AeKc2bK2q8b9sPjRhjuf1us
)"},
        {"stanza_bad_start", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
-- stanza

--- lpxzkyQGe/sA7F1yh4c6KVZV7//jANm5lYefTToioXs
)"},
        {"hmac_not_canonical", kKitId2, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE
--- WyJp9F/9FOZh7gJdheq2WIJcwHgYc8NIVh3ddwhrcNh
)"},
        {"hmac_garbage", kKitId2, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE
--- WyJp9F/9FOZh7gJdheq2WIJcwHgYc8NIVh3ddwhrcNgAAA
)"},
        {"hmac_no_space", kKitId2, nullptr, Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE
---WyJp9F/9FOZh7gJdheq2WIJcwHgYc8NIVh3ddwhrcNg
)"},
        {"header_crlf", kKitId2, nullptr, Kind::kMalformed,
         "age-encryption.org/v1\r\n-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\r\n"
         "hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE\r\n"
         "--- 2KIGb7ye32MWtUuEVWkO3MP6qCDLzOvT9wF06lelBSI\n"},
        {"version_unsupported", kKitId1, nullptr, Kind::kMalformed, R"(age-encryption.org/v1234
-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc
EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U
--- 38AL8Mr4VwmS6CNbM4bc7u3WwGBDqsMTRHOuYJ9ckqs
)"},
        {"scrypt_and_x25519", kKitId3, "password", Kind::kMalformed, R"(age-encryption.org/v1
-> X25519 ajtqAvDEkVNr2B7zUOtq2mAQXDSBlNrVAuM/dKb5sT4
U+hKlJ4isweJ9PKG7pgscmG3cPASLgTw7SOBpbZ8x2U
-> scrypt 3d9y0G+8q1ffPQ0xJJatIQ 10
foZolxuhRSL7IG7oaR+456IzkHtvue7j4mUjh3DB6EI
--- yp4Z0lV1LEdkm1+uDCuPUV+9hIXbPKrBXKQ/f5Y03As
)"},
        {"scrypt_double", nullptr, "password", Kind::kMalformed, R"(age-encryption.org/v1
-> scrypt rF0/NwblUHHTpgQgRpe5CQ 10
gUjEymFKMVXQEKdMMHL24oYexjE3TIC0O0zGSqJ2aUY
-> scrypt GzXG5ofdANo6w3msn3QsIQ 10
OveITuwxakv7k2oLnioNYF4Bhgz9KZ36pb098wDoAv8
--- a5d+4Ay1evJhoDskIzuTZV9bBgKk4573VZNfuoWJDPE
)"},
        {"scrypt_work_factor_23", nullptr, "password", Kind::kMalformed, R"(age-encryption.org/v1
-> scrypt rF0/NwblUHHTpgQgRpe5CQ 23
qW9eVsT0NVb/Vswtw8kPIxUnaYmm9Px1dYmq2+4+qZA
--- 38TpQMxQRRNMfmYYpBX6DDrPx4/QY5UmJnhPyVoX/cw
)"},
    };
    return v;
}

DecryptWith kit_with(const KitVector& v) {
    DecryptWith w;
    if (v.identity != nullptr) {
        w.identities.push_back(X25519Identity::parse(v.identity));
    }
    if (v.passphrase != nullptr) {
        w.passphrase = v.passphrase;
    }
    return w;
}

TEST(AgeStreamTestkit, HeaderVectors) {
    for (const KitVector& v : kit_vectors()) {
        SCOPED_TRACE(v.name);
        // A payload nonce and one (garbage) chunk after the header.
        const std::string file = v.header + std::string(kAgeNonceSize + 40, '\x5a');
        try {
            AgeDecryptor dec(source_of(file), kit_with(v));
            EXPECT_FALSE(v.expect.has_value()) << "header accepted";
        } catch (const AgeError& e) {
            ASSERT_TRUE(v.expect.has_value()) << "rejected: " << e.what();
            EXPECT_EQ(e.kind(), *v.expect) << e.what();
        }
    }
}

TEST(AgeStreamTestkit, ModifiedHeaderFailsTheMac) {
    // x25519 with a grease stanza that is not covered by the MAC as computed.
    std::string h = kit_vectors()[0].header;
    h.insert(h.find("--- "), "-> grease\n\n");
    const std::string file = h + std::string(kAgeNonceSize + 40, '\x5a');
    try {
        AgeDecryptor dec(source_of(file), kit_with(kit_vectors()[0]));
        ADD_FAILURE() << "accepted";
    } catch (const AgeError& e) {
        EXPECT_EQ(e.kind(), Kind::kTampered);
    }
}

// STREAM framing cases built on the "x25519" testkit header, whose file key is known, with
// chunks sealed here directly from the primitives and flags chosen per case.
class KitStream {
  public:
    KitStream() : file_(kit_vectors()[0].header) {
        for (std::size_t i = 0; i < kAgeNonceSize; ++i) {
            nonce_[i] = static_cast<std::uint8_t>(i * 7);
        }
        file_.append(reinterpret_cast<const char*>(nonce_.data()), nonce_.size());
        const std::string file_key = "YELLOW SUBMARINE";
        EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
        EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
        char digest[] = "SHA256";
        char info[] = "payload";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                              const_cast<char*>(file_key.data()), 16),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, nonce_.data(), nonce_.size()),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 7),
            OSSL_PARAM_construct_end()};
        EXPECT_EQ(EVP_KDF_derive(ctx, key_.data(), key_.size(), params), 1);
        EVP_KDF_CTX_free(ctx);
        EVP_KDF_free(kdf);
    }

    KitStream& chunk(const std::string& plain, bool last) {
        std::array<std::uint8_t, 12> n{};
        for (int i = 10, c = counter_++; i >= 0 && c > 0; --i, c >>= 8) {
            n[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(c & 0xff);
        }
        n[11] = last ? 1 : 0;
        std::string out(plain.size() + kAgeTagSize, '\0');
        unsigned long long len = 0;
        crypto_aead_chacha20poly1305_ietf_encrypt(
            reinterpret_cast<unsigned char*>(out.data()), &len,
            reinterpret_cast<const unsigned char*>(plain.data()), plain.size(), nullptr, 0, nullptr,
            n.data(), key_.data());
        file_ += out;
        return *this;
    }
    const std::string& file() const { return file_; }

  private:
    std::string file_;
    std::array<std::uint8_t, kAgeNonceSize> nonce_{};
    std::array<std::uint8_t, 32> key_{};
    int counter_ = 0;
};

TEST(AgeStreamTestkit, StreamFraming) {
    const DecryptWith with = kit_with(kit_vectors()[0]);
    const std::string full(kChunk, 'f');

    // Valid shapes.
    EXPECT_EQ(decrypt(KitStream().chunk("hello", true).file(), with), "hello");
    EXPECT_EQ(decrypt(KitStream().chunk("", true).file(), with), "");
    EXPECT_TRUE(decrypt(KitStream().chunk(full, true).file(), with) == full);
    EXPECT_TRUE(decrypt(KitStream().chunk(full, false).chunk("x", true).file(), with) ==
                full + "x");
    EXPECT_TRUE(decrypt(KitStream().chunk(full, false).chunk(full, false).chunk(full, true).file(),
                        with) == full + full + full);

    std::string out;
    // No chunk at all, and no final chunk.
    EXPECT_EQ(decrypt_error(KitStream().file(), with), Kind::kTruncated);
    EXPECT_EQ(decrypt_error(KitStream().chunk(full, false).file(), with, &out), Kind::kTruncated);
    EXPECT_TRUE(out.empty());  // known to be the end of the input: not released
    // An empty final chunk after data.
    EXPECT_EQ(decrypt_error(KitStream().chunk(full, false).chunk("", true).file(), with, &out),
              Kind::kMalformed);
    // A non-final empty chunk, and a short non-final chunk.
    EXPECT_EQ(decrypt_error(KitStream().chunk("", false).chunk("x", true).file(), with),
              Kind::kTruncated);
    EXPECT_EQ(decrypt_error(KitStream().chunk("abc", false).file(), with), Kind::kTruncated);
    EXPECT_EQ(decrypt_error(
                  KitStream().chunk(std::string(100, 'a'), false).chunk(full, true).file(), with),
              Kind::kTampered);
    // Two final chunks (data after the final one).
    EXPECT_EQ(decrypt_error(KitStream().chunk(full, true).chunk("x", true).file(), with, &out),
              Kind::kMalformed);
    EXPECT_EQ(out, "");
    // A short final chunk whose tag is missing (cut to under 16 bytes).
    std::string cut = KitStream().chunk("", true).file();
    cut.pop_back();
    EXPECT_EQ(decrypt_error(cut, with), Kind::kTruncated);
    // Nonce cut short.
    EXPECT_EQ(decrypt_error(kit_vectors()[0].header + "short", with), Kind::kTruncated);
}

// ---- interop with the age CLI (skipped when it is not installed) ----

int shell(const std::string& cmd) {
    return testing::run_shell(cmd).exit_code;
}

using testing::slurp;

void spit(const fs::path& p, const std::string& data) {
    std::ofstream f(p, std::ios::binary);
    f << data;
}

class AgeInterop : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!fs::exists("/usr/bin/age") || !fs::exists("/usr/bin/age-keygen")) {
            GTEST_SKIP() << "age CLI not installed";
        }
        dir_ = tmp_.path();
    }
    std::string p(const std::string& name) const { return "'" + (dir_ / name).string() + "'"; }
    fs::path path(const std::string& name) const { return dir_ / name; }

    // A key made by age-keygen, parsed by us.
    X25519Identity keygen(const std::string& name) {
        EXPECT_EQ(shell("timeout 30 age-keygen -o " + p(name) + " 2>/dev/null"), 0);
        const auto ids = parse_identity_file(slurp(path(name)));
        EXPECT_EQ(ids.size(), 1u);
        return ids.at(0);
    }

    testing::TempDir tmp_;
    fs::path dir_;
};

const std::vector<std::size_t>& interop_sizes() {
    static const std::vector<std::size_t> sizes = {0, 1, kChunk, kChunk + 1, (1 << 20) + 3};
    return sizes;
}

TEST_F(AgeInterop, OursDecryptedByAge) {
    const X25519Identity id = keygen("key.txt");
    for (std::size_t n : interop_sizes()) {
        SCOPED_TRACE(n);
        const std::string plain = random_data(n, static_cast<unsigned>(n) + 1);
        spit(path("ours.age"), encrypt(plain, to_recipient(id), 4099));
        ASSERT_EQ(
            shell("timeout 60 age -d -i " + p("key.txt") + " -o " + p("out") + " " + p("ours.age")),
            0);
        EXPECT_TRUE(slurp(path("out")) == plain);
    }
}

TEST_F(AgeInterop, AgeDecryptedByUs) {
    const X25519Identity id = keygen("key.txt");
    const X25519Identity other = keygen("other.txt");
    for (std::size_t n : interop_sizes()) {
        SCOPED_TRACE(n);
        const std::string plain = random_data(n, static_cast<unsigned>(n) + 2);
        spit(path("plain"), plain);
        ASSERT_EQ(shell("timeout 60 age -r " + other.recipient().to_string() + " -r " +
                        id.recipient().to_string() + " -o " + p("theirs.age") + " " + p("plain")),
                  0);
        const std::string cipher = slurp(path("theirs.age"));
        EXPECT_EQ(age_stanza_types(source_of(cipher)),
                  (std::vector<std::string>{"X25519", "X25519"}));
        EXPECT_TRUE(decrypt(cipher, with_identity(id), 7777) == plain);
        EXPECT_TRUE(decrypt(cipher, with_identity(other)) == plain);
        EXPECT_EQ(decrypt_error(cipher, with_identity(X25519Identity::generate())),
                  Kind::kNoIdentityMatched);
    }
}

TEST_F(AgeInterop, AgeRejectsOurDamagedFiles) {
    const X25519Identity id = keygen("key.txt");
    const std::string cipher = encrypt(random_data(3 * kChunk, 3), to_recipient(id));
    std::string bad = cipher;
    bad[bad.size() / 2] ^= 1;
    spit(path("bad.age"), bad);
    EXPECT_NE(shell("timeout 60 age -d -i " + p("key.txt") + " -o /dev/null " + p("bad.age") +
                    " 2>/dev/null"),
              0);
    spit(path("cut.age"), cipher.substr(0, cipher.size() - kSealed));
    EXPECT_NE(shell("timeout 60 age -d -i " + p("key.txt") + " -o /dev/null " + p("cut.age") +
                    " 2>/dev/null"),
              0);
}

// age reads passphrases from the terminal only: `script` gives it a pty, and the passphrase
// typed on stdin reaches it through that pty.
TEST_F(AgeInterop, PassphraseOursDecryptedByAge) {
    if (!fs::exists("/usr/bin/script")) {
        GTEST_SKIP() << "util-linux script(1) not installed";
    }
    EncryptTo to;
    to.passphrase = "correct-horse-7";
    to.scrypt_log_n = 10;
    const std::string plain = random_data(kChunk + 99, 21);
    spit(path("ours.age"), encrypt(plain, to));
    ASSERT_EQ(shell("printf 'correct-horse-7\\n' | timeout 60 script -qec \"age -d -o " + p("out") +
                    " " + p("ours.age") + "\" /dev/null > /dev/null"),
              0);
    EXPECT_TRUE(slurp(path("out")) == plain);
}

TEST_F(AgeInterop, PassphraseAgeDecryptedByUs) {
    if (!fs::exists("/usr/bin/script")) {
        GTEST_SKIP() << "util-linux script(1) not installed";
    }
    const std::string plain = random_data(kChunk * 2 + 5, 22);
    spit(path("plain"), plain);
    ASSERT_EQ(shell("printf 'correct-horse-7\\ncorrect-horse-7\\n' | timeout 60 script -qec "
                    "\"age -p -o " +
                    p("theirs.age") + " " + p("plain") + "\" /dev/null > /dev/null"),
              0);
    const std::string cipher = slurp(path("theirs.age"));
    ASSERT_FALSE(cipher.empty());
    EXPECT_EQ(age_stanza_types(source_of(cipher)), std::vector<std::string>{"scrypt"});
    DecryptWith w;
    w.passphrase = "correct-horse-7";
    EXPECT_TRUE(decrypt(cipher, w) == plain);  // age's default work factor, 2^18
    w.passphrase = "correct-horse-8";
    EXPECT_EQ(decrypt_error(cipher, w), Kind::kBadPassphrase);
}

TEST_F(AgeInterop, ArmoredFilesAreRefusedClearly) {
    const X25519Identity id = keygen("key.txt");
    spit(path("plain"), "x");
    ASSERT_EQ(shell("timeout 60 age -a -r " + id.recipient().to_string() + " -o " +
                    p("armored.age") + " " + p("plain")),
              0);
    EXPECT_EQ(decrypt_error(slurp(path("armored.age")), with_identity(id)), Kind::kMalformed);
}

}  // namespace
}  // namespace mlk::crypto
