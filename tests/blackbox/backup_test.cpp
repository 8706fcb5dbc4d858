// Black-box tests of `mlkeeper backup`, `verify`, `restore` and `backups`:
// archives that GNU tar and sha256sum accept, verification that catches
// corruption, crash safety, locking, a full disk, retention and incrementals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <thread>

#include "mlkeeper/util/file_lock.hpp"
#include "support/mlkeeper_runner.hpp"
#include "support/shell.hpp"
#include "support/tmpfs.hpp"
#include "support/tree.hpp"

namespace mlk {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::MlkeeperRunner;

class BackupTest : public ::testing::Test {
  protected:
    void SetUp() override {
        source_ = testing::make_model_tree(m_.dir().path(), "models");
        dest_ = m_.dir() / "backups";
        m_.env()["MODEL_DIR"] = source_.string();
        m_.env()["BACKUP_DIR"] = dest_.string();
    }

    util::RunResult backup(std::vector<std::string> extra = {},
                           const std::map<std::string, std::string>& env = {}) {
        std::vector<std::string> args{"backup", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        return m_.run(args, env);
    }

    nlohmann::json backup_ok(std::vector<std::string> extra = {},
                             const std::map<std::string, std::string>& env = {}) {
        auto r = backup(std::move(extra), env);
        EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
        return nlohmann::json::parse(r.out);
    }

    std::vector<std::string> dest_files() const {
        std::vector<std::string> names;
        if (fs::exists(dest_)) {
            for (const auto& e : fs::directory_iterator(dest_)) {
                names.push_back(e.path().filename().string());
            }
        }
        std::sort(names.begin(), names.end());
        return names;
    }

    MlkeeperRunner m_;
    fs::path source_;
    fs::path dest_;
};

TEST_F(BackupTest, ArchiveManifestAndChecksumsWorkWithGnuTools) {
    auto j = backup_ok();
    std::string name = j["archive"];
    EXPECT_TRUE(std::regex_match(name, std::regex(R"(models_backup_\d{8}_\d{6}\.tar\.zst)")))
        << name;
    EXPECT_EQ(j["verified"], true);
    EXPECT_EQ(j["kind"], "full");
    EXPECT_EQ(j["exit_code"], 0);
    EXPECT_TRUE(fs::exists(dest_ / (name + ".manifest.json")));

    auto sums = testing::run_shell("cd '" + dest_.string() + "' && sha256sum -c checksums.txt");
    EXPECT_EQ(sums.exit_code, 0) << sums.out << sums.err;

    auto out = m_.dir() / "gnu";
    fs::create_directories(out);
    auto tar = testing::run_shell("tar --zstd -xf '" + (dest_ / name).string() + "' -C '" +
                                  out.string() + "'");
    ASSERT_EQ(tar.exit_code, 0) << tar.err;
    EXPECT_EQ(testing::snapshot(out / "models"), testing::snapshot(source_));
    // The sparse file stays sparse when GNU tar extracts it.
    struct stat st {};
    ASSERT_EQ(::stat((out / "models" / "sparse.bin").c_str(), &st), 0);
    EXPECT_LT(st.st_blocks * 512, 1 << 20);
}

TEST_F(BackupTest, GzipArchivesAreStandardGzip) {
    auto j = backup_ok({"--compression", "gzip", "--level", "9"});
    std::string name = j["archive"];
    EXPECT_TRUE(name.ends_with(".tar.gz"));
    EXPECT_EQ(testing::run_shell("gzip -t '" + (dest_ / name).string() + "'").exit_code, 0);
    auto out = m_.dir() / "gnu";
    fs::create_directories(out);
    ASSERT_EQ(
        testing::run_shell("tar -xzf '" + (dest_ / name).string() + "' -C '" + out.string() + "'")
            .exit_code,
        0);
    EXPECT_EQ(testing::snapshot(out / "models"), testing::snapshot(source_));
}

TEST_F(BackupTest, RestoreRebuildsTheTreeAndRefusesToOverwrite) {
    std::string name = backup_ok()["archive"];
    auto to = m_.dir() / "restore";
    auto r = m_.run({"restore", (dest_ / name).string(), "--to", to.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("every file verified"));
    EXPECT_EQ(testing::snapshot(to / "models"), testing::snapshot(source_));

    auto again = m_.run({"restore", (dest_ / name).string(), "--to", to.string()});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_THAT(again.err, HasSubstr("refusing to overwrite existing"));
    std::ofstream(to / "models" / "run.sh") << "changed";
    auto forced = m_.run({"restore", (dest_ / name).string(), "--to", to.string(), "--overwrite"});
    EXPECT_EQ(forced.exit_code, 0) << forced.err;
    EXPECT_EQ(testing::snapshot(to / "models"), testing::snapshot(source_));

    auto part = m_.dir() / "part";
    auto sub = m_.run(
        {"restore", (dest_ / name).string(), "--to", part.string(), "--path", "models/resnet50"});
    ASSERT_EQ(sub.exit_code, 0) << sub.err;
    EXPECT_TRUE(fs::exists(part / "models" / "resnet50" / "model.pt"));
    EXPECT_FALSE(fs::exists(part / "models" / "run.sh"));
}

TEST_F(BackupTest, EverySingleByteCorruptionIsDetected) {
    std::string name = backup_ok()["archive"];
    auto archive = dest_ / name;
    auto original = testing::slurp(archive);
    std::mt19937 rng(42);
    std::vector<std::size_t> positions{0, 1, 4, original.size() / 2, original.size() - 1};
    for (int i = 0; i < 25; ++i) {
        positions.push_back(rng() % original.size());
    }
    for (auto pos : positions) {
        auto bad = original;
        bad[pos] = static_cast<char>(bad[pos] ^ (1 + rng() % 255));
        std::ofstream(archive, std::ios::binary | std::ios::trunc) << bad;
        auto r = m_.run({"verify", archive.string()});
        EXPECT_EQ(r.exit_code, 2) << "flip at " << pos << " not detected: " << r.out;
        EXPECT_THAT(r.out, HasSubstr("FAILED")) << pos;
    }
    std::ofstream(archive, std::ios::binary | std::ios::trunc) << original;
    auto ok = m_.run({"backup", "--verify", archive.string()});
    EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
    // Truncation.
    std::ofstream(archive, std::ios::binary | std::ios::trunc)
        << original.substr(0, original.size() / 3);
    EXPECT_EQ(m_.run({"verify", archive.string()}).exit_code, 2);
}

TEST_F(BackupTest, ManifestTamperingNamesTheEntry) {
    std::string name = backup_ok()["archive"];
    auto mf = dest_ / (name + ".manifest.json");
    auto text = testing::slurp(mf);
    auto j = nlohmann::json::parse(text);
    // Drop the manifest line of one file: the archive now has an unexpected entry.
    std::string victim;
    for (auto& e : j["entries"]) {
        if (e["path"] == "models/resnet50/config.json") {
            e["sha256"] = std::string(64, '0');
        }
    }
    std::ofstream(mf, std::ios::trunc) << j.dump();
    auto r = m_.run({"verify", (dest_ / name).string()});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.out, HasSubstr("models/resnet50/config.json"));
}

TEST_F(BackupTest, DryRunChangesNothing) {
    auto r = backup({"--dry-run"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["dry_run"], true);
    EXPECT_GT(j["bytes_read"].get<std::uint64_t>(), 300'000u);
    EXPECT_FALSE(fs::exists(dest_));
    backup_ok();
    auto before = dest_files();
    auto text = m_.run({"backup", "--dry-run"});
    EXPECT_EQ(text.exit_code, 0);
    EXPECT_THAT(text.out, HasSubstr("dry run: would write models_backup_"));
    EXPECT_EQ(dest_files(), before);
}

TEST_F(BackupTest, SecondConcurrentBackupIsRefused) {
    fs::create_directories(dest_);
    pid_t holder = 0;
    auto lock = util::FileLock::try_acquire(dest_ / ".mlkeeper-backup.lock", &holder);
    ASSERT_TRUE(lock.has_value());
    auto r = m_.run({"backup"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("already running (pid " + std::to_string(::getpid()) + ")"));
    lock.reset();
    EXPECT_EQ(m_.run({"backup"}).exit_code, 0);
}

TEST_F(BackupTest, KillDashNineLeavesNoBrokenArchiveAndTheNextRunTidiesUp) {
    testing::write_random_file(source_ / "big" / "weights.bin", 60 << 20, 7);
    std::mt19937 rng(7);
    for (int round = 0; round < 5; ++round) {
        std::vector<std::string> argv{"/usr/bin/env", "-i"};
        for (const auto& [k, v] : m_.env()) {
            argv.push_back(k + "=" + v);
        }
        argv.insert(argv.end(), {MLK_BINARY, "backup", "--no-verify", "--level", "1"});
        auto child = util::Subprocess::start(argv);
        std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 600));
        ::kill(child.pid(), SIGKILL);
        child.wait_for(std::chrono::seconds(10));
        for (const auto& f : dest_files()) {
            if (f.ends_with(".tar.zst")) {
                auto v = m_.run({"verify", (dest_ / f).string()});
                EXPECT_EQ(v.exit_code, 0) << "round " << round << ": " << f << ": " << v.out;
            }
        }
    }
    auto r = backup_ok();
    for (const auto& f : dest_files()) {
        EXPECT_EQ(f.find(".tmp."), std::string::npos) << "stale temp file left: " << f;
    }
    auto sums = testing::run_shell("cd '" + dest_.string() + "' && sha256sum -c checksums.txt");
    EXPECT_EQ(sums.exit_code, 0) << sums.out;
}

TEST_F(BackupTest, KillDashNineMidRestoreLeavesEachFileOldOrNew) {
    testing::write_random_file(source_ / "big" / "weights.bin", 60 << 20, 8);
    std::string name = backup_ok({"--level", "1"})["archive"];
    const auto to = m_.dir() / "restore";
    ASSERT_EQ(m_.run({"restore", (dest_ / name).string(), "--to", to.string()}).exit_code, 0);
    std::ofstream(to / "models" / "run.sh") << "local change";
    fs::remove(to / "models" / "big" / "weights.bin");
    const auto old_state = testing::snapshot(to / "models");
    const auto new_state = testing::snapshot(source_);
    std::mt19937 rng(8);
    for (int round = 0; round < 4; ++round) {
        auto child = util::Subprocess::start(
            {MLK_BINARY, "restore", (dest_ / name).string(), "--to", to.string(), "--overwrite"});
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 300));
        ::kill(child.pid(), SIGKILL);
        child.wait_for(std::chrono::seconds(10));
        // Renames are atomic per path: whatever moment the kill hit, every file is wholly the
        // old one or wholly the restored one, never a half-written copy.
        for (const auto& [path, desc] : testing::snapshot(to / "models")) {
            if (desc.starts_with("dir ")) {
                continue;
            }
            auto o = old_state.find(path);
            auto n = new_state.find(path);
            EXPECT_TRUE((o != old_state.end() && o->second == desc) ||
                        (n != new_state.end() && n->second == desc))
                << "round " << round << ": " << path << " is " << desc;
        }
    }
    auto r = m_.run({"restore", (dest_ / name).string(), "--to", to.string(), "--overwrite"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(testing::snapshot(to / "models"), new_state);
    for (const auto& e : fs::directory_iterator(to)) {
        EXPECT_EQ(e.path().filename(), "models") << "a killed restore's staging was removed";
    }
}

TEST_F(BackupTest, IncrementalStoresOnlyChangesAndRestoresTheWholeTree) {
    auto full = backup_ok();
    std::ofstream(source_ / "resnet50" / "config.json") << R"({"layers": 101})";
    fs::remove(source_ / "readonly.txt");
    testing::write_random_file(source_ / "new" / "adapter.bin", 1000, 3);
    auto inc = backup_ok({"--incremental"});
    EXPECT_EQ(inc["kind"], "incremental") << inc["kind_reason"];
    EXPECT_LT(inc["bytes_read"].get<std::uint64_t>(), 10'000u);
    EXPECT_GT(inc["unchanged_files"].get<int>(), 5);

    // An unchanged third run reads no file data at all.
    auto inc2 = backup_ok({"--incremental"});
    EXPECT_EQ(inc2["bytes_read"], 0) << inc2.dump();

    auto to = m_.dir() / "restore";
    std::string name = inc2["archive"];
    auto r = m_.run({"restore", (dest_ / name).string(), "--to", to.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto want = testing::snapshot(source_);
    auto got = testing::snapshot(to / "models");
    EXPECT_EQ(got, want);
    EXPECT_FALSE(fs::exists(to / "models" / "readonly.txt"));
}

// Sets each manifest's created_at `days` days back, oldest first.
void age_manifests(const fs::path& dest, int days_back_first, int step) {
    std::vector<fs::path> manifests;
    for (const auto& e : fs::directory_iterator(dest)) {
        if (e.path().string().ends_with(".manifest.json")) {
            manifests.push_back(e.path());
        }
    }
    // Oldest first, by the time each backup was made.
    auto created = [](const fs::path& p) {
        return nlohmann::json::parse(testing::slurp(p))["created_at"].get<std::string>();
    };
    std::sort(manifests.begin(), manifests.end(),
              [&](const fs::path& a, const fs::path& b) { return created(a) < created(b); });
    int days = days_back_first;
    for (const auto& mf : manifests) {
        auto j = nlohmann::json::parse(testing::slurp(mf));
        auto t = std::chrono::system_clock::now() - std::chrono::hours(24 * days);
        std::time_t tt = std::chrono::system_clock::to_time_t(t);
        char buf[32];
        std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&tt));
        j["created_at"] = buf;
        std::ofstream(mf, std::ios::trunc) << j.dump();
        days -= step;
    }
}

TEST_F(BackupTest, RetentionNeverDeletesTheNewestVerifiedBackups) {
    for (int i = 0; i < 5; ++i) {
        backup_ok({"--retention-days", "365"});
    }
    age_manifests(dest_, 100, 10);  // 100, 90, 80, 70, 60 days old: all past 30 days
    auto dry = m_.run({"backups", "prune", "--dry-run", "--json"}, {{"RETENTION_DAYS", "30"}});
    ASSERT_EQ(dry.exit_code, 0) << dry.err;
    auto plan = nlohmann::json::parse(dry.out);
    EXPECT_EQ(plan["deleted"].size(), 2u);
    auto before = dest_files();
    EXPECT_EQ(dest_files(), before);
    auto r = m_.run({"backups", "prune"}, {{"RETENTION_DAYS", "30"}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto list = nlohmann::json::parse(m_.run({"backups", "list", "--json"}).out);
    EXPECT_EQ(list.size(), 3u);
    auto sums = testing::run_shell("cd '" + dest_.string() + "' && sha256sum -c checksums.txt");
    EXPECT_EQ(sums.exit_code, 0) << sums.out;
    EXPECT_EQ(std::count(sums.out.begin(), sums.out.end(), '\n'), 3);
}

TEST_F(BackupTest, RetentionKeepsWhatAKeptIncrementalNeeds) {
    backup_ok();
    backup_ok({"--incremental"});
    age_manifests(dest_, 60, 59);  // full: 60 days old, incremental: 1 day old
    auto r = m_.run({"backups", "prune", "--json", "--keep-min", "0"}, {{"RETENTION_DAYS", "30"}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["deleted"].size(), 0u) << r.out;
    EXPECT_THAT(r.out, HasSubstr("needed by"));
}

TEST_F(BackupTest, MissingSourceAndDestInsideSourceAreClearErrors) {
    auto r = m_.run({"backup"}, {{"MODEL_DIR", (m_.dir() / "nope").string()}});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("does not exist"));
    auto inside = m_.run({"backup"}, {{"BACKUP_DIR", (source_ / "backups").string()}});
    EXPECT_EQ(inside.exit_code, 1);
    EXPECT_THAT(inside.err, HasSubstr("inside the source"));
    auto level = m_.run({"backup", "--compression", "gzip", "--level", "10"});
    EXPECT_EQ(level.exit_code, 64);
}

// A real full disk: a small tmpfs (needs root, as CI runs).
TEST_F(BackupTest, FullDiskFailsCleanlyAndKeepsOlderBackups) {
    const auto tmpfs = testing::ScopedTmpfs::mount(m_.dir() / "small", "4m");
    if (!tmpfs) {
        GTEST_SKIP() << "needs root to mount a tmpfs";
    }
    const auto mnt = tmpfs->path();
    auto small_src = m_.dir() / "src" / "models";
    fs::create_directories(small_src);
    std::map<std::string, std::string> env{{"MODEL_DIR", small_src.string()},
                                           {"BACKUP_DIR", mnt.string()}};
    // Nothing known about the data yet: 5 MiB cannot fit in 4, refused before writing.
    testing::write_random_file(small_src / "weights.bin", 5 << 20, 9);
    auto pre = backup({}, env);
    EXPECT_EQ(pre.exit_code, 1);
    EXPECT_THAT(pre.err, HasSubstr("not enough space"));
    EXPECT_TRUE(fs::is_empty(mnt) || !fs::exists(mnt / "checksums.txt"));

    std::ofstream(small_src / "weights.bin", std::ios::trunc) << std::string(3 << 20, '\0');
    auto first = backup({}, env);
    ASSERT_EQ(first.exit_code, 0) << first.err;
    std::string good = nlohmann::json::parse(first.out)["archive"];

    // The last archive compressed to almost nothing, so the estimate lets
    // incompressible data start, and the disk fills up mid-write.
    testing::write_random_file(small_src / "weights.bin", 5 << 20, 9);
    auto r = backup({}, env);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("No space left on device"));
    for (const auto& e : fs::directory_iterator(mnt)) {
        auto f = e.path().filename().string();
        EXPECT_EQ(f.find(".tmp."), std::string::npos) << f;
        EXPECT_TRUE(f == good || f == good + ".manifest.json" || f == "checksums.txt" ||
                    f == ".mlkeeper-backup.lock")
            << "unexpected file after a failed backup: " << f;
    }
    auto v = m_.run({"verify", (mnt / good).string()});
    EXPECT_EQ(v.exit_code, 0) << v.out;
}

TEST_F(BackupTest, RestoreOntoAFullDiskLeavesTheTargetAsItWas) {
    testing::write_random_file(source_ / "big" / "a.bin", 3 << 20, 10);
    testing::write_random_file(source_ / "big" / "b.bin", 3 << 20, 11);
    std::string name = backup_ok()["archive"];
    const auto tmpfs = testing::ScopedTmpfs::mount(m_.dir() / "small", "4m");
    if (!tmpfs) {
        GTEST_SKIP() << "needs root to mount a tmpfs";
    }
    const auto mnt = tmpfs->path();
    std::ofstream(mnt / "notes.txt") << "already here";
    const auto before = testing::snapshot(mnt);
    const auto free_before = fs::space(mnt).available;
    auto r = m_.run({"restore", (dest_ / name).string(), "--to", mnt.string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("No space left on device"));
    EXPECT_EQ(testing::snapshot(mnt), before);
    EXPECT_EQ(fs::space(mnt).available, free_before) << "the partial files were removed";
}

TEST_F(BackupTest, FilesChangingDuringTheBackupAreReported) {
    testing::write_random_file(source_ / "growing.log", 20 << 20, 5);
    auto writer = util::Subprocess::start(
        {"/bin/sh", "-c",
         "while :; do echo line >> '" + (source_ / "growing.log").string() + "'; done"});
    auto j = backup_ok({"--no-verify", "--level", "1"});
    writer.terminate(std::chrono::milliseconds(500));
    bool found = false;
    for (const auto& p : j["changed_during_backup"]) {
        found = found || p == "models/growing.log";
    }
    EXPECT_TRUE(found) << j.dump();
    EXPECT_EQ(m_.run({"verify", (dest_ / j["archive"].get<std::string>()).string()}).exit_code, 0);
}

TEST_F(BackupTest, HostileArchivesAreRefused) {
    auto evil = m_.dir() / "evil";
    fs::create_directories(evil);
    auto script = R"(
import io, sys, tarfile
def make(name, members):
    with tarfile.open(name, "w:gz") as t:
        for m, data in members:
            if data is not None:
                m.size = len(data)
                t.addfile(m, io.BytesIO(data))
            else:
                t.addfile(m)
def f(name, data=b"x"):
    i = tarfile.TarInfo(name); return (i, data)
def link(name, target, kind):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; return (i, None)
d = sys.argv[1]
make(d + "/dotdot.tar.gz", [f("models/ok"), f("models/../../escaped")])
make(d + "/absolute.tar.gz", [f("/tmp/mlk-absolute-evil")])
make(d + "/symlink.tar.gz", [link("models/out", "/etc", tarfile.SYMTYPE)])
make(d + "/through.tar.gz", [link("models/dir", ".", tarfile.SYMTYPE), f("models/dir/../../x")])
make(d + "/hardlink.tar.gz", [link("models/pw", "../../etc/passwd", tarfile.LNKTYPE)])
make(d + "/relup.tar.gz", [link("models/up", "../../../", tarfile.SYMTYPE)])
)";
    std::ofstream(evil / "make.py") << script;
    ASSERT_EQ(
        testing::run_shell("python3 '" + (evil / "make.py").string() + "' '" + evil.string() + "'")
            .exit_code,
        0);
    for (const char* a : {"dotdot", "absolute", "symlink", "through", "hardlink", "relup"}) {
        auto to = m_.dir() / (std::string("out-") + a);
        auto r = m_.run(
            {"restore", (evil / (std::string(a) + ".tar.gz")).string(), "--to", to.string()});
        EXPECT_NE(r.exit_code, 0) << a << ": " << r.out;
        EXPECT_THAT(r.err, HasSubstr("refus")) << a << ": " << r.err;
    }
    EXPECT_FALSE(fs::exists(m_.dir() / "escaped"));
    EXPECT_FALSE(fs::exists("/tmp/mlk-absolute-evil"));
}

}  // namespace
}  // namespace mlk
