// The persistent state of mlkeeper (run history, small key/value settings, counters) in one
// SQLite file, with versioned migrations; docs/STATE.md documents the schema.
// Thread safety: a StateStore may be shared by threads (calls, with_db() included, are
// serialized by a mutex), except through db(). Several processes may open the same file at once
// (WAL mode).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlkeeper/core/sqlite_db.hpp"

namespace mlk::core {

// One row of the `runs` table: a command mlkeeper ran, and how it ended.
struct RunRecord {
    int64_t id = 0;
    std::string command;
    std::vector<std::string> args;
    int64_t pid = 0;
    std::string host;
    std::chrono::system_clock::time_point started_at;
    std::optional<std::chrono::system_clock::time_point> ended_at;  // nullopt: still running,
    std::optional<int> exit_code;                                   // or the process died
    nlohmann::json summary;                                         // null if none
};

// One row of the `counters` table for a given counter name.
struct CounterValue {
    std::string labels;  // the caller's canonical label string, e.g. "channel=email"
    int64_t value = 0;
};

// What a `PRAGMA quick_check` found; `problems` is empty when the file is sound.
struct IntegrityReport {
    std::vector<std::string> problems;
    bool ok() const { return problems.empty(); }
};

class StateStore {
  public:
    using Clock = std::function<std::chrono::system_clock::time_point()>;

    // Where the state lives by default: /var/lib/mlkeeper for root, else
    // $XDG_STATE_HOME/mlkeeper, else $HOME/.local/state/mlkeeper.
    static std::filesystem::path default_dir();
    // The same rule on explicit inputs (an unset variable is nullopt), for tests.
    // Throws mlk::Error when no directory can be derived.
    static std::filesystem::path default_dir(uid_t euid,
                                             const std::optional<std::string>& xdg_state_home,
                                             const std::optional<std::string>& home);
    static constexpr const char* kFileName = "state.db";

    // Opens (creating it and its directory if missing) and migrates the database. Throws
    // mlk::Error with one line naming the file, the reason and what to do when the file is
    // corrupt, unreadable, busy or from a newer mlkeeper. Never modifies a file it cannot read.
    //
    // Open one StateStore per file per process and share it: opening reads the file header
    // with open()/close(), and a close() drops every POSIX lock the process holds on the file,
    // including the locks an already open StateStore's SQLite connection relies on (another
    // process could then reset the WAL under it and its later writes would be lost).
    explicit StateStore(const std::filesystem::path& db_file, Clock now = {});

    StateStore(const StateStore&) = delete;
    StateStore& operator=(const StateStore&) = delete;

    // Records that `command` started in this process (pid, host name, now); returns its id.
    int64_t begin_run(std::string_view command, const std::vector<std::string>& args);
    // Records how run `id` ended. `summary` must be a JSON object or null.
    void end_run(int64_t id, int exit_code, const nlohmann::json& summary);
    // Newest first (by start time, then id); at most `limit` rows, only `command` if given.
    std::vector<RunRecord> recent_runs(
        std::size_t limit, std::optional<std::string_view> command = std::nullopt) const;

    std::optional<std::string> kv_get(std::string_view key) const;
    void kv_set(std::string_view key, std::string_view value);

    // Adds `delta` (>= 0; std::invalid_argument otherwise, or for an empty name) to the counter
    // (name, labels), creating it at `delta`. One UPSERT statement, so concurrent processes and
    // threads lose no increment. The value saturates at INT64_MAX instead of overflowing.
    void counter_add(std::string_view name, std::string_view labels, int64_t delta);
    // Every label set of counter `name`, sorted by labels (bytewise); empty if none.
    std::vector<CounterValue> counters(std::string_view name) const;

    // Reads every page (about 1 ms per MB), so it is not run on open; for doctor/health.
    IntegrityReport check_integrity() const;

    int schema_version() const;
    static int latest_schema_version();
    const std::filesystem::path& path() const { return path_; }

    // Runs f(Database&) while holding the store's mutex, so a module with tables of its own can
    // share the store with other threads; returns what f returns. An SqliteError thrown by f
    // becomes the same one-line mlk::Error as the store's own calls, `doing` saying what was
    // tried ("recording GPU samples"). f must not call other methods of this store (the mutex
    // is not recursive); keep it short, since every other call of the store waits for it.
    template <class F>
    decltype(auto) with_db(std::string_view doing, F&& f) {
        std::lock_guard lock(mutex_);
        try {
            return std::forward<F>(f)(db_);
        } catch (const SqliteError& e) {
            rethrow(e, doing);
        }
    }

    // Raw access for later modules. Not guarded by the store's mutex: the caller must not
    // use it while other threads use this store (with_db() is the guarded way).
    Database& db() { return db_; }

  private:
    void migrate();
    [[noreturn]] void rethrow(const SqliteError& e, std::string_view doing) const;
    std::chrono::system_clock::time_point now() const;

    std::filesystem::path path_;
    Clock clock_;
    mutable Database db_;  // mutable: reading still needs a non-const SQLite handle
    int version_ = 0;
    mutable std::mutex mutex_;
};

}  // namespace mlk::core
