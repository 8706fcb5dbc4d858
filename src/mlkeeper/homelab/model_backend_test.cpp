#include "mlkeeper/homelab/model_backend.hpp"

#include <gtest/gtest.h>

#include "mlkeeper/homelab/process_backend.hpp"
#include "mlkeeper/homelab/systemd_backend.hpp"
#include "support/temp_dir.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;

TEST(MakeBackend, PicksTheBackendOfTheSpec) {
    mlk::testing::TempDir dir;
    BackendEnv env;
    env.log_dir = dir.path();
    ModelSpec p;
    p.name = "p";
    p.command = {"/bin/sh", "-c", "exit 0"};
    auto pb = make_backend(p, env);
    EXPECT_NE(dynamic_cast<ProcessBackend*>(pb.get()), nullptr);
    EXPECT_EQ(pb->status().state, BackendState::kStopped);

    ModelSpec s;
    s.name = "s";
    s.backend = ModelSpec::Backend::kSystemd;
    s.unit = "s.service";
    auto sb = make_backend(s, env);
    EXPECT_NE(dynamic_cast<SystemdBackend*>(sb.get()), nullptr);
}

TEST(MakeBackend, RejectsSpecsTheRegistryWouldHaveRejected) {
    BackendEnv env;
    env.log_dir = ::testing::TempDir();
    ModelSpec p;
    p.name = "p";
    EXPECT_THROW((void)make_backend(p, env), std::invalid_argument);  // no command
    ModelSpec s;
    s.name = "s";
    s.backend = ModelSpec::Backend::kSystemd;
    s.unit = "s; reboot";
    EXPECT_THROW((void)make_backend(s, env), std::invalid_argument);
}

TEST(MakeBackend, WorksThroughTheInterface) {
    mlk::testing::TempDir dir;
    BackendEnv env;
    env.log_dir = dir.path();
    ModelSpec p;
    p.name = "p";
    p.command = {"/bin/sh", "-c", "exec sleep 30"};
    std::unique_ptr<ModelBackend> b = make_backend(p, env);
    b->start();
    const auto st = b->status();
    EXPECT_EQ(st.state, BackendState::kRunning);
    EXPECT_TRUE(st.pid.has_value());
    b->stop(1000ms);
    EXPECT_EQ(b->status().state, BackendState::kStopped);
}

}  // namespace
}  // namespace mlk::homelab
