// Black-box tests of the off-site copy against a real S3 server (s3rver behind a gate that
// checks every SigV4 signature and checksum with botocore and injects faults): `backup
// --s3-sync`, `backups list [--remote]`, `restore s3://`, `verify s3://`, retries, aborted
// multipart uploads, crashes, credentials and secrets, and the aws CLI reading what we wrote.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "mlkeeper/util/sha256.hpp"
#include "support/mlkeeper_runner.hpp"
#include "support/s3_server.hpp"
#include "support/servers.hpp"
#include "support/shell.hpp"
#include "support/tmpfs.hpp"
#include "support/tree.hpp"

namespace mlk {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::MlkeeperRunner;
using ::testing::Not;
using testing::S3Server;

constexpr const char* kBucket = "mlk-test";
constexpr const char* kSecretMarker = "S3RVER";  // the secret; must never be printed

class S3Test : public ::testing::Test {
  protected:
    void SetUp() override {
        try {
            s3_.emplace();
        } catch (const testing::ServerUnavailable& e) {
            GTEST_SKIP() << e.what();
        }
        source_ = testing::make_model_tree(m_.dir().path(), "models");
        dest_ = m_.dir() / "backups";
        auto& env = m_.env();
        env["MODEL_DIR"] = source_.string();
        env["BACKUP_DIR"] = dest_.string();
        env["S3_BUCKET"] = kBucket;
        env["S3_ENDPOINT"] = s3_->endpoint();
        env["S3_PREFIX"] = "models/{host}/";
        env["S3_RETRY_BASE_MS"] = "20";
        env["AWS_ACCESS_KEY_ID"] = S3Server::kAccessKey;
        env["AWS_SECRET_ACCESS_KEY"] = S3Server::kSecretKey;
        env["AWS_REGION"] = S3Server::kRegion;
    }

    nlohmann::json backup_json(std::vector<std::string> extra = {},
                               const std::map<std::string, std::string>& env = {}, int expect = 0) {
        std::vector<std::string> args{"backup", "--s3-sync", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        auto r = m_.run(args, env);
        EXPECT_EQ(r.exit_code, expect) << r.err << r.out;
        return r.out.empty() ? nlohmann::json() : nlohmann::json::parse(r.out);
    }

    nlohmann::json remote_list() {
        auto r = m_.run({"backups", "list", "--remote", "--json"});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return nlohmann::json::parse(r.out);
    }

    // Requests the gate saw whose method is `method` and whose query contains `q`.
    int count_requests(const std::string& method, const std::string& q) const {
        int n = 0;
        for (const auto& e : s3_->request_log()) {
            if (e["method"] == method &&
                e["query"].get<std::string>().find(q) != std::string::npos) {
                ++n;
            }
        }
        return n;
    }

    // The aws CLI against the gate, as an independent client.
    util::RunResult aws(const std::string& args) const {
        const std::string cli = fs::exists("/usr/bin/aws") ? "/usr/bin/aws" : "aws";
        return testing::run_shell(
            "AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 "
            "AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null " +
                cli + " --endpoint-url " + s3_->endpoint() + " " + args + " 2>&1",
            std::chrono::seconds(120));
    }

    std::optional<S3Server> s3_;
    MlkeeperRunner m_;
    fs::path source_;
    fs::path dest_;
};

TEST_F(S3Test, MultipartUploadListRestoreRoundTrip) {
    testing::write_random_file(source_ / "big" / "weights.bin", 13 << 20, 3);
    // Each part takes at least 300 ms at the server, so parts sent in parallel overlap.
    s3_->set_faults(R"([{"method": "PUT", "query_contains": "partNumber", "times": -1,
                         "action": "delay", "ms": 300}])");
    auto j = backup_json({"--level", "1"}, {{"S3_PART_SIZE", "5MiB"}});
    ASSERT_TRUE(j["offsite"].is_object()) << j.dump();
    EXPECT_TRUE(j["offsite"]["error"].is_null()) << j["offsite"]["error"];
    const std::string name = j["archive"];
    EXPECT_THAT(j["offsite"]["uploaded"], ::testing::ElementsAre(name));

    // Three parts of at most 5 MiB, each with a Content-MD5 the gate checked; the storage
    // class went with the initiation.
    EXPECT_EQ(count_requests("POST", "uploads="), 1);
    EXPECT_EQ(count_requests("PUT", "partNumber="), 3);
    for (const auto& e : s3_->request_log()) {
        if (e["method"] == "PUT" &&
            e["query"].get<std::string>().find("partNumber") != std::string::npos) {
            EXPECT_TRUE(e["headers"].contains("content-md5")) << e.dump();
            EXPECT_EQ(e["status"], 200);
        }
        if (e["method"] == "POST" && e["query"] == "uploads=") {
            EXPECT_EQ(e["headers"]["x-amz-storage-class"], "STANDARD");
        }
    }

    std::vector<std::pair<double, double>> parts;
    for (const auto& e : s3_->request_log()) {
        if (e["method"] == "PUT" &&
            e["query"].get<std::string>().find("partNumber") != std::string::npos) {
            parts.emplace_back(e["start"].get<double>(), e["end"].get<double>());
        }
    }
    int overlapping = 0;
    for (std::size_t a = 0; a < parts.size(); ++a) {
        for (std::size_t b = a + 1; b < parts.size(); ++b) {
            overlapping += parts[a].first < parts[b].second && parts[b].first < parts[a].second;
        }
    }
    EXPECT_GE(overlapping, 1) << "the parts went up one after another";

    auto remote = remote_list();
    ASSERT_EQ(remote.size(), 1u);
    EXPECT_EQ(remote[0]["archive"], name);
    const std::string key = remote[0]["remote_key"];
    EXPECT_THAT(key, ::testing::StartsWith("models/"));

    auto both = nlohmann::json::parse(m_.run({"backups", "list", "--json"}).out);
    ASSERT_EQ(both.size(), 1u);
    EXPECT_EQ(both[0]["location"], "both");

    // The local copy is gone (disk died): restore comes from S3 alone.
    fs::remove_all(dest_);
    auto listed = nlohmann::json::parse(m_.run({"backups", "list", "--json"}).out);
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0]["location"], "remote");
    EXPECT_EQ(listed[0]["verified"], true);  // from the manifest uploaded with it
    EXPECT_EQ(listed[0]["kind"], "full");
    EXPECT_FALSE(listed[0]["files"].is_null());
    const fs::path to = m_.dir() / "restored";
    auto r = m_.run(
        {"restore", std::string("s3://") + kBucket + "/" + key, "--to", to.string(), "--json"},
        {{"S3_PART_SIZE", "5MiB"}});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(testing::snapshot(to / "models"), testing::snapshot(source_));
    auto rj = nlohmann::json::parse(r.out);
    EXPECT_THAT(rj["downloaded"]["archives"], ::testing::ElementsAre(name));
    // Ranged GETs for the large object; the scratch directory is gone.
    int ranged = 0;
    for (const auto& e : s3_->request_log()) {
        ranged += e["method"] == "GET" && e["headers"].contains("range") && e["status"] == 206;
    }
    EXPECT_EQ(ranged, 3);
    for (const auto& e : fs::directory_iterator(m_.dir().path())) {
        EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".mlkeeper-download-")));
    }
    auto v = m_.run({"verify", std::string("s3://") + kBucket + "/" + key});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST_F(S3Test, TheAwsCliReadsWhatWeUploaded) {
    auto j = backup_json();
    const std::string name = j["archive"];
    const std::string key = remote_list()[0]["remote_key"];
    const fs::path got = m_.dir() / "via-aws";
    fs::create_directories(got);
    auto cp = aws("s3 cp s3://" + std::string(kBucket) + "/" + key + " " + (got / name).string());
    if (cp.exit_code == 127) {
        GTEST_SKIP() << "aws CLI not installed";
    }
    ASSERT_EQ(cp.exit_code, 0) << cp.out;
    ASSERT_EQ(aws("s3 cp s3://" + std::string(kBucket) + "/" + key + ".sha256 " +
                  (got / "checksums.txt").string())
                  .exit_code,
              0);
    EXPECT_EQ(util::sha256_file_hex(got / name), util::sha256_file_hex(dest_ / name));
    auto check = testing::run_shell("cd '" + got.string() + "' && sha256sum -c checksums.txt");
    EXPECT_EQ(check.exit_code, 0) << check.out;
    auto manifest = aws("s3 cp s3://" + std::string(kBucket) + "/" + key + ".manifest.json -");
    ASSERT_EQ(manifest.exit_code, 0) << manifest.out;
    EXPECT_EQ(nlohmann::json::parse(manifest.out)["archive"], name);
}

TEST_F(S3Test, WrongCredentialsGiveAClearErrorAndKeepTheLocalBackup) {
    auto r = m_.run({"backup", "--s3-sync"}, {{"AWS_SECRET_ACCESS_KEY", "not-the-secret-123"}});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("SignatureDoesNotMatch"));
    EXPECT_THAT(r.err, HasSubstr("the local backup is kept"));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr("not-the-secret-123")));
    auto local = nlohmann::json::parse(m_.run({"backups", "list", "--json"}).out);
    ASSERT_EQ(local.size(), 1u);
    EXPECT_EQ(local[0]["location"], "local");
    EXPECT_EQ(
        m_.run({"verify", (dest_ / local[0]["archive"].get<std::string>()).string()}).exit_code, 0);

    auto unknown = m_.run({"backups", "list", "--remote"}, {{"AWS_ACCESS_KEY_ID", "NOBODY"}});
    EXPECT_EQ(unknown.exit_code, 1);
    EXPECT_THAT(unknown.err, HasSubstr("InvalidAccessKeyId"));

    auto missing = m_.run({"backup", "--s3-sync"}, {{"AWS_ACCESS_KEY_ID", ""}});
    EXPECT_EQ(missing.exit_code, 78) << missing.err;
    EXPECT_THAT(missing.err, HasSubstr("AWS_ACCESS_KEY_ID"));
}

TEST_F(S3Test, ProfilesFromTheSharedCredentialsFileAndSecretsNeverShow) {
    // HOME is the runner's directory: ~/.aws/credentials as the aws CLI reads it.
    fs::create_directories(m_.dir() / ".aws");
    std::ofstream(m_.dir() / ".aws" / "credentials")
        << "[default]\naws_access_key_id = NOBODY\naws_secret_access_key = nope\n"
        << "[ci]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n"
        << "aws_session_token = tok-SESSION-9f8e7d\n";
    const fs::path log = m_.dir() / "mlkeeper.log";
    std::map<std::string, std::string> env{{"AWS_ACCESS_KEY_ID", ""},
                                           {"AWS_SECRET_ACCESS_KEY", ""},
                                           {"AWS_PROFILE", "ci"},
                                           {"LOG_FILE", log.string()}};
    auto r = m_.run({"backup", "--s3-sync", "--json"}, env);
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    // The token went with every request (signed), and never into any output or log.
    for (const auto& e : s3_->request_log()) {
        EXPECT_EQ(e["headers"].value("x-amz-security-token", ""), "tok-SESSION-9f8e7d");
    }
    std::string everything = r.out + r.err;
    for (const auto& args : std::vector<std::vector<std::string>>{{"config", "show"},
                                                                  {"config", "show", "--json"},
                                                                  {"backups", "list", "--json"},
                                                                  {"history", "--json"}}) {
        auto o = m_.run(args, env);
        everything += o.out + o.err;
    }
    std::ifstream in(log);
    const std::string logged((std::istreambuf_iterator<char>(in)), {});
    EXPECT_THAT(logged, HasSubstr("uploaded models_backup_")) << "nothing was logged";
    everything += logged;
    EXPECT_THAT(everything, Not(HasSubstr("tok-SESSION-9f8e7d")));
    EXPECT_THAT(everything, Not(HasSubstr("aws_secret_access_key")));

    env["AWS_PROFILE"] = "nope";
    auto bad = m_.run({"backups", "list", "--remote"}, env);
    EXPECT_EQ(bad.exit_code, 78);
    EXPECT_THAT(bad.err, HasSubstr("AWS profile 'nope' not found"));
}

TEST_F(S3Test, ServerDownRetriesThenFailsWithAnAlertAndTheLocalBackupIntact) {
    const fs::path alerts = m_.dir() / "alerts.txt";
    const fs::path hook = m_.dir() / "alert.sh";
    std::ofstream(hook) << "#!/bin/sh\necho \"$@\" >> '" << alerts.string() << "'\n";
    fs::permissions(hook, fs::perms::owner_all);
    const int dead = testing::free_port();
    auto r = m_.run({"backup", "--s3-sync"},
                    {{"S3_ENDPOINT", "http://127.0.0.1:" + std::to_string(dead)},
                     {"S3_ATTEMPTS", "3"},
                     {"ALERT_COMMAND", hook.string()}});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("after 3 attempts"));
    EXPECT_THAT(r.err, HasSubstr("the local backup is kept"));
    std::ifstream in(alerts);
    std::string fired((std::istreambuf_iterator<char>(in)), {});
    EXPECT_THAT(fired, HasSubstr("off-site"));
    auto local =
        nlohmann::json::parse(m_.run({"backups", "list", "--json"}, {{"S3_BUCKET", ""}}).out);
    ASSERT_EQ(local.size(), 1u);
    EXPECT_EQ(local[0]["verified"], true);

    // The server is back: the next sync uploads what is missing.
    auto j = backup_json();
    EXPECT_EQ(j["offsite"]["uploaded"].size(), 2u) << j["offsite"].dump();
    EXPECT_EQ(remote_list().size(), 2u);
}

TEST_F(S3Test, SlowDownAndServerErrorsAreRetried) {
    testing::write_random_file(source_ / "big" / "weights.bin", 11 << 20, 5);
    s3_->set_faults(R"([{"method": "PUT", "query_contains": "partNumber=2", "times": 2,
                         "action": "status", "status": 503, "code": "SlowDown"},
                        {"method": "GET", "query_contains": "list-type", "times": 1,
                         "action": "status", "status": 500, "code": "InternalError"}])");
    auto j = backup_json({"--level", "1"}, {{"S3_PART_SIZE", "5MiB"}});
    EXPECT_EQ(j["offsite"]["retries"], 3) << j["offsite"].dump();
    EXPECT_EQ(count_requests("PUT", "partNumber=2"), 3);
    EXPECT_EQ(remote_list().size(), 1u);
}

TEST_F(S3Test, ADroppedConnectionAbortsTheMultipartUploadAndTheNextRunCatchesUp) {
    testing::write_random_file(source_ / "big" / "weights.bin", 11 << 20, 9);
    s3_->set_faults(R"([{"method": "PUT", "query_contains": "partNumber=2", "times": -1,
                         "action": "drop", "after_bytes": 100000}])");
    auto r = m_.run({"backup", "--s3-sync", "--level", "1"},
                    {{"S3_PART_SIZE", "5MiB"}, {"S3_ATTEMPTS", "2"}});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    // The upload was aborted (no parts left billed) and nothing half-written is listed.
    EXPECT_EQ(count_requests("DELETE", "uploadId="), 1);
    EXPECT_EQ(count_requests("PUT", "partNumber=2"), 2);
    EXPECT_TRUE(remote_list().empty());

    s3_->set_faults("[]");
    auto j = backup_json({"--level", "1"}, {{"S3_PART_SIZE", "5MiB"}});
    EXPECT_EQ(j["offsite"]["uploaded"].size(), 2u);
    EXPECT_EQ(remote_list().size(), 2u);
}

TEST_F(S3Test, KillDashNineMidUploadLeavesNothingListedAndTheNextRunFinishes) {
    testing::write_random_file(source_ / "big" / "weights.bin", 11 << 20, 11);
    s3_->set_faults(R"([{"method": "PUT", "query_contains": "partNumber", "times": -1,
                         "action": "delay", "ms": 400}])");
    auto child = util::Subprocess::start(
        m_.command_line({"backup", "--s3-sync", "--level", "1"}, {{"S3_PART_SIZE", "5MiB"}}));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (count_requests("POST", "uploads=") == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_EQ(count_requests("POST", "uploads="), 1) << "the upload never started";
    ::kill(child.pid(), SIGKILL);
    child.wait_for(std::chrono::seconds(10));
    EXPECT_TRUE(remote_list().empty());

    s3_->set_faults("[]");
    auto j = backup_json({"--level", "1"}, {{"S3_PART_SIZE", "5MiB"}});
    EXPECT_EQ(j["offsite"]["uploaded"].size(), 2u) << j.dump();
    for (const auto& a : remote_list()) {
        auto v = m_.run(
            {"verify", "s3://" + std::string(kBucket) + "/" + a["remote_key"].get<std::string>()});
        EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    }
}

TEST_F(S3Test, ATamperedRemoteArchiveIsRefusedAndNothingIsRestored) {
    auto j = backup_json();
    const std::string key = remote_list()[0]["remote_key"];
    // Flip one byte of the stored object in s3rver's data directory.
    bool flipped = false;
    for (const auto& f : fs::recursive_directory_iterator(s3_->data_dir())) {
        const auto p = f.path().string();
        if (f.is_regular_file() && p.find(j["archive"].get<std::string>()) != std::string::npos &&
            p.find("manifest") == std::string::npos && p.find("sha256") == std::string::npos &&
            f.file_size() > 1000) {
            std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
            io.seekp(500);
            io.put('\x5a');
            flipped = true;
        }
    }
    ASSERT_TRUE(flipped);
    const fs::path to = m_.dir() / "restored";
    auto r = m_.run({"restore", "s3://" + std::string(kBucket) + "/" + key, "--to", to.string()});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("does not match"));
    EXPECT_FALSE(fs::exists(to / "models"));
    auto v = m_.run({"verify", "s3://" + std::string(kBucket) + "/" + key});
    EXPECT_EQ(v.exit_code, 2);
    auto missing = m_.run({"verify", "s3://" + std::string(kBucket) +
                                         "/models/x/models_backup_20200101_000000.tar.zst"});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_THAT(missing.err, HasSubstr("no such backup"));
}

TEST_F(S3Test, AnIncrementalChainIsRestoredFromS3Alone) {
    backup_json({"--full"});
    std::ofstream(source_ / "resnet50" / "config.json") << R"({"layers": 152})";
    testing::write_random_file(source_ / "new" / "adapter.bin", 100000, 4);
    auto inc = backup_json({"--incremental"});
    EXPECT_EQ(inc["kind"], "incremental");
    const std::string key = remote_list()[1]["remote_key"];
    fs::remove_all(dest_);
    const fs::path to = m_.dir() / "restored";
    auto r = m_.run(
        {"restore", "s3://" + std::string(kBucket) + "/" + key, "--to", to.string(), "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(nlohmann::json::parse(r.out)["downloaded"]["archives"].size(), 2u);
    EXPECT_EQ(testing::snapshot(to / "models"), testing::snapshot(source_));
}

TEST_F(S3Test, ASlowServerHitsTheRequestTimeoutAndATruncatedDownloadIsRetried) {
    auto j = backup_json();
    const std::string key = remote_list()[0]["remote_key"];
    s3_->set_faults(R"([{"method": "GET", "path_contains": ".tar.zst", "times": -1,
                         "action": "delay", "ms": 8000}])");
    const auto start = std::chrono::steady_clock::now();
    auto slow = m_.run({"verify", "s3://" + std::string(kBucket) + "/" + key},
                       {{"S3_REQUEST_TIMEOUT", "1"}, {"S3_ATTEMPTS", "2"}});
    EXPECT_EQ(slow.exit_code, 1) << slow.out << slow.err;
    EXPECT_THAT(slow.err, HasSubstr("after 2 attempts"));
    // Two attempts cut off after 1 s each, not two 8 s waits.
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(12));

    // The body stops half-way once: curl sees a short transfer and the GET is repeated.
    s3_->set_faults(R"([{"method": "GET", "path_contains": ".tar.zst", "times": 1,
                         "action": "truncate_response", "after_bytes": 1000}])");
    auto v = m_.run({"verify", "s3://" + std::string(kBucket) + "/" + key});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST_F(S3Test, AFullDiskDuringDownloadFailsCleanly) {
    testing::write_random_file(source_ / "big" / "weights.bin", 6 << 20, 13);
    auto j = backup_json({"--level", "1"});
    const std::string key = remote_list()[0]["remote_key"];
    const auto tmpfs = testing::ScopedTmpfs::mount(m_.dir() / "small", "2m");
    if (!tmpfs) {
        GTEST_SKIP() << "needs root to mount a tmpfs";
    }
    const auto mnt = tmpfs->path();
    auto r = m_.run({"restore", "s3://" + std::string(kBucket) + "/" + key, "--to",
                     (m_.dir() / "restored").string(), "--download-dir", mnt.string()});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("No space left on device"));
    EXPECT_TRUE(fs::is_empty(mnt)) << "the partial download was left behind";
    EXPECT_FALSE(fs::exists(m_.dir() / "restored" / "models"));
}

TEST_F(S3Test, DryRunUploadsNothing) {
    ASSERT_EQ(m_.run({"backup"}).exit_code, 0);  // a local backup not yet off-site
    ASSERT_TRUE(s3_->request_log().empty());
    auto j = backup_json({"--dry-run"});
    EXPECT_EQ(j["offsite"]["dry_run"], true);
    EXPECT_EQ(j["offsite"]["uploaded"].size(), 1u);
    EXPECT_EQ(count_requests("PUT", ""), 0);
    EXPECT_EQ(count_requests("POST", ""), 0);
    EXPECT_TRUE(remote_list().empty());
}

}  // namespace
}  // namespace mlk
