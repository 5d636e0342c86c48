// PgResource: a PostgreSQL database as a participant of dtx transactions
// (the Resource contract in participant/resource.h; CORRECTNESS.md A1-A4,
// A7). Built on libpqxx 6.4, with libpq for the one answer libpqxx hides.
//
// Sessions
//   - A control session, opened by open() and kept for the resource's
//     lifetime, holds the session-level advisory lock
//     pg_try_advisory_lock(advisory_lock_key(cluster, agent)) (pg_sql.h):
//     one agent of a name per database (A4). A second one fails open() with
//     Code::busy. If the control session breaks, the lock goes with it.
//     Every prepare, commit and abort (and healthy()) first reads, without
//     waiting, what the server sent the control session; one found lost
//     (its backend terminated, the server restarted) is re-opened and the
//     lock re-taken. While another agent holds the lock, those answer
//     Code::busy and healthy() is false. A control session cut off by a
//     silent network partition is found by healthy()'s bounded SELECT 1.
//   - A pool of branch sessions (PgOptions::pool_size), each connected once
//     and never reconnected (A1, pg_session.h). A session that breaks is
//     closed; a new connection replaces it for later branches.
//
// A branch
//   begin(txid)   takes a free session (waiting at most begin_wait, then
//                 Code::busy), runs BEGIN ISOLATION LEVEL <isolation> and
//                 records pg_backend_pid().
//   exec()        runs one statement with bound parameters. Statements that
//                 would end or change the transaction are refused by a
//                 first-keyword guard (statement_refusal() in pg_sql.h: a
//                 guard, not a parser). Any error dooms the branch: later
//                 execs fail at once without touching the session, and
//                 prepare() votes no.
//   end_read_only()  before prepare(): a branch with no transaction id
//                 (it wrote nothing) is committed at once and votes
//                 read_only: no marker, nothing prepared (see below).
//   prepare()     in one round trip (a libpq pipeline): inserts the marker
//                 row only if pg_backend_pid() is still the backend BEGIN ran
//                 on (A1), then PREPARE TRANSACTION
//                 'dtx:<cluster>:<txid>:<agent>'; votes yes only if the
//                 marker went in and the tag is "PREPARE TRANSACTION" (A2);
//                 anything prepared without its marker is rolled back. The session
//                 then goes back to the pool: the prepared transaction
//                 belongs to the server.
//   commit_one_phase()  the one-phase fast path, in one round trip: the
//                 same marker row (only on the branch's own backend, A1),
//                 then COMMIT, tag checked (A2); no PREPARE TRANSACTION.
//                 A COMMIT refused by the server (40001, 40P01, a deferred
//                 constraint) answers aborted with its SQLSTATE. A session
//                 lost around the COMMIT leaves the outcome unknown: the
//                 txid is remembered as unsettled with its backend pid, and
//                 settle_one_phase() (also from outcome_of()) terminates
//                 that backend if it is still there, waits until it is
//                 gone, and then reads the marker. (A reused pid could
//                 only be another dtx branch session of this agent's: that
//                 branch then votes no.)
//   commit()/     COMMIT PREPARED / ROLLBACK PREPARED on a free pool session,
//   abort()       or the control session when none is free. "No such
//                 prepared transaction" (42704) is settled by the marker
//                 (A3): present, committed; absent, aborted. So commit()
//                 answering aborted, or abort() answering committed, is a
//                 heuristic outcome someone else made (logged as an error;
//                 the agent alarms, T6). Both idempotent; a lost connection is
//                 Code::unavailable (retry later). There is no fsync of the
//                 agent's own: PostgreSQL's prepared state and the marker are
//                 the durable record.
//
// The marker table, created by open() if missing:
//   CREATE TABLE dtx_markers (cluster text, agent text, txid text,
//     created_at timestamptz DEFAULT now(), PRIMARY KEY (cluster, agent, txid))
// Keyed by all three because several agents, of one cluster or of several,
// may share a database: a txid is unique only within its cluster, and one
// transaction may have a branch on two agents of one database. A marker is
// visible only once its branch committed. Markers older than
// PgOptions::marker_retention (by created_at: when the branch began) are
// deleted by open() and by forget_old_markers(), which the agent should
// call periodically (e.g. daily). The retention must exceed the longest a
// txid can stay in doubt and then still be asked about (the coordinator's
// retention, T3): a commit() retried after its marker was deleted would
// answer aborted.
//
// The fence table, created by open() if missing:
//   CREATE TABLE dtx_fence (cluster text, agent text, round bigint,
//     node bigint, PRIMARY KEY (cluster, agent))
// One row per agent: the highest coordinator ballot it has seen
// (fencing.h). save_fence() upserts it on a session of its own (the fence
// session, opened by open() and re-opened if it broke), never lowering it,
// with synchronous_commit at least local (the server's own setting unless it
// is off), so the upsert has returned only once its commit is flushed;
// load_fence() reads it. Branches may not name it (statement_refusal()).
//
// Reconciliation (A4): open() returns the txids of the prepared
// transactions in pg_prepared_xacts of the current database whose gid is
// exactly dtx:<cluster>:<txid>:<agent> for this cluster and agent; they stay
// prepared until commit()/abort(). No other prepared transaction (other
// clusters, agents, databases, or not dtx's) is ever touched.
//
// PostgreSQL's gids are server-wide, while advisory locks and markers are
// per database: an agent name must be unique within its cluster on a whole
// server, or two databases' agents could collide on a gid (PREPARE then
// fails, a no vote). A gid of this agent found prepared in another database
// is left alone.
//
// Configuration checks: fsync and full_page_writes must be on (else open()
// fails with Code::failed_precondition, unless PgOptions::unsafe_no_fsync,
// which only warns); max_prepared_transactions must be at least the pool
// size (else open() fails with Code::failed_precondition, saying what to
// set); other agents on the same server need their share too.
//
// Isolation (A7): branches run at PgOptions::isolation, READ COMMITTED by
// default. A global transaction is not serializable across databases at
// any level; reads that must see a consistent pair should lock the rows
// they read (SELECT ... FOR SHARE).
//
// Threading: every method is thread-safe; a Branch is used by one thread at
// a time, and may outlive the resource (it keeps the pool alive).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "participant/pg/pg_sql.h"
#include "participant/resource.h"

namespace dtx::participant {

namespace pg {
class PgSession;
struct PgShared;
}  // namespace pg

// Branch isolation (A7).
enum class PgIsolation { read_committed, repeatable_read, serializable };
// "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE".
const char* isolation_sql(PgIsolation level);

struct PgOptions {
  // libpq conninfo ("host=... dbname=...") or URI ("postgresql://..."). A
  // password comes from here or from PGPASSWORD; it is never logged.
  // Network bounds (connect_timeout, tcp_user_timeout, keepalives) may be
  // set here too.
  std::string url;
  // Both go into every gid, dtx:<cluster>:<txid>:<agent>: 1..64 characters
  // of [A-Za-z0-9._-] (checked by open()).
  std::string cluster_id;
  std::string agent_name;
  // Branch sessions; also the least max_prepared_transactions accepted.
  size_t pool_size = 16;
  // Sessions for COMMIT/ROLLBACK PREPARED and marker look-ups; 0 means half
  // the pool, at least 2.
  size_t decision_sessions = 0;
  PgIsolation isolation = PgIsolation::read_committed;
  // statement_timeout of every session, branch statements included.
  std::chrono::milliseconds statement_timeout{30000};
  // How long begin() waits for a free branch session before Code::busy.
  std::chrono::milliseconds begin_wait{5000};
  // Bound on healthy(): waiting for the control session, and its SELECT 1.
  std::chrono::milliseconds health_timeout{2000};
  // Markers older than this are deleted (open(), forget_old_markers());
  // zero keeps them forever. Below the coordinator's forget watermark they
  // go sooner (forget_below()).
  std::chrono::hours marker_retention{24 * 7};
  // open() refuses a server with fsync or full_page_writes off unless this
  // is set (then it warns): tests and throwaway set-ups only.
  bool unsafe_no_fsync = false;
};

class PgResource final : public Resource {
 public:
  explicit PgResource(PgOptions options);
  ~PgResource() override;
  PgResource(const PgResource&) = delete;
  PgResource& operator=(const PgResource&) = delete;

  Result<std::vector<std::string>> open() override;
  Result<std::unique_ptr<Branch>> begin(const std::string& txid) override;
  Status prepare(std::unique_ptr<Branch> branch, DbError* err) override;
  // Asks the server only for a branch whose every statement began with
  // SELECT, VALUES, TABLE, SHOW or WITH (others are taken to have
  // written): read-only iff txid_current_if_assigned() is NULL on the
  // branch's own backend, i.e. it has no transaction id, which PostgreSQL
  // assigns at a branch's first write (row locks of FOR SHARE/UPDATE
  // included). Then COMMIT (tag checked). One extra round trip, for
  // read-looking branches only; what they save is PREPARE, the marker and
  // COMMIT PREPARED.
  Result<bool> end_read_only(std::unique_ptr<Branch>& branch, DbError* err) override;
  Result<Outcome> commit_one_phase(std::unique_ptr<Branch> branch, DbError* err) override;
  Result<Outcome> commit(const std::string& txid) override;
  Result<Outcome> abort(const std::string& txid) override;
  // commit(), abort() and outcome_of() answer Code::failed_precondition
  // while a branch of the txid is still running here (between begin() and
  // prepare() or rollback()); outcome_of() also while the txid is prepared:
  // its outcome is not decided yet, and its marker not visible.
  Result<Outcome> outcome_of(const std::string& txid) override;
  std::vector<std::string> prepared() const override;
  Result<txn::BallotId> load_fence() override;
  Status save_fence(const txn::BallotId& ballot) override;
  std::string describe() const override;
  bool healthy() override;

  // Deletes this agent's markers created before `before`.
  Status forget_markers_before(std::chrono::system_clock::time_point before);
  // forget_markers_before(now - marker_retention); nothing if it is zero.
  Status forget_old_markers();
  void housekeeping() override { (void)forget_old_markers(); }
  // Deletes this agent's markers of txids below the watermark (T3).
  Result<uint64_t> forget_below(const txn::Txid& watermark) override;
  void maintain() override { retry_orphans(); }
  // Rolls back branches that voted no after their connection broke around
  // PREPARE TRANSACTION and whose first clean-up failed; at most once a
  // second (the agent's maintain() calls).
  void retry_orphans();

  const PgOptions& options() const { return options_; }

 private:
  Status check_open() const;
  Status check_options() const;
  std::string gid(const std::string& txid) const;
  Result<bool> take_agent_lock(pg::PgSession& s);
  // The server drops a closed session's locks only after the client has
  // gone; unlocking first lets a successor open at once.
  void release_agent_lock(pg::PgSession& s);
  Status check_server(pg::PgSession& s);
  // dtx_markers and dtx_fence.
  Status create_tables(pg::PgSession& s);
  // Runs f on the fence session, opening it (again) if needed; a session
  // found broken is replaced once. Caller holds fence_mu_.
  Status with_fence_session(const std::function<Status(pg::PgSession&)>& f);
  Result<std::vector<std::string>> reconcile(pg::PgSession& s);
  // Re-opens the control session and re-takes the lock if it broke.
  // Caller holds control_mu_.
  Status ensure_control();
  Status check_agent_lock();
  // commit/abort/outcome_of answer only for txids with no running branch.
  Status check_not_active(const std::string& txid) const;
  // Runs f on a free pool session, else on the control session.
  Status with_decision_session(const std::function<Status(pg::PgSession&)>& f);
  Result<bool> marker_exists(pg::PgSession& s, const std::string& txid);
  Result<Outcome> decide(const std::string& txid, Outcome wanted);
  // A one-phase COMMIT whose answer was lost (see commit_one_phase()):
  // committed or aborted once the branch's backend is gone, else
  // Code::unavailable (asked again later).
  Result<Outcome> settle_one_phase(const std::string& txid, int backend_pid);

  const PgOptions options_;
  std::shared_ptr<pg::PgShared> shared_;  // the pool and the txid sets; branches share it
  std::atomic<bool> open_{false};
  std::atomic<bool> lock_held_{false};

  std::timed_mutex control_mu_;
  std::unique_ptr<pg::PgSession> control_;

  std::mutex fence_mu_;  // the fence session: one load or save at a time
  std::unique_ptr<pg::PgSession> fence_session_;

  mutable std::mutex describe_mu_;
  std::string describe_;
};

}  // namespace dtx::participant
