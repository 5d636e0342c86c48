// What a leader does about transactions it did not begin: txids of older
// ballots (T2), decided transactions left by a previous leader (T7), the
// failover sweep of every agent (T7, T10), inquiries (presumed abort, T3),
// the watermark (T3), and the operator's actions (T9).
#include <algorithm>

#include "coordinator/core/driver.h"

namespace dtx::coordinator {

// ---------------------------------------------------------------------------
// txids this leader is not driving

Driver::Txn* Driver::find_ours(const std::string& text, uint64_t req, Ask ask, const Now& now) {
  auto parsed = Txid::parse(text);
  if (!parsed.ok() || parsed->cluster != table_->cluster()) {
    answer_error(req, 404, "not_found",
                 "no transaction " + text + " in cluster " + table_->cluster());
    return nullptr;
  }
  const Txid id = *parsed;
  if (!serving_) {
    // Any replica may answer an agent's inquiry about a decided or
    // forgotten txid: the register is write-once and the watermark only
    // moves up. Everything else is the leader's.
    if (ask == Ask::inquiry) {
      if (const TxnEntry* e = table_->find(id)) {
        answer_from_register(req, ask, id, *e);
        return nullptr;
      }
      if (table_->classify(id) == TxnTable::Known::forgotten) {
        answer_forgotten(req, ask, id);
        return nullptr;
      }
    }
    answer_not_leader(req);
    return nullptr;
  }
  auto it = txns_.find(id);
  if (it != txns_.end()) {
    Txn& t = it->second;
    if (ask == Ask::status) {
      answer(req, 200, status_json(id, &t, table_->find(id), now));
      return nullptr;
    }
    if (ask == Ask::inquiry) {
      ++stats_.inquiries;
      if (t.phase == Phase::decided) {
        answer_from_register(req, ask, id, *table_->find(id));
      } else if (t.phase == Phase::aborting) {
        // An agent asks about a transaction aborted before any prepare: it
        // should hold nothing prepared, but if it does, the abort must be in
        // the log before anyone is told (T1).
        wait_for_register(req, ask, id, "presumed_abort", now);
      } else {
        answer(req, 200, inquiry_json(id, "pending"));
      }
      return nullptr;
    }
    if (ask == Ask::exec && !t.ours) {
      answer_error(req, 409, "not_active", "the transaction is being finished");
      return nullptr;
    }
    return &t;
  }
  resolve_foreign(req, ask, id, now);
  return nullptr;
}

void Driver::resolve_foreign(uint64_t req, Ask ask, const Txid& id, const Now& now) {
  if (ask == Ask::inquiry) ++stats_.inquiries;
  if (const TxnEntry* e = table_->find(id)) return answer_from_register(req, ask, id, *e);
  const TxnTable::Known known = table_->classify(id);
  if (known == TxnTable::Known::forgotten) return answer_forgotten(req, ask, id);
  const Ballot b = ballot_of(id);
  if (known == TxnTable::Known::never_issued || ballot_ < b ||
      (b == ballot_ && id.seq >= next_seq_)) {
    // Could never have been issued: 404, and nothing is written (T3).
    return answer_error(req, 404, "not_found", "no transaction " + id.str());
  }
  if (b == ballot_) {
    // Ours, not in flight, no decision: aborted before any prepare.
    auto ra = recent_aborts_.find(id);
    if (ra != recent_aborts_.end() && ask != Ask::inquiry) {
      switch (ask) {
        case Ask::exec:
          return answer_error(req, 409, "not_active", "the transaction has aborted");
        case Ask::commit:
          return answer_outcome(req, id, Outcome::aborted, ra->second, nullptr, nullptr);
        case Ask::abort:
          return answer_abort_result(req, id, Outcome::aborted, ra->second);
        case Ask::status:
          return answer(req, 200, aborted_status_json(id, ra->second));
        case Ask::inquiry:
          break;
      }
    }
    return wait_for_register(req, ask, id, "presumed_abort", now);
  }
  // An older leader's transaction with no decision: it can never get one
  // from its leader now (records.h, the term rule), so abort it in the log
  // and answer from the register (T2). Unless it committed in one phase at
  // its only participant before that leader wrote it down: a client asking
  // about it makes this leader probe the agents first. An agent's inquiry
  // concerns a prepared branch, which a one-phase transaction never has.
  if (ask == Ask::inquiry || cfg_.bugs.no_one_phase_probe) {
    return wait_for_register(req, ask, id, "coordinator_failover", now);
  }
  probe_before_deciding(req, ask, id, now);
}

void Driver::probe_before_deciding(uint64_t req, Ask ask, const Txid& id, const Now& now) {
  if (register_proposed_.count(id) || table_->registry().empty()) {
    return wait_for_register(req, ask, id, "coordinator_failover", now);
  }
  register_waiters_[id].push_back(RegisterWaiter{req, ask});
  if (probes_.count(id)) return;
  Probe& p = probes_[id];
  for (const auto& [name, e] : table_->registry())
    p.pending.insert(name);
  event(Event::Level::info, &id,
        "an older leader's transaction with no decision: asking " +
            std::to_string(p.pending.size()) + " agents whether it committed in one phase");
  for (const std::string& name : std::set<std::string>(p.pending))
    send_probe(id, name, now);
}

void Driver::send_probe(const Txid& id, const std::string& participant, const Now& now) {
  (void)now;
  AgentCall* c = new_registry_call(AgentCall::Kind::probe, participant);
  if (!c) return;
  c->txid = id;
  calls_[c->id] = CallRef{id, participant, false, "", AgentCall::Kind::probe};
}

AgentCall* Driver::new_registry_call(AgentCall::Kind kind, const std::string& participant) {
  const RegistryEntry* e = table_->participant(participant);
  if (!e) return nullptr;
  AgentCall c;
  c.id = next_call_++;
  c.kind = kind;
  c.participant = participant;
  c.agent_id = e->agent_id;
  c.url = e->url;
  c.ballot = ballot_;
  c.watermark = table_->watermark();
  c.timeout_ms = cfg_.decision_timeout_ms;
  fx_.calls.push_back(std::move(c));
  return &fx_.calls.back();
}

// A probe is conclusive when the agent answered with the branch not busy
// (its state is final for an older leader: the probe raised its fence, so
// that leader can no longer commit it) or 404 (no trace of it).
void Driver::on_probe_reply(const Txid& id, const std::string& participant, AgentReply& r,
                            const Now& now) {
  auto it = probes_.find(id);
  if (it == probes_.end()) return;
  Probe& p = it->second;
  const bool answered = r.delivery == AgentReply::Delivery::answered;
  if (answered && r.http_status == 200 && r.status && !r.status->busy) {
    if (r.status->state == txn::BranchState::committed && !r.status->read_only) {
      p.committed_at = participant;
    }
    p.pending.erase(participant);
  } else if (answered && r.http_status == 404) {
    p.pending.erase(participant);
  } else if (!table_->participant(participant)) {
    p.pending.erase(participant);  // removed from the registry meanwhile
  } else {
    const bool busy = answered && r.http_status == 200;
    p.retry_at_ms[participant] = now.mono_ms + (busy ? cfg_.busy_retry_ms : cfg_.sweep_retry_ms);
    return;
  }
  if (!p.pending.empty()) return;
  const std::string committed_at = p.committed_at;
  probes_.erase(it);
  if (committed_at.empty()) {
    // No agent committed it, and none can now: abort it in the log.
    auto waiters = std::move(register_waiters_[id]);
    register_waiters_.erase(id);
    for (const RegisterWaiter& w : waiters)
      wait_for_register(w.req, w.ask, id, "coordinator_failover", now);
    return;
  }
  // Committed in one phase: the register says so too.
  register_proposed_.insert(id);
  event(Event::Level::info, &id,
        "committed in one phase at '" + committed_at + "': proposing its COMMIT record");
  propose_one_participant(id, Outcome::committed, AbortReason{}, committed_at, now);
}

void Driver::propose_one_participant(const Txid& id, Outcome o, const AbortReason& reason,
                                     const std::string& participant, const Now& now) {
  DecisionRecord d;
  d.txid = id;
  d.term = ballot_;
  d.outcome = o;
  d.reason = reason;
  d.decided_at_ms = now.wall_ms;
  if (const RegistryEntry* re = table_->participant(participant)) {
    d.participants.push_back(Enlisted{participant, re->agent_id});
  }
  proposals_[propose(std::move(d))] = id;
}

void Driver::probes_due(const Now& now) {
  for (auto& [id, p] : probes_) {
    for (auto at = p.retry_at_ms.begin(); at != p.retry_at_ms.end();) {
      if (now.mono_ms < at->second) {
        ++at;
        continue;
      }
      send_probe(id, at->first, now);
      at = p.retry_at_ms.erase(at);
    }
  }
}

void Driver::wait_for_register(uint64_t req, Ask ask, const Txid& id, const std::string& code,
                               const Now& now) {
  register_waiters_[id].push_back(RegisterWaiter{req, ask});
  if (register_proposed_.count(id)) return;
  register_proposed_.insert(id);
  DecisionRecord d;
  d.txid = id;
  d.term = ballot_;
  d.outcome = Outcome::aborted;
  d.reason = AbortReason{"", code,
                         code == "coordinator_failover"
                             ? "the coordinator leader that began this transaction failed over "
                               "before deciding it"
                             : "no decision was made for this transaction (presumed abort)",
                         ""};
  d.decided_at_ms = now.wall_ms;
  auto it = txns_.find(id);
  if (it != txns_.end()) {
    for (const Branch& b : it->second.branches) {
      if (b.touched) d.participants.push_back(Enlisted{b.name, b.agent_id});
    }
  }
  event(Event::Level::info, &id, "proposing ABORT (" + code + ")");
  uint64_t p = propose(std::move(d));
  proposals_[p] = id;
}

void Driver::answer_register_waiters(const Txid& id, const TxnEntry& e) {
  register_proposed_.erase(id);
  auto it = register_waiters_.find(id);
  if (it == register_waiters_.end()) return;
  auto waiters = std::move(it->second);
  register_waiters_.erase(it);
  for (const RegisterWaiter& w : waiters)
    answer_from_register(w.req, w.ask, id, e);
}

void Driver::answer_from_register(uint64_t req, Ask ask, const Txid& id, const TxnEntry& e) {
  const DecisionRecord& d = e.decision;
  switch (ask) {
    case Ask::commit:
      return answer_outcome(req, id, d.outcome, d.reason, nullptr, &d.results_json);
    case Ask::abort:
      return answer_abort_result(req, id, d.outcome, d.reason);
    case Ask::exec: {
      boost::json::object extra;
      extra["txid"] = id.str();
      extra["outcome"] = txn::outcome_name(d.outcome);
      if (d.reason.code == "coordinator_failover") {
        return answer_error(req, 409, "coordinator_failover",
                            "this transaction was begun by a previous coordinator leader and "
                            "has aborted",
                            std::move(extra));
      }
      return answer_error(req, 409, "not_active",
                          std::string("the transaction has ") + txn::outcome_name(d.outcome),
                          std::move(extra));
    }
    case Ask::status:
      return answer(req, 200, status_json(id, nullptr, &e, Now{}));
    case Ask::inquiry:
      return answer(req, 200,
                    inquiry_json(id, d.outcome == Outcome::committed ? "committed" : "aborted"));
  }
}

void Driver::answer_forgotten(uint64_t req, Ask ask, const Txid& id) {
  if (ask == Ask::inquiry && cfg_.bugs.presume_abort_below_watermark) {
    return answer(req, 200, inquiry_json(id, "aborted"));  // planted bug
  }
  if (ask == Ask::inquiry) {
    boost::json::object body = inquiry_json(id, "forgotten");
    boost::json::object err;
    err["code"] = "forgotten";
    err["message"] = "the transaction finished long ago and its outcome was forgotten";
    body["error"] = std::move(err);
    return answer(req, 410, body);
  }
  answer_error(req, 410, "forgotten",
               "transaction " + id.str() +
                   " finished long ago and its outcome was forgotten (below the watermark)");
}

// ---------------------------------------------------------------------------
// Failover: re-drive, sweep

Driver::Txn& Driver::adopt_decided(const TxnEntry& e, const Now& now) {
  const DecisionRecord& d = e.decision;
  Txn t;
  t.txid = d.txid;
  t.protocol = d.protocol;
  t.phase = Phase::deciding;
  t.ours = ballot_of(d.txid) == ballot_;
  t.created_mono_ms = now.mono_ms;
  t.created_wall_ms = d.decided_at_ms;
  t.key = d.idempotency_key;
  auto h = table_->hazards().find(d.txid);
  for (const Enlisted& p : d.participants) {
    Branch b;
    b.name = p.name;
    b.agent_id = p.agent_id;
    if (const RegistryEntry* re = table_->participant(p.name)) b.url = re->url;
    b.touched = true;
    b.vote = Vote::yes;
    if (h != table_->hazards().end()) {
      for (const HazardRecord& r : h->second.reports)
        b.hazard = b.hazard || r.participant == p.name;
    }
    t.branches.push_back(std::move(b));
  }
  Txn& stored = txns_.emplace(d.txid, std::move(t)).first->second;
  stats_.in_flight = txns_.size();
  on_decided(stored, e, now);
  return stored;
}

void Driver::add_phase2_branch(Txn& t, const std::string& participant, const Now& now) {
  for (Branch& b : t.branches) {
    if (b.name == participant) {
      if (!b.in_phase2 && !b.acked) {
        b.in_phase2 = true;
        b.touched = true;
        t.acks_done = false;
        if (t.phase == Phase::decided) send_decision(t, b, now);
      }
      return;
    }
  }
  Branch b;
  b.name = participant;
  if (const RegistryEntry* re = table_->participant(participant)) {
    b.agent_id = re->agent_id;
    b.url = re->url;
  }
  b.touched = true;
  b.in_phase2 = true;
  t.branches.push_back(std::move(b));
  t.acks_done = false;
  if (t.phase == Phase::decided) send_decision(t, t.branches.back(), now);
}

void Driver::redrive_open(const Now& now) {
  for (const Txid& id : table_->open()) {
    if (txns_.count(id)) continue;
    const TxnEntry* e = table_->find(id);
    if (cfg_.bugs.precommit_as_undecided && e->decision.protocol == Protocol::three_pc &&
        e->decision.outcome == Outcome::committed) {
      continue;  // planted bug: left to the sweep, which takes it for undecided
    }
    adopt_decided(*table_->find(id), now);
  }
}

void Driver::start_sweep(const Now& now) {
  for (const auto& [name, e] : table_->registry()) {
    sweep_pending_[name] = true;
    send_list(name, "", now);
  }
}

void Driver::send_list(const std::string& participant, const std::string& after, const Now& now) {
  (void)now;
  AgentCall* c = new_registry_call(AgentCall::Kind::list, participant);
  if (!c) {
    sweep_pending_.erase(participant);
    return;
  }
  c->after = after;
  c->list_limit = cfg_.list_page;
  calls_[c->id] = CallRef{Txid{}, participant, true, after, AgentCall::Kind::list};
  sweep_in_flight_.insert(participant);
}

void Driver::on_list_reply(const std::string& participant, const std::string& after, AgentReply& r,
                           const Now& now) {
  sweep_in_flight_.erase(participant);
  if (!sweep_pending_.count(participant)) return;
  if (r.delivery != AgentReply::Delivery::answered || r.http_status != 200 || !r.list) {
    // Unreachable or refusing: try again later. The watermark waits for it.
    sweep_resume_[participant] = after;
    sweep_retry_at_[participant] = now.mono_ms + cfg_.sweep_retry_ms;
    return;
  }
  for (const txn::BranchStatus& bs : r.list->branches)
    on_swept_branch(participant, bs, now);
  if (r.list->next) return send_list(participant, *r.list->next, now);
  sweep_pending_.erase(participant);
  sweep_resume_.erase(participant);
  sweep_retry_at_.erase(participant);
  event(Event::Level::info, nullptr, "swept participant '" + participant + "'");
  if (sweep_pending_.empty()) {
    // Every agent swept: adopted transactions may complete now (see
    // maybe_complete).
    std::vector<Txid> adopted;
    for (const auto& [id, t] : txns_) {
      if (!t.ours) adopted.push_back(id);
    }
    for (const Txid& id : adopted) {
      auto it = txns_.find(id);
      if (it != txns_.end()) maybe_complete(it->second, now);
    }
  }
}

void Driver::sweep_due(const Now& now) {
  for (const auto& [name, pending] : sweep_pending_) {
    (void)pending;
    if (sweep_in_flight_.count(name)) continue;
    auto at = sweep_retry_at_.find(name);
    if (at == sweep_retry_at_.end() || now.mono_ms < at->second) continue;
    sweep_retry_at_.erase(at);
    send_list(name, sweep_resume_[name], now);
  }
}

void Driver::on_swept_branch(const std::string& participant, const txn::BranchStatus& bs,
                             const Now& now) {
  if (bs.state == txn::BranchState::committed || bs.state == txn::BranchState::aborted) return;
  auto parsed = Txid::parse(bs.txid);
  if (!parsed.ok() || parsed->cluster != table_->cluster()) return;
  const Txid id = *parsed;
  if (const TxnEntry* e = table_->find(id)) {
    if (cfg_.bugs.precommit_as_undecided && e->decision.protocol == Protocol::three_pc &&
        bs.state == txn::BranchState::prepared && !txns_.count(id)) {
      // Planted bug: the 3PC commit decision read as undecided; the
      // prepared branch is rolled back as an orphan.
      Txn t;
      t.txid = id;
      t.ours = false;
      t.phase = Phase::aborting;
      Branch b;
      b.name = participant;
      if (const RegistryEntry* re = table_->participant(participant)) {
        b.agent_id = re->agent_id;
        b.url = re->url;
      }
      b.touched = true;
      t.branches.push_back(std::move(b));
      Txn& stored = txns_.emplace(id, std::move(t)).first->second;
      return abort_unlogged(stored, AbortReason{"", "coordinator_failover", "", ""}, now);
    }
    auto it = txns_.find(id);
    Txn& t = it != txns_.end() ? it->second : adopt_decided(*e, now);
    if (bs.state != txn::BranchState::active || e->decision.outcome == Outcome::aborted) {
      add_phase2_branch(t, participant, now);
    }
    return;
  }
  auto it = txns_.find(id);
  if (it != txns_.end()) {
    Txn& t = it->second;
    if (t.phase != Phase::aborting) return;  // this leader drives it
    // Being aborted without a log record, because another agent listed it
    // active; here it is prepared: the abort must be in the log (an
    // unlogged abort would let the watermark forget a prepared branch).
    if (bs.state == txn::BranchState::prepared) return propose_orphan_abort(id, participant, now);
    if (bs.state == txn::BranchState::active) return add_abort_branch(t, participant, now);
    return;
  }
  if (table_->classify(id) == TxnTable::Known::forgotten) {
    event(Event::Level::error, &id,
          "ALARM: participant '" + participant + "' holds a " + txn::branch_state_name(bs.state) +
              " branch below the watermark; its outcome is forgotten and an operator must "
              "settle it");
    return;
  }
  if (bs.state == txn::BranchState::precommitted) {
    // A PRECOMMIT is a decision in the log: a pre-committed branch with an
    // empty register cannot exist. Never abort it; say so loudly.
    event(Event::Level::error, &id,
          "ALARM: participant '" + participant +
              "' holds a pre-committed branch with no decision in the log");
    return;
  }
  if (bs.state == txn::BranchState::active) {
    if (ballot_of(id) < ballot_) {
      // Begun under an older leader and never prepared here. This agent has
      // seen our ballot (the listing carried it), so the old leader can no
      // longer prepare it: roll it back now rather than at its idle timeout.
      Txn t;
      t.txid = id;
      t.ours = false;
      t.phase = Phase::aborting;
      t.created_mono_ms = now.mono_ms;
      t.created_wall_ms = now.wall_ms;
      Branch b;
      b.name = participant;
      if (const RegistryEntry* re = table_->participant(participant)) {
        b.agent_id = re->agent_id;
        b.url = re->url;
      }
      b.touched = true;
      t.branches.push_back(std::move(b));
      Txn& stored = txns_.emplace(id, std::move(t)).first->second;
      stats_.in_flight = txns_.size();
      abort_unlogged(stored,
                     AbortReason{"", "coordinator_failover",
                                 "begun by a previous coordinator leader and never prepared", ""},
                     now);
    }
    return;
  }
  // Prepared with no decision, and not ours in flight: an orphan of an
  // older leader (or of a term this leader lost): abort it in the log, then
  // drive the abort to every agent that reports it.
  propose_orphan_abort(id, participant, now);
}

void Driver::add_abort_branch(Txn& t, const std::string& participant, const Now& now) {
  for (const Branch& b : t.branches) {
    if (b.name == participant) return;
  }
  Branch b;
  b.name = participant;
  if (const RegistryEntry* re = table_->participant(participant)) {
    b.agent_id = re->agent_id;
    b.url = re->url;
  }
  b.touched = true;
  t.branches.push_back(std::move(b));
  t.acks_done = false;
  send_decision(t, t.branches.back(), now);
}

void Driver::propose_orphan_abort(const Txid& id, const std::string& participant, const Now& now) {
  auto& parts = orphan_participants_[id];
  if (std::find(parts.begin(), parts.end(), participant) == parts.end()) {
    parts.push_back(participant);
  }
  if (orphan_props_.count(id) || register_proposed_.count(id)) return;
  orphan_props_.insert(id);
  // No idempotency key: aborting an orphan does not consume its key (T4).
  event(Event::Level::warn, &id,
        "orphan found prepared at '" + participant + "': proposing ABORT (coordinator failover)");
  propose_one_participant(
      id, Outcome::aborted,
      AbortReason{"", "coordinator_failover",
                  "prepared under a previous coordinator leader that did not decide it", ""},
      participant, now);
}

// ---------------------------------------------------------------------------
// The watermark (T3)

void Driver::maybe_advance_watermark(const Now& now) {
  if (!sweep_done() || watermark_proposed_) return;
  // The lowest txid whose outcome must still be known: nothing at or above
  // it is forgotten.
  Txid limit = Txid(table_->cluster(), txn::BallotId{ballot_.round, ballot_.node}, next_seq_);
  auto lower = [&](const Txid& t) {
    if (t < limit) limit = t;
  };
  if (!txns_.empty()) lower(txns_.begin()->first);
  if (!table_->open().empty()) lower(*table_->open().begin());
  for (const auto& [id, w] : register_waiters_)
    lower(id);
  for (const Txid& id : orphan_props_)
    lower(id);
  for (const auto& [id, p] : proposals_)
    lower(p);
  // A term's txids that have no record may still have committed in one
  // phase (their status is then found by a probe): keep every term whose
  // successor began less than the retention ago above the watermark.
  // (This leader's own txids are in txns_ until their record is applied.)
  for (auto t = term_seen_ms_.begin(); t != term_seen_ms_.end(); ++t) {
    auto next = std::next(t);
    if (next == term_seen_ms_.end() || !(t->first < ballot_)) break;
    if (next->second + cfg_.retention_ms > now.wall_ms) {
      lower(Txid(table_->cluster(), txn::BallotId{t->first.round, t->first.node}, 1));
      break;
    }
  }
  while (term_seen_ms_.size() > 1 &&
         std::next(term_seen_ms_.begin())->second + cfg_.retention_ms <= now.wall_ms) {
    term_seen_ms_.erase(term_seen_ms_.begin());  // over for longer than the retention
  }
  const auto& entries = table_->entries();
  size_t kept = entries.size();
  for (const auto& [id, e] : entries) {
    if (!(id < limit)) break;
    const bool old = e.decision.decided_at_ms + cfg_.retention_ms <= now.wall_ms;
    const bool over = kept > cfg_.retained_max;
    if (!e.completed || !(old || over)) {
      limit = id;
      break;
    }
    --kept;
  }
  if (!(table_->watermark() < limit)) return;
  watermark_proposed_ = limit;
  propose(WatermarkRecord{limit, ballot_});
}

// ---------------------------------------------------------------------------
// Inquiries, status, listings

void Driver::inquiry(uint64_t req, const std::string& txid, const Now& now) {
  find_ours(txid, req, Ask::inquiry, now);
}

void Driver::status(uint64_t req, const std::string& txid, const Now& now) {
  find_ours(txid, req, Ask::status, now);
}

void Driver::list(uint64_t req, const ListRequest& r, const Now& now) {
  if (!serving_) return answer_not_leader(req);
  std::optional<Txid> after;
  if (!r.after.empty()) {
    auto p = Txid::parse(r.after);
    if (!p.ok())
      return answer_error(req, 400, "invalid_argument", "after: " + p.status().message());
    after = *p;
  }
  const int64_t limit = std::clamp<int64_t>(r.limit, 1, 1000);
  // Both sources are ordered by txid: merge them.
  boost::json::array out;
  auto ti = after ? txns_.upper_bound(*after) : txns_.begin();
  const auto& entries = table_->entries();
  auto ei = after ? entries.upper_bound(*after) : entries.begin();
  std::optional<Txid> last;
  while (static_cast<int64_t>(out.size()) < limit && (ti != txns_.end() || ei != entries.end())) {
    const bool take_t = ti != txns_.end() && (ei == entries.end() || !(ei->first < ti->first));
    const Txid id = take_t ? ti->first : ei->first;
    const Txn* t = take_t ? &ti->second : (txns_.count(id) ? &txns_.at(id) : nullptr);
    const TxnEntry* e = table_->find(id);
    if (take_t) {
      ++ti;
      if (ei != entries.end() && ei->first == id) ++ei;
    } else {
      ++ei;
    }
    last = id;
    boost::json::object s = status_json(id, t, e, now);
    if (!r.state.empty() && s["state"].as_string() != r.state &&
        !(r.state == "in_doubt" && s["in_doubt"].as_bool())) {
      continue;
    }
    if (r.older_than_ms > 0) {
      const int64_t at = s["created_at_ms"].is_int64() ? s["created_at_ms"].as_int64() : 0;
      if (at > now.wall_ms - r.older_than_ms) continue;
    }
    out.push_back(std::move(s));
  }
  boost::json::object body;
  body["transactions"] = std::move(out);
  if (last && (ti != txns_.end() || ei != entries.end())) body["next"] = last->str();
  answer(req, 200, body);
}

void Driver::in_doubt(uint64_t req, const Now& now) {
  if (!serving_) return answer_not_leader(req);
  boost::json::array out;
  for (const auto& [id, t] : txns_) {
    if (t.phase == Phase::active || t.phase == Phase::aborting) continue;
    if (t.acks_done) continue;
    out.push_back(status_json(id, &t, table_->find(id), now));
  }
  boost::json::object body;
  body["transactions"] = std::move(out);
  answer(req, 200, body);
}

// ---------------------------------------------------------------------------
// Admin (T9)

void Driver::set_participant(uint64_t req, const ParticipantSetRecord& p, const Now& now) {
  (void)now;
  if (!serving_) return answer_not_leader(req);
  const uint64_t id = propose(p);
  admin_waiters_[id] = AdminWaiter{req, AdminWaiter::Kind::participant_set, p.name, Txid{}};
}

void Driver::remove_participant(uint64_t req, const std::string& name, const Now& now) {
  (void)now;
  if (!serving_) return answer_not_leader(req);
  if (!table_->participant(name)) {
    return answer_error(req, 404, "unknown_participant", "no participant named '" + name + "'");
  }
  for (const auto& [id, t] : txns_) {
    for (const Branch& b : t.branches) {
      if (b.name == name && !b.acked && t.phase != Phase::active) {
        return answer_error(req, 409, "participant_in_use",
                            "transaction " + id.str() + " still needs participant '" + name +
                                "'; remove it once nothing is in doubt there");
      }
    }
  }
  const uint64_t id = propose(ParticipantRemoveRecord{name});
  admin_waiters_[id] = AdminWaiter{req, AdminWaiter::Kind::participant_remove, name, Txid{}};
}

void Driver::operator_decision(uint64_t req, const OperatorDecision& od, const Now& now) {
  if (!serving_) return answer_not_leader(req);
  auto parsed = Txid::parse(od.txid);
  if (!parsed.ok() || parsed->cluster != table_->cluster()) {
    return answer_error(req, 404, "not_found", "no transaction " + od.txid);
  }
  const Txid id = *parsed;
  if (od.operator_name.empty() || od.reason.empty()) {
    return answer_error(req, 400, "invalid_argument",
                        "an operator's decision needs the operator's name and a reason");
  }
  if (const TxnEntry* e = table_->find(id)) {
    // T9: never contradict the register; the only action is to re-drive it.
    boost::json::object extra;
    extra["txid"] = id.str();
    extra["outcome"] = txn::outcome_name(e->decision.outcome);
    return answer_error(req, 409, "already_decided",
                        "the transaction is already decided; re-drive it instead "
                        "(POST /v1/admin/transactions/{txid}/redrive)",
                        std::move(extra));
  }
  const TxnTable::Known k = table_->classify(id);
  if (k == TxnTable::Known::forgotten) return answer_forgotten(req, Ask::status, id);
  if (k == TxnTable::Known::never_issued) {
    return answer_error(req, 404, "not_found", "no transaction " + id.str());
  }
  if (auto t = txns_.find(id); t != txns_.end() && (t->second.phase == Phase::one_phase ||
                                                    t->second.outcome == Outcome::committed)) {
    // One phase: the only participant's database decides (or has decided
    // commit, and the record is on its way); an operator may not.
    return answer_error(req, 409, "one_phase",
                        "the transaction commits in one phase at its only participant, whose "
                        "database decides it; ask its status");
  }
  DecisionRecord d;
  d.txid = id;
  d.term = ballot_;
  d.outcome = od.outcome;
  d.reason = AbortReason{"", "operator", od.reason, ""};
  d.decided_at_ms = now.wall_ms;
  d.operator_name = od.operator_name;
  d.operator_reason = od.reason;
  std::set<std::string> names(od.participants.begin(), od.participants.end());
  auto it = txns_.find(id);
  if (it != txns_.end()) {
    for (const Branch& b : it->second.branches) {
      if (b.touched) names.insert(b.name);
    }
  }
  auto op = orphan_participants_.find(id);
  if (op != orphan_participants_.end()) names.insert(op->second.begin(), op->second.end());
  for (const std::string& n : names) {
    const RegistryEntry* re = table_->participant(n);
    if (!re)
      return answer_error(req, 404, "unknown_participant", "no participant named '" + n + "'");
    d.participants.push_back(Enlisted{n, re->agent_id});
    orphan_participants_[id].push_back(n);
  }
  event(Event::Level::warn, &id,
        "operator " + od.operator_name + " decides " + txn::outcome_name(od.outcome) + ": " +
            od.reason);
  register_proposed_.insert(id);
  orphan_props_.insert(id);
  const uint64_t p = propose(std::move(d));
  proposals_[p] = id;
  admin_waiters_[p] = AdminWaiter{req, AdminWaiter::Kind::decision, "", id};
}

void Driver::redrive(uint64_t req, const std::string& txid, const Now& now) {
  if (!serving_) return answer_not_leader(req);
  auto parsed = Txid::parse(txid);
  const TxnEntry* e = parsed.ok() ? table_->find(*parsed) : nullptr;
  if (!e) return answer_error(req, 404, "not_found", "no decided transaction " + txid);
  auto it = txns_.find(*parsed);
  Txn& t = it != txns_.end() ? it->second : adopt_decided(*e, now);
  for (Branch& b : t.branches) {
    b.backoff_ms = 0;
    if (!b.acked && !b.call_in_flight && b.in_phase2) send_decision(t, b, now);
  }
  boost::json::object body;
  body["txid"] = t.txid.str();
  body["outcome"] = txn::outcome_name(e->decision.outcome);
  body["redriving"] = !t.acks_done;
  answer(req, 202, body);
}

void Driver::clear_hazard(uint64_t req, const HazardClearedRecord& h, const Now& now) {
  (void)now;
  if (!serving_) return answer_not_leader(req);
  if (!table_->hazards().count(h.txid)) {
    return answer_error(req, 404, "not_found", "no heuristic hazard recorded for " + h.txid.str());
  }
  const uint64_t p = propose(h);
  admin_waiters_[p] = AdminWaiter{req, AdminWaiter::Kind::hazard_cleared, "", h.txid};
}

void Driver::seed_registry(std::vector<ParticipantSetRecord> seed) {
  seed_ = std::move(seed);
}

void Driver::answer_admin(uint64_t proposal_id, ProposeOutcome outcome) {
  auto it = admin_waiters_.find(proposal_id);
  if (it == admin_waiters_.end()) return;
  AdminWaiter w = it->second;
  admin_waiters_.erase(it);
  if (outcome != ProposeOutcome::applied) {
    if (outcome == ProposeOutcome::unknown) {
      return answer_error(w.req, 202, "unknown",
                          "leadership changed while the change was proposed; check again");
    }
    return answer_not_leader(w.req);
  }
  boost::json::object body;
  switch (w.kind) {
    case AdminWaiter::Kind::participant_set: {
      const RegistryEntry* e = table_->participant(w.name);
      body["name"] = w.name;
      if (e) {
        body["agent_id"] = e->agent_id;
        body["url"] = e->url;
      }
      return answer(w.req, 200, body);
    }
    case AdminWaiter::Kind::participant_remove:
      body["name"] = w.name;
      body["removed"] = table_->participant(w.name) == nullptr;
      return answer(w.req, 200, body);
    case AdminWaiter::Kind::decision: {
      const TxnEntry* e = table_->find(w.txid);
      if (!e) {
        return answer_error(w.req, 409, "not_decided",
                            "the decision did not take effect (leadership changed); try again");
      }
      body["txid"] = w.txid.str();
      body["outcome"] = txn::outcome_name(e->decision.outcome);
      body["operator"] = e->decision.operator_name;
      if (e->decision.operator_name.empty()) {
        body["error"] =
            boost::json::object{{"code", "already_decided"},
                                {"message", "another decision was applied first; it stands"}};
        return answer(w.req, 409, body);
      }
      return answer(w.req, 200, body);
    }
    case AdminWaiter::Kind::hazard_cleared:
      body["txid"] = w.txid.str();
      body["cleared"] = table_->hazards().count(w.txid) == 0;
      return answer(w.req, 200, body);
  }
}

// ---------------------------------------------------------------------------
// Metrics and invariants

std::map<std::string, Driver::InDoubt> Driver::in_doubt_by_participant(const Now& now) const {
  std::map<std::string, InDoubt> out;
  for (const auto& [name, e] : table_->registry())
    out[name];
  for (const auto& [id, t] : txns_) {
    if (t.phase == Phase::active || t.phase == Phase::aborting) continue;
    for (const Branch& b : t.branches) {
      if (b.vote != Vote::yes || b.acked) continue;
      InDoubt& d = out[b.name];
      ++d.branches;
      if (b.prepared_at_ms) {
        d.oldest_prepared_ms = std::max(d.oldest_prepared_ms, now.mono_ms - b.prepared_at_ms);
      }
    }
  }
  return out;
}

std::string Driver::check_invariants() const {
  for (const auto& [id, t] : txns_) {
    if (!(t.txid == id)) return "transaction keyed by another txid";
    const TxnEntry* e = table_->find(id);
    if (t.phase == Phase::decided) {
      if (!e) return "decided transaction " + id.str() + " has no register";
      if (!t.outcome || *t.outcome != e->decision.outcome) {
        return "transaction " + id.str() + " drives an outcome other than its register's";
      }
    }
    if (t.phase == Phase::aborting && e && e->decision.outcome == Outcome::committed) {
      return "transaction " + id.str() + " is being aborted but its register says committed";
    }
    if (t.ours && serving_ && !(ballot_of(id) == ballot_)) {
      return "transaction " + id.str() + " marked ours under another ballot";
    }
    for (const Branch& b : t.branches) {
      if (b.call_in_flight && !calls_.count(b.call_id)) {
        return "branch " + b.name + " of " + id.str() + " waits for a call nobody tracks";
      }
      if (b.acked && b.hazard) return "branch both acknowledged and hazardous";
    }
  }
  if (!serving_ && !txns_.empty()) return "not serving but driving transactions";
  return {};
}

}  // namespace dtx::coordinator
