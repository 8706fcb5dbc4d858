#include "mlkeeper/core/instance_lock.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlkeeper/core/error.hpp"
#include "support/temp_dir.hpp"

namespace mlk::core {
namespace {

using ::testing::HasSubstr;

TEST(InstanceLock, SecondProcessIsToldWhoHoldsItAndGetsItAfterACrash) {
    mlk::testing::TempDir dir;
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(ready[0]);
        auto lock = lock_command(dir.path(), "backup");
        (void)::write(ready[1], "x", 1);
        ::sleep(30);  // killed by the parent long before this ends
        ::_exit(0);
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    try {
        lock_command(dir.path(), "backup");
        ADD_FAILURE() << "expected the lock to be busy";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("another `mlkeeper backup` is running (pid " +
                                        std::to_string(child) + ")"));
    }
    // A different command is not blocked.
    EXPECT_NO_THROW(lock_command(dir.path(), "cleanup"));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_NO_THROW(lock_command(dir.path(), "backup"));
}

TEST(InstanceLock, WaitGivesUpAfterTheTimeout) {
    mlk::testing::TempDir dir;
    auto held = lock_command(dir.path(), "gpu");
    auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(lock_command(dir.path(), "gpu", LockWait::kWait, std::chrono::milliseconds(200)),
                 Error);
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_GE(took, std::chrono::milliseconds(150));
    EXPECT_LT(took, std::chrono::seconds(5));
}

}  // namespace
}  // namespace mlk::core
