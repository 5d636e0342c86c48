// The agent's decisions (commit and abort from the coordinator, an inquiry
// answer or a timer), its inquiries, and what it tells about its branches
// (status and the paged listing a failover sweep reads).
#include <mutex>

#include "common/logging.h"
#include "participant/agent.h"
#include "participant/inquiry.h"
#include "rest/http.h"

namespace dtx::participant {

bool lock_briefly(std::unique_lock<std::mutex>& lock);  // agent_steps.cc
StepAnswer busy_answer();                               // agent_steps.cc
StepAnswer api_error(int status, std::string_view code, std::string message,
                     std::optional<std::string> state = std::nullopt);  // agent_steps.cc

namespace {

StepAnswer status_answer(const Status& s) {
  return api_error(rest::http_status_for(s.code()), code_name(s.code()), s.message());
}

}  // namespace

StepAnswer Agent::decide(const std::string& txid, Outcome asked, const txn::DecisionRequest& r) {
  if (auto a = admit(r.fence, /*fence_ballot=*/false)) return *a;
  const char* why =
      asked == Outcome::committed ? "the coordinator says commit" : "the coordinator says abort";
  if (auto slot = table_.find(txid)) return decide_slot(slot, txid, asked, true, why);
  return decide_unknown(txid, asked, true, why);
}

// The answer to a decision, with the outcome the branch actually has (T6).
// Any difference from the one asked is a heuristic hazard: alarmed and
// counted, whoever finds it.
StepAnswer Agent::decided(const std::string& txid, Outcome asked, Outcome actual) {
  const bool heuristic = actual != asked;
  if (heuristic) {
    counters_.heuristic++;
    logging::txn_error(txid, "ALARM: heuristic outcome: asked to {}, the branch here is {} (T6)",
                       asked == Outcome::committed ? "commit" : "abort", outcome_name(actual));
  }
  return StepAnswer{200, txn::DecisionAnswer{actual, heuristic}.to_json()};
}

// A read-only branch changed nothing, so whichever outcome is asked is
// true of it: no heuristic, nothing to alarm about.
StepAnswer Agent::decided_read_only(const std::string& txid, Outcome asked) {
  logging::txn_debug(txid, "{} of a read-only branch: nothing to do", outcome_name(asked));
  txn::DecisionAnswer a{asked, false};
  a.read_only = true;
  return StepAnswer{200, a.to_json()};
}

StepAnswer Agent::decide_unknown(const std::string& txid, Outcome asked, bool from_coordinator,
                                 const char* why) {
  if (table_.read_only(txid)) return decided_read_only(txid, asked);
  std::optional<Outcome> known = table_.outcome(txid);
  if (!known) {
    if (table_.below_watermark(txid)) {
      logging::txn_error(txid, "ALARM: a decision for a txid below the forget watermark (T3)");
      return api_error(410, txn::errc::forgotten,
                       "the txid is below the forget watermark and this agent has no record");
    }
    auto o = resource_->outcome_of(txid);
    if (!o.ok()) return status_answer(o.status());
    // Remembered, so a first exec of this txid still queued behind this
    // answer is refused rather than opening a branch the coordinator
    // already counts as decided. If that exec opened the branch while the
    // database was asked, the decision goes through the branch instead.
    if (!table_.remember(txid, *o, now_ms())) {
      if (auto slot = table_.find(txid))
        return decide_slot(slot, txid, asked, from_coordinator, why);
      known = table_.outcome(txid);
      if (!known) known = *o;
    } else {
      known = *o;
    }
  }
  return decided(txid, asked, *known);
}

StepAnswer Agent::decide_slot(const std::shared_ptr<BranchSlot>& slot, const std::string& txid,
                              Outcome asked, bool from_coordinator, const char* why,
                              BranchMachine::DecisionToken token) {
  // A coordinator's request never waits long for the branch's lock
  // (answered busy, asked again); the agent's own timers and inquiries do,
  // on the work lane.
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (from_coordinator) {
    if (!lock_briefly(lock)) return busy_answer();
  } else {
    lock.lock();
  }
  BranchMachine::DecisionVerdict verdict;
  if (token != 0) {
    verdict = slot->m.on_timer_decision(token);
    if (verdict == BranchMachine::DecisionVerdict::answer) {
      after_step(*slot);
      logging::txn_info(txid, "timer decision dropped: the branch is now {}",
                        state_name(slot->m.state()));
      return {};
    }
  } else {
    verdict = asked == Outcome::committed ? slot->m.on_commit() : slot->m.on_abort();
  }
  switch (verdict) {
    case BranchMachine::DecisionVerdict::answer: {
      after_step(*slot);
      if (slot->m.read_only()) return decided_read_only(txid, asked);
      auto o = slot->m.outcome();
      if (!o) return api_error(409, txn::errc::busy, "a decision for this branch is under way");
      return decided(txid, asked, *o);
    }
    case BranchMachine::DecisionVerdict::refused: {
      after_step(*slot);
      counters_.refused++;
      const BranchState st = slot->m.state();
      if (st == BranchState::precommitted) {
        logging::txn_error(txid, "ALARM: abort refused for a pre-committed branch (T8)");
      }
      return api_error(
          409, asked == Outcome::committed ? txn::errc::not_prepared : txn::errc::precommitted,
          std::string("the branch is ") + state_name(st), state_name(st));
    }
    case BranchMachine::DecisionVerdict::run_commit:
    case BranchMachine::DecisionVerdict::run_abort:
      break;
  }
  Outcome actual = Outcome::aborted;
  if (slot->m.state() == BranchState::active) {
    if (slot->session) slot->session->rollback();
    slot->session.reset();
  } else {
    auto r = asked == Outcome::committed ? resource_->commit(txid) : resource_->abort(txid);
    if (!r.ok()) {
      // The database did not answer: the branch stays as it was; asked again later.
      slot->m.on_decision_failed();
      after_step(*slot);
      logging::txn_warn(txid, "{} failed: {}", outcome_name(asked), r.status().describe());
      return status_answer(r.status());
    }
    actual = *r;
  }
  slot->m.on_decided(asked, actual, now_ticks());
  after_step(*slot);
  logging::txn_info(txid, "{} ({})", outcome_name(actual), why);
  (actual == Outcome::committed ? counters_.committed : counters_.aborted)++;
  table_.retire(txid, actual, now_ms());
  return decided(txid, asked, actual);
}

void Agent::on_tick_action(const std::string& txid, const std::shared_ptr<BranchSlot>& slot,
                           BranchMachine::TickAction a) {
  if (a.kind == BranchMachine::TickKind::inquire) return inquire(txid);
  const bool idle = a.kind == BranchMachine::TickKind::abort_idle;
  const Outcome asked = idle ? Outcome::aborted : Outcome::committed;
  const char* why = idle ? "idle too long" : "pre-committed and no commit arrived in time";
  // The machine marked the decision under way when it fired; the token
  // carries it to the worker, which decides under one hold of the branch's
  // lock, and only if the branch is still in the state the timer fired in.
  if (!submit(Lane::work, [this, txid, slot, asked, why, token = a.token] {
        decide_slot(slot, txid, asked, false, why, token);
      })) {
    std::lock_guard lock(slot->mu);  // queue full: the timer may fire again
    slot->m.drop_decision(a.token);
    after_step(*slot);
  }
}

void Agent::inquire(const std::string& txid) {
  counters_.inquiries++;
  inquirer_->ask(txid, [this, txid](Inquirer::Reply r) {
    learn_watermark(r.watermark);
    if (!submit(Lane::work, [this, txid, a = r.answer] { on_inquiry(txid, a); })) {
      // Queue full: count it as unanswered, so the branch asks again later.
      if (auto slot = table_.find(txid)) {
        std::lock_guard lock(slot->mu);
        (void)slot->m.on_inquiry_answer(BranchMachine::Answer::unreachable, now_ticks());
        after_step(*slot);
      }
    }
  });
}

void Agent::on_inquiry(const std::string& txid, BranchMachine::Answer a) {
  std::shared_ptr<BranchSlot> slot = table_.find(txid);
  if (!slot) return;
  BranchMachine::DecisionVerdict v;
  {
    std::lock_guard lock(slot->mu);
    v = slot->m.on_inquiry_answer(a, now_ticks());
    after_step(*slot);
  }
  if (v == BranchMachine::DecisionVerdict::run_commit) {
    decide_slot(slot, txid, Outcome::committed, false, "the coordinator's log says committed");
  } else if (v == BranchMachine::DecisionVerdict::run_abort ||
             v == BranchMachine::DecisionVerdict::refused) {
    decide_slot(slot, txid, Outcome::aborted, false, "the coordinator's log says aborted");
  } else if (a == BranchMachine::Answer::pending) {
    logging::txn_debug(txid, "still pending at the coordinator");
  }
}

StepAnswer Agent::status(const std::string& txid, const txn::Fence& fence) {
  if (auto a = admit(fence, /*fence_ballot=*/false)) return *a;
  return status_from_marker(txid);
}

StepAnswer Agent::status(const std::string& txid) const {
  if (auto slot = table_.find(txid)) {
    txn::BranchStatus s;
    s.txid = txid;
    std::unique_lock lock(slot->mu, std::try_to_lock);
    if (lock.owns_lock()) {
      s.state = slot->m.state();
      s.exec_count = slot->m.exec_count();
      s.doomed = slot->m.doomed();
      s.outcome = slot->m.outcome();
      s.read_only = slot->m.read_only();
      // A one-phase COMMIT in doubt may have committed: not a branch to
      // presume aborted (ask again; a repeated commit-one-phase settles it).
      s.busy = slot->m.in_doubt();
    } else {
      s.state = slot->known_state.load(std::memory_order_acquire);
      s.exec_count = slot->known_execs.load(std::memory_order_acquire);
      s.busy = true;
    }
    return StepAnswer{200, s.to_json()};
  }
  if (auto t = table_.outcome(txid)) {
    txn::BranchStatus s;
    s.txid = txid;
    s.state = *t == Outcome::committed ? BranchState::committed : BranchState::aborted;
    s.outcome = *t;
    s.read_only = table_.read_only(txid);
    return StepAnswer{200, s.to_json()};
  }
  return api_error(404, txn::errc::not_found, "no such branch here");
}

// Every branch, busy ones included (T10): a failover sweep must see the
// branches in trouble most of all. A busy branch shows the state of its
// last finished step.
StepAnswer Agent::list(const txn::BranchListRequest& r) {
  if (auto a = admit(r.fence, /*fence_ballot=*/false)) return *a;
  txn::BranchListAnswer out;
  std::string after = r.after;
  for (;;) {
    std::optional<std::string> next;
    auto page = table_.page(after, r.limit, &next);
    for (auto& [txid, slot] : page) {
      txn::BranchStatus s;
      s.txid = txid;
      std::unique_lock lock(slot->mu, std::try_to_lock);
      s.busy = !lock.owns_lock();
      s.state = s.busy ? slot->known_state.load(std::memory_order_acquire) : slot->m.state();
      if (r.state && s.state != *r.state) continue;
      out.branches.push_back(std::move(s));
      if (out.branches.size() == r.limit) {
        out.next = txid;
        return StepAnswer{200, out.to_json()};
      }
    }
    if (!next) break;
    after = *next;
  }
  return StepAnswer{200, out.to_json()};
}

}  // namespace dtx::participant
