// Black-box tests of encrypted backups: age v1 archives the standard `age` tool decrypts,
// verify with and without the key, restore, wrong keys, tampering, and keys never shown.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/mlkeeper_runner.hpp"
#include "support/shell.hpp"
#include "support/tree.hpp"

namespace mlk {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::MlkeeperRunner;
using ::testing::Not;

class EncryptionTest : public ::testing::Test {
  protected:
    void SetUp() override {
        source_ = testing::make_model_tree(m_.dir().path(), "models");
        testing::write_random_file(source_ / "big" / "weights.bin", 3 << 20, 21);
        dest_ = m_.dir() / "backups";
        key_ = m_.dir() / "key.txt";
        log_ = m_.dir() / "mlkeeper.log";
        m_.env()["MODEL_DIR"] = source_.string();
        m_.env()["BACKUP_DIR"] = dest_.string();
        m_.env()["LOG_FILE"] = log_.string();
        auto k = m_.run({"keygen", "-o", key_.string(), "--json"});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        recipient_ = nlohmann::json::parse(k.out)["recipient"];
        m_.env()["BACKUP_ENCRYPT_TO"] = recipient_;
    }

    std::string backup_ok() {
        auto r = m_.run({"backup", "--json"});
        EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
        return nlohmann::json::parse(r.out)["archive"];
    }

    static bool have_age() { return fs::exists("/usr/bin/age"); }

    MlkeeperRunner m_;
    fs::path source_, dest_, key_, log_;
    std::string recipient_;
};

TEST_F(EncryptionTest, TheAgeToolDecryptsItAndRestoreNeedsTheKey) {
    const std::string name = backup_ok();
    EXPECT_TRUE(name.ends_with(".tar.zst.age")) << name;
    // sha256sum -c works on the encrypted file without any key.
    EXPECT_EQ(
        testing::run_shell("cd '" + dest_.string() + "' && sha256sum -c checksums.txt").exit_code,
        0);
    std::ifstream mf(dest_ / (name + ".manifest.json"));
    auto manifest = nlohmann::json::parse(mf);
    EXPECT_EQ(manifest["encryption"]["recipients"][0], recipient_);
    EXPECT_NE(manifest["verified_at"], nullptr) << "checked with the key it was written with";

    if (have_age()) {
        const fs::path out = m_.dir() / "by-age";
        fs::create_directories(out);
        auto r =
            testing::run_shell("age -d -i '" + key_.string() + "' '" + (dest_ / name).string() +
                               "' | tar --zstd -x -C '" + out.string() + "'");
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(testing::snapshot(out / "models"), testing::snapshot(source_));
    }

    // Without the key: only the outer checksum, and it says so.
    auto nokey = m_.run({"verify", (dest_ / name).string()});
    EXPECT_EQ(nokey.exit_code, 0) << nokey.err;
    EXPECT_THAT(nokey.out, HasSubstr("only the file's SHA-256 was checked"));
    const std::map<std::string, std::string> with_key{{"MLKEEPER_AGE_IDENTITY", key_.string()}};
    auto full = m_.run({"verify", (dest_ / name).string(), "--json"}, with_key);
    EXPECT_EQ(full.exit_code, 0) << full.err;
    EXPECT_EQ(nlohmann::json::parse(full.out)[0]["level"], "full");

    const fs::path to = m_.dir() / "restored";
    auto no = m_.run({"restore", (dest_ / name).string(), "--to", to.string()});
    EXPECT_EQ(no.exit_code, 2);
    EXPECT_THAT(no.err, HasSubstr("no key is configured"));
    EXPECT_FALSE(fs::exists(to / "models"));

    const fs::path other = m_.dir() / "other.txt";
    ASSERT_EQ(m_.run({"keygen", "-o", other.string()}).exit_code, 0);
    auto wrong = m_.run({"restore", (dest_ / name).string(), "--to", to.string()},
                        {{"MLKEEPER_AGE_IDENTITY", other.string()}});
    EXPECT_EQ(wrong.exit_code, 2);
    EXPECT_THAT(wrong.err, HasSubstr("no identity matched"));
    EXPECT_FALSE(fs::exists(to / "models"));

    auto ok = m_.run({"restore", (dest_ / name).string(), "--to", to.string()}, with_key);
    ASSERT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_EQ(testing::snapshot(to / "models"), testing::snapshot(source_));
}

TEST_F(EncryptionTest, TamperingAnywhereIsDetectedAndRestoresNothing) {
    const std::string name = backup_ok();
    const fs::path archive = dest_ / name;
    const auto size = fs::file_size(archive);
    const std::map<std::string, std::string> with_key{{"MLKEEPER_AGE_IDENTITY", key_.string()}};
    // A target holding an earlier restore with one local change: a failed restore, even with
    // --overwrite, must leave it exactly as it was.
    const fs::path to = m_.dir() / "target";
    ASSERT_EQ(m_.run({"restore", archive.string(), "--to", to.string()}, with_key).exit_code, 0);
    std::ofstream(to / "models" / "run.sh") << "local change";
    fs::remove(to / "models" / "big" / "weights.bin");
    const auto before = testing::snapshot(to);
    for (std::uint64_t at : {std::uint64_t{40}, size / 2, size - 5}) {
        const fs::path copy = m_.dir() / "tampered" / name;
        fs::create_directories(copy.parent_path());
        fs::copy_file(archive, copy, fs::copy_options::overwrite_existing);
        {
            std::fstream io(copy, std::ios::in | std::ios::out | std::ios::binary);
            io.seekg(static_cast<std::streamoff>(at));
            const char c = static_cast<char>(io.get());
            io.seekp(static_cast<std::streamoff>(at));
            io.put(static_cast<char>(c ^ 0x20));
        }
        auto v = m_.run({"verify", copy.string()}, with_key);
        EXPECT_EQ(v.exit_code, 2) << "flip at " << at << ": " << v.out;
        // Without the manifest beside it, the outer checksum cannot catch the flip first:
        // only decryption does, after earlier files were already extracted.
        auto r = m_.run({"restore", copy.string(), "--to", to.string(), "--overwrite"}, with_key);
        EXPECT_EQ(r.exit_code, 2) << "flip at " << at << ": " << r.err;
        EXPECT_EQ(testing::snapshot(to), before) << "flip at " << at;
        auto fresh = m_.dir() / "fresh";
        EXPECT_EQ(m_.run({"restore", copy.string(), "--to", fresh.string()}, with_key).exit_code,
                  2);
        EXPECT_FALSE(fs::exists(fresh)) << "flip at " << at;
    }
}

TEST_F(EncryptionTest, APassphraseFileWorksAndMustBePrivate) {
    const fs::path pass = m_.dir() / "pass.txt";
    std::ofstream(pass) << "correct horse battery staple\n";
    fs::permissions(pass, fs::perms::owner_read | fs::perms::owner_write);
    const std::map<std::string, std::string> env{{"BACKUP_ENCRYPT_TO", ""},
                                                 {"BACKUP_ENCRYPT_PASSPHRASE_FILE", pass.string()}};
    auto r = m_.run({"backup", "--json"}, env);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string name = nlohmann::json::parse(r.out)["archive"];
    auto restored =
        m_.run({"restore", (dest_ / name).string(), "--to", (m_.dir() / "r").string()}, env);
    ASSERT_EQ(restored.exit_code, 0) << restored.err;
    EXPECT_EQ(testing::snapshot(m_.dir() / "r" / "models"), testing::snapshot(source_));

    fs::permissions(pass, fs::perms::others_read, fs::perm_options::add);
    auto open = m_.run({"backup"}, env);
    EXPECT_EQ(open.exit_code, 78);
    EXPECT_THAT(open.err, HasSubstr("chmod 600"));
    auto both = m_.run({"backup"}, {{"BACKUP_ENCRYPT_PASSPHRASE_FILE", pass.string()}});
    EXPECT_EQ(both.exit_code, 78);
    auto bad = m_.run({"backup"}, {{"BACKUP_ENCRYPT_TO", "age1notakey"}});
    EXPECT_EQ(bad.exit_code, 78);
    EXPECT_THAT(bad.err, HasSubstr("not an age recipient"));
}

TEST_F(EncryptionTest, AFileEncryptedByTheAgeToolIsRestored) {
    if (!have_age()) {
        GTEST_SKIP() << "age is not installed";
    }
    auto plain = m_.run({"backup", "--json"}, {{"BACKUP_ENCRYPT_TO", ""}});
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    const std::string name = nlohmann::json::parse(plain.out)["archive"];
    const fs::path other = m_.dir() / "from-age";
    fs::create_directories(other);
    ASSERT_EQ(
        testing::run_shell("age -r " + recipient_ + " -o '" + (other / (name + ".age")).string() +
                           "' '" + (dest_ / name).string() + "'")
            .exit_code,
        0);
    auto r =
        m_.run({"restore", (other / (name + ".age")).string(), "--to", (m_.dir() / "r").string()},
               {{"MLKEEPER_AGE_IDENTITY", key_.string()}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(testing::snapshot(m_.dir() / "r" / "models"), testing::snapshot(source_));
}

TEST_F(EncryptionTest, TheSecretKeyNeverShows) {
    const std::string name = backup_ok();
    std::ifstream kf(key_);
    std::string secret;
    for (std::string line; std::getline(kf, line);) {
        if (line.starts_with("AGE-SECRET-KEY-")) {
            secret = line;
        }
    }
    ASSERT_FALSE(secret.empty());
    const std::map<std::string, std::string> with_key{{"MLKEEPER_AGE_IDENTITY", key_.string()}};
    std::string everything;
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"config", "show"},
             {"config", "show", "--json"},
             {"verify", (dest_ / name).string(), "--json"},
             {"restore", (dest_ / name).string(), "--to", (m_.dir() / "r").string(), "--json"},
             {"backups", "list", "--json"}}) {
        auto r = m_.run(args, with_key);
        everything += r.out + r.err;
    }
    std::ifstream lf(log_);
    everything += std::string((std::istreambuf_iterator<char>(lf)), {});
    EXPECT_THAT(everything, Not(HasSubstr(secret)));
    EXPECT_THAT(everything, Not(HasSubstr("AGE-SECRET-KEY")));
}

}  // namespace
}  // namespace mlk
