// Black-box tests of `mlkeeper cleanup` on a real experiment tree: the dry
// run lists exactly what the real run deletes, protections hold, the circuit
// breaker stops everything, dangerous roots are refused, a symlink to a
// directory outside is never followed, and nothing prompts without a TTY.
#include <fcntl.h>
#include <sys/stat.h>
#include <utime.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "support/mlkeeper_runner.hpp"

namespace mlk {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

void make_file(const fs::path& p, int age_days, std::size_t size = 100) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << std::string(size, 'x');
    struct utimbuf t {};
    t.actime = t.modtime = ::time(nullptr) - static_cast<time_t>(age_days) * 86400;
    ::utime(p.c_str(), &t);
}

std::set<std::string> files_under(const fs::path& root) {
    std::set<std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        if (it->is_symlink() || it->is_regular_file()) {
            out.insert(fs::relative(it->path(), root).string());
        }
    }
    return out;
}

class CleanupCli : public ::testing::Test {
  protected:
    void SetUp() override {
        root_ = m_.dir() / "ml";
        auto& e = m_.env();
        e["EXPERIMENTS_DIR"] = (root_ / "experiments").string();
        e["CHECKPOINTS_DIR"] = (root_ / "checkpoints").string();
        e["LOGS_DIR"] = (root_ / "logs").string();
        e["TEMP_DIR"] = (root_ / "tmp").string();
        e["BACKUP_DIR"] = (m_.dir() / "backups").string();
        e["ALERT_SYSLOG"] = "off";
        e["ALERT_JOURNAL"] = "off";
        e["CLEANUP_LOW_PRIORITY"] = "false";
        // Checkpoints: run a has 5 old ones (3 newest kept), a best and a fresh one.
        for (int i = 1; i <= 5; ++i) {
            make_file(root_ / "checkpoints/run_a" / ("ckpt_" + std::to_string(i) + ".pt"), 40 - i);
        }
        make_file(root_ / "checkpoints/run_a/best_model.pt", 60);
        make_file(root_ / "checkpoints/run_a/ckpt_new.pt", 0);
        // Experiments: one old run, one recent, one old but marked to keep.
        make_file(root_ / "experiments/old_run/metrics.json", 45);
        make_file(root_ / "experiments/old_run/logs/train.log", 45);
        make_file(root_ / "experiments/new_run/metrics.json", 2);
        make_file(root_ / "experiments/kept_run/metrics.json", 45);
        make_file(root_ / "experiments/kept_run/.mlkeeper-keep", 45);
        // Directories are as old as their newest file, as on a real machine.
        for (const char* d :
             {"experiments/old_run/logs", "experiments/old_run", "experiments/kept_run"}) {
            struct utimbuf t {};
            t.actime = t.modtime = ::time(nullptr) - 45 * 86400;
            ::utime((root_ / d).c_str(), &t);
        }
        // Logs.
        make_file(root_ / "logs/ml-train.log", 20);
        make_file(root_ / "logs/ml-serve.log", 3);
        make_file(root_ / "logs/syslog", 90);  // not ml-*: never touched
    }
    util::RunResult cleanup(std::vector<std::string> args) {
        args.insert(args.begin(), "cleanup");
        return m_.run(args);
    }
    testing::MlkeeperRunner m_;
    fs::path root_;
};

TEST_F(CleanupCli, DryRunListsExactlyWhatTheRealRunDeletes) {
    auto before = files_under(root_);
    auto dry = cleanup({"--dry-run", "--json"});
    ASSERT_EQ(dry.exit_code, 0) << dry.out << dry.err;
    EXPECT_EQ(files_under(root_), before);  // a dry run changes nothing
    auto plan = nlohmann::json::parse(dry.out);
    std::set<std::string> planned;
    for (const auto& t : plan["targets"]) {
        for (const auto& f : t["files"]) {
            planned.insert(fs::relative(f["path"].get<std::string>(), root_).string());
        }
    }
    const std::set<std::string> expected = {
        // ckpt_new, ckpt_5 and ckpt_4 are the run's 3 newest: kept whatever their age.
        "checkpoints/run_a/ckpt_1.pt",        "checkpoints/run_a/ckpt_2.pt",
        "checkpoints/run_a/ckpt_3.pt",        "experiments/old_run/metrics.json",
        "experiments/old_run/logs/train.log", "logs/ml-train.log"};
    EXPECT_EQ(planned, expected) << dry.out;

    auto real = cleanup({"--json"});
    ASSERT_EQ(real.exit_code, 0) << real.out << real.err;
    auto after = files_under(root_);
    std::set<std::string> deleted;
    for (const auto& f : before) {
        if (!after.contains(f))
            deleted.insert(f);
    }
    EXPECT_EQ(deleted, planned);
    EXPECT_FALSE(fs::exists(root_ / "experiments/old_run"));  // emptied run directory removed
    EXPECT_TRUE(fs::exists(root_ / "experiments"));           // never the target root
    auto j = nlohmann::json::parse(real.out);
    EXPECT_EQ(j["deleted"]["files"].get<int>(), 6);
    EXPECT_EQ(j["deleted"]["bytes"].get<int>(), 600);
}

TEST_F(CleanupCli, CircuitBreakerStopsBeforeDeletingAnything) {
    auto before = files_under(root_);
    m_.env()["CLEANUP_MAX_FILES"] = "2";
    auto tripped = cleanup({"--yes"});
    EXPECT_EQ(tripped.exit_code, 1) << tripped.out << tripped.err;
    EXPECT_THAT(tripped.out + tripped.err, HasSubstr("--force"));
    EXPECT_EQ(files_under(root_), before);
    auto forced = cleanup({"--yes", "--force"});
    EXPECT_EQ(forced.exit_code, 0) << forced.out << forced.err;
    EXPECT_EQ(files_under(root_).size(), before.size() - 6);
}

TEST_F(CleanupCli, OnATerminalItAsksFirstAndNoKeepsEverything) {
    if (!fs::exists("/usr/bin/script")) {
        GTEST_SKIP() << "util-linux script not installed";
    }
    auto before = files_under(root_);
    auto no = m_.run_on_tty({"cleanup"}, "no\n");
    EXPECT_EQ(no.exit_code, 0) << no.out;
    EXPECT_THAT(no.out, HasSubstr("About to delete 6 files"));
    EXPECT_EQ(files_under(root_), before);
    auto yes = m_.run_on_tty({"cleanup"}, "yes\n");
    EXPECT_EQ(yes.exit_code, 0) << yes.out;
    EXPECT_EQ(files_under(root_).size(), before.size() - 6) << yes.out;
}

TEST_F(CleanupCli, DangerousRootsAreRefused) {
    for (const std::string root : {"/", "/etc", "/usr/../etc", "/home"}) {
        m_.env()["EXPERIMENTS_DIR"] = root;
        auto r = cleanup({"--experiments-only", "--dry-run"});
        EXPECT_EQ(r.exit_code, 1) << root << "\n" << r.out << r.err;
        EXPECT_THAT(r.out + r.err, HasSubstr("refus")) << root;
    }
    m_.env()["EXPERIMENTS_DIR"] = (m_.dir() / "backups").string();  // the backup destination
    fs::create_directories(m_.dir() / "backups");
    EXPECT_EQ(cleanup({"--experiments-only", "--dry-run"}).exit_code, 1);
}

TEST_F(CleanupCli, SymlinkToAnOutsideDirectoryIsNeverFollowed) {
    auto outside = m_.dir() / "precious";
    make_file(outside / "weights.bin", 400);
    auto link = root_ / "experiments/old_run/link";
    fs::create_directory_symlink(outside, link);
    struct timespec old[2] = {{::time(nullptr) - 50 * 86400, 0}, {::time(nullptr) - 50 * 86400, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, link.c_str(), old, AT_SYMLINK_NOFOLLOW), 0);
    ASSERT_EQ(::utimensat(AT_FDCWD, link.parent_path().c_str(), old, 0), 0);  // the run, too
    auto r = cleanup({"--yes", "--force"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_TRUE(fs::exists(outside / "weights.bin"));
    EXPECT_FALSE(fs::exists(fs::symlink_status(link)));  // the old run went, the link with it
}

}  // namespace
}  // namespace mlk
