#include "mlkeeper/homelab/nginx_apply.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "mlkeeper/core/error.hpp"

namespace mlk::homelab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class TmpDir {
  public:
    TmpDir() {
        std::string tmpl = ::testing::TempDir() + "nginx_apply_XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp");
        }
        path_ = tmpl;
    }
    ~TmpDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

util::RunOptions with_timeout(std::chrono::milliseconds t) {
    util::RunOptions o;
    o.timeout = t;
    return o;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const fs::path& p, std::string_view data) {
    std::ofstream(p, std::ios::binary) << data;
}

std::vector<std::string> names_in(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) {
        names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

util::RunResult exited(int code, std::string out = {}) {
    util::RunResult r;
    r.kind = util::ExitKind::kExited;
    r.exit_code = code;
    r.out = std::move(out);
    return r;
}

// Records every command and what the live file held when it ran; answers from a script.
struct FakeNginx {
    fs::path live;
    util::RunResult test = exited(0, "nginx: configuration file test is successful");
    util::RunResult reload = exited(0);
    std::vector<std::string> calls;
    std::vector<std::string> seen;  // the live file's content at each call

    CommandRunner runner() {
        return [this](const std::vector<std::string>& argv, const util::RunOptions& opts) {
            EXPECT_GT(opts.timeout.count(), 0);
            calls.push_back(util_join(argv));
            seen.push_back(fs::exists(live) ? slurp(live) : "<absent>");
            return argv.back() == "-t" ? test : reload;
        };
    }
    static std::string util_join(const std::vector<std::string>& v) {
        std::string s;
        for (const auto& a : v) {
            s += (s.empty() ? "" : " ") + a;
        }
        return s;
    }
};

struct Fixture {
    TmpDir dir;
    NginxSettings s;
    FakeNginx nginx;
    ApplyOptions opts;
    Fixture() {
        s.output = dir.path() / "mlkeeper-models.conf";
        nginx.live = s.output;
        opts.runner = nginx.runner();
        opts.durability = util::Durability::kNoFsync;
    }
};

TEST(NginxApply, FirstApplyWritesTestsThenReloads) {
    Fixture f;
    const auto r = apply_nginx_config(f.s, "server {}\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kApplied) << r.error;
    EXPECT_TRUE(r.reloaded);
    EXPECT_EQ(slurp(f.s.output), "server {}\n");
    ASSERT_EQ(f.nginx.calls.size(), 2u);
    EXPECT_EQ(f.nginx.calls[0], "nginx -t");
    EXPECT_EQ(f.nginx.calls[1], "nginx -s reload");
    // The check saw the candidate in place: that is what makes a plain `nginx -t` test it.
    EXPECT_EQ(f.nginx.seen[0], "server {}\n");
    EXPECT_THAT(r.diff, HasSubstr("--- /dev/null\n"));
    EXPECT_THAT(r.diff, HasSubstr("+server {}\n"));
    // Only the file and the (hidden) lock file remain.
    EXPECT_EQ(names_in(f.dir.path()),
              (std::vector<std::string>{".mlkeeper-models.conf.lock", "mlkeeper-models.conf"}));
    struct stat st {};
    ASSERT_EQ(::stat(f.s.output.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST(NginxApply, SameContentIsUnchangedAndRunsNothing) {
    Fixture f;
    spit(f.s.output, "same\n");
    const auto r = apply_nginx_config(f.s, "same\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kUnchanged);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.diff, "");
    EXPECT_TRUE(f.nginx.calls.empty());
}

TEST(NginxApply, FailedTestPutsTheOldFileBackByteForByte) {
    Fixture f;
    const std::string old = "old config\r\n\x01 no final newline";
    spit(f.s.output, old);
    ASSERT_EQ(::chmod(f.s.output.c_str(), 0640), 0);
    struct stat before {};
    ASSERT_EQ(::stat(f.s.output.c_str(), &before), 0);
    f.nginx.test = exited(1,
                          "nginx: [emerg] host not found in upstream \"nowhere:1\" in "
                          "/etc/nginx/conf.d/mlkeeper-models.conf:5\n"
                          "nginx: configuration file /etc/nginx/nginx.conf test failed\n");
    const auto r = apply_nginx_config(f.s, "new config\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kTestFailed);
    EXPECT_FALSE(r.ok());
    EXPECT_THAT(r.error, HasSubstr("nginx -t exited with status 1"));
    EXPECT_THAT(r.error, HasSubstr("host not found in upstream"));
    EXPECT_FALSE(r.reloaded);
    ASSERT_EQ(f.nginx.calls.size(), 1u);  // no reload
    EXPECT_EQ(f.nginx.seen[0], "new config\n");
    EXPECT_EQ(slurp(f.s.output), old);
    struct stat after {};
    ASSERT_EQ(::stat(f.s.output.c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino);  // the very same file, not a copy
    EXPECT_EQ(after.st_mode & 07777, 0640u);
    EXPECT_EQ(names_in(f.dir.path()),
              (std::vector<std::string>{".mlkeeper-models.conf.lock", "mlkeeper-models.conf"}));
}

TEST(NginxApply, FailedTestWithNoPreviousFileLeavesNoFile) {
    Fixture f;
    f.nginx.test = exited(1, "nginx: [emerg] bad");
    const auto r = apply_nginx_config(f.s, "new\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kTestFailed);
    EXPECT_EQ(f.nginx.seen[0], "new\n");
    EXPECT_FALSE(fs::exists(f.s.output));
    EXPECT_EQ(names_in(f.dir.path()), (std::vector<std::string>{".mlkeeper-models.conf.lock"}));
}

TEST(NginxApply, NewModeKeepsTheOldFilesMode) {
    Fixture f;
    spit(f.s.output, "old\n");
    ASSERT_EQ(::chmod(f.s.output.c_str(), 0600), 0);
    ASSERT_EQ(apply_nginx_config(f.s, "new\n", f.opts).outcome, ApplyOutcome::kApplied);
    struct stat st {};
    ASSERT_EQ(::stat(f.s.output.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(NginxApply, FailedReloadKeepsTheCheckedFile) {
    Fixture f;
    spit(f.s.output, "old\n");
    f.nginx.reload = exited(1, "nginx: [error] open() \"/run/nginx.pid\" failed (2: No such file)");
    const auto r = apply_nginx_config(f.s, "new\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kReloadFailed);
    EXPECT_THAT(r.error, HasSubstr("nginx -s reload exited with status 1: nginx: [error] open()"));
    EXPECT_EQ(slurp(f.s.output), "new\n");
}

TEST(NginxApply, NoReloadSkipsTheReload) {
    Fixture f;
    f.opts.reload = ApplyOptions::Reload::kNo;
    const auto r = apply_nginx_config(f.s, "new\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kApplied);
    EXPECT_FALSE(r.reloaded);
    EXPECT_EQ(f.nginx.calls, std::vector<std::string>{"nginx -t"});
}

TEST(NginxApply, DryRunShowsTheDiffAndTouchesNothing) {
    Fixture f;
    spit(f.s.output, "a\nb\nc\n");
    f.opts.mode = ApplyOptions::Mode::kDryRun;
    const auto r = apply_nginx_config(f.s, "a\nB\nc\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kWouldChange);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.diff, "--- " + f.s.output.string() + "\n+++ " + f.s.output.string() +
                          " (rendered)\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
    EXPECT_EQ(slurp(f.s.output), "a\nb\nc\n");
    EXPECT_TRUE(f.nginx.calls.empty());
}

TEST(NginxApply, RecoversFromAnApplyThatDiedDuringTheCheck) {
    Fixture f;
    const auto dir = f.dir.path();
    // As left by a crash between swap-in and verdict: the old file hard-linked aside.
    spit(dir / ".mlkeeper-models.conf.mlkeeper-old", "old\n");
    spit(f.s.output, "untested\n");
    const auto r = apply_nginx_config(f.s, "old\n", f.opts);
    EXPECT_TRUE(r.recovered);
    EXPECT_EQ(r.outcome, ApplyOutcome::kUnchanged);
    EXPECT_EQ(slurp(f.s.output), "old\n");
    EXPECT_FALSE(fs::exists(dir / ".mlkeeper-models.conf.mlkeeper-old"));

    // The same when there was no file before: the untested file goes, then the new one comes.
    spit(dir / ".mlkeeper-models.conf.mlkeeper-absent", "");
    f.nginx.test = exited(1, "nginx: [emerg] bad");
    const auto r2 = apply_nginx_config(f.s, "x\n", f.opts);
    EXPECT_TRUE(r2.recovered);
    EXPECT_EQ(r2.outcome, ApplyOutcome::kTestFailed);
    EXPECT_THAT(r2.diff, HasSubstr("--- /dev/null"));
    EXPECT_FALSE(fs::exists(f.s.output));
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{".mlkeeper-models.conf.lock"}));
}

TEST(NginxApply, DryRunNeedsNoLockAndComparesWithWhatRecoveryWouldRestore) {
    Fixture f;
    f.opts.mode = ApplyOptions::Mode::kDryRun;
    // No directory at all: everything is new.
    auto s = f.s;
    s.output = f.dir.path() / "missing" / "x.conf";
    auto r = apply_nginx_config(s, "new\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kWouldChange);
    EXPECT_THAT(r.diff, HasSubstr("--- /dev/null\n"));
    EXPECT_FALSE(fs::exists(f.dir.path() / "missing"));

    spit(f.s.output, "untested\n");
    spit(f.dir.path() / ".mlkeeper-models.conf.mlkeeper-old", "old\n");
    r = apply_nginx_config(f.s, "old\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kUnchanged);
    EXPECT_FALSE(r.recovered);
    EXPECT_EQ(slurp(f.s.output), "untested\n");  // a dry run changes nothing
    EXPECT_FALSE(fs::exists(f.dir.path() / ".mlkeeper-models.conf.lock"));
    EXPECT_TRUE(f.nginx.calls.empty());
}

TEST(NginxApply, WriteFailureLeavesTheOldFileAndNoBackup) {
    Fixture f;
    spit(f.s.output, "old\n");
    auto ops = util::real_fs_ops();
    ops.write = [](int, const void*, std::size_t) -> ssize_t {
        errno = ENOSPC;
        return -1;
    };
    f.opts.fs_ops = &ops;
    try {
        apply_nginx_config(f.s, "new\n", f.opts);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("No space left on device"));
        EXPECT_THAT(std::string(e.what()), HasSubstr("the previous file is in place"));
    }
    EXPECT_EQ(slurp(f.s.output), "old\n");
    EXPECT_TRUE(f.nginx.calls.empty());
    EXPECT_EQ(names_in(f.dir.path()),
              (std::vector<std::string>{".mlkeeper-models.conf.lock", "mlkeeper-models.conf"}));
}

TEST(NginxApply, MissingDirectoryIsAClearError) {
    Fixture f;
    f.s.output = f.dir.path() / "no" / "such" / "x.conf";
    try {
        apply_nginx_config(f.s, "x\n", f.opts);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("does not exist"));
    }
    f.s.output = f.dir.path() / "";
    EXPECT_THROW(apply_nginx_config(f.s, "x\n", f.opts), ConfigError);
}

TEST(NginxApply, RealCommandsThatCannotStartOrHangAreTestFailures) {
    Fixture f;
    f.opts.runner = util::run_process;
    spit(f.s.output, "old\n");
    f.s.test_command = {"/nonexistent/nginx", "-t"};
    auto r = apply_nginx_config(f.s, "new\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kTestFailed);
    EXPECT_THAT(r.error, HasSubstr("could not be started"));
    EXPECT_EQ(slurp(f.s.output), "old\n");

    f.s.test_command = {"sleep", "10"};
    f.s.command_timeout = 1s;
    const auto t0 = std::chrono::steady_clock::now();
    r = apply_nginx_config(f.s, "new\n", f.opts);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
    EXPECT_EQ(r.outcome, ApplyOutcome::kTestFailed);
    EXPECT_THAT(r.error, HasSubstr("did not finish"));
    EXPECT_EQ(slurp(f.s.output), "old\n");

    // A real check that reads the file it tests.
    f.s.test_command = {"grep", "-q", "good", f.s.output.string()};
    f.s.reload_command = {"true"};
    EXPECT_EQ(apply_nginx_config(f.s, "bad\n", f.opts).outcome, ApplyOutcome::kTestFailed);
    EXPECT_EQ(slurp(f.s.output), "old\n");
    r = apply_nginx_config(f.s, "good\n", f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kApplied) << r.error;
    EXPECT_TRUE(r.reloaded);
    EXPECT_EQ(slurp(f.s.output), "good\n");
}

TEST(NginxApply, ConcurrentAppliesAreSerialised) {
    Fixture f;
    std::mutex mu;
    bool in_check = false;
    bool overlapped = false;
    std::atomic<bool> first_in{false};
    f.opts.runner = [&](const std::vector<std::string>& argv, const util::RunOptions&) {
        if (argv.back() == "-t") {
            {
                std::lock_guard<std::mutex> lock(mu);
                overlapped = overlapped || in_check;
                in_check = true;
            }
            first_in = true;
            std::this_thread::sleep_for(300ms);
            std::lock_guard<std::mutex> lock(mu);
            in_check = false;
        }
        return exited(0);
    };
    std::thread t([&] { apply_nginx_config(f.s, "one\n", f.opts); });
    while (!first_in) {
        std::this_thread::sleep_for(1ms);
    }
    // A caller that will not wait gets a clear error ...
    auto impatient = f.opts;
    impatient.lock_timeout = 50ms;
    try {
        apply_nginx_config(f.s, "two\n", impatient);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("being applied by another mlkeeper"));
    }
    // ... and one that waits runs after the first.
    const auto r = apply_nginx_config(f.s, "two\n", f.opts);
    t.join();
    EXPECT_EQ(r.outcome, ApplyOutcome::kApplied);
    EXPECT_FALSE(overlapped);
    EXPECT_EQ(slurp(f.s.output), "two\n");
}

TEST(NginxApply, RenderAndApplyRendersTheRegistry) {
    Fixture f;
    ModelSpec m;
    m.name = "llama";
    m.port = 8001;
    const auto r = render_and_apply(f.s, {m}, {}, f.opts);
    EXPECT_EQ(r.outcome, ApplyOutcome::kApplied);
    EXPECT_EQ(slurp(f.s.output), render_nginx_config(f.s, {m}));
    EXPECT_EQ(render_and_apply(f.s, {m}, {}, f.opts).outcome, ApplyOutcome::kUnchanged);
    f.s.listen = "bad;";
    EXPECT_THROW(render_and_apply(f.s, {m}, {}, f.opts), ConfigError);
}

TEST(UnifiedDiff, Basics) {
    EXPECT_EQ(unified_diff("a\n", "a\n", "x", "y"), "");
    EXPECT_EQ(unified_diff("", "a\n", "x", "y"), "--- x\n+++ y\n@@ -0,0 +1,1 @@\n+a\n");
    EXPECT_EQ(unified_diff("a\n", "", "x", "y"), "--- x\n+++ y\n@@ -1,1 +0,0 @@\n-a\n");
    EXPECT_EQ(unified_diff("a\n", "a", "x", "y"),
              "--- x\n+++ y\n@@ -1,1 +1,1 @@\n-a\n+a\n\\ No newline at end of file\n");
    // Changes far apart make two hunks with 3 lines of context each.
    std::string before, after;
    for (int i = 1; i <= 20; ++i) {
        before += std::to_string(i) + "\n";
        after += (i == 2 || i == 18 ? "x" : std::to_string(i)) + "\n";
    }
    EXPECT_EQ(unified_diff(before, after, "x", "y"),
              "--- x\n+++ y\n@@ -1,5 +1,5 @@\n 1\n-2\n+x\n 3\n 4\n 5\n"
              "@@ -15,6 +15,6 @@\n 15\n 16\n 17\n-18\n+x\n 19\n 20\n");
}

// patch(1) must turn `before` into `after` with our diff, for many random edits.
TEST(UnifiedDiff, RandomEditsApplyWithPatch) {
    if (!fs::exists("/usr/bin/patch")) {
        GTEST_SKIP() << "patch(1) is not installed";
    }
    TmpDir dir;
    std::mt19937 rng(42);
    for (int round = 0; round < 40; ++round) {
        std::vector<std::string> lines;
        const int n = static_cast<int>(rng() % 40);
        for (int i = 0; i < n; ++i) {
            lines.push_back("line " + std::to_string(rng() % 8));
        }
        auto edited = lines;
        const int edits = static_cast<int>(rng() % 6);
        for (int e = 0; e < edits; ++e) {
            const auto pos = edited.empty() ? 0 : rng() % (edited.size() + 1);
            switch (rng() % 3) {
                case 0:
                    edited.insert(edited.begin() + static_cast<long>(pos),
                                  "new " + std::to_string(e));
                    break;
                case 1:
                    if (pos < edited.size()) {
                        edited.erase(edited.begin() + static_cast<long>(pos));
                    }
                    break;
                default:
                    if (pos < edited.size()) {
                        edited[pos] = "changed " + std::to_string(e);
                    }
            }
        }
        std::string before, after;
        for (const auto& l : lines) {
            before += l + "\n";
        }
        for (const auto& l : edited) {
            after += l + "\n";
        }
        const auto diff = unified_diff(before, after, "a/f", "b/f");
        if (before == after) {
            EXPECT_EQ(diff, "");
            continue;
        }
        spit(dir.path() / "f", before);
        spit(dir.path() / "d.patch", diff);
        const auto r =
            util::run_process({"patch", "-s", "--no-backup-if-mismatch", "-F0",
                               (dir.path() / "f").string(), (dir.path() / "d.patch").string()},
                              with_timeout(10s));
        ASSERT_TRUE(r.ok()) << r.out << r.err << "\n" << diff;
        EXPECT_EQ(slurp(dir.path() / "f"), after) << diff;
    }
}

}  // namespace
}  // namespace mlk::homelab
