#include "tests/sim/sim_paxos_node.h"

#include <algorithm>

namespace dtx::sim {

using namespace dtx::consensus;

// The executor's side effects, on the simulated network and disk.
class SimPaxosNode::Io final : public ExecutorIo {
 public:
  explicit Io(SimPaxosNode& n) : n_(n) {}
  void send(const Message& m) override { n_.send(m); }
  void persist(const Ready& r) override { n_.persist(r); }

 private:
  SimPaxosNode& n_;
};

SimPaxosNode::SimPaxosNode(EventQueue& queue, SimNetwork& net, SimPaxosNodeOptions options,
                           SimPaxosHooks hooks, Rng rng)
    : q_(queue),
      net_(net),
      opt_(std::move(options)),
      hooks_(std::move(hooks)),
      rng_(rng),
      disk_(queue, rng.derive("disk")),
      io_(std::make_unique<Io>(*this)) {}

SimPaxosNode::~SimPaxosNode() = default;

void SimPaxosNode::fatal(const Status& s) {
  if (hooks_.on_fatal) hooks_.on_fatal(s);
}

Status SimPaxosNode::start(bool bootstrap) {
  if (up()) return ok_status();
  incarnation_ += 1;
  Recovered rec;
  auto st = SimPaxosStorage::open(disk_.fs(), opt_.dir, opt_.config.cluster_id, opt_.config.self,
                                  bootstrap, &rec);
  if (!st.ok()) return st.status();
  storage_ = std::move(*st);
  // Accepts that survived a crash unsynced are durable now.
  if (hooks_.on_durable_accept) {
    for (const LogRecord& r : rec.records) {
      if (r.kind == LogRecord::Kind::accept) hooks_.on_durable_accept(r);
    }
  }
  if (hooks_.restore) hooks_.restore(rec.snapshot_index, rec.snapshot ? *rec.snapshot : "");
  Config cfg = opt_.config;
  cfg.seed = rng_.derive_seed("election", incarnation_);
  const Slot applied = rec.snapshot_index;
  ExecutorCallbacks cb;
  cb.apply = hooks_.apply;
  cb.restore = [this](Slot index, const std::string& data) {
    installs_ += 1;
    if (hooks_.restore) hooks_.restore(index, data);
  };
  cb.on_leader = hooks_.on_leader;
  cb.on_leadership_lost = hooks_.on_leadership_lost;
  cb.on_applied_value = hooks_.on_applied_value;
  exec_ = std::make_unique<Executor>(std::make_unique<Replica>(cfg, std::move(rec)), *io_,
                                     std::move(cb), applied);
  snapshot_running_ = false;
  exec_->process();
  later(
      opt_.tick_us, [this] { tick(); }, 0x5449434b);
  return ok_status();
}

void SimPaxosNode::crash() {
  if (!up()) return;
  // The process dies: what it promised callers is now unknown to them.
  std::unique_ptr<Executor> exec = std::move(exec_);
  exec->stop();
  exec.reset();
  storage_.reset();
  disk_.crash();
  paused_until_ = 0;
}

void SimPaxosNode::later(SimTime delay, std::function<void()> fn, uint64_t tag) {
  const uint64_t inc = incarnation_;
  q_.after(
      local(delay),
      [this, inc, fn = std::move(fn)]() mutable { run_when_awake(inc, std::move(fn)); }, tag);
}

// An event for this machine runs only in the incarnation that scheduled it,
// and not while the machine is paused: then it runs when the pause ends.
void SimPaxosNode::run_when_awake(uint64_t inc, std::function<void()> fn) {
  if (!up() || inc != incarnation_) return;
  if (paused_until_ > q_.now()) {
    q_.at(paused_until_,
          [this, inc, fn = std::move(fn)]() mutable { run_when_awake(inc, std::move(fn)); });
    return;
  }
  fn();
}

void SimPaxosNode::tick() {
  exec_->tick();
  later(
      opt_.tick_us, [this] { tick(); }, 0x5449434b);
}

void SimPaxosNode::send(const Message& m) {
  if (hooks_.on_send) hooks_.on_send(m);
  if (!peers_) return;
  SimPaxosNode* to = peers_(m.to);
  if (!to) return;
  const bool interesting =
      std::holds_alternative<Phase2a>(m.payload) || std::holds_alternative<Phase1b>(m.payload);
  // A proposer's messages belong to the generation of their ballot.
  std::optional<uint64_t> generation;
  if (std::holds_alternative<Phase2a>(m.payload) || std::holds_alternative<Phase1a>(m.payload)) {
    generation = ballot_generation(m.ballot);
  }
  PeerLookup peers = peers_;
  net_.send(
      opt_.endpoint, to->endpoint(),
      [peers, m] {
        if (SimPaxosNode* n = peers(m.to)) n->deliver(m);
      },
      interesting, generation);
}

void SimPaxosNode::deliver(const Message& m) {
  if (!up()) return;
  run_when_awake(incarnation_, [this, m] { exec_->step(m); });
}

void SimPaxosNode::persist(const Ready& r) {
  if (Status s = storage_->write(r); !s.ok()) return fatal(s);
  const uint64_t id = r.persist_id;
  const uint64_t inc = incarnation_;
  std::vector<LogRecord> records = r.records;
  const std::optional<Ballot> promise = r.promise;
  disk_.sync([this, inc, id, records = std::move(records), promise]() mutable {
    run_when_awake(inc, [this, id, records = std::move(records), promise] {
      if (Status s = storage_->complete(id); !s.ok()) return fatal(s);
      if (hooks_.on_durable_accept) {
        for (const LogRecord& rec : records) {
          if (rec.kind == LogRecord::Kind::accept) hooks_.on_durable_accept(rec);
        }
      }
      if (hooks_.on_persisted) hooks_.on_persisted(records, promise);
      if (up()) exec_->on_persisted(id);
    });
  });
}

void SimPaxosNode::propose(std::string payload, Executor::ProposeCallback done) {
  if (!up()) return done(ProposeResult{ProposeResult::Outcome::stopped, 0, {}, std::nullopt});
  exec_->propose(std::move(payload), std::move(done));
}

void SimPaxosNode::read_index(Executor::ReadCallback done) {
  if (!up()) return done(error(Code::closed, "replica down"));
  exec_->read_index(std::move(done));
}

void SimPaxosNode::wait_applied(Slot slot, Executor::WaitCallback done) {
  if (!up()) return done(error(Code::closed, "replica down"));
  exec_->wait_applied(slot, std::move(done));
}

void SimPaxosNode::snapshot_now(SimTime write_us) {
  if (!up() || snapshot_running_ || !hooks_.snapshot) return;
  const Slot index = exec_->applied_index();
  if (index <= storage_->snapshot_index()) return;
  // Serialised now (the state at exactly this applied index), durable after
  // the write: temp file, sync, rename, directory sync, then truncation (P6).
  Bytes data = make_bytes(hooks_.snapshot(index));
  snapshot_running_ = true;
  later(
      write_us,
      [this, index, data] {
        snapshot_running_ = false;
        if (index <= storage_->snapshot_index()) return;  // a peer's install got there first
        if (Status s = storage_->save_snapshot(index, *data); !s.ok()) return fatal(s);
        snapshots_ += 1;
        exec_->on_snapshot(index, data);
      },
      0x534e4150);
}

// ---------------------------------------------------------------------------

SimPaxosGroup::SimPaxosGroup(EventQueue& queue, SimNetwork& net, Rng rng, SimPaxosGroupOptions o,
                             HooksFor hooks) {
  for (int i = 0; i < o.replicas; ++i)
    members_.push_back(static_cast<NodeId>(i + 1));
  Rng drift = rng.derive("drift");
  for (int i = 0; i < o.replicas; ++i) {
    SimPaxosNodeOptions no;
    no.config = o.config;
    no.config.cluster_id = o.cluster_id;
    no.config.self = members_[i];
    no.config.members = members_;
    no.tick_us = o.tick_us;
    no.drift = (drift.real() * 2 - 1) * o.drift_max;
    no.endpoint = o.endpoint_base + i;
    nodes_.push_back(std::make_unique<SimPaxosNode>(queue, net, no, hooks(i),
                                                    rng.derive("replica", members_[i])));
  }
  for (auto& n : nodes_)
    n->set_peers([this](NodeId id) { return by_id(id); });
}

Status SimPaxosGroup::start() {
  for (auto& n : nodes_)
    DTX_RETURN_IF_ERROR(n->start(true));
  return ok_status();
}

SimPaxosNode* SimPaxosGroup::by_id(NodeId id) {
  if (id == 0 || id > nodes_.size()) return nullptr;
  return nodes_[id - 1].get();
}

std::optional<int> SimPaxosGroup::serving_leader() const {
  std::optional<int> best;
  Ballot top;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->up()) continue;
    const ReplicaStatus s = nodes_[i]->core().status();
    if (s.serving && s.ballot > top) {
      top = s.ballot;
      best = static_cast<int>(i);
    }
  }
  return best;
}

}  // namespace dtx::sim
