// Small helpers over SQLite's C API for the SQLite participant: owning
// handles, result-code names, stored values with their exact type, and
// one-shot statements. Nothing here knows about branches or the agent WAL.
//
// Threading: the functions are reentrant; a connection is used by one thread
// at a time (the resource serialises its connections).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "participant/resource.h"

namespace dtx::participant::sqlite {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbHandle = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtHandle = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// "SQLITE_CONSTRAINT_UNIQUE" for an (extended) result code; "SQLITE_<n>"
// for a code this SQLite does not name.
std::string result_code_name(int code);

// The connection's last error as a DbError: the extended code's name and
// SQLite's message.
DbError last_error(sqlite3* db);
// "SQLITE_BUSY: database is locked" for Status messages.
std::string describe_last_error(sqlite3* db);

// Opens a connection with extended result codes on. flags are
// SQLITE_OPEN_* (READWRITE, CREATE, READONLY); FULLMUTEX is always added.
Result<DbHandle> open_connection(const std::string& path, int flags);

// Runs SQL with no parameters and no rows wanted (PRAGMA, BEGIN, COMMIT).
Status exec_simple(sqlite3* db, const char* sql);

// Prepares exactly `sql` (internal statements only; user SQL goes through
// the branch's checks).
Result<StmtHandle> prepare_internal(sqlite3* db, std::string_view sql);

// The first row's first column as text of a one-row query (PRAGMA
// journal_mode=WAL answers "wal").
Result<std::string> query_text(sqlite3* db, const char* sql);

// A value as SQLite stores it: its storage class and its bytes, so two
// values compare equal only when SQLite would store the same thing.
struct StoredValue {
  int type = SQLITE_NULL;  // SQLITE_INTEGER, _FLOAT, _TEXT, _BLOB, _NULL
  int64_t i = 0;
  double d = 0;
  std::string bytes;  // TEXT (UTF-8) and BLOB

  friend bool operator==(const StoredValue& a, const StoredValue& b);
};

StoredValue stored_column(sqlite3_stmt* stmt, int col);
StoredValue stored_value(sqlite3_value* v);
// Binds a StoredValue at index (1-based).
int bind_stored(sqlite3_stmt* stmt, int index, const StoredValue& v);
// SQL-literal rendering: 42, 1.5, 'it''s', X'00ff', NULL.
std::string render_value(const StoredValue& v);
// Quotes an identifier for SQL: "a""b".
std::string quote_ident(std::string_view name);

// Copies n bytes SQLite allocated at p and frees them (sqlite3_free).
std::vector<uint8_t> take_sqlite_bytes(void* p, int n);

// Milliseconds since the Unix epoch (the marker's created_at).
int64_t unix_now_ms();

}  // namespace dtx::participant::sqlite
