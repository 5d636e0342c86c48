// Changesets of SQLite's session extension as the SQLite participant uses
// them: decoded for checks and for operators, inverted (the undo image),
// rendered readably, and applied exactly (the redo at recovery).
//
// A changeset holds, per table (by name, with its column count and which
// columns form the PRIMARY KEY), one change per row whose net content the
// transaction changed: INSERT (new values), DELETE (old values) or UPDATE
// (the key, and old and new values of the changed columns only). It does
// not hold column names.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "participant/sqlite/sqlite_util.h"

namespace dtx::participant::sqlite {

struct Change {
  std::string table;
  int op = 0;             // SQLITE_INSERT, SQLITE_UPDATE or SQLITE_DELETE
  bool indirect = false;  // made by a trigger or a foreign-key action
  std::vector<bool> pk;   // per column: part of the PRIMARY KEY
  // Per column; nullopt where the change holds no value (an UPDATE's
  // unchanged columns; old values of an INSERT, new values of a DELETE).
  std::vector<std::optional<StoredValue>> old_values;
  std::vector<std::optional<StoredValue>> new_values;

  // The key as stored: old values for UPDATE and DELETE, new for INSERT.
  std::vector<StoredValue> key() const;
};

const char* change_op_name(int op);  // "INSERT", "UPDATE", "DELETE"

Result<std::vector<Change>> decode_changeset(std::span<const uint8_t> changeset);

// The inverse changeset (INSERT <-> DELETE, old <-> new): applied after the
// changeset, it restores the rows as they were.
Result<std::vector<uint8_t>> invert_changeset(std::span<const uint8_t> changeset);

// Column names per table, for rendering; tables missing here (or whose
// column count differs) are rendered with c0, c1, ...
using ColumnNames = std::map<std::string, std::vector<std::string>>;

// One line per change, each starting with `indent`:
//   INSERT INTO accounts: id=1, owner='bob', balance=100
//   UPDATE accounts WHERE id=1: balance 100 -> 90
//   DELETE FROM accounts: id=1, owner='bob', balance=100
std::string render_changes(const std::vector<Change>& changes, const ColumnNames& names,
                           const std::string& indent);

// Applies `changeset` on db (inside the caller's transaction) so that it
// re-creates exactly the recorded rows, or changes nothing:
//   - every table must exist in "main" with the recorded column count and
//     PRIMARY KEY columns (sqlite3changeset_apply skips mismatched tables
//     silently, which would make the redo incomplete);
//   - any conflict (a row missing, different, already there, a constraint
//     or foreign-key failure) aborts the whole apply: never OMIT, never
//     REPLACE. A conflict means someone changed those rows since.
// On a conflict returns Code::failed_precondition and *conflict says which
// row and why. Triggers and foreign-key actions are the caller's business:
// the redo connection must have them off (sqlite_resource.h).
Status apply_strict(sqlite3* db, std::span<const uint8_t> changeset, std::string* conflict);

}  // namespace dtx::participant::sqlite
