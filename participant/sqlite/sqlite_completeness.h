// The check that a branch's changeset holds every row the branch changed
// (rule A6), run at prepare before the changeset is made durable.
//
// The session extension records nothing, without an error, for tables with
// no PRIMARY KEY and for rows with a NULL in a PRIMARY KEY column (SQLite
// lets a rowid table's non-INTEGER key hold NULL). The first is refused
// before a statement runs (sqlite_guard.h); the second can only be seen in
// the data. A plain count (changes in the changeset = rows the statements
// reported + the marker) does not work: the changeset holds net changes (a
// row updated twice is one change, a row inserted then deleted is none) and
// it also holds the rows triggers and foreign-key actions changed. So the
// check is per row:
//   - RowTracker collects, through sqlite3_update_hook, the rowid of every
//     row inserted, updated or deleted in a rowid table of "main" while the
//     branch ran, including by triggers and foreign-key actions;
//   - check_complete() compares each such row as it is in the branch (the
//     writer connection) and as it was before (a reader connection: the
//     branch is not committed, and the agent is the only writer). For every
//     row that differs, the changeset must account for the row as it was
//     (a DELETE or UPDATE whose key finds it before the branch) if it was
//     there, and for the row as it is (an INSERT or UPDATE whose key finds
//     it in the branch) if it is there. (Updating a row's NULL key to a
//     value is recorded as an INSERT alone: the old row would survive the
//     redo.)
// WITHOUT ROWID tables are not reported by the hook and need no check: their
// PRIMARY KEY columns are NOT NULL.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "participant/sqlite/sqlite_changeset.h"

namespace dtx::participant::sqlite {

class RowTracker {
 public:
  // rows_max bounds the distinct rows one branch may change.
  explicit RowTracker(size_t rows_max) : rows_max_(rows_max) {}

  // Registers as db's update hook; uninstall() removes it.
  void install(sqlite3* db);
  static void uninstall(sqlite3* db);

  // More distinct rows changed than rows_max.
  bool overflowed() const { return overflowed_; }
  // Sorts and de-duplicates; then rows() is the distinct rowids per table.
  void finish();
  const std::map<std::string, std::vector<int64_t>>& rows() const { return rows_; }

 private:
  static void on_update(void* self, int op, const char* schema, const char* table,
                        sqlite3_int64 rowid);
  void compact();

  size_t rows_max_;
  size_t count_ = 0;
  size_t compacted_ = 0;
  bool overflowed_ = false;
  std::map<std::string, std::vector<int64_t>> rows_;
};

// "" when every changed row is in `changes`, else which row escaped.
Result<std::string> check_complete(sqlite3* writer, sqlite3* reader, const RowTracker& tracker,
                                   const std::vector<Change>& changes);

}  // namespace dtx::participant::sqlite
