#include "mlkeeper/core/state_store.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mlkeeper/core/error.hpp"
#include "mlkeeper/core/sqlite_db.hpp"

namespace mlk::core {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::system_clock;

// A private directory under the test temp dir, removed (with its permissions restored
// first, since some tests lock it down) when the test ends.
using mlk::testing::TempDir;

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const std::string& data) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string host_name() {
    std::array<char, HOST_NAME_MAX + 1> buf{};
    ::gethostname(buf.data(), buf.size() - 1);
    return buf.data();
}

// Runs SQL on `file` with a plain connection, bypassing StateStore.
std::string raw_query(const fs::path& file, const std::string& sql) {
    Database db(file, OpenMode::kReadWriteCreate);
    Statement st = db.prepare(sql);
    return st.step() ? st.column_text(0) : std::string();
}

// Expects constructing a StateStore on `file` to throw mlk::Error; returns its message.
std::string open_error(const fs::path& file) {
    try {
        StateStore store(file);
    } catch (const SqliteError& e) {
        ADD_FAILURE() << "raw SqliteError escaped: " << e.what();
        return e.what();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::kFailure);
        return e.what();
    }
    ADD_FAILURE() << "StateStore(" << file << ") did not throw";
    return {};
}

// ---- SQLite wrapper -------------------------------------------------------------------

TEST(SqliteDb, BindStepAndColumns) {
    TempDir dir;
    Database db(dir.path() / "t.db", OpenMode::kReadWriteCreate);
    db.exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, n TEXT)");
    Statement ins = db.prepare("INSERT INTO t VALUES (?, ?, ?, ?)");
    const std::string with_nul("a\0b", 3);
    ins.bind(1, int64_t{1} << 40).bind(2, 2.5).bind(3, with_nul).bind(4, nullptr);
    EXPECT_FALSE(ins.step());
    EXPECT_EQ(db.last_insert_rowid(), 1);
    EXPECT_EQ(db.changes(), 1);
    ins.reset();
    ins.bind(1, 7).bind(2, 0.0).bind(3, "").bind(4, "x");
    EXPECT_FALSE(ins.step());

    Statement sel = db.prepare("SELECT i, d, s, n FROM t ORDER BY rowid");
    ASSERT_TRUE(sel.step());
    EXPECT_EQ(sel.column_count(), 4);
    EXPECT_EQ(sel.column_int64(0), int64_t{1} << 40);
    EXPECT_DOUBLE_EQ(sel.column_double(1), 2.5);
    EXPECT_EQ(sel.column_text(2), with_nul);
    EXPECT_TRUE(sel.column_is_null(3));
    EXPECT_EQ(sel.column_text(3), "");
    ASSERT_TRUE(sel.step());
    EXPECT_EQ(sel.column_int64(0), 7);
    EXPECT_FALSE(sel.column_is_null(2));  // an empty string is not NULL
    EXPECT_EQ(sel.column_text(2), "");
    EXPECT_FALSE(sel.step());
}

TEST(SqliteDb, ErrorsCarryCodeAndReason) {
    TempDir dir;
    Database db(dir.path() / "t.db", OpenMode::kReadWriteCreate);
    try {
        db.exec("SELEKT 1");
        FAIL() << "bad SQL did not throw";
    } catch (const SqliteError& e) {
        EXPECT_EQ(e.primary_code(), SQLITE_ERROR);
        EXPECT_NE(e.reason().find("syntax error"), std::string::npos) << e.reason();
        EXPECT_NE(std::string(e.what()).find("t.db"), std::string::npos) << e.what();
    }
    EXPECT_THROW(db.prepare("SELECT * FROM missing"), SqliteError);
    db.exec("CREATE TABLE u (x INTEGER NOT NULL)");
    Statement st = db.prepare("INSERT INTO u VALUES (?)");
    st.bind(1, nullptr);
    try {
        st.step();
        FAIL() << "constraint violation did not throw";
    } catch (const SqliteError& e) {
        EXPECT_EQ(e.primary_code(), SQLITE_CONSTRAINT);
        EXPECT_EQ(e.extended_code(), SQLITE_CONSTRAINT_NOTNULL);
    }
    // prepare() takes exactly one statement: a second one would be silently dropped.
    EXPECT_THROW(db.prepare("SELECT 1; SELECT 2"), std::invalid_argument);
    EXPECT_THROW(db.prepare("  "), std::invalid_argument);
    EXPECT_NO_THROW(db.prepare("SELECT 1;  "));
}

TEST(SqliteDb, OpenMissingFileWithoutCreateFails) {
    TempDir dir;
    try {
        Database db(dir.path() / "nope.db", OpenMode::kReadWrite);
        FAIL() << "opened a missing file";
    } catch (const SqliteError& e) {
        EXPECT_EQ(e.primary_code(), SQLITE_CANTOPEN);
        EXPECT_EQ(e.system_errno(), ENOENT);
    }
    EXPECT_FALSE(fs::exists(dir.path() / "nope.db"));
}

TEST(SqliteDb, TransactionRollsBackUnlessCommitted) {
    TempDir dir;
    Database db(dir.path() / "t.db", OpenMode::kReadWriteCreate);
    db.exec("CREATE TABLE t (x INTEGER)");
    {
        Transaction tx(db);
        db.exec("INSERT INTO t VALUES (1)");
    }
    {
        Transaction tx(db, TransactionKind::kDeferred);
        db.exec("INSERT INTO t VALUES (2)");
        tx.commit();
    }
    try {
        Transaction tx(db, TransactionKind::kExclusive);
        db.exec("INSERT INTO t VALUES (3)");
        throw std::runtime_error("boom");
    } catch (const std::runtime_error&) {
    }
    Statement st = db.prepare("SELECT group_concat(x) FROM t");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.column_text(0), "2");
    EXPECT_NO_THROW(db.exec("BEGIN; COMMIT"));  // no transaction left open
}

TEST(SqliteDb, BusyWhenAnotherConnectionHoldsTheWriteLock) {
    TempDir dir;
    const fs::path file = dir.path() / "t.db";
    Database a(file, OpenMode::kReadWriteCreate);
    a.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER)");
    Database b(file, OpenMode::kReadWrite);
    b.set_busy_timeout(50);
    Transaction hold(a);
    const auto start = std::chrono::steady_clock::now();
    try {
        Transaction tx(b);
        FAIL() << "second writer got the lock";
    } catch (const SqliteError& e) {
        EXPECT_EQ(e.primary_code(), SQLITE_BUSY);
    }
    EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(40));  // it did wait
    hold.commit();
    EXPECT_NO_THROW(Transaction(b).commit());
}

TEST(SqliteDb, MoveKeepsOneOwner) {
    TempDir dir;
    Database a(dir.path() / "t.db", OpenMode::kReadWriteCreate);
    Database b = std::move(a);
    EXPECT_EQ(a.handle(), nullptr);
    Statement s1 = b.prepare("SELECT 42");
    Statement s2 = std::move(s1);
    ASSERT_TRUE(s2.step());
    EXPECT_EQ(s2.column_int64(0), 42);
}

// ---- default directory ----------------------------------------------------------------

TEST(StateStoreDefaultDir, FollowsRootXdgHomeOrder) {
    EXPECT_EQ(StateStore::default_dir(0, "/x", "/home/u"), fs::path("/var/lib/mlkeeper"));
    EXPECT_EQ(StateStore::default_dir(1000, "/x/state", "/home/u"), fs::path("/x/state/mlkeeper"));
    EXPECT_EQ(StateStore::default_dir(1000, std::nullopt, "/home/u"),
              fs::path("/home/u/.local/state/mlkeeper"));
    EXPECT_EQ(StateStore::default_dir(1000, "", "/home/u"),
              fs::path("/home/u/.local/state/mlkeeper"));
    // The XDG spec says a relative value is invalid and must be ignored.
    EXPECT_EQ(StateStore::default_dir(1000, "rel/state", "/home/u"),
              fs::path("/home/u/.local/state/mlkeeper"));
    try {
        StateStore::default_dir(1000, std::nullopt, std::nullopt);
        FAIL() << "no HOME and no XDG_STATE_HOME did not throw";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::kConfig);
        EXPECT_NE(std::string(e.what()).find("HOME"), std::string::npos);
    }
}

TEST(StateStoreDefaultDir, UsesThisProcess) {
    const fs::path d = StateStore::default_dir();
    if (::geteuid() == 0) {
        EXPECT_EQ(d, fs::path("/var/lib/mlkeeper"));
    } else {
        EXPECT_TRUE(d.is_absolute()) << d;
        EXPECT_EQ(d.filename(), "mlkeeper");
    }
}

// ---- opening and migrations -----------------------------------------------------------

TEST(StateStore, FreshDatabaseGetsLatestSchemaAndWal) {
    TempDir dir;
    const mode_t old_mask = ::umask(022);
    const fs::path file = dir.path() / "a" / "b" / StateStore::kFileName;
    {
        StateStore store(file);
        EXPECT_EQ(store.schema_version(), StateStore::latest_schema_version());
        EXPECT_GE(StateStore::latest_schema_version(), 1);
        EXPECT_EQ(store.path(), file);
    }
    ::umask(old_mask);
    struct stat st {};
    ASSERT_EQ(::stat((dir.path() / "a" / "b").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    EXPECT_EQ(raw_query(file, "PRAGMA journal_mode"), "wal");
    EXPECT_EQ(raw_query(file, "PRAGMA user_version"),
              std::to_string(StateStore::latest_schema_version()));
    EXPECT_EQ(raw_query(file, "PRAGMA application_id"), "1296845651");
    EXPECT_EQ(raw_query(file,
                        "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master "
                        "WHERE type = 'index' AND name LIKE 'runs_%' ORDER BY name)"),
              "runs_command_started_at,runs_started_at");
    EXPECT_EQ(raw_query(file, "SELECT count(*) FROM kv"), "0");
}

TEST(StateStore, SchemaVersion4HasHistoryAndCounterTables) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    { StateStore store(file); }
    EXPECT_EQ(StateStore::latest_schema_version(), 4);
    EXPECT_EQ(raw_query(file, "PRAGMA user_version"), "4");
    EXPECT_EQ(raw_query(file,
                        "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master "
                        "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name)"),
              "alerts,counters,gpu_devices,gpu_samples,job_runs,kv,runs");
    // The history and the counters are clustered on their keys (no separate rowid index).
    EXPECT_EQ(raw_query(file,
                        "SELECT count(*) FROM sqlite_master WHERE name IN ('gpu_samples', "
                        "'counters') AND sql LIKE '%WITHOUT ROWID%'"),
              "2");
}

// A file at version 3 (what the previous release left) gains the new tables and keeps its data.
TEST(StateStore, MigratesAVersion3File) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    {
        StateStore store(file);
        store.kv_set("kept", "yes");
        store.kv_set("alert.failures.email", "4");  // how version 3 counted failed deliveries
    }
    raw_query(file, "DROP TABLE gpu_samples");
    raw_query(file, "DROP TABLE gpu_devices");
    raw_query(file, "DROP TABLE counters");
    raw_query(file, "PRAGMA user_version = 3");
    StateStore store(file);
    EXPECT_EQ(store.schema_version(), 4);
    EXPECT_EQ(store.kv_get("kept"), "yes");
    store.counter_add("c", "", 1);
    EXPECT_EQ(store.counters("c").size(), 1u);
    EXPECT_EQ(raw_query(file, "SELECT count(*) FROM gpu_samples"), "0");
    const auto failed = store.counters("alerts_failed");
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].labels, "channel=email");
    EXPECT_EQ(failed[0].value, 4);
    EXPECT_FALSE(store.kv_get("alert.failures.email"));
}

TEST(StateStore, ReopenDoesNotMigrateAgain) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    { StateStore store(file); }
    StateStore again(file);
    EXPECT_EQ(again.schema_version(), StateStore::latest_schema_version());
}

TEST(StateStore, EmptyFileBecomesANewDatabase) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    write_bytes(file, "");
    StateStore store(file);
    EXPECT_EQ(store.schema_version(), StateStore::latest_schema_version());
}

// ---- runs ------------------------------------------------------------------------------

TEST(StateStore, BeginEndRoundTrip) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    const std::vector<std::string> args = {
        "backup",      "--name", "my model v2",     "it's \"quoted\"", "back\\slash",
        "line\nbreak", "",       "ünïcødé ✓ 模型 🚀"};
    const auto before = system_clock::now();
    const int64_t id = store.begin_run("backup", args);
    const nlohmann::json summary = {{"files", 12},
                                    {"bytes", 123456789012LL},
                                    {"ok", true},
                                    {"target", "s3://b/ü"},
                                    {"warnings", nlohmann::json::array({"slow disk"})}};
    store.end_run(id, 2, summary);
    const auto after = system_clock::now();

    const auto runs = store.recent_runs(10);
    ASSERT_EQ(runs.size(), 1u);
    const RunRecord& r = runs[0];
    EXPECT_EQ(r.id, id);
    EXPECT_EQ(r.command, "backup");
    EXPECT_EQ(r.args, args);
    EXPECT_EQ(r.pid, ::getpid());
    EXPECT_EQ(r.host, host_name());
    // Stored with millisecond precision.
    EXPECT_GE(r.started_at, std::chrono::time_point_cast<milliseconds>(before));
    EXPECT_LE(r.started_at, after);
    ASSERT_TRUE(r.ended_at.has_value());
    EXPECT_GE(*r.ended_at, r.started_at);
    EXPECT_LE(*r.ended_at, after);
    ASSERT_TRUE(r.exit_code.has_value());
    EXPECT_EQ(*r.exit_code, 2);
    EXPECT_EQ(r.summary, summary);
}

TEST(StateStore, NullSummaryAndEmptyArgs) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    const int64_t id = store.begin_run("health", {});
    store.end_run(id, 0, nullptr);
    const auto runs = store.recent_runs(1);
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_TRUE(runs[0].args.empty());
    EXPECT_TRUE(runs[0].summary.is_null());
    EXPECT_EQ(raw_query(store.path(), "SELECT summary IS NULL FROM runs"), "1");
    EXPECT_EQ(raw_query(store.path(), "SELECT args FROM runs"), "[]");
}

TEST(StateStore, InvalidUtf8ArgumentIsKeptLossily) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    const std::string bad = std::string("file\xff\xfe") + ".bin";
    int64_t id = 0;
    ASSERT_NO_THROW(id = store.begin_run("cleanup", {bad}));
    store.end_run(id, 0, {{"path", bad}});
    const auto runs = store.recent_runs(1);
    ASSERT_EQ(runs.size(), 1u);
    ASSERT_EQ(runs[0].args.size(), 1u);
    EXPECT_NE(runs[0].args[0].find("\xEF\xBF\xBD"), std::string::npos);  // U+FFFD
    EXPECT_NE(runs[0].args[0].find(".bin"), std::string::npos);
}

TEST(StateStore, EndRunRejectsUnknownIdAndNonObjectSummary) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    try {
        store.end_run(12345, 0, nullptr);
        FAIL() << "unknown id accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("12345"), std::string::npos);
    }
    const int64_t id = store.begin_run("x", {});
    EXPECT_THROW(store.end_run(id, 0, nlohmann::json::array({1, 2})), std::invalid_argument);
    EXPECT_THROW(store.end_run(id, 0, "text"), std::invalid_argument);
    EXPECT_FALSE(store.recent_runs(1)[0].exit_code.has_value());
}

TEST(StateStore, NewestFirstWithLimitAndCommandFilter) {
    TempDir dir;
    // Start times deliberately out of id order: the history sorts by time, not insertion.
    std::vector<int64_t> times = {5000, 1000, 3000, 3000, 9000, 2000};
    std::size_t next = 0;
    StateStore store(dir.path() / "state.db", [&] {
        return system_clock::time_point(milliseconds(times[std::min(next++, times.size() - 1)]));
    });
    const std::vector<std::string> commands = {"backup", "health",  "backup",
                                               "backup", "cleanup", "health"};
    std::vector<int64_t> ids;
    for (const auto& c : commands) {
        ids.push_back(store.begin_run(c, {c}));
    }
    auto all = store.recent_runs(100);
    ASSERT_EQ(all.size(), 6u);
    // 9000 cleanup, 5000 backup, 3000 backup (later id first), 3000 backup, 2000, 1000
    const std::vector<int64_t> want = {ids[4], ids[0], ids[3], ids[2], ids[5], ids[1]};
    for (std::size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(all[i].id, want[i]) << "position " << i;
    }
    EXPECT_EQ(all[0].started_at, system_clock::time_point(milliseconds(9000)));

    auto two = store.recent_runs(2);
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(two[0].id, ids[4]);
    EXPECT_EQ(two[1].id, ids[0]);

    auto backups = store.recent_runs(100, "backup");
    ASSERT_EQ(backups.size(), 3u);
    for (const auto& r : backups) {
        EXPECT_EQ(r.command, "backup");
    }
    EXPECT_EQ(backups[0].id, ids[0]);
    EXPECT_EQ(store.recent_runs(1, "health").at(0).id, ids[5]);
    EXPECT_TRUE(store.recent_runs(10, "nothing").empty());
    EXPECT_TRUE(store.recent_runs(0).empty());
    EXPECT_EQ(store.recent_runs(static_cast<std::size_t>(-1)).size(), 6u);
}

TEST(StateStore, PersistsAcrossReopen) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    int64_t id = 0;
    {
        StateStore store(file);
        id = store.begin_run("backup", {"--all"});
        store.end_run(id, 1, {{"error", "disk full"}});
        store.begin_run("cleanup", {});
        store.kv_set("alert.last", "1700000000");
    }
    StateStore store(file);
    const auto runs = store.recent_runs(10);
    ASSERT_EQ(runs.size(), 2u);
    const auto& backup = runs[0].command == "backup" ? runs[0] : runs[1];
    EXPECT_EQ(backup.id, id);
    EXPECT_EQ(backup.args, std::vector<std::string>{"--all"});
    EXPECT_EQ(backup.exit_code, 1);
    EXPECT_EQ(backup.summary["error"], "disk full");
    EXPECT_EQ(store.kv_get("alert.last"), "1700000000");
}

TEST(StateStore, RunLeftOpenByACrashHasNoExitCode) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    { StateStore store(file); }
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        try {
            StateStore store(file);
            store.begin_run("backup", {"--crash"});
        } catch (...) {
            ::_exit(3);
        }
        ::raise(SIGKILL);  // dies without end_run, destructors or exit handlers
        ::_exit(4);
    }
    const int status = testing::wait_child_bounded(child, std::chrono::seconds(30));
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    StateStore store(file);
    const auto runs = store.recent_runs(10);
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0].pid, child);
    EXPECT_EQ(runs[0].args, std::vector<std::string>{"--crash"});
    EXPECT_FALSE(runs[0].exit_code.has_value());
    EXPECT_FALSE(runs[0].ended_at.has_value());
    EXPECT_TRUE(runs[0].summary.is_null());
}

// ---- key/value ---------------------------------------------------------------------------

TEST(StateStore, KeyValue) {
    TempDir dir;
    int64_t t = 1000;
    StateStore store(dir.path() / "state.db",
                     [&] { return system_clock::time_point(milliseconds(t)); });
    EXPECT_FALSE(store.kv_get("missing").has_value());
    store.kv_set("k", "v1");
    EXPECT_EQ(store.kv_get("k"), "v1");
    t = 2000;
    store.kv_set("k", "v2 ✓");
    EXPECT_EQ(store.kv_get("k"), "v2 ✓");
    store.kv_set("empty", "");
    EXPECT_EQ(store.kv_get("empty"), "");
    EXPECT_EQ(raw_query(store.path(), "SELECT count(*) FROM kv"), "2");
    EXPECT_EQ(raw_query(store.path(), "SELECT updated_at FROM kv WHERE key = 'k'"), "2000");
}

// ---- damaged and foreign files -------------------------------------------------------------

void expect_corrupt_error_and_untouched(const fs::path& file, const std::string& reason) {
    const std::string before = read_bytes(file);
    const std::string msg = open_error(file);
    EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("move it aside"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mv " + file.string() + " " + file.string() + ".bad"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find(reason), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    EXPECT_TRUE(read_bytes(file) == before) << "the damaged file was modified";
    // SQLite may leave an empty WAL beside a WAL-mode file it failed to read: harmless.
    std::error_code ec;
    const auto wal_size = fs::file_size(file.string() + "-wal", ec);
    EXPECT_TRUE(ec || wal_size == 0) << "a non-empty WAL appeared beside the damaged file";
    EXPECT_FALSE(fs::exists(file.string() + "-journal"));
    // A second attempt fails the same way: nothing was "repaired" in between.
    EXPECT_EQ(open_error(file), msg);
}

TEST(StateStore, RandomBytesFileIsReportedNotTouched) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    std::mt19937 rng(42);
    std::string junk(16384, '\0');
    for (char& c : junk) {
        c = static_cast<char>(rng());
    }
    write_bytes(file, junk);
    expect_corrupt_error_and_untouched(file, "file is not a database");
}

TEST(StateStore, TruncatedDatabaseIsReportedNotTouched) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    {
        StateStore store(file);
        const std::vector<std::string> args(20, std::string(200, 'a'));
        for (int i = 0; i < 200; ++i) {
            store.end_run(store.begin_run("backup", args), 0, {{"i", i}});
        }
    }
    ASSERT_FALSE(fs::exists(file.string() + "-wal")) << "close should checkpoint the WAL";
    const auto size = fs::file_size(file);
    ASSERT_GT(size, 40000u);
    fs::resize_file(file, size / 2);
    expect_corrupt_error_and_untouched(file, "malformed");
}

TEST(StateStore, ShortTextFileIsReportedNotTouched) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    write_bytes(file, "hello\n");
    expect_corrupt_error_and_untouched(file, "file is not a database");
}

// A truncated database whose write-ahead log is still beside it: SQLite replays the log,
// so the damage may only show on a later read; closing must not copy the log into the file.
TEST(StateStore, TruncatedDatabaseWithLiveWalIsNotCheckpointedOnError) {
    TempDir dir;
    const fs::path live = dir.path() / "live.db";
    const fs::path file = dir.path() / "copy.db";
    {
        StateStore store(live);
        const std::vector<std::string> args(20, std::string(200, 'c'));
        for (int i = 0; i < 200; ++i) {
            store.end_run(store.begin_run("backup", args), 0, nullptr);
        }
        Database raw(live, OpenMode::kReadWrite);
        raw.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        for (int i = 0; i < 20; ++i) {
            store.end_run(store.begin_run("late", args), 0, nullptr);
        }
        ASSERT_GT(fs::file_size(live.string() + "-wal"), 0u);
        fs::copy_file(live, file);
        fs::copy_file(live.string() + "-wal", file.string() + "-wal");
    }
    fs::resize_file(file, fs::file_size(file) / 2);
    const std::string db_before = read_bytes(file);
    const std::string wal_before = read_bytes(file.string() + "-wal");
    try {
        StateStore store(file);
        store.recent_runs(1000);
        ADD_FAILURE() << "the damage went unnoticed";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("move it aside"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(read_bytes(file) == db_before) << "the database was modified";
    EXPECT_TRUE(read_bytes(file.string() + "-wal") == wal_before) << "the WAL was modified";
}

TEST(StateStore, AdviceQuotesPathsAndMentionsLeftoverWal) {
    TempDir dir;
    const fs::path sub = dir.path() / "my state";
    fs::create_directory(sub);
    const fs::path file = sub / "state.db";
    write_bytes(file, std::string(4096, 'x'));
    write_bytes(file.string() + "-wal", "leftover");
    const std::string msg = open_error(file);
    EXPECT_NE(msg.find("mv '" + file.string() + "' '" + file.string() + ".bad'"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find(file.string() + "-wal"), std::string::npos) << msg;
    EXPECT_EQ(read_bytes(file.string() + "-wal"), "leftover");
    // The file never reached SQLite (it lacks the magic), so no shared-memory index appeared.
    EXPECT_FALSE(fs::exists(file.string() + "-shm"));
}

TEST(StateStore, DamageInsideTheFileIsFoundByCheckIntegrity) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    {
        StateStore store(file);
        EXPECT_TRUE(store.check_integrity().ok());
        const std::vector<std::string> args(20, std::string(200, 'b'));
        for (int i = 0; i < 200; ++i) {
            store.end_run(store.begin_run("backup", args), 0, nullptr);
        }
        EXPECT_TRUE(store.check_integrity().ok());
    }
    // Overwrite the pages in the middle, keeping the size: SQLite cannot see this on open.
    std::string bytes = read_bytes(file);
    const std::size_t page = 4096;
    for (std::size_t i = 3 * page; i < bytes.size() - 2 * page; ++i) {
        bytes[i] = static_cast<char>(0xA5);
    }
    write_bytes(file, bytes);
    StateStore store(file);
    const IntegrityReport report = store.check_integrity();
    EXPECT_FALSE(report.ok());
    // Reading the damaged rows gives the same one-line advice as a damaged header.
    try {
        store.recent_runs(1000);
        ADD_FAILURE() << "reading damaged pages did not throw";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("move it aside"), std::string::npos) << msg;
        EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
    }
}

TEST(StateStore, NewerSchemaVersionIsRefused) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    { StateStore store(file); }
    raw_query(file, "PRAGMA user_version = 99");
    const std::string before = read_bytes(file);
    const std::string msg = open_error(file);
    EXPECT_NE(msg.find("state database " + file.string() + " has schema version 99"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("knows up to " + std::to_string(StateStore::latest_schema_version())),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("upgrade mlkeeper"), std::string::npos) << msg;
    EXPECT_TRUE(read_bytes(file) == before);
    EXPECT_EQ(raw_query(file, "PRAGMA user_version"), "99");
}

TEST(StateStore, ForeignDatabaseIsRefused) {
    TempDir dir;
    const fs::path other = dir.path() / "other.db";
    raw_query(other, "CREATE TABLE runs (x TEXT)");
    const std::string before = read_bytes(other);
    std::string msg = open_error(other);
    EXPECT_NE(msg.find("not an mlkeeper state database"), std::string::npos) << msg;
    EXPECT_EQ(read_bytes(other), before);

    const fs::path app = dir.path() / "app.db";
    raw_query(app, "PRAGMA application_id = 7");
    msg = open_error(app);
    EXPECT_NE(msg.find("another program"), std::string::npos) << msg;
    EXPECT_NE(msg.find("move it aside"), std::string::npos) << msg;
}

// A refused file is left exactly as found, including a write-ahead log that its owner has
// not checkpointed yet (SQLite would otherwise fold it in when the connection closes).
TEST(StateStore, RefusedFileKeepsItsWal) {
    TempDir dir;
    const fs::path live = dir.path() / "live.db";
    const fs::path file = dir.path() / "copy.db";
    {
        Database owner(live, OpenMode::kReadWriteCreate);
        owner.exec("PRAGMA journal_mode=WAL; CREATE TABLE notes (x TEXT)");
        owner.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        owner.exec("INSERT INTO notes VALUES ('not yet checkpointed')");
        fs::copy_file(live, file);
        fs::copy_file(live.string() + "-wal", file.string() + "-wal");
    }
    const std::string db_before = read_bytes(file);
    const std::string wal_before = read_bytes(file.string() + "-wal");
    ASSERT_FALSE(wal_before.empty());
    const std::string msg = open_error(file);
    EXPECT_NE(msg.find("not an mlkeeper state database"), std::string::npos) << msg;
    EXPECT_TRUE(read_bytes(file) == db_before) << "the database was modified";
    EXPECT_TRUE(read_bytes(file.string() + "-wal") == wal_before) << "the WAL was modified";
}

TEST(StateStore, PathThatIsADirectoryIsReported) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    fs::create_directory(file);
    const std::string msg = open_error(file);
    EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(StateStore, ParentThatIsAFileIsReported) {
    TempDir dir;
    write_bytes(dir.path() / "plain", "x");
    const std::string msg = open_error(dir.path() / "plain" / "state.db");
    EXPECT_NE(msg.find("state directory " + (dir.path() / "plain").string() +
                       " exists but is not a directory"),
              std::string::npos)
        << msg;
    // One level deeper mkdir fails outright.
    const std::string deeper = open_error(dir.path() / "plain" / "sub" / "state.db");
    EXPECT_NE(deeper.find("cannot create state directory " +
                          (dir.path() / "plain" / "sub").string() + " (Not a directory)"),
              std::string::npos)
        << deeper;
}

// Opens `file` in a child running as an unprivileged user (root ignores permissions, so the
// test drops to nobody when run as root). Returns the error message, "<no error>", or
// "<skip>" when privileges cannot be dropped.
std::string open_error_as_unprivileged(const fs::path& file) {
    std::array<int, 2> fds{};
    if (::pipe(fds.data()) != 0) {
        return "<pipe failed>";
    }
    const pid_t child = ::fork();
    if (child < 0) {
        return "<fork failed>";
    }
    if (child == 0) {
        ::close(fds[0]);
        if (::geteuid() == 0 &&
            (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) {
            ::_exit(77);
        }
        std::string msg = "<no error>";
        try {
            StateStore store(file);
        } catch (const Error& e) {
            msg = e.what();
        } catch (const std::exception& e) {
            msg = std::string("<other exception> ") + e.what();
        }
        const ssize_t n = ::write(fds[1], msg.data(), msg.size());
        ::_exit(n == static_cast<ssize_t>(msg.size()) ? 0 : 1);
    }
    ::close(fds[1]);
    std::string msg;
    std::array<char, 4096> buf{};
    ssize_t n = 0;
    while ((n = ::read(fds[0], buf.data(), buf.size())) > 0) {
        msg.append(buf.data(), static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    const int status = testing::wait_child_bounded(child, std::chrono::seconds(30));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        return "<skip>";
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    return msg;
}

TEST(StateStore, UnreadableDirectoryIsReported) {
    TempDir dir;
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_exec |
                                    fs::perms::others_exec);  // nobody may pass through
    const fs::path locked = dir.path() / "locked";
    fs::create_directory(locked);
    { StateStore store(locked / "state.db"); }
    fs::permissions(locked, fs::perms::none);
    const std::string msg = open_error_as_unprivileged(locked / "state.db");
    if (msg == "<skip>") {
        GTEST_SKIP() << "cannot drop privileges";
    }
    EXPECT_NE(msg.find((locked / "state.db").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
    EXPECT_NE(msg.find("check the permissions"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(StateStore, UncreatableDirectoryIsReported) {
    TempDir dir;
    fs::permissions(dir.path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    const std::string msg = open_error_as_unprivileged(dir.path() / "new" / "state.db");
    if (msg == "<skip>") {
        GTEST_SKIP() << "cannot drop privileges";
    }
    EXPECT_NE(msg.find("cannot create state directory " + (dir.path() / "new").string()),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
}

TEST(StateStore, ReadOnlyFileIsReported) {
    TempDir dir;
    fs::permissions(dir.path(), fs::perms::all);  // the child may create -wal/-shm here
    const fs::path file = dir.path() / "state.db";
    { StateStore store(file); }
    fs::permissions(file, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
    const std::string before = read_bytes(file);
    const std::string msg = open_error_as_unprivileged(file);
    if (msg == "<skip>") {
        GTEST_SKIP() << "cannot drop privileges";
    }
    EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("cannot be opened for writing"), std::string::npos) << msg;
    EXPECT_TRUE(read_bytes(file) == before);
}

// ---- counters ------------------------------------------------------------------------------

TEST(StateStore, CountersAddUpPerLabelSet) {
    TempDir dir;
    system_clock::time_point now = system_clock::time_point(milliseconds(1'700'000'000'000));
    StateStore store(dir.path() / "state.db", [&now] { return now; });
    EXPECT_TRUE(store.counters("alerts_sent").empty());
    store.counter_add("alerts_sent", "channel=webhook", 2);
    store.counter_add("alerts_sent", "channel=email", 1);
    store.counter_add("alerts_sent", "channel=email", 4);
    store.counter_add("alerts_sent", "", 0);  // creates the row at zero
    store.counter_add("alerts_failed", "channel=email", 9);
    now += milliseconds(1500);
    store.counter_add("alerts_sent", "channel=webhook", 1);

    const auto sent = store.counters("alerts_sent");
    ASSERT_EQ(sent.size(), 3u);
    EXPECT_EQ(sent[0].labels, "");  // sorted by labels
    EXPECT_EQ(sent[0].value, 0);
    EXPECT_EQ(sent[1].labels, "channel=email");
    EXPECT_EQ(sent[1].value, 5);
    EXPECT_EQ(sent[2].labels, "channel=webhook");
    EXPECT_EQ(sent[2].value, 3);
    ASSERT_EQ(store.counters("alerts_failed").size(), 1u);
    EXPECT_EQ(store.counters("alerts_failed")[0].value, 9);
    EXPECT_TRUE(store.counters("alerts").empty());  // names match exactly
    EXPECT_EQ(
        raw_query(store.path(), "SELECT updated_at FROM counters WHERE labels = 'channel=webhook'"),
        "1700000001500");
}

TEST(StateStore, CountersRejectBadInputAndSaturate) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    EXPECT_THROW(store.counter_add("c", "", -1), std::invalid_argument);
    EXPECT_THROW(store.counter_add("", "x", 1), std::invalid_argument);
    EXPECT_TRUE(store.counters("c").empty());
    EXPECT_TRUE(store.counters("").empty());

    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    store.counter_add("big", "", kMax - 1);
    store.counter_add("big", "", 5);  // would overflow: stays an INTEGER at the maximum
    ASSERT_EQ(store.counters("big").size(), 1u);
    EXPECT_EQ(store.counters("big")[0].value, kMax);
    EXPECT_EQ(raw_query(store.path(), "SELECT typeof(value) FROM counters WHERE name = 'big'"),
              "integer");
    store.counter_add("big", "", kMax);
    EXPECT_EQ(store.counters("big")[0].value, kMax);
}

// Two stores on one file (two SQLite connections, as two processes would have) incremented
// from several threads at once: every increment is counted.
TEST(StateStore, CountersFromTwoStoresInThreadsLoseNothing) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    // Both open before any thread writes: opening reads the header with open()/close().
    StateStore a(file);
    StateStore b(file);
    constexpr int kThreadsPerStore = 3;
    constexpr int kAddsEach = 200;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2 * kThreadsPerStore; ++t) {
        StateStore& store = t % 2 == 0 ? a : b;
        threads.emplace_back([&store, &failures, t] {
            try {
                for (int i = 0; i < kAddsEach; ++i) {
                    store.counter_add("hits", "shared", 1);
                    store.counter_add("hits", "thread=" + std::to_string(t), 2);
                }
            } catch (const std::exception& e) {
                ADD_FAILURE() << e.what();
                ++failures;
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(failures.load(), 0);
    const auto hits = b.counters("hits");
    ASSERT_EQ(hits.size(), static_cast<std::size_t>(2 * kThreadsPerStore + 1));
    EXPECT_EQ(hits[0].labels, "shared");
    EXPECT_EQ(hits[0].value, 2 * kThreadsPerStore * kAddsEach);
    for (std::size_t i = 1; i < hits.size(); ++i) {
        EXPECT_EQ(hits[i].value, 2 * kAddsEach) << hits[i].labels;
    }
}

TEST(StateStore, CountersFromConcurrentProcessesLoseNothing) {
    TempDir dir;
    const fs::path file = dir.path() / "state.db";
    { StateStore create(file); }
    constexpr int kChildren = 3;
    constexpr int kAddsEach = 150;
    std::vector<pid_t> children;
    for (int c = 0; c < kChildren; ++c) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            try {
                StateStore store(file);
                for (int i = 0; i < kAddsEach; ++i) {
                    store.counter_add("hits", "", 1);
                }
            } catch (...) {
                ::_exit(1);
            }
            ::_exit(0);
        }
        children.push_back(pid);
    }
    for (const pid_t pid : children) {
        const int status = testing::wait_child_bounded(pid, std::chrono::seconds(60));
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    StateStore store(file);
    ASSERT_EQ(store.counters("hits").size(), 1u);
    EXPECT_EQ(store.counters("hits")[0].value, kChildren * kAddsEach);
}

// ---- with_db -------------------------------------------------------------------------------

TEST(StateStore, WithDbReturnsAndMapsSqliteErrors) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    const int64_t n = store.with_db("counting", [](Database& db) {
        Statement st = db.prepare("SELECT count(*) FROM runs");
        return st.step() ? st.column_int64(0) : int64_t{-1};
    });
    EXPECT_EQ(n, 0);
    store.with_db("writing", [](Database& db) { db.exec("CREATE TABLE extra (x)"); });
    try {
        store.with_db("doing the impossible",
                      [](Database& db) { db.exec("INSERT INTO missing VALUES (1)"); });
        ADD_FAILURE() << "no error";
    } catch (const SqliteError& e) {
        ADD_FAILURE() << "raw SqliteError escaped: " << e.what();
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("state database " + store.path().string()), std::string::npos) << msg;
        EXPECT_NE(msg.find("doing the impossible"), std::string::npos) << msg;
        EXPECT_NE(msg.find("no such table"), std::string::npos) << msg;
    }
    // Other exceptions pass through untouched, and the mutex is released.
    EXPECT_THROW(store.with_db("x", [](Database&) { throw std::out_of_range("mine"); }),
                 std::out_of_range);
    store.kv_set("after", "ok");
    EXPECT_EQ(store.kv_get("after"), "ok");
}

// Nothing else of the store runs while with_db() holds it: a value that another thread keeps
// rewriting does not change between two reads inside one with_db() call.
TEST(StateStore, WithDbExcludesOtherThreads) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    store.kv_set("k", "0");
    std::atomic<bool> stop{false};
    std::thread other([&] {
        for (int i = 1; !stop; ++i) {
            store.kv_set("k", std::to_string(i));
        }
    });
    int changed = 0;
    for (int i = 0; i < 100; ++i) {
        store.with_db("reading twice", [&](Database& db) {
            const auto read = [&db] {
                Statement st = db.prepare("SELECT value FROM kv WHERE key = 'k'");
                return st.step() ? st.column_text(0) : std::string();
            };
            const std::string first = read();
            std::this_thread::sleep_for(std::chrono::microseconds(300));
            if (read() != first) {
                ++changed;
            }
        });
    }
    stop = true;
    other.join();
    EXPECT_EQ(changed, 0);
    EXPECT_NE(store.kv_get("k"), "0");  // the other thread did get to write meanwhile
}

// ---- concurrency ---------------------------------------------------------------------------

// All processes start on a file that does not exist yet, so they also race to create it,
// switch it to WAL and migrate it.
TEST(StateStore, ConcurrentProcessesLoseNoRuns) {
    TempDir dir;
    const fs::path file = dir.path() / "sub" / "state.db";
    constexpr int kChildren = 4;
    constexpr int kRunsEach = 50;
    std::array<int, 2> gate{};
    ASSERT_EQ(::pipe(gate.data()), 0);

    const auto work = [&file](const std::string& who) {
        StateStore store(file);
        for (int i = 0; i < kRunsEach; ++i) {
            const int64_t id = store.begin_run("work", {who, std::to_string(i)});
            store.end_run(id, i % 3, {{"who", who}, {"i", i}});
        }
    };

    std::vector<pid_t> children;
    for (int c = 0; c < kChildren; ++c) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(gate[1]);
            char b = 0;
            (void)!::read(gate[0], &b, 1);  // wait until the parent opens the gate
            try {
                work("child" + std::to_string(c));
            } catch (const std::exception& e) {
                ::write(2, e.what(), std::strlen(e.what()));
                ::write(2, "\n", 1);
                ::_exit(1);
            }
            ::_exit(0);
        }
        children.push_back(pid);
    }
    ::close(gate[0]);
    ::close(gate[1]);  // all children see EOF and start together
    std::string parent_error;
    try {
        work("parent");
    } catch (const std::exception& e) {
        parent_error = e.what();
    }
    for (const pid_t pid : children) {
        const int status = testing::wait_child_bounded(pid, std::chrono::seconds(60));
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
            << "child " << pid << " status " << status;
    }
    EXPECT_EQ(parent_error, "");

    StateStore store(file);
    const auto runs = store.recent_runs(10000);
    EXPECT_EQ(runs.size(), static_cast<std::size_t>((kChildren + 1) * kRunsEach));
    std::map<std::string, std::set<std::string>> seen;
    std::set<int64_t> pids;
    for (const auto& r : runs) {
        ASSERT_EQ(r.args.size(), 2u);
        EXPECT_TRUE(r.exit_code.has_value()) << "run " << r.id << " never ended";
        EXPECT_EQ(r.summary["who"], r.args[0]);
        seen[r.args[0]].insert(r.args[1]);
        pids.insert(r.pid);
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kChildren + 1));
    for (const auto& [who, numbers] : seen) {
        EXPECT_EQ(numbers.size(), static_cast<std::size_t>(kRunsEach)) << who;
    }
    EXPECT_EQ(pids.size(), static_cast<std::size_t>(kChildren + 1));
    EXPECT_EQ(store.schema_version(), StateStore::latest_schema_version());
}

TEST(StateStore, ConcurrentThreadsShareOneStore) {
    TempDir dir;
    StateStore store(dir.path() / "state.db");
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&store, &failures, t] {
            try {
                for (int i = 0; i < 25; ++i) {
                    store.end_run(store.begin_run("t" + std::to_string(t), {}), 0, nullptr);
                    store.kv_set("last", std::to_string(t));
                    (void)store.recent_runs(5);
                }
            } catch (const std::exception&) {
                ++failures;
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(store.recent_runs(1000).size(), 100u);
    for (int t = 0; t < 4; ++t) {
        EXPECT_EQ(store.recent_runs(1000, "t" + std::to_string(t)).size(), 25u);
    }
}

}  // namespace
}  // namespace mlk::core
