#include "mlkeeper/homelab/activity.hpp"

#include <algorithm>
#include <exception>
#include <limits>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::homelab {
namespace {

using namespace std::chrono_literals;

constexpr std::array<std::string_view, kStatusClasses> kStatusNames = {"2xx", "3xx", "4xx", "5xx",
                                                                       "none"};

std::int64_t minute_of(SysTime t) {
    return std::chrono::floor<std::chrono::minutes>(t.time_since_epoch()).count();
}

std::size_t latency_bucket(std::chrono::microseconds latency) {
    const auto ms_ceil = (latency.count() + 999) / 1000;  // a bound is inclusive
    for (std::size_t i = 0; i < kLatencyBoundsMs.size(); ++i) {
        if (ms_ceil <= kLatencyBoundsMs[i]) {
            return i;
        }
    }
    return kLatencyBoundsMs.size();
}

// A saved count: a non-negative integer, else the value is corrupt.
std::uint64_t count_from(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end()) {
        return 0;
    }
    if (!it->is_number_unsigned()) {
        throw std::invalid_argument(std::string(key) + " is not a non-negative integer");
    }
    return it->get<std::uint64_t>();
}

}  // namespace

std::string_view to_string(StatusClass c) {
    return kStatusNames[static_cast<std::size_t>(c)];
}

StatusClass status_class(int status) {
    if (status >= 200 && status <= 599) {
        return static_cast<StatusClass>(status / 100 - 2);
    }
    return StatusClass::kNone;
}

ActivityTracker::ActivityTracker(const std::vector<std::string>& names, Clock now)
    : now_(std::move(now)) {
    for (const auto& n : names) {
        if (entries_.count(n) != 0) {
            continue;
        }
        auto e = std::make_unique<Entry>();
        e->name = n;
        e->counters.name = n;
        entries_.emplace(n, std::move(e));
    }
}

ActivityTracker::Entry* ActivityTracker::find(std::string_view model) const {
    const auto it = entries_.find(model);
    return it == entries_.end() ? nullptr : it->second.get();
}

void ActivityTracker::request_started(std::string_view model) {
    if (Entry* e = find(model)) {
        e->in_flight.fetch_add(1, std::memory_order_relaxed);
    }
}

void ActivityTracker::request_finished(const RequestEvent& event) {
    Entry* e = find(event.model);
    if (e == nullptr) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // A finish without a start (a caller's bug) must not leave the count negative, which would
    // hide a later real request from the idle reaper.
    auto cur = e->in_flight.load(std::memory_order_relaxed);
    while (cur > 0 &&
           !e->in_flight.compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) {
    }
    record(*e, event);
}

void ActivityTracker::request_seen(const RequestEvent& event) {
    Entry* e = find(event.model);
    if (e == nullptr) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    record(*e, event);
}

void ActivityTracker::record(Entry& e, const RequestEvent& event) {
    const SysTime at = event.at == SysTime{} ? now_() : event.at;
    const auto minute = minute_of(at);
    const auto latency = std::max(event.latency, std::chrono::microseconds(0));
    const auto sc = static_cast<std::size_t>(status_class(event.status));
    const auto lb = latency_bucket(latency);

    std::lock_guard lk(e.mu);
    auto& c = e.counters;
    ++c.requests;
    ++c.by_status[sc];
    c.bytes_in += event.bytes_in;
    c.bytes_out += event.bytes_out;
    c.latency_sum += latency;
    ++c.latency_buckets[lb];
    // Log lines may arrive out of order (or late, after a restart): keep the newest.
    if (!c.last_request || *c.last_request < at) {
        c.last_request = at;
    }
    if (minute >= 0) {
        auto& slot = e.minutes[static_cast<std::size_t>(minute) % kMinutes];
        if (slot.minute < minute) {
            slot = Minute{minute, 0};
        }
        // An older minute than the slot holds is more than 24 h older than the newest request:
        // counted above, not in any window.
        if (slot.minute == minute && slot.count < std::numeric_limits<std::uint32_t>::max()) {
            ++slot.count;
        }
    }
}

std::uint64_t ActivityTracker::count_window(const Entry& e, std::int64_t first_minute,
                                            std::int64_t last_minute) {
    std::uint64_t n = 0;
    for (auto m = std::max<std::int64_t>(first_minute, 0); m <= last_minute; ++m) {
        const auto& slot = e.minutes[static_cast<std::size_t>(m) % kMinutes];
        if (slot.minute == m) {
            n += slot.count;
        }
    }
    return n;
}

std::vector<std::string> ActivityTracker::names() const {
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& [name, e] : entries_) {
        out.push_back(name);
    }
    return out;
}

bool ActivityTracker::knows(std::string_view model) const {
    return find(model) != nullptr;
}

std::optional<ModelActivity> ActivityTracker::get(std::string_view model) const {
    const Entry* e = find(model);
    if (e == nullptr) {
        return std::nullopt;
    }
    ModelActivity out;
    {
        std::lock_guard lk(e->mu);
        out = e->counters;
    }
    out.in_flight = e->in_flight.load(std::memory_order_relaxed);
    return out;
}

std::vector<ModelActivity> ActivityTracker::all() const {
    std::vector<ModelActivity> out;
    out.reserve(entries_.size());
    for (const auto& [name, e] : entries_) {
        out.push_back(*get(name));
    }
    return out;
}

std::vector<ActiveModel> ActivityTracker::active(std::chrono::seconds window) const {
    window = std::clamp<std::chrono::seconds>(window, 0s, kActivityHistory);
    const SysTime now = now_();
    const SysTime since = now - window;
    const auto last_minute = minute_of(now);
    // The minute that holds `since` overlaps the window unless `since` is its very end.
    const auto first_minute = minute_of(since);
    std::vector<ActiveModel> out;
    for (const auto& [name, e] : entries_) {
        ActiveModel a;
        a.name = name;
        a.in_flight = e->in_flight.load(std::memory_order_relaxed);
        {
            std::lock_guard lk(e->mu);
            a.last_request = e->counters.last_request;
            if (a.last_request && *a.last_request > since) {
                // A request stamped ahead of our clock still counts; the loop stays bounded.
                const auto last = std::min(std::max(last_minute, minute_of(*a.last_request)),
                                           first_minute + static_cast<std::int64_t>(kMinutes));
                a.requests = std::max<std::uint64_t>(count_window(*e, first_minute, last), 1);
            }
        }
        if (a.requests > 0 || a.in_flight > 0) {
            out.push_back(std::move(a));
        }
    }
    return out;
}

std::optional<SysTime> ActivityTracker::last_request(std::string_view model) const {
    const Entry* e = find(model);
    if (e == nullptr) {
        return std::nullopt;
    }
    std::lock_guard lk(e->mu);
    return e->counters.last_request;
}

std::int64_t ActivityTracker::in_flight(std::string_view model) const {
    const Entry* e = find(model);
    return e == nullptr ? 0 : e->in_flight.load(std::memory_order_relaxed);
}

void ActivityTracker::save(core::StateStore& store) const {
    nlohmann::json models = nlohmann::json::object();
    for (const auto& [name, e] : entries_) {
        nlohmann::json m;
        std::lock_guard lk(e->mu);
        const auto& c = e->counters;
        m["requests"] = c.requests;
        nlohmann::json st = nlohmann::json::object();
        for (std::size_t i = 0; i < kStatusClasses; ++i) {
            st[std::string(kStatusNames[i])] = c.by_status[i];
        }
        m["status"] = std::move(st);
        m["bytes_in"] = c.bytes_in;
        m["bytes_out"] = c.bytes_out;
        m["latency_sum_us"] = static_cast<std::uint64_t>(c.latency_sum.count());
        m["latency_buckets"] = c.latency_buckets;
        m["last_request_ms"] =
            c.last_request ? nlohmann::json(util::to_unix_ms(*c.last_request)) : nlohmann::json();
        // Only the minutes within 24 h of the newest one can still answer a window.
        nlohmann::json minutes = nlohmann::json::array();
        if (c.last_request) {
            const auto newest = minute_of(*c.last_request);
            std::vector<Minute> kept;
            for (const auto& slot : e->minutes) {
                if (slot.count > 0 && slot.minute > newest - static_cast<std::int64_t>(kMinutes)) {
                    kept.push_back(slot);
                }
            }
            std::sort(kept.begin(), kept.end(),
                      [](const Minute& a, const Minute& b) { return a.minute < b.minute; });
            for (const auto& slot : kept) {
                minutes.push_back({slot.minute, slot.count});
            }
        }
        m["minutes"] = std::move(minutes);
        models[name] = std::move(m);
    }
    const nlohmann::json doc = {{"version", kActivityStateVersion},
                                {"saved_at_ms", util::to_unix_ms(now_())},
                                {"models", std::move(models)}};
    store.kv_set(kActivityStateKey, doc.dump());
}

bool ActivityTracker::load(const core::StateStore& store) {
    std::optional<std::string> text;
    try {
        text = store.kv_get(kActivityStateKey);
    } catch (const std::exception& ex) {
        spdlog::error("activity: cannot read the saved counters ({}); starting from zero",
                      ex.what());
        return false;
    }
    if (!text) {
        return true;
    }
    // Parse and check everything first, so a value corrupt half-way changes nothing.
    struct Loaded {
        Entry* entry;
        ModelActivity counters;
        std::vector<Minute> minutes;
    };
    std::vector<Loaded> loaded;
    try {
        const auto doc = nlohmann::json::parse(*text);
        if (!doc.is_object() || !doc.contains("version") || !doc["version"].is_number_integer()) {
            throw std::invalid_argument("no integer \"version\"");
        }
        if (doc["version"].get<std::int64_t>() != kActivityStateVersion) {
            throw std::invalid_argument("version " + doc["version"].dump() +
                                        " is not one this mlkeeper reads (" +
                                        std::to_string(kActivityStateVersion) + ")");
        }
        const auto& models = doc.at("models");
        if (!models.is_object()) {
            throw std::invalid_argument("\"models\" is not an object");
        }
        for (const auto& [name, m] : models.items()) {
            Entry* e = find(name);
            if (e == nullptr) {
                continue;  // no longer registered
            }
            if (!m.is_object()) {
                throw std::invalid_argument("model entry is not an object");
            }
            Loaded l{e, {}, {}};
            auto& c = l.counters;
            c.name = name;
            c.requests = count_from(m, "requests");
            if (const auto st = m.find("status"); st != m.end()) {
                if (!st->is_object()) {
                    throw std::invalid_argument("status is not an object");
                }
                for (std::size_t i = 0; i < kStatusClasses; ++i) {
                    c.by_status[i] = count_from(*st, std::string(kStatusNames[i]).c_str());
                }
            }
            c.bytes_in = count_from(m, "bytes_in");
            c.bytes_out = count_from(m, "bytes_out");
            const auto lat = count_from(m, "latency_sum_us");
            if (lat > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                throw std::invalid_argument("latency_sum_us out of range");
            }
            c.latency_sum = std::chrono::microseconds(static_cast<std::int64_t>(lat));
            if (const auto lb = m.find("latency_buckets"); lb != m.end()) {
                if (!lb->is_array() || lb->size() != kLatencyBuckets) {
                    throw std::invalid_argument("latency_buckets is not an array of " +
                                                std::to_string(kLatencyBuckets));
                }
                for (std::size_t i = 0; i < kLatencyBuckets; ++i) {
                    if (!(*lb)[i].is_number_unsigned()) {
                        throw std::invalid_argument("a latency bucket is not a count");
                    }
                    c.latency_buckets[i] = (*lb)[i].get<std::uint64_t>();
                }
            }
            if (const auto lr = m.find("last_request_ms"); lr != m.end() && !lr->is_null()) {
                if (!lr->is_number_integer()) {
                    throw std::invalid_argument("last_request_ms is not an integer");
                }
                c.last_request = util::from_unix_ms(lr->get<std::int64_t>());
            }
            if (const auto mins = m.find("minutes"); mins != m.end()) {
                if (!mins->is_array()) {
                    throw std::invalid_argument("minutes is not an array");
                }
                for (const auto& pair : *mins) {
                    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_integer() ||
                        !pair[1].is_number_unsigned() || pair[0].get<std::int64_t>() < 0 ||
                        pair[1].get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max()) {
                        throw std::invalid_argument("a minute is not [minute, count]");
                    }
                    l.minutes.push_back(
                        Minute{pair[0].get<std::int64_t>(),
                               static_cast<std::uint32_t>(pair[1].get<std::uint64_t>())});
                }
            }
            loaded.push_back(std::move(l));
        }
    } catch (const std::exception& ex) {
        spdlog::warn(
            "activity: ignoring the saved counters in state key {} ({}); starting from zero",
            kActivityStateKey, ex.what());
        return false;
    }
    for (auto& l : loaded) {
        std::lock_guard lk(l.entry->mu);
        l.entry->counters = std::move(l.counters);
        l.entry->minutes.fill(Minute{});
        for (const auto& m : l.minutes) {
            auto& slot = l.entry->minutes[static_cast<std::size_t>(m.minute) % kMinutes];
            if (slot.minute <= m.minute) {
                slot = m;
            }
        }
    }
    return true;
}

ActivityAutosave::ActivityAutosave(std::function<void()> save, std::chrono::milliseconds interval)
    : save_(std::move(save)), interval_(std::max(interval, std::chrono::milliseconds(1))) {
    thread_ = std::thread([this] {
        std::unique_lock lk(mu_);
        while (!cv_.wait_for(lk, interval_, [this] { return stop_; })) {
            lk.unlock();
            run_save();
            lk.lock();
        }
    });
}

ActivityAutosave::~ActivityAutosave() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    run_save();
}

void ActivityAutosave::run_save() noexcept {
    try {
        save_();
    } catch (const std::exception& ex) {
        spdlog::error("activity: cannot save the counters: {}", ex.what());
    }
}

}  // namespace mlk::homelab
