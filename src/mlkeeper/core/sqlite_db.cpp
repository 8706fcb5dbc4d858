#include "mlkeeper/core/sqlite_db.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace mlk::core {
namespace {

std::string describe(std::string_view what, const std::filesystem::path& path,
                     const std::string& reason) {
    std::string msg = "sqlite: ";
    msg += what;
    msg += " on ";
    msg += path.string();
    msg += ": ";
    msg += reason;
    return msg;
}

}  // namespace

Database::Database(const std::filesystem::path& file, OpenMode mode) : path_(file) {
    int flags = 0;
    switch (mode) {
        case OpenMode::kReadWriteCreate:
            flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
            break;
        case OpenMode::kReadWrite:
            flags = SQLITE_OPEN_READWRITE;
            break;
        case OpenMode::kReadOnly:
            flags = SQLITE_OPEN_READONLY;
            break;
    }
    const int rc = sqlite3_open_v2(file.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
        // sqlite3_open_v2 hands back a handle even on failure; it carries the message.
        const int ext = db_ != nullptr ? sqlite3_extended_errcode(db_) : rc;
        const int sys = db_ != nullptr ? sqlite3_system_errno(db_) : 0;
        std::string reason = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw SqliteError(ext, sys, reason, describe("open", path_, reason));
    }
    sqlite3_extended_result_codes(db_, 1);
}

Database::~Database() {
    // sqlite3_close_v2 defers the close until unfinalized statements go, instead of failing.
    sqlite3_close_v2(db_);
}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)) {}

Database& Database::operator=(Database&& other) noexcept {
    if (this != &other) {
        sqlite3_close_v2(db_);
        db_ = std::exchange(other.db_, nullptr);
        path_ = std::move(other.path_);
    }
    return *this;
}

void Database::fail(int rc, std::string_view what) const {
    int ext = rc;
    int sys = 0;
    std::string reason;
    if (db_ != nullptr && (sqlite3_extended_errcode(db_) & 0xff) == (rc & 0xff)) {
        ext = sqlite3_extended_errcode(db_);
        sys = sqlite3_system_errno(db_);
        reason = sqlite3_errmsg(db_);
    }
    if (reason.empty()) {
        reason = sqlite3_errstr(rc);
    }
    throw SqliteError(ext, sys, reason, describe(what, path_, reason));
}

void Database::exec(std::string_view sql) {
    // sqlite3_exec needs a NUL-terminated string.
    const std::string text(sql);
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);  // the same text is still available from sqlite3_errmsg
    if (rc != SQLITE_OK) {
        fail(rc, "exec '" + text + "'");
    }
}

Statement Database::prepare(std::string_view sql) {
    return Statement(*this, sql);
}

void Database::set_busy_timeout(int ms) {
    const int rc = sqlite3_busy_timeout(db_, ms);
    if (rc != SQLITE_OK) {
        fail(rc, "busy_timeout");
    }
}

void Database::set_close_checkpoint(CloseCheckpoint mode) {
    const int skip = mode == CloseCheckpoint::kSkip ? 1 : 0;
    const int rc = sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, skip, nullptr);
    if (rc != SQLITE_OK) {
        fail(rc, "db_config NO_CKPT_ON_CLOSE");
    }
}

int64_t Database::last_insert_rowid() const {
    return sqlite3_last_insert_rowid(db_);
}

int Database::changes() const {
    return sqlite3_changes(db_);
}

bool Database::is_read_only() const {
    return sqlite3_db_readonly(db_, "main") == 1;
}

Statement::Statement(Database& db, std::string_view sql) : db_(&db) {
    const char* tail = nullptr;
    const int rc =
        sqlite3_prepare_v2(db.handle(), sql.data(), static_cast<int>(sql.size()), &stmt_, &tail);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt_);
        stmt_ = nullptr;
        db.fail(rc, "prepare '" + std::string(sql) + "'");
    }
    const std::string_view rest(tail, static_cast<std::size_t>(sql.data() + sql.size() - tail));
    if (rest.find_first_not_of(" \t\r\n;") != std::string_view::npos || stmt_ == nullptr) {
        // A second statement would be silently ignored; an empty one would crash step().
        sqlite3_finalize(stmt_);
        stmt_ = nullptr;
        throw std::invalid_argument("Statement needs exactly one SQL statement: " +
                                    std::string(sql));
    }
}

Statement::~Statement() {
    sqlite3_finalize(stmt_);
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
    if (this != &other) {
        sqlite3_finalize(stmt_);
        db_ = other.db_;
        stmt_ = std::exchange(other.stmt_, nullptr);
    }
    return *this;
}

Statement& Statement::bind(int index, int64_t value) {
    const int rc = sqlite3_bind_int64(stmt_, index, value);
    if (rc != SQLITE_OK) {
        db_->fail(rc, "bind");
    }
    return *this;
}

Statement& Statement::bind(int index, double value) {
    const int rc = sqlite3_bind_double(stmt_, index, value);
    if (rc != SQLITE_OK) {
        db_->fail(rc, "bind");
    }
    return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
    // A null data pointer would bind SQL NULL; an empty string must stay a string.
    const char* data = value.data() != nullptr ? value.data() : "";
    const int rc =
        sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    if (rc != SQLITE_OK) {
        db_->fail(rc, "bind");
    }
    return *this;
}

Statement& Statement::bind(int index, std::nullptr_t) {
    const int rc = sqlite3_bind_null(stmt_, index);
    if (rc != SQLITE_OK) {
        db_->fail(rc, "bind");
    }
    return *this;
}

bool Statement::step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
        return true;
    }
    if (rc == SQLITE_DONE) {
        return false;
    }
    db_->fail(rc, std::string("step '") + sqlite3_sql(stmt_) + "'");
}

void Statement::reset() {
    // sqlite3_reset repeats the last step's error; that error was already thrown by step().
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

int Statement::column_count() const {
    return sqlite3_column_count(stmt_);
}

bool Statement::column_is_null(int index) const {
    return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

int64_t Statement::column_int64(int index) const {
    return sqlite3_column_int64(stmt_, index);
}

double Statement::column_double(int index) const {
    return sqlite3_column_double(stmt_, index);
}

std::string Statement::column_text(int index) const {
    const auto* text = sqlite3_column_text(stmt_, index);
    const int size = sqlite3_column_bytes(stmt_, index);  // after column_text, per the docs
    if (text == nullptr) {
        return {};
    }
    return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size));
}

Transaction::Transaction(Database& db, TransactionKind kind) : db_(db) {
    switch (kind) {
        case TransactionKind::kImmediate:
            db_.exec("BEGIN IMMEDIATE");
            break;
        case TransactionKind::kDeferred:
            db_.exec("BEGIN DEFERRED");
            break;
        case TransactionKind::kExclusive:
            db_.exec("BEGIN EXCLUSIVE");
            break;
    }
}

Transaction::~Transaction() {
    // Some errors (SQLITE_FULL, SQLITE_IOERR...) already rolled back; a second ROLLBACK
    // would only fail. Errors are ignored: a destructor cannot report them, and SQLite
    // rolls back an unfinished transaction when the connection closes anyway.
    if (!done_ && sqlite3_get_autocommit(db_.handle()) == 0) {
        sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
}

void Transaction::commit() {
    db_.exec("COMMIT");
    done_ = true;
}

}  // namespace mlk::core
