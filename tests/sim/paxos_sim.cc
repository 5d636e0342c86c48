#include "tests/sim/paxos_sim.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "consensus/core/codec.h"
#include "tests/sim/sim_events.h"
#include "tests/sim/sim_faults.h"
#include "tests/sim/sim_network.h"
#include "tests/sim/sim_paxos_node.h"
#include "tests/sim/sim_rng.h"

namespace dtx::sim {
namespace {

using namespace dtx::consensus;

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

enum class OpState { pending, ok, unknown, failed };

struct Op {
  int client = 0;
  bool is_put = true;
  bool probe = false;
  std::string key;
  std::string value;  // written, or read
  std::string payload;
  int64_t invoke = 0;
  int64_t response = kNever;
  OpState state = OpState::pending;
};

// What the simulation keeps per replica besides the replica itself.
struct Machine {
  std::map<std::string, std::string> kv;  // the state machine
  Slot sm_applied = 0;
  bool wiped = false;
  std::optional<Ballot> durable_promise;  // the last promise made durable in this life
  Ballot top_accepted;                    // highest ballot this life accepted durably
  Slot top_accepted_slot = 0;             // highest slot accepted in it
  SimTime faulty_until = 0;               // followers mix: counts as faulty until then
  bool isolated = false;
};

std::string encode_kv(const std::map<std::string, std::string>& kv) {
  Writer w;
  w.u32(static_cast<uint32_t>(kv.size()));
  for (const auto& [k, v] : kv) {
    w.bytes(k);
    w.bytes(v);
  }
  return w.take();
}

std::map<std::string, std::string> decode_kv(const std::string& b) {
  std::map<std::string, std::string> kv;
  Reader r(b);
  const uint32_t n = r.count(8);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    std::string k = r.bytes();
    kv[k] = r.bytes();
  }
  return kv;
}

class Sim {
 public:
  explicit Sim(const PaxosSimOptions& o)
      : opt_(o),
        mix_(fault_mix(o.faults).value_or(FaultMix{})),
        root_(o.seed),
        faults_(root_.derive("faults")),
        clients_rng_(root_.derive("clients")),
        net_(q_, root_.derive("network"), mix_) {
    heal_at_ = o.fault_ms * kSimMs;
    end_at_ = heal_at_ + o.liveness_ms * kSimMs;
    machines_.resize(static_cast<size_t>(o.replicas));
    SimPaxosGroupOptions go;
    go.replicas = o.replicas;
    go.config.heartbeat_ticks = 1;
    go.config.election_ticks = 10;
    go.config.window_slots = 16;
    go.config.batch_commands_max = 8;
    go.config.catchup_entries_max = 16;
    go.config.snapshot_chunk_bytes = 64;  // many chunks: exercises resumption
    go.config.bugs = o.bugs;
    group_ = std::make_unique<SimPaxosGroup>(q_, net_, root_.derive("paxos"), go,
                                             [this](int i) { return hooks_for(i); });
  }

  PaxosSimResult run();

 private:
  SimPaxosHooks hooks_for(int i);
  bool faulty() const { return q_.now() < heal_at_; }
  void violation(const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    std::ostringstream os;
    os << "t=" << q_.now() / kSimMs << "ms: " << what;
    result_.violation = os.str();
  }
  void trace(const std::string& line) {
    if (opt_.trace)
      std::printf("%10.3f ms  %s\n", static_cast<double>(q_.now()) / 1000.0, line.c_str());
  }
  std::string name(int i) const { return "node " + std::to_string(i + 1); }

  // Oracle and checks.
  void accepted(int i, const LogRecord& r);
  void check_promise_kept(int i, const Message& m);
  void applied_value(int i, Slot slot, const Bytes& value);
  void apply(int i, const AppliedEntry& e);
  void on_leader(int i, Ballot b, Slot slot);
  void check_proposal_identity(size_t op, const ProposeResult& r);

  // Faults.
  void schedule_faults();
  void fault(uint64_t pick);
  void crash(int i, bool quick);
  void restart(int i);
  void snapshot_loop(int i);
  bool settled() const;
  std::vector<int> healthy_followers(int leader) const;
  int faulty_replicas() const;

  // Clients.
  void client_step(int c);
  void finish_op(size_t op, OpState st, const std::string& read_value = {});
  void check_linearizable();
  void check_liveness();

  const PaxosSimOptions& opt_;
  FaultMix mix_;
  Rng root_, faults_, clients_rng_;
  EventQueue q_;
  SimNetwork net_;
  std::unique_ptr<SimPaxosGroup> group_;
  std::vector<Machine> machines_;
  SimTime heal_at_ = 0;
  SimTime end_at_ = 0;
  PaxosSimResult result_;
  bool wiped_once_ = false;
  std::optional<Ballot> baseline_leader_;  // followers mix: the leader when faults began

  // Oracle: acceptances per (slot, ballot) and what got chosen.
  std::map<std::pair<Slot, Ballot>, std::map<NodeId, uint64_t>> accepts_;
  std::map<Slot, uint64_t> chosen_;
  std::map<Slot, Bytes> applied_;          // first applied value per slot
  std::map<Slot, uint64_t> state_digest_;  // state machine image per applied index
  std::map<int, Ballot> promised_out_;     // highest ballot each acceptor promised or accepted

  // Clients.
  std::vector<Op> ops_;
  std::vector<size_t> client_op_;  // current op per client, or SIZE_MAX
  std::vector<NodeId> client_guess_;
  uint64_t op_counter_ = 0;
  std::set<std::string> probes_ok_;
  std::map<std::string, Slot> probe_slot_;  // where each probe was applied
};

// ---------------------------------------------------------------------------
// Hooks: the state machine and the oracle's inputs

SimPaxosHooks Sim::hooks_for(int i) {
  SimPaxosHooks h;
  h.apply = [this, i](const AppliedEntry& e) { apply(i, e); };
  h.on_applied_value = [this, i](Slot slot, const Bytes& v) { applied_value(i, slot, v); };
  h.restore = [this, i](Slot index, const std::string& data) {
    Machine& m = machines_[i];
    auto it = state_digest_.find(index);
    if (index > 0 && it != state_digest_.end() && it->second != value_digest(data)) {
      violation("snapshot at " + std::to_string(index) + " differs between replicas");
    }
    m.kv = decode_kv(data);
    m.sm_applied = index;
    if (index > 0) trace(name(i) + " loads the snapshot at " + std::to_string(index));
  };
  h.snapshot = [this, i](Slot index) {
    const std::string img = encode_kv(machines_[i].kv);
    auto [it, first] = state_digest_.emplace(index, value_digest(img));
    if (!first && it->second != value_digest(img)) {
      violation("state at applied index " + std::to_string(index) + " differs between replicas");
    }
    return img;
  };
  h.on_leader = [this, i](Ballot b, Slot slot) { on_leader(i, b, slot); };
  h.on_durable_accept = [this, i](const LogRecord& r) { accepted(i, r); };
  h.on_persisted = [this, i](const std::vector<LogRecord>& records, std::optional<Ballot> promise) {
    Machine& m = machines_[i];
    if (promise) m.durable_promise = promise;
    Ballot top;
    for (const LogRecord& r : records) {
      if (r.kind != LogRecord::Kind::accept) continue;
      top = std::max(top, r.ballot);
      if (r.ballot >= m.top_accepted) m.top_accepted_slot = std::max(m.top_accepted_slot, r.slot);
    }
    // Rare paths made to fire: a crash just after a promise, or just after
    // accepting a higher ballot (with the log truncated first).
    if (faulty() && mix_.rare_paths) {
      if ((promise && faults_.chance(0.05)) || (top > m.top_accepted && faults_.chance(0.05))) {
        if (!promise) q_.after(0, [this, i] { group_->node(i).snapshot_now(200); });
        q_.after(faults_.between(promise ? 100 : 500, 3000), [this, i] { crash(i, true); });
      }
    }
    m.top_accepted = std::max(m.top_accepted, top);
  };
  h.on_send = [this, i](const Message& m) {
    result_.messages += 1;
    q_.mix((uint64_t{m.from} << 40) ^ (uint64_t{m.to} << 32) ^ (m.payload.index() << 24) ^
           m.ballot.round);
    if (opt_.trace) trace("send " + m.describe());
    check_promise_kept(i, m);
  };
  h.on_fatal = [this, i](const Status& s) {
    violation(name(i) + ": disk failed: " + s.describe());
  };
  return h;
}

// A durable acceptance: the oracle's only input (P8).
void Sim::accepted(int i, const LogRecord& r) {
  const uint64_t d = value_digest(*r.value);
  auto& by_node = accepts_[{r.slot, r.ballot}];
  auto [it, fresh] = by_node.emplace(static_cast<NodeId>(i + 1), d);
  if (!fresh && it->second != d) {
    violation("acceptor " + std::to_string(i + 1) + " accepted two values for slot " +
              std::to_string(r.slot) + " in ballot " + r.ballot.describe());
  }
  size_t same = 0;
  for (const auto& [node, digest] : by_node)
    same += digest == d;
  if (same * 2 <= machines_.size()) return;
  auto [c, first] = chosen_.emplace(r.slot, d);
  if (!first && c->second != d) {
    violation("two different values chosen for slot " + std::to_string(r.slot) +
              " (the second in ballot " + r.ballot.describe() + ")");
  }
}

// P3 across crashes: once an acceptor told anyone it promised (1b) or
// accepted (2b) ballot b, it never promises or accepts below b again.
void Sim::check_promise_kept(int i, const Message& m) {
  const bool promise = std::holds_alternative<Phase1b>(m.payload);
  const bool accept = std::holds_alternative<Phase2b>(m.payload);
  if (!promise && !accept) return;
  Ballot& top = promised_out_[i];
  if (m.ballot < top) {
    violation("acceptor " + std::to_string(i + 1) + " forgot its promise: it " +
              (promise ? "promised " : "accepted ") + m.ballot.describe() + " after promising " +
              top.describe());
  }
  top = std::max(top, m.ballot);
}

void Sim::applied_value(int i, Slot slot, const Bytes& value) {
  Machine& m = machines_[i];
  if (slot != m.sm_applied + 1) {
    violation(name(i) + " applied slot " + std::to_string(slot) + " after " +
              std::to_string(m.sm_applied));
  }
  const uint64_t d = value_digest(*value);
  auto ch = chosen_.find(slot);
  if (ch == chosen_.end() || ch->second != d) {
    violation(name(i) + " applied a value for slot " + std::to_string(slot) +
              " that was not chosen");
  }
  auto [it, first] = applied_.emplace(slot, value);
  if (!first && value_digest(*it->second) != d) {
    violation("replicas applied different values at slot " + std::to_string(slot));
  }
  result_.applied_slots = std::max<uint64_t>(result_.applied_slots, slot);
  m.sm_applied = slot;
  q_.mix(d ^ (uint64_t(i + 1) << 56));
  // Rare path made to fire: everything accepted in a ballot above the
  // durable promise is now applied, so a snapshot would truncate all trace of
  // that (implicit) promise; snapshot and crash right now.
  const Ballot durable = m.durable_promise.value_or(Ballot{});
  if (faulty() && mix_.rare_paths && m.top_accepted > durable && slot >= m.top_accepted_slot &&
      faults_.chance(0.2)) {
    trace(name(i) + ": everything accepted above its durable promise is applied: snapshot, crash");
    q_.after(0, [this, i] { group_->node(i).snapshot_now(faults_.between(50, 400)); });
    q_.after(faults_.between(500, 3000), [this, i] { crash(i, true); });
  }
}

void Sim::apply(int i, const AppliedEntry& e) {
  if (e.kind != AppliedEntry::Kind::command) return;
  Reader r(e.command->payload);
  std::string key = r.bytes();
  std::string value = r.bytes();
  machines_[i].kv[key] = value;
  if (key == "probe") probe_slot_.emplace(value, e.slot);
}

void Sim::on_leader(int i, Ballot b, Slot slot) {
  result_.elections += 1;
  trace(name(i) + " serves as leader " + b.describe() + " from slot " + std::to_string(slot));
  net_.spare(group_->node(i).endpoint());
  if (baseline_leader_ && b != *baseline_leader_) {
    result_.leader_changes += 1;
    if (mix_.spare_leader) {
      violation("leadership moved from " + baseline_leader_->describe() + " to " + b.describe() +
                " although only followers had faults (P9)");
    }
  }
}

// P10: the command applied where a proposal was reported applied is the
// proposal's own.
void Sim::check_proposal_identity(size_t op, const ProposeResult& r) {
  auto it = applied_.find(r.slot);
  Value v;
  if (it == applied_.end() || !decode_value(*it->second, &v)) {
    violation("a proposal was reported applied at slot " + std::to_string(r.slot) +
              ", which nobody applied");
    return;
  }
  for (const Command& c : v.commands) {
    if (c.id == r.id) {
      if (c.payload != ops_[op].payload) {
        violation("a proposal was reported applied at slot " + std::to_string(r.slot) +
                  " for another command with its id " + r.id.describe() + " (P10)");
      }
      return;
    }
  }
  violation("a proposal was reported applied at slot " + std::to_string(r.slot) +
            ", which holds no command " + r.id.describe());
}

// ---------------------------------------------------------------------------
// Faults

// At most a minority of followers faulty at once, in the followers mix.
int Sim::faulty_replicas() const {
  int n = 0;
  for (int i = 0; i < group_->size(); ++i) {
    const Machine& m = machines_[i];
    SimPaxosNode& node = group_->node(i);
    if (!node.up() || node.paused() || m.isolated || m.faulty_until > q_.now()) ++n;
  }
  return n;
}

std::vector<int> Sim::healthy_followers(int leader) const {
  std::vector<int> out;
  for (int i = 0; i < group_->size(); ++i) {
    const Machine& m = machines_[i];
    SimPaxosNode& node = group_->node(i);
    if (i == leader || !node.up() || node.paused() || m.isolated || m.faulty_until > q_.now())
      continue;
    out.push_back(i);
  }
  return out;
}

// The serving leader is settled: every up replica promised exactly its
// ballot (no candidacy left over from the first election).
bool Sim::settled() const {
  auto l = group_->serving_leader();
  if (!l) return false;
  const Ballot b = group_->node(*l).core().status().ballot;
  for (int i = 0; i < group_->size(); ++i) {
    SimPaxosNode& n = group_->node(i);
    if (n.up() && n.core().status().promised != b) return false;
  }
  return true;
}

void Sim::schedule_faults() {
  if (mix_.total_weight() == 0) return;
  for (SimTime t = faults_.between(100 * kSimMs, 400 * kSimMs); t < heal_at_;
       t += faults_.between(mix_.gap_us_min, mix_.gap_us_max)) {
    const uint64_t pick = faults_.below(mix_.total_weight());
    q_.at(t, [this, pick] { fault(pick); });
  }
}

void Sim::fault(uint64_t pick) {
  if (!faulty()) return;
  const int n = group_->size();
  int node = static_cast<int>(faults_.below(static_cast<uint64_t>(n)));
  if (mix_.spare_leader) {
    // Only followers, only while a settled leader serves, and never more
    // than a minority faulty at once.
    if (!baseline_leader_) {
      if (!settled()) return;
      const int l = *group_->serving_leader();
      baseline_leader_ = group_->node(l).core().status().ballot;
      net_.spare(group_->node(l).endpoint());
      trace("faults begin under leader " + baseline_leader_->describe());
    }
    auto l = group_->serving_leader();
    if (!l) return;  // on_leader reports it if leadership ever moves
    const bool touches_one = pick < mix_.crash + mix_.partition + mix_.pause;
    if (touches_one) {
      std::vector<int> healthy = healthy_followers(*l);
      if (healthy.empty() || faulty_replicas() >= (n - 1) / 2) return;
      node = healthy[faults_.below(healthy.size())];
    }
  } else if (!baseline_leader_) {
    if (auto l = group_->serving_leader()) {
      baseline_leader_ = group_->node(*l).core().status().ballot;
    }
  }
  uint64_t p = pick;
  if (p < mix_.crash) {
    crash(node, false);
    return;
  }
  p -= mix_.crash;
  if (p < mix_.partition) {
    result_.faults += 1;
    const uint64_t bits = faults_.next();
    if (mix_.spare_leader) {
      if (bits & 1) {
        // A link between two followers: neither is cut off from the leader.
        const int l = *group_->serving_leader();
        std::vector<int> f;
        for (int i = 0; i < n; ++i)
          if (i != l) f.push_back(i);
        const int a = f[faults_.below(f.size())], b = f[faults_.below(f.size())];
        net_.cut(group_->node(a).endpoint(), group_->node(b).endpoint());
        trace("link cut between " + name(a) + " and " + name(b));
      } else {
        // One follower cut off from everyone.
        std::vector<int> rest;
        for (int i = 0; i < n; ++i) {
          if (i != node && !machines_[i].isolated) rest.push_back(group_->node(i).endpoint());
        }
        std::vector<int> alone;
        for (int i = 0; i < n; ++i) {
          if (i == node || machines_[i].isolated) alone.push_back(group_->node(i).endpoint());
        }
        machines_[node].isolated = true;
        net_.partition({rest, alone});
        trace(name(node) + " partitioned away");
      }
    } else if (bits & 1) {
      // Cut single links: A may reach B and B reach C while A cannot reach C.
      for (int x = 0; x < n; ++x) {
        for (int y = x + 1; y < n; ++y) {
          if ((bits >> (1 + x * n + y)) & 1)
            net_.cut(group_->node(x).endpoint(), group_->node(y).endpoint());
        }
      }
      trace("links cut");
    } else {
      std::vector<int> a, b;
      for (int i = 0; i < n; ++i)
        ((bits >> (i + 1)) & 1 ? a : b).push_back(group_->node(i).endpoint());
      net_.partition({a, b});
      trace("partition");
    }
    return;
  }
  p -= mix_.partition;
  if (p < mix_.pause) {
    result_.faults += 1;
    const SimTime until = q_.now() + faults_.between(20 * kSimMs, 400 * kSimMs);
    group_->node(node).pause_until(until);
    machines_[node].faulty_until = until + 50 * kSimMs;
    trace(name(node) + " paused");
    return;
  }
  p -= mix_.pause;
  if (p < mix_.heal) {
    net_.heal();
    for (Machine& m : machines_) {
      if (m.isolated) m.faulty_until = q_.now() + 50 * kSimMs;
      m.isolated = false;
    }
    trace("partitions heal");
    return;
  }
  // Replay an old message across ballots.
  if (net_.replay_one()) result_.faults += 1;
}

void Sim::crash(int i, bool quick) {
  SimPaxosNode& node = group_->node(i);
  if (!faulty() || !node.up()) return;
  Machine& m = machines_[i];
  result_.faults += 1;
  trace("crash " + name(i));
  node.crash();
  m.durable_promise.reset();
  m.top_accepted = Ballot{};
  m.top_accepted_slot = 0;
  // Rarely, the disk is replaced: an empty data directory, which the replica
  // must refuse to start on (P4); it stays down.
  if (!wiped_once_ && faults_.chance(mix_.disk_loss)) {
    wiped_once_ = true;
    m.wiped = true;
    node.wipe_disk();
    trace(name(i) + " lost its disk");
  }
  const SimTime down =
      quick ? faults_.between(5 * kSimMs, 60 * kSimMs) : faults_.between(50 * kSimMs, 800 * kSimMs);
  m.faulty_until = q_.now() + down + 50 * kSimMs;
  q_.after(down, [this, i] { restart(i); });
}

void Sim::restart(int i) {
  SimPaxosNode& node = group_->node(i);
  if (node.up()) return;
  Status s = node.start(false);
  if (machines_[i].wiped) {
    if (s.ok()) violation(name(i) + " started on an empty data directory (P4)");
    trace(name(i) + " refuses to start on an empty data directory");
    return;
  }
  if (!s.ok()) {
    violation(name(i) + " could not restart: " + s.describe());
    return;
  }
  trace("restart " + name(i));
  machines_[i].durable_promise = node.core().status().promised;
  // Old messages, some from earlier ballots, find the restarted node; and
  // the latest proposer message of every ballot it was sent, which an
  // acceptor that forgot a promise would take.
  if (faulty()) {
    net_.replay_to(node.endpoint(), 8, 100 * kSimMs);
    net_.replay_generations_to(node.endpoint(), UINT64_MAX, 100 * kSimMs);
  }
}

void Sim::snapshot_loop(int i) {
  SimPaxosNode& node = group_->node(i);
  if (node.up()) node.snapshot_now(faults_.between(1 * kSimMs, 30 * kSimMs));
  q_.after(faults_.between(100 * kSimMs, 700 * kSimMs), [this, i] { snapshot_loop(i); });
}

// ---------------------------------------------------------------------------
// Clients

void Sim::finish_op(size_t op, OpState st, const std::string& read_value) {
  Op& o = ops_[op];
  if (o.state != OpState::pending) return;
  o.state = st;
  if (st == OpState::ok) {
    o.response = q_.now();
    if (!o.is_put) o.value = read_value;
    if (o.probe) probes_ok_.insert(o.value);
  }
  client_op_[o.client] = SIZE_MAX;
  q_.after(clients_rng_.between(1 * kSimMs, 20 * kSimMs), [this, c = o.client] { client_step(c); });
}

void Sim::client_step(int c) {
  if (client_op_[c] != SIZE_MAX) return;
  if (q_.now() >= end_at_ - 500 * kSimMs) return;  // leave time for the last ones to finish
  auto retry = [&] {
    q_.after(clients_rng_.between(5 * kSimMs, 30 * kSimMs), [this, c] { client_step(c); });
  };
  Op o;
  o.client = c;
  o.invoke = q_.now();
  const bool healed = q_.now() >= heal_at_;
  o.probe = healed && c == 0;
  o.is_put = o.probe || clients_rng_.chance(0.75);
  o.key = o.probe ? "probe" : "k" + std::to_string(clients_rng_.below(opt_.keys));
  if (o.is_put) o.value = "c" + std::to_string(c) + "#" + std::to_string(++op_counter_);
  // Talk to the replica the client believes leads, or follow a redirect.
  NodeId target = client_guess_[c];
  SimPaxosNode* n = group_->by_id(target);
  if (!n->up() || n->core().status().role != Role::leader) {
    std::optional<NodeId> hint;
    if (n->up()) hint = n->core().status().leader;
    target = hint ? *hint : group_->members()[clients_rng_.below(group_->members().size())];
    client_guess_[c] = target;
    n = group_->by_id(target);
  }
  // A leader that does not serve yet refuses (not_serving): never queued,
  // not an operation. The planted bug lets it queue.
  if (!n->up() || n->core().status().role != Role::leader) return retry();
  if (!n->core().status().serving && !opt_.bugs.propose_before_serving) return retry();
  const size_t id = ops_.size();
  client_op_[c] = id;
  result_.client_ops += 1;
  if (o.is_put) {
    Writer w;
    w.bytes(o.key);
    w.bytes(o.value);
    o.payload = w.take();
    ops_.push_back(o);
    n->propose(o.payload, [this, id](ProposeResult r) {
      switch (r.outcome) {
        case ProposeResult::Outcome::applied:
          check_proposal_identity(id, r);
          return finish_op(id, OpState::ok);
        case ProposeResult::Outcome::unknown:
        case ProposeResult::Outcome::stopped:
          return finish_op(id, OpState::unknown);
        default:
          return finish_op(id, OpState::failed);  // never queued
      }
    });
  } else {
    ops_.push_back(o);
    const int node = static_cast<int>(target) - 1;
    n->read_index([this, id, node](Result<Slot> at) {
      if (!at.ok()) return finish_op(id, OpState::failed);
      // The executor answers once this replica applied up to the read index.
      const auto& kv = machines_[node].kv;
      auto v = kv.find(ops_[id].key);
      finish_op(id, OpState::ok, v == kv.end() ? std::string() : v->second);
    });
  }
  const size_t op = id;
  q_.after(1500 * kSimMs, [this, op] { finish_op(op, OpState::unknown); });
}

// Per key, search for an order of the operations that respects real time and
// register semantics. Unknown puts may have happened (or not); failed ones
// did not. Small histories only.
void Sim::check_linearizable() {
  std::map<std::string, std::vector<const Op*>> by_key;
  for (const Op& o : ops_) {
    if (o.state == OpState::failed) continue;
    if (!o.is_put && o.state != OpState::ok) continue;
    by_key[o.key].push_back(&o);
  }
  for (const auto& entry : by_key) {
    const std::string& key = entry.first;
    const auto& ops = entry.second;  // a plain reference: lambdas capture it
    if (ops.size() > 14 || key == "probe") continue;
    const size_t n = ops.size();
    std::set<std::pair<uint32_t, std::string>> dead;  // (done mask, value) already explored
    std::function<bool(uint32_t, const std::string&)> search = [&](uint32_t done,
                                                                   const std::string& value) {
      bool all_required_done = true;
      for (size_t k = 0; k < n; ++k) {
        if (!(done & (1u << k)) && ops[k]->state == OpState::ok) all_required_done = false;
      }
      if (all_required_done) return true;
      if (!dead.emplace(done, value).second) return false;
      // The earliest response among the ops not yet placed bounds who may go next.
      int64_t min_response = kNever;
      for (size_t k = 0; k < n; ++k) {
        if (!(done & (1u << k))) min_response = std::min(min_response, ops[k]->response);
      }
      for (size_t k = 0; k < n; ++k) {
        if (done & (1u << k)) continue;
        const Op& o = *ops[k];
        if (o.invoke > min_response) continue;
        if (o.is_put) {
          if (search(done | (1u << k), o.value)) return true;
        } else if (o.value == value) {
          if (search(done | (1u << k), value)) return true;
        }
      }
      return false;
    };
    if (!search(0, std::string())) violation("history of key " + key + " is not linearizable");
  }
}

void Sim::check_liveness() {
  if (probes_ok_.empty()) {
    violation("no probe command completed within " + std::to_string(opt_.liveness_ms) +
              " ms after every fault healed");
    return;
  }
  // Every live replica applied (or installed a snapshot covering) the slot
  // of every probe that completed.
  for (int i = 0; i < group_->size(); ++i) {
    if (!group_->node(i).up()) continue;
    for (const std::string& p : probes_ok_) {
      auto slot = probe_slot_.find(p);
      if (slot == probe_slot_.end() || machines_[i].sm_applied < slot->second) {
        violation(name(i) + " never applied probe " + p + " after the faults healed");
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------

PaxosSimResult Sim::run() {
  if (!fault_mix(opt_.faults)) {
    violation("unknown fault mix '" + opt_.faults + "'");
    return result_;
  }
  net_.set_faulty(true);
  client_op_.assign(opt_.clients, SIZE_MAX);
  for (int c = 0; c < opt_.clients; ++c) {
    client_guess_.push_back(group_->members()[clients_rng_.below(group_->members().size())]);
    q_.at(clients_rng_.between(0, 200 * kSimMs), [this, c] { client_step(c); });
  }
  if (Status s = group_->start(); !s.ok()) violation("cannot start: " + s.describe());
  for (int i = 0; i < group_->size(); ++i)
    q_.at(faults_.between(100 * kSimMs, 500 * kSimMs), [this, i] { snapshot_loop(i); });
  schedule_faults();
  q_.at(heal_at_, [this] {
    trace("every fault heals");
    net_.set_faulty(false);
    net_.heal();
    for (int i = 0; i < group_->size(); ++i) {
      machines_[i].isolated = false;
      SimPaxosNode& n = group_->node(i);
      n.pause_until(0);
      if (!n.up() && !machines_[i].wiped) restart(i);
    }
  });

  while (result_.ok && q_.run_next(end_at_)) {
    for (int i = 0; i < group_->size(); ++i) {
      SimPaxosNode& n = group_->node(i);
      if (!n.up()) continue;
      if (Status s = n.core().check_invariants(); !s.ok()) violation(s.message());
    }
  }
  if (result_.ok) check_linearizable();
  if (result_.ok) check_liveness();
  for (int i = 0; i < group_->size(); ++i) {
    result_.snapshots += group_->node(i).snapshots_saved();
    result_.snapshot_installs += group_->node(i).installs();
  }
  result_.trace_hash = q_.trace_hash();
  result_.simulated_s = static_cast<double>(std::min(q_.now(), end_at_)) / 1e6;
  return result_;
}

}  // namespace

PaxosSimResult run_paxos_sim(const PaxosSimOptions& options) {
  Sim sim(options);
  return sim.run();
}

bool parse_planted_bug(const std::string& name, consensus::PlantedBugs* bugs) {
  if (name == "forgotten_promise")
    bugs->forget_promise = true;
  else if (name == "forgotten_implicit_promise")
    bugs->forget_implicit_promise = true;
  else if (name == "stale_accepted_value")
    bugs->apply_stale_accepted = true;
  else if (name == "noop_over_compacted")
    bugs->noop_over_compacted = true;
  else if (name == "duplicate_2b_counted")
    bugs->count_duplicate_2b = true;
  else if (name == "no_pre_vote")
    bugs->no_pre_vote = true;
  else if (name == "proposal_identity")
    bugs->propose_before_serving = bugs->command_ids_per_process = true;
  else
    return false;
  return true;
}

}  // namespace dtx::sim
