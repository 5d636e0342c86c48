// The agent's branch steps before the decision: exec, prepare, batch and
// precommit. Each takes the branch's lock (branch_table.h, LOCK ORDER),
// asks the BranchMachine, does the database work, and returns its answer
// after releasing the lock.
#include <chrono>
#include <thread>

#include "common/logging.h"
#include "participant/agent.h"
#include "rest/http.h"

namespace dtx::participant {

namespace json = boost::json;

// An error answer; state: the branch's state, for not_active/not_prepared.
// Shared with agent_decide.cc and agent_one_phase.cc.
StepAnswer api_error(int status, std::string_view code, std::string message,
                     std::optional<std::string> state = std::nullopt);
StepAnswer api_error(int status, std::string_view code, std::string message,
                     std::optional<std::string> state) {
  txn::ApiError e;
  e.code = std::string(code);
  e.message = std::move(message);
  e.state = std::move(state);
  return StepAnswer{status, e.to_json()};
}

namespace {

StepAnswer api_error(int status, txn::ApiError e) {
  return StepAnswer{status, e.to_json()};
}

}  // namespace

// Takes a branch's lock for a coordinator's step, waiting at most a few
// milliseconds: long enough for the ticker's glance or a step that is just
// answering, not for an exec that runs a statement (that answers busy).
bool lock_briefly(std::unique_lock<std::mutex>& lock) {
  for (int i = 0; i < 50; ++i) {
    if (lock.try_lock()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return false;
}

StepAnswer busy_answer() {
  return api_error(409, txn::errc::busy, "another step of this branch is running: ask again");
}

void Agent::after_step(BranchSlot& slot) {
  std::string why;
  DTX_ASSERT(slot.m.check_invariants(&why), why);
  slot.publish();
}

StepAnswer Agent::exec(const std::string& txid, const txn::ExecRequest& r) {
  if (auto a = admit(r.fence, /*fence_ballot=*/true)) return *a;
  std::shared_ptr<BranchSlot> slot = table_.find(txid);
  if (!slot) {
    txn::ApiError e;
    e.expected_seq = 1;
    if (table_.outcome(txid)) {
      e.code = std::string(txn::errc::not_active);
      e.message = "the branch is finished";
      return api_error(409, e);
    }
    if (r.seq != 1) {
      e.code = std::string(txn::errc::out_of_sequence);
      e.message = "unknown branch: its first exec has seq 1";
      return api_error(409, e);
    }
    const auto opened = table_.open(
        txid, [&] { return BranchMachine(txid, opt_.timers, now_ticks()); }, &slot);
    if (opened == BranchTable::OpenResult::forgotten) {
      return api_error(410, txn::errc::forgotten, "the txid is below the forget watermark");
    }
    if (opened == BranchTable::OpenResult::finished) {  // decided while this exec was queued
      e.code = std::string(txn::errc::not_active);
      e.message = "the branch is finished";
      return api_error(409, e);
    }
  }
  std::lock_guard lock(slot->mu);
  if (auto a = fenced_meanwhile(txid, r.fence.ballot)) return *a;
  ExecResult x = exec_locked(*slot, txid, r.seq, r.sql, r.params);
  after_step(*slot);
  if (!x.ok) return std::move(x.error);
  return StepAnswer{200, txn::rows_to_json(x.rows)};
}

Agent::ExecResult Agent::exec_locked(BranchSlot& slot, const std::string& txid, uint64_t seq,
                                     const std::string& sql, const std::vector<SqlValue>& params) {
  ExecResult x;
  auto refuse = [&](int status, txn::ApiError e) {
    x.reason = DbError{std::string(kRefusedByDtx), e.message};
    x.error = api_error(status, std::move(e));
    return std::move(x);
  };
  txn::ApiError e;
  switch (slot.m.on_exec(seq, now_ticks())) {
    case BranchMachine::ExecVerdict::run:
      break;
    case BranchMachine::ExecVerdict::out_of_sequence:
      counters_.refused++;
      e.code = std::string(txn::errc::out_of_sequence);
      e.message = "exec out of sequence";
      e.expected_seq = slot.m.exec_count() + 1;
      return refuse(409, std::move(e));
    case BranchMachine::ExecVerdict::busy:
      e.code = std::string(txn::errc::busy);
      e.message = "another exec of this branch is running";
      return refuse(409, std::move(e));
    case BranchMachine::ExecVerdict::doomed:
      e.code = std::string(txn::errc::doomed);
      e.message = "an earlier statement failed; the branch will vote no";
      e.reason = slot.m.vote_no_reason();
      return refuse(409, std::move(e));
    case BranchMachine::ExecVerdict::not_active:
      counters_.refused++;
      logging::txn_warn(txid, "exec {} refused: branch is {}", seq, state_name(slot.m.state()));
      e.code = std::string(txn::errc::not_active);
      e.message = std::string("the branch is ") + state_name(slot.m.state());
      e.state = state_name(slot.m.state());
      return refuse(409, std::move(e));
  }
  if (seq > opt_.execs_per_branch_max) {
    x.reason = DbError{std::string(kRefusedByDtx), "too many statements in one branch"};
    slot.m.on_exec_done(seq, sql, params, false, x.reason, now_ticks());
    x.error = api_error(413, txn::errc::too_many_statements, x.reason.message);
    return x;
  }
  if (!slot.session) {
    auto b = resource_->begin(txid);
    if (!b.ok()) {
      // This exec used its seq and the branch is doomed: never "ask again"
      // (busy), whatever the database's reason was.
      x.reason = DbError{"", b.status().message()};
      slot.m.on_exec_done(seq, sql, params, false, x.reason, now_ticks());
      logging::txn_info(txid, "no database session ({}): the branch will vote no",
                        b.status().describe());
      x.error = api_error(503, txn::errc::no_session,
                          "no database session for the branch (" + b.status().describe() +
                              "); the branch is doomed and will vote no");
      return x;
    }
    slot.session = std::move(*b);
    counters_.begun++;
    logging::txn_debug(txid, "branch begun");
  }
  auto rows = slot.session->exec(sql, params, &x.reason);
  slot.m.on_exec_done(seq, sql, params, rows.ok(), x.reason, now_ticks());
  if (!rows.ok()) {
    logging::txn_info(txid, "exec {} failed ({} {}): the branch will vote no", seq,
                      x.reason.sqlstate, x.reason.message);
    if (x.reason.message.empty()) x.reason.message = rows.status().message();
    txn::ApiError err;
    err.code = std::string(txn::errc::sql_error);
    err.message = x.reason.message;
    err.sqlstate = x.reason.sqlstate;
    x.error = api_error(422, std::move(err));
    return x;
  }
  x.ok = true;
  x.rows = std::move(*rows);
  return x;
}

StepAnswer Agent::prepare(const std::string& txid, const txn::PrepareRequest& r) {
  if (auto a = admit(r.fence, /*fence_ballot=*/true)) return *a;
  std::shared_ptr<BranchSlot> slot = table_.find(txid);
  if (!slot) return prepare_unknown(txid);
  // Never wait long for the branch's lock (an exec may hold it for as long
  // as a statement runs): a step still running answers busy, and the
  // coordinator asks again.
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (!lock_briefly(lock)) return busy_answer();
  if (auto a = fenced_meanwhile(txid, r.fence.ballot)) return *a;
  bool busy = false;
  txn::VoteAnswer v = prepare_locked(*slot, txid, r.exec_count, r.digest, &busy);
  after_step(*slot);
  if (busy) return api_error(409, txn::errc::busy, "an exec or prepare of this branch is running");
  return StepAnswer{200, v.to_json()};
}

// A finished branch answers from its outcome; an unknown one votes no.
StepAnswer Agent::prepare_unknown(const std::string& txid) {
  auto t = table_.outcome(txid);
  txn::VoteAnswer v;
  if (t == Outcome::committed) {
    v.vote = table_.read_only(txid) ? txn::Vote::read_only : txn::Vote::yes;
  } else {
    v.reason = DbError{std::string(kRefusedByDtx), t ? "the branch aborted" : "unknown branch"};
  }
  return StepAnswer{200, v.to_json()};
}

txn::VoteAnswer Agent::prepare_locked(BranchSlot& slot, const std::string& txid,
                                      uint64_t exec_count, uint64_t digest, bool* busy) {
  txn::VoteAnswer yes{txn::Vote::yes, {}};
  auto no = [&](DbError why) {
    counters_.votes_no++;
    logging::txn_info(txid, "votes no ({} {})", why.sqlstate, why.message);
    retire_no(slot, txid);
    return txn::VoteAnswer{txn::Vote::no, std::move(why)};
  };
  switch (slot.m.on_prepare(exec_count, digest, now_ticks())) {
    case BranchMachine::PrepareVerdict::vote_yes:
      return slot.m.read_only() ? txn::VoteAnswer{txn::Vote::read_only, {}} : yes;
    case BranchMachine::PrepareVerdict::vote_no:
      return txn::VoteAnswer{txn::Vote::no, slot.m.vote_no_reason()};
    case BranchMachine::PrepareVerdict::busy:
      *busy = true;
      return txn::VoteAnswer{};
    case BranchMachine::PrepareVerdict::rollback: {
      if (slot.session) slot.session->rollback();
      slot.session.reset();
      slot.m.on_prepare_done(false, slot.m.vote_no_reason(), now_ticks());
      return no(slot.m.vote_no_reason());
    }
    case BranchMachine::PrepareVerdict::run:
      break;
  }
  DbError err;
  if (slot.session) {
    // A branch that wrote nothing ends here: no marker, nothing prepared,
    // no part in phase two.
    auto read_only = resource_->end_read_only(slot.session, &err);
    if (!read_only.ok()) {
      if (err.message.empty())
        err = DbError{std::string(kRefusedByDtx), read_only.status().message()};
      slot.session.reset();
      slot.m.on_prepare_done(false, err, now_ticks());
      return no(err);
    }
    if (*read_only) {
      slot.m.on_prepare_read_only(now_ticks());
      counters_.votes_read_only++;
      logging::txn_info(txid, "wrote nothing: votes read_only, its transaction is over");
      table_.retire(txid, Outcome::committed, now_ms(), /*read_only=*/true);
      return txn::VoteAnswer{txn::Vote::read_only, {}};
    }
  }
  Status s = slot.session ? resource_->prepare(std::move(slot.session), &err)
                          : error(Code::failed_precondition, "no statement ran in this branch");
  if (!s.ok() && err.message.empty()) err = DbError{std::string(kRefusedByDtx), s.message()};
  slot.m.on_prepare_done(s.ok(), err, now_ticks());
  if (!s.ok()) return no(err);
  counters_.votes_yes++;
  logging::txn_info(txid, "prepared: votes yes");
  return yes;
}

void Agent::retire_no(BranchSlot& slot, const std::string& txid) {
  (void)slot;  // held by the caller: the branch leaves the table under its lock
  table_.retire(txid, Outcome::aborted, now_ms());
}

StepAnswer Agent::batch(const std::string& txid, const txn::BatchRequest& r) {
  if (auto a = admit(r.fence, /*fence_ballot=*/true)) return *a;
  std::shared_ptr<BranchSlot> slot;
  const auto opened = table_.open(
      txid, [&] { return BranchMachine(txid, opt_.timers, now_ticks()); }, &slot);
  if (opened == BranchTable::OpenResult::forgotten) {
    return api_error(410, txn::errc::forgotten, "the txid is below the forget watermark");
  }
  if (opened != BranchTable::OpenResult::opened) {
    return api_error(409, txn::errc::not_active,
                     "the txid is known here: a batch opens a new branch, and nothing ran");
  }
  std::lock_guard lock(slot->mu);
  if (auto a = fenced_meanwhile(txid, r.fence.ballot)) {
    // Nothing ran: the branch just opened leaves the table again (a later
    // batch of a current leader for this txid is not expected, T2).
    table_.retire(txid, Outcome::aborted, now_ms());
    return *a;
  }
  txn::BatchAnswer answer;
  uint64_t seq = 0;
  for (const txn::Statement& st : r.statements) {
    ExecResult x = exec_locked(*slot, txid, ++seq, st.sql, st.params);
    if (!x.ok) {
      answer.results.push_back(txn::StatementResult{false, {}, std::move(x.reason)});
      break;
    }
    answer.results.push_back(txn::StatementResult{true, std::move(x.rows), {}});
  }
  if (r.one_phase) {
    OnePhaseStep end = one_phase_locked(*slot, txid, slot->m.exec_count(), slot->m.digest());
    after_step(*slot);
    // Only an in-doubt COMMIT is refused here (503): the statements' results
    // are lost with it, and a repeated commit-one-phase settles the outcome.
    if (end.refusal) return std::move(*end.refusal);
    answer.one_phase = std::move(end.answer);
    return StepAnswer{200, answer.to_json()};
  }
  bool busy = false;
  answer.vote = prepare_locked(*slot, txid, slot->m.exec_count(), slot->m.digest(), &busy);
  DTX_ASSERT(!busy, "a batch holds its branch's lock from its first statement to its vote");
  after_step(*slot);
  return StepAnswer{200, answer.to_json()};
}

StepAnswer Agent::precommit(const std::string& txid, const txn::DecisionRequest& r) {
  if (auto a = admit(r.fence, /*fence_ballot=*/false)) return *a;
  std::shared_ptr<BranchSlot> slot = table_.find(txid);
  if (!slot) {
    if (table_.outcome(txid) == Outcome::committed) {
      return StepAnswer{200, txn::PrecommitAnswer{BranchState::committed}.to_json()};
    }
    return api_error(409, txn::errc::not_prepared, "no prepared branch with this txid");
  }
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (!lock_briefly(lock)) return busy_answer();
  const auto v = slot->m.on_precommit(now_ticks());
  after_step(*slot);
  if (v == BranchMachine::PrecommitVerdict::refused) {
    txn::ApiError e;
    e.code = std::string(txn::errc::not_prepared);
    e.message = std::string("the branch is ") + state_name(slot->m.state());
    e.state = state_name(slot->m.state());
    return api_error(409, std::move(e));
  }
  logging::txn_info(txid, "pre-committed");
  return StepAnswer{200, txn::PrecommitAnswer{slot->m.state()}.to_json()};
}

}  // namespace dtx::participant
