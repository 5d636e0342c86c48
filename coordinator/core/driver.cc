// The life cycle of the transactions this leader drives: begin, exec, the
// votes, the decision, phase two and completion. Failover, inquiries and
// the watermark are in driver_recovery.cc; answers in driver_answers.cc.
#include "coordinator/core/driver.h"

#include <boost/json/serialize.hpp>

#include <algorithm>

#include "txn/exec_digest.h"

namespace dtx::coordinator {

const char* call_kind_name(AgentCall::Kind k) {
  switch (k) {
    case AgentCall::Kind::exec:
      return "exec";
    case AgentCall::Kind::prepare:
      return "prepare";
    case AgentCall::Kind::batch:
      return "batch";
    case AgentCall::Kind::precommit:
      return "precommit";
    case AgentCall::Kind::commit:
      return "commit";
    case AgentCall::Kind::abort:
      return "abort";
    case AgentCall::Kind::list:
      return "list";
    case AgentCall::Kind::commit_one_phase:
      return "commit-one-phase";
    case AgentCall::Kind::probe:
      return "probe";
  }
  return "?";
}

Driver::Driver(DriverConfig config, TxnTable* table) : cfg_(std::move(config)), table_(table) {}

Effects Driver::take_effects() {
  Effects out = std::move(fx_);
  fx_ = Effects{};
  return out;
}

// ---------------------------------------------------------------------------
// Leadership

void Driver::on_elected(const Ballot& ballot, const Now& now) {
  (void)now;
  if ((serving_ && ballot == ballot_) || (elected_ && *elected_ == ballot)) return;
  if (serving_) on_not_serving();
  elected_ = ballot;
  // Serve only once this TERM is applied: everything chosen before it is
  // applied by then, and no older leader's decision can count after it.
  propose(TermRecord{ballot});
}

void Driver::start_serving(const Ballot& ballot, const Now& now) {
  serving_ = true;
  ballot_ = ballot;
  next_seq_ = 1;
  ++stats_.leader_terms;
  event(Event::Level::info, nullptr,
        "serving as leader under ballot " + ballot.describe() + "; re-driving " +
            std::to_string(table_->open().size()) + " decided transactions and sweeping " +
            std::to_string(table_->registry().size()) + " agents");
  if (!seed_.empty() && table_->registry().empty() && !seed_proposed_) {
    for (const auto& p : seed_)
      propose(p);
    seed_proposed_ = true;
  }
  // The sweep first: transactions re-driven below must not complete before
  // every agent has been asked what it holds (maybe_complete).
  start_sweep(now);
  redrive_open(now);
  watermark_at_ms_ = now.mono_ms + cfg_.watermark_every_ms;
  completed_flush_at_ms_ = now.mono_ms + cfg_.completed_flush_ms;
}

void Driver::on_not_serving() {
  elected_.reset();
  if (!serving_) return;
  serving_ = false;
  event(Event::Level::warn, nullptr,
        "no longer serving (ballot " + ballot_.describe() + "); " + std::to_string(txns_.size()) +
            " transactions left to the next leader");
  // Clients waiting for an outcome get `unknown` wherever a decision may be
  // under way (never a guess); the rest are told to go to the leader.
  for (auto& [id, t] : txns_) {
    for (const Waiter& w : t.waiters) {
      if (t.phase == Phase::active || t.phase == Phase::aborting) {
        answer_not_leader(w.req);
      } else {
        answer_unknown(w.req, t.txid);
      }
    }
    if (t.pending_exec_req)
      answer_error(t.pending_exec_req, 503, "coordinator_failover",
                   "this coordinator stopped leading while the exec ran; "
                   "the transaction will abort");
  }
  for (auto& [id, waiters] : register_waiters_) {
    for (const RegisterWaiter& w : waiters) {
      if (w.ask == Ask::commit) {
        answer_unknown(w.req, id);
      } else {
        answer_not_leader(w.req);
      }
    }
  }
  for (auto& [prop, w] : admin_waiters_)
    answer_not_leader(w.req);
  txns_.clear();
  calls_.clear();
  proposals_.clear();
  keys_in_flight_.clear();
  begin_keys_.clear();
  recent_aborts_.clear();
  recent_order_.clear();
  register_waiters_.clear();
  register_proposed_.clear();
  probes_.clear();
  orphan_props_.clear();
  sweep_pending_.clear();
  sweep_retry_at_.clear();
  completed_queue_.clear();
  watermark_proposed_.reset();
  admin_waiters_.clear();
  retry_proposals_.clear();
  stats_.in_flight = 0;
}

// ---------------------------------------------------------------------------
// Begin and exec

Txid Driver::issue_txid() {
  return Txid(table_->cluster(), txn::BallotId{ballot_.round, ballot_.node}, next_seq_++);
}

void Driver::begin(uint64_t req, const BeginRequest& r, const Now& now) {
  if (!serving_) return answer_not_leader(req);
  if (!r.idempotency_key.empty()) {
    auto it = begin_keys_.find(r.idempotency_key);
    if (it != begin_keys_.end()) {
      auto t = txns_.find(it->second);
      if (t != txns_.end()) return answer(req, 201, begin_json(t->second, now));
      return answer_error(req, 409, "idempotency_key_used",
                          "this Idempotency-Key began a transaction that has finished");
    }
  }
  const int64_t timeout = r.timeout_ms.value_or(cfg_.default_timeout_ms);
  if (timeout < 1 || timeout > cfg_.timeout_max_ms) {
    return answer_error(req, 400, "invalid_argument",
                        "timeout_ms must be between 1 and " + std::to_string(cfg_.timeout_max_ms));
  }
  if (txns_.size() >= cfg_.in_flight_max) {
    ++stats_.overloaded;
    return answer_error(req, 503, "overloaded",
                        "too many transactions in flight; try again shortly");
  }
  Txn t;
  t.txid = issue_txid();
  t.protocol = r.protocol.value_or(Protocol::two_pc);
  t.created_mono_ms = now.mono_ms;
  t.created_wall_ms = now.wall_ms;
  t.deadline_ms = now.mono_ms + timeout;
  t.timeout_ms = timeout;
  t.begin_key = r.idempotency_key;
  if (!t.begin_key.empty()) {
    if (begin_keys_.size() >= cfg_.keys_in_flight_max) {
      return answer_error(req, 503, "overloaded", "too many idempotency keys in flight");
    }
    begin_keys_[t.begin_key] = t.txid;
  }
  ++stats_.begun;
  Txn& stored = txns_.emplace(t.txid, std::move(t)).first->second;
  stats_.in_flight = txns_.size();
  answer(req, 201, begin_json(stored, now));
}

Driver::Branch* Driver::enlist(Txn& t, const std::string& participant, uint64_t req) {
  for (Branch& b : t.branches) {
    if (b.name == participant) return &b;
  }
  const RegistryEntry* e = table_->participant(participant);
  if (!e) {
    answer_error(req, 404, "unknown_participant",
                 "no participant named '" + participant + "' is registered");
    return nullptr;
  }
  if (t.branches.size() >= cfg_.participants_max) {
    answer_error(req, 409, "too_many_participants",
                 "a transaction may enlist at most " + std::to_string(cfg_.participants_max) +
                     " participants");
    return nullptr;
  }
  Branch b;
  b.name = participant;
  b.agent_id = e->agent_id;
  b.url = e->url;
  t.branches.push_back(std::move(b));
  return &t.branches.back();
}

void Driver::exec(uint64_t req, ExecRequest r, const Now& now) {
  Txn* t = find_ours(r.txid, req, Ask::exec, now);
  if (!t) return;
  if (t->one_shot || t->phase != Phase::active) {
    return answer_error(req, 409, "not_active",
                        std::string("the transaction is ") + phase_name(t->phase) +
                            "; execs are allowed only while it is active");
  }
  if (t->doomed) {
    return answer_error(
        req, 409, "doomed",
        "an earlier exec failed (" + t->doom_reason.code + "); the transaction can only abort",
        reason_json(t->doom_reason));
  }
  if (t->pending_exec_req) {
    return answer_error(req, 409, "busy",
                        "another exec of this transaction is still running; send execs one "
                        "at a time");
  }
  Branch* b = enlist(*t, r.participant, req);
  if (!b) return;
  b->pending_statement = std::move(r.statement);
  t->pending_exec_req = req;
  send_exec(*t, *b, now);
}

void Driver::send_exec(Txn& t, Branch& b, const Now& now) {
  AgentCall& c = new_call(AgentCall::Kind::exec, t, b, now);
  c.seq = b.exec_count + 1;
  c.statement = b.pending_statement;
  c.timeout_ms = cfg_.exec_timeout_ms;
}

void Driver::on_exec_reply(Txn& t, Branch& b, AgentReply& r, const Now& now) {
  const uint64_t req = t.pending_exec_req;
  auto done = [&] { t.pending_exec_req = 0; };
  if (r.delivery == AgentReply::Delivery::not_sent) {
    done();
    return answer_error(req, 502, "participant_unreachable",
                        "participant '" + b.name +
                            "' could not be reached; the exec did not "
                            "run and may be sent again",
                        participant_json(b.name));
  }
  if (r.delivery == AgentReply::Delivery::unknown) {
    b.touched = true;
    if (cfg_.bugs.retry_exec_blindly) {
      // Planted bug: count it as run and send it again as the next exec.
      b.digest = txn::exec_digest(b.digest, b.exec_count + 1, b.pending_statement.sql,
                                  b.pending_statement.params);
      ++b.exec_count;
      return send_exec(t, b, now);
    }
    // It may have run: the branch's digest is unknown now, so the
    // transaction can only abort (T5: never retried blindly).
    doom(t, AbortReason{b.name, r.timed_out ? "participant_timeout" : "participant_failed",
                        "the outcome of an exec on '" + b.name + "' is unknown", ""});
    done();
    return answer_error(
        req, r.timed_out ? 504 : 502, r.timed_out ? "participant_timeout" : "participant_failed",
        "no answer from participant '" + b.name + "' for the exec; the transaction will abort",
        participant_json(b.name));
  }
  const std::string_view code = r.error_code();
  if (r.http_status == 409 && code == txn::errc::busy) {
    // Nothing ran and the seq is unused: ask again shortly.
    b.retry_exec_at_ms = now.mono_ms + cfg_.busy_retry_ms;
    return;
  }
  if (r.http_status == 503 && code == txn::errc::overloaded) {
    done();
    return answer_error(req, 503, "participant_overloaded",
                        "participant '" + b.name + "' is overloaded; the exec did not run",
                        participant_json(b.name));
  }
  b.touched = true;
  if (r.http_status == 200) {
    b.digest = txn::exec_digest(b.digest, b.exec_count + 1, b.pending_statement.sql,
                                b.pending_statement.params);
    ++b.exec_count;
    b.pending_statement = Statement{};
    done();
    fx_.answers.push_back(Answer{req, 200, std::move(r.body), false});
    return;
  }
  // Every other answer dooms the branch at the agent, or says the agent is
  // not the one we meant: the transaction can only abort.
  AbortReason reason{b.name, std::string(code.empty() ? "participant_error" : code),
                     r.error ? r.error->message : "", ""};
  if (r.error && r.error->sqlstate) reason.sqlstate = *r.error->sqlstate;
  doom(t, reason);
  done();
  boost::json::object extra = participant_json(b.name);
  if (!reason.sqlstate.empty()) extra["sqlstate"] = reason.sqlstate;
  if (r.http_status == 422) {
    return answer_error(req, 422, "sql_error", reason.message + " (the transaction will abort)",
                        std::move(extra));
  }
  if (code == txn::errc::stale_ballot) {
    return answer_error(req, 409, "coordinator_failover",
                        "a newer coordinator leader has taken over; the transaction will abort",
                        std::move(extra));
  }
  if (r.http_status == 413) {
    return answer_error(req, 413, std::string(code), reason.message, std::move(extra));
  }
  answer_error(req, 502, code == txn::errc::wrong_agent ? "wrong_agent" : "participant_error",
               "participant '" + b.name + "' refused the exec (" + std::to_string(r.http_status) +
                   " " + std::string(code) + ": " + reason.message +
                   "); the transaction will abort",
               std::move(extra));
}

void Driver::doom(Txn& t, const AbortReason& reason) {
  if (t.doomed) return;
  t.doomed = true;
  t.doom_reason = reason;
  event(Event::Level::info, &t.txid, "doomed: " + reason.code + " at " + reason.participant);
}

// ---------------------------------------------------------------------------
// Commit, abort, one-shot submit

void Driver::commit(uint64_t req, const CommitRequest& r, const Now& now) {
  Txn* t = find_ours(r.txid, req, Ask::commit, now);
  if (!t) return;
  Waiter w{req, r.wait_completed, false, false};
  switch (t->phase) {
    case Phase::active:
      if (t->pending_exec_req) {
        return answer_error(req, 409, "busy",
                            "an exec of this transaction is still running; commit after its "
                            "answer");
      }
      t->waiters.push_back(w);
      t->commit_asked_mono_ms = now.mono_ms;
      if (t->doomed) return abort_unlogged(*t, t->doom_reason, now);
      return start_commit(*t, now);
    case Phase::preparing:
    case Phase::deciding:
    case Phase::one_phase:
      t->waiters.push_back(w);
      return;
    case Phase::decided:
      if (r.wait_completed && !t->acks_done) {
        t->waiters.push_back(w);
        return;
      }
      return answer_outcome(req, t->txid, *t->outcome, t->reason, t->one_shot ? t : nullptr,
                            nullptr);
    case Phase::aborting:
      return answer_outcome(req, t->txid, Outcome::aborted, t->reason, nullptr, nullptr);
  }
}

void Driver::start_commit(Txn& t, const Now& now) {
  Branch* only = nullptr;
  int touched = 0;
  for (Branch& b : t.branches) {
    if (b.touched) {
      ++touched;
      only = &b;
    }
  }
  // Not when a decision is already on its way to the register (an
  // operator's): then the register must decide, as in two phases.
  if (cfg_.one_phase && touched == 1 && !register_proposed_.count(t.txid)) {
    // One participant: it commits in one phase; no PREPARE, no decision
    // record before the commit (docs/protocol.md, "One-phase commit").
    t.phase = Phase::one_phase;
    return send_one_phase(t, *only, now);
  }
  t.phase = Phase::preparing;
  bool any = false;
  for (Branch& b : t.branches) {
    if (!b.touched) continue;  // never reached its agent: nothing to prepare
    any = true;
    send_prepare(t, b, now);
  }
  if (!any) {
    // Nothing ran anywhere: the decision commits nothing, but it is still
    // the register every later answer reads (T1).
    propose_decision(t, Outcome::committed, AbortReason{}, now);
  }
}

void Driver::send_prepare(Txn& t, Branch& b, const Now& now) {
  b.prepare_sent = true;
  b.vote = Vote::pending;
  AgentCall& c = new_call(AgentCall::Kind::prepare, t, b, now);
  c.exec_count = b.exec_count;
  c.digest = b.digest;
  c.timeout_ms = cfg_.prepare_timeout_ms;
}

void Driver::abort(uint64_t req, const std::string& txid, const Now& now) {
  Txn* t = find_ours(txid, req, Ask::abort, now);
  if (!t) return;
  Waiter w{req, false, false, true};
  switch (t->phase) {
    case Phase::active:
      t->waiters.push_back(w);
      return abort_unlogged(*t, AbortReason{"", "client_abort", "the client aborted", ""}, now);
    case Phase::preparing:
      // Prepares may have run: the abort must be in the log. It races the
      // votes; whichever decision is applied first is the outcome.
      t->waiters.push_back(w);
      return propose_decision(*t, Outcome::aborted,
                              AbortReason{"", "client_abort", "the client aborted", ""}, now);
    case Phase::deciding:
    case Phase::one_phase:
      // one_phase: the agent decides; the abort is answered with its outcome.
      t->waiters.push_back(w);
      return;
    case Phase::decided:
      return answer_abort_result(req, t->txid, *t->outcome, t->reason);
    case Phase::aborting:
      return answer_abort_result(req, t->txid, Outcome::aborted, t->reason);
  }
}

void Driver::submit(uint64_t req, SubmitRequest r, const Now& now) {
  if (!serving_) return answer_not_leader(req);
  Waiter w{req, r.wait_completed, true, false};
  if (!r.idempotency_key.empty()) {
    if (auto id = table_->by_key(r.idempotency_key)) {
      // Decided before (perhaps under another leader): the first answer (T4).
      const TxnEntry* e = table_->find(*id);
      auto it = txns_.find(*id);
      if (it != txns_.end() && r.wait_completed && !it->second.acks_done) {
        it->second.waiters.push_back(w);
        return;
      }
      return answer_outcome(req, *id, e->decision.outcome, e->decision.reason, nullptr,
                            &e->decision.results_json);
    }
    auto k = keys_in_flight_.find(r.idempotency_key);
    if (k != keys_in_flight_.end()) {
      auto it = txns_.find(k->second);
      if (it != txns_.end()) {
        Txn& t = it->second;
        if (t.phase == Phase::decided && !(r.wait_completed && !t.acks_done)) {
          return answer_outcome(req, t.txid, *t.outcome, t.reason, &t, nullptr);
        }
        t.waiters.push_back(w);
        return;
      }
    }
  }
  if (r.branches.empty()) {
    return answer_error(req, 400, "invalid_argument", "a submit needs at least one branch");
  }
  if (r.branches.size() > cfg_.participants_max) {
    return answer_error(req, 400, "too_many_participants",
                        "a transaction may enlist at most " +
                            std::to_string(cfg_.participants_max) + " participants");
  }
  const int64_t timeout = r.timeout_ms.value_or(cfg_.default_timeout_ms);
  if (timeout < 1 || timeout > cfg_.timeout_max_ms) {
    return answer_error(req, 400, "invalid_argument",
                        "timeout_ms must be between 1 and " + std::to_string(cfg_.timeout_max_ms));
  }
  std::set<std::string> seen;
  for (const SubmitBranch& sb : r.branches) {
    if (!seen.insert(sb.participant).second) {
      return answer_error(req, 400, "invalid_argument",
                          "participant '" + sb.participant +
                              "' appears twice; put all of its "
                              "statements in one branch");
    }
    if (sb.statements.empty() || sb.statements.size() > cfg_.statements_max) {
      return answer_error(
          req, 400, "invalid_argument",
          "each branch needs 1 to " + std::to_string(cfg_.statements_max) + " statements");
    }
    if (!table_->participant(sb.participant)) {
      return answer_error(req, 404, "unknown_participant",
                          "no participant named '" + sb.participant + "' is registered");
    }
  }
  if (txns_.size() >= cfg_.in_flight_max ||
      (!r.idempotency_key.empty() && keys_in_flight_.size() >= cfg_.keys_in_flight_max)) {
    ++stats_.overloaded;
    return answer_error(req, 503, "overloaded",
                        "too many transactions in flight; try again shortly");
  }
  Txn t;
  t.txid = issue_txid();
  t.protocol = r.protocol.value_or(Protocol::two_pc);
  t.one_shot = true;
  t.created_mono_ms = now.mono_ms;
  t.created_wall_ms = now.wall_ms;
  t.deadline_ms = now.mono_ms + timeout;
  t.timeout_ms = timeout;
  t.commit_asked_mono_ms = now.mono_ms;
  t.key = r.idempotency_key;
  t.waiters.push_back(w);
  t.phase = Phase::preparing;
  ++stats_.begun;
  Txn& stored = txns_.emplace(t.txid, std::move(t)).first->second;
  stats_.in_flight = txns_.size();
  if (!stored.key.empty()) keys_in_flight_[stored.key] = stored.txid;
  stored.sequential = r.sequential;
  // One participant and no idempotency key: one phase. A keyed submit keeps
  // the decision record before the commit, so a retry after a failover
  // finds its outcome and never runs it twice (T4).
  if (cfg_.one_phase && r.branches.size() == 1 && stored.key.empty()) {
    stored.phase = Phase::one_phase;
  }
  for (SubmitBranch& sb : r.branches) {
    Branch* b = enlist(stored, sb.participant, req);
    for (const Statement& s : sb.statements) {
      ++b->exec_count;
      b->digest = txn::exec_digest(b->digest, b->exec_count, s.sql, s.params);
    }
    b->batch = std::move(sb.statements);
  }
  // All at once, or (sequential) one branch after the other, each once the
  // previous voted yes: databases that lock whole (SQLite) then take their
  // locks in one order and cannot deadlock across each other.
  for (Branch& b : stored.branches) {
    send_batch(stored, b, now);
    if (stored.sequential) break;
  }
}

void Driver::send_batch(Txn& t, Branch& b, const Now& now) {
  b.touched = true;
  b.prepare_sent = true;
  b.vote = Vote::pending;
  AgentCall& c = new_call(AgentCall::Kind::batch, t, b, now);
  c.statements = std::move(b.batch);
  b.batch.clear();
  c.one_phase = t.phase == Phase::one_phase;
  c.timeout_ms = cfg_.prepare_timeout_ms;
}

void Driver::send_one_phase(Txn& t, Branch& b, const Now& now) {
  b.prepare_sent = true;
  b.vote = Vote::pending;
  AgentCall& c = new_call(AgentCall::Kind::commit_one_phase, t, b, now);
  c.exec_count = b.exec_count;
  c.digest = b.digest;
  c.timeout_ms = cfg_.prepare_timeout_ms;
}

// The agent's answer is the outcome: its database committed (the marker row
// with the branch's work) or did not. A lost answer is asked again with
// commit-one-phase, which the agent answers from its record or the marker
// (and with busy while the first one still runs); it never runs twice.
void Driver::on_one_phase_reply(Txn& t, Branch& b, AgentReply& r, const Now& now) {
  if (t.phase != Phase::one_phase) return;
  if (r.delivery == AgentReply::Delivery::answered && r.http_status == 409 &&
      r.error_code() == txn::errc::busy) {
    b.retry_prepare_at_ms = now.mono_ms + cfg_.busy_retry_ms;
    return;
  }
  if (r.delivery == AgentReply::Delivery::not_sent && !b.may_have_run) {
    b.vote = Vote::no;
    return abort_unlogged(t,
                          AbortReason{b.name, "participant_unreachable",
                                      "participant '" + b.name + "' could not be reached", ""},
                          now);
  }
  if (r.delivery != AgentReply::Delivery::answered || r.http_status >= 500) {
    // It may have committed: ask again, with backoff, until the agent says.
    if (r.delivery == AgentReply::Delivery::unknown) b.may_have_run = true;
    b.backoff_ms =
        b.backoff_ms == 0 ? cfg_.retry_min_ms : std::min(cfg_.retry_max_ms, b.backoff_ms * 2);
    b.retry_prepare_at_ms = now.mono_ms + b.backoff_ms;
    return;
  }
  const txn::OnePhaseAnswer* a = nullptr;
  if (r.http_status == 200) {
    if (r.batch) {
      b.results = std::move(r.batch->results);
      if (r.batch->one_phase) a = &*r.batch->one_phase;
    } else if (r.one_phase) {
      a = &*r.one_phase;
    }
  }
  b.acked = true;  // over at its agent, whichever way
  if (a && a->outcome == Outcome::committed) {
    b.vote = a->read_only ? Vote::read_only : Vote::yes;
    t.outcome = Outcome::committed;
    answer_waiters(t, false);
    // The register records it after the fact, for status, listings and a
    // later leader (which finds it there, or at the agent by a probe).
    return propose_decision(t, Outcome::committed, AbortReason{}, now);
  }
  b.vote = Vote::no;
  AbortReason reason{b.name, "vote_no", "", ""};
  if (a) {
    reason.message = a->reason.message;
    reason.sqlstate = a->reason.sqlstate;
  } else {
    // Refused (stale_ballot, wrong_agent, forgotten): nothing committed; the
    // branch, if still open there, is rolled back by the abort below.
    b.acked = false;
    reason.code = r.error_code() == txn::errc::stale_ballot ? "coordinator_failover"
                                                            : std::string(r.error_code());
    reason.message = r.error ? r.error->message : "the participant refused the commit";
  }
  abort_unlogged(t, reason, now);
}

// ---------------------------------------------------------------------------
// Votes and the decision

void Driver::on_vote(Txn& t, Branch& b, AgentReply& r, const Now& now) {
  if (r.delivery == AgentReply::Delivery::answered && r.http_status == 409 &&
      r.error_code() == txn::errc::busy) {
    // Another step of the branch is running at the agent; nothing ran.
    b.retry_prepare_at_ms = now.mono_ms + cfg_.busy_retry_ms;
    return;
  }
  if (r.delivery == AgentReply::Delivery::not_sent) {
    // Not sent: the agent never saw it. Voting no is safe and prompt.
    b.prepare_sent = false;
    b.vote = Vote::no;
    return vote_no(t, b,
                   AbortReason{b.name, "participant_unreachable",
                               "participant '" + b.name + "' could not be reached to prepare", ""},
                   now);
  }
  if (r.delivery == AgentReply::Delivery::unknown) {
    b.vote = Vote::no;
    return vote_no(t, b,
                   AbortReason{b.name, r.timed_out ? "participant_timeout" : "participant_failed",
                               "no vote from participant '" + b.name + "'", ""},
                   now);
  }
  const txn::VoteAnswer* v = nullptr;
  if (r.http_status == 200) {
    if (r.batch) {
      b.results = std::move(r.batch->results);
      v = &r.batch->vote;
    } else if (r.vote) {
      v = &*r.vote;
    }
  }
  if (!v) {
    b.vote = Vote::no;
    AbortReason reason{b.name,
                       std::string(r.error_code().empty() ? "participant_error" : r.error_code()),
                       r.error ? r.error->message : "unexpected answer to prepare", ""};
    if (reason.code == txn::errc::stale_ballot) reason.code = "coordinator_failover";
    return vote_no(t, b, reason, now);
  }
  if (v->vote == txn::Vote::yes) {
    b.vote = Vote::yes;
    b.prepared_at_ms = now.mono_ms;
    return maybe_decide(t, now);
  }
  if (v->vote == txn::Vote::read_only) {
    // Nothing written: the agent ended the branch at prepare. It is left out
    // of the decision's participants and of phase two.
    b.vote = Vote::read_only;
    b.acked = true;
    return maybe_decide(t, now);
  }
  b.vote = Vote::no;
  vote_no(t, b, AbortReason{b.name, "vote_no", v->reason.message, v->reason.sqlstate}, now);
}

void Driver::vote_no(Txn& t, Branch& b, const AbortReason& reason, const Now& now) {
  (void)b;
  event(Event::Level::info, &t.txid,
        "participant '" + reason.participant + "' voted no (" + reason.code + ": " +
            reason.message + ")");
  if (t.phase != Phase::preparing) return;
  bool any_prepare = false;
  for (const Branch& x : t.branches)
    any_prepare = any_prepare || x.prepare_sent;
  if (any_prepare) {
    propose_decision(t, Outcome::aborted, reason, now);
  } else {
    abort_unlogged(t, reason, now);
  }
}

void Driver::maybe_decide(Txn& t, const Now& now) {
  if (t.phase != Phase::preparing) return;
  for (Branch& b : t.branches) {
    if (t.one_shot && !b.touched) {
      // Sequential: the next branch goes now that the ones before voted yes.
      return send_batch(t, b, now);
    }
    if (b.touched && b.vote != Vote::yes && b.vote != Vote::read_only) return;
  }
  propose_decision(t, Outcome::committed, AbortReason{}, now);
}

void Driver::propose_decision(Txn& t, Outcome o, const AbortReason& reason, const Now& now) {
  if (t.phase == Phase::deciding || t.phase == Phase::decided || t.phase == Phase::aborting) {
    return;
  }
  t.phase = Phase::deciding;
  DecisionRecord d;
  d.txid = t.txid;
  d.term = ballot_;
  d.outcome = o;
  d.protocol = t.protocol;
  for (const Branch& b : t.branches) {
    // Commit goes to those that voted yes; abort to every branch an exec,
    // batch or prepare may have reached.
    if (o == Outcome::committed ? b.vote == Vote::yes : b.touched && b.vote != Vote::read_only) {
      d.participants.push_back(Enlisted{b.name, b.agent_id});
    }
  }
  d.idempotency_key = t.key;
  d.reason = reason;
  d.decided_at_ms = now.wall_ms;
  if (!t.key.empty()) {
    std::string results = boost::json::serialize(results_json(t));
    if (results.size() <= kResultsBytesMax) d.results_json = std::move(results);
  }
  t.proposed = o;
  t.proposal_id = propose(std::move(d));
  proposals_[t.proposal_id] = t.txid;
}

void Driver::abort_unlogged(Txn& t, const AbortReason& reason, const Now& now) {
  // Before any prepare no agent can hold this transaction prepared, and no
  // commit can ever be decided for it (only this leader decides its txids):
  // presumed abort, nothing to log.
  t.phase = Phase::aborting;
  t.outcome = Outcome::aborted;
  t.reason = reason;
  stats_.count_outcome(t.protocol, Outcome::aborted);
  answer_waiters(t, false);
  for (Branch& b : t.branches) {
    if (b.touched && !b.acked) send_decision(t, b, now);
  }
  maybe_complete(t, now);
}

void Driver::on_decided(Txn& t, const TxnEntry& e, const Now& now) {
  const DecisionRecord& d = e.decision;
  const bool first = t.phase != Phase::decided;
  t.phase = Phase::decided;
  t.outcome = d.outcome;
  t.reason = d.reason;
  if (cfg_.bugs.outcome_from_proposal && t.proposed) t.outcome = t.proposed;  // planted bug
  if (!first) return;
  t.decided_mono_ms = now.mono_ms;
  stats_.count_outcome(t.protocol, d.outcome);
  if (t.commit_asked_mono_ms) {
    stats_.commit_latency_us.push_back((now.mono_ms - t.commit_asked_mono_ms) * 1000);
  }
  event(Event::Level::info, &t.txid,
        std::string("decided ") + txn::outcome_name(d.outcome) + " (" + protocol_name(t.protocol) +
            ", " + std::to_string(d.participants.size()) + " participants)");
  // Phase two goes to the register's participants (T1). Branches the
  // register does not list: for commit, those that never voted yes (left
  // alone: they roll back on their own or got an abort below); for abort,
  // every touched branch is listed.
  for (Branch& b : t.branches) {
    bool listed = false;
    for (const Enlisted& p : d.participants)
      listed = listed || p.name == b.name;
    b.in_phase2 = listed;
    if (!listed && d.outcome == Outcome::committed && b.touched) {
      // Touched but not a yes voter (a read-only agent, or a race): send it
      // an abort so it does not hold a session until its idle timeout.
      b.in_phase2 = false;
    }
  }
  for (const Enlisted& p : d.participants) {
    bool have = false;
    for (const Branch& b : t.branches)
      have = have || b.name == p.name;
    if (!have) {
      Branch b;
      b.name = p.name;
      b.agent_id = p.agent_id;
      if (const RegistryEntry* re = table_->participant(p.name)) b.url = re->url;
      b.touched = true;
      b.in_phase2 = true;
      t.branches.push_back(std::move(b));
    }
  }
  answer_waiters(t, false);
  for (Branch& b : t.branches) {
    if (b.in_phase2) send_decision(t, b, now);
  }
  maybe_complete(t, now);
}

void Driver::send_decision(Txn& t, Branch& b, const Now& now) {
  if (b.call_in_flight || b.acked || b.hazard) return;
  AgentCall::Kind kind = AgentCall::Kind::abort;
  if (*t.outcome == Outcome::committed) {
    kind = (t.protocol == Protocol::three_pc && !b.precommitted) ? AgentCall::Kind::precommit
                                                                 : AgentCall::Kind::commit;
    if (kind == AgentCall::Kind::commit && t.protocol == Protocol::three_pc) {
      // 3PC: do-commit only once every participant is pre-committed.
      for (const Branch& x : t.branches) {
        if (x.in_phase2 && !x.precommitted && !x.acked) return;
      }
    }
  }
  if (b.url.empty()) {
    // Removed from the registry after the decision: keep it in doubt,
    // visibly, until an operator registers it again.
    if (const RegistryEntry* re = table_->participant(b.name)) {
      b.url = re->url;
      b.agent_id = re->agent_id;
    } else {
      schedule_retry(b, now, false);
      return;
    }
  }
  AgentCall& c = new_call(kind, t, b, now);
  c.timeout_ms = cfg_.decision_timeout_ms;
  if (b.attempts++ > 0) ++stats_.decisions_resent;
}

void Driver::on_decision_reply(Txn& t, Branch& b, AgentCall::Kind kind, AgentReply& r,
                               const Now& now) {
  if (cfg_.bugs.ack_without_outcome && kind != AgentCall::Kind::precommit &&
      r.delivery == AgentReply::Delivery::answered && r.http_status != 409) {
    b.acked = true;  // planted bug: whatever it says
    return maybe_complete(t, now);
  }
  if (r.delivery != AgentReply::Delivery::answered || r.http_status >= 500) {
    return schedule_retry(b, now, false);
  }
  const std::string_view code = r.error_code();
  if (r.http_status == 409 && code == txn::errc::busy) return schedule_retry(b, now, true);
  if (kind == AgentCall::Kind::precommit) {
    if (r.http_status == 200 || (r.http_status == 409 && code == txn::errc::not_prepared)) {
      // Pre-committed, already committed, or not prepared (then the commit
      // that follows reports what the branch really has).
      b.precommitted = true;
      b.backoff_ms = 0;
      for (Branch& x : t.branches) {
        if (x.in_phase2) send_decision(t, x, now);
      }
      return;
    }
    event(Event::Level::warn, &t.txid,
          "precommit refused by '" + b.name + "': " + std::to_string(r.http_status) + " " +
              std::string(code));
    return schedule_retry(b, now, false);
  }
  if (r.http_status == 200 && r.decision) {
    if (r.decision->outcome == *t.outcome) {
      b.acked = true;
      b.backoff_ms = 0;
      // 3PC: a commit answered may unblock nothing else; an abort neither.
      return maybe_complete(t, now);
    }
    // T6: the branch has the other outcome. Never COMPLETED; kept visible.
    b.hazard = true;
    ++stats_.hazards;
    event(Event::Level::error, &t.txid,
          "HEURISTIC HAZARD: participant '" + b.name + "' has " +
              txn::outcome_name(r.decision->outcome) + " but the decision is " +
              txn::outcome_name(*t.outcome));
    if (t.phase == Phase::decided) {
      propose(HazardRecord{t.txid, b.name, r.decision->outcome, now.wall_ms});
    }
    return maybe_complete(t, now);
  }
  // 404 (the agent does not know the branch) is never an acknowledgement
  // (T10), nor is any other refusal: keep asking, with backoff, visibly.
  if (b.attempts % 10 == 1) {
    event(Event::Level::warn, &t.txid,
          std::string(call_kind_name(kind)) + " not acknowledged by '" + b.name +
              "': " + std::to_string(r.http_status) + " " + std::string(code));
  }
  schedule_retry(b, now, false);
}

void Driver::schedule_retry(Branch& b, const Now& now, bool busy) {
  if (busy) {
    b.retry_at_ms = now.mono_ms + cfg_.busy_retry_ms;
    return;
  }
  b.backoff_ms =
      b.backoff_ms == 0 ? cfg_.retry_min_ms : std::min(cfg_.retry_max_ms, b.backoff_ms * 2);
  b.retry_at_ms = now.mono_ms + b.backoff_ms;
}

void Driver::maybe_complete(Txn& t, const Now& now) {
  if (t.acks_done) return;
  for (const Branch& b : t.branches) {
    const bool needed = t.phase == Phase::aborting ? b.touched : b.in_phase2;
    if (needed && !b.acked) return;
  }
  if (t.phase != Phase::aborting && !t.ours && !sweep_pending_.empty()) {
    // Decided under another ballot (or presumed aborted): an agent not yet
    // swept may still hold a branch the register does not list. COMPLETED
    // waits for the sweep, or the transaction would be finished (and later
    // forgotten) with that branch still prepared.
    return;
  }
  t.acks_done = true;
  if (t.phase == Phase::aborting) {
    answer_waiters(t, true);
    remember_abort(t.txid, t.reason);
    return finish(t.txid);
  }
  answer_waiters(t, true);
  if (!t.completion_queued) {
    t.completion_queued = true;
    completed_queue_.push_back(t.txid);
    if (completed_queue_.size() >= kCompletedBatchMax) flush_completed(now);
  }
}

void Driver::answer_waiters(Txn& t, bool completed) {
  std::vector<Waiter> keep;
  for (const Waiter& w : t.waiters) {
    if (w.wait_completed && !completed) {
      keep.push_back(w);
      continue;
    }
    if (w.abort_request) {
      answer_abort_result(w.req, t.txid, *t.outcome, t.reason);
    } else {
      answer_outcome(w.req, t.txid, *t.outcome, t.reason, t.one_shot ? &t : nullptr, nullptr);
    }
  }
  t.waiters = std::move(keep);
}

void Driver::finish(const Txid& id) {
  auto it = txns_.find(id);
  if (it == txns_.end()) return;
  Txn& t = it->second;
  for (const Waiter& w : t.waiters) {
    // Still waiting for completion when the transaction is done: answer now.
    if (t.outcome) {
      if (w.abort_request) {
        answer_abort_result(w.req, t.txid, *t.outcome, t.reason);
      } else {
        answer_outcome(w.req, t.txid, *t.outcome, t.reason, t.one_shot ? &t : nullptr, nullptr);
      }
    }
  }
  for (const Branch& b : t.branches) {
    if (b.call_in_flight) calls_.erase(b.call_id);
  }
  if (!t.key.empty()) {
    auto k = keys_in_flight_.find(t.key);
    if (k != keys_in_flight_.end() && k->second == id) keys_in_flight_.erase(k);
  }
  if (!t.begin_key.empty()) {
    auto k = begin_keys_.find(t.begin_key);
    if (k != begin_keys_.end() && k->second == id) begin_keys_.erase(k);
  }
  txns_.erase(it);
  stats_.in_flight = txns_.size();
}

void Driver::remember_abort(const Txid& id, const AbortReason& reason) {
  if (recent_aborts_.emplace(id, reason).second) recent_order_.push_back(id);
  while (recent_order_.size() > cfg_.recent_max) {
    recent_aborts_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
}

// ---------------------------------------------------------------------------
// Replies, proposals, applied records, time

void Driver::on_agent_reply(uint64_t call_id, AgentReply reply, const Now& now) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;  // a call of a finished transaction or an old term
  CallRef ref = std::move(it->second);
  calls_.erase(it);
  if (ref.list) return on_list_reply(ref.participant, ref.after, reply, now);
  if (ref.kind == AgentCall::Kind::probe)
    return on_probe_reply(ref.txid, ref.participant, reply, now);
  auto tt = txns_.find(ref.txid);
  if (tt == txns_.end()) return;
  Txn& t = tt->second;
  Branch* b = nullptr;
  for (Branch& x : t.branches) {
    if (x.name == ref.participant) b = &x;
  }
  if (!b || b->call_id != call_id) return;
  b->call_in_flight = false;
  switch (ref.kind) {
    case AgentCall::Kind::exec:
      on_exec_reply(t, *b, reply, now);
      break;
    case AgentCall::Kind::commit_one_phase:
      on_one_phase_reply(t, *b, reply, now);
      break;
    case AgentCall::Kind::prepare:
    case AgentCall::Kind::batch:
      if (ref.kind == AgentCall::Kind::batch && t.phase == Phase::one_phase) {
        on_one_phase_reply(t, *b, reply, now);
      } else if (t.phase == Phase::preparing) {
        on_vote(t, *b, reply, now);
      } else if (reply.delivery == AgentReply::Delivery::answered && reply.http_status == 200) {
        // A vote after the decision: record it; phase two handles the branch.
        if (reply.batch) b->results = std::move(reply.batch->results);
        const txn::VoteAnswer* v =
            reply.batch ? &reply.batch->vote : (reply.vote ? &*reply.vote : nullptr);
        if (v) {
          b->vote = v->vote == txn::Vote::yes         ? Vote::yes
                    : v->vote == txn::Vote::read_only ? Vote::read_only
                                                      : Vote::no;
          if (b->vote == Vote::read_only) b->acked = true;
        }
        if (t.phase == Phase::decided && b->in_phase2) send_decision(t, *b, now);
      } else if (t.phase == Phase::decided && b->in_phase2) {
        send_decision(t, *b, now);
      }
      if (t.phase == Phase::aborting && b->touched && !b->acked) send_decision(t, *b, now);
      break;
    case AgentCall::Kind::precommit:
    case AgentCall::Kind::commit:
    case AgentCall::Kind::abort:
      on_decision_reply(t, *b, ref.kind, reply, now);
      break;
    case AgentCall::Kind::list:
    case AgentCall::Kind::probe:
      break;
  }
}

void Driver::on_proposed(uint64_t proposal_id, ProposeOutcome outcome, const Now& now) {
  (void)now;
  auto pending = pending_records_.find(proposal_id);
  if (pending == pending_records_.end()) return;
  Record rec = std::move(pending->second);
  pending_records_.erase(pending);
  auto decision_of = proposals_.find(proposal_id);
  std::optional<Txid> decided_txid;
  if (decision_of != proposals_.end()) {
    decided_txid = decision_of->second;
    proposals_.erase(decision_of);
  }
  if (!serving_) {
    const auto* term = std::get_if<TermRecord>(&rec);
    if (term && elected_ && term->ballot == *elected_ && outcome == ProposeOutcome::busy) {
      propose(std::move(rec));
    }
    return;
  }
  switch (outcome) {
    case ProposeOutcome::applied:
      // The apply callback already ran (on_applied): answers come from the
      // register, not from here (T1).
      return answer_admin(proposal_id, outcome);
    case ProposeOutcome::busy: {
      // Never queued: propose the same record again shortly (a decision is
      // write-once, so a repeat is harmless).
      retry_proposals_.push_back(RetryProposal{std::move(rec), proposal_id});
      return;
    }
    case ProposeOutcome::too_large: {
      auto* d = std::get_if<DecisionRecord>(&rec);
      if (d && !d->results_json.empty()) {
        d->results_json.clear();  // a retry after failover gets the outcome only
        const uint64_t id = propose(std::move(*d));
        if (decided_txid) proposals_[id] = *decided_txid;
        return;
      }
      event(Event::Level::error, decided_txid ? &*decided_txid : nullptr,
            "the log refused a record as too large: " + describe(rec));
      return answer_admin(proposal_id, outcome);
    }
    case ProposeOutcome::unknown:
    case ProposeOutcome::not_leader:
    case ProposeOutcome::not_serving:
    case ProposeOutcome::stopped:
      // Leadership is gone or going; on_not_serving() answers the waiters.
      return answer_admin(proposal_id, outcome);
  }
}

void Driver::on_applied(const Record& r, const ApplyResult& res, const Now& now) {
  if (res.kind == ApplyResult::Kind::term) {
    term_seen_ms_[res.ballot] = now.wall_ms;
    if (elected_ && res.ballot == *elected_ && !serving_) return start_serving(res.ballot, now);
    // Another leader's term began: whatever this replica thought, it no
    // longer serves.
    if (serving_ && !(res.ballot == ballot_)) on_not_serving();
    return;
  }
  if (!serving_) return;
  switch (res.kind) {
    case ApplyResult::Kind::decided: {
      if (res.key_conflict) {
        event(Event::Level::error, &res.txid,
              "idempotency key already named another transaction; this decision keeps none");
      }
      const TxnEntry* e = table_->find(res.txid);
      if (!e) return;
      const bool orphan = orphan_props_.erase(res.txid) > 0;
      auto it = txns_.find(res.txid);
      Txn* t = nullptr;
      if (it != txns_.end()) {
        on_decided(it->second, *e, now);
        t = &it->second;
      } else if (orphan || register_waiters_.count(res.txid)) {
        // A failover abort or a presumed abort: drive it like any decision.
        t = &adopt_decided(*e, now);
      }
      auto op = orphan_participants_.find(res.txid);
      if (op != orphan_participants_.end()) {
        // Every agent a sweep found holding it gets the decision too.
        if (t) {
          for (const auto& p : op->second)
            add_phase2_branch(*t, p, now);
        }
        orphan_participants_.erase(op);
      }
      answer_register_waiters(res.txid, *e);
      return;
    }
    case ApplyResult::Kind::completed:
      for (const Txid& id : res.txids)
        finish(id);
      return;
    case ApplyResult::Kind::hazard_cleared: {
      auto it = txns_.find(res.txid);
      if (it == txns_.end()) return;
      for (Branch& b : it->second.branches) {
        if (b.hazard) {
          b.hazard = false;
          b.acked = true;  // an operator has looked at it
        }
      }
      return maybe_complete(it->second, now);
    }
    case ApplyResult::Kind::watermark:
      if (watermark_proposed_ && !(table_->watermark() < *watermark_proposed_)) {
        watermark_proposed_.reset();
      }
      return;
    case ApplyResult::Kind::ignored:
      if (const auto* d = std::get_if<DecisionRecord>(&r)) {
        // A decision of ours that did not take effect (a past term's): the
        // register may still be empty; whoever leads now will settle it.
        if (txns_.count(d->txid) || register_waiters_.count(d->txid)) {
          event(Event::Level::warn, &d->txid, "decision ignored: " + res.note);
        }
      }
      return;
    case ApplyResult::Kind::hazard:
    case ApplyResult::Kind::registry:
    case ApplyResult::Kind::term:
      return;
  }
}

void Driver::tick(const Now& now) {
  if (!serving_) return;
  check_deadlines(now);
  resend_due(now);
  sweep_due(now);
  probes_due(now);
  if (!retry_proposals_.empty()) {
    auto again = std::move(retry_proposals_);
    retry_proposals_.clear();
    for (auto& rp : again) {
      const Txid* txid = nullptr;
      if (const auto* d = std::get_if<DecisionRecord>(&rp.record)) txid = &d->txid;
      const std::optional<Txid> id_copy = txid ? std::optional<Txid>(*txid) : std::nullopt;
      const uint64_t id = propose(std::move(rp.record));
      if (id_copy) proposals_[id] = *id_copy;
      auto admin = admin_waiters_.find(rp.old_id);
      if (admin != admin_waiters_.end()) {
        admin_waiters_[id] = admin->second;
        admin_waiters_.erase(admin);
      }
    }
  }
  if (!completed_queue_.empty() && now.mono_ms >= completed_flush_at_ms_) flush_completed(now);
  if (now.mono_ms >= watermark_at_ms_) {
    watermark_at_ms_ = now.mono_ms + cfg_.watermark_every_ms;
    maybe_advance_watermark(now);
  }
}

void Driver::check_deadlines(const Now& now) {
  std::vector<Txid> expired;
  for (auto& [id, t] : txns_) {
    if ((t.phase == Phase::active || t.phase == Phase::preparing) && now.mono_ms >= t.deadline_ms) {
      expired.push_back(id);
    }
  }
  for (const Txid& id : expired) {
    Txn& t = txns_.at(id);
    AbortReason reason{
        "", "timeout",
        "the transaction's timeout of " + std::to_string(t.timeout_ms) + " ms passed", ""};
    if (t.phase == Phase::active) {
      abort_unlogged(t, reason, now);
    } else {
      propose_decision(t, Outcome::aborted, reason, now);
    }
  }
}

void Driver::resend_due(const Now& now) {
  for (auto& [id, t] : txns_) {
    for (Branch& b : t.branches) {
      if (b.call_in_flight) continue;
      if (b.retry_exec_at_ms && now.mono_ms >= b.retry_exec_at_ms) {
        b.retry_exec_at_ms = 0;
        if (t.phase == Phase::active && t.pending_exec_req) send_exec(t, b, now);
        continue;
      }
      if (b.retry_prepare_at_ms && now.mono_ms >= b.retry_prepare_at_ms) {
        b.retry_prepare_at_ms = 0;
        if (t.phase == Phase::preparing) send_prepare(t, b, now);
        if (t.phase == Phase::one_phase) send_one_phase(t, b, now);
        continue;
      }
      if (b.retry_at_ms && now.mono_ms >= b.retry_at_ms) {
        b.retry_at_ms = 0;
        if (t.phase == Phase::decided && b.in_phase2) send_decision(t, b, now);
        if (t.phase == Phase::aborting && b.touched) send_decision(t, b, now);
      }
    }
  }
}

void Driver::flush_completed(const Now& now) {
  completed_flush_at_ms_ = now.mono_ms + cfg_.completed_flush_ms;
  if (completed_queue_.empty()) return;
  CompletedRecord c;
  c.txids = std::move(completed_queue_);
  completed_queue_.clear();
  propose(std::move(c));
}

// ---------------------------------------------------------------------------
// Plumbing

AgentCall& Driver::new_call(AgentCall::Kind kind, const Txn& t, Branch& b, const Now& now) {
  (void)now;
  AgentCall c;
  c.id = next_call_++;
  c.kind = kind;
  c.participant = b.name;
  c.agent_id = b.agent_id;
  c.url = b.url;
  c.txid = t.txid;
  c.ballot = ballot_;
  c.watermark = table_->watermark();
  b.call_in_flight = true;
  b.call_id = c.id;
  calls_[c.id] = CallRef{t.txid, b.name, false, "", kind};
  fx_.calls.push_back(std::move(c));
  return fx_.calls.back();
}

uint64_t Driver::propose(Record r) {
  const uint64_t id = next_proposal_++;
  pending_records_[id] = r;
  fx_.proposals.push_back(Proposal{id, std::move(r)});
  return id;
}

void Driver::event(Event::Level level, const Txid* id, std::string message) {
  fx_.events.push_back(Event{level, id ? id->str() : std::string(), std::move(message)});
}

void DriverStats::count_outcome(Protocol p, Outcome o) {
  if (p == Protocol::three_pc) {
    (o == Outcome::committed ? committed_3pc : aborted_3pc)++;
  } else {
    (o == Outcome::committed ? committed_2pc : aborted_2pc)++;
  }
}

}  // namespace dtx::coordinator
