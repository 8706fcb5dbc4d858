#include "support/mlkeeper_runner.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>

#include "mlkeeper/util/strings.hpp"
#include "support/wait.hpp"

namespace mlk::testing {

MlkeeperRunner::MlkeeperRunner() {
    env_["HOME"] = dir_.path().string();
    env_["MLKEEPER_STATE_DIR"] = state_dir().string();
    const char* path = std::getenv("PATH");
    env_["PATH"] = path != nullptr ? path : "/usr/bin:/bin";
    // Keep sanitizer settings of the test run.
    for (const char* v : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}) {
        if (const char* s = std::getenv(v)) {
            env_[v] = s;
        }
    }
}

std::vector<std::string> MlkeeperRunner::command_line(
    const std::vector<std::string>& args,
    const std::map<std::string, std::string>& extra_env) const {
    std::vector<std::string> argv{"/usr/bin/env", "-i"};
    auto all = env_;
    for (const auto& [k, v] : extra_env) {
        all[k] = v;
    }
    for (const auto& [k, v] : all) {
        argv.push_back(k + "=" + v);
    }
    argv.push_back(MLK_BINARY);
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

util::RunResult MlkeeperRunner::run(const std::vector<std::string>& args,
                                    const std::map<std::string, std::string>& extra_env) const {
    util::RunOptions opts;
    opts.timeout = std::chrono::seconds(60);
    return util::run_process(command_line(args, extra_env), opts);
}

util::RunResult MlkeeperRunner::run_on_tty(const std::vector<std::string>& args,
                                           const std::string& input) const {
    util::RunOptions opts;
    opts.timeout = std::chrono::seconds(60);
    opts.stdin_data = input;
    return util::run_process(
        {"/usr/bin/script", "-qec", util::shell_join(command_line(args, {})), "/dev/null"}, opts);
}

util::Subprocess MlkeeperRunner::start_agent(const std::filesystem::path& config,
                                             const std::function<bool()>& ready,
                                             std::chrono::seconds limit) const {
    util::RunOptions o;
    o.kill_grace = std::chrono::milliseconds(10000);
    auto agent = util::Subprocess::start(command_line({"--config", config.string(), "agent"}), o,
                                         util::Subprocess::Output::kToFile, dir_ / "agent.log");
    EXPECT_TRUE(wait_until(ready, limit)) << slurp(dir_ / "agent.log");
    return agent;
}

void MlkeeperRunner::stop_agent(util::Subprocess& agent) {
    ::kill(agent.pid(), SIGTERM);
    EXPECT_TRUE(agent.wait_for(std::chrono::seconds(20)).has_value()) << "agent did not stop";
}

}  // namespace mlk::testing
