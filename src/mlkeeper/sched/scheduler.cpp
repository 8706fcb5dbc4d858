#include "mlkeeper/sched/scheduler.hpp"

#include <algorithm>
#include <random>

namespace mlk::sched {

std::string_view to_string(Trigger t) {
    switch (t) {
        case Trigger::kScheduled:
            return "scheduled";
        case Trigger::kCatchUp:
            return "catch-up";
        case Trigger::kManual:
            return "manual";
    }
    return "?";
}

namespace {

std::chrono::microseconds system_random(std::chrono::microseconds max) {
    if (max.count() <= 0) {
        return std::chrono::microseconds{0};
    }
    thread_local std::mt19937_64 gen{std::random_device{}()};
    std::uniform_int_distribution<std::chrono::microseconds::rep> dist(0, max.count());
    return std::chrono::microseconds{dist(gen)};
}

}  // namespace

Scheduler::Scheduler(std::vector<ScheduledJob> jobs, Random random)
    : jobs_(std::move(jobs)), plans_(jobs_.size()), random_(std::move(random)) {
    if (!random_) {
        random_ = system_random;
    }
}

void Scheduler::plan_after(std::size_t job, TimePoint base) {
    Plan& p = plans_[job];
    p.trigger = Trigger::kScheduled;
    p.elapse = jobs_[job].schedule.next_after(base);
    p.fire_at.reset();
    if (p.elapse) {
        const auto delay =
            std::chrono::duration_cast<std::chrono::microseconds>(jobs_[job].spec.randomized_delay);
        p.fire_at = *p.elapse + random_(delay);
    }
}

void Scheduler::start(TimePoint now) {
    for (std::size_t i = 0; i < jobs_.size(); ++i) {
        const auto& job = jobs_[i];
        if (job.spec.persistent && job.last_trigger && *job.last_trigger < now) {
            const auto missed = job.schedule.next_after(*job.last_trigger);
            if (missed && *missed <= now) {
                Plan& p = plans_[i];
                p.elapse = missed;
                p.trigger = Trigger::kCatchUp;
                const auto delay = std::chrono::duration_cast<std::chrono::microseconds>(
                    job.spec.randomized_delay);
                p.fire_at = now + random_(delay);
                continue;
            }
        }
        plan_after(i, now);
    }
}

std::vector<Firing> Scheduler::take_due(TimePoint now) {
    std::vector<std::pair<TimePoint, Firing>> due;
    for (std::size_t i = 0; i < jobs_.size(); ++i) {
        const Plan& p = plans_[i];
        if (p.fire_at && *p.fire_at <= now) {
            due.push_back({*p.fire_at, Firing{i, *p.elapse, p.trigger}});
            plan_after(i, now);
        }
    }
    std::stable_sort(due.begin(), due.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Firing> out;
    out.reserve(due.size());
    for (auto& d : due) {
        out.push_back(d.second);
    }
    return out;
}

std::optional<TimePoint> Scheduler::next_wake() const {
    std::optional<TimePoint> best;
    for (const auto& p : plans_) {
        if (p.fire_at && (!best || *p.fire_at < *best)) {
            best = p.fire_at;
        }
    }
    return best;
}

void Scheduler::triggered(std::size_t job, TimePoint when) {
    jobs_.at(job).last_trigger = when;
}

}  // namespace mlk::sched
