// A harness for the coordinator's pure drivers: it plays the log (proposals
// are applied to a TxnTable when the test says so), the agents (the test
// answers each AgentCall) and the clock. No threads, no sockets.
#pragma once

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "coordinator/core/driver.h"
#include "coordinator/core/table.h"

namespace dtx::coordinator::testing {

inline DriverConfig test_config() {
  DriverConfig c;
  c.retry_min_ms = 10;
  c.retry_max_ms = 80;
  c.busy_retry_ms = 1;
  c.completed_flush_ms = 5;
  c.watermark_every_ms = 100;
  c.sweep_retry_ms = 50;
  // The two-phase paths are tested with one participant too; the one-phase
  // tests turn it on (one_phase_config).
  c.one_phase = false;
  return c;
}
inline DriverConfig one_phase_config() {
  DriverConfig c = test_config();
  c.one_phase = true;
  return c;
}

struct Harness {
  explicit Harness(DriverConfig cfg = test_config()) : driver(cfg, &table) {}

  TxnTable table{"c1"};
  Driver driver;
  Now now{1'000, 1'700'000'000'000};
  Slot slot = 0;
  uint64_t next_req = 1;
  std::deque<AgentCall> calls;
  std::deque<Proposal> proposals;
  std::map<uint64_t, Answer> answers;  // by request id
  std::vector<Event> events;

  void pump() {
    Effects fx = driver.take_effects();
    for (auto& c : fx.calls)
      calls.push_back(std::move(c));
    for (auto& p : fx.proposals)
      proposals.push_back(std::move(p));
    for (auto& a : fx.answers) {
      EXPECT_FALSE(answers.count(a.request_id)) << "request answered twice: " << a.request_id;
      answers[a.request_id] = std::move(a);
    }
    for (auto& e : fx.events)
      events.push_back(std::move(e));
    const std::string bad = driver.check_invariants();
    EXPECT_TRUE(bad.empty()) << bad;
    EXPECT_TRUE(table.check_invariants().ok());
  }

  void register_participants(std::vector<std::string> names) {
    for (const auto& n : names) {
      (void)table.apply(++slot, ParticipantSetRecord{n, n, "127.0.0.1:" + n});
    }
  }

  // This replica wins an election: it proposes its TERM and serves once the
  // TERM is applied (with whatever else is pending in the log before it).
  void elect(Ballot b) {
    driver.on_elected(b, now);
    pump();
    apply_all();
    EXPECT_TRUE(driver.serving());
  }
  void serve(Ballot b) {
    elect(b);
    // The sweep lists every agent first; answer with nothing held.
    answer_sweep({});
  }

  // Answers every pending list call with `held` (txid -> state) for that
  // participant, or nothing.
  void answer_sweep(const std::map<std::string, std::vector<txn::BranchStatus>>& held) {
    for (size_t i = 0; i < calls.size();) {
      if (calls[i].kind != AgentCall::Kind::list) {
        ++i;
        continue;
      }
      AgentCall c = calls[i];
      calls.erase(calls.begin() + static_cast<long>(i));
      AgentReply r;
      r.http_status = 200;
      r.list = txn::BranchListAnswer{};
      auto it = held.find(c.participant);
      if (it != held.end()) r.list->branches = it->second;
      driver.on_agent_reply(c.id, std::move(r), now);
      pump();
    }
  }

  // Applies every queued proposal, in order, as the log would.
  void apply_all() {
    while (!proposals.empty()) {
      Proposal p = std::move(proposals.front());
      proposals.pop_front();
      ApplyResult res = table.apply(++slot, p.record);
      driver.on_applied(p.record, res, now);
      driver.on_proposed(p.id, ProposeOutcome::applied, now);
      pump();
    }
  }

  void advance(int64_t ms) {
    now.mono_ms += ms;
    now.wall_ms += ms;
    driver.tick(now);
    pump();
  }

  uint64_t req() { return next_req++; }

  std::string begin(Protocol p = Protocol::two_pc, std::string key = "") {
    const uint64_t r = req();
    BeginRequest b;
    b.protocol = p;
    b.idempotency_key = std::move(key);
    driver.begin(r, b, now);
    pump();
    EXPECT_EQ(answers.at(r).http_status, 201) << answers.at(r).body;
    return json(r).at("txid").as_string().c_str();
  }

  uint64_t exec(const std::string& txid, const std::string& participant,
                const std::string& sql = "UPDATE t SET v = v + 1 WHERE id = 1") {
    const uint64_t r = req();
    ExecRequest e;
    e.txid = txid;
    e.participant = participant;
    e.statement.sql = sql;
    driver.exec(r, std::move(e), now);
    pump();
    return r;
  }

  uint64_t commit(const std::string& txid, bool wait_completed = false) {
    const uint64_t r = req();
    driver.commit(r, CommitRequest{txid, wait_completed}, now);
    pump();
    return r;
  }

  // The first pending call of this kind (to this participant, if given).
  AgentCall take(AgentCall::Kind kind, const std::string& participant = "") {
    for (auto it = calls.begin(); it != calls.end(); ++it) {
      if (it->kind == kind && (participant.empty() || it->participant == participant)) {
        AgentCall c = *it;
        calls.erase(it);
        return c;
      }
    }
    ADD_FAILURE() << "no " << call_kind_name(kind) << " call to '" << participant << "'";
    return AgentCall{};
  }
  bool has_call(AgentCall::Kind kind, const std::string& participant = "") const {
    return std::any_of(calls.begin(), calls.end(), [&](const AgentCall& c) {
      return c.kind == kind && (participant.empty() || c.participant == participant);
    });
  }

  void reply(const AgentCall& c, AgentReply r) {
    driver.on_agent_reply(c.id, std::move(r), now);
    pump();
  }

  static AgentReply ok_exec() {
    AgentReply r;
    r.http_status = 200;
    r.body = R"({"columns":[],"rows":[],"rows_affected":1})";
    return r;
  }
  static AgentReply vote(bool yes) {
    AgentReply r;
    r.http_status = 200;
    r.vote = txn::VoteAnswer{};
    r.vote->vote = yes ? txn::Vote::yes : txn::Vote::no;
    if (!yes) r.vote->reason = txn::DbError{"40001", "could not serialize"};
    return r;
  }
  static AgentReply vote_read_only() {
    AgentReply r;
    r.http_status = 200;
    r.vote = txn::VoteAnswer{};
    r.vote->vote = txn::Vote::read_only;
    return r;
  }
  static AgentReply one_phase(Outcome o, bool read_only = false) {
    AgentReply r;
    r.http_status = 200;
    r.one_phase = txn::OnePhaseAnswer{o, {}, read_only};
    if (o == Outcome::aborted) r.one_phase->reason = txn::DbError{"40001", "could not serialize"};
    return r;
  }
  static AgentReply branch(txn::BranchState s, bool busy = false) {
    AgentReply r;
    r.http_status = 200;
    r.status = txn::BranchStatus{};
    r.status->state = s;
    r.status->busy = busy;
    return r;
  }
  static AgentReply applied(Outcome o) {
    AgentReply r;
    r.http_status = 200;
    r.decision = txn::DecisionAnswer{o, false};
    return r;
  }
  static AgentReply error(int status, std::string code) {
    AgentReply r;
    r.http_status = status;
    r.error = txn::ApiError{};
    r.error->code = std::move(code);
    r.error->message = "refused";
    return r;
  }
  static AgentReply lost(bool timed_out = true) {
    AgentReply r;
    r.delivery = AgentReply::Delivery::unknown;
    r.timed_out = timed_out;
    return r;
  }

  boost::json::object json(uint64_t r) const {
    return boost::json::parse(answers.at(r).body).as_object();
  }
  bool answered(uint64_t r) const { return answers.count(r) > 0; }

  // The decision records proposed and not yet applied.
  std::vector<DecisionRecord> proposed_decisions() const {
    std::vector<DecisionRecord> out;
    for (const auto& p : proposals) {
      if (const auto* d = std::get_if<DecisionRecord>(&p.record)) out.push_back(*d);
    }
    return out;
  }
};

inline Txid parse(const std::string& s) {
  return *Txid::parse(s);
}

}  // namespace dtx::coordinator::testing
