#include "participant/core/branch_machine.h"

#include <algorithm>
#include <cstring>

#include "common/crc32c.h"

namespace dtx::participant {

const char* state_name(BranchState s) {
  switch (s) {
    case BranchState::active:
      return "active";
    case BranchState::prepared:
      return "prepared";
    case BranchState::precommitted:
      return "precommitted";
    case BranchState::committed:
      return "committed";
    case BranchState::aborted:
      return "aborted";
  }
  return "?";
}

namespace {

// Folds bytes into a 64-bit digest made of two CRC-32C lanes.
uint64_t fold(uint64_t d, const void* p, size_t n) {
  const uint32_t lo = crc32c(p, n, static_cast<uint32_t>(d));
  const uint32_t hi = crc32c(p, n, static_cast<uint32_t>(d >> 32) ^ 0x9e3779b9u);
  return (uint64_t{hi} << 32) | lo;
}

uint64_t fold_u64(uint64_t d, uint64_t v) {
  uint8_t b[8];
  std::memcpy(b, &v, 8);
  return fold(d, b, 8);
}

}  // namespace

// The canonical encoding folded in, per exec: seq, the SQL's length and
// bytes, the parameter count, then per parameter a type tag (0 null, 1
// bool, 2 integer, 3 real, 4 text) and its value (bool and integer as 8
// bytes, real as its IEEE bits, text as length and bytes).
uint64_t exec_digest(uint64_t d, uint64_t seq, std::string_view sql,
                     const std::vector<SqlValue>& params) {
  d = fold_u64(d, seq);
  d = fold_u64(d, sql.size());
  d = fold(d, sql.data(), sql.size());
  d = fold_u64(d, params.size());
  for (const SqlValue& v : params) {
    d = fold_u64(d, v.index());
    if (const bool* b = std::get_if<bool>(&v)) d = fold_u64(d, *b ? 1 : 0);
    if (const int64_t* i = std::get_if<int64_t>(&v)) d = fold_u64(d, static_cast<uint64_t>(*i));
    if (const double* f = std::get_if<double>(&v)) {
      uint64_t bits;
      std::memcpy(&bits, f, 8);
      d = fold_u64(d, bits);
    }
    if (const std::string* s = std::get_if<std::string>(&v)) {
      d = fold_u64(d, s->size());
      d = fold(d, s->data(), s->size());
    }
  }
  return d;
}

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
  if (state_ != BranchState::active || prepare_running_ || deciding_)
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
  if (exec_running_ || prepare_running_) return PrepareVerdict::busy;
  if (deciding_) {
    // An abort is under way: the vote is no, and stays no even if that
    // abort is not carried out now (one branch never votes both ways).
    if (!doomed_) {
      doomed_ = true;
      no_reason_ = DbError{std::string(kRefusedByDtx), "an abort of the branch was under way"};
    }
    return PrepareVerdict::vote_no;
  }
  if (!doomed_ && (exec_count != exec_count_ || digest != digest_)) {
    doomed_ = true;
    no_reason_ =
        DbError{std::string(kRefusedByDtx), "prepare names " + std::to_string(exec_count) +
                                                " execs or another digest; the branch ran " +
                                                std::to_string(exec_count_) + " (T5)"};
  }
  prepare_running_ = true;
  return doomed_ ? PrepareVerdict::rollback : PrepareVerdict::run;
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
      if (deciding_) return DecisionVerdict::answer;
      deciding_ = true;
      return DecisionVerdict::run_commit;
    case BranchState::committed:
    case BranchState::aborted:
      return DecisionVerdict::answer;
    case BranchState::active:
      return DecisionVerdict::refused;  // nothing prepared to commit
  }
  return DecisionVerdict::refused;
}

BranchMachine::DecisionVerdict BranchMachine::on_abort() {
  switch (state_) {
    case BranchState::active:
      if (exec_running_ || prepare_running_ || deciding_) return DecisionVerdict::answer;
      deciding_ = true;
      return DecisionVerdict::run_abort;
    case BranchState::prepared:
      if (deciding_) return DecisionVerdict::answer;
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

BranchMachine::TickAction BranchMachine::on_tick(uint64_t now) {
  if (deciding_ || exec_running_ || prepare_running_) return TickAction::none;
  switch (state_) {
    case BranchState::active:
      if (now - last_activity_ >= timers_.active_idle_ticks) {
        deciding_ = true;
        return TickAction::abort_idle;
      }
      return TickAction::none;
    case BranchState::prepared:
      if (!inquiry_running_ && now >= next_inquiry_) {
        inquiry_running_ = true;
        return TickAction::inquire;
      }
      return TickAction::none;
    case BranchState::precommitted:
      if (decision_failed_) {
        // The commit it tried did not complete (the database did not
        // answer): try again after another timeout, not every tick.
        decision_failed_ = false;
        precommitted_at_ = now;
        return TickAction::none;
      }
      if (now - precommitted_at_ >= timers_.precommit_timeout_ticks) {
        deciding_ = true;
        return TickAction::commit_alone;
      }
      return TickAction::none;
    default:
      return TickAction::none;
  }
}

BranchMachine::DecisionVerdict BranchMachine::on_inquiry_answer(Answer a, uint64_t now) {
  inquiry_running_ = false;
  if (state_ != BranchState::prepared && state_ != BranchState::precommitted) {
    return DecisionVerdict::answer;
  }
  // Asked again after a backoff unless the decision now taken succeeds (a
  // database that is down is not asked every tick).
  schedule_inquiry(now, true);
  switch (a) {
    case Answer::committed:
      return on_commit();
    case Answer::aborted:
      return on_abort();
    case Answer::pending:
    case Answer::forgotten:  // an alarm for the agent; keep holding and asking
    case Answer::unreachable:
      return DecisionVerdict::answer;
  }
  return DecisionVerdict::answer;
}

std::string BranchMachine::describe() const {
  return txid_ + " " + state_name(state_) + (doomed_ ? " doomed" : "") +
         " execs=" + std::to_string(exec_count_);
}

}  // namespace dtx::participant
