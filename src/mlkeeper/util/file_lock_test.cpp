#include "mlkeeper/util/file_lock.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

namespace mlk::util {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void spit(const fs::path& p, const std::string& data) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

bool wait_readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    int rc;
    do {
        rc = ::poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    return rc == 1;
}

class FileLockTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = ::testing::TempDir() + "mlk_lock_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
        dir_ = tmpl;
        lock_path_ = dir_ / "mlkeeper.lock";
    }
    void TearDown() override {
        std::error_code ec;
        for (const auto& entry : fs::recursive_directory_iterator(dir_, ec)) {
            fs::permissions(entry.path(), fs::perms::owner_all, fs::perm_options::add, ec);
        }
        fs::remove_all(dir_, ec);
    }

    fs::path dir_;
    fs::path lock_path_;
};

// A forked child that takes the lock, reports 'L' (locked) or 'F' (failed) on a pipe, then
// holds it until the parent writes a byte, closes its end, or dies. The destructor SIGKILLs and
// reaps it, so a failing assertion in the parent can neither hang nor leak the child.
class LockingChild {
  public:
    // release_after_ms >= 0: the child releases the lock by itself after that long.
    explicit LockingChild(const fs::path& lock_path, int release_after_ms = -1) {
        int up[2];
        int down[2];
        if (::pipe2(up, O_CLOEXEC) != 0 || ::pipe2(down, O_CLOEXEC) != 0) {
            return;
        }
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(up[0]);
            ::close(down[1]);
            char c = 'F';
            {
                std::optional<FileLock> lock;
                try {
                    lock = FileLock::try_acquire(lock_path, nullptr);
                } catch (...) {
                }
                if (lock) {
                    c = 'L';
                }
                if (::write(up[1], &c, 1) != 1) {
                    ::_exit(2);
                }
                if (release_after_ms >= 0) {
                    ::usleep(static_cast<useconds_t>(release_after_ms) * 1000);
                } else {
                    char x;
                    (void)!::read(down[0], &x, 1);
                }
            }  // ~FileLock releases
            ::_exit(0);
        }
        ::close(up[1]);
        ::close(down[0]);
        from_child_ = up[0];
        to_child_ = down[1];
    }
    ~LockingChild() {
        if (pid_ > 0) {
            kill();
        }
        if (from_child_ >= 0) {
            ::close(from_child_);
        }
        if (to_child_ >= 0) {
            ::close(to_child_);
        }
    }
    LockingChild(const LockingChild&) = delete;
    LockingChild& operator=(const LockingChild&) = delete;

    pid_t pid() const { return pid_; }

    // True once the child reports that it holds the lock (bounded wait).
    bool holds_lock() {
        char c = 0;
        return from_child_ >= 0 && wait_readable(from_child_, 10000) &&
               ::read(from_child_, &c, 1) == 1 && c == 'L';
    }

    // SIGKILLs and reaps the child; returns its wait status.
    int kill() {
        int status = 0;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return status;
    }

    int wait_exit() {
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return status;
    }

  private:
    pid_t pid_ = -1;
    int from_child_ = -1;
    int to_child_ = -1;
};

TEST_F(FileLockTest, AcquireReleaseReacquireInOneProcess) {
    pid_t holder = -1;
    {
        std::optional<FileLock> lock = FileLock::try_acquire(lock_path_, &holder);
        ASSERT_TRUE(lock.has_value());
        EXPECT_EQ(holder, 0);
        EXPECT_EQ(lock->path(), lock_path_);
        EXPECT_EQ(slurp(lock_path_), std::to_string(::getpid()) + "\n");

        // flock locks belong to the open file, so a second open in this process conflicts too.
        holder = -1;
        EXPECT_FALSE(FileLock::try_acquire(lock_path_, &holder).has_value());
        EXPECT_EQ(holder, ::getpid());
        EXPECT_FALSE(FileLock::try_acquire(lock_path_, nullptr).has_value());
    }
    // Released by the destructor; the file stays (unlinking would race with other lockers).
    EXPECT_TRUE(fs::exists(lock_path_));
    std::optional<FileLock> again = FileLock::try_acquire(lock_path_, &holder);
    EXPECT_TRUE(again.has_value());
    EXPECT_EQ(holder, 0);
}

TEST_F(FileLockTest, CreatesMissingParentDirectories) {
    const fs::path deep = dir_ / "run" / "mlkeeper" / "agent.lock";
    std::optional<FileLock> lock = FileLock::try_acquire(deep, nullptr);
    ASSERT_TRUE(lock.has_value());
    EXPECT_TRUE(fs::is_regular_file(deep));
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / "run").c_str(), &st), 0);
    const mode_t mask = ::umask(0);
    ::umask(mask);
    EXPECT_EQ(st.st_mode & 07777, 0755u & ~mask);
}

TEST_F(FileLockTest, MoveKeepsTheLockHeld) {
    std::optional<FileLock> first = FileLock::try_acquire(lock_path_, nullptr);
    ASSERT_TRUE(first.has_value());
    FileLock moved(std::move(*first));
    first.reset();  // destroying the moved-from object must not release the lock
    EXPECT_FALSE(FileLock::try_acquire(lock_path_, nullptr).has_value());
    EXPECT_EQ(moved.path(), lock_path_);

    // Move-assigning over a held lock releases that one.
    const fs::path other_path = dir_ / "other.lock";
    std::optional<FileLock> other = FileLock::try_acquire(other_path, nullptr);
    ASSERT_TRUE(other.has_value());
    *other = std::move(moved);
    EXPECT_TRUE(FileLock::try_acquire(other_path, nullptr).has_value());
    EXPECT_FALSE(FileLock::try_acquire(lock_path_, nullptr).has_value());
    other.reset();
    EXPECT_TRUE(FileLock::try_acquire(lock_path_, nullptr).has_value());
}

TEST_F(FileLockTest, OtherProcessHoldsItUntilKilled) {
    LockingChild child(lock_path_);
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE(child.holds_lock());

    pid_t holder = -1;
    EXPECT_FALSE(FileLock::try_acquire(lock_path_, &holder).has_value());
    EXPECT_EQ(holder, child.pid());

    const int status = child.kill();
    ASSERT_TRUE(WIFSIGNALED(status));
    // The kernel released the lock of the crashed holder; its stale pid is replaced by ours.
    std::optional<FileLock> lock = FileLock::try_acquire(lock_path_, &holder);
    ASSERT_TRUE(lock.has_value());
    EXPECT_EQ(holder, 0);
    EXPECT_EQ(slurp(lock_path_), std::to_string(::getpid()) + "\n");
}

TEST_F(FileLockTest, AcquireWaitsForAHolderThatLetsGo) {
    LockingChild child(lock_path_, /*release_after_ms=*/300);
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE(child.holds_lock());
    EXPECT_FALSE(FileLock::try_acquire(lock_path_, nullptr).has_value());

    const auto start = Clock::now();
    pid_t holder = -1;
    std::optional<FileLock> lock = FileLock::acquire(lock_path_, milliseconds(10000), &holder);
    const auto waited = Clock::now() - start;
    ASSERT_TRUE(lock.has_value());
    EXPECT_EQ(holder, 0);
    EXPECT_LT(waited, milliseconds(5000));
    EXPECT_EQ(child.wait_exit(), 0);
}

TEST_F(FileLockTest, AcquireGivesUpWithinBoundedTime) {
    LockingChild child(lock_path_);
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE(child.holds_lock());

    pid_t holder = -1;
    auto start = Clock::now();
    EXPECT_FALSE(FileLock::acquire(lock_path_, milliseconds(250), &holder).has_value());
    auto waited = Clock::now() - start;
    EXPECT_EQ(holder, child.pid());
    EXPECT_GE(waited, milliseconds(250));
    EXPECT_LT(waited, milliseconds(2500));

    // A zero timeout is a single attempt.
    start = Clock::now();
    EXPECT_FALSE(FileLock::acquire(lock_path_, milliseconds(0), &holder).has_value());
    waited = Clock::now() - start;
    EXPECT_LT(waited, milliseconds(1000));
}

TEST_F(FileLockTest, UnreadableHolderPidIsZero) {
    // A holder that never wrote a pid (or wrote garbage) is reported as unknown.
    for (const std::string content : {"", "garbage\n", "-5\n", "0\n"}) {
        spit(lock_path_, content);
        const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
        pid_t holder = -1;
        EXPECT_FALSE(FileLock::try_acquire(lock_path_, &holder).has_value());
        EXPECT_EQ(holder, 0) << "content '" << content << "'";
        ::close(fd);
    }
}

TEST_F(FileLockTest, LongerStalePidIsFullyReplaced) {
    spit(lock_path_, "4194304999\ntrailing junk from an older format\n");
    std::optional<FileLock> lock = FileLock::try_acquire(lock_path_, nullptr);
    ASSERT_TRUE(lock.has_value());
    EXPECT_EQ(slurp(lock_path_), std::to_string(::getpid()) + "\n");
}

TEST_F(FileLockTest, ParentThatIsAFileThrowsNamingThePath) {
    spit(dir_ / "file", "x");
    const fs::path bad = dir_ / "file" / "mlkeeper.lock";
    try {
        FileLock::try_acquire(bad, nullptr);
        FAIL() << "expected ENOTDIR";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOTDIR);
        EXPECT_TRUE(contains(e.what(), bad.string())) << e.what();
    }
    EXPECT_THROW(FileLock::acquire(dir_ / "file" / "sub" / "x.lock", milliseconds(100), nullptr),
                 std::system_error);
}

TEST_F(FileLockTest, SymlinkLockFileIsRefused) {
    const fs::path victim = dir_ / "victim";
    spit(victim, "precious");
    fs::create_symlink(victim, lock_path_);
    try {
        FileLock::try_acquire(lock_path_, nullptr);
        FAIL() << "expected ELOOP";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ELOOP);
        EXPECT_TRUE(contains(e.what(), "cannot open lock file " + lock_path_.string())) << e.what();
    }
    EXPECT_EQ(slurp(victim), "precious");
}

TEST_F(FileLockTest, UnwritableDirectoryThrowsNamingThePath) {
    if (::geteuid() == 0) {
        GTEST_SKIP() << "root can write into any directory";
    }
    const fs::path ro = dir_ / "ro";
    fs::create_directory(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);

    const fs::path in_ro = ro / "mlkeeper.lock";
    try {
        FileLock::try_acquire(in_ro, nullptr);
        FAIL() << "expected EACCES";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), EACCES);
        EXPECT_TRUE(contains(e.what(), in_ro.string())) << e.what();
        EXPECT_TRUE(contains(e.what(), "Permission denied")) << e.what();
    }
    // A missing parent that cannot be created is named too.
    const fs::path sub = ro / "sub";
    try {
        FileLock::try_acquire(sub / "mlkeeper.lock", nullptr);
        FAIL() << "expected EACCES";
    } catch (const std::system_error& e) {
        EXPECT_TRUE(contains(e.what(), "cannot create directory " + sub.string())) << e.what();
    }
}

}  // namespace
}  // namespace mlk::util
