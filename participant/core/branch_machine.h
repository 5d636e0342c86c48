// BranchMachine: the life cycle of one branch (one database's part of one
// global transaction) as a pure state machine: no I/O, no clock, no threads.
// The agent (participant/agent.h) feeds it requests, results of database
// work, ticks and coordinator answers, and does what it says.
//
//   ACTIVE --prepare(yes)--> PREPARED --precommit--> PRECOMMITTED
//     |  \                     |   \                     |
//     |   \                    |    commit --------------+--> COMMITTED
//     |    commit-one-phase ----------------------------------> COMMITTED
//     | exec error: doomed     |                         |    (also on its own
//     | (prepare votes no)     |                         |     timer, 3PC)
//     v                        v
//   ABORTED <----abort---------+   (abort of a PRECOMMITTED branch is refused: alarm)
//
// Rules (CORRECTNESS.md T5, T6, T8):
//   - Execs are sequenced: exec n runs only if n = last + 1, the branch is
//     ACTIVE, not doomed, and no other exec is running. A repeated or late
//     exec is refused, never run: no statement ever runs once the branch has
//     left ACTIVE.
//   - Any exec error dooms the branch: prepare then votes no.
//   - Prepare carries the exec count and the running digest of every exec
//     (exec_digest); a mismatch votes no.
//   - A branch that wrote nothing votes read_only: the shell ends its
//     database transaction at prepare and the branch is COMMITTED at once
//     (read_only()), taking no part in phase two.
//   - Commit-one-phase (a transaction with this one participant) checks
//     the exec count and digest as prepare does, then the shell writes the
//     marker and commits the branch's own transaction: ACTIVE -> COMMITTED
//     (one_phase()), or ABORTED when the database refuses the COMMIT. When
//     the database's answer was lost (the session broke during COMMIT) the
//     branch is in doubt (in_doubt()): it stays ACTIVE, takes no further
//     step (every other one answers busy) until a repeated
//     commit-one-phase settles it from the marker.
//   - A decision's answer carries the outcome actually applied; one that
//     differs from what was asked is a heuristic hazard the agent alarms on.
//   - A PREPARED branch never decides alone: it asks the coordinator group on
//     a timer with capped exponential backoff. A PRECOMMITTED branch whose
//     commit does not arrive in time commits by itself (the coordinator's
//     log already holds PRECOMMIT, the commit decision). An ACTIVE branch
//     idle too long aborts itself.
//   - Repeated prepare, precommit, commit and abort get the same answer.
//
// Timer decisions and their tokens: when a timer fires a decision (idle
// abort, 3PC commit-alone), on_tick() hands out a DecisionToken and marks
// the decision under way, so no exec or prepare slips in before the shell
// carries it out. The shell gives the token back exactly once: to
// on_timer_decision() when it runs the decision (which re-checks that the
// branch is still in the state the timer fired in), or to drop_decision()
// when it could not queue it. A token that is not the current one (already
// used, dropped, or superseded) is stale and ignored.
//
// check_invariants() holds after every step; the agent checks it after each
// one (DTX_ASSERT, on in release builds too).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "participant/resource.h"
#include "txn/agent_api.h"
#include "txn/exec_digest.h"

namespace dtx::participant {

using txn::BranchState;
inline const char* state_name(BranchState s) {
  return txn::branch_state_name(s);
}
using txn::exec_digest;

struct BranchTimers {
  uint64_t active_idle_ticks = 600;        // ACTIVE with no request: abort
  uint64_t inquiry_first_ticks = 10;       // PREPARED: first inquiry after
  uint64_t inquiry_max_ticks = 300;        // backoff cap
  uint64_t precommit_timeout_ticks = 100;  // PRECOMMITTED: commit alone after
};

class BranchMachine {
 public:
  // A new branch (its first exec arrived).
  BranchMachine(std::string txid, const BranchTimers& timers, uint64_t now);
  // A branch found prepared at start-up: ask the coordinator at once.
  static BranchMachine recovered(std::string txid, const BranchTimers& timers, uint64_t now);

  const std::string& txid() const { return txid_; }
  BranchState state() const { return state_; }
  bool doomed() const { return doomed_; }
  uint64_t exec_count() const { return exec_count_; }
  uint64_t digest() const { return digest_; }
  const DbError& vote_no_reason() const { return no_reason_; }

  // --- exec
  enum class ExecVerdict { run, out_of_sequence, not_active, busy, doomed };
  ExecVerdict on_exec(uint64_t seq, uint64_t now);
  // The exec that on_exec allowed finished; the digest folds it in.
  void on_exec_done(uint64_t seq, std::string_view sql, const std::vector<SqlValue>& params,
                    bool ok, const DbError& err, uint64_t now);

  // --- prepare
  enum class PrepareVerdict {
    run,       // prepare in the database (marker, durable prepared state)
    rollback,  // doomed: roll the session back, then on_prepare_done(false)
    vote_yes,  // a repeat of a prepare that voted yes
    vote_no,   // a repeat of one that voted no (or the branch aborted)
    busy,      // an exec or a prepare of this branch is still running
  };
  PrepareVerdict on_prepare(uint64_t exec_count, uint64_t digest, uint64_t now);
  void on_prepare_done(bool yes, const DbError& err, uint64_t now);
  // The prepare that on_prepare allowed (run) found that the branch wrote
  // nothing, and the shell ended its transaction: it voted read_only and
  // is COMMITTED.
  void on_prepare_read_only(uint64_t now);
  bool read_only() const { return read_only_; }

  // --- one-phase commit (the transaction has this one participant)
  enum class OnePhaseVerdict {
    run,        // write the marker and COMMIT the branch's transaction
    rollback,   // doomed (or the exec count or digest differ): roll the
                // session back, then on_one_phase_done(aborted)
    committed,  // a repeat: the branch committed (one_phase(), read_only())
    aborted,    // a repeat, or an abort under way: answer vote_no_reason()
    busy,       // an exec or another end of this branch is running
    refused,    // the branch is prepared: it is in two-phase commit
    settle,     // in doubt: the shell asks the database (the marker), then
                // on_one_phase_done(committed or aborted), or leaves it in doubt
  };
  OnePhaseVerdict on_commit_one_phase(uint64_t exec_count, uint64_t digest, uint64_t now);
  enum class OnePhaseResult {
    committed,  // the marker and the branch's writes are committed
    read_only,  // it wrote nothing: its transaction ended with no marker
    aborted,    // the database refused (err), or the rollback of a doomed branch
    unknown,    // the COMMIT's answer was lost: in doubt, settled by the marker
  };
  void on_one_phase_done(OnePhaseResult r, const DbError& err, uint64_t now);
  bool one_phase() const { return one_phase_; }
  bool in_doubt() const { return in_doubt_; }

  // --- 3PC pre-commit
  enum class PrecommitVerdict { ok, refused };
  PrecommitVerdict on_precommit(uint64_t now);

  // --- decisions (from the coordinator, an inquiry answer, or a timer)
  enum class DecisionVerdict {
    run_commit,  // commit the prepared branch in the database
    run_abort,   // roll back (active) or abort the prepared branch
    answer,      // already decided, or one under way: answer outcome() if any
    refused,     // abort of a PRECOMMITTED branch, or commit of an ACTIVE one
  };
  DecisionVerdict on_commit();
  DecisionVerdict on_abort();
  // The database work for a decision finished with `actual`. Returns true if
  // it differs from what was asked (a heuristic hazard).
  bool on_decided(Outcome asked, Outcome actual, uint64_t now);
  // The database work for a decision could not be done (it did not answer):
  // the branch stays as it was and will be decided again.
  void on_decision_failed();
  std::optional<Outcome> outcome() const;

  // --- time and the coordinator
  // A timer's decision under way; see "Timer decisions" above. 0 is never
  // handed out.
  using DecisionToken = uint64_t;
  enum class TickKind { none, abort_idle, inquire, commit_alone };
  struct TickAction {
    TickKind kind = TickKind::none;
    DecisionToken token = 0;  // abort_idle and commit_alone only
  };
  TickAction on_tick(uint64_t now);
  // The shell runs the timer decision `token` now: run_abort / run_commit
  // (the decision is taken, as by on_abort()/on_commit()), or answer when
  // the token is stale or the branch left the state the timer fired in.
  DecisionVerdict on_timer_decision(DecisionToken token);
  // The shell could not queue the timer decision: it is forgotten, and the
  // timer may fire again.
  void drop_decision(DecisionToken token);

  enum class Answer { committed, aborted, pending, forgotten, unreachable };
  // What an inquiry's answer asks for: run_commit or run_abort (the shell
  // then takes the decision through on_commit()/on_abort()), or answer:
  // keep waiting. Marks nothing.
  DecisionVerdict on_inquiry_answer(Answer a, uint64_t now);

  // The machine's invariants; false (with *why) if one is broken.
  bool check_invariants(std::string* why) const;
  std::string describe() const;

 private:
  // A prepare or commit-one-phase whose exec count or digest differ dooms the branch.
  void check_execs(const char* step, uint64_t exec_count, uint64_t digest);
  void doom_for_abort_under_way();
  bool decision_pending() const { return deciding_ || timer_token_ != 0; }
  void schedule_inquiry(uint64_t now, bool backoff);
  DecisionToken arm_decision(BranchState in);

  std::string txid_;
  BranchTimers timers_;
  BranchState state_ = BranchState::active;
  bool doomed_ = false;
  bool read_only_ = false;  // voted read_only (then COMMITTED)
  bool one_phase_ = false;  // committed in one phase (then COMMITTED)
  bool in_doubt_ = false;   // a one-phase COMMIT whose answer was lost (still ACTIVE)
  bool exec_running_ = false;
  bool prepare_running_ = false;  // a prepare or a one-phase commit is running
  uint64_t exec_count_ = 0;
  uint64_t digest_ = 0;
  DbError no_reason_;
  uint64_t last_activity_ = 0;
  uint64_t next_inquiry_ = 0;
  uint64_t inquiry_interval_ = 0;
  bool inquiry_running_ = false;
  uint64_t precommitted_at_ = 0;
  bool deciding_ = false;          // a decision's database work is under way
  bool decision_failed_ = false;   // the last decision under way did not complete
  DecisionToken timer_token_ = 0;  // the timer decision handed out, 0: none
  BranchState timer_armed_in_ = BranchState::active;
  DecisionToken tokens_issued_ = 0;
};

}  // namespace dtx::participant
