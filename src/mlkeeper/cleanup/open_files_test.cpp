#include "mlkeeper/cleanup/open_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/cleanup_tree.hpp"

namespace mlk::cleanup {
namespace {

using namespace std::chrono_literals;
using testing::TempTree;

// A child holding `path` open with `flags` until the returned pipe is closed.
struct Holder {
    pid_t pid = -1;
    int release_fd = -1;
    Holder(const std::filesystem::path& path, int flags) {
        int ready[2], release[2];
        EXPECT_EQ(::pipe(ready), 0);
        EXPECT_EQ(::pipe(release), 0);
        pid = ::fork();
        if (pid == 0) {
            ::close(release[1]);
            ::close(ready[0]);
            ::alarm(20);  // never outlive a broken test
            int fd = ::open(path.c_str(), flags);
            char c = fd >= 0 ? 'y' : 'n';
            (void)!::write(ready[1], &c, 1);
            (void)!::read(release[0], &c, 1);  // returns when the parent closes its end
            ::_exit(0);
        }
        ::close(ready[1]);
        ::close(release[0]);
        char c = 0;
        EXPECT_EQ(::read(ready[0], &c, 1), 1);
        EXPECT_EQ(c, 'y');
        ::close(ready[0]);
        release_fd = release[1];
    }
    ~Holder() {
        ::close(release_fd);
        int st = 0;
        ::waitpid(pid, &st, 0);
    }
};

TEST(OpenFiles, FindsFilesOpenForWritingOnly) {
    TempTree t;
    auto w = t.file("w.pt", 0s);
    auto rw = t.file("rw.pt", 0s);
    auto r = t.file("r.pt", 0s);
    Holder h1(w, O_WRONLY | O_APPEND);
    Holder h2(rw, O_RDWR);
    Holder h3(r, O_RDONLY);
    auto idx = OpenWriteIndex::build();
    struct stat s1 {
    }, s2{}, s3{};
    ::stat(w.c_str(), &s1);
    ::stat(rw.c_str(), &s2);
    ::stat(r.c_str(), &s3);
    EXPECT_TRUE(idx.contains(s1.st_dev, s1.st_ino));
    EXPECT_TRUE(idx.contains(s2.st_dev, s2.st_ino));
    EXPECT_FALSE(idx.contains(s3.st_dev, s3.st_ino));
}

TEST(OpenFiles, MissingProcGivesEmptyIndex) {
    auto idx = OpenWriteIndex::build("/nonexistent-proc");
    EXPECT_EQ(idx.size(), 0u);
}

TEST(OpenFiles, ParsesFdinfoFlags) {
    EXPECT_EQ(parse_fdinfo_flags("pos:\t0\nflags:\t0100002\nmnt_id:\t29\n"), 0100002);
    EXPECT_EQ(parse_fdinfo_flags("pos:\t0\n"), -1);
    EXPECT_EQ(parse_fdinfo_flags("flags:\tzz"), -1);
}

}  // namespace
}  // namespace mlk::cleanup
