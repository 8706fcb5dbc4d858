#include "mlkeeper/backup/verify.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "mlkeeper/backup/create.hpp"
#include "mlkeeper/crypto/age_keys.hpp"
#include "support/temp_dir.hpp"
#include "support/tree.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path make_archive(const mlk::testing::TempDir& t, Codec codec) {
    auto source = mlk::testing::make_model_tree(t.path(), "models");
    auto dest = t / "dest";
    fs::create_directories(dest);
    auto scan = scan_source(source, nullptr);
    CreateOptions o;
    o.source = source;
    o.dest = dest;
    o.codec = codec;
    o.level = codec == Codec::kGzip ? 6 : 3;
    o.threads = 2;
    o.progress = util::ProgressMode::kNever;
    o.tool_version = "test";
    auto now = std::chrono::system_clock::now();
    return create_archive(o, scan, next_archive_path(dest, codec, now), now).archive;
}

void flip_everywhere(Codec codec, int flips) {
    mlk::testing::TempDir t;
    auto archive = make_archive(t, codec);
    ASSERT_TRUE(verify_archive(archive).ok);
    auto original = mlk::testing::slurp(archive);
    std::mt19937 rng(codec == Codec::kZstd ? 1 : 2);
    for (int i = 0; i < flips; ++i) {
        auto pos = i < 3 ? std::vector<std::size_t>{0, original.size() / 2, original.size() - 1}[i]
                         : rng() % original.size();
        auto bad = original;
        bad[pos] = static_cast<char>(bad[pos] ^ static_cast<char>(1 + rng() % 255));
        std::ofstream(archive, std::ios::binary | std::ios::trunc) << bad;
        auto r = verify_archive(archive);
        EXPECT_FALSE(r.ok) << "flip at byte " << pos << " of " << original.size()
                           << " went unnoticed";
        EXPECT_FALSE(r.problem.empty());
    }
    std::ofstream(archive, std::ios::binary | std::ios::trunc) << original;
    EXPECT_TRUE(verify_archive(archive).ok);
}

TEST(Verify, EverySingleByteFlipInAZstdArchiveIsDetected) {
    flip_everywhere(Codec::kZstd, 300);
}

TEST(Verify, EverySingleByteFlipInAGzipArchiveIsDetected) {
    flip_everywhere(Codec::kGzip, 300);
}

TEST(Verify, TruncationAtAnyPointIsDetected) {
    mlk::testing::TempDir t;
    auto archive = make_archive(t, Codec::kZstd);
    auto original = mlk::testing::slurp(archive);
    for (std::size_t cut : {std::size_t{0}, std::size_t{3}, original.size() / 4,
                            original.size() / 2, original.size() - 1}) {
        std::ofstream(archive, std::ios::binary | std::ios::trunc) << original.substr(0, cut);
        EXPECT_FALSE(verify_archive(archive).ok) << "cut at " << cut;
    }
}

TEST(Verify, MissingManifestFallsBackToIntegrityOnly) {
    mlk::testing::TempDir t;
    auto archive = make_archive(t, Codec::kGzip);
    fs::remove(fs::path(archive.string() + ".manifest.json"));
    auto r = verify_archive(archive);
    EXPECT_TRUE(r.ok) << r.problem;
    EXPECT_EQ(r.level, VerifyLevel::kIntegrityOnly);
    EXPECT_GT(r.entries, 10u);
}

TEST(Verify, ChecksumsFileDisagreeingWithTheManifestIsReported) {
    mlk::testing::TempDir t;
    auto archive = make_archive(t, Codec::kZstd);
    auto sums = archive.parent_path() / "checksums.txt";
    std::ofstream(sums, std::ios::trunc)
        << std::string(64, 'a') << "  " << archive.filename().string() << "\n";
    auto r = verify_archive(archive);
    EXPECT_FALSE(r.ok);
    EXPECT_THAT(r.problem, HasSubstr("disagree"));
}

CreateResult create_verified(const mlk::testing::TempDir& t, const crypto::EncryptTo* encrypt) {
    auto source = mlk::testing::make_model_tree(t.path(), "models");
    auto dest = t / "dest";
    fs::create_directories(dest);
    auto scan = scan_source(source, nullptr);
    CreateOptions o;
    o.source = source;
    o.dest = dest;
    o.threads = 2;
    o.progress = util::ProgressMode::kNever;
    o.tool_version = "test";
    o.encrypt = encrypt;
    o.verify = CreateOptions::Verify::kYes;
    auto now = std::chrono::system_clock::now();
    return create_archive(
        o, scan,
        next_archive_path(dest, Codec::kZstd, now, encrypt ? Encrypted::kYes : Encrypted::kNo),
        now);
}

// The backup's own check runs before the archive is in place; its verdict lands in the manifest.
TEST(Verify, ACreatedArchiveIsVerifiedBeforeItIsPutInPlace) {
    mlk::testing::TempDir t;
    auto created = create_verified(t, nullptr);
    ASSERT_TRUE(created.verification.has_value());
    EXPECT_TRUE(created.verification->ok) << created.verification->problem;
    EXPECT_GT(created.verification->bytes, 0u);
    EXPECT_EQ(created.verification->archive_sha256, created.manifest.archive_sha256);
    EXPECT_TRUE(created.manifest.verified_at.has_value());
    EXPECT_TRUE(read_manifest(manifest_path_for(created.archive)).verified_at.has_value());
    EXPECT_TRUE(verify_archive(created.archive).ok);
}

TEST(Verify, AnEncryptedArchiveIsVerifiedWithItsOwnFileKey) {
    mlk::testing::TempDir t;
    crypto::EncryptTo to;
    to.recipients.push_back(crypto::X25519Identity::generate().recipient());
    auto created = create_verified(t, &to);
    ASSERT_TRUE(created.verification.has_value());
    EXPECT_TRUE(created.verification->ok) << created.verification->problem;
    EXPECT_EQ(created.verification->level, VerifyLevel::kFull);
    EXPECT_GT(created.verification->entries, 1u);
}

// verify_written reads only the file it is given and the manifest in memory: a flipped byte, a
// cut file or a manifest that disagrees are each reported.
TEST(Verify, VerifyWrittenChecksTheFileAgainstTheManifestInMemory) {
    mlk::testing::TempDir t;
    auto archive = make_archive(t, Codec::kZstd);
    auto m = read_manifest(manifest_path_for(archive));
    auto copy = t / "dest" / ".temp-copy";
    auto original = mlk::testing::slurp(archive);
    std::ofstream(copy, std::ios::binary) << original;
    EXPECT_TRUE(verify_written(copy, m).ok);

    auto bad = original;
    bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x20);
    std::ofstream(copy, std::ios::binary | std::ios::trunc) << bad;
    auto r = verify_written(copy, m);
    EXPECT_FALSE(r.ok);
    EXPECT_THAT(r.problem, HasSubstr(m.archive));

    std::ofstream(copy, std::ios::binary | std::ios::trunc) << original;
    auto wrong = m;
    auto file = std::find_if(wrong.entries.begin(), wrong.entries.end(),
                             [](const ManifestEntry& e) { return e.type == EntryType::kFile; });
    ASSERT_NE(file, wrong.entries.end());
    file->sha256 = std::string(64, '0');
    EXPECT_THAT(verify_written(copy, wrong).problem, HasSubstr("is corrupt: SHA-256"));
    wrong = m;
    wrong.archive_sha256 = std::string(64, 'f');
    EXPECT_THAT(verify_written(copy, wrong).problem, HasSubstr("SHA-256"));
}

// verify_written does not hash an encrypted file again (decrypting it authenticates every byte):
// a flip anywhere (header, payload nonce, any chunk, the last byte), a cut or bytes appended must
// all still be caught by the decryption itself.
TEST(Verify, VerifyWrittenOfAnEncryptedFileCatchesEveryChangeWithoutHashingIt) {
    mlk::testing::TempDir t;
    auto id = crypto::X25519Identity::generate();
    crypto::EncryptTo to;
    to.recipients.push_back(id.recipient());
    auto created = create_verified(t, &to);
    ASSERT_TRUE(created.verification && created.verification->ok);
    crypto::DecryptWith keys;
    keys.identities.push_back(id);
    const auto& m = created.manifest;
    auto copy = t / "dest" / ".temp-copy";
    auto original = mlk::testing::slurp(created.archive);
    std::ofstream(copy, std::ios::binary) << original;
    auto good = verify_written(copy, m, &keys);
    ASSERT_TRUE(good.ok) << good.problem;
    EXPECT_EQ(good.archive_sha256, m.archive_sha256);
    EXPECT_EQ(good.archive_bytes, original.size());

    const auto header_end = original.find("\n---") + 1;
    ASSERT_GT(header_end, 0u);
    std::vector<std::size_t> at{0,
                                10,
                                header_end,
                                header_end + 60,
                                original.size() / 2,
                                original.size() - 17,
                                original.size() - 1};
    std::mt19937 rng(7);
    for (int i = 0; i < 60; ++i) {
        at.push_back(rng() % original.size());
    }
    for (const auto pos : at) {
        auto bad = original;
        bad[pos] = static_cast<char>(bad[pos] ^ static_cast<char>(1 + rng() % 255));
        std::ofstream(copy, std::ios::binary | std::ios::trunc) << bad;
        EXPECT_FALSE(verify_written(copy, m, &keys).ok)
            << "flip at byte " << pos << " of " << original.size() << " went unnoticed";
    }
    for (const auto cut : {original.size() - 1, original.size() - 65'552, original.size() / 2}) {
        std::ofstream(copy, std::ios::binary | std::ios::trunc) << original.substr(0, cut);
        EXPECT_FALSE(verify_written(copy, m, &keys).ok) << "cut at " << cut;
    }
    std::ofstream(copy, std::ios::binary | std::ios::trunc) << original << "x";
    EXPECT_FALSE(verify_written(copy, m, &keys).ok) << "a byte appended went unnoticed";
}

}  // namespace
}  // namespace mlk::backup
