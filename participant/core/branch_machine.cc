#include "participant/core/branch_machine.h"

#include <algorithm>

namespace dtx::participant {

BranchMachine::BranchMachine(std::string txid, const BranchTimers& timers, uint64_t now)
    : txid_(std::move(txid)), timers_(timers), last_activity_(now) {}

BranchMachine BranchMachine::recovered(std::string txid, const BranchTimers& timers, uint64_t now) {
  BranchMachine m(std::move(txid), timers, now);
  m.state_ = BranchState::prepared;
  m.inquiry_interval_ = timers.inquiry_first_ticks;
  m.next_inquiry_ = now;  // ask at once
  return m;
}

BranchMachine::ExecVerdict BranchMachine::on_exec(uint64_t seq, uint64_t now) {
  if (state_ != BranchState::active || prepare_running_ || decision_pending() || in_doubt_)
    return ExecVerdict::not_active;
  if (exec_running_) return ExecVerdict::busy;
  if (seq != exec_count_ + 1) return ExecVerdict::out_of_sequence;
  if (doomed_) return ExecVerdict::doomed;
  exec_running_ = true;
  last_activity_ = now;
  return ExecVerdict::run;
}

void BranchMachine::on_exec_done(uint64_t seq, std::string_view sql,
                                 const std::vector<SqlValue>& params, bool ok, const DbError& err,
                                 uint64_t now) {
  exec_running_ = false;
  exec_count_ = seq;
  digest_ = exec_digest(digest_, seq, sql, params);
  last_activity_ = now;
  if (!ok && !doomed_) {
    doomed_ = true;
    no_reason_ = err;
  }
}

BranchMachine::PrepareVerdict BranchMachine::on_prepare(uint64_t exec_count, uint64_t digest,
                                                        uint64_t now) {
  last_activity_ = now;
  switch (state_) {
    case BranchState::prepared:
    case BranchState::precommitted:
    case BranchState::committed:
      return PrepareVerdict::vote_yes;  // a repeat: the same answer
    case BranchState::aborted:
      return PrepareVerdict::vote_no;
    case BranchState::active:
      break;
  }
  if (exec_running_ || prepare_running_ || in_doubt_) return PrepareVerdict::busy;
  if (decision_pending()) {
    doom_for_abort_under_way();
    return PrepareVerdict::vote_no;
  }
  check_execs("prepare", exec_count, digest);
  prepare_running_ = true;
  return doomed_ ? PrepareVerdict::rollback : PrepareVerdict::run;
}

void BranchMachine::check_execs(const char* step, uint64_t exec_count, uint64_t digest) {
  if (doomed_ || (exec_count == exec_count_ && digest == digest_)) return;
  doomed_ = true;
  no_reason_ = DbError{std::string(kRefusedByDtx), std::string(step) + " names " +
                                                       std::to_string(exec_count) +
                                                       " execs or another digest; the branch ran " +
                                                       std::to_string(exec_count_) + " (T5)"};
}

void BranchMachine::doom_for_abort_under_way() {
  // An abort is under way: the answer is no (or aborted), and stays so even
  // if that abort is not carried out now (one branch never goes both ways).
  if (doomed_) return;
  doomed_ = true;
  no_reason_ = DbError{std::string(kRefusedByDtx), "an abort of the branch was under way"};
}

BranchMachine::OnePhaseVerdict BranchMachine::on_commit_one_phase(uint64_t exec_count,
                                                                  uint64_t digest, uint64_t now) {
  last_activity_ = now;
  switch (state_) {
    case BranchState::committed:
      return OnePhaseVerdict::committed;  // a repeat: the same answer
    case BranchState::aborted:
      return OnePhaseVerdict::aborted;
    case BranchState::prepared:
    case BranchState::precommitted:
      return OnePhaseVerdict::refused;  // it voted yes: its outcome is the coordinator's
    case BranchState::active:
      break;
  }
  if (in_doubt_) return OnePhaseVerdict::settle;
  if (exec_running_ || prepare_running_) return OnePhaseVerdict::busy;
  if (decision_pending()) {
    doom_for_abort_under_way();
    return OnePhaseVerdict::aborted;
  }
  check_execs("commit-one-phase", exec_count, digest);
  prepare_running_ = true;
  return doomed_ ? OnePhaseVerdict::rollback : OnePhaseVerdict::run;
}

void BranchMachine::on_one_phase_done(OnePhaseResult r, const DbError& err, uint64_t now) {
  prepare_running_ = false;
  last_activity_ = now;
  if (r != OnePhaseResult::unknown) in_doubt_ = false;
  switch (r) {
    case OnePhaseResult::committed:
    case OnePhaseResult::read_only:
      state_ = BranchState::committed;
      one_phase_ = true;
      read_only_ = r == OnePhaseResult::read_only;
      return;
    case OnePhaseResult::aborted:
      state_ = BranchState::aborted;
      if (!doomed_) no_reason_ = err;
      doomed_ = true;
      return;
    case OnePhaseResult::unknown:
      in_doubt_ = true;  // stays ACTIVE; the shell settles it from the marker
      return;
  }
}

void BranchMachine::on_prepare_done(bool yes, const DbError& err, uint64_t now) {
  prepare_running_ = false;
  last_activity_ = now;
  if (yes && !doomed_) {
    state_ = BranchState::prepared;
    schedule_inquiry(now, false);
  } else {
    state_ = BranchState::aborted;
    if (!doomed_) no_reason_ = err;
    doomed_ = true;
  }
}

void BranchMachine::on_prepare_read_only(uint64_t now) {
  prepare_running_ = false;
  last_activity_ = now;
  state_ = BranchState::committed;
  read_only_ = true;
}

BranchMachine::PrecommitVerdict BranchMachine::on_precommit(uint64_t now) {
  if (state_ == BranchState::prepared) {
    state_ = BranchState::precommitted;
    precommitted_at_ = now;
    return PrecommitVerdict::ok;
  }
  if (state_ == BranchState::precommitted || state_ == BranchState::committed) {
    return PrecommitVerdict::ok;
  }
  return PrecommitVerdict::refused;
}

BranchMachine::DecisionVerdict BranchMachine::on_commit() {
  switch (state_) {
    case BranchState::prepared:
    case BranchState::precommitted:
      if (decision_pending()) return DecisionVerdict::answer;
      deciding_ = true;
      return DecisionVerdict::run_commit;
    case BranchState::committed:
    case BranchState::aborted:
      return DecisionVerdict::answer;
    case BranchState::active:
      if (in_doubt_) return DecisionVerdict::answer;  // its one-phase COMMIT is being settled
      return DecisionVerdict::refused;                // nothing prepared to commit
  }
  return DecisionVerdict::refused;
}

BranchMachine::DecisionVerdict BranchMachine::on_abort() {
  switch (state_) {
    case BranchState::active:
      if (exec_running_ || prepare_running_ || decision_pending() || in_doubt_)
        return DecisionVerdict::answer;
      deciding_ = true;
      return DecisionVerdict::run_abort;
    case BranchState::prepared:
      if (decision_pending()) return DecisionVerdict::answer;
      deciding_ = true;
      return DecisionVerdict::run_abort;
    case BranchState::precommitted:
      return DecisionVerdict::refused;  // PRECOMMIT is the commit decision (T1)
    case BranchState::committed:
    case BranchState::aborted:
      return DecisionVerdict::answer;
  }
  return DecisionVerdict::refused;
}

bool BranchMachine::on_decided(Outcome asked, Outcome actual, uint64_t now) {
  deciding_ = false;
  decision_failed_ = false;
  last_activity_ = now;
  state_ = actual == Outcome::committed ? BranchState::committed : BranchState::aborted;
  return asked != actual;
}

std::optional<Outcome> BranchMachine::outcome() const {
  if (state_ == BranchState::committed) return Outcome::committed;
  if (state_ == BranchState::aborted) return Outcome::aborted;
  return std::nullopt;
}

void BranchMachine::schedule_inquiry(uint64_t now, bool backoff) {
  if (!backoff || inquiry_interval_ == 0) {
    inquiry_interval_ = timers_.inquiry_first_ticks;
  } else {
    inquiry_interval_ = std::min(inquiry_interval_ * 2, timers_.inquiry_max_ticks);
  }
  next_inquiry_ = now + inquiry_interval_;
}

BranchMachine::DecisionToken BranchMachine::arm_decision(BranchState in) {
  timer_token_ = ++tokens_issued_;
  timer_armed_in_ = in;
  return timer_token_;
}

BranchMachine::TickAction BranchMachine::on_tick(uint64_t now) {
  if (decision_pending() || exec_running_ || prepare_running_ || in_doubt_) return {};
  switch (state_) {
    case BranchState::active:
      if (now - last_activity_ >= timers_.active_idle_ticks) {
        return {TickKind::abort_idle, arm_decision(BranchState::active)};
      }
      return {};
    case BranchState::prepared:
      if (!inquiry_running_ && now >= next_inquiry_) {
        inquiry_running_ = true;
        return {TickKind::inquire, 0};
      }
      return {};
    case BranchState::precommitted:
      if (decision_failed_) {
        // The commit it tried did not complete (the database did not
        // answer): try again after another timeout, not every tick.
        decision_failed_ = false;
        precommitted_at_ = now;
        return {};
      }
      if (now - precommitted_at_ >= timers_.precommit_timeout_ticks) {
        return {TickKind::commit_alone, arm_decision(BranchState::precommitted)};
      }
      return {};
    default:
      return {};
  }
}

BranchMachine::DecisionVerdict BranchMachine::on_timer_decision(DecisionToken token) {
  if (token == 0 || token != timer_token_) return DecisionVerdict::answer;  // stale
  timer_token_ = 0;
  if (state_ != timer_armed_in_) return DecisionVerdict::answer;
  return state_ == BranchState::active ? on_abort() : on_commit();
}

void BranchMachine::drop_decision(DecisionToken token) {
  if (token != 0 && token == timer_token_) timer_token_ = 0;
}

void BranchMachine::on_decision_failed() {
  deciding_ = false;
  decision_failed_ = true;  // cleared by on_decided()
}

BranchMachine::DecisionVerdict BranchMachine::on_inquiry_answer(Answer a, uint64_t now) {
  inquiry_running_ = false;
  if (state_ != BranchState::prepared && state_ != BranchState::precommitted) {
    return DecisionVerdict::answer;
  }
  // Asked again after a backoff unless the decision now taken succeeds (a
  // database that is down is not asked every tick).
  schedule_inquiry(now, true);
  if (decision_pending()) return DecisionVerdict::answer;
  switch (a) {
    case Answer::committed:
      return DecisionVerdict::run_commit;
    case Answer::aborted:
      // A PRECOMMITTED branch told "aborted" contradicts the log (T1): the
      // shell's abort is refused and alarms.
      return state_ == BranchState::precommitted ? DecisionVerdict::refused
                                                 : DecisionVerdict::run_abort;
    case Answer::pending:
    case Answer::forgotten:  // an alarm for the agent; keep holding and asking
    case Answer::unreachable:
      return DecisionVerdict::answer;
  }
  return DecisionVerdict::answer;
}

bool BranchMachine::check_invariants(std::string* why) const {
  auto fail = [&](const char* what) {
    if (why) *why = std::string(what) + " (" + describe() + ")";
    return false;
  };
  const bool finished = state_ == BranchState::committed || state_ == BranchState::aborted;
  if (exec_running_ && (state_ != BranchState::active || prepare_running_)) {
    return fail("an exec runs outside ACTIVE or beside a prepare");
  }
  if (prepare_running_ && state_ != BranchState::active)
    return fail("a prepare runs outside ACTIVE");
  if (finished && (exec_running_ || prepare_running_ || deciding_ || timer_token_ != 0)) {
    return fail("a finished branch has work under way");
  }
  if (timer_token_ > tokens_issued_) return fail("a timer token that was never handed out");
  if (timer_token_ != 0 && state_ != timer_armed_in_) {
    return fail("a timer decision is pending for a state the branch left");
  }
  if (doomed_ && (state_ == BranchState::prepared || state_ == BranchState::precommitted ||
                  state_ == BranchState::committed)) {
    return fail("a doomed branch voted yes");
  }
  if (read_only_ && state_ != BranchState::committed) {
    return fail("a read-only branch is not committed");
  }
  if (one_phase_ && state_ != BranchState::committed) {
    return fail("a branch committed in one phase is not committed");
  }
  if (in_doubt_ && (state_ != BranchState::active || exec_running_ || prepare_running_ ||
                    deciding_ || timer_token_ != 0)) {
    return fail("a branch in doubt after a one-phase commit moved on");
  }
  return true;
}

std::string BranchMachine::describe() const {
  return txid_ + " " + state_name(state_) + (doomed_ ? " doomed" : "") +
         (read_only_ ? " read-only" : "") + (one_phase_ ? " one-phase" : "") +
         (in_doubt_ ? " in-doubt" : "") + " execs=" + std::to_string(exec_count_);
}

}  // namespace dtx::participant
