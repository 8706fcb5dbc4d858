// Runs the built mlkeeper binary the way a user would, in a clean
// environment (env -i) whose state and home live in a per-test directory.
// Thread safety: one per test.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "mlkeeper/util/process.hpp"
#include "support/temp_dir.hpp"

namespace mlk::testing {

class MlkeeperRunner {
  public:
    MlkeeperRunner();

    // Extra environment for every run (e.g. {"MODEL_DIR", "/x"}).
    std::map<std::string, std::string>& env() { return env_; }
    const TempDir& dir() const { return dir_; }
    std::filesystem::path state_dir() const { return dir_ / "state"; }

    util::RunResult run(const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& extra_env = {}) const;

    // Runs mlkeeper on a pseudo-terminal (through util-linux `script`), so it
    // behaves as on a user's terminal; `input` is typed into it. stdout and
    // stderr both arrive in `out`, with CRLF line ends.
    util::RunResult run_on_tty(const std::vector<std::string>& args,
                               const std::string& input) const;

    // The full command line run() uses (env -i ... mlkeeper args), for starting long-lived
    // instances such as the agent with util::Subprocess.
    std::vector<std::string> command_line(
        const std::vector<std::string>& args,
        const std::map<std::string, std::string>& extra_env = {}) const;

    // `mlkeeper --config CONFIG agent` in the background, its output in dir()/agent.log; waits
    // up to `limit` for `ready` (e.g. its /health answering) and records a test failure with the
    // log when it does not come. The Subprocess kills the agent if the test leaves it running.
    util::Subprocess start_agent(const std::filesystem::path& config,
                                 const std::function<bool()>& ready,
                                 std::chrono::seconds limit = std::chrono::seconds(15)) const;
    // SIGTERM, then waits up to 20 s for the agent to stop (a test failure if it does not).
    static void stop_agent(util::Subprocess& agent);

  private:
    TempDir dir_;
    std::map<std::string, std::string> env_;
};

}  // namespace mlk::testing
