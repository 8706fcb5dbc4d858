// Clean stopping for `mlkeeper gpu --watch`: SIGINT and SIGTERM are blocked while a StopSignals
// lives and taken synchronously with sigtimedwait(2) between ticks, so a signal ends the loop
// after the current sample (NVML shut down, files complete) instead of killing the process in the
// middle of a write. Thread safety: blocks the signals for the calling thread only; use it from
// the main thread of a program whose other threads block them too (or that has none).
#pragma once

#include <signal.h>

#include <chrono>

namespace mlk::gpu {

class StopSignals {
  public:
    StopSignals();   // blocks SIGINT and SIGTERM
    ~StopSignals();  // drops a pending one it blocked, then restores the old mask
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    // Waits up to `timeout` for SIGINT/SIGTERM; true (and remembered) when one arrived. A
    // signal that came while the caller was busy is returned at once.
    bool wait(std::chrono::milliseconds timeout);
    bool stop_requested() const { return signal_ != 0; }
    int signal() const { return signal_; }  // the signal that arrived, or 0

  private:
    sigset_t set_{};
    sigset_t old_{};
    int signal_ = 0;
};

}  // namespace mlk::gpu
