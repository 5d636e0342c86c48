#include "tests/sim/paxos_sim.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <sstream>

#include "consensus/core/codec.h"

namespace dtx::sim {
namespace {

using namespace dtx::consensus;

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr int64_t kTickUs = 10'000;  // 10 ms per tick on an undrifted clock

// splitmix64; every domain of randomness gets its own stream.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  int64_t between(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(hi - lo + 1)); }
  double real() { return static_cast<double>(next() >> 11) / static_cast<double>(1ull << 53); }
  bool chance(double p) { return real() < p; }
};

enum class Ev {
  deliver,
  tick,
  persist_done,
  snapshot_start,
  snapshot_done,
  crash,
  restart,
  partition,
  heal_partition,
  pause,
  client,
  client_timeout,
  heal_all
};

struct Event {
  int64_t at = 0;
  uint64_t seq = 0;
  Ev kind = Ev::tick;
  int node = -1;
  uint64_t incarnation = 0;
  uint64_t a = 0;
  Message msg;
  bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

struct Persist {
  uint64_t id = 0;
  std::optional<Ballot> promise;
  std::vector<LogRecord> records;
  std::optional<Ready::Install> install;
  std::vector<Message> after;
};

enum class OpState { pending, ok, unknown, failed };

struct Op {
  int client = 0;
  bool is_put = true;
  bool probe = false;
  std::string key;
  std::string value;  // written, or read
  int64_t invoke = 0;
  int64_t response = kNever;
  OpState state = OpState::pending;
};

struct Node {
  NodeId id = 0;
  std::unique_ptr<Replica> core;
  bool up = true;
  bool wiped = false;
  uint64_t incarnation = 1;
  double drift = 0;
  int64_t paused_until = 0;
  // The simulated disk.
  Ballot d_promise;
  std::vector<LogRecord> d_records;
  Slot d_snap_index = 0;
  Bytes d_snap;
  std::deque<Persist> unsynced;
  int64_t disk_free_at = 0;
  Ballot top_accepted;         // highest ballot this life accepted (targets crashes)
  Slot top_accepted_slot = 0;  // highest slot accepted in it
  // The key-value state machine.
  std::map<std::string, std::string> kv;
  Slot sm_applied = 0;
  // Client work waiting on this replica.
  std::map<CommandId, size_t> proposals;               // command id -> op
  std::map<uint64_t, size_t> reads;                    // read id -> op
  std::vector<std::pair<size_t, Slot>> reads_waiting;  // op, read index
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
  explicit Sim(const PaxosSimOptions& o) : opt_(o) {
    Rng master{o.seed * 0x2545F4914F6CDD1Dull + 1};
    net_ = Rng{master.next()};
    faults_ = Rng{master.next()};
    clients_rng_ = Rng{master.next()};
    disk_ = Rng{master.next()};
    node_rng_ = Rng{master.next()};
    heal_at_ = o.fault_ms * 1000;
    end_at_ = heal_at_ + o.liveness_ms * 1000;
    for (int i = 0; i < o.replicas; ++i)
      members_.push_back(static_cast<NodeId>(i + 1));
    for (int i = 0; i < o.replicas; ++i) {
      Node n;
      n.id = members_[i];
      n.drift = (node_rng_.real() - 0.5) * 0.1;  // +-5% clock drift
      nodes_.push_back(std::move(n));
    }
  }

  PaxosSimResult run();

 private:
  // --- plumbing
  void schedule(int64_t at, Ev kind, int node, uint64_t a = 0, Message msg = {}) {
    Event e;
    e.at = at;
    e.seq = next_seq_++;
    e.kind = kind;
    e.node = node;
    e.a = a;
    e.msg = std::move(msg);
    if (node >= 0) e.incarnation = nodes_[node].incarnation;
    queue_.push(std::move(e));
  }
  int index_of(NodeId id) const { return static_cast<int>(id) - 1; }
  Config config_for(int i) const {
    Config c;
    c.cluster_id = 7;
    c.self = members_[i];
    c.members = members_;
    c.heartbeat_ticks = 1;
    c.election_ticks = 10;
    c.seed = opt_.seed * 31 + static_cast<uint64_t>(i) + nodes_[i].incarnation * 1000003;
    c.window_slots = 16;
    c.batch_commands_max = 8;
    c.catchup_entries_max = 16;
    c.snapshot_chunk_bytes = 64;  // many chunks: exercises resumption
    c.bugs = opt_.bugs;
    return c;
  }
  void hash(uint64_t v) {
    trace_hash_ ^= v + 0x9e3779b97f4a7c15ull + (trace_hash_ << 6) + (trace_hash_ >> 2);
  }
  void violation(const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    std::ostringstream os;
    os << "t=" << now_ / 1000 << "ms: " << what;
    result_.violation = os.str();
  }
  void trace(const std::string& line) {
    if (opt_.trace)
      std::printf("%10.3f ms  %s\n", static_cast<double>(now_) / 1000.0, line.c_str());
  }
  bool faulty() const { return now_ < heal_at_; }
  bool connected(int a, int b) const {
    return group_[a] == group_[b] && !cut_.count({std::min(a, b), std::max(a, b)});
  }

  // --- nodes
  void start_node(int i);
  void process_ready(int i);
  void deliver(const Message& m);
  void send(const Message& m, int64_t extra_delay = 0);
  void on_persist_done(int i, uint64_t id);
  void accepted(int i, const LogRecord& r);
  void check_promise_kept(int i, const Message& m);
  void apply(int i, const Ready::Applied& a);
  void install(int i, const Ready::Install& in);
  void crash(int i, bool quick);
  void fail_client_work(int i, OpState how);
  int64_t local(int i, int64_t delay) const {
    return static_cast<int64_t>(static_cast<double>(delay) * (1.0 + nodes_[i].drift));
  }

  // --- clients
  void client_step(int c);
  void finish_op(size_t op, OpState st, const std::string& read_value = {});
  void check_linearizable();
  void check_liveness();

  const PaxosSimOptions& opt_;
  std::vector<NodeId> members_;
  std::vector<Node> nodes_;
  std::vector<int> group_;
  std::set<std::pair<int, int>> cut_;  // links cut one by one (non-transitive partitions)
  Rng net_, faults_, clients_rng_, disk_, node_rng_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  uint64_t next_seq_ = 0;
  int64_t now_ = 0;
  int64_t heal_at_ = 0;
  int64_t end_at_ = 0;
  uint64_t trace_hash_ = 0xcbf29ce484222325ull;
  PaxosSimResult result_;
  std::vector<std::pair<Message, int64_t>> replay_pool_;  // old messages to duplicate later
  std::map<int, Bytes> pending_snapshots_;                // being written, per node
  std::map<int, Ballot>
      promised_out_;  // highest ballot each acceptor promised or accepted to others

  // Oracle: acceptances per (slot, ballot) and what got chosen.
  std::map<std::pair<Slot, Ballot>, std::map<NodeId, uint64_t>> accepts_;
  std::map<Slot, uint64_t> chosen_;
  std::map<Slot, uint64_t> applied_;       // first applied digest per slot
  std::map<Slot, uint64_t> state_digest_;  // state machine image per applied index

  // Clients.
  std::vector<Op> ops_;
  std::vector<size_t> client_op_;  // current op per client, or SIZE_MAX
  std::vector<NodeId> client_guess_;
  uint64_t next_read_id_ = 1;
  uint64_t op_counter_ = 0;
  bool wiped_once_ = false;
  std::set<std::string> probes_ok_;
  std::map<std::string, Slot> probe_slot_;  // where each probe was applied
};

// ---------------------------------------------------------------------------

void Sim::start_node(int i) {
  Node& n = nodes_[i];
  Recovered rec;
  rec.promised = n.d_promise;
  rec.snapshot_index = n.d_snap_index;
  rec.snapshot = n.d_snap;
  rec.records = n.d_records;
  n.kv = n.d_snap ? decode_kv(*n.d_snap) : std::map<std::string, std::string>{};
  n.sm_applied = n.d_snap_index;
  n.core = std::make_unique<Replica>(config_for(i), std::move(rec));
  n.up = true;
  n.unsynced.clear();
  n.disk_free_at = now_;
  schedule(now_ + local(i, kTickUs), Ev::tick, i);
  process_ready(i);
}

void Sim::send(const Message& m, int64_t extra_delay) {
  result_.messages += 1;
  const int from = index_of(m.from), to = index_of(m.to);
  if (faulty() && net_.chance(0.05)) return;  // lost
  int64_t delay = net_.between(100, 3000) + extra_delay;
  if (faulty() && net_.chance(0.05)) delay += net_.between(5000, 60000);  // a late one
  if (!connected(from, to)) return;
  schedule(now_ + delay, Ev::deliver, to, 0, m);
  if (faulty() && net_.chance(0.03)) {
    schedule(now_ + delay + net_.between(0, 20000), Ev::deliver, to, 0, m);  // duplicate
  }
  // Keep some messages to replay much later, across ballots; mostly 2a and
  // 1b, whose stale copies are what an acceptor with amnesia would act on.
  const bool interesting =
      std::holds_alternative<Phase2a>(m.payload) || std::holds_alternative<Phase1b>(m.payload);
  if (faulty() && net_.chance(interesting ? 0.1 : 0.01)) {
    if (replay_pool_.size() < 256) {
      replay_pool_.emplace_back(m, now_);
    } else {
      replay_pool_[net_.below(replay_pool_.size())] = {m, now_};
    }
  }
}

void Sim::deliver(const Message& m) {
  const int i = index_of(m.to);
  Node& n = nodes_[i];
  if (!n.up) return;
  if (!connected(index_of(m.from), i)) return;  // partitioned while in flight
  hash(value_digest(encode_message(m)));
  if (opt_.trace) trace("deliver " + m.describe());
  n.core->step(m);
  process_ready(i);
}

void Sim::process_ready(int i) {
  Node& n = nodes_[i];
  while (n.up && n.core->has_ready()) {
    Ready r = n.core->take_ready();
    if (r.install) install(i, *r.install);
    for (const Ready::Applied& a : r.apply)
      apply(i, a);
    if (r.serving) {
      result_.elections += 1;
      trace("node " + std::to_string(n.id) + " serves as leader " + r.serving->first.describe() +
            " from slot " + std::to_string(r.serving->second));
    }
    if (r.lost_leadership) fail_client_work(i, OpState::unknown);
    for (uint64_t id : r.reads_failed) {
      auto it = n.reads.find(id);
      if (it != n.reads.end()) {
        finish_op(it->second, OpState::failed);
        n.reads.erase(it);
      }
    }
    for (const auto& [id, index] : r.reads_ready) {
      auto it = n.reads.find(id);
      if (it == n.reads.end()) continue;
      n.reads_waiting.emplace_back(it->second, index);
      n.reads.erase(it);
    }
    for (auto w = n.reads_waiting.begin(); w != n.reads_waiting.end();) {
      if (n.sm_applied >= w->second) {
        auto kv = n.kv.find(ops_[w->first].key);
        finish_op(w->first, OpState::ok, kv == n.kv.end() ? std::string() : kv->second);
        w = n.reads_waiting.erase(w);
      } else {
        ++w;
      }
    }
    for (const Message& m : r.send)
      send(m);
    if (r.persist_id != 0) {
      Persist p;
      p.id = r.persist_id;
      p.promise = r.promise;
      p.records = std::move(r.records);
      p.install = r.install;
      p.after = std::move(r.send_after_persist);
      n.unsynced.push_back(std::move(p));
      // One disk: syncs complete in order.
      n.disk_free_at = std::max(n.disk_free_at, now_) + disk_.between(100, 2000);
      schedule(n.disk_free_at, Ev::persist_done, i, r.persist_id);
    } else {
      for (const Message& m : r.send_after_persist)
        send(m);
    }
    if (Status s = n.core->check_invariants(); !s.ok()) violation(s.message());
  }
}

void Sim::on_persist_done(int i, uint64_t id) {
  Node& n = nodes_[i];
  while (!n.unsynced.empty() && n.unsynced.front().id <= id) {
    Persist p = std::move(n.unsynced.front());
    n.unsynced.pop_front();
    // Rare paths made to fire: a crash just after a promise left, or just
    // after accepting a higher ballot (with the log truncated first).
    if (faulty()) {
      const bool promised = std::any_of(p.after.begin(), p.after.end(), [](const Message& m) {
        return std::holds_alternative<Phase1b>(m.payload);
      });
      Ballot top;
      for (const LogRecord& r : p.records) {
        if (r.kind != LogRecord::Kind::accept) continue;
        top = std::max(top, r.ballot);
        if (r.ballot >= n.top_accepted) n.top_accepted_slot = std::max(n.top_accepted_slot, r.slot);
      }
      if ((promised && faults_.chance(0.05)) || (top > n.top_accepted && faults_.chance(0.05))) {
        if (!promised) schedule(now_, Ev::snapshot_start, i, 1);
        schedule(now_ + faults_.between(promised ? 100 : 500, 3000), Ev::crash, i, 1);
      }
      n.top_accepted = std::max(n.top_accepted, top);
    }
    if (p.promise) n.d_promise = *p.promise;
    for (LogRecord& r : p.records) {
      if (r.kind == LogRecord::Kind::accept) accepted(i, r);
      n.d_records.push_back(std::move(r));
    }
    if (p.install && p.install->index > n.d_snap_index) {
      n.d_snap_index = p.install->index;
      n.d_snap = p.install->data;
    }
    for (const Message& m : p.after) {
      check_promise_kept(i, m);
      send(m);
    }
    n.core->on_persisted(p.id);
  }
  process_ready(i);
}

// P3 across crashes: once an acceptor told anyone it promised (1b) or
// accepted (2b) ballot b, it never promises or accepts below b again.
void Sim::check_promise_kept(int i, const Message& m) {
  const bool promise = std::holds_alternative<Phase1b>(m.payload);
  const bool accept = std::holds_alternative<Phase2b>(m.payload);
  if (!promise && !accept) return;
  Ballot& top = promised_out_[i];
  if (m.ballot < top) {
    violation("acceptor " + std::to_string(nodes_[i].id) + " forgot its promise: it " +
              (promise ? "promised " : "accepted ") + m.ballot.describe() + " after promising " +
              top.describe());
  }
  top = std::max(top, m.ballot);
}

// A durable acceptance: the oracle's only input (P8).
void Sim::accepted(int i, const LogRecord& r) {
  const uint64_t d = value_digest(*r.value);
  auto& by_node = accepts_[{r.slot, r.ballot}];
  auto [it, fresh] = by_node.emplace(nodes_[i].id, d);
  if (!fresh && it->second != d) {
    violation("acceptor " + std::to_string(nodes_[i].id) + " accepted two values for slot " +
              std::to_string(r.slot) + " in ballot " + r.ballot.describe());
  }
  size_t same = 0;
  for (const auto& [node, digest] : by_node)
    same += digest == d;
  if (same * 2 <= members_.size()) return;
  auto [c, first] = chosen_.emplace(r.slot, d);
  if (!first && c->second != d) {
    violation("two different values chosen for slot " + std::to_string(r.slot) +
              " (the second in ballot " + r.ballot.describe() + ")");
  }
}

void Sim::apply(int i, const Ready::Applied& a) {
  Node& n = nodes_[i];
  if (a.slot != n.sm_applied + 1) {
    violation("node " + std::to_string(n.id) + " applied slot " + std::to_string(a.slot) +
              " after " + std::to_string(n.sm_applied));
  }
  const uint64_t d = value_digest(*a.value);
  auto ch = chosen_.find(a.slot);
  if (ch == chosen_.end() || ch->second != d) {
    violation("node " + std::to_string(n.id) + " applied a value for slot " +
              std::to_string(a.slot) + " that was not chosen");
  }
  auto [it, first] = applied_.emplace(a.slot, d);
  if (!first && it->second != d) {
    violation("replicas applied different values at slot " + std::to_string(a.slot));
  }
  result_.applied_slots = std::max<uint64_t>(result_.applied_slots, a.slot);
  n.sm_applied = a.slot;
  // Rare path made to fire: everything accepted in a ballot above the
  // durable promise is now applied, so a snapshot would truncate all trace of
  // that (implicit) promise; snapshot and crash right now.
  if (faulty() && n.top_accepted > n.d_promise && a.slot >= n.top_accepted_slot &&
      faults_.chance(0.2)) {
    schedule(now_, Ev::snapshot_start, i, 1);
    schedule(now_ + faults_.between(500, 3000), Ev::crash, i, 1);
  }
  Value v;
  if (!decode_value(*a.value, &v)) {
    violation("undecodable value at slot " + std::to_string(a.slot));
    return;
  }
  for (const Command& c : v.commands) {
    Reader r(c.payload);
    std::string key = r.bytes();
    std::string value = r.bytes();
    n.kv[key] = value;
    if (key == "probe") probe_slot_.emplace(value, a.slot);
    if (c.id.origin() == n.id) {
      auto p = n.proposals.find(c.id);
      if (p != n.proposals.end()) {
        finish_op(p->second, OpState::ok);
        n.proposals.erase(p);
      }
    }
  }
  hash(d ^ (uint64_t{n.id} << 56));
}

void Sim::install(int i, const Ready::Install& in) {
  Node& n = nodes_[i];
  result_.snapshot_installs += 1;
  auto it = state_digest_.find(in.index);
  if (it != state_digest_.end() && it->second != value_digest(*in.data)) {
    violation("snapshot at " + std::to_string(in.index) + " differs between replicas");
  }
  n.kv = decode_kv(*in.data);
  n.sm_applied = in.index;
  trace("node " + std::to_string(n.id) + " installs snapshot at " + std::to_string(in.index));
}

void Sim::fail_client_work(int i, OpState how) {
  Node& n = nodes_[i];
  for (const auto& [seq, op] : n.proposals)
    finish_op(op, how);
  n.proposals.clear();
  for (const auto& [id, op] : n.reads)
    finish_op(op, OpState::failed);
  n.reads.clear();
  for (const auto& [op, index] : n.reads_waiting)
    finish_op(op, OpState::failed);
  n.reads_waiting.clear();
}

void Sim::crash(int i, bool quick) {
  Node& n = nodes_[i];
  if (!n.up) return;
  result_.faults += 1;
  trace("crash node " + std::to_string(n.id));
  fail_client_work(i, OpState::unknown);
  // Unsynced writes: all lost, or a prefix of the log records survives (a
  // torn tail is cut at the first bad batch); the vote file and snapshot
  // writes survive or not on their own.
  const bool keep_some = disk_.chance(0.5);
  size_t total = 0;
  for (const Persist& p : n.unsynced)
    total += p.records.size();
  size_t keep = keep_some ? disk_.below(total + 1) : 0;
  for (Persist& p : n.unsynced) {
    if (p.promise && disk_.chance(0.5)) n.d_promise = *p.promise;
    for (LogRecord& r : p.records) {
      if (keep == 0) break;
      --keep;
      if (r.kind == LogRecord::Kind::accept) accepted(i, r);
      n.d_records.push_back(std::move(r));
    }
    if (p.install && disk_.chance(0.5) && p.install->index > n.d_snap_index) {
      n.d_snap_index = p.install->index;
      n.d_snap = p.install->data;
    }
  }
  n.unsynced.clear();
  pending_snapshots_.erase(i);  // a snapshot not yet renamed into place is lost
  n.up = false;
  n.core.reset();
  n.incarnation += 1;
  // Rarely, the disk is replaced: an empty data directory, which the replica
  // must refuse to start on (P4); it stays down.
  const size_t wiped =
      std::count_if(nodes_.begin(), nodes_.end(), [](const Node& x) { return x.wiped; });
  if (!wiped_once_ && wiped == 0 && faults_.chance(0.02)) {
    wiped_once_ = true;
    n.wiped = true;
    n.d_promise = Ballot{};
    n.d_records.clear();
    n.d_snap_index = 0;
    n.d_snap.reset();
    trace("node " + std::to_string(n.id) + " lost its disk");
  }
  schedule(now_ + (quick ? faults_.between(5'000, 60'000) : faults_.between(50'000, 800'000)),
           Ev::restart, i);
}

// ---------------------------------------------------------------------------
// Clients

void Sim::finish_op(size_t op, OpState st, const std::string& read_value) {
  Op& o = ops_[op];
  if (o.state != OpState::pending) return;
  o.state = st;
  if (st == OpState::ok) {
    o.response = now_;
    if (!o.is_put) o.value = read_value;
    if (o.probe) probes_ok_.insert(o.value);
  }
  client_op_[o.client] = SIZE_MAX;
  schedule(now_ + clients_rng_.between(1000, 20000), Ev::client, -1,
           static_cast<uint64_t>(o.client));
}

void Sim::client_step(int c) {
  if (client_op_[c] != SIZE_MAX) return;
  if (now_ >= end_at_ - 500'000) return;  // leave time for the last ones to finish
  Op o;
  o.client = c;
  o.invoke = now_;
  const bool healed = now_ >= heal_at_;
  o.probe = healed && c == 0;
  o.is_put = o.probe || clients_rng_.chance(0.75);
  o.key = o.probe ? "probe" : "k" + std::to_string(clients_rng_.below(opt_.keys));
  if (o.is_put) o.value = "c" + std::to_string(c) + "#" + std::to_string(++op_counter_);
  // Talk to the replica the client believes leads, or follow a redirect.
  NodeId target = client_guess_[c];
  int i = index_of(target);
  if (!nodes_[i].up || (nodes_[i].core && nodes_[i].core->status().role != Role::leader)) {
    std::optional<NodeId> hint;
    if (nodes_[i].up) hint = nodes_[i].core->status().leader;
    target = hint ? *hint : members_[clients_rng_.below(members_.size())];
    client_guess_[c] = target;
    i = index_of(target);
  }
  Node& n = nodes_[i];
  auto retry = [&] {
    schedule(now_ + clients_rng_.between(5000, 30000), Ev::client, -1, static_cast<uint64_t>(c));
  };
  if (!n.up) return retry();
  const size_t id = ops_.size();
  if (o.is_put) {
    Writer w;
    w.bytes(o.key);
    w.bytes(o.value);
    auto seq = n.core->propose(w.take());
    if (!seq.ok()) return retry();  // never queued: not an operation
    ops_.push_back(o);
    n.proposals[*seq] = id;
  } else {
    const uint64_t rid = next_read_id_++;
    if (!n.core->read_index(rid).ok()) return retry();
    ops_.push_back(o);
    n.reads[rid] = id;
  }
  client_op_[c] = id;
  result_.client_ops += 1;
  schedule(now_ + 1'500'000, Ev::client_timeout, -1, id);
  process_ready(i);
}

// Per key, search for an order of the operations that respects real time and
// register semantics. Unknown puts may have happened (or not); failed ones
// did not. Small histories only.
void Sim::check_linearizable() {
  std::map<std::string, std::vector<const Op*>> by_key;
  for (const Op& o : ops_) {
    // Failed operations never took effect; reads count only when answered;
    // puts without an answer (unknown, or pending at the end) may or may not
    // have taken effect.
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
      // Unknown puts that never happened are simply left out.
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
  for (const Node& n : nodes_) {
    if (!n.up) continue;
    for (const std::string& p : probes_ok_) {
      auto slot = probe_slot_.find(p);
      if (slot == probe_slot_.end() || n.sm_applied < slot->second) {
        violation("node " + std::to_string(n.id) + " never applied probe " + p +
                  " after the faults healed");
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------

PaxosSimResult Sim::run() {
  group_.assign(nodes_.size(), 0);
  client_op_.assign(opt_.clients, SIZE_MAX);
  for (int c = 0; c < opt_.clients; ++c) {
    client_guess_.push_back(members_[clients_rng_.below(members_.size())]);
    schedule(clients_rng_.between(0, 200'000), Ev::client, -1, static_cast<uint64_t>(c));
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    schedule(0, Ev::tick, static_cast<int>(i));
    nodes_[i].core = std::make_unique<Replica>(config_for(static_cast<int>(i)), Recovered{});
    schedule(faults_.between(100'000, 500'000), Ev::snapshot_start, static_cast<int>(i));
  }
  // Faults arrive at random during the fault span.
  for (int64_t t = faults_.between(100'000, 400'000); t < heal_at_;
       t += faults_.between(50'000, 400'000)) {
    const uint64_t pick = faults_.below(100);
    const int node = static_cast<int>(faults_.below(nodes_.size()));
    if (pick < 35) {
      schedule(t, Ev::crash, node);
    } else if (pick < 60) {
      schedule(t, Ev::partition, -1, faults_.next());
    } else if (pick < 75) {
      schedule(t, Ev::pause, node, static_cast<uint64_t>(faults_.between(20'000, 400'000)));
    } else if (pick < 90) {
      schedule(t, Ev::heal_partition, -1);
    } else {
      schedule(t, Ev::deliver, -2);  // replay an old message across ballots
    }
  }
  schedule(heal_at_, Ev::heal_all, -1);

  while (!queue_.empty() && result_.ok) {
    Event e = queue_.top();
    queue_.pop();
    if (e.at > end_at_) break;
    now_ = e.at;
    if (e.node >= 0 && e.kind != Ev::restart && e.kind != Ev::crash && e.kind != Ev::deliver &&
        e.kind != Ev::pause && e.incarnation != nodes_[e.node].incarnation) {
      continue;  // for a previous life of the node
    }
    // A paused node does nothing until its pause ends.
    if (e.node >= 0 && nodes_[e.node].paused_until > now_ && e.kind != Ev::crash &&
        e.kind != Ev::restart && e.kind != Ev::pause) {
      e.at = nodes_[e.node].paused_until;
      e.seq = next_seq_++;
      queue_.push(std::move(e));
      continue;
    }
    hash(static_cast<uint64_t>(e.kind) * 1315423911u + static_cast<uint64_t>(e.node + 7) +
         static_cast<uint64_t>(e.at));
    switch (e.kind) {
      case Ev::deliver:
        if (e.node == -2) {
          if (!replay_pool_.empty()) {
            const auto& [m, at] = replay_pool_[faults_.below(replay_pool_.size())];
            result_.faults += 1;
            if (connected(index_of(m.from), index_of(m.to))) deliver(m);
          }
        } else {
          deliver(e.msg);
        }
        break;
      case Ev::tick: {
        Node& n = nodes_[e.node];
        if (!n.up) break;
        n.core->tick();
        process_ready(e.node);
        schedule(now_ + local(e.node, kTickUs), Ev::tick, e.node);
        break;
      }
      case Ev::persist_done:
        if (nodes_[e.node].up) on_persist_done(e.node, e.a);
        break;
      case Ev::snapshot_start: {
        Node& n = nodes_[e.node];
        if (n.up && n.sm_applied > n.d_snap_index) {
          const Slot index = n.sm_applied;
          Bytes img = make_bytes(encode_kv(n.kv));
          auto [it, first] = state_digest_.emplace(index, value_digest(*img));
          if (!first && it->second != value_digest(*img)) {
            violation("state at applied index " + std::to_string(index) +
                      " differs between replicas");
          }
          // Written to a temp file, synced, renamed, directory synced: the
          // snapshot exists on disk only once that is done (P6).
          const int64_t write_us = e.a == 1 ? disk_.between(50, 400) : disk_.between(1000, 30000);
          schedule(now_ + write_us, Ev::snapshot_done, e.node, index);
          pending_snapshots_[e.node] = img;
        }
        if (e.a == 0)
          schedule(now_ + faults_.between(100'000, 700'000), Ev::snapshot_start, e.node);
        break;
      }
      case Ev::snapshot_done: {
        Node& n = nodes_[e.node];
        if (!n.up) break;
        auto img = pending_snapshots_.find(e.node);
        if (img == pending_snapshots_.end()) break;
        const Slot index = e.a;
        if (index <= n.d_snap_index) break;
        result_.snapshots += 1;
        n.d_snap_index = index;
        n.d_snap = img->second;
        pending_snapshots_.erase(img);
        // Then the log below is truncated.
        std::erase_if(n.d_records, [&](const LogRecord& r) { return r.slot <= index; });
        n.core->on_snapshot(index, n.d_snap);
        process_ready(e.node);
        break;
      }
      case Ev::crash:
        if (faulty()) crash(e.node, e.a == 1);
        break;
      case Ev::restart: {
        Node& n = nodes_[e.node];
        if (n.up) break;
        if (n.wiped) {
          trace("node " + std::to_string(n.id) + " refuses to start on an empty data directory");
          break;
        }
        trace("restart node " + std::to_string(n.id));
        start_node(e.node);
        // Old messages, some from earlier ballots, find the restarted node.
        if (faulty()) {
          for (int k = 0; k < 8 && !replay_pool_.empty(); ++k) {
            const auto& [m, at] = replay_pool_[faults_.below(replay_pool_.size())];
            if (index_of(m.to) == e.node)
              schedule(now_ + faults_.between(0, 100'000), Ev::deliver, e.node, 0, m);
          }
        }
        break;
      }
      case Ev::partition:
        if (!faulty()) break;
        result_.faults += 1;
        if (e.a & 1) {
          // Cut single links: A may reach B and B reach C while A cannot reach C.
          for (size_t x = 0; x < nodes_.size(); ++x) {
            for (size_t y = x + 1; y < nodes_.size(); ++y) {
              if ((e.a >> (1 + x * nodes_.size() + y)) & 1)
                cut_.insert({static_cast<int>(x), static_cast<int>(y)});
            }
          }
          trace("links cut");
        } else {
          for (size_t i = 0; i < group_.size(); ++i)
            group_[i] = static_cast<int>((e.a >> (i + 1)) & 1);
          trace("partition");
        }
        break;
      case Ev::heal_partition:
        std::fill(group_.begin(), group_.end(), 0);
        cut_.clear();
        break;
      case Ev::pause:
        if (!faulty()) break;
        result_.faults += 1;
        nodes_[e.node].paused_until = now_ + static_cast<int64_t>(e.a);
        break;
      case Ev::client:
        client_step(static_cast<int>(e.a));
        break;
      case Ev::client_timeout:
        finish_op(e.a, OpState::unknown);
        break;
      case Ev::heal_all:
        trace("every fault heals");
        std::fill(group_.begin(), group_.end(), 0);
        cut_.clear();
        for (size_t i = 0; i < nodes_.size(); ++i) {
          nodes_[i].paused_until = 0;
          if (!nodes_[i].up && !nodes_[i].wiped) schedule(now_, Ev::restart, static_cast<int>(i));
        }
        break;
    }
  }
  if (result_.ok) check_linearizable();
  if (result_.ok) check_liveness();
  result_.trace_hash = trace_hash_;
  result_.simulated_s = static_cast<double>(std::min(now_, end_at_)) / 1e6;
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
  else
    return false;
  return true;
}

}  // namespace dtx::sim
