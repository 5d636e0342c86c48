// SqliteResource: a SQLite database file as a participant of dtx
// transactions (participant/resource.h is the contract; CORRECTNESS.md A5,
// A6, T5, T6 and W1-W5 are the rules).
//
// SQLite has no prepared state, so the agent makes one.
//
// Branch life cycle
//   begin(txid)   waits (at most busy_wait) until no other branch holds the
//                 write lock, then BEGIN IMMEDIATE on the writer connection
//                 and attaches a session (sqlite3session, all tables of
//                 "main") that records the branch's row changes.
//   exec()        one statement, parameters bound by position ($1..$n, ?NNN
//                 or ?); vetted before it runs (sqlite_guard.h): DDL,
//                 transaction control, ATTACH/DETACH, temp and attached
//                 schemas, writing PRAGMAs, writes to views, virtual tables,
//                 tables without an explicit PRIMARY KEY or with generated
//                 columns are refused with sqlstate kRefusedByDtx. SQLite's
//                 errors come back as the extended result code's name
//                 ("SQLITE_CONSTRAINT_UNIQUE") and message. Any failure
//                 dooms the branch: no statement runs on it afterwards, and
//                 it votes no.
//   end_read_only()  before prepare(): a branch that changed no row ends
//                 with COMMIT at once and frees the write lock (a read_only
//                 vote: no marker, no WAL record).
//   prepare()     inserts the marker row (txid, now) into dtx_markers,
//                 refuses unresolved deferred foreign-key violations (COMMIT
//                 would fail after a yes vote), takes the changeset (redo),
//                 checks it holds every row the branch changed
//                 (sqlite_completeness.h), inverts it (undo), appends
//                 PREPARED{txid, redo, undo} to the agent WAL and waits for
//                 its fsync, then votes yes with the SQLite transaction still
//                 open: the write lock stays held until the decision.
//   commit_one_phase()  the one-phase fast path, instead of prepare():
//                 inserts the same marker row and COMMITs at once
//                 (synchronous=FULL in WAL mode makes it durable). No
//                 changeset, no agent WAL record: there is nothing to redo,
//                 and the marker row says it committed. A COMMIT SQLite
//                 refuses (a deferred foreign key) rolls back: aborted. An
//                 I/O error in COMMIT stops the resource (W5).
//   commit()      COMMIT (synchronous=FULL makes it durable), then appends
//                 COMMITTED without waiting: the marker row is the proof.
//   abort()       ROLLBACK, then ABORTED.
//   A COMMIT or ROLLBACK that fails is a local durability failure: the
//   resource stops and on_fatal runs (the PREPARED record lets recovery
//   redo the branch after the restart).
//   After a decision the next branch may take the write lock.
//
// Recovery (in open(), before anything is served; rule A5)
//   The agent WAL is read from its start. For every PREPARED record with no
//   later COMMITTED/ABORTED/RESOLVED record for its txid:
//   - marker row present: the branch committed before the crash; COMMITTED
//     is appended.
//   - marker row absent: the redo is applied on a connection of its own with
//     triggers off (SQLITE_DBCONFIG_ENABLE_TRIGGER) and foreign keys off,
//     inside BEGIN IMMEDIATE, with a conflict handler that aborts on any
//     conflict (sqlite_changeset.h: apply_strict). sqlite3changeset_apply
//     runs ordinary INSERT/UPDATE/DELETE statements, so with triggers on
//     they fire again, and with foreign keys on ON DELETE CASCADE deletes
//     the children again, although the changeset already holds every row
//     the triggers and cascades changed: the redo would then conflict with
//     itself or double the triggers' effects (reproduced in the tests).
//     With foreign keys enabled for branches, the violations
//     PRAGMA foreign_key_check finds after the redo must be the ones it
//     found before it. The transaction is then held open as the prepared
//     branch, and open() returns its txid so that the agent asks the
//     coordinator for the outcome.
//   - a conflict (someone changed those rows while the agent was down) is a
//     heuristic hazard: nothing is changed, the PREPARED record stays, an
//     error naming the txid is logged and open() fails naming the txid. An
//     operator inspects it (describe_prepared), repairs the data, and
//     settles it with resolve_by_operator() before the agent can start.
//   SQLite has one writer, so one recovered branch is held at a time.
//   Serialised branches leave at most one undecided PREPARED record (a
//   branch's decision is appended before the next branch's PREPARED record,
//   in the same fdatasync, and the WAL makes records durable in order). Should several be undecided
//   and without marker, the oldest is redone and held first; each next one is redone and held once
//   the previous one is decided, in WAL order, which is the order they prepared in. All of them are
//   returned by open() and listed by prepared(); commit() of one not yet held answers Code::busy
//   (decide the older one first), abort() of it just records ABORTED.
//   New branches wait until all are decided.
//   Once every record in a WAL prefix is decided, the prefix is truncated,
//   never past the FENCE record (see below).
//
// The fence (participant/fencing.h): save_fence() appends a FENCE record
// and waits for its fsync; recovery takes the last one as the fence, which
// load_fence() returns. Not in the database: SQLite's single write lock may
// be held by a prepared branch until its decision. Truncation keeps the
// FENCE record; once the log has grown half a segment past it, it is
// copied forward (appended again) and the old one may go when the copy is
// durable, so the fence never pins more than about two segments.
//
// Files
//   <db>                the database; opened with journal_mode=WAL and
//                       synchronous=FULL (read back; anything else refuses
//                       to open unless unsafe_no_fsync); dtx_markers(txid
//                       TEXT PRIMARY KEY, created_at INTEGER NOT NULL) is
//                       created if missing (created_at: milliseconds since
//                       the Unix epoch); rows below the coordinator's forget
//                       watermark are deleted by forget_below().
//   <db>.dtx-lock       flock'd for the resource's lifetime: one agent per
//                       database (a second open() gets Code::busy).
//   <wal_dir>/          the agent WAL (its LOCK is flock'd by SegmentedLog);
//                       record types in sqlite_wal_records.h.
//
// Values: parameters are null, booleans (bound as 0/1), int64, double and
// text. Columns come back as INTEGER -> int64_t, REAL -> double, TEXT ->
// std::string, NULL -> monostate, and BLOB -> std::string holding the
// blob's bytes unchanged (SqlValue has no blob alternative).
//
// Threading: every method is thread-safe; a Branch is used by one thread at
// a time and must be destroyed (or handed to prepare()) before its
// resource. commit() and abort() are serialised.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fs.h"
#include "common/status.h"
#include "participant/resource.h"
#include "participant/sqlite/sqlite_util.h"
#include "participant/sqlite/sqlite_wal_records.h"
#include "wal/segmented_log.h"

namespace dtx::participant::sqlite {

struct SqliteOptions {
  // The database file; created if missing.
  std::string db_path;
  // The agent WAL's directory; created if missing.
  std::string wal_dir;
  // How long begin() waits for the write lock (the previous branch to be
  // prepared and decided, then SQLite's own lock) before Code::busy.
  std::chrono::milliseconds busy_wait{5000};
  // File system for the agent WAL; null means POSIX. The database and its
  // lock file always use the real file system.
  FileSystem* wal_fs = nullptr;
  // Runs when the agent WAL or the database fails to make something durable
  // (W5). Default: log a critical line and abort the process.
  std::function<void(const Status&)> on_fatal;
  // PRAGMA foreign_keys for branches (SQLite's own default is off).
  bool foreign_keys = true;
  // Largest redo + undo of one branch (one WAL record); a larger branch
  // votes no.
  uint32_t changeset_bytes_max = 4u << 20;
  // Size of each agent WAL segment (must hold changeset_bytes_max).
  uint64_t wal_segment_bytes = 16ull << 20;
  // Distinct rows one branch may change; more votes no.
  size_t branch_rows_max = 1'000'000;
  // Rows one exec may return; more fails the statement.
  size_t result_rows_max = 100'000;
  // Tests only: called at named points with the txid, so a test can crash
  // the process there. Points: "prepared_durable" (PREPARED fsync'd, before
  // the yes vote), "db_committed" (after COMMIT, before COMMITTED is
  // appended), "db_rolled_back" (after ROLLBACK, before ABORTED),
  // "one_phase_committed" (after a one-phase COMMIT, before the answer).
  std::function<void(std::string_view point, const std::string& txid)> test_hook;
  // open() refuses a database whose synchronous does not read back FULL
  // unless this is set (then it warns): tests and throwaway set-ups only.
  bool unsafe_no_fsync = false;
};

class SqliteBranch;

class SqliteResource final : public Resource {
 public:
  explicit SqliteResource(SqliteOptions options);
  ~SqliteResource() override;
  SqliteResource(const SqliteResource&) = delete;
  SqliteResource& operator=(const SqliteResource&) = delete;

  // Locks (Code::busy if another agent serves the database or holds the
  // WAL), configures the database, recovers as described above. Fails with
  // Code::failed_precondition naming the txid on a conflicting redo.
  Result<std::vector<std::string>> open() override;
  Result<std::unique_ptr<Branch>> begin(const std::string& txid) override;
  Status prepare(std::unique_ptr<Branch> branch, DbError* err) override;
  // Read-only: no row changed since BEGIN (sqlite3_total_changes64) and an
  // empty changeset; then COMMIT and the write lock is free at once.
  Result<bool> end_read_only(std::unique_ptr<Branch>& branch, DbError* err) override;
  Result<Outcome> commit_one_phase(std::unique_ptr<Branch> branch, DbError* err) override;
  Result<Outcome> commit(const std::string& txid) override;
  Result<Outcome> abort(const std::string& txid) override;
  Result<Outcome> outcome_of(const std::string& txid) override;
  std::vector<std::string> prepared() const override;
  Result<txn::BallotId> load_fence() override;
  Status save_fence(const txn::BallotId& ballot) override;
  std::string describe() const override;
  bool healthy() override;
  // Deletes the markers of txids below the watermark (T3), taking the write
  // lock between branches (waiting at most 200 ms: Code::busy otherwise).
  Result<uint64_t> forget_below(const txn::Txid& watermark) override;

  // For an in-doubt branch whose redo conflicted (open() refused): records
  // that an operator settled it by hand, so the agent can start. Takes the
  // WAL's lock: run it while the agent is stopped. Code::not_found if the
  // txid has no undecided PREPARED record.
  static Status resolve_by_operator(const SqliteOptions& options, const std::string& txid,
                                    Outcome outcome);

 private:
  friend class SqliteBranch;

  // The prepared branch holding the write lock.
  struct Held {
    std::string txid;
    sqlite3* db = nullptr;  // writer_, or owned below for a recovered branch
    DbHandle owned;
  };
  // A recovered branch waiting for the write lock (normally none).
  struct Queued {
    std::string txid;
    std::vector<uint8_t> redo;
  };

  static wal::Options wal_options(const SqliteOptions& o);
  Status configure_writer();
  static Status register_txid_below(sqlite3* db);
  Status recover(std::vector<std::string>* in_doubt);
  // Redoes a recovered branch and holds it; Code::failed_precondition on a
  // conflict.
  Result<Held> redo(const std::string& txid, const std::vector<uint8_t>& redo);
  Result<bool> marker_exists(const std::string& txid);
  // Inserts txid's marker row in the transaction on db.
  static Status insert_marker(sqlite3* db, const std::string& txid, DbError* err);
  Result<Outcome> decide(const std::string& txid, bool commit);
  // After a decision: hands the write lock to the next queued branch or
  // frees it, and truncates the WAL.
  void after_decision(const std::string& txid);
  void append_decision(RecordType type, const std::string& txid);
  void maybe_truncate();
  void release_writer();  // an active branch ended without a prepared state
  void fail(const Status& s);
  Status check_usable() const;  // requires mu_
  bool writer_taken() const;    // requires mu_
  void hook(std::string_view point, const std::string& txid);
  void note_prepared(const std::string& txid, uint64_t lsn);  // a branch became held

  SqliteOptions opt_;
  std::unique_ptr<FileLock> db_lock_;
  std::unique_ptr<wal::SegmentedLog> wal_;
  DbHandle writer_;  // runs branches, one at a time

  std::mutex reader_mu_;
  DbHandle reader_;  // markers, before-images, health

  std::mutex decide_mu_;  // one commit()/abort() at a time

  mutable std::mutex mu_;
  std::condition_variable writer_cv_;  // the write lock was released
  bool opened_ = false;
  Status failed_;
  std::string active_txid_;  // a Branch holds the writer connection
  std::optional<Held> held_;
  std::deque<Queued> queued_;
  std::map<std::string, uint64_t> undecided_;  // txid -> LSN of its PREPARED record
  // COMMITTED/ABORTED records not yet appended: they go into the WAL just
  // before the next PREPARED record (so they share its fdatasync) or at
  // close. See append_decision().
  std::vector<std::pair<RecordType, std::string>> pending_decisions_;
  void flush_decisions();
  // The fence and its FENCE record (see "The fence" above).
  txn::BallotId fence_;
  uint64_t fence_lsn_ = 0;       // a durable FENCE record holding fence_; 0: none
  uint64_t fence_copy_lsn_ = 0;  // its copy forward, appended; 0: none under way
  uint64_t fence_bytes_at_ = 0;  // wal_->stats().bytes when fence_lsn_ was written
};

// Renders what the agent WAL in wal_dir holds for txid: the PREPARED record,
// the decision recorded for it (if any), and its redo and undo changesets,
// change by change (table, operation, key, old and new values). Reads the
// WAL read-only, without its lock: meant for a stopped agent (a running one
// may have records not yet visible). Column names come from db_path when
// given (opened read-only), else columns are c0, c1, ... Code::not_found
// when no PREPARED record for txid is left (decided ones may be truncated).
Result<std::string> describe_prepared(const std::string& wal_dir, const std::string& txid);
Result<std::string> describe_prepared(const std::string& wal_dir, const std::string& txid,
                                      const std::string& db_path);

}  // namespace dtx::participant::sqlite
