// A thread that calls a function now and then every `interval` until stopped; stop() wakes it at
// once, so a long interval never delays the agent's shutdown.
// Thread safety: start/stop/destroy from one thread; `tick` runs on the task's own thread and
// must not throw (a throw ends the process, as for any thread).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace mlk::util {

class PeriodicTask {
  public:
    PeriodicTask(std::chrono::milliseconds interval, std::function<void()> tick);
    ~PeriodicTask();  // stop()
    PeriodicTask(const PeriodicTask&) = delete;
    PeriodicTask& operator=(const PeriodicTask&) = delete;

    // Starts the thread: the first tick runs right away. Call once.
    void start();
    // Waits for a running tick to return, then joins. Idempotent.
    void stop();
    // Runs the next tick now instead of at the end of the interval.
    void poke();

  private:
    void run();

    std::chrono::milliseconds interval_;
    std::function<void()> tick_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;   // mu_
    bool poked_ = false;  // mu_
    std::thread thread_;
};

}  // namespace mlk::util
