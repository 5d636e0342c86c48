// The commit simulation (commit_sim.h): coordinator cores on Multi-Paxos
// replicas, agents on simulated databases, clients, one seed.
#include "tests/sim/commit_sim.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "coordinator/core/driver.h"
#include "coordinator/core/records.h"
#include "coordinator/core/table.h"
#include "participant/core/branch_machine.h"
#include "tests/sim/sim_events.h"
#include "tests/sim/sim_faults.h"
#include "tests/sim/sim_network.h"
#include "tests/sim/sim_paxos_node.h"
#include "tests/sim/sim_rng.h"

namespace dtx::sim {
namespace {

namespace co = dtx::coordinator;
using co::AgentCall;
using co::AgentReply;
using co::Outcome;
using co::Protocol;
using co::Txid;
using participant::BranchMachine;
using txn::BranchState;

constexpr int kCoordinators = 3;
constexpr int kAgentBase = 10;
constexpr int kClientBase = 20;
constexpr int kAccounts = 6;
constexpr int64_t kInitialBalance = 1000;
constexpr SimTime kCoordTickUs = 2 * kSimMs;
constexpr SimTime kAgentTickUs = 10 * kSimMs;
constexpr SimTime kClientTimeoutUs = 1500 * kSimMs;

class World;

// HTTP rides on TCP: a request or answer arrives at most once, however the
// simulated network duplicates or replays packets.
std::function<void()> once(std::function<void()> fn) {
  auto done = std::make_shared<bool>(false);
  return [done, fn = std::move(fn)] {
    if (*done) return;
    *done = true;
    fn();
  };
}

// ---------------------------------------------------------------------------
// The oracle: what was decided, told and done, whatever the tables forget.

class Oracle {
 public:
  explicit Oracle(World& w) : w_(w) {}
  void fail(const std::string& why);
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }

  // A replica's table applied `o` as the first decision for `id`.
  void on_register(const Txid& id, Outcome o, int replica) {
    auto [it, first] = registers_.emplace(id, o);
    if (!first && it->second != o) {
      fail("replica " + std::to_string(replica + 1) + " applied " + txn::outcome_name(o) + " for " +
           id.str() + " but the register holds " + txn::outcome_name(it->second));
    }
    if (first && o == Outcome::committed && told_aborted_.count(id)) {
      fail(id.str() + " was told aborted before any decision, then committed");
    }
    auto ag = agent_outcomes_.find(id);
    if (first && ag != agent_outcomes_.end()) {
      for (const auto& [agent, out] : ag->second) {
        if (out != o && !heuristic_.count(id)) {
          fail("agent " + std::to_string(agent) + " had " + txn::outcome_name(out) + " " +
               id.str() + " before the register said " + txn::outcome_name(o));
        }
      }
    }
  }
  // Someone (a client, an agent) was told an outcome.
  void on_told(const Txid& id, const std::string& outcome, const std::string& whom) {
    if (outcome != "committed" && outcome != "aborted") return;
    auto it = registers_.find(id);
    if (it == registers_.end()) {
      // One phase: the agent's commit is the decision; the register follows.
      if (outcome == "committed" && !one_phase_committed_.count(id))
        fail(whom + " was told committed for " + id.str() + " with no decision in any register");
      if (outcome == "aborted" && one_phase_committed_.count(id))
        fail(whom + " was told aborted for " + id.str() + ", committed in one phase");
      if (outcome == "aborted") told_aborted_.insert(id);
      return;
    }
    if (outcome != txn::outcome_name(it->second)) {
      fail(whom + " was told " + outcome + " for " + id.str() + " but the register holds " +
           txn::outcome_name(it->second));
    }
  }
  // An agent's database committed or aborted a branch.
  void on_agent_decided(const Txid& id, int agent, Outcome o, bool injected,
                        bool one_phase = false) {
    agent_outcomes_[id][agent] = o;
    if (injected) return;
    auto it = registers_.find(id);
    if (one_phase && o == Outcome::committed) {
      // Committed in one phase: no register needed first; any register that
      // follows must say commit (on_register), and nobody was told aborted.
      one_phase_committed_.insert(id);
      if (told_aborted_.count(id))
        fail(id.str() + " committed in one phase after 'aborted' was told");
      if (it != registers_.end() && it->second != o) {
        fail("agent " + std::to_string(agent) + " committed " + id.str() +
             " in one phase but the register holds aborted");
      }
      return;
    }
    if (it == registers_.end()) {
      if (o == Outcome::committed) {
        fail("agent " + std::to_string(agent) + " committed " + id.str() +
             " with no decision in any register");
      } else {
        aborted_unlogged_.insert(id);
      }
      return;
    }
    if (it->second != o && !heuristic_.count(id)) {
      fail("agent " + std::to_string(agent) + " " + txn::outcome_name(o) + " " + id.str() +
           " but the register holds " + txn::outcome_name(it->second));
    }
  }
  void on_heuristic(const Txid& id) { heuristic_.insert(id); }
  void on_completed(const Txid& id) {
    if (!heuristic_.count(id)) return;
    auto reg = registers_.find(id);
    auto ag = agent_outcomes_.find(id);
    if (reg == registers_.end() || ag == agent_outcomes_.end()) return;
    for (const auto& [agent, out] : ag->second) {
      if (out != reg->second) {
        fail(id.str() + " was marked COMPLETED though agent " + std::to_string(agent) +
             " has the other outcome (a heuristic hazard must stay visible)");
      }
    }
  }

  const std::map<Txid, Outcome>& registers() const { return registers_; }
  const std::map<Txid, std::map<int, Outcome>>& agent_outcomes() const { return agent_outcomes_; }
  const std::set<Txid>& heuristic() const { return heuristic_; }

 private:
  World& w_;
  std::string failure_;
  std::map<Txid, Outcome> registers_;
  std::set<Txid> told_aborted_;
  std::set<Txid> one_phase_committed_;
  std::set<Txid> aborted_unlogged_;
  std::map<Txid, std::map<int, Outcome>> agent_outcomes_;
  std::set<Txid> heuristic_;
};

// ---------------------------------------------------------------------------
// The simulated database behind an agent: balances; a prepared branch's
// writes are durable (the redo), a committed one leaves a marker row.

struct Write {
  int key = 0;
  int64_t delta = 0;
};

struct DbBranch {
  std::vector<Write> writes;
  std::vector<std::string> statements;  // "key:delta", in order (the checker's)
};

// ---------------------------------------------------------------------------

class SimAgent;
class SimCoord;
class SimClient;

class World {
 public:
  explicit World(const CommitSimOptions& o);
  CommitSimResult run();

  void trace(const std::string& line) {
    if (opt.trace) std::printf("%10.3f ms  %s\n", q.now() / 1000.0, line.c_str());
  }
  co::Now now() const { return co::Now{q.now() / kSimMs, 1'700'000'000'000 + q.now() / kSimMs}; }

  CommitSimOptions opt;
  FaultMix mix;
  Rng root;
  Rng faults;
  EventQueue q;
  SimNetwork net;
  Oracle oracle{*this};
  std::unique_ptr<SimPaxosGroup> group;
  std::vector<std::unique_ptr<SimCoord>> coords;
  std::vector<std::unique_ptr<SimAgent>> agents;
  std::vector<std::unique_ptr<SimClient>> clients;
  CommitSimResult result;
  SimTime heal_at = 0;
  SimTime clients_stop_at = 0;
  SimTime end_at = 0;
  co::DriverBugs bugs;
  int operator_armed = 0;
  int dba_armed = 0;
  int one_phase_crash_armed = 0;      // the leader dies just after the next one-phase commit
  std::set<consensus::Ballot> terms;  // every TERM applied anywhere
  std::vector<std::pair<std::string, int>> past_inquiries;  // (txid, agent), bounded
  void operator_abort(const std::string& txid);
  void crash_leader();

  // Client-side records: statements each client meant per (txid, agent).
  struct ClientTxn {
    std::map<int, std::vector<std::string>> statements;  // agent -> "key:delta"
  };
  std::map<Txid, ClientTxn> client_txns;

 private:
  void inject_fault();
  void final_checks();
  co::DriverConfig driver_config() const;
  friend class SimCoord;
};

// ---------------------------------------------------------------------------
// A coordinator replica: the real core on the real Paxos replica.

class SimCoord {
 public:
  SimCoord(World& w, int index) : w_(w), index_(index) {}

  SimPaxosHooks hooks() {
    SimPaxosHooks h;
    h.apply = [this](const consensus::AppliedEntry& e) { on_apply(e); };
    h.restore = [this](consensus::Slot, const std::string& data) { restore(data); };
    h.snapshot = [this](consensus::Slot) { return table_ ? table_->snapshot() : std::string(); };
    h.on_leader = [this](consensus::Ballot b, consensus::Slot) {
      if (!driver_) return;
      w_.trace("coordinator " + std::to_string(index_ + 1) + " elected under " + b.describe());
      driver_->on_elected(b, w_.now());
      flush();
    };
    h.on_leadership_lost = [this] {
      if (!driver_) return;
      driver_->on_not_serving();
      flush();
    };
    return h;
  }

  int endpoint() const { return index_; }
  bool up() const { return driver_ != nullptr && node().up(); }
  uint64_t incarnation() const { return inc_; }
  SimPaxosNode& node() const { return w_.group->node(index_); }
  co::Driver* driver() { return driver_.get(); }
  co::TxnTable* table() { return table_.get(); }

  // The Paxos replica restored its state machine: a fresh core on it.
  void restore(const std::string& data) {
    ++inc_;
    replies_.clear();
    calls_.clear();
    if (data.empty()) {
      table_ = std::make_unique<co::TxnTable>("sim");
    } else {
      auto t = co::TxnTable::restore(data);
      if (!t.ok()) {
        w_.oracle.fail("a snapshot did not load: " + t.status().describe());
        table_ = std::make_unique<co::TxnTable>("sim");
      } else {
        table_ = std::make_unique<co::TxnTable>(std::move(*t));
      }
    }
    driver_ = std::make_unique<co::Driver>(w_.driver_config(), table_.get());
    std::vector<co::ParticipantSetRecord> seed;
    for (size_t a = 0; a < w_.agents.size(); ++a) {
      const std::string name = "agent" + std::to_string(a);
      seed.push_back(co::ParticipantSetRecord{name, name, std::to_string(kAgentBase + a)});
    }
    driver_->seed_registry(std::move(seed));
    schedule_tick();
  }

  void crash() {
    ++inc_;
    driver_.reset();
    table_.reset();
    replies_.clear();
    calls_.clear();
  }

  // A client's request, delivered here; the answer goes back over the
  // network through `reply`.
  void on_client(const std::function<void(co::Driver&, uint64_t, const co::Now&)>& call,
                 std::function<void(co::Answer)> reply) {
    if (!up() || node().paused()) return;  // a paused machine: the client times out
    const uint64_t req = next_req_++;
    replies_[req] = std::move(reply);
    call(*driver_, req, w_.now());
    flush();
  }

  void on_agent_reply(uint64_t inc, uint64_t call_id, AgentReply r) {
    if (inc != inc_ || !up()) return;
    auto it = calls_.find(call_id);
    if (it == calls_.end()) return;
    calls_.erase(it);
    driver_->on_agent_reply(call_id, std::move(r), w_.now());
    flush();
  }

  void check() {
    if (!table_ || !driver_) return;
    if (Status s = table_->check_invariants(); !s.ok()) {
      w_.oracle.fail("replica " + std::to_string(index_ + 1) + " table: " + s.describe());
    }
    const std::string bad = driver_->check_invariants();
    if (!bad.empty()) w_.oracle.fail("replica " + std::to_string(index_ + 1) + " driver: " + bad);
  }

 private:
  void schedule_tick() {
    const uint64_t inc = inc_;
    w_.q.after(
        kCoordTickUs,
        [this, inc] {
          if (inc != inc_ || !up()) return;
          if (!node().paused()) {
            driver_->tick(w_.now());
            flush();
          }
          schedule_tick();
        },
        0x434f4f52);
  }

  void on_apply(const consensus::AppliedEntry& e) {
    if (!table_ || e.kind != consensus::AppliedEntry::Kind::command) return;
    auto rec = co::decode_record(e.command->payload);
    if (!rec.ok()) {
      w_.oracle.fail("undecodable record at slot " + std::to_string(e.slot));
      return;
    }
    const co::ApplyResult res = table_->apply(e.slot, *rec);
    if (res.kind == co::ApplyResult::Kind::decided && res.first_decision) {
      w_.oracle.on_register(res.txid, res.outcome, index_);
    }
    if (res.kind == co::ApplyResult::Kind::completed) {
      for (const Txid& t : res.txids)
        w_.oracle.on_completed(t);
    }
    if (res.kind == co::ApplyResult::Kind::term) w_.terms.insert(res.ballot);
    driver_->on_applied(*rec, res, w_.now());
    flush();
  }

  void flush();
  void send_call(AgentCall c);

  World& w_;
  int index_;
  uint64_t inc_ = 0;
  uint64_t next_req_ = 1;
  std::unique_ptr<co::TxnTable> table_;
  std::unique_ptr<co::Driver> driver_;
  std::map<uint64_t, std::function<void(co::Answer)>> replies_;
  std::set<uint64_t> calls_;
};

// ---------------------------------------------------------------------------
// An agent: BranchMachines over a simulated database, as dtx-agent runs them.

class SimAgent {
 public:
  SimAgent(World& w, int index, Rng rng)
      : w_(w), index_(index), rng_(std::move(rng)), db_(kAccounts, kInitialBalance) {
    timers_.active_idle_ticks = 300;
    timers_.inquiry_first_ticks = 5;
    timers_.inquiry_max_ticks = 50;
    timers_.precommit_timeout_ticks = 40;
    schedule_tick();
  }

  int endpoint() const { return kAgentBase + index_; }
  std::string name() const { return "agent" + std::to_string(index_); }
  bool up() const { return up_; }
  // Requests travel on TCP connections, which die with the process: one
  // sent to an earlier incarnation is never delivered to a later one.
  uint64_t incarnation() const { return inc_; }
  int64_t total() const {
    int64_t s = 0;
    for (int64_t v : db_)
      s += v;
    return s;
  }
  std::string in_doubt_txids() const {
    std::string out;
    for (const auto& [t, b] : branches_) {
      if (b.m.state() == BranchState::prepared || b.m.state() == BranchState::precommitted) {
        out += t + "(" + b.m.describe() + ") ";
      }
    }
    return out;
  }
  size_t in_doubt() const {
    size_t n = 0;
    for (const auto& [t, b] : branches_) {
      n += b.m.state() == BranchState::prepared || b.m.state() == BranchState::precommitted;
    }
    return n + (up_ ? 0 : prepared_.size());
  }
  const std::map<std::string, DbBranch>& committed() const { return committed_; }

  void crash() {
    up_ = false;
    ++inc_;
    branches_.clear();  // ACTIVE branches die with their sessions
    tombstones_.clear();
    read_only_.clear();
    // The fence (highest ballot seen) is durable: a restarted agent that
    // forgot it would take a prepare from a deposed leader after the new
    // leader's sweep, and that branch could be forgotten below the
    // watermark while prepared (found by seed 42).
  }

  void restart() {
    up_ = true;
    ++inc_;
    // Recovery (A5): every durable prepared branch is held again and asks
    // the group at once.
    for (const auto& [txid, rec] : prepared_) {
      Branch b{BranchMachine::recovered(txid, timers_, ticks_), rec};
      branches_.emplace(txid, std::move(b));
    }
    schedule_tick();
  }

  // A database administrator rolls a prepared branch back by hand.
  bool roll_back_by_hand(const std::string& only = "") {
    for (auto& [txid, b] : branches_) {
      if (!only.empty() && txid != only) continue;
      if (b.m.state() != BranchState::prepared || heuristic_.count(txid)) continue;
      heuristic_.insert(txid);
      prepared_.erase(txid);
      auto id = Txid::parse(txid);
      w_.oracle.on_heuristic(*id);
      w_.oracle.on_agent_decided(*id, index_, Outcome::aborted, true);
      w_.trace(name() + ": DBA rolled back " + txid + " by hand");
      return true;
    }
    return false;
  }

  void handle(const AgentCall& c, const std::function<void(AgentReply)>& reply) {
    if (!up_) return;
    if (w_.opt.trace && c.kind != AgentCall::Kind::list) {
      w_.trace(name() + " gets " + co::call_kind_name(c.kind) + " " + c.txid.str() + " from " +
               c.ballot.describe());
    }
    if (c.ballot > consensus::Ballot{highest_.round, highest_.node}) {
      highest_ = txn::BallotId{c.ballot.round, c.ballot.node};
    }
    if (c.watermark.valid() && watermark_ < c.watermark) watermark_ = c.watermark;
    switch (c.kind) {
      case AgentCall::Kind::exec:
        return reply(exec(c, c.seq, c.statement));
      case AgentCall::Kind::prepare:
        return reply(prepare(c, c.exec_count, c.digest));
      case AgentCall::Kind::batch:
        return reply(batch(c));
      case AgentCall::Kind::precommit:
        return reply(precommit(c));
      case AgentCall::Kind::commit:
        return reply(decide(c.txid.str(), Outcome::committed));
      case AgentCall::Kind::abort:
        return reply(decide(c.txid.str(), Outcome::aborted));
      case AgentCall::Kind::list:
        return reply(list());
      case AgentCall::Kind::commit_one_phase:
        return reply(commit_one_phase(c, c.exec_count, c.digest));
      case AgentCall::Kind::probe:
        return reply(probe(c.txid.str()));
    }
  }

 private:
  struct Branch {
    BranchMachine m;
    DbBranch db;
  };

  static AgentReply error(int status, std::string code, std::string message = "") {
    AgentReply r;
    r.http_status = status;
    r.error = txn::ApiError{};
    r.error->code = std::move(code);
    r.error->message = std::move(message);
    return r;
  }
  bool stale(const AgentCall& c) const {
    return consensus::Ballot{c.ballot.round, c.ballot.node} <
           consensus::Ballot{highest_.round, highest_.node};
  }

  AgentReply exec(const AgentCall& c, uint64_t seq, const txn::Statement& st) {
    if (stale(c)) return error(409, "stale_ballot");
    const std::string txid = c.txid.str();
    auto it = branches_.find(txid);
    if (it == branches_.end()) {
      if (seq != 1 || tombstones_.count(txid)) return error(409, "not_active");
      it = branches_.emplace(txid, Branch{BranchMachine(txid, timers_, ticks_), {}}).first;
    }
    Branch& b = it->second;
    switch (b.m.on_exec(seq, ticks_)) {
      case BranchMachine::ExecVerdict::run:
        break;
      case BranchMachine::ExecVerdict::out_of_sequence:
        return error(409, "out_of_sequence");
      case BranchMachine::ExecVerdict::not_active:
        return error(409, "not_active");
      case BranchMachine::ExecVerdict::busy:
        return error(409, "busy");
      case BranchMachine::ExecVerdict::doomed:
        return error(409, "doomed");
    }
    if (st.sql == "READ") {
      // A read: writes nothing (a branch of only reads votes read_only).
      b.m.on_exec_done(seq, st.sql, st.params, true, txn::DbError{}, ticks_);
      check(b);
      AgentReply r;
      r.http_status = 200;
      r.body = R"({"columns":["balance"],"rows":[[1]],"rows_affected":0})";
      return r;
    }
    // "ADD" with params [key, delta]: fails when a balance would go negative.
    const int key = static_cast<int>(std::get<int64_t>(st.params.at(0)));
    const int64_t delta = std::get<int64_t>(st.params.at(1));
    int64_t balance = db_.at(key);
    for (const Write& wr : b.db.writes) {
      if (wr.key == key) balance += wr.delta;
    }
    const bool ok = balance + delta >= 0;
    txn::DbError err;
    if (ok) {
      b.db.writes.push_back(Write{key, delta});
      b.db.statements.push_back(std::to_string(key) + ":" + std::to_string(delta));
    } else {
      err = txn::DbError{"23514", "balance would go negative"};
    }
    b.m.on_exec_done(seq, st.sql, st.params, ok, err, ticks_);
    check(b);
    if (!ok) {
      AgentReply r = error(422, "sql_error", err.message);
      r.error->sqlstate = err.sqlstate;
      return r;
    }
    AgentReply r;
    r.http_status = 200;
    r.body = R"({"columns":[],"rows":[],"rows_affected":1})";
    return r;
  }

  AgentReply prepare(const AgentCall& c, uint64_t exec_count, uint64_t digest) {
    if (stale(c)) return error(409, "stale_ballot");
    const std::string txid = c.txid.str();
    auto it = branches_.find(txid);
    AgentReply r;
    r.http_status = 200;
    r.vote = txn::VoteAnswer{};
    if (read_only_.count(txid)) {
      r.vote->vote = txn::Vote::read_only;  // a repeated prepare
      return r;
    }
    if (it == branches_.end()) {
      r.vote->vote = txn::Vote::no;  // unknown here (lost in a crash): nothing to prepare
      r.vote->reason = txn::DbError{"dtx02", "no such branch here"};
      return r;
    }
    Branch& b = it->second;
    switch (b.m.on_prepare(exec_count, digest, ticks_)) {
      case BranchMachine::PrepareVerdict::run: {
        if (b.db.writes.empty()) {
          // Wrote nothing: over at once, no part in phase two. Its outcome
          // is whichever the coordinator asks (nothing to commit or undo),
          // so the oracle is not told one.
          b.m.on_prepare_read_only(ticks_);
          check(b);
          read_only_.insert(txid);
          tombstones_[txid] = Outcome::committed;
          branches_.erase(it);
          r.vote->vote = txn::Vote::read_only;
          return r;
        }
        // The database may refuse (a serialization failure): vote no.
        const bool yes = !rng_.chance(0.04);
        if (yes) prepared_[txid] = b.db;  // durable before the yes vote
        if (yes && w_.dba_armed > 0) {
          // The armed DBA strikes this branch a moment after its yes vote.
          --w_.dba_armed;
          const uint64_t inc = inc_;
          w_.q.after(rng_.between(0, 3) * kSimMs, [this, inc, txid] {
            if (inc == inc_ && up_ && roll_back_by_hand(txid)) ++w_.result.heuristics;
          });
        }
        b.m.on_prepare_done(yes, yes ? txn::DbError{} : txn::DbError{"40001", "serialization"},
                            ticks_);
        if (!yes) finish(txid, b, Outcome::aborted);
        r.vote->vote = yes ? txn::Vote::yes : txn::Vote::no;
        break;
      }
      case BranchMachine::PrepareVerdict::rollback:
        b.m.on_prepare_done(false, txn::DbError{"dtx01", "doomed"}, ticks_);
        finish(txid, b, Outcome::aborted);
        r.vote->vote = txn::Vote::no;
        break;
      case BranchMachine::PrepareVerdict::vote_yes:
        r.vote->vote = txn::Vote::yes;
        break;
      case BranchMachine::PrepareVerdict::vote_no:
        r.vote->vote = txn::Vote::no;
        break;
      case BranchMachine::PrepareVerdict::busy:
        return error(409, "busy");
    }
    auto again = branches_.find(txid);
    if (again != branches_.end()) check(again->second);
    return r;
  }

  AgentReply batch(const AgentCall& c) {
    if (stale(c)) return error(409, "stale_ballot");
    const std::string txid = c.txid.str();
    if (branches_.count(txid) || tombstones_.count(txid) || prepared_.count(txid)) {
      return error(409, "not_active");
    }
    AgentReply out;
    out.http_status = 200;
    out.batch = txn::BatchAnswer{};
    uint64_t seq = 0, digest = 0;
    for (const txn::Statement& st : c.statements) {
      ++seq;
      AgentReply r = exec(c, seq, st);
      txn::StatementResult sr;
      sr.ok = r.http_status == 200;
      if (!sr.ok) {
        sr.error = txn::DbError{r.error && r.error->sqlstate ? *r.error->sqlstate : "",
                                r.error ? r.error->message : ""};
        out.batch->results.push_back(sr);
        // The first error stops the batch; the branch votes no.
        AgentReply v = prepare(c, seq, 0);
        out.batch->vote = txn::VoteAnswer{txn::Vote::no, sr.error};
        (void)v;
        return out;
      }
      sr.rows.rows_affected = 1;
      out.batch->results.push_back(sr);
      digest = txn::exec_digest(digest, seq, st.sql, st.params);
    }
    if (c.one_phase) {
      AgentReply o = commit_one_phase(c, seq, digest);
      if (!o.one_phase) return o;  // busy or refused: as is
      out.batch->one_phase = *o.one_phase;
      return out;
    }
    AgentReply v = prepare(c, seq, digest);
    out.batch->vote = v.vote ? *v.vote : txn::VoteAnswer{};
    return out;
  }

  // The one-phase fast path, as the agent does it: the branch's work and its
  // marker row committed together, no prepared state. Asked again (or about
  // a txid no longer held): the record, else the marker, else aborted (and
  // remembered, so a late exec or batch of it is refused).
  AgentReply commit_one_phase(const AgentCall& c, uint64_t exec_count, uint64_t digest) {
    if (stale(c)) return error(409, "stale_ballot");
    const std::string txid = c.txid.str();
    AgentReply r;
    r.http_status = 200;
    r.one_phase = txn::OnePhaseAnswer{};
    auto it = branches_.find(txid);
    if (it == branches_.end()) {
      auto t = tombstones_.find(txid);
      Outcome o = Outcome::aborted;
      if (t != tombstones_.end()) {
        o = t->second;
      } else if (markers_.count(txid)) {
        o = Outcome::committed;
      } else {
        auto id = Txid::parse(txid);
        if (id.ok() && *id < watermark_) return error(410, "forgotten");
        tombstones_[txid] = Outcome::aborted;
      }
      r.one_phase->outcome = o;
      r.one_phase->read_only = read_only_.count(txid) > 0;
      if (o == Outcome::aborted) r.one_phase->reason = txn::DbError{"dtx02", "no such branch here"};
      return r;
    }
    Branch& b = it->second;
    switch (b.m.on_prepare(exec_count, digest, ticks_)) {
      case BranchMachine::PrepareVerdict::run:
        break;
      case BranchMachine::PrepareVerdict::busy:
        return error(409, "busy");
      case BranchMachine::PrepareVerdict::rollback:
      case BranchMachine::PrepareVerdict::vote_no:
      case BranchMachine::PrepareVerdict::vote_yes:
        b.m.on_prepare_done(false, txn::DbError{"dtx01", "doomed"}, ticks_);
        finish(txid, b, Outcome::aborted);
        r.one_phase->reason = txn::DbError{"dtx01", "doomed"};
        return r;
    }
    if (b.db.writes.empty()) {
      b.m.on_prepare_read_only(ticks_);
      read_only_.insert(txid);
      tombstones_[txid] = Outcome::committed;
      branches_.erase(it);
      r.one_phase->outcome = Outcome::committed;
      r.one_phase->read_only = true;
      return r;
    }
    if (rng_.chance(0.04)) {  // the database refuses the commit
      b.m.on_prepare_done(false, txn::DbError{"40001", "serialization"}, ticks_);
      finish(txid, b, Outcome::aborted);
      r.one_phase->reason = txn::DbError{"40001", "serialization"};
      return r;
    }
    // Modelled as prepare and commit in one step (nothing can come between).
    b.m.on_prepare_done(true, txn::DbError{}, ticks_);
    (void)b.m.on_commit();
    b.m.on_decided(Outcome::committed, Outcome::committed, ticks_);
    finish(txid, b, Outcome::committed, /*one_phase=*/true);
    r.one_phase->outcome = Outcome::committed;
    // An interactive one (its client knows the txid and asks its status).
    if (w_.one_phase_crash_armed > 0 && c.kind == AgentCall::Kind::commit_one_phase) {
      --w_.one_phase_crash_armed;
      World& w = w_;
      w_.q.after(0, [&w] { w.crash_leader(); });
    }
    return r;
  }

  // GET of a branch (a new leader's probe; it raised the fence above).
  AgentReply probe(const std::string& txid) {
    AgentReply r;
    r.http_status = 200;
    r.status = txn::BranchStatus{};
    r.status->txid = txid;
    auto it = branches_.find(txid);
    if (it != branches_.end()) {
      r.status->state = it->second.m.state();
      return r;
    }
    auto t = tombstones_.find(txid);
    if (t != tombstones_.end()) {
      r.status->state =
          t->second == Outcome::committed ? BranchState::committed : BranchState::aborted;
      r.status->outcome = t->second;
      r.status->read_only = read_only_.count(txid) > 0;
      return r;
    }
    if (markers_.count(txid)) {
      r.status->state = BranchState::committed;
      r.status->outcome = Outcome::committed;
      return r;
    }
    return error(404, "not_found");
  }

  AgentReply precommit(const AgentCall& c) {
    const std::string txid = c.txid.str();
    auto it = branches_.find(txid);
    if (it == branches_.end()) {
      auto t = tombstones_.find(txid);
      if (t != tombstones_.end() && t->second == Outcome::committed) {
        AgentReply r;
        r.http_status = 200;
        r.precommit = txn::PrecommitAnswer{BranchState::committed};
        return r;
      }
      return error(409, "not_prepared");
    }
    if (it->second.m.on_precommit(ticks_) != BranchMachine::PrecommitVerdict::ok) {
      return error(409, "not_prepared");
    }
    check(it->second);
    AgentReply r;
    r.http_status = 200;
    r.precommit = txn::PrecommitAnswer{it->second.m.state()};
    return r;
  }

  AgentReply decided(Outcome asked, Outcome actual) {
    AgentReply r;
    r.http_status = 200;
    r.decision = txn::DecisionAnswer{actual, actual != asked};
    return r;
  }

  AgentReply decide(const std::string& txid, Outcome asked) {
    if (read_only_.count(txid)) {
      AgentReply r = decided(asked, asked);
      r.decision->read_only = true;
      return r;
    }
    auto it = branches_.find(txid);
    if (it == branches_.end()) {
      auto t = tombstones_.find(txid);
      if (t != tombstones_.end()) return decided(asked, t->second);
      auto id = Txid::parse(txid);
      if (id.ok() && *id < watermark_ && !markers_.count(txid)) {
        return error(410, "forgotten");
      }
      // The marker row settles it (A3): present, committed; absent, never
      // committed here.
      const Outcome o = markers_.count(txid) ? Outcome::committed : Outcome::aborted;
      tombstones_[txid] = o;
      return decided(asked, o);
    }
    Branch& b = it->second;
    const auto verdict = asked == Outcome::committed ? b.m.on_commit() : b.m.on_abort();
    return run_decision(txid, b, asked, verdict);
  }

  AgentReply run_decision(const std::string& txid, Branch& b, Outcome asked,
                          BranchMachine::DecisionVerdict verdict) {
    switch (verdict) {
      case BranchMachine::DecisionVerdict::run_commit:
      case BranchMachine::DecisionVerdict::run_abort: {
        Outcome actual = verdict == BranchMachine::DecisionVerdict::run_commit ? Outcome::committed
                                                                               : Outcome::aborted;
        if (heuristic_.count(txid)) actual = Outcome::aborted;  // rolled back by hand
        b.m.on_decided(asked, actual, ticks_);
        return decided(asked, finish(txid, b, actual));
      }
      case BranchMachine::DecisionVerdict::answer: {
        auto o = b.m.outcome();
        if (!o) return error(409, "busy");
        return decided(asked, *o);
      }
      case BranchMachine::DecisionVerdict::refused:
        return error(409,
                     b.m.state() == BranchState::precommitted ? "precommitted" : "not_prepared");
    }
    return error(500, "internal");
  }

  // The database work of a decision; the branch is retired.
  Outcome finish(const std::string& txid, Branch& b, Outcome actual, bool one_phase = false) {
    auto id = Txid::parse(txid);
    if (actual == Outcome::committed) {
      for (const Write& wr : b.db.writes)
        db_.at(wr.key) += wr.delta;
      markers_.insert(txid);
      committed_[txid] = b.db;
    }
    prepared_.erase(txid);
    tombstones_[txid] = actual;
    if (!heuristic_.count(txid)) w_.oracle.on_agent_decided(*id, index_, actual, false, one_phase);
    branches_.erase(txid);
    return actual;
  }

  AgentReply list() {
    AgentReply r;
    r.http_status = 200;
    r.list = txn::BranchListAnswer{};
    for (const auto& [txid, b] : branches_) {
      txn::BranchStatus s;
      s.txid = txid;
      s.state = b.m.state();
      r.list->branches.push_back(s);
    }
    return r;
  }

  void check(const Branch& b) {
    std::string why;
    if (!b.m.check_invariants(&why)) w_.oracle.fail(name() + " branch machine: " + why);
  }

  // Timers: idle abort, inquiries, 3PC commit-alone.
  void schedule_tick() {
    const uint64_t inc = inc_;
    w_.q.after(
        kAgentTickUs,
        [this, inc] {
          if (inc != inc_ || !up_) return;
          tick();
          schedule_tick();
        },
        0x4147454e);
  }

  void tick() {
    ++ticks_;
    std::vector<std::string> ids;
    for (const auto& [txid, b] : branches_)
      ids.push_back(txid);
    for (const std::string& txid : ids) {
      auto it = branches_.find(txid);
      if (it == branches_.end()) continue;
      Branch& b = it->second;
      const BranchMachine::TickAction a = b.m.on_tick(ticks_);
      switch (a.kind) {
        case BranchMachine::TickKind::none:
          break;
        case BranchMachine::TickKind::abort_idle:
        case BranchMachine::TickKind::commit_alone: {
          const auto verdict = b.m.on_timer_decision(a.token);
          const Outcome asked = a.kind == BranchMachine::TickKind::commit_alone ? Outcome::committed
                                                                                : Outcome::aborted;
          if (verdict != BranchMachine::DecisionVerdict::answer) {
            w_.trace(name() + ": timer " + (asked == Outcome::committed ? "commits " : "aborts ") +
                     txid);
            run_decision(txid, b, asked, verdict);
          }
          break;
        }
        case BranchMachine::TickKind::inquire:
          inquire(txid);
          break;
      }
    }
  }

 public:
  // A late duplicate of an inquiry about `txid` (whatever this agent holds now).
  void inquire_again(const std::string& txid) {
    if (up_) inquire(txid, /*record=*/false);
  }

 private:
  void inquire(const std::string& txid, bool record = true) {
    if (record && w_.past_inquiries.size() < 4096) {
      w_.past_inquiries.emplace_back(txid, index_);
    }
    const int to = static_cast<int>(next_coord_++ % kCoordinators);
    const uint64_t inc = inc_;
    auto id = Txid::parse(txid);
    if (!id.ok()) return;
    World& w = w_;
    const uint64_t coord_inc = w_.coords[to]->incarnation();
    w_.net.send(
        endpoint(), to,
        [&w, this, inc, to, txid, tid = *id, coord_inc] {
          SimCoord& c = *w.coords[to];
          if (c.incarnation() != coord_inc) return;
          c.on_client([txid](co::Driver& d, uint64_t req,
                             const co::Now& now) { d.inquiry(req, txid, now); },
                      [&w, this, inc, to, txid, tid](co::Answer a) {
                        w.net.send(to, endpoint(), [this, inc, txid, tid, a] {
                          on_inquiry_answer(inc, txid, tid, a);
                        });
                      });
        },
        /*interesting=*/true);
  }

  void on_inquiry_answer(uint64_t inc, const std::string& txid, const Txid& id,
                         const co::Answer& a) {
    if (inc != inc_ || !up_) return;
    auto it = branches_.find(txid);
    if (it == branches_.end()) return;
    if (w_.opt.trace) w_.trace(name() + " inquiry answer for " + txid + ": " + a.body);
    BranchMachine::Answer ans = BranchMachine::Answer::unreachable;
    if (!a.not_leader) {
      boost::system::error_code ec;
      auto v = boost::json::parse(a.body, ec);
      if (!ec && v.is_object() && v.as_object().contains("outcome")) {
        const std::string o = v.as_object().at("outcome").as_string().c_str();
        w_.oracle.on_told(id, o, name() + " (inquiry)");
        if (o == "committed") ans = BranchMachine::Answer::committed;
        if (o == "aborted") ans = BranchMachine::Answer::aborted;
        if (o == "pending") ans = BranchMachine::Answer::pending;
        if (o == "forgotten") ans = BranchMachine::Answer::forgotten;
      }
    }
    Branch& b = it->second;
    const auto verdict = b.m.on_inquiry_answer(ans, ticks_);
    if (verdict == BranchMachine::DecisionVerdict::run_commit) {
      run_decision(txid, b, Outcome::committed, b.m.on_commit());
    } else if (verdict == BranchMachine::DecisionVerdict::run_abort) {
      run_decision(txid, b, Outcome::aborted, b.m.on_abort());
    }
  }

  World& w_;
  int index_;
  Rng rng_;
  participant::BranchTimers timers_;
  bool up_ = true;
  uint64_t inc_ = 0;
  uint64_t ticks_ = 1;
  uint64_t next_coord_ = 0;
  // Durable.
  std::vector<int64_t> db_;
  std::map<std::string, DbBranch> prepared_;   // the redo of prepared branches
  std::set<std::string> markers_;              // marker rows of committed branches
  std::map<std::string, DbBranch> committed_;  // the checker's record of committed branches
  std::set<std::string> heuristic_;            // rolled back by hand
  txn::BallotId highest_;                      // the fence
  // Volatile.
  std::map<std::string, Branch> branches_;
  std::map<std::string, Outcome> tombstones_;
  std::set<std::string> read_only_;  // voted read_only (forgotten in a crash)
  Txid watermark_;
};

// ---------------------------------------------------------------------------

void SimCoord::flush() {
  while (driver_ && driver_->has_effects()) {
    co::Effects fx = driver_->take_effects();
    for (const co::Event& e : fx.events) {
      w_.trace("coordinator " + std::to_string(index_ + 1) + ": " +
               (e.txid.empty() ? "" : "txid=" + e.txid + " ") + e.message);
    }
    for (co::Answer& a : fx.answers) {
      // Every outcome told to anyone must be the register's (T1).
      if (!a.not_leader && !a.body.empty()) {
        boost::system::error_code ec;
        auto v = boost::json::parse(a.body, ec);
        if (!ec && v.is_object()) {
          const auto& o = v.as_object();
          if (o.contains("txid") && o.contains("outcome") && o.at("outcome").is_string() &&
              o.at("txid").is_string()) {
            auto id = Txid::parse(o.at("txid").as_string().c_str());
            if (id.ok()) {
              w_.oracle.on_told(*id, o.at("outcome").as_string().c_str(),
                                "an answer of replica " + std::to_string(index_ + 1));
            }
          }
        }
      }
      auto it = replies_.find(a.request_id);
      if (it == replies_.end()) continue;
      auto reply = std::move(it->second);
      replies_.erase(it);
      reply(std::move(a));
    }
    for (co::Proposal& p : fx.proposals) {
      const uint64_t id = p.id;
      const uint64_t inc = inc_;
      node().propose(co::encode_record(p.record), [this, id, inc](consensus::ProposeResult r) {
        if (inc != inc_ || !driver_) return;
        co::ProposeOutcome o = co::ProposeOutcome::unknown;
        switch (r.outcome) {
          case consensus::ProposeResult::Outcome::applied:
            o = co::ProposeOutcome::applied;
            break;
          case consensus::ProposeResult::Outcome::unknown:
            o = co::ProposeOutcome::unknown;
            break;
          case consensus::ProposeResult::Outcome::not_leader:
            o = co::ProposeOutcome::not_leader;
            break;
          case consensus::ProposeResult::Outcome::not_serving:
            o = co::ProposeOutcome::not_serving;
            break;
          case consensus::ProposeResult::Outcome::too_large:
            o = co::ProposeOutcome::too_large;
            break;
          case consensus::ProposeResult::Outcome::busy:
            o = co::ProposeOutcome::busy;
            break;
          case consensus::ProposeResult::Outcome::stopped:
            o = co::ProposeOutcome::stopped;
            break;
        }
        driver_->on_proposed(id, o, w_.now());
        flush();
      });
    }
    for (AgentCall& c : fx.calls)
      send_call(std::move(c));
  }
}

void SimCoord::send_call(AgentCall c) {
  const int agent = std::stoi(c.url) - kAgentBase;
  SimAgent& a = *w_.agents.at(static_cast<size_t>(agent));
  const uint64_t inc = inc_;
  const uint64_t id = c.id;
  calls_.insert(id);
  if (!a.up()) {
    // Connection refused: certainly not sent.
    w_.q.after(kSimMs, [this, inc, id] {
      AgentReply r;
      r.delivery = AgentReply::Delivery::not_sent;
      on_agent_reply(inc, id, std::move(r));
    });
    return;
  }
  // No answer in time: the outcome is unknown.
  w_.q.after(c.timeout_ms * kSimMs, [this, inc, id] {
    AgentReply r;
    r.delivery = AgentReply::Delivery::unknown;
    r.timed_out = true;
    on_agent_reply(inc, id, std::move(r));
  });
  const int from = endpoint();
  World& w = w_;
  const uint64_t agent_inc = a.incarnation();
  w_.net.send(from, a.endpoint(), once([&w, &a, this, inc, id, from, agent_inc, c = std::move(c)] {
                if (a.incarnation() != agent_inc) return;  // the connection died with that process
                a.handle(c, [&w, &a, this, inc, id, from](AgentReply r) {
                  w.net.send(a.endpoint(), from, once([this, inc, id, r = std::move(r)]() mutable {
                               on_agent_reply(inc, id, std::move(r));
                             }));
                });
              }));
}

// ---------------------------------------------------------------------------
// A client: transfers between two agents, interactive or one-shot, 2PC or
// 3PC, some keyed and retried, one request at a time.

class SimClient {
 public:
  SimClient(World& w, int index, Rng rng) : w_(w), index_(index), rng_(std::move(rng)) {
    w_.q.after(rng_.between(1, 50) * kSimMs, [this] { next(); });
  }

 private:
  int endpoint() const { return kClientBase + index_; }

  // Sends a request to a coordinator, following not-leader answers to the
  // others; done(answer) or done(nullopt) on a timeout.
  void request(std::function<void(co::Driver&, uint64_t, const co::Now&)> call,
               std::function<void(std::optional<co::Answer>)> done, int attempts = 8) {
    const int to = target_;
    const uint64_t seq = ++request_seq_;
    World& w = w_;
    // Our own timeout.
    w_.q.after(kClientTimeoutUs, [this, seq, done] {
      if (answered_.count(seq)) return;
      answered_.insert(seq);
      done(std::nullopt);
    });
    const uint64_t coord_inc = w_.coords[to]->incarnation();
    w_.net.send(endpoint(), to, once([&w, this, to, seq, call, done, attempts, coord_inc] {
                  if (w.coords[to]->incarnation() != coord_inc) return;  // that process is gone
                  w.coords[to]->on_client(
                      call, [&w, this, to, seq, call, done, attempts](co::Answer a) {
                        w.net.send(to, endpoint(), once([this, seq, call, done, attempts, a] {
                                     if (answered_.count(seq)) return;
                                     answered_.insert(seq);
                                     if (a.not_leader && attempts > 0) {
                                       target_ = (target_ + 1) % kCoordinators;
                                       w_.q.after(20 * kSimMs, [this, call, done, attempts] {
                                         request(call, done, attempts - 1);
                                       });
                                       return;
                                     }
                                     done(a);
                                   }));
                      });
                }));
  }

  static std::optional<boost::json::object> body_of(const std::optional<co::Answer>& a) {
    if (!a) return std::nullopt;
    boost::system::error_code ec;
    auto v = boost::json::parse(a->body, ec);
    if (ec || !v.is_object()) return std::nullopt;
    return v.as_object();
  }

  void next() {
    if (w_.q.now() >= w_.clients_stop_at) return;
    const bool one_shot = rng_.chance(0.35);
    const Protocol p = rng_.chance(0.5) ? Protocol::three_pc : Protocol::two_pc;
    const int a = static_cast<int>(rng_.below(w_.agents.size()));
    int b = static_cast<int>(rng_.below(w_.agents.size() - 1));
    if (b >= a) ++b;
    // 20%: between two accounts of one database (one participant: the
    // one-phase fast path).
    if (rng_.chance(0.2)) b = a;
    Transfer t;
    t.from = a;
    t.to = b;
    t.key_from = static_cast<int>(rng_.below(kAccounts));
    t.key_to = static_cast<int>(rng_.below(kAccounts));
    if (a == b && t.key_to == t.key_from) t.key_to = (t.key_from + 1) % kAccounts;
    t.amount = rng_.between(1, 400);
    t.protocol = p;
    if (one_shot) {
      t.sequential = rng_.chance(0.3);
      if (a != b && w_.agents.size() >= 3 && rng_.chance(0.2)) {
        do {
          t.audit = static_cast<int>(rng_.below(w_.agents.size()));
        } while (t.audit == a || t.audit == b);
      }
      t.key = rng_.chance(0.6) ? "c" + std::to_string(index_) + "-" + std::to_string(++keys_) : "";
      submit(t, 3);
    } else {
      begin(t);
    }
  }

  struct Transfer {
    int from = 0, to = 0, key_from = 0, key_to = 0;
    int64_t amount = 0;
    Protocol protocol = Protocol::two_pc;
    std::string key;
    std::string txid;
    bool sequential = false;
    int audit = -1;  // one-shot: a third agent that is only read, or -1
  };

  static txn::Statement add(int key, int64_t delta) {
    return txn::Statement{"ADD", {int64_t{key}, delta}};
  }
  void later() {
    w_.q.after(rng_.between(0, 30) * kSimMs, [this] { next(); });
  }

  void record(const Transfer& t, int agent, int key, int64_t delta) {
    auto id = Txid::parse(t.txid);
    if (!id.ok()) return;
    w_.client_txns[*id].statements[agent].push_back(std::to_string(key) + ":" +
                                                    std::to_string(delta));
  }
  // A one-shot's statements, once (a keyed retry answers the same txid).
  void record_once(const Transfer& t) {
    auto id = Txid::parse(t.txid);
    if (!id.ok() || w_.client_txns.count(*id)) return;
    record(t, t.from, t.key_from, -t.amount);
    record(t, t.to, t.key_to, t.amount);
  }

  void submit(Transfer t, int tries) {
    ++w_.result.transactions;
    co::SubmitRequest s;
    s.protocol = t.protocol;
    s.idempotency_key = t.key;
    s.timeout_ms = 2000;
    s.sequential = t.sequential;
    if (t.from == t.to) {
      s.branches = {{"agent" + std::to_string(t.from),
                     {add(t.key_from, -t.amount), add(t.key_to, t.amount)}}};
    } else {
      s.branches = {{"agent" + std::to_string(t.from), {add(t.key_from, -t.amount)}},
                    {"agent" + std::to_string(t.to), {add(t.key_to, t.amount)}}};
    }
    if (t.audit >= 0) {
      // A third database only read: its branch votes read_only.
      s.branches.push_back(
          {"agent" + std::to_string(t.audit), {txn::Statement{"READ", {int64_t{t.key_from}}}}});
    }
    request([s](co::Driver& d, uint64_t req, const co::Now& now) { d.submit(req, s, now); },
            [this, t, tries](std::optional<co::Answer> a) mutable {
              auto body = body_of(a);
              if (body && body->contains("txid") && body->at("txid").is_string()) {
                t.txid = body->at("txid").as_string().c_str();
                record_once(t);
              }
              const bool unknown =
                  !a || a->http_status == 202 || a->not_leader || a->http_status >= 500;
              if (unknown && !t.key.empty() && tries > 0) {
                // A keyed submit may be retried: it runs once (T4).
                w_.q.after(50 * kSimMs, [this, t, tries] { submit(t, tries - 1); });
                --w_.result.transactions;
                return;
              }
              if (unknown) {
                ++w_.result.client_unknown;
                if (!t.txid.empty()) ask_status(t.txid);
              }
              later();
            });
  }

  // After an unknown answer a client asks for the status (its answer is
  // checked against the register like any other): after a failover this is
  // what makes a new leader probe for a one-phase commit.
  void ask_status(const std::string& txid, int tries = 10) {
    w_.q.after(rng_.between(100, 600) * kSimMs, [this, txid, tries] {
      w_.trace("client " + std::to_string(index_) + " asks the status of " + txid);
      request([txid](co::Driver& d, uint64_t req, const co::Now& now) { d.status(req, txid, now); },
              [this, txid, tries](std::optional<co::Answer> a) {
                // No answer, or not yet one (a replica down): ask another.
                if ((!a || a->not_leader || a->http_status >= 500) && tries > 1) {
                  target_ = (target_ + 1) % kCoordinators;
                  ask_status(txid, tries - 1);
                }
              });
    });
  }

  void begin(Transfer t) {
    ++w_.result.transactions;
    co::BeginRequest b;
    b.protocol = t.protocol;
    b.timeout_ms = 1500;
    request([b](co::Driver& d, uint64_t req, const co::Now& now) { d.begin(req, b, now); },
            [this, t](std::optional<co::Answer> a) mutable {
              auto body = body_of(a);
              if (!body || !body->contains("txid")) return later();
              t.txid = body->at("txid").as_string().c_str();
              // Known from the start: the checker compares what its agents
              // commit with what this client's execs were answered.
              w_.client_txns[*Txid::parse(t.txid)];
              exec(t, 0);
            });
  }

  void exec(Transfer t, int step) {
    if (step == 2) return finish(t, rng_.chance(0.08));
    const int agent = step == 0 ? t.from : t.to;
    const int key = step == 0 ? t.key_from : t.key_to;
    const int64_t delta = step == 0 ? -t.amount : t.amount;
    co::ExecRequest e;
    e.txid = t.txid;
    e.participant = "agent" + std::to_string(agent);
    e.statement = add(key, delta);
    request([e](co::Driver& d, uint64_t req, const co::Now& now) { d.exec(req, e, now); },
            [this, t, step, agent, key, delta](std::optional<co::Answer> a) mutable {
              if (!a) return later();  // no answer: abandoned, it times out and aborts
              if (a->http_status == 200) {
                record(t, agent, key, delta);
                return exec(t, step + 1);
              }
              // An exec that certainly did not run: a bank client gives the
              // transfer up. One that failed or whose outcome is unknown: this
              // client commits anyway, and the coordinator must abort it (T5).
              auto body = body_of(a);
              std::string code;
              if (body && body->contains("error") && body->at("error").is_object()) {
                code = body->at("error").as_object().at("code").as_string().c_str();
              }
              if (code == "participant_unreachable" || code == "participant_overloaded" ||
                  code == "busy" || a->not_leader) {
                return finish(t, /*abort=*/true);
              }
              finish(t, /*abort=*/false);
            });
  }

  void finish(const Transfer& t, bool abort) {
    const std::string txid = t.txid;
    if (!abort && w_.operator_armed > 0) {
      --w_.operator_armed;
      World& w = w_;
      w_.q.after(rng_.between(0, 6) * kSimMs, [&w, txid] { w.operator_abort(txid); });
    }
    request(
        [txid, abort](co::Driver& d, uint64_t req, const co::Now& now) {
          if (abort) {
            d.abort(req, txid, now);
          } else {
            d.commit(req, co::CommitRequest{txid, false}, now);
          }
        },
        [this, txid](std::optional<co::Answer> a) {
          if (!a || a->http_status == 202 || a->not_leader) {
            ++w_.result.client_unknown;
            ask_status(txid);
          }
          later();
        });
  }

  World& w_;
  int index_;
  Rng rng_;
  int target_ = 0;
  uint64_t request_seq_ = 0;
  uint64_t keys_ = 0;
  std::set<uint64_t> answered_;
};

// ---------------------------------------------------------------------------

void Oracle::fail(const std::string& why) {
  if (!failure_.empty()) return;
  std::ostringstream os;
  os << "seed " << w_.opt.seed << ", t=" << w_.q.now() / kSimMs << " ms: " << why;
  failure_ = os.str();
  w_.trace("VIOLATION: " + why);
}

World::World(const CommitSimOptions& o)
    : opt(o),
      mix(fault_mix(o.faults).value_or(FaultMix{})),
      root(o.seed),
      faults(root.derive("faults")),
      net(q, root.derive("network"), mix) {
  heal_at = o.fault_ms * kSimMs;
  clients_stop_at = heal_at + o.settle_ms * kSimMs / 3;
  end_at = heal_at + o.settle_ms * kSimMs;
  if (o.bug == "outcome_from_proposal") bugs.outcome_from_proposal = true;
  if (o.bug == "precommit_as_undecided") bugs.precommit_as_undecided = true;
  if (o.bug == "presume_abort_below_watermark") bugs.presume_abort_below_watermark = true;
  if (o.bug == "retry_exec_blindly") bugs.retry_exec_blindly = true;
  if (o.bug == "ack_without_outcome") bugs.ack_without_outcome = true;
  if (o.bug == "no_one_phase_probe") bugs.no_one_phase_probe = true;
  for (int i = 0; i < kCoordinators; ++i)
    coords.push_back(std::make_unique<SimCoord>(*this, i));
  SimPaxosGroupOptions go;
  go.replicas = kCoordinators;
  go.endpoint_base = 0;
  go.config.heartbeat_ticks = 1;
  go.config.election_ticks = 10;
  go.config.window_slots = 8;
  group = std::make_unique<SimPaxosGroup>(q, net, root.derive("paxos"), go,
                                          [this](int i) { return coords[i]->hooks(); });
  for (int a = 0; a < o.agents; ++a)
    agents.push_back(std::make_unique<SimAgent>(*this, a, root.derive("agent", a)));
}

co::DriverConfig World::driver_config() const {
  co::DriverConfig c;
  c.default_timeout_ms = 1500;
  c.exec_timeout_ms = 200;
  c.prepare_timeout_ms = 200;
  c.decision_timeout_ms = 150;
  c.retry_min_ms = 10;
  c.retry_max_ms = 200;
  c.busy_retry_ms = 2;
  c.completed_flush_ms = 5;
  c.sweep_retry_ms = 100;
  c.watermark_every_ms = 50;
  // Forget fast (the watermark moves all the time) in two seeds of three; in
  // the third keep outcomes long enough for a client's status question after a
  // failover (1.5 s of client timeout, then the question).
  c.retention_ms = opt.seed % 3 != 0 ? 100 : 3000;
  c.bugs = bugs;
  return c;
}

void World::inject_fault() {
  if (q.now() >= heal_at || !mix.any()) return;
  q.after(faults.between(mix.gap_us_min, mix.gap_us_max), [this] { inject_fault(); });
  const uint32_t total = mix.total_weight() + 12;
  uint64_t pick = faults.below(total ? total : 1);
  ++result.faults;
  auto coord_or_agent = [&](bool* is_coord) {
    *is_coord = faults.chance(0.5);
    return *is_coord ? static_cast<int>(faults.below(kCoordinators))
                     : static_cast<int>(faults.below(agents.size()));
  };
  if (pick < mix.crash) {
    bool is_coord = false;
    const int i = coord_or_agent(&is_coord);
    const SimTime down_for = faults.between(20, 400) * kSimMs;
    if (is_coord) {
      SimPaxosNode& n = group->node(i);
      if (!n.up()) return;
      trace("crash coordinator " + std::to_string(i + 1));
      ++result.coordinator_crashes;
      n.crash();
      coords[i]->crash();
      q.after(down_for, [this, i] {
        SimPaxosNode& n = group->node(i);
        if (n.up()) return;
        if (Status s = n.start(false); !s.ok()) trace("restart refused: " + s.describe());
      });
    } else {
      SimAgent& a = *agents[i];
      if (!a.up()) return;
      trace("crash agent " + std::to_string(i));
      ++result.agent_crashes;
      a.crash();
      q.after(down_for, [this, i] { agents[i]->restart(); });
    }
    return;
  }
  pick -= mix.crash;
  if (pick < mix.partition) {
    // Machines: coordinators 0..2 and agents; a random split or one cut link.
    std::vector<int> all = {0, 1, 2};
    for (auto& a : agents)
      all.push_back(a->endpoint());
    if (faults.chance(0.5)) {
      std::vector<int> side;
      for (int e : all) {
        if (faults.chance(0.4)) side.push_back(e);
      }
      trace("partition");
      net.partition({side});
    } else {
      const int x = all[faults.below(all.size())];
      const int y = all[faults.below(all.size())];
      if (x != y) net.cut(x, y);
    }
    return;
  }
  pick -= mix.partition;
  if (pick < mix.pause) {
    const int i = static_cast<int>(faults.below(kCoordinators));
    group->node(i).pause_until(q.now() + faults.between(20, 600) * kSimMs);
    return;
  }
  pick -= mix.pause;
  if (pick < mix.heal) {
    net.heal();
    return;
  }
  pick -= mix.heal;
  if (pick < mix.replay) {
    net.replay_one();
    return;
  }
  pick -= mix.replay;
  // The commit simulation's own faults.
  if (pick < 1) {
    const int i = static_cast<int>(faults.below(kCoordinators));
    if (group->node(i).up()) group->node(i).snapshot_now(faults.between(1, 20) * kSimMs);
  } else if (pick < 2) {
    // A DBA will roll the next prepared branch back by hand (a heuristic
    // outcome).
    ++dba_armed;
  } else if (pick < 4) {
    // An operator will abort the next transaction a client commits, a few
    // milliseconds after the commit reaches the leader, racing its votes
    // (T9: only an empty register takes it).
    ++operator_armed;
  } else if (pick < 6) {
    // The leader will crash right after an agent commits in one phase,
    // before the COMMIT record is chosen: the next leader must find it.
    ++one_phase_crash_armed;
  } else {
    // A duplicate of an old inquiry arrives late (the network kept it, or
    // an agent restarted from an old state asks again).
    if (past_inquiries.empty()) return;
    const auto& [txid, agent] = past_inquiries[faults.below(past_inquiries.size())];
    agents[agent]->inquire_again(txid);
  }
}

void World::crash_leader() {
  auto l = group->serving_leader();
  if (!l || !group->node(*l).up()) return;
  const int i = static_cast<int>(*l);
  trace("crash coordinator " + std::to_string(i + 1) + " (the leader, after a one-phase commit)");
  ++result.coordinator_crashes;
  group->node(i).crash();
  coords[i]->crash();
  q.after(faults.between(20, 400) * kSimMs, [this, i] {
    SimPaxosNode& n = group->node(i);
    if (n.up()) return;
    if (Status s = n.start(false); !s.ok()) trace("restart refused: " + s.describe());
  });
}

void World::operator_abort(const std::string& txid) {
  auto l = group->serving_leader();
  if (!l || !coords[*l]->up()) return;
  trace("operator aborts " + txid);
  co::OperatorDecision od{txid, Outcome::aborted, "sim-operator", "fault", {}};
  coords[*l]->on_client(
      [od](co::Driver& d, uint64_t req, const co::Now& now) { d.operator_decision(req, od, now); },
      [](co::Answer) {});
}

void World::final_checks() {
  // Every replica that is up agrees with the oracle on every register it
  // still holds.
  for (auto& c : coords) {
    if (!c->up()) continue;
    for (const auto& [id, e] : c->table()->entries()) {
      auto it = oracle.registers().find(id);
      if (it == oracle.registers().end() || it->second != e.decision.outcome) {
        oracle.fail("a replica's table disagrees with the oracle about " + id.str());
      }
    }
  }
  // No branch stays in doubt once faults healed.
  for (auto& a : agents) {
    if (a->in_doubt() > 0) {
      oracle.fail(a->name() + " still holds " + std::to_string(a->in_doubt()) +
                  " branch(es) in doubt after every fault healed: " + a->in_doubt_txids());
    }
  }
  // All participants of a transaction end alike; committed branches ran
  // their client's statements exactly once.
  for (const auto& [id, per_agent] : oracle.agent_outcomes()) {
    if (oracle.heuristic().count(id)) continue;
    std::optional<Outcome> first;
    for (const auto& [agent, o] : per_agent) {
      if (first && *first != o) oracle.fail(id.str() + " ended differently at its participants");
      first = o;
    }
  }
  for (size_t a = 0; a < agents.size(); ++a) {
    for (const auto& [txid, b] : agents[a]->committed()) {
      auto id = Txid::parse(txid);
      auto ct = client_txns.find(*id);
      if (ct == client_txns.end()) continue;  // a one-shot whose client never heard back
      const std::vector<std::string> meant = ct == client_txns.end()
                                                 ? std::vector<std::string>{}
                                                 : ct->second.statements[static_cast<int>(a)];
      if (b.statements != meant) {
        std::string ran, want;
        for (const auto& s : b.statements)
          ran += s + " ";
        for (const auto& s : meant)
          want += s + " ";
        oracle.fail("agent" + std::to_string(a) + " committed " + txid + " running [" + ran +
                    "] but its client sent [" + want + "]");
      }
    }
  }
  // Every transfer is on both sides or neither: a committed transaction's
  // deltas, over every agent, sum to zero.
  std::map<std::string, int64_t> net_by_txid;
  for (auto& a : agents) {
    for (const auto& [txid, b] : a->committed()) {
      for (const Write& wr : b.writes)
        net_by_txid[txid] += wr.delta;
    }
  }
  for (const auto& [txid, sum] : net_by_txid) {
    auto id = Txid::parse(txid);
    if (sum != 0 && !oracle.heuristic().count(*id)) {
      oracle.fail("transfer " + txid + " is committed on one side only (net " +
                  std::to_string(sum) + ")");
    }
  }
  // Money is conserved (unless someone rolled a branch back by hand).
  if (oracle.heuristic().empty()) {
    int64_t total = 0;
    for (auto& a : agents)
      total += a->total();
    const int64_t want = static_cast<int64_t>(agents.size()) * kAccounts * kInitialBalance;
    if (total != want) {
      oracle.fail("money is not conserved: " + std::to_string(total) + " instead of " +
                  std::to_string(want));
    }
  }
}

CommitSimResult World::run() {
  if (Status s = group->start(); !s.ok()) {
    result.ok = false;
    result.failure = "the Paxos group did not start: " + s.describe();
    return result;
  }
  for (int c = 0; c < opt.clients; ++c)
    clients.push_back(std::make_unique<SimClient>(*this, c, root.derive("client", c)));
  net.set_faulty(true);
  q.after(faults.between(mix.gap_us_min, mix.gap_us_max), [this] { inject_fault(); });
  q.at(heal_at, [this] {
    trace("faults heal");
    net.set_faulty(false);
    net.heal();
    for (int i = 0; i < kCoordinators; ++i) {
      group->node(i).pause_until(0);
      if (!group->node(i).up()) (void)group->node(i).start(false);
    }
    for (auto& a : agents) {
      if (!a->up()) a->restart();
    }
  });
  while (q.run_next(end_at)) {
    for (auto& c : coords)
      c->check();
    if (oracle.failed()) break;
  }
  if (!oracle.failed()) final_checks();
  result.ok = !oracle.failed();
  result.failure = oracle.failure();
  result.trace_hash = q.trace_hash();
  result.leader_terms = terms.size();
  result.events = q.events_run();
  for (const auto& [id, o] : oracle.registers()) {
    (o == Outcome::committed ? result.committed : result.aborted)++;
  }
  return result;
}

}  // namespace

CommitSimResult run_commit_sim(const CommitSimOptions& options) {
  World w(options);
  return w.run();
}

std::vector<std::string> commit_sim_bugs() {
  return {"outcome_from_proposal", "precommit_as_undecided", "presume_abort_below_watermark",
          "retry_exec_blindly",    "ack_without_outcome",    "no_one_phase_probe"};
}

}  // namespace dtx::sim
