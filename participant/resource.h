// Resource: a database as a participant of dtx transactions. One
// implementation per kind of database: PostgreSQL (pg_resource.h) and SQLite
// (sqlite_resource.h). The agent (agent.h) drives it from its worker threads;
// the branch life cycle itself is decided by the pure BranchMachine
// (core/branch_machine.h), never here.
//
// Contract every implementation keeps (CORRECTNESS.md, A1-A7):
//   - A branch runs on one database session of its own, from a bounded pool;
//     a branch session never reconnects (A1): a lost session fails the branch.
//   - Statements take bound parameters only; SQL text is never spliced.
//   - prepare() inserts a marker row (txid) in the dtx-owned table
//     `dtx_markers` inside the branch, then makes the branch durable and
//     prepared, and only then returns ok (a yes vote). Any error before or
//     during prepare rolls the branch back and returns the reason (a no vote).
//   - end_read_only(), asked before prepare(), ends a branch that wrote
//     nothing at once (a read_only vote: no marker, nothing prepared). It
//     never says true of a branch that may have written.
//   - commit_one_phase(), instead of prepare() for a transaction with this
//     one participant, inserts the same marker row inside the branch and
//     commits the branch's own transaction: no prepared state. The marker
//     present means committed; absent (once the branch is gone), aborted.
//   - commit()/abort() of a prepared branch are idempotent and report the
//     outcome the database actually has (T6): a branch someone else rolled
//     back reports aborted even to commit(); the caller raises the alarm.
//   - outcome_of() answers for a txid no branch holds any more: committed if
//     its marker row exists, aborted otherwise (A3).
//   - open() takes the locks that make this agent the only one serving the
//     database (A4, A6), checks the configuration, and returns the branches
//     still prepared from before a restart, whose outcome must be asked of
//     the coordinator.
//   - The fence (fencing.h), the highest coordinator ballot the agent has
//     seen, is stored durably by save_fence() and read back by
//     load_fence() after a restart.
//
// Threading: every method is thread-safe; a Branch is used by one thread at
// a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"
#include "txn/txid.h"
#include "txn/types.h"

namespace dtx::participant {

// The shared vocabulary (txn/types.h), under the names participant/ has
// always used.
using txn::DbError;
using txn::kPrepareFailed;
using txn::kRefusedByDtx;
using txn::kSessionLost;
using txn::make_gid;
using txn::Outcome;
using txn::outcome_name;
using txn::Rows;
using txn::SqlValue;

// One branch's session. exec() until prepare (through Resource::prepare) or
// rollback(). Destroying an active Branch rolls it back.
class Branch {
 public:
  virtual ~Branch() = default;
  virtual const std::string& txid() const = 0;
  // Runs one statement inside the branch. On failure fills *err and returns
  // a non-ok Status; the branch is then doomed (the agent will vote no).
  virtual Result<Rows> exec(std::string_view sql, const std::vector<SqlValue>& params,
                            DbError* err) = 0;
  // Rolls the branch back (before prepare).
  virtual void rollback() = 0;
};

class Resource {
 public:
  virtual ~Resource() = default;

  // Locks, checks, crash recovery that needs no coordinator. Returns the
  // txids of branches still prepared (held, to be decided by commit/abort).
  virtual Result<std::vector<std::string>> open() = 0;

  // A new branch for txid; Code::busy when every session is in use (after a
  // bounded wait).
  virtual Result<std::unique_ptr<Branch>> begin(const std::string& txid) = 0;

  // Inserts the marker, makes the branch prepared and durable. Takes the
  // branch: from here on it is addressed by txid. ok means vote yes; an error
  // (with *err) means vote no, and the branch is already rolled back.
  virtual Status prepare(std::unique_ptr<Branch> branch, DbError* err) = 0;

  // The one-phase fast path, instead of prepare() (after end_read_only()
  // said false): inserts the marker in the branch's own transaction and
  // commits it (PostgreSQL: COMMIT, no PREPARE TRANSACTION; SQLite: COMMIT
  // with synchronous=FULL, no agent WAL record). Takes the branch.
  //   committed: the marker and the branch's writes are durable.
  //   aborted (with *err): the branch was doomed, or the database refused
  //     the COMMIT (serialization failure, deadlock, a constraint checked
  //     at commit); it is rolled back.
  //   an error: the answer to COMMIT was lost (the session broke): the
  //     outcome is unknown here, and outcome_of() settles it from the
  //     marker once the transaction can no longer change (Code::unavailable
  //     until then).
  virtual Result<Outcome> commit_one_phase(std::unique_ptr<Branch> branch, DbError* err) = 0;

  // Before prepare(): if the branch certainly wrote nothing, ends its
  // transaction (COMMIT: there is nothing to commit, and a serializable
  // database still checks its reads), frees its session and locks, resets
  // `branch` and returns true: the branch votes read_only. false: it wrote,
  // or may have; `branch` is untouched, prepare() it. An error (with *err):
  // ending it failed, the branch is rolled back and reset: vote no.
  virtual Result<bool> end_read_only(std::unique_ptr<Branch>& branch, DbError* err) = 0;

  // Decide a prepared branch. Idempotent; the Outcome is what the database
  // has now (aborted from commit() is a heuristic outcome: alarm).
  virtual Result<Outcome> commit(const std::string& txid) = 0;
  virtual Result<Outcome> abort(const std::string& txid) = 0;

  // For a txid with no prepared branch here: committed if its marker row
  // exists, else aborted.
  virtual Result<Outcome> outcome_of(const std::string& txid) = 0;

  // Prepared branches held now.
  virtual std::vector<std::string> prepared() const = 0;

  // The fence: after open(), the highest ballot stored (zero if none).
  virtual Result<txn::BallotId> load_fence() = 0;
  // Stores `ballot` as the highest ballot seen (never lowering what is
  // stored) and returns only once it is durable. Called one at a time, with
  // ballots that only rise; never from under a branch's lock.
  virtual Status save_fence(const txn::BallotId& ballot) = 0;

  // "postgresql bank@127.0.0.1:5432", for logs and /readyz.
  virtual std::string describe() const = 0;
  // Whether the database answers (for /readyz).
  virtual bool healthy() = 0;

  // Periodic clean-up (the agent calls it about once an hour from a worker):
  // e.g. marker rows older than the retention.
  virtual void housekeeping() {}
  // Cheap upkeep the agent calls about once a second from a worker: e.g.
  // retrying a clean-up that failed while the database was away.
  virtual void maintain() {}

  // Deletes the marker rows of this agent's txids below `watermark` (the
  // coordinator group's forget watermark, T3: they are finished and will
  // never be asked about again), except those of branches still held.
  // Called from a worker with a watermark that only rises, at most about
  // once a second. Returns how many rows went.
  virtual Result<uint64_t> forget_below(const txn::Txid& watermark) {
    (void)watermark;
    return uint64_t{0};
  }
};

}  // namespace dtx::participant
