// Runs a model server as a child of the agent: argv without a shell, in its own process group,
// with stdout and stderr captured by a reader thread into <log_dir>/<name>.log (size-rotated).
// Thread safety: ProcessBackend's methods may be called from any thread at once; RotatingLog
// serialises its own writers.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "mlkeeper/homelab/model_backend.hpp"
#include "mlkeeper/util/process.hpp"

namespace mlk::homelab {

// An append-only log file rotated by size: file -> file.1 -> ... -> file.N (N = keep; keep 0
// truncates instead). Whole lines go to one file (a line longer than max_size is written
// whole). Write failures (a full disk, a missing directory) never throw and never block: the
// lines are dropped and counted, the file is re-opened on the next write, and the first write
// that succeeds again is preceded by a note saying how many lines were lost.
class RotatingLog {
  public:
    RotatingLog(std::filesystem::path file, std::uint64_t max_size, int keep);
    ~RotatingLog();
    RotatingLog(const RotatingLog&) = delete;
    RotatingLog& operator=(const RotatingLog&) = delete;

    // Appends raw output; a trailing partial line is held until its newline, flush() or 64 KiB.
    void write(std::string_view data);
    // Writes a held partial line (with a newline added).
    void flush();
    // Writes one complete line of our own ("---- mlkeeper: ... ----"), after any held partial line.
    void note(std::string_view line);

    std::uint64_t dropped_lines() const { return dropped_total_.load(); }
    const std::filesystem::path& path() const { return file_; }

  private:
    void write_lines(std::string_view lines);  // complete lines only; mu_ held
    bool append(std::string_view block);       // false: dropped (counted); mu_ held
    void rotate();                             // mu_ held
    bool ensure_open();                        // mu_ held

    std::mutex mu_;
    std::filesystem::path file_;
    std::uint64_t max_size_;
    int keep_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::string partial_;
    std::uint64_t dropped_pending_ = 0;  // lost since the last successful write
    int last_errno_ = 0;
    std::atomic<std::uint64_t> dropped_total_{0};
};

class LogPump;  // the reader thread (process_backend.cpp)

class ProcessBackend final : public ModelBackend {
  public:
    // Throws std::invalid_argument if spec has no command.
    ProcessBackend(ModelSpec spec, BackendEnv env);
    // Stops a running child (spec.stop_timeout) and the reader thread.
    ~ProcessBackend() override;
    ProcessBackend(const ProcessBackend&) = delete;
    ProcessBackend& operator=(const ProcessBackend&) = delete;

    void start() override;
    void stop(std::chrono::milliseconds timeout) override;
    BackendStatus status() override;

    // Output lines lost to write failures since construction (all runs).
    std::uint64_t dropped_lines() const;
    std::filesystem::path log_path() const;

  private:
    void finish_pump(std::chrono::milliseconds linger);  // op_mu_ held

    const ModelSpec spec_;
    const BackendEnv env_;
    std::shared_ptr<RotatingLog> log_;

    std::mutex op_mu_;               // serialises start() and stop(); never taken by status()
    std::unique_ptr<LogPump> pump_;  // op_mu_ (and the destructor) only

    mutable std::mutex mu_;                  // guards the fields below; held only briefly
    std::optional<util::Subprocess> child_;  // the running (or unreported exited) child
    std::optional<pid_t> stopping_pid_;      // stop() owns the child meanwhile
    std::string last_detail_ = "not started";
};

}  // namespace mlk::homelab
