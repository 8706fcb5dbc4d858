#include "support/mlkeeper_runner.hpp"

#include <cstdlib>

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

util::RunResult MlkeeperRunner::run(const std::vector<std::string>& args,
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
    util::RunOptions opts;
    opts.timeout = std::chrono::seconds(60);
    return util::run_process(argv, opts);
}

}  // namespace mlk::testing
