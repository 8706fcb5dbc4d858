#include "mlkeeper/util/atomic_file.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace mlk::util {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = ::testing::TempDir() + "mlk_atomic_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
        dir_ = tmpl;
        dest_ = dir_ / "state.json";
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // Names in dir_ other than `keep`: any leftover temp file shows up here.
    std::vector<std::string> others(const std::string& keep = "state.json") const {
        std::vector<std::string> names;
        for (const auto& entry : fs::directory_iterator(dir_)) {
            if (entry.path().filename() != keep) {
                names.push_back(entry.path().filename().string());
            }
        }
        return names;
    }

    mode_t mode_of(const fs::path& p) const {
        struct stat st {};
        EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
        return st.st_mode & 07777;
    }

    fs::path dir_;
    fs::path dest_;
};

// Binary content with NULs and every byte value, so no layer can treat it as a C string.
std::string binary_content(std::size_t size, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(size, '\0');
    for (auto& c : s) {
        c = static_cast<char>(rng() & 0xFF);
    }
    return s;
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

TEST_F(AtomicFileTest, WriteThenReadBack) {
    const std::string data = binary_content(3 * 1024 * 1024 + 17, 1);
    write_file_atomic(dest_, data);
    EXPECT_EQ(read_file(dest_), data);
    EXPECT_TRUE(others().empty());

    write_file_atomic(dest_, "");
    EXPECT_EQ(read_file(dest_), "");
    EXPECT_EQ(fs::file_size(dest_), 0u);
}

TEST_F(AtomicFileTest, StreamsSeveralChunksAndTempLivesBesideDestination) {
    AtomicFileWriter writer(dest_);
    EXPECT_EQ(writer.temp_path().parent_path(), dir_);
    EXPECT_EQ(writer.temp_path().filename().string().rfind(".state.json.tmp.", 0), 0u)
        << writer.temp_path();
    EXPECT_TRUE(fs::exists(writer.temp_path()));
    writer.write("alpha ");
    writer.write("");
    writer.write("beta");
    EXPECT_FALSE(fs::exists(dest_));  // nothing visible before commit
    writer.commit();
    EXPECT_EQ(read_file(dest_), "alpha beta");
    EXPECT_FALSE(fs::exists(writer.temp_path()));
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, RelativeDestinationUsesCurrentDirectory) {
    const fs::path old_cwd = fs::current_path();
    fs::current_path(dir_);
    try {
        write_file_atomic("state.json", "rel");
        fs::current_path(old_cwd);
    } catch (...) {
        fs::current_path(old_cwd);
        throw;
    }
    EXPECT_EQ(read_file(dest_), "rel");
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, AppliesRequestedModeExactlyDespiteUmask) {
    const mode_t old_umask = ::umask(077);
    write_file_atomic(dest_, "x", 0640);
    ::umask(old_umask);
    EXPECT_EQ(mode_of(dest_), 0640u);
}

TEST_F(AtomicFileTest, OverwriteKeepsMode) {
    write_file_atomic(dest_, "secret v1", 0600);
    ASSERT_EQ(mode_of(dest_), 0600u);
    write_file_atomic(dest_, "secret v2", 0600);
    EXPECT_EQ(mode_of(dest_), 0600u);
    EXPECT_EQ(read_file(dest_), "secret v2");

    write_file_atomic(dest_, "public", 0644);
    EXPECT_EQ(mode_of(dest_), 0644u);
}

// A write() that accepts `budget` bytes in total and then reports ENOSPC, like a filling disk.
FsOps disk_full_after(std::size_t budget) {
    FsOps ops = real_fs_ops();
    auto left = std::make_shared<std::size_t>(budget);
    ops.write = [left](int fd, const void* buf, std::size_t count) -> ssize_t {
        if (*left == 0) {
            errno = ENOSPC;
            return -1;
        }
        const std::size_t n = std::min(count, *left);
        const ssize_t written = ::write(fd, buf, n);
        if (written > 0) {
            *left -= static_cast<std::size_t>(written);
        }
        return written;
    };
    return ops;
}

TEST_F(AtomicFileTest, DiskFullDuringWriteLeavesOldContentAndNoTemp) {
    const std::string old_content = binary_content(100000, 2);
    write_file_atomic(dest_, old_content);

    const FsOps ops = disk_full_after(5000);
    AtomicFileWriter writer(dest_, 0644, ops);
    const fs::path temp = writer.temp_path();
    const std::string chunk = binary_content(4096, 3);
    writer.write(chunk);  // within budget
    try {
        writer.write(chunk);
        FAIL() << "expected ENOSPC";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::error_code(ENOSPC, std::generic_category()));
        const std::string what = e.what();
        EXPECT_TRUE(contains(what, "cannot write " + temp.string())) << what;
        EXPECT_TRUE(contains(what, "No space left on device")) << what;
    }
    // Cleaned up at once, not only at destruction; the writer refuses further use.
    EXPECT_FALSE(fs::exists(temp));
    EXPECT_THROW(writer.write("more"), std::logic_error);
    EXPECT_THROW(writer.commit(), std::logic_error);
    EXPECT_EQ(read_file(dest_), old_content);
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, DiskFullThroughWriteFileAtomic) {
    const std::string old_content = binary_content(70000, 4);
    write_file_atomic(dest_, old_content);
    const std::string new_content = binary_content(200000, 5);
    EXPECT_THROW(write_file_atomic(dest_, new_content, 0644, disk_full_after(123457)),
                 std::system_error);
    EXPECT_EQ(read_file(dest_), old_content);
    EXPECT_TRUE(others().empty());

    // A budget that is exactly enough succeeds: the limit is the fault, not the code path.
    write_file_atomic(dest_, new_content, 0644, disk_full_after(new_content.size()));
    EXPECT_EQ(read_file(dest_), new_content);
}

TEST_F(AtomicFileTest, ShortWritesAndEintrAreRetried) {
    FsOps ops = real_fs_ops();
    auto calls = std::make_shared<int>(0);
    ops.write = [calls](int fd, const void* buf, std::size_t count) -> ssize_t {
        if ((*calls)++ % 2 == 0) {
            errno = EINTR;
            return -1;
        }
        return ::write(fd, buf, std::min<std::size_t>(count, 3));
    };
    const std::string data = binary_content(1000, 6);
    write_file_atomic(dest_, data, 0644, ops);
    EXPECT_EQ(read_file(dest_), data);
    EXPECT_GT(*calls, 600);
}

TEST_F(AtomicFileTest, WriteMakingNoProgressFailsInsteadOfSpinning) {
    FsOps ops = real_fs_ops();
    ops.write = [](int, const void*, std::size_t) -> ssize_t { return 0; };
    try {
        write_file_atomic(dest_, "data", 0644, ops);
        FAIL() << "expected an error";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), EIO);
    }
    EXPECT_FALSE(fs::exists(dest_));
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, RenameFailureLeavesOldContentAndNoTemp) {
    const std::string old_content = binary_content(5000, 7);
    write_file_atomic(dest_, old_content);

    FsOps ops = real_fs_ops();
    ops.rename = [](const char*, const char*) {
        errno = EIO;
        return -1;
    };
    AtomicFileWriter writer(dest_, 0644, ops);
    const fs::path temp = writer.temp_path();
    writer.write("new content");
    try {
        writer.commit();
        FAIL() << "expected EIO";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), EIO);
        const std::string what = e.what();
        EXPECT_TRUE(contains(what, temp.string())) << what;
        EXPECT_TRUE(contains(what, dest_.string())) << what;
        EXPECT_TRUE(contains(what, "Input/output error")) << what;
    }
    EXPECT_FALSE(fs::exists(temp));
    EXPECT_THROW(writer.commit(), std::logic_error);
    EXPECT_EQ(read_file(dest_), old_content);
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, FileFsyncFailureLeavesOldContentAndNoTemp) {
    write_file_atomic(dest_, "old");
    FsOps ops = real_fs_ops();
    ops.fsync = [](int) {
        errno = EIO;
        return -1;
    };
    try {
        write_file_atomic(dest_, "new", 0644, ops);
        FAIL() << "expected EIO";
    } catch (const std::system_error& e) {
        EXPECT_TRUE(contains(e.what(), "cannot fsync " + (dir_ / ".state.json.tmp.").string()))
            << e.what();
    }
    EXPECT_EQ(read_file(dest_), "old");
    EXPECT_TRUE(others().empty());

    // kNoFsync never calls fsync, so the same broken table works.
    write_file_atomic(dest_, "new", 0644, ops, Durability::kNoFsync);
    EXPECT_EQ(read_file(dest_), "new");
}

TEST_F(AtomicFileTest, CloseFailureLeavesOldContentAndNoTemp) {
    write_file_atomic(dest_, "old");
    FsOps ops = real_fs_ops();
    ops.close = [](int fd) {
        ::close(fd);  // Linux frees the fd even when close reports an error
        errno = EIO;
        return -1;
    };
    EXPECT_THROW(write_file_atomic(dest_, "new", 0644, ops), std::system_error);
    EXPECT_EQ(read_file(dest_), "old");
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, DirectoryFsyncFailureThrowsButNewContentIsInPlace) {
    write_file_atomic(dest_, "old");
    FsOps ops = real_fs_ops();
    auto calls = std::make_shared<int>(0);
    ops.fsync = [calls](int fd) {
        if (++*calls == 2) {  // the first fsync is the file, the second the directory
            errno = EIO;
            return -1;
        }
        return ::fsync(fd);
    };
    try {
        write_file_atomic(dest_, "new", 0644, ops);
        FAIL() << "expected EIO";
    } catch (const std::system_error& e) {
        EXPECT_TRUE(contains(e.what(), "cannot fsync directory " + dir_.string())) << e.what();
    }
    EXPECT_EQ(*calls, 2);
    // Documented: the rename already happened, so the new content is visible (not yet durable).
    EXPECT_EQ(read_file(dest_), "new");
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, CreateFailureNamesTempPath) {
    const fs::path missing = dir_ / "no" / "such" / "file";
    try {
        AtomicFileWriter writer(missing);
        FAIL() << "expected ENOENT";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOENT);
        const std::string what = e.what();
        EXPECT_TRUE(contains(what, (dir_ / "no" / "such" / ".file.tmp.").string())) << what;
        EXPECT_TRUE(contains(what, "No such file or directory")) << what;
    }

    FsOps ops = real_fs_ops();
    ops.open = [](const char*, int, mode_t) {
        errno = EACCES;
        return -1;
    };
    EXPECT_THROW(write_file_atomic(dest_, "x", 0644, ops), std::system_error);
    EXPECT_FALSE(fs::exists(dest_));
}

TEST_F(AtomicFileTest, NameCollisionIsRetried) {
    FsOps ops = real_fs_ops();
    auto calls = std::make_shared<int>(0);
    ops.open = [calls](const char* path, int flags, mode_t mode) {
        if (++*calls <= 3) {
            errno = EEXIST;
            return -1;
        }
        return ::open(path, flags, mode);
    };
    write_file_atomic(dest_, "after collisions", 0644, ops);
    EXPECT_EQ(read_file(dest_), "after collisions");

    // A name that is always taken gives up instead of looping forever.
    ops.open = [](const char*, int, mode_t) {
        errno = EEXIST;
        return -1;
    };
    EXPECT_THROW(write_file_atomic(dest_, "never", 0644, ops), std::system_error);
    EXPECT_EQ(read_file(dest_), "after collisions");
}

TEST_F(AtomicFileTest, FchmodFailureRemovesTemp) {
    FsOps ops = real_fs_ops();
    ops.fchmod = [](int, mode_t) {
        errno = EPERM;
        return -1;
    };
    EXPECT_THROW(AtomicFileWriter(dest_, 0644, ops), std::system_error);
    EXPECT_TRUE(others().empty());
    EXPECT_FALSE(fs::exists(dest_));
}

TEST_F(AtomicFileTest, DestinationThatIsADirectoryIsLeftAlone) {
    fs::create_directory(dest_);
    fs::path inner = dest_ / "inner";
    write_file_atomic(inner, "keep");
    EXPECT_THROW(write_file_atomic(dest_, "x"), std::system_error);
    EXPECT_TRUE(fs::is_directory(dest_));
    EXPECT_EQ(read_file(inner), "keep");
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, RejectsPathsWithoutFileName) {
    EXPECT_THROW(AtomicFileWriter(""), std::system_error);
    EXPECT_THROW(AtomicFileWriter(dir_ / ""), std::system_error);
    EXPECT_THROW(AtomicFileWriter(dir_ / ".."), std::system_error);
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, DestructionWithoutCommitRemovesTempAndKeepsOld) {
    write_file_atomic(dest_, "old");
    fs::path temp;
    {
        AtomicFileWriter writer(dest_);
        temp = writer.temp_path();
        writer.write("abandoned");
        EXPECT_TRUE(fs::exists(temp));
        EXPECT_EQ(read_file(temp), "abandoned");
    }
    EXPECT_FALSE(fs::exists(temp));
    EXPECT_EQ(read_file(dest_), "old");
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, CommitTwiceIsALogicError) {
    AtomicFileWriter writer(dest_);
    writer.write("once");
    writer.commit();
    EXPECT_THROW(writer.commit(), std::logic_error);
    EXPECT_THROW(writer.write("x"), std::logic_error);
    EXPECT_EQ(read_file(dest_), "once");
}

TEST_F(AtomicFileTest, MoveTransfersOwnershipOfTheTempFile) {
    AtomicFileWriter first(dest_);
    first.write("moved ");
    const fs::path temp = first.temp_path();
    AtomicFileWriter second(std::move(first));
    EXPECT_THROW(first.write("x"), std::logic_error);  // NOLINT(bugprone-use-after-move)
    EXPECT_TRUE(fs::exists(temp));
    second.write("content");

    // Move-assigning over a writer in progress abandons that writer's temp file.
    AtomicFileWriter other(dir_ / "other");
    const fs::path other_temp = other.temp_path();
    other = std::move(second);
    EXPECT_FALSE(fs::exists(other_temp));
    other.commit();
    EXPECT_EQ(read_file(dest_), "moved content");
    EXPECT_FALSE(fs::exists(dir_ / "other"));
    EXPECT_TRUE(others().empty());
}

TEST_F(AtomicFileTest, ReadFileErrorsNameThePath) {
    try {
        read_file(dir_ / "missing");
        FAIL() << "expected ENOENT";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOENT);
        EXPECT_TRUE(contains(e.what(), "cannot open " + (dir_ / "missing").string())) << e.what();
    }
    try {
        read_file(dir_);
        FAIL() << "expected EISDIR";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), EISDIR);
        EXPECT_TRUE(contains(e.what(), "cannot read " + dir_.string())) << e.what();
    }
    write_file_atomic(dest_, "data");
    FsOps ops = real_fs_ops();
    ops.read = [](int, void*, std::size_t) -> ssize_t {
        errno = EIO;
        return -1;
    };
    EXPECT_THROW(read_file(dest_, ops), std::system_error);
}

TEST_F(AtomicFileTest, ConcurrentWritersLeaveExactlyOneWholeContent) {
    constexpr int kWriters = 8;
    constexpr int kRounds = 20;
    constexpr std::size_t kSize = 64 * 1024;
    // Each writer's content is kSize copies of its own letter: a mix or a truncation is visible.
    auto content_of = [](int writer) {
        return std::string(kSize, static_cast<char>('a' + writer));
    };
    auto is_whole = [&](const std::string& s) {
        if (s.size() != kSize || s[0] < 'a' || s[0] >= 'a' + kWriters) {
            return false;
        }
        return s == content_of(s[0] - 'a');
    };
    write_file_atomic(dest_, content_of(0), 0644, real_fs_ops(), Durability::kNoFsync);

    std::atomic<bool> done{false};
    std::atomic<int> torn_reads{0};
    std::atomic<int> reads{0};
    std::thread reader([&] {
        while (!done.load()) {
            if (!is_whole(read_file(dest_))) {
                ++torn_reads;
            }
            ++reads;
        }
    });
    std::atomic<int> failures{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
        writers.emplace_back([&, w] {
            const std::string data = content_of(w);
            for (int round = 0; round < kRounds; ++round) {
                try {
                    // Mostly without fsync to keep the test fast; the last round with it.
                    const Durability d =
                        round + 1 == kRounds ? Durability::kFsync : Durability::kNoFsync;
                    write_file_atomic(dest_, data, 0644, real_fs_ops(), d);
                } catch (...) {
                    ++failures;
                }
            }
        });
    }
    for (auto& t : writers) {
        t.join();
    }
    done = true;
    reader.join();

    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(torn_reads.load(), 0) << "of " << reads.load() << " reads";
    EXPECT_TRUE(is_whole(read_file(dest_)));
    EXPECT_TRUE(others().empty());
}

// Waits up to timeout_ms for fd to become readable.
bool wait_readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    int rc;
    do {
        rc = ::poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    return rc == 1;
}

TEST_F(AtomicFileTest, KilledWriterLeavesOldContent) {
    const std::string old_content = binary_content(10000, 8);
    write_file_atomic(dest_, old_content);

    int ready[2];
    ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // Child: write slowly and never commit. Only _exit() leaves, never back into gtest.
        ::close(ready[0]);
        try {
            AtomicFileWriter writer(dest_, 0644, real_fs_ops(), Durability::kNoFsync);
            const std::string chunk(64 * 1024, 'N');
            writer.write(chunk);
            const char c = 'r';
            if (::write(ready[1], &c, 1) != 1) {
                ::_exit(2);
            }
            for (int i = 0; i < 1000; ++i) {  // about 10 s if nobody kills us
                writer.write(chunk);
                ::usleep(10000);
            }
        } catch (...) {
        }
        ::_exit(3);
    }
    ::close(ready[1]);
    const bool child_ready = wait_readable(ready[0], 10000);
    ::close(ready[0]);
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(child_ready) << "child never started writing";
    ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
    EXPECT_EQ(WTERMSIG(status), SIGKILL);

    EXPECT_EQ(read_file(dest_), old_content);
    // Documented behaviour: a killed writer's temp file stays behind (nothing can remove it).
    const std::vector<std::string> left = others();
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].rfind(".state.json.tmp.", 0), 0u) << left[0];
    EXPECT_GE(fs::file_size(dir_ / left[0]), 64u * 1024u);
    // The stale temp does not get in the way of the next write.
    write_file_atomic(dest_, "after crash");
    EXPECT_EQ(read_file(dest_), "after crash");
}

}  // namespace
}  // namespace mlk::util
