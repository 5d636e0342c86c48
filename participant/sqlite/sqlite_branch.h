// SqliteBranch: one branch of a dtx transaction on the SQLite resource's
// writer connection, from BEGIN IMMEDIATE until it is handed to prepare() or
// rolled back. Internal to participant/sqlite (sqlite_resource.h says what a
// branch may do).
//
// Threading: used by one thread at a time, as Branch says.
#pragma once

#include <sqlite3.h>

#include <string>
#include <vector>

#include "participant/resource.h"
#include "participant/sqlite/sqlite_completeness.h"

namespace dtx::participant::sqlite {

class SqliteResource;

class SqliteBranch final : public Branch {
 public:
  // Takes over an open BEGIN IMMEDIATE transaction on db and its session.
  SqliteBranch(SqliteResource* owner, std::string txid, sqlite3* db, sqlite3_session* session,
               size_t rows_max, size_t result_rows_max);
  // Rolls back if still active.
  ~SqliteBranch() override;

  const std::string& txid() const override { return txid_; }
  Result<Rows> exec(std::string_view sql, const std::vector<SqlValue>& params,
                    DbError* err) override;
  void rollback() override;

  // ---- for SqliteResource::prepare
  SqliteResource* owner() const { return owner_; }
  sqlite3* db() const { return db_; }
  bool active() const { return state_ == State::active; }
  bool doomed() const { return doomed_; }
  const DbError& doom_error() const { return first_error_; }
  // The session's changeset; ends the session and the row tracking.
  Result<std::vector<uint8_t>> take_changeset();
  const RowTracker& tracker() const { return tracker_; }
  // The branch is prepared: its transaction now belongs to the resource.
  void hand_over();
  // Whether the branch changed nothing: no row inserted, updated or
  // deleted on its connection since BEGIN (sqlite3_total_changes64,
  // triggers and foreign-key actions included) and an empty changeset.
  bool wrote_nothing() const;
  // Ends a branch that wrote nothing with COMMIT and frees the write lock.
  // An error: it was rolled back instead (or the resource failed).
  Status finish_read_only();
  // The one-phase fast path, once the marker row is in: COMMIT, and the
  // write lock is free. Code::failed_precondition (with *err): SQLite
  // refused the COMMIT (a deferred constraint, busy) and the branch is
  // rolled back. Code::io_error: the COMMIT failed in I/O, its durability
  // is unknown; the resource stops (W5) and the marker settles it after
  // the restart.
  Status finish_commit(DbError* err);

 private:
  enum class State { active, handed_over, rolled_back, finished };

  // Dooms the branch with e, fills *err, returns the matching Status.
  Status doom(DbError e, DbError* err);
  Status refuse(std::string reason, DbError* err);
  void end_session();

  SqliteResource* owner_;
  std::string txid_;
  sqlite3* db_;
  sqlite3_session* session_;
  size_t result_rows_max_;
  RowTracker tracker_;
  int64_t changes_at_begin_;  // sqlite3_total_changes64 of db_ at BEGIN
  State state_ = State::active;
  bool doomed_ = false;
  DbError first_error_;
};

}  // namespace dtx::participant::sqlite
