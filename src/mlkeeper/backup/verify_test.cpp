#include "mlkeeper/backup/verify.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "mlkeeper/backup/create.hpp"
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

}  // namespace
}  // namespace mlk::backup
