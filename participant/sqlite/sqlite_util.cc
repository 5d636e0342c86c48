#include "participant/sqlite/sqlite_util.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>

namespace dtx::participant::sqlite {
namespace {

struct CodeName {
  int code;
  const char* name;
};

// Every primary and extended result code sqlite3.h 3.40 defines.
constexpr CodeName kCodeNames[] = {
    {SQLITE_OK, "SQLITE_OK"},
    {SQLITE_ERROR, "SQLITE_ERROR"},
    {SQLITE_INTERNAL, "SQLITE_INTERNAL"},
    {SQLITE_PERM, "SQLITE_PERM"},
    {SQLITE_ABORT, "SQLITE_ABORT"},
    {SQLITE_BUSY, "SQLITE_BUSY"},
    {SQLITE_LOCKED, "SQLITE_LOCKED"},
    {SQLITE_NOMEM, "SQLITE_NOMEM"},
    {SQLITE_READONLY, "SQLITE_READONLY"},
    {SQLITE_INTERRUPT, "SQLITE_INTERRUPT"},
    {SQLITE_IOERR, "SQLITE_IOERR"},
    {SQLITE_CORRUPT, "SQLITE_CORRUPT"},
    {SQLITE_NOTFOUND, "SQLITE_NOTFOUND"},
    {SQLITE_FULL, "SQLITE_FULL"},
    {SQLITE_CANTOPEN, "SQLITE_CANTOPEN"},
    {SQLITE_PROTOCOL, "SQLITE_PROTOCOL"},
    {SQLITE_EMPTY, "SQLITE_EMPTY"},
    {SQLITE_SCHEMA, "SQLITE_SCHEMA"},
    {SQLITE_TOOBIG, "SQLITE_TOOBIG"},
    {SQLITE_CONSTRAINT, "SQLITE_CONSTRAINT"},
    {SQLITE_MISMATCH, "SQLITE_MISMATCH"},
    {SQLITE_MISUSE, "SQLITE_MISUSE"},
    {SQLITE_NOLFS, "SQLITE_NOLFS"},
    {SQLITE_AUTH, "SQLITE_AUTH"},
    {SQLITE_FORMAT, "SQLITE_FORMAT"},
    {SQLITE_RANGE, "SQLITE_RANGE"},
    {SQLITE_NOTADB, "SQLITE_NOTADB"},
    {SQLITE_NOTICE, "SQLITE_NOTICE"},
    {SQLITE_WARNING, "SQLITE_WARNING"},
    {SQLITE_ERROR_MISSING_COLLSEQ, "SQLITE_ERROR_MISSING_COLLSEQ"},
    {SQLITE_ERROR_RETRY, "SQLITE_ERROR_RETRY"},
    {SQLITE_ERROR_SNAPSHOT, "SQLITE_ERROR_SNAPSHOT"},
    {SQLITE_IOERR_READ, "SQLITE_IOERR_READ"},
    {SQLITE_IOERR_SHORT_READ, "SQLITE_IOERR_SHORT_READ"},
    {SQLITE_IOERR_WRITE, "SQLITE_IOERR_WRITE"},
    {SQLITE_IOERR_FSYNC, "SQLITE_IOERR_FSYNC"},
    {SQLITE_IOERR_DIR_FSYNC, "SQLITE_IOERR_DIR_FSYNC"},
    {SQLITE_IOERR_TRUNCATE, "SQLITE_IOERR_TRUNCATE"},
    {SQLITE_IOERR_FSTAT, "SQLITE_IOERR_FSTAT"},
    {SQLITE_IOERR_UNLOCK, "SQLITE_IOERR_UNLOCK"},
    {SQLITE_IOERR_RDLOCK, "SQLITE_IOERR_RDLOCK"},
    {SQLITE_IOERR_DELETE, "SQLITE_IOERR_DELETE"},
    {SQLITE_IOERR_NOMEM, "SQLITE_IOERR_NOMEM"},
    {SQLITE_IOERR_ACCESS, "SQLITE_IOERR_ACCESS"},
    {SQLITE_IOERR_CHECKRESERVEDLOCK, "SQLITE_IOERR_CHECKRESERVEDLOCK"},
    {SQLITE_IOERR_LOCK, "SQLITE_IOERR_LOCK"},
    {SQLITE_IOERR_CLOSE, "SQLITE_IOERR_CLOSE"},
    {SQLITE_IOERR_DIR_CLOSE, "SQLITE_IOERR_DIR_CLOSE"},
    {SQLITE_IOERR_SHMOPEN, "SQLITE_IOERR_SHMOPEN"},
    {SQLITE_IOERR_SHMSIZE, "SQLITE_IOERR_SHMSIZE"},
    {SQLITE_IOERR_SHMLOCK, "SQLITE_IOERR_SHMLOCK"},
    {SQLITE_IOERR_SHMMAP, "SQLITE_IOERR_SHMMAP"},
    {SQLITE_IOERR_SEEK, "SQLITE_IOERR_SEEK"},
    {SQLITE_IOERR_DELETE_NOENT, "SQLITE_IOERR_DELETE_NOENT"},
    {SQLITE_IOERR_MMAP, "SQLITE_IOERR_MMAP"},
    {SQLITE_IOERR_GETTEMPPATH, "SQLITE_IOERR_GETTEMPPATH"},
    {SQLITE_IOERR_CONVPATH, "SQLITE_IOERR_CONVPATH"},
    {SQLITE_IOERR_VNODE, "SQLITE_IOERR_VNODE"},
    {SQLITE_IOERR_AUTH, "SQLITE_IOERR_AUTH"},
    {SQLITE_IOERR_BEGIN_ATOMIC, "SQLITE_IOERR_BEGIN_ATOMIC"},
    {SQLITE_IOERR_COMMIT_ATOMIC, "SQLITE_IOERR_COMMIT_ATOMIC"},
    {SQLITE_IOERR_ROLLBACK_ATOMIC, "SQLITE_IOERR_ROLLBACK_ATOMIC"},
    {SQLITE_IOERR_DATA, "SQLITE_IOERR_DATA"},
    {SQLITE_IOERR_CORRUPTFS, "SQLITE_IOERR_CORRUPTFS"},
    {SQLITE_LOCKED_SHAREDCACHE, "SQLITE_LOCKED_SHAREDCACHE"},
    {SQLITE_LOCKED_VTAB, "SQLITE_LOCKED_VTAB"},
    {SQLITE_BUSY_RECOVERY, "SQLITE_BUSY_RECOVERY"},
    {SQLITE_BUSY_SNAPSHOT, "SQLITE_BUSY_SNAPSHOT"},
    {SQLITE_BUSY_TIMEOUT, "SQLITE_BUSY_TIMEOUT"},
    {SQLITE_CANTOPEN_NOTEMPDIR, "SQLITE_CANTOPEN_NOTEMPDIR"},
    {SQLITE_CANTOPEN_ISDIR, "SQLITE_CANTOPEN_ISDIR"},
    {SQLITE_CANTOPEN_FULLPATH, "SQLITE_CANTOPEN_FULLPATH"},
    {SQLITE_CANTOPEN_CONVPATH, "SQLITE_CANTOPEN_CONVPATH"},
    {SQLITE_CANTOPEN_DIRTYWAL, "SQLITE_CANTOPEN_DIRTYWAL"},
    {SQLITE_CANTOPEN_SYMLINK, "SQLITE_CANTOPEN_SYMLINK"},
    {SQLITE_CORRUPT_VTAB, "SQLITE_CORRUPT_VTAB"},
    {SQLITE_CORRUPT_SEQUENCE, "SQLITE_CORRUPT_SEQUENCE"},
    {SQLITE_CORRUPT_INDEX, "SQLITE_CORRUPT_INDEX"},
    {SQLITE_READONLY_RECOVERY, "SQLITE_READONLY_RECOVERY"},
    {SQLITE_READONLY_CANTLOCK, "SQLITE_READONLY_CANTLOCK"},
    {SQLITE_READONLY_ROLLBACK, "SQLITE_READONLY_ROLLBACK"},
    {SQLITE_READONLY_DBMOVED, "SQLITE_READONLY_DBMOVED"},
    {SQLITE_READONLY_CANTINIT, "SQLITE_READONLY_CANTINIT"},
    {SQLITE_READONLY_DIRECTORY, "SQLITE_READONLY_DIRECTORY"},
    {SQLITE_ABORT_ROLLBACK, "SQLITE_ABORT_ROLLBACK"},
    {SQLITE_CONSTRAINT_CHECK, "SQLITE_CONSTRAINT_CHECK"},
    {SQLITE_CONSTRAINT_COMMITHOOK, "SQLITE_CONSTRAINT_COMMITHOOK"},
    {SQLITE_CONSTRAINT_FOREIGNKEY, "SQLITE_CONSTRAINT_FOREIGNKEY"},
    {SQLITE_CONSTRAINT_FUNCTION, "SQLITE_CONSTRAINT_FUNCTION"},
    {SQLITE_CONSTRAINT_NOTNULL, "SQLITE_CONSTRAINT_NOTNULL"},
    {SQLITE_CONSTRAINT_PRIMARYKEY, "SQLITE_CONSTRAINT_PRIMARYKEY"},
    {SQLITE_CONSTRAINT_TRIGGER, "SQLITE_CONSTRAINT_TRIGGER"},
    {SQLITE_CONSTRAINT_UNIQUE, "SQLITE_CONSTRAINT_UNIQUE"},
    {SQLITE_CONSTRAINT_VTAB, "SQLITE_CONSTRAINT_VTAB"},
    {SQLITE_CONSTRAINT_ROWID, "SQLITE_CONSTRAINT_ROWID"},
    {SQLITE_CONSTRAINT_PINNED, "SQLITE_CONSTRAINT_PINNED"},
    {SQLITE_CONSTRAINT_DATATYPE, "SQLITE_CONSTRAINT_DATATYPE"},
    {SQLITE_NOTICE_RECOVER_WAL, "SQLITE_NOTICE_RECOVER_WAL"},
    {SQLITE_NOTICE_RECOVER_ROLLBACK, "SQLITE_NOTICE_RECOVER_ROLLBACK"},
    {SQLITE_WARNING_AUTOINDEX, "SQLITE_WARNING_AUTOINDEX"},
    {SQLITE_AUTH_USER, "SQLITE_AUTH_USER"},
    {SQLITE_ROW, "SQLITE_ROW"},
    {SQLITE_DONE, "SQLITE_DONE"},
};

}  // namespace

std::string result_code_name(int code) {
  for (const auto& c : kCodeNames) {
    if (c.code == code) return c.name;
  }
  // An extended code this table lacks: name its primary code.
  for (const auto& c : kCodeNames) {
    if (c.code == (code & 0xff)) return fmt::format("{}_{}", c.name, code >> 8);
  }
  return fmt::format("SQLITE_{}", code);
}

DbError last_error(sqlite3* db) {
  return DbError{result_code_name(sqlite3_extended_errcode(db)), sqlite3_errmsg(db)};
}

std::string describe_last_error(sqlite3* db) {
  return result_code_name(sqlite3_extended_errcode(db)) + ": " + sqlite3_errmsg(db);
}

Result<DbHandle> open_connection(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_FULLMUTEX, nullptr);
  DbHandle db(raw);
  if (rc != SQLITE_OK) {
    std::string what = raw ? describe_last_error(raw) : result_code_name(rc);
    return error(Code::io_error, "sqlite: cannot open " + path + ": " + what);
  }
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

Status exec_simple(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return error(Code::io_error, std::string("sqlite: ") + sql + ": " + describe_last_error(db));
  }
  return ok_status();
}

Result<StmtHandle> prepare_internal(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr) !=
      SQLITE_OK) {
    return error(Code::io_error, fmt::format("sqlite: {}: {}", sql, describe_last_error(db)));
  }
  return StmtHandle(raw);
}

Result<std::string> query_text(sqlite3* db, const char* sql) {
  auto stmt = prepare_internal(db, sql);
  if (!stmt.ok()) return stmt.status();
  int rc = sqlite3_step(stmt->get());
  if (rc != SQLITE_ROW) {
    return error(Code::io_error, std::string("sqlite: ") + sql + ": " +
                                     (rc == SQLITE_DONE ? "no row" : describe_last_error(db)));
  }
  const unsigned char* text = sqlite3_column_text(stmt->get(), 0);
  return std::string(text ? reinterpret_cast<const char*>(text) : "");
}

bool operator==(const StoredValue& a, const StoredValue& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case SQLITE_INTEGER:
      return a.i == b.i;
    case SQLITE_FLOAT:
      // Bitwise, so 0.0 and -0.0 differ as SQLite stores them differently.
      return std::memcmp(&a.d, &b.d, sizeof a.d) == 0;
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      return a.bytes == b.bytes;
    default:
      return true;
  }
}

StoredValue stored_column(sqlite3_stmt* s, int c) {
  StoredValue v;
  v.type = sqlite3_column_type(s, c);
  if (v.type == SQLITE_INTEGER) {
    v.i = sqlite3_column_int64(s, c);
  } else if (v.type == SQLITE_FLOAT) {
    v.d = sqlite3_column_double(s, c);
  } else if (v.type == SQLITE_TEXT || v.type == SQLITE_BLOB) {
    // Ask for the pointer first, then the size (SQLite's documented order).
    const void* p = v.type == SQLITE_TEXT ? static_cast<const void*>(sqlite3_column_text(s, c))
                                          : sqlite3_column_blob(s, c);
    int n = sqlite3_column_bytes(s, c);
    if (p && n > 0) v.bytes.assign(static_cast<const char*>(p), static_cast<size_t>(n));
  }
  return v;
}

StoredValue stored_value(sqlite3_value* val) {
  StoredValue v;
  if (val == nullptr) return v;
  v.type = sqlite3_value_type(val);
  if (v.type == SQLITE_INTEGER) {
    v.i = sqlite3_value_int64(val);
  } else if (v.type == SQLITE_FLOAT) {
    v.d = sqlite3_value_double(val);
  } else if (v.type == SQLITE_TEXT || v.type == SQLITE_BLOB) {
    const void* p = v.type == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(val))
                                          : sqlite3_value_blob(val);
    int n = sqlite3_value_bytes(val);
    if (p && n > 0) v.bytes.assign(static_cast<const char*>(p), static_cast<size_t>(n));
  }
  return v;
}

int bind_stored(sqlite3_stmt* stmt, int index, const StoredValue& v) {
  switch (v.type) {
    case SQLITE_INTEGER:
      return sqlite3_bind_int64(stmt, index, v.i);
    case SQLITE_FLOAT:
      return sqlite3_bind_double(stmt, index, v.d);
    case SQLITE_TEXT:
      return sqlite3_bind_text64(stmt, index, v.bytes.data(), v.bytes.size(), SQLITE_TRANSIENT,
                                 SQLITE_UTF8);
    case SQLITE_BLOB:
      return sqlite3_bind_blob64(stmt, index, v.bytes.data(), v.bytes.size(), SQLITE_TRANSIENT);
    default:
      return sqlite3_bind_null(stmt, index);
  }
}

std::string render_value(const StoredValue& v) {
  switch (v.type) {
    case SQLITE_INTEGER:
      return std::to_string(v.i);
    case SQLITE_FLOAT:
      return fmt::format("{}", v.d);
    case SQLITE_TEXT: {
      std::string out = "'";
      for (char c : v.bytes) {
        if (c == '\'') out += '\'';
        out += c;
      }
      return out + "'";
    }
    case SQLITE_BLOB: {
      std::string out = "X'";
      for (unsigned char c : v.bytes)
        out += fmt::format("{:02x}", c);
      return out + "'";
    }
    default:
      return "NULL";
  }
}

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::vector<uint8_t> take_sqlite_bytes(void* p, int n) {
  const auto* b = static_cast<const uint8_t*>(p);
  std::vector<uint8_t> out;
  if (b != nullptr && n > 0) out.assign(b, b + n);
  sqlite3_free(p);
  return out;
}

int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace dtx::participant::sqlite
