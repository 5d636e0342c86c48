// The agent API: what the coordinator (and tests, and dtx-agent-bench) send
// to a participant agent, what the agent answers, and the one thing the
// agent asks the coordinator group. One implementation of every message's
// JSON, used by both sides: `X::to_json()` builds the body, `X::from_json()`
// reads it (Code::invalid_argument naming the field on anything malformed).
// Paths are built by the *_path() helpers. A reader of this header needs
// nothing from participant/.
//
// Authentication: every route but /healthz and /readyz needs
// `Authorization: Bearer <cluster token>` (401 missing, 403 wrong).
//
// Fencing (every coordinator request carries a Fence, at the top level of
// the body, or as query parameters on GETs):
//   "agent_id": "bank-a"                 the agent the sender means; an agent
//                                        answers 409 wrong_agent to any other
//   "ballot": {"round": 7, "node": 2}    the sender's Paxos ballot; exec,
//                                        prepare and batch from a ballot lower
//                                        than the highest the agent has seen
//                                        get 409 stale_ballot. Decisions
//                                        (precommit, commit, abort) are never
//                                        refused for their ballot (a decision
//                                        is the log's, whoever carries it), but
//                                        a higher one still raises the fence.
//   "watermark": "c1.7.2.1000"           optional: the group's forget
//                                        watermark (T3). Every txid below it
//                                        is finished and will never be asked
//                                        about again; the agent drops its
//                                        outcome records and marker rows below
//                                        it. It only moves up.
// The highest ballot is durable: a request that raises it is answered only
// once the agent has stored it (PostgreSQL: the table dtx_fence; SQLite: a
// FENCE record in the agent's WAL), and the agent loads it before serving
// after a restart. So once a new leader's sweep (or any request of its
// ballot) was answered, the deposed leader's exec, prepare and batch are
// refused for good. If it cannot be stored the request is answered 503
// unavailable and nothing ran.
//
// Routes (agent side):
//   POST /v1/branches/{txid}/exec       ExecRequest  -> 200 ExecAnswer
//        {"agent_id", "ballot", "seq": 1, "sql": "UPDATE t SET v = v + $1 WHERE id = $2",
//         "params": [5, 1]}
//        200 {"columns": ["v"], "rows": [[5]], "rows_affected": 1}
//        409 out_of_sequence (with "expected_seq"), not_active, doomed (with
//            "reason"), busy (another exec of the branch runs: ask again),
//            stale_ballot (with "highest_ballot"), wrong_agent
//        413 too_many_statements (the branch is doomed), or sql/params too large
//        422 sql_error (with "sqlstate"): the branch is doomed, it will vote no
//        503 no_session: no database session came free in time; this exec used
//            its seq and the branch is doomed (vote no) — never "ask again"
//        503 overloaded: the agent's queue is full; nothing ran, seq not used
//        410 forgotten: a new branch for a txid below the watermark (never opened)
//        400 invalid_argument: malformed body, or a txid that is not canonical or
//            not of the agent's cluster
//   POST /v1/branches/{txid}/prepare    PrepareRequest -> 200 VoteAnswer
//        {"agent_id", "ballot", "exec_count": 1, "digest": "<16 hex digits>"}
//        200 {"vote": "yes"} | {"vote": "read_only"}
//            | {"vote": "no", "reason": {"sqlstate", "message"}}
//        read_only: the branch wrote nothing (PostgreSQL: it has no
//        transaction id; SQLite: its changeset is empty and no row changed).
//        The agent has already ended its database transaction (committed:
//        nothing to commit), freed its session and locks, and recorded the
//        branch as committed and read-only; it takes no part in phase two.
//        A decision sent to it anyway is answered from that record with the
//        outcome asked, "read_only": true and no heuristic (either outcome
//        leaves its data as it was). A repeated prepare answers read_only.
//        409 busy, stale_ballot, wrong_agent
//   POST /v1/branches/{txid}/batch      BatchRequest -> 200 BatchAnswer
//        A one-shot branch: its statements and its prepare in one round trip.
//        The txid must be new to the agent. Statements run in order as execs
//        1..n; the first error stops the batch and the vote is no.
//        {"agent_id", "ballot", "statements": [{"sql", "params"}, ...]}
//        200 {"results": [{"columns", "rows", "rows_affected"} |
//                         {"error": {"code": "sql_error", "message", "sqlstate"}}, ...],
//             "vote": "yes" | "read_only" | "no", "reason"?: {"sqlstate", "message"}}
//        409 not_active (the txid is known: nothing ran), stale_ballot,
//            wrong_agent; 410 forgotten (below the watermark); 503 overloaded
//        With "one_phase": true the batch ends with commit-one-phase instead
//        of prepare, and the answer carries "outcome" (and "reason") in place
//        of "vote": {"results": [...], "outcome": "committed" | "aborted",
//        "reason"?, "read_only"?}.
//   POST /v1/branches/{txid}/commit-one-phase   PrepareRequest -> 200 OnePhaseAnswer
//        The one-phase fast path: a transaction with this one participant
//        commits here with no PREPARE and no decision record before it. The
//        agent checks exec_count and digest as prepare does, writes the
//        branch's marker row in the branch's own database transaction and
//        commits it: the marker present means committed, its absence (once
//        the branch is gone) aborted. A branch that wrote nothing commits
//        without a marker ("read_only": true).
//        {"agent_id", "ballot", "exec_count", "digest"}
//        200 {"outcome": "committed"} | {"outcome": "committed", "read_only": true}
//            | {"outcome": "aborted", "reason": {"sqlstate", "message"}}
//        A repeat, or an ask for a txid the agent no longer holds, answers
//        from its outcome record or the marker: committed if the marker is
//        there, else aborted (a branch not committed in one phase is gone
//        for good: its session was rolled back). Fenced like prepare (a lower
//        ballot is refused, also once admitted if a newer ballot was stored
//        meanwhile).
//        409 busy, stale_ballot, wrong_agent; 410 forgotten (below the
//        watermark and no record)
//   POST /v1/branches/{txid}/precommit  DecisionRequest -> 200 PrecommitAnswer
//        {"agent_id", "ballot"?}        200 {"state": "precommitted" | "committed"}
//        409 not_prepared, busy, wrong_agent
//   POST /v1/branches/{txid}/commit     DecisionRequest -> 200 DecisionAnswer
//   POST /v1/branches/{txid}/abort      DecisionRequest -> 200 DecisionAnswer
//        {"agent_id", "ballot"?, "watermark"?}
//        200 {"outcome": "committed" | "aborted", "heuristic": bool,
//             "read_only"?: true}: the outcome the branch actually has (T6);
//            heuristic when it differs from the one asked (an alarm on both
//            sides). For a branch that voted read_only: the outcome asked,
//            heuristic false, "read_only": true.
//        409 not_prepared (commit of an ACTIVE branch), precommitted (abort of
//            a PRECOMMITTED one), busy, wrong_agent
//        410 forgotten: a txid below the watermark the agent has no record of
//   GET  /v1/branches/{txid}?agent_id=..&ballot=7.2   200 BranchStatus; 404 not_found
//        {"txid", "state", "exec_count", "doomed", "busy", "outcome"?, "read_only"?}
//        busy: a step of the branch is running; state is the last one known.
//        read_only (only when true): it voted read_only (state committed).
//        The fencing parameters are optional (branch_path(txid, fence)); a
//        higher ballot raises the fence, as for the listing, so a new leader
//        can probe a branch and know that the old leader can no longer
//        prepare it. 409 wrong_agent for another agent_id.
//   GET  /v1/branches?state=prepared&after=<txid>&limit=1000&agent_id=..&ballot=7.2
//        200 BranchListAnswer {"branches": [{"txid", "state", "busy"}], "next"?: "<txid>"}
//        Every branch the agent holds, busy ones included (T10), in the
//        agent's order of txid texts; ask again with after=next until next
//        is absent. state filters (active, prepared, precommitted).
//   GET  /v1/agent                      200 AgentInfo
//        {"agent_id", "cluster", "database", "highest_ballot": {"round", "node"},
//         "watermark"?}
//   GET  /healthz, /readyz (the database answers), /metrics (Prometheus)
// Every error body is {"error": {"code", "message", ...}} (ApiError).
//
// Route (coordinator side), the agent's inquiry about a prepared branch:
//   GET /v1/transactions/{txid}/outcome   -> InquiryAnswer
//        200 {"txid", "outcome": "committed" | "aborted" | "pending", "watermark"?}
//        410 {"txid", "outcome": "forgotten", "watermark"?,
//             "error": {"code": "forgotten", "message"}}  (below the watermark
//             and unknown: an alarm for the agent, never a presumed abort)
//        307 with Location: ask the leader (a follower's answer)
//   The answer is read from the applied decision register (T1): committed
//   for a COMMIT or PRECOMMIT decision, aborted for ABORT, pending while the
//   register is empty and the leader drives the transaction. The agent
//   learns the watermark from it too.
//
// Threading: plain values, pure functions.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "txn/txid.h"
#include "txn/types.h"

namespace dtx::txn {

// --- paths ------------------------------------------------------------------

// "/v1/branches/{txid}/{step}", step: exec, prepare, batch, commit-one-phase,
// precommit, commit, abort.
std::string branch_step_path(std::string_view txid, std::string_view step);
// "/v1/branches/{txid}"
std::string branch_path(std::string_view txid);
// "/v1/transactions/{txid}/outcome"
std::string outcome_path(std::string_view txid);
inline constexpr std::string_view kAgentInfoPath = "/v1/agent";

// --- error codes (ApiError::code) -------------------------------------------

namespace errc {
inline constexpr std::string_view out_of_sequence = "out_of_sequence";          // 409
inline constexpr std::string_view not_active = "not_active";                    // 409
inline constexpr std::string_view doomed = "doomed";                            // 409
inline constexpr std::string_view busy = "busy";                                // 409: ask again
inline constexpr std::string_view stale_ballot = "stale_ballot";                // 409
inline constexpr std::string_view wrong_agent = "wrong_agent";                  // 409
inline constexpr std::string_view not_prepared = "not_prepared";                // 409
inline constexpr std::string_view precommitted = "precommitted";                // 409
inline constexpr std::string_view forgotten = "forgotten";                      // 410
inline constexpr std::string_view too_many_statements = "too_many_statements";  // 413
inline constexpr std::string_view sql_error = "sql_error";                      // 422
inline constexpr std::string_view no_session = "no_session";  // 503: the branch is doomed
inline constexpr std::string_view overloaded = "overloaded";  // 503: nothing ran
// 503: the database (or the agent's WAL) did not answer, e.g. while storing
// a raised fence: nothing ran, ask again.
inline constexpr std::string_view unavailable = "unavailable";
inline constexpr std::string_view invalid_argument = "invalid_argument";  // 400
inline constexpr std::string_view not_found = "not_found";                // 404
}  // namespace errc

// --- shared pieces ----------------------------------------------------------

// The branch life cycle's states (participant/core/branch_machine.h).
enum class BranchState { active, prepared, precommitted, committed, aborted };
// "active", "prepared", "precommitted", "committed", "aborted".
const char* branch_state_name(BranchState s);
std::optional<BranchState> parse_branch_state(std::string_view name);

// read_only: the branch wrote nothing and is already over (see prepare).
enum class Vote { yes, no, read_only };
// "yes", "no", "read_only".
const char* vote_name(Vote v);

// See "Fencing" above.
struct Fence {
  std::string agent_id;
  BallotId ballot;                // zero: not given (allowed on decisions and GETs only)
  std::optional<Txid> watermark;  // not given: unknown

  // Adds the fields to a body.
  void add_to(boost::json::object& body) const;
  // Reads them from a body. agent_id is required; the ballot is required
  // when ballot_required, else optional.
  static Result<Fence> from_json(const boost::json::value& body, bool ballot_required);
  // "agent_id=bank-a&ballot=7.2&watermark=c1.7.2.1000" for GETs ("" if empty).
  std::string query() const;
  // From a GET's decoded query parameters; every field optional.
  static Result<Fence> from_query(
      const std::function<std::optional<std::string_view>(std::string_view)>& param);
};

// "/v1/branches/{txid}?agent_id=..&ballot=..&watermark=..": GET of a branch
// with the fencing parameters.
std::string branch_path(std::string_view txid, const Fence& fence);

struct Statement {
  std::string sql;
  std::vector<SqlValue> params;
};

// Limits a decoder enforces beyond well-formedness (the agent's are
// configurable; these are its defaults).
struct ApiLimits {
  size_t params_max = 1024;
  size_t statements_max = 10000;
};

// --- requests and answers ---------------------------------------------------

struct ExecRequest {
  Fence fence;
  uint64_t seq = 0;  // 1, 2, ... (T5)
  std::string sql;   // not empty
  std::vector<SqlValue> params;

  boost::json::object to_json() const;
  static Result<ExecRequest> from_json(const boost::json::value& body, const ApiLimits& l = {});
};

// 200 answer of exec; also one successful statement of a batch.
struct ExecAnswer {
  Rows rows;

  boost::json::object to_json() const;
  static Result<ExecAnswer> from_json(const boost::json::value& body);
};

struct PrepareRequest {
  Fence fence;
  uint64_t exec_count = 0;  // execs sent, all answered 200 (0: none)
  uint64_t digest = 0;      // exec_digest() over them (exec_digest.h)

  boost::json::object to_json() const;
  static Result<PrepareRequest> from_json(const boost::json::value& body);
};

// 200 answer of prepare.
struct VoteAnswer {
  Vote vote = Vote::no;
  DbError reason;  // when no (a read_only vote carries none)

  boost::json::object to_json() const;
  static Result<VoteAnswer> from_json(const boost::json::value& body);
};

struct BatchRequest {
  Fence fence;
  std::vector<Statement> statements;  // at least one
  bool one_phase = false;             // end with commit-one-phase, not prepare

  boost::json::object to_json() const;
  static Result<BatchRequest> from_json(const boost::json::value& body, const ApiLimits& l = {});
};

// One statement of a batch: its rows, or the error that stopped the batch.
struct StatementResult {
  bool ok = false;
  Rows rows;      // when ok
  DbError error;  // when not: the database's reason (sqlstate "dtx01" for dtx's refusals)
};

// 200 answer of commit-one-phase (and the end of a one-phase batch).
struct OnePhaseAnswer {
  Outcome outcome = Outcome::aborted;
  DbError reason;          // when aborted
  bool read_only = false;  // committed, and it wrote nothing (no marker)

  boost::json::object to_json() const;
  static Result<OnePhaseAnswer> from_json(const boost::json::value& body);
};

// 200 answer of batch: one result per statement that ran (the batch stops
// at the first error), then the vote; for a one-phase batch, the outcome
// instead of the vote.
struct BatchAnswer {
  std::vector<StatementResult> results;
  VoteAnswer vote;                          // prepare form
  std::optional<OnePhaseAnswer> one_phase;  // one-phase form

  boost::json::object to_json() const;
  static Result<BatchAnswer> from_json(const boost::json::value& body);
};

// Body of precommit, commit and abort.
struct DecisionRequest {
  Fence fence;

  boost::json::object to_json() const;
  static Result<DecisionRequest> from_json(const boost::json::value& body);
};

// 200 answer of precommit.
struct PrecommitAnswer {
  BranchState state = BranchState::precommitted;  // precommitted, or committed

  boost::json::object to_json() const;
  static Result<PrecommitAnswer> from_json(const boost::json::value& body);
};

// 200 answer of commit and abort (T6).
struct DecisionAnswer {
  Outcome outcome = Outcome::aborted;  // what the branch actually has
  bool heuristic = false;              // it differs from the one asked: alarm
  bool read_only = false;              // the branch voted read_only (outcome: the one asked)

  boost::json::object to_json() const;
  static Result<DecisionAnswer> from_json(const boost::json::value& body);
};

// 200 answer of GET /v1/branches/{txid}; also an entry of a listing (txid,
// state and busy only).
struct BranchStatus {
  std::string txid;
  BranchState state = BranchState::active;
  uint64_t exec_count = 0;
  bool doomed = false;
  bool busy = false;  // a step is running: state is the last one known
  std::optional<Outcome> outcome;
  bool read_only = false;  // it voted read_only (state committed)

  boost::json::object to_json() const;
  static Result<BranchStatus> from_json(const boost::json::value& body);
};

// GET /v1/branches query.
struct BranchListRequest {
  static constexpr size_t kLimitMax = 10000;
  std::optional<BranchState> state;  // active, prepared or precommitted; none: all
  std::string after;                 // "": from the start; else the previous page's next
  size_t limit = 1000;               // 1..kLimitMax
  Fence fence;                       // optional on GETs

  // "/v1/branches?state=prepared&limit=1000&..."
  std::string path() const;
  // From the request's decoded query parameters.
  static Result<BranchListRequest> from_query(
      const std::function<std::optional<std::string_view>(std::string_view)>& param);
};

struct BranchListAnswer {
  std::vector<BranchStatus> branches;  // txid, state, busy
  std::optional<std::string> next;     // absent on the last page

  boost::json::object to_json() const;
  static Result<BranchListAnswer> from_json(const boost::json::value& body);
};

// 200 answer of GET /v1/agent.
struct AgentInfo {
  std::string agent_id;
  std::string cluster;
  std::string database;  // "postgresql bank@127.0.0.1:5432", "sqlite /var/lib/dtx/ledger.db"
  BallotId highest_ballot;
  std::optional<Txid> watermark;

  boost::json::object to_json() const;
  static Result<AgentInfo> from_json(const boost::json::value& body);
};

// The coordinator group's answer to GET /v1/transactions/{txid}/outcome.
enum class InquiryOutcome { committed, aborted, pending, forgotten };
const char* inquiry_outcome_name(InquiryOutcome o);

struct InquiryAnswer {
  std::string txid;
  InquiryOutcome outcome = InquiryOutcome::pending;
  std::optional<Txid> watermark;

  // 200, or 410 for forgotten.
  int http_status() const { return outcome == InquiryOutcome::forgotten ? 410 : 200; }
  boost::json::object to_json() const;
  // From a 200 or 410 answer's body.
  static Result<InquiryAnswer> from_json(const boost::json::value& body);
};

// An error body: {"error": {"code", "message", ...extra}}.
struct ApiError {
  std::string code;  // errc::...
  std::string message;
  std::optional<uint64_t> expected_seq;    // out_of_sequence
  std::optional<DbError> reason;           // doomed
  std::optional<std::string> sqlstate;     // sql_error
  std::optional<BallotId> highest_ballot;  // stale_ballot
  std::optional<std::string> state;        // not_active, not_prepared: the branch's state

  boost::json::object to_json() const;
  // From any body; Code::invalid_argument if it is not error-shaped.
  static Result<ApiError> from_json(const boost::json::value& body);
};

// Helpers for the pieces above, exposed for callers that build their own
// bodies (and for tests).
boost::json::object rows_to_json(const Rows& rows);
Result<Rows> rows_from_json(const boost::json::value& body);
boost::json::object db_error_to_json(const DbError& e);  // {"sqlstate", "message"}
boost::json::object ballot_to_json(const BallotId& b);   // {"round", "node"}
Result<BallotId> ballot_from_json(const boost::json::value& v, std::string_view what);
// "7.2" (query parameters).
Result<BallotId> parse_ballot_text(std::string_view text);

}  // namespace dtx::txn
