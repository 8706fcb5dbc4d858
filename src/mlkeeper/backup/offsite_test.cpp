// Remote retention and sync housekeeping against a real S3 server (s3rver behind the checking
// gate): what is deleted, what is never deleted, and leftovers of crashed uploads.
#include "mlkeeper/backup/offsite.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include "mlkeeper/backup/manifest.hpp"
#include "support/s3_server.hpp"
#include "support/temp_dir.hpp"

namespace mlk::backup {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

class OffsiteTest : public ::testing::Test {
  protected:
    void SetUp() override {
        try {
            server_.emplace();
        } catch (const testing::ServerUnavailable& e) {
            GTEST_SKIP() << e.what();
        }
        storage::s3::S3Settings s;
        s.bucket = "mlk-test";
        s.prefix = "models/h1/";
        s.endpoint = server_->endpoint();
        s.addressing = storage::s3::Addressing::kPath;
        s.attempts = 2;
        s.retry_base = std::chrono::milliseconds(10);
        s.credentials = {testing::S3Server::kAccessKey, testing::S3Server::kSecretKey, "", "test"};
        client_.emplace(s);
    }

    // A complete remote backup: archive, manifest and checksum objects.
    void put_remote(const std::string& stamp, bool verified,
                    std::optional<std::string> parent = std::nullopt, bool complete = true) {
        const std::string name = "models_backup_" + stamp + ".tar.zst";
        Manifest m;
        m.archive = name;
        m.archive_size = 4;
        m.archive_sha256 = std::string(64, 'a');
        m.created_at = stamp.substr(0, 4) + "-" + stamp.substr(4, 2) + "-" + stamp.substr(6, 2) +
                       "T" + stamp.substr(9, 2) + ":" + stamp.substr(11, 2) + ":" +
                       stamp.substr(13, 2) + ".000Z";
        m.host = "h1";
        m.tool.version = "test";
        m.source = "/opt/ml/models";
        m.root = "models";
        m.compression = {"zstd", 3};
        ManifestEntry dir;
        dir.path = "models";
        dir.type = EntryType::kDir;
        dir.mode = 0755;
        m.entries.push_back(dir);
        if (parent) {
            m.kind = BackupKind::kIncremental;
            m.parent = *parent;
        }
        if (verified) {
            m.verified_at = m.created_at;
        }
        const std::string key = client_->settings().prefix + name;
        client_->put_bytes(key, "data", "application/zstd");
        client_->put_bytes(key + ".manifest.json", serialize_manifest(m), "application/json");
        if (complete) {
            client_->put_bytes(key + ".sha256", m.archive_sha256 + "  " + name + "\n",
                               "text/plain");
        }
    }

    std::vector<std::string> remote_names() {
        std::vector<std::string> out;
        for (const auto& r : list_remote(*client_)) {
            out.push_back(r.name + (r.complete ? "" : " (incomplete)"));
        }
        return out;
    }

    SyncOptions policy(int days, int keep_min, DryRun dry = DryRun::kNo) {
        SyncOptions o;
        o.dry_run = dry;
        o.policy.max_age = std::chrono::seconds(days * 86400LL);
        o.policy.keep_min = keep_min;
        return o;
    }

    std::optional<testing::S3Server> server_;
    std::optional<storage::s3::S3Client> client_;
    testing::TempDir local_;
};

TEST_F(OffsiteTest, TheOnlyCopyOfTheNewestVerifiedBackupIsNeverDeleted) {
    put_remote("20240101_020000", true);
    put_remote("20240102_020000", true);
    put_remote("20240103_020000", false);
    // Everything is older than 30 days and keep_min is 0. The newest archive is always kept
    // (retention's safety net), and so is the newest VERIFIED one: it exists nowhere else.
    auto dry = prune_remote(*client_, local_.path(), policy(30, 0, DryRun::kYes));
    EXPECT_THAT(dry.deleted, ElementsAre("models_backup_20240101_020000.tar.zst"));
    EXPECT_EQ(remote_names().size(), 3u) << "a dry run deleted something";

    auto rep = prune_remote(*client_, local_.path(), policy(30, 0));
    EXPECT_THAT(rep.deleted, ElementsAre("models_backup_20240101_020000.tar.zst"));
    EXPECT_THAT(remote_names(), ElementsAre("models_backup_20240102_020000.tar.zst",
                                            "models_backup_20240103_020000.tar.zst"));
    // All three objects of the deleted backup are gone, the others' are there.
    EXPECT_EQ(client_->list(client_->settings().prefix).size(), 6u);
}

TEST_F(OffsiteTest, WithALocalCopyTheNewestVerifiedFollowsThePolicy) {
    put_remote("20240101_020000", true);
    put_remote("20240102_020000", false);
    std::ofstream(local_ / "models_backup_20240101_020000.tar.zst") << "data";
    auto rep = prune_remote(*client_, local_.path(), policy(30, 0));
    EXPECT_THAT(rep.deleted, ElementsAre("models_backup_20240101_020000.tar.zst"));
    EXPECT_THAT(remote_names(), ElementsAre("models_backup_20240102_020000.tar.zst"));
}

TEST_F(OffsiteTest, KeepMinAndIncrementalParentsAreKept) {
    put_remote("20240101_020000", true);
    put_remote("20240102_020000", true);
    put_remote("20240103_020000", true, "models_backup_20240102_020000.tar.zst");
    auto rep = prune_remote(*client_, local_.path(), policy(30, 1));
    EXPECT_THAT(rep.deleted, ElementsAre("models_backup_20240101_020000.tar.zst"));
    EXPECT_THAT(remote_names(), ElementsAre("models_backup_20240102_020000.tar.zst",
                                            "models_backup_20240103_020000.tar.zst"));
    // retention_days 0 keeps everything.
    EXPECT_TRUE(prune_remote(*client_, local_.path(), policy(0, 0)).deleted.empty());
}

TEST_F(OffsiteTest, SyncRemovesLeftoversOfCrashedUploads) {
    put_remote("20240105_020000", true, std::nullopt, /*complete=*/false);
    auto rep = sync_to_s3(*client_, local_.path(), policy(0, 3));
    EXPECT_THAT(rep.leftovers_removed, ElementsAre("models_backup_20240105_020000.tar.zst"));
    EXPECT_TRUE(client_->list(client_->settings().prefix).empty());
}

TEST_F(OffsiteTest, FetchRefusesAnArchiveWhoseHashDoesNotMatch) {
    put_remote("20240101_020000", true);  // content "data", recorded hash aaaa...
    testing::TempDir scratch;
    try {
        fetch_from_s3(*client_,
                      client_->settings().prefix + "models_backup_20240101_020000.tar.zst",
                      scratch.path(), util::ProgressMode::kNever, true);
        FAIL() << "a mismatching download was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::kCritical);
        EXPECT_THAT(e.what(), ::testing::HasSubstr("does not match"));
    }
}

}  // namespace
}  // namespace mlk::backup
