// The one-phase fast path (txn/agent_api.h, "commit-one-phase"): a
// transaction with this one participant commits here with no PREPARE and no
// decision record before it. The branch's marker row goes into its own
// database transaction, which is then committed: the marker present means
// committed, its absence (once the branch is gone) aborted. So a lost answer
// is settled by asking again: the outcome record answers, or the marker.
#include "common/logging.h"
#include "participant/agent.h"
#include "rest/http.h"

namespace dtx::participant {

bool lock_briefly(std::unique_lock<std::mutex>& lock);  // agent_steps.cc
StepAnswer busy_answer();                               // agent_steps.cc
StepAnswer api_error(int status, std::string_view code, std::string message,
                     std::optional<std::string> state = std::nullopt);  // agent_steps.cc

namespace {

txn::OnePhaseAnswer committed_answer(bool read_only) {
  txn::OnePhaseAnswer a;
  a.outcome = Outcome::committed;
  a.read_only = read_only;
  return a;
}

txn::OnePhaseAnswer aborted_answer(DbError reason) {
  txn::OnePhaseAnswer a;
  a.outcome = Outcome::aborted;
  a.reason = std::move(reason);
  return a;
}

}  // namespace

StepAnswer Agent::commit_one_phase(const std::string& txid, const txn::PrepareRequest& r) {
  if (auto a = admit(r.fence, /*fence_ballot=*/true)) return *a;
  std::shared_ptr<BranchSlot> slot = table_.find(txid);
  if (!slot) return one_phase_unknown(txid);
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (!lock_briefly(lock)) return busy_answer();
  // Refused if a newer leader's ballot was stored while this step waited:
  // its sweep or probe may have passed the branch (as for prepare).
  if (auto a = fenced_meanwhile(txid, r.fence.ballot)) return *a;
  OnePhaseStep step = one_phase_locked(*slot, txid, r.exec_count, r.digest);
  after_step(*slot);
  if (step.refusal) return std::move(*step.refusal);
  return StepAnswer{200, step.answer.to_json()};
}

Agent::OnePhaseStep Agent::one_phase_locked(BranchSlot& slot, const std::string& txid,
                                            uint64_t exec_count, uint64_t digest) {
  using R = BranchMachine::OnePhaseResult;
  OnePhaseStep out;
  switch (slot.m.on_commit_one_phase(exec_count, digest, now_ticks())) {
    case BranchMachine::OnePhaseVerdict::committed:
      out.answer = committed_answer(slot.m.read_only());
      return out;
    case BranchMachine::OnePhaseVerdict::aborted:
      out.answer = aborted_answer(slot.m.vote_no_reason());
      return out;
    case BranchMachine::OnePhaseVerdict::busy:
      out.refusal = busy_answer();
      return out;
    case BranchMachine::OnePhaseVerdict::refused:
      counters_.refused++;
      out.refusal = api_error(409, txn::errc::not_active,
                              std::string("the branch is ") + state_name(slot.m.state()) +
                                  ": it is in two-phase commit",
                              state_name(slot.m.state()));
      return out;
    case BranchMachine::OnePhaseVerdict::settle:
      return one_phase_ended(slot, txid, resource_->outcome_of(txid), {});
    case BranchMachine::OnePhaseVerdict::rollback:
      if (slot.session) slot.session->rollback();
      slot.session.reset();
      return one_phase_ended(slot, txid, Outcome::aborted, slot.m.vote_no_reason());
    case BranchMachine::OnePhaseVerdict::run:
      break;
  }
  DbError err;
  if (!slot.session) {
    return one_phase_ended(slot, txid, Outcome::aborted,
                           DbError{std::string(kRefusedByDtx), "no statement ran in this branch"});
  }
  // A branch that wrote nothing ends as a read-only prepare does: no marker.
  auto read_only = resource_->end_read_only(slot.session, &err);
  if (!read_only.ok()) {
    if (err.message.empty())
      err = DbError{std::string(kRefusedByDtx), read_only.status().message()};
    slot.session.reset();
    return one_phase_ended(slot, txid, Outcome::aborted, err);
  }
  if (*read_only) {
    slot.m.on_one_phase_done(R::read_only, {}, now_ticks());
    counters_.one_phase_read_only++;
    counters_.one_phase_committed++;
    logging::txn_info(txid, "wrote nothing: committed in one phase, read-only (no marker)");
    table_.retire(txid, Outcome::committed, now_ms(), /*read_only=*/true);
    out.answer = committed_answer(true);
    return out;
  }
  auto r = resource_->commit_one_phase(std::move(slot.session), &err);
  return one_phase_ended(slot, txid, r, std::move(err));
}

Agent::OnePhaseStep Agent::one_phase_ended(BranchSlot& slot, const std::string& txid,
                                           const Result<Outcome>& r, DbError err) {
  using R = BranchMachine::OnePhaseResult;
  OnePhaseStep out;
  if (!r.ok()) {
    // The database's answer to COMMIT was lost, or the marker could not be
    // read yet: in doubt. Never answered as aborted: it may have committed.
    const bool first = !slot.m.in_doubt();
    slot.m.on_one_phase_done(R::unknown, err, now_ticks());
    if (first) counters_.one_phase_in_doubt++;
    logging::txn_warn(txid, "one-phase commit in doubt: {}", r.status().describe());
    out.refusal = api_error(503, txn::errc::unavailable,
                            "the outcome of the one-phase COMMIT is not known yet (" +
                                r.status().message() + "); ask again: the marker will tell");
    return out;
  }
  if (*r == Outcome::committed) {
    slot.m.on_one_phase_done(R::committed, {}, now_ticks());
    counters_.one_phase_committed++;
    counters_.committed++;
    logging::txn_info(txid, "committed in one phase");
    table_.retire(txid, Outcome::committed, now_ms());
    out.answer = committed_answer(false);
    return out;
  }
  if (err.message.empty()) {
    err = DbError{std::string(kRefusedByDtx),
                  slot.m.in_doubt() ? "the one-phase COMMIT did not happen (no marker)"
                                    : "the one-phase commit did not happen"};
  }
  slot.m.on_one_phase_done(R::aborted, err, now_ticks());
  counters_.one_phase_aborted++;
  counters_.aborted++;
  logging::txn_info(txid, "one-phase commit aborted ({} {})", slot.m.vote_no_reason().sqlstate,
                    slot.m.vote_no_reason().message);
  table_.retire(txid, Outcome::aborted, now_ms());
  out.answer = aborted_answer(slot.m.vote_no_reason());
  return out;
}

// No branch here: a repeat after the branch ended, or an ask after a
// restart. The outcome record answers, else the marker (A3): a branch that
// did not commit in one phase is gone for good (its transaction was rolled
// back), so no marker means aborted.
StepAnswer Agent::one_phase_unknown(const std::string& txid) {
  std::optional<Outcome> known = table_.outcome(txid);
  if (known == Outcome::committed) {
    return StepAnswer{200, committed_answer(table_.read_only(txid)).to_json()};
  }
  if (known == Outcome::aborted) {
    return StepAnswer{
        200, aborted_answer(DbError{std::string(kRefusedByDtx), "the branch aborted"}).to_json()};
  }
  if (table_.below_watermark(txid)) {
    logging::txn_error(txid, "ALARM: commit-one-phase for a txid below the forget watermark (T3)");
    return api_error(410, txn::errc::forgotten,
                     "the txid is below the forget watermark and this agent has no record");
  }
  auto o = resource_->outcome_of(txid);
  if (!o.ok()) {
    return api_error(rest::http_status_for(o.status().code()), code_name(o.status().code()),
                     o.status().message());
  }
  // Remembered, so a first exec of this txid still queued is refused rather
  // than opening a branch already answered; if one opened it meanwhile, it
  // takes this step.
  if (!table_.remember(txid, *o, now_ms())) {
    if (table_.find(txid)) return busy_answer();
  }
  logging::txn_info(txid, "commit-one-phase of an unknown branch: {} (marker {})", outcome_name(*o),
                    *o == Outcome::committed ? "present" : "absent");
  if (*o == Outcome::committed) return StepAnswer{200, committed_answer(false).to_json()};
  return StepAnswer{200, aborted_answer(DbError{std::string(kRefusedByDtx),
                                                "no branch and no marker here: it did not commit"})
                             .to_json()};
}

StepAnswer Agent::status_from_marker(const std::string& txid) {
  if (auto a = status(txid); a.status != 404 || table_.below_watermark(txid)) return a;
  auto o = resource_->outcome_of(txid);
  if (!o.ok()) {
    // Never 404 here: a coordinator would take it for "no trace" and
    // presume an abort of what may have committed in one phase.
    return api_error(503, txn::errc::unavailable,
                     "the marker could not be read (" + o.status().message() + "): ask again");
  }
  if (*o != Outcome::committed) return api_error(404, txn::errc::not_found, "no such branch here");
  // The marker says it committed (in one phase, or in two before a
  // restart): the branch happened, so it is reported, and remembered.
  (void)table_.remember(txid, Outcome::committed, now_ms());
  txn::BranchStatus s;
  s.txid = txid;
  s.state = BranchState::committed;
  s.outcome = Outcome::committed;
  return StepAnswer{200, s.to_json()};
}

}  // namespace dtx::participant
