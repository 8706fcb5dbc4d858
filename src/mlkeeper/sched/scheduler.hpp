// Decides when each job fires: the next elapse of its schedule plus its randomized delay, and
// systemd's Persistent= catch-up of a run missed while the agent was down. Pure logic over
// times the caller passes in and an injected random source, so tests drive weeks of schedule
// without sleeping. Whether a fired job actually starts (overlap) is the agent's decision.
// Thread safety: not thread safe; the agent's main loop owns it.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mlkeeper/sched/job_spec.hpp"
#include "mlkeeper/sched/schedule.hpp"

namespace mlk::sched {

enum class Trigger {
    kScheduled,  // its time came while the agent ran
    kCatchUp,    // persistent job: an elapse passed while the agent was down
    kManual,     // `schedule run NAME`
};
std::string_view to_string(Trigger t);

struct ScheduledJob {
    JobSpec spec;
    Schedule schedule;
    std::optional<TimePoint> last_trigger;  // from the run log; drives Persistent= catch-up
};

struct Firing {
    std::size_t job = 0;  // index into jobs()
    TimePoint elapse;     // the calendar elapse, before the random delay
    Trigger trigger = Trigger::kScheduled;
};

class Scheduler {
  public:
    // Returns a uniformly random duration in [0, max]; the default uses std::random_device.
    using Random = std::function<std::chrono::microseconds(std::chrono::microseconds max)>;

    Scheduler(std::vector<ScheduledJob> jobs, Random random = {});

    // Plans every job from `now`. A persistent job whose next elapse after its last trigger is
    // already due fires at once (plus its random delay): one catch-up, however many runs were
    // missed. Without a last trigger (first start) nothing is caught up.
    void start(TimePoint now);

    // The jobs whose firing time is <= now, earliest first; each is re-planned strictly after
    // `now` (elapses missed by a late wake-up collapse into this one firing, as systemd does).
    std::vector<Firing> take_due(TimePoint now);

    // When the earliest planned firing is due; nullopt when no job will ever fire again.
    std::optional<TimePoint> next_wake() const;

    struct Plan {
        std::optional<TimePoint> elapse;   // the calendar elapse
        std::optional<TimePoint> fire_at;  // elapse + random delay (or now, for a catch-up)
        Trigger trigger = Trigger::kScheduled;
    };
    const std::vector<ScheduledJob>& jobs() const { return jobs_; }
    const Plan& plan(std::size_t job) const { return plans_.at(job); }

    // Records a start (scheduled, caught up or manual) as the job's last trigger.
    void triggered(std::size_t job, TimePoint when);

  private:
    void plan_after(std::size_t job, TimePoint base);

    std::vector<ScheduledJob> jobs_;
    std::vector<Plan> plans_;
    Random random_;
};

}  // namespace mlk::sched
