#include "mlkeeper/agent/nginx_follower.hpp"

#include <gtest/gtest.h>

#include <mutex>

#include "support/fake_model_backend.hpp"
#include "support/wait.hpp"

namespace mlk::agent {
namespace {

using namespace std::chrono_literals;

using testing::FakeBackend;
using testing::FakeProc;

std::vector<homelab::ModelSpec> specs() {
    std::vector<homelab::ModelSpec> out(2);
    out[0].name = "alpha";
    out[1].name = "beta";
    for (auto& s : out) {
        s.command = {"/bin/true"};
    }
    return out;
}

struct Recorder {
    std::mutex mu;
    std::vector<std::set<std::string>> calls;
    bool fail = false;
    NginxFollower::Apply apply() {
        return [this](const std::set<std::string>& running) {
            std::lock_guard lk(mu);
            calls.push_back(running);
            homelab::ApplyResult r;
            r.outcome = fail ? homelab::ApplyOutcome::kTestFailed : homelab::ApplyOutcome::kApplied;
            r.error = fail ? "nginx: [emerg] test" : "";
            return r;
        };
    }
    std::size_t count() {
        std::lock_guard lk(mu);
        return calls.size();
    }
    std::set<std::string> last() {
        std::lock_guard lk(mu);
        return calls.back();
    }
};

homelab::ModelManager manager() {
    return homelab::ModelManager(
        specs(),
        [](const homelab::ModelSpec&) {
            return std::make_unique<FakeBackend>(std::make_shared<FakeProc>());
        },
        [](const std::string&, std::chrono::milliseconds) { return true; });
}

TEST(NginxFollower, RendersAtOnceAndAgainOnlyWhenTheRunningModelsChange) {
    auto models = manager();
    Recorder rec;
    {
        NginxFollower follower(models, rec.apply(), 20ms);
        ASSERT_TRUE(testing::wait_until([&] { return rec.count() == 1; }, 5s));
        EXPECT_TRUE(rec.last().empty());
        std::this_thread::sleep_for(100ms);
        EXPECT_EQ(rec.count(), 1u) << "nothing changed: nothing rendered";

        models.start("beta", homelab::Wait::kYes, std::nullopt);
        ASSERT_TRUE(testing::wait_until([&] { return rec.count() == 2; }, 5s));
        EXPECT_EQ(rec.last(), std::set<std::string>{"beta"});

        models.stop("beta", homelab::Wait::kYes, std::nullopt);
        ASSERT_TRUE(testing::wait_until([&] { return rec.count() == 3; }, 5s));
        EXPECT_TRUE(rec.last().empty());
    }
    const auto after = rec.count();
    std::this_thread::sleep_for(60ms);
    EXPECT_EQ(rec.count(), after) << "the destructor stopped the thread";
}

// A config nginx refuses is not tried again every second for the same running models, but at
// once for a new set.
TEST(NginxFollower, AFailedApplyWaitsForAChangeBeforeTryingAgain) {
    auto models = manager();
    Recorder rec;
    rec.fail = true;
    NginxFollower follower(models, rec.apply(), 10ms);
    ASSERT_TRUE(testing::wait_until([&] { return rec.count() == 1; }, 5s));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(rec.count(), 1u);
    models.start("alpha", homelab::Wait::kYes, std::nullopt);
    ASSERT_TRUE(testing::wait_until([&] { return rec.count() == 2; }, 5s));
    EXPECT_EQ(rec.last(), std::set<std::string>{"alpha"});
}

}  // namespace
}  // namespace mlk::agent
