// Errors and process exit codes shared by every command. An mlk::Error carries
// the exit-code category the command boundary turns into the process status.
// Thread safety: plain value types.
#pragma once

#include <stdexcept>
#include <string>

namespace mlk {

// Exit codes follow the seeds (and Nagios) plus sysexits(3) for usage/config.
enum class ExitCode : int {
    kOk = 0,
    kFailure = 1,   // a task failed, or a check is in warning
    kCritical = 2,  // a check is critical, or verification failed
    kUsage = 64,    // EX_USAGE: bad command line
    kConfig = 78,   // EX_CONFIG: bad configuration
};

inline int to_int(ExitCode c) {
    return static_cast<int>(c);
}

// An error the caller cannot handle locally. The message is one line: what
// failed, the path or value involved, and what to do about it.
class Error : public std::runtime_error {
  public:
    Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    explicit Error(const std::string& message) : Error(ExitCode::kFailure, message) {}

    ExitCode code() const { return code_; }

  private:
    ExitCode code_;
};

// Configuration problems (exit 78); the message starts with `where: `.
class ConfigError : public Error {
  public:
    explicit ConfigError(const std::string& message) : Error(ExitCode::kConfig, message) {}
};

// Command-line problems (exit 64).
class UsageError : public Error {
  public:
    explicit UsageError(const std::string& message) : Error(ExitCode::kUsage, message) {}
};

}  // namespace mlk
