// What a branch statement may do, decided before it runs (rule A6: the
// prepared state must be complete, so nothing may change the database
// behind the session extension's back).
//
// Three checks, each conservative:
//   1. The first keyword must be SELECT, VALUES, WITH, INSERT, REPLACE,
//      UPDATE, DELETE or PRAGMA.
//   2. While the statement is compiled, SQLite's authorizer reports every
//      table, schema and operation it touches, including the bodies of the
//      triggers and the foreign-key actions it will fire. StatementGuard
//      refuses DDL, transaction control (BEGIN/COMMIT/ROLLBACK/SAVEPOINT/
//      RELEASE), ATTACH/DETACH, anything in a schema other than "main" (temp
//      tables included), writes to SQLite's own tables and to dtx_markers
//      (the proof of commit), and PRAGMAs other than a fixed list of
//      read-only ones; it collects the tables written.
//   3. After compiling, check_written_tables() refuses writes to a view, a
//      virtual table, a table with generated columns or a table without an
//      explicit PRIMARY KEY (the session extension silently skips those),
//      and the branch refuses a statement SQLite says writes whose target
//      the authorizer did not name.
// Only one statement per exec: trailing SQL other than blanks, comments and
// semicolons is refused (only_trivia).
#pragma once

#include <sqlite3.h>

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "participant/resource.h"

namespace dtx::participant::sqlite {

// The statement's first keyword, upper-cased ("" if none).
std::string first_keyword(std::string_view sql);
bool keyword_allowed(std::string_view keyword);

// True when `rest` holds only whitespace, SQL comments and semicolons.
bool only_trivia(std::string_view rest);

// Whether PRAGMA `name` (with or without an argument) only reads.
bool pragma_is_read_only(std::string_view name, bool has_argument);

// Installs itself as the connection's authorizer for its lifetime (around
// sqlite3_prepare only: SQLite and the session extension run statements of
// their own while a statement steps, and those must not be judged).
class StatementGuard {
 public:
  explicit StatementGuard(sqlite3* db);
  ~StatementGuard();
  StatementGuard(const StatementGuard&) = delete;
  StatementGuard& operator=(const StatementGuard&) = delete;

  // The first reason the authorizer refused, or "" when it allowed all.
  const std::string& refusal() const { return refusal_; }
  // Tables of "main" the statement (or a trigger or a foreign-key action it
  // fires) inserts into, updates or deletes from.
  const std::set<std::string>& written_tables() const { return written_; }

 private:
  static int callback(void* self, int action, const char* a1, const char* a2, const char* schema,
                      const char* trigger);
  int on_action(int action, const char* a1, const char* a2, const char* schema,
                const char* trigger);
  int deny(std::string reason);

  sqlite3* db_;
  std::string refusal_;
  std::set<std::string> written_;
};

// What SQLite's schema says about a table of "main".
struct TableShape {
  bool exists = false;
  std::string type;  // "table", "view", "virtual", "shadow"
  bool without_rowid = false;
  std::vector<std::string> columns;  // in table order (the changeset's order)
  std::vector<int> pk_columns;       // column indexes, in PRIMARY KEY order
  bool has_generated = false;        // generated (or hidden) columns
};

Result<TableShape> table_shape(sqlite3* db, const std::string& table);

// Check 3 above: "" when every written table may be written, else the reason.
Result<std::string> check_written_tables(sqlite3* db, const std::set<std::string>& tables);

// Binds params to $1..$n (also :n, @n, ?n and bare ?, by position). The
// number of parameters the statement refers to must equal params.size().
// Booleans bind as integers 0/1. Returns "" or what is wrong.
std::string bind_params(sqlite3_stmt* stmt, const std::vector<SqlValue>& params);

}  // namespace dtx::participant::sqlite
