#include "mlkeeper/core/state_store.hpp"
#include "mlkeeper/util/host.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace mlk::core {
namespace fs = std::filesystem;

namespace {

// Stamped into the file header by migration 1, so a foreign SQLite file is recognised.
constexpr int64_t kApplicationId = 0x4d4c4b53;  // "MLKS"
constexpr int kBusyTimeoutMs = 5000;

// Schema history. Append only: each entry runs once, in one transaction, and moves
// PRAGMA user_version to its position (1-based). Never edit an entry that has shipped;
// docs/STATE.md describes the result.
constexpr std::array<std::string_view, 4> kMigrations = {
    // 1: run history and a key/value table for later modules.
    R"sql(
CREATE TABLE runs (
    id         INTEGER PRIMARY KEY,
    command    TEXT NOT NULL,
    args       TEXT NOT NULL,
    pid        INTEGER,
    host       TEXT,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    exit_code  INTEGER,
    summary    TEXT
);
CREATE INDEX runs_started_at ON runs (started_at);
CREATE INDEX runs_command_started_at ON runs (command, started_at);
CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT,
    updated_at INTEGER
);
PRAGMA application_id = 1296845651;
)sql",
    // 2: alert state per key, so cooldown, escalation and recovery survive
    // restarts and are shared by concurrent processes.
    R"sql(
CREATE TABLE alerts (
    key         TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    severity    TEXT NOT NULL,
    summary     TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    last_sent   INTEGER,
    suppressed  INTEGER NOT NULL DEFAULT 0,
    occurrences INTEGER NOT NULL DEFAULT 0,
    escalated   INTEGER NOT NULL DEFAULT 0
);
)sql",
    // 3: scheduled job runs of the agent and `schedule run`: what fired, why, how it ended, and
    // the job's process, so a restarted agent can tell an orphaned job from a dead one.
    R"sql(
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    elapse_at   INTEGER,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    outcome     TEXT,
    exit_code   INTEGER,
    signal      INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    pid         INTEGER,
    pid_start   INTEGER,
    agent_pid   INTEGER,
    output_tail TEXT
);
CREATE INDEX job_runs_job_started ON job_runs (job, started_at);
)sql",
    // 4: GPU history in three tiers (raw samples, 1-minute and 10-minute buckets) with the
    // devices they came from, and named counters that several processes increment.
    R"sql(
CREATE TABLE gpu_samples (
    tier         INTEGER NOT NULL,
    gpu          INTEGER NOT NULL,
    t            INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    temp_c_n     INTEGER NOT NULL DEFAULT 0,
    temp_c_sum   REAL,
    temp_c_max   REAL,
    util_n       INTEGER NOT NULL DEFAULT 0,
    util_sum     REAL,
    util_max     REAL,
    mem_used_n   INTEGER NOT NULL DEFAULT 0,
    mem_used_sum INTEGER,
    mem_used_max INTEGER,
    power_w_n    INTEGER NOT NULL DEFAULT 0,
    power_w_sum  REAL,
    power_w_max  REAL,
    PRIMARY KEY (tier, t, gpu)
) WITHOUT ROWID;
CREATE TABLE gpu_devices (
    gpu           INTEGER PRIMARY KEY,
    uuid          TEXT NOT NULL,
    name          TEXT NOT NULL,
    mem_total     INTEGER,
    power_limit_w REAL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE counters (
    name       TEXT NOT NULL,
    labels     TEXT NOT NULL,
    value      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;
-- Delivery failures were kv rows alert.failures.CHANNEL before: carried over, not lost.
INSERT INTO counters (name, labels, value, updated_at)
    SELECT 'alerts_failed', 'channel=' || substr(key, 16), CAST(value AS INTEGER), updated_at
    FROM kv WHERE key LIKE 'alert.failures.%';
DELETE FROM kv WHERE key LIKE 'alert.failures.%';
)sql",
};

// Quotes `s` for a POSIX shell when it holds anything beyond plain path characters, so the
// suggested `mv` command can be pasted as is.
std::string shell_quote(const std::string& s) {
    const bool plain = !s.empty() && s.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_./-+:@%,=") == std::string::npos;
    if (plain) {
        return s;
    }
    std::string out = "'";
    for (const char c : s) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out += c;
        }
    }
    out += "'";
    return out;
}

// The directory holding `file`, spelled so it can be shown to a user ("." for a bare name).
std::string dir_of(const fs::path& file) {
    const fs::path dir = file.parent_path();
    return dir.empty() ? std::string(".") : dir.string();
}

std::string one_line(std::string s) {
    for (char& c : s) {
        if (c == '\n' || c == '\r') {
            c = ' ';
        }
    }
    return s;
}

std::string move_aside_advice(const fs::path& file) {
    const std::string db = file.string();
    std::string cmd = "mv " + shell_quote(db) + " " + shell_quote(db + ".bad");
    // A leftover write-ahead log would be replayed into the fresh database: move it too.
    // An empty one (SQLite leaves it after a failed open) is harmless.
    std::error_code ec;
    const auto wal_size = fs::file_size(db + "-wal", ec);
    if (!ec && wal_size > 0) {
        cmd += " && mv " + shell_quote(db + "-wal") + " " + shell_quote(db + ".bad-wal");
    }
    return "move it aside (" + cmd + ") and mlkeeper will start a new one";
}

std::string reason_of(const SqliteError& e) {
    std::string reason = e.reason();
    // SQLite's "unable to open database file" does not say why; errno does.
    if (e.system_errno() != 0) {
        const std::string sys = std::strerror(e.system_errno());
        if (reason.find(sys) == std::string::npos) {
            reason += ": " + sys;
        }
    }
    return one_line(reason);
}

// Turns a SQLite failure into the one-line message a user can act on.
[[noreturn]] void throw_mapped(const SqliteError& e, const fs::path& file, std::string_view doing) {
    const std::string p = file.string();
    const std::string reason = reason_of(e);
    switch (e.primary_code()) {
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
            throw Error(ExitCode::kFailure, "state database " + p + " is unreadable (" + reason +
                                                "); " + move_aside_advice(file));
        case SQLITE_CANTOPEN:
        case SQLITE_PERM:
        case SQLITE_READONLY:
        case SQLITE_AUTH:
            throw Error(ExitCode::kFailure, "state database " + p +
                                                " cannot be opened for writing (" + reason +
                                                "); check the permissions of " + shell_quote(p) +
                                                " and " + shell_quote(dir_of(file)) +
                                                ", or run mlkeeper as the user that owns them");
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            throw Error(ExitCode::kFailure,
                        "state database " + p + " stayed locked by another process for " +
                            std::to_string(kBusyTimeoutMs / 1000) + " s while " +
                            std::string(doing) + " (" + reason +
                            "); retry, or find the process holding it with: fuser " +
                            shell_quote(p));
        case SQLITE_FULL:
            throw Error(ExitCode::kFailure, "state database " + p + ": disk full while " +
                                                std::string(doing) + " (" + reason +
                                                "); free space on the file system holding it");
        case SQLITE_IOERR:
            throw Error(ExitCode::kFailure, "state database " + p + ": I/O error while " +
                                                std::string(doing) + " (" + reason +
                                                "); check the disk (dmesg) and retry");
        default:
            throw Error(ExitCode::kFailure, "state database " + p + ": failed while " +
                                                std::string(doing) + " (" + reason + ")");
    }
}

// mkdir -p with mode 0755 for the components that are missing.
void make_dirs(const fs::path& dir) {
    if (dir.empty()) {
        return;
    }
    fs::path sofar;
    for (const auto& part : dir) {
        sofar /= part;
        if (::mkdir(sofar.c_str(), 0755) != 0 && errno != EEXIST) {
            const int err = errno;
            throw Error(ExitCode::kFailure, "cannot create state directory " + sofar.string() +
                                                " (" + std::strerror(err) +
                                                "); create it, or run mlkeeper as a user "
                                                "allowed to write there");
        }
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        throw Error(ExitCode::kFailure, "state directory " + dir.string() +
                                            " exists but is not a directory; move it aside or "
                                            "choose another state location");
    }
}

// True when `file` exists, is readable and cannot be an SQLite database (it is not empty
// and lacks the 16-byte magic). Caught here because SQLite, given such a file, may still
// touch a -wal file lying beside it before noticing.
bool lacks_sqlite_magic(const fs::path& file) {
    static constexpr std::string_view kMagic("SQLite format 3\0", 16);
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return false;  // missing, unreadable, a symlink: SQLite reports it
    }
    std::array<char, 16> head{};
    std::size_t got = 0;
    while (got < head.size()) {
        const ssize_t n = ::read(fd, head.data() + got, head.size() - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return got > 0 && std::string_view(head.data(), got) != kMagic;
}

Database open_database(const fs::path& file) {
    make_dirs(file.parent_path());
    if (lacks_sqlite_magic(file)) {
        throw Error(ExitCode::kFailure, "state database " + file.string() +
                                            " is unreadable (file is not a database); " +
                                            move_aside_advice(file));
    }
    try {
        Database db(file, OpenMode::kReadWriteCreate);
        // Until the file is known to be sound, closing must not checkpoint a WAL into it.
        db.set_close_checkpoint(CloseCheckpoint::kSkip);
        return db;
    } catch (const SqliteError& e) {
        throw_mapped(e, file, "opening it");
    }
}

int64_t to_ms(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point from_ms(int64_t ms) {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::milliseconds(ms)));
}

int64_t pragma_int(Database& db, std::string_view pragma) {
    Statement st = db.prepare("PRAGMA " + std::string(pragma));
    return st.step() ? st.column_int64(0) : 0;
}

// Switches to WAL unless the file is already in it. The switch needs an exclusive lock and
// SQLite reports SQLITE_BUSY for it without calling the busy handler, so when several
// processes create the file at once the losers retry here for up to the busy timeout.
void enable_wal(Database& db) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
    while (true) {
        try {
            Statement st = db.prepare("PRAGMA journal_mode");
            if (st.step() && st.column_text(0) == "wal") {
                return;
            }
            st = db.prepare("PRAGMA journal_mode=WAL");
            while (st.step()) {
            }
            return;
        } catch (const SqliteError& e) {
            if (e.primary_code() != SQLITE_BUSY || std::chrono::steady_clock::now() >= deadline) {
                throw;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// Arguments are bytes on Linux and may not be UTF-8; history is informational, so invalid
// sequences become U+FFFD rather than failing the command that is being recorded.
std::string dump(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

fs::path StateStore::default_dir(uid_t euid, const std::optional<std::string>& xdg_state_home,
                                 const std::optional<std::string>& home) {
    if (euid == 0) {
        return "/var/lib/mlkeeper";
    }
    // The XDG spec says relative paths in these variables are invalid and must be ignored.
    if (xdg_state_home && !xdg_state_home->empty() && fs::path(*xdg_state_home).is_absolute()) {
        return fs::path(*xdg_state_home) / "mlkeeper";
    }
    if (home && !home->empty()) {
        return fs::path(*home) / ".local" / "state" / "mlkeeper";
    }
    throw Error(ExitCode::kConfig,
                "cannot choose a state directory: neither XDG_STATE_HOME nor HOME is set and "
                "the user has no home directory; set HOME or XDG_STATE_HOME");
}

fs::path StateStore::default_dir() {
    const auto env = [](const char* name) -> std::optional<std::string> {
        const char* v = std::getenv(name);
        return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
    };
    std::optional<std::string> home = env("HOME");
    if (!home || home->empty()) {
        // Services started without HOME (cron, some units) still have a passwd entry.
        std::array<char, 4096> buf{};
        struct passwd pw {};
        struct passwd* found = nullptr;
        if (::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &found) == 0 &&
            found != nullptr && found->pw_dir != nullptr) {
            home = std::string(found->pw_dir);
        }
    }
    return default_dir(::geteuid(), env("XDG_STATE_HOME"), home);
}

int StateStore::latest_schema_version() {
    return static_cast<int>(kMigrations.size());
}

StateStore::StateStore(const fs::path& db_file, Clock now)
    : path_(db_file), clock_(std::move(now)), db_(open_database(db_file)) {
    const std::string p = path_.string();
    int64_t version = 0;
    try {
        db_.set_busy_timeout(kBusyTimeoutMs);
        // First statement that reads the file: a foreign or damaged file fails here
        // (SQLITE_NOTADB, SQLITE_CORRUPT for a truncated one) before anything is written.
        int64_t tables = 0;
        {
            Statement st = db_.prepare("SELECT count(*) FROM sqlite_master");
            if (st.step()) {
                tables = st.column_int64(0);
            }
        }
        version = pragma_int(db_, "user_version");
        const int64_t app_id = pragma_int(db_, "application_id");
        if (app_id != 0 && app_id != kApplicationId) {
            throw Error(ExitCode::kFailure,
                        "state database " + p + " belongs to another program (application_id " +
                            std::to_string(app_id) + "); " + move_aside_advice(path_));
        }
        if (app_id == 0 && version == 0 && tables > 0) {
            throw Error(ExitCode::kFailure,
                        "state database " + p + " is not an mlkeeper state database (it holds " +
                            std::to_string(tables) + " other tables); " + move_aside_advice(path_));
        }
        if (version > latest_schema_version()) {
            throw Error(ExitCode::kFailure,
                        "state database " + p + " has schema version " + std::to_string(version) +
                            " but this mlkeeper knows up to " +
                            std::to_string(latest_schema_version()) + "; upgrade mlkeeper");
        }
        if (db_.is_read_only()) {
            throw Error(ExitCode::kFailure,
                        "state database " + p +
                            " cannot be opened for writing (opened read-only); check the "
                            "permissions of " +
                            shell_quote(p) + " and " + shell_quote(dir_of(path_)) +
                            ", or run mlkeeper as the user that owns them");
        }
        db_.set_close_checkpoint(CloseCheckpoint::kCheckpoint);
        // WAL lets readers run beside the one writer; on a file system without shared
        // memory support SQLite keeps the rollback journal, which is still correct.
        enable_wal(db_);
        // NORMAL in WAL mode can lose the last commits on power loss but never corrupts.
        db_.exec("PRAGMA synchronous=NORMAL");
        db_.exec("PRAGMA foreign_keys=ON");
    } catch (const SqliteError& e) {
        rethrow(e, "opening it");
    }
    version_ = static_cast<int>(version);
    migrate();
}

void StateStore::migrate() {
    try {
        while (version_ < latest_schema_version()) {
            // IMMEDIATE takes the write lock before reading the version, so when several
            // processes start at once exactly one applies each step and the others see it.
            Transaction tx(db_, TransactionKind::kImmediate);
            const int64_t current = pragma_int(db_, "user_version");
            if (current > latest_schema_version()) {
                throw Error(ExitCode::kFailure,
                            "state database " + path_.string() + " has schema version " +
                                std::to_string(current) + " but this mlkeeper knows up to " +
                                std::to_string(latest_schema_version()) + "; upgrade mlkeeper");
            }
            if (current < latest_schema_version()) {
                const int next = static_cast<int>(current) + 1;
                db_.exec(kMigrations[static_cast<std::size_t>(next - 1)]);
                db_.exec("PRAGMA user_version = " + std::to_string(next));
                tx.commit();
                version_ = next;
            } else {
                version_ = static_cast<int>(current);
            }
        }
    } catch (const SqliteError& e) {
        rethrow(e, "updating its schema");
    }
}

void StateStore::rethrow(const SqliteError& e, std::string_view doing) const {
    if (e.primary_code() == SQLITE_CORRUPT || e.primary_code() == SQLITE_NOTADB) {
        // Damage found after opening: closing must not checkpoint the WAL into the file.
        try {
            db_.set_close_checkpoint(CloseCheckpoint::kSkip);
        } catch (const SqliteError&) {
            // Best effort: the damage report below matters more.
        }
    }
    throw_mapped(e, path_, doing);
}

std::chrono::system_clock::time_point StateStore::now() const {
    return clock_ ? clock_() : std::chrono::system_clock::now();
}

int StateStore::schema_version() const {
    std::lock_guard lock(mutex_);
    return version_;
}

int64_t StateStore::begin_run(std::string_view command, const std::vector<std::string>& args) {
    const std::string args_json = dump(nlohmann::json(args));
    const std::string host = util::host_name();
    const int64_t started = to_ms(now());
    std::lock_guard lock(mutex_);
    try {
        Statement st = db_.prepare(
            "INSERT INTO runs (command, args, pid, host, started_at) VALUES (?, ?, ?, ?, ?)");
        st.bind(1, command).bind(2, args_json).bind(3, static_cast<int64_t>(::getpid()));
        if (host.empty()) {
            st.bind(4, nullptr);
        } else {
            st.bind(4, host);
        }
        st.bind(5, started);
        st.step();
        return db_.last_insert_rowid();
    } catch (const SqliteError& e) {
        rethrow(e, "recording the start of '" + std::string(command) + "'");
    }
}

void StateStore::end_run(int64_t id, int exit_code, const nlohmann::json& summary) {
    if (!summary.is_null() && !summary.is_object()) {
        throw std::invalid_argument("StateStore::end_run: summary must be a JSON object or null");
    }
    const int64_t ended = to_ms(now());
    std::lock_guard lock(mutex_);
    try {
        Statement st =
            db_.prepare("UPDATE runs SET ended_at = ?, exit_code = ?, summary = ? WHERE id = ?");
        st.bind(1, ended).bind(2, exit_code);
        if (summary.is_null()) {
            st.bind(3, nullptr);
        } else {
            st.bind(3, dump(summary));
        }
        st.bind(4, id);
        st.step();
        if (db_.changes() != 1) {
            throw Error(ExitCode::kFailure, "state database " + path_.string() + " has no run " +
                                                std::to_string(id) + " to mark as ended");
        }
    } catch (const SqliteError& e) {
        rethrow(e, "recording the end of run " + std::to_string(id));
    }
}

std::vector<RunRecord> StateStore::recent_runs(std::size_t limit,
                                               std::optional<std::string_view> command) const {
    std::vector<RunRecord> out;
    if (limit == 0) {
        return out;
    }
    const auto sql_limit = static_cast<int64_t>(std::min<std::size_t>(
        limit, static_cast<std::size_t>(std::numeric_limits<int64_t>::max())));
    std::lock_guard lock(mutex_);
    try {
        std::string sql =
            "SELECT id, command, args, pid, host, started_at, ended_at, exit_code, summary "
            "FROM runs ";
        if (command) {
            sql += "WHERE command = ? ";
        }
        sql += "ORDER BY started_at DESC, id DESC LIMIT ?";
        Statement st = db_.prepare(sql);
        int idx = 1;
        if (command) {
            st.bind(idx++, *command);
        }
        st.bind(idx, sql_limit);
        while (st.step()) {
            RunRecord r;
            r.id = st.column_int64(0);
            r.command = st.column_text(1);
            const auto args = nlohmann::json::parse(st.column_text(2), nullptr, false);
            bool args_ok = args.is_array();
            if (args_ok) {
                for (const auto& a : args) {
                    if (!a.is_string()) {
                        args_ok = false;
                        break;
                    }
                    r.args.push_back(a.get<std::string>());
                }
            }
            if (!args_ok) {
                throw Error(ExitCode::kFailure,
                            "state database " + path_.string() + ": run " + std::to_string(r.id) +
                                " has malformed args (not a JSON array of strings); delete "
                                "that row or move the database aside");
            }
            r.pid = st.column_int64(3);
            r.host = st.column_text(4);
            r.started_at = from_ms(st.column_int64(5));
            if (!st.column_is_null(6)) {
                r.ended_at = from_ms(st.column_int64(6));
            }
            if (!st.column_is_null(7)) {
                r.exit_code = static_cast<int>(st.column_int64(7));
            }
            if (!st.column_is_null(8)) {
                r.summary = nlohmann::json::parse(st.column_text(8), nullptr, false);
                if (r.summary.is_discarded()) {
                    throw Error(ExitCode::kFailure,
                                "state database " + path_.string() + ": run " +
                                    std::to_string(r.id) +
                                    " has a malformed summary (not JSON); delete that row or "
                                    "move the database aside");
                }
            }
            out.push_back(std::move(r));
        }
    } catch (const SqliteError& e) {
        rethrow(e, "reading the run history");
    }
    return out;
}

std::optional<std::string> StateStore::kv_get(std::string_view key) const {
    std::lock_guard lock(mutex_);
    try {
        Statement st = db_.prepare("SELECT value FROM kv WHERE key = ?");
        st.bind(1, key);
        if (!st.step() || st.column_is_null(0)) {
            return std::nullopt;
        }
        return st.column_text(0);
    } catch (const SqliteError& e) {
        rethrow(e, "reading key '" + std::string(key) + "'");
    }
}

void StateStore::kv_set(std::string_view key, std::string_view value) {
    const int64_t updated = to_ms(now());
    std::lock_guard lock(mutex_);
    try {
        Statement st = db_.prepare(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at");
        st.bind(1, key).bind(2, value).bind(3, updated);
        st.step();
    } catch (const SqliteError& e) {
        rethrow(e, "writing key '" + std::string(key) + "'");
    }
}

void StateStore::counter_add(std::string_view name, std::string_view labels, int64_t delta) {
    if (name.empty()) {
        throw std::invalid_argument("StateStore::counter_add: empty counter name");
    }
    if (delta < 0) {
        throw std::invalid_argument("StateStore::counter_add: counter '" + std::string(name) +
                                    "' is monotonic, delta " + std::to_string(delta) + " < 0");
    }
    const int64_t updated = to_ms(now());
    std::lock_guard lock(mutex_);
    try {
        // One statement is atomic on its own; SQLite's `+` would turn an overflowing sum into
        // a REAL, so the value saturates instead.
        Statement st = db_.prepare(
            "INSERT INTO counters (name, labels, value, updated_at) VALUES (?1, ?2, ?3, ?4) "
            "ON CONFLICT (name, labels) DO UPDATE SET "
            "value = CASE WHEN value > 9223372036854775807 - excluded.value "
            "THEN 9223372036854775807 ELSE value + excluded.value END, "
            "updated_at = excluded.updated_at");
        st.bind(1, name).bind(2, labels).bind(3, delta).bind(4, updated);
        st.step();
    } catch (const SqliteError& e) {
        rethrow(e, "adding to counter '" + std::string(name) + "'");
    }
}

std::vector<CounterValue> StateStore::counters(std::string_view name) const {
    std::vector<CounterValue> out;
    std::lock_guard lock(mutex_);
    try {
        Statement st =
            db_.prepare("SELECT labels, value FROM counters WHERE name = ? ORDER BY labels");
        st.bind(1, name);
        while (st.step()) {
            out.push_back(CounterValue{st.column_text(0), st.column_int64(1)});
        }
    } catch (const SqliteError& e) {
        rethrow(e, "reading counter '" + std::string(name) + "'");
    }
    return out;
}

IntegrityReport StateStore::check_integrity() const {
    IntegrityReport report;
    std::lock_guard lock(mutex_);
    try {
        Statement st = db_.prepare("PRAGMA quick_check");
        while (st.step()) {
            std::string row = one_line(st.column_text(0));
            if (row != "ok") {
                report.problems.push_back(std::move(row));
            }
        }
    } catch (const SqliteError& e) {
        const int code = e.primary_code();
        if (code != SQLITE_CORRUPT && code != SQLITE_NOTADB) {
            rethrow(e, "checking its integrity");
        }
        report.problems.push_back(reason_of(e));
    }
    return report;
}

}  // namespace mlk::core
