// Thin RAII wrapper over the SQLite C API: a connection, prepared statements and a
// transaction guard, all failing by throwing SqliteError with the SQLite result code.
// Thread safety: none of these objects may be used from two threads at once; open one
// Database per thread (or guard it with a mutex, as StateStore does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "mlkeeper/core/error.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace mlk::core {

// A failed SQLite call. Keeps the (extended) result code and the bare SQLite reason so
// callers can turn "file is not a database" into advice for the user.
class SqliteError : public Error {
  public:
    SqliteError(int extended_code, int system_errno, std::string reason, const std::string& message)
        : Error(ExitCode::kFailure, message),
          extended_code_(extended_code),
          system_errno_(system_errno),
          reason_(std::move(reason)) {}

    int primary_code() const { return extended_code_ & 0xff; }  // SQLITE_BUSY, SQLITE_NOTADB...
    int extended_code() const { return extended_code_; }        // SQLITE_IOERR_SHORT_READ...
    int system_errno() const { return system_errno_; }     // errno of the failing syscall, or 0
    const std::string& reason() const { return reason_; }  // e.g. "file is not a database"

  private:
    int extended_code_;
    int system_errno_;
    std::string reason_;
};

enum class OpenMode {
    kReadWriteCreate,  // create the file when missing
    kReadWrite,
    kReadOnly,
};

// Whether closing the last connection copies the write-ahead log into the database file.
enum class CloseCheckpoint {
    kCheckpoint,  // SQLite's default
    kSkip,        // leaves file and WAL untouched, e.g. while a file's health is unknown
};

class Statement;

class Database {
  public:
    // Opening does not read the file yet: a corrupt file only fails on the first statement.
    Database(const std::filesystem::path& file, OpenMode mode);
    ~Database();
    Database(Database&& other) noexcept;
    Database& operator=(Database&& other) noexcept;
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Runs one or more statements that return no rows needed by the caller.
    void exec(std::string_view sql);
    Statement prepare(std::string_view sql);

    // Waits up to `ms` for other connections' locks before a statement fails with SQLITE_BUSY.
    void set_busy_timeout(int ms);
    void set_close_checkpoint(CloseCheckpoint mode);

    int64_t last_insert_rowid() const;
    int changes() const;  // rows changed by the most recent INSERT/UPDATE/DELETE
    bool is_read_only() const;
    const std::filesystem::path& path() const { return path_; }
    sqlite3* handle() const { return db_; }

    // Throws SqliteError for `rc` with the connection's message; `what` says what was tried.
    [[noreturn]] void fail(int rc, std::string_view what) const;

  private:
    sqlite3* db_ = nullptr;
    std::filesystem::path path_;
};

class Statement {
  public:
    Statement(Database& db, std::string_view sql);
    ~Statement();
    Statement(Statement&& other) noexcept;
    Statement& operator=(Statement&& other) noexcept;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    // Parameter indexes start at 1, as in SQLite. Text is copied, so temporaries are fine.
    Statement& bind(int index, int64_t value);
    Statement& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }
    Statement& bind(int index, double value);
    Statement& bind(int index, std::string_view value);
    Statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
    Statement& bind(int index, std::nullptr_t);

    // True while a row is available; false once the statement is done.
    bool step();
    // Makes the statement runnable again and clears its bindings.
    void reset();

    int column_count() const;
    bool column_is_null(int index) const;  // column indexes start at 0
    int64_t column_int64(int index) const;
    double column_double(int index) const;
    std::string column_text(int index) const;

  private:
    Database* db_ = nullptr;
    sqlite3_stmt* stmt_ = nullptr;
};

enum class TransactionKind {
    kImmediate,  // takes the write lock now, so a later write cannot fail with SQLITE_BUSY
    kDeferred,
    kExclusive,
};

// BEGIN on construction; ROLLBACK on destruction unless commit() succeeded.
class Transaction {
  public:
    explicit Transaction(Database& db, TransactionKind kind = TransactionKind::kImmediate);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    void commit();

  private:
    Database& db_;
    bool done_ = false;
};

}  // namespace mlk::core
