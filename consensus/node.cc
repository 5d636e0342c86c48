#include "consensus/node.h"

#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <future>
#include <random>

#include "consensus/asio_internal.h"

namespace dtx::consensus {

const char* outcome_name(ProposeResult::Outcome o) {
  switch (o) {
    case ProposeResult::Outcome::applied:
      return "applied";
    case ProposeResult::Outcome::unknown:
      return "unknown";
    case ProposeResult::Outcome::not_leader:
      return "not_leader";
    case ProposeResult::Outcome::busy:
      return "busy";
    case ProposeResult::Outcome::stopped:
      return "stopped";
  }
  return "?";
}

struct Node::TickTimer {
  explicit TickTimer(EventLoop& loop) : timer(io_of(loop)) {}
  boost::asio::steady_timer timer;
};

Node::Node(NodeOptions o, NodeCallbacks c) : opt_(std::move(o)), cb_(std::move(c)) {}

Result<std::unique_ptr<Node>> Node::start(NodeOptions options, NodeCallbacks callbacks) {
  if (!options.replicas.count(options.self)) {
    return error(Code::invalid_argument, "this replica's id is not among the replicas");
  }
  if (options.listen.empty()) options.listen = options.replicas.at(options.self);
  std::unique_ptr<Node> node(new Node(std::move(options), std::move(callbacks)));
  NodeOptions& opt = node->opt_;

  Config cfg = opt.tuning;
  cfg.cluster_id = opt.cluster_id;
  cfg.self = opt.self;
  cfg.members.clear();
  for (const auto& [id, addr] : opt.replicas)
    cfg.members.push_back(id);
  cfg.heartbeat_ticks = opt.heartbeat_ticks;
  cfg.election_ticks = opt.election_ticks;
  cfg.seed = std::random_device{}();  // election jitter only
  cfg.bugs = PlantedBugs{};
  DTX_RETURN_IF_ERROR(validate(cfg));

  StorageOptions so;
  so.dir = opt.data_dir;
  so.cluster_id = opt.cluster_id;
  so.self = opt.self;
  so.members = cfg.members;
  so.bootstrap = opt.bootstrap;
  so.fs = opt.fs;
  Node* raw = node.get();
  so.callback_executor = [raw](std::function<void()> fn) { raw->loop_.post(std::move(fn)); };
  Recovered rec;
  auto storage = PaxosStorage::open(so, &rec);
  if (!storage.ok()) return storage.status();
  node->storage_ = std::move(*storage);
  if (rec.snapshot && node->cb_.restore) {
    node->cb_.restore(rec.snapshot_index, *rec.snapshot);
  }
  node->applied_ = rec.snapshot_index;
  node->last_snapshot_ = rec.snapshot_index;
  node->core_ = std::make_unique<Replica>(cfg, std::move(rec));

  TransportOptions to;
  to.self = opt.self;
  to.cluster_id = opt.cluster_id;
  to.membership_hash = membership_hash(opt.cluster_id, cfg.members);
  to.listen = opt.listen;
  to.secret = opt.secret;
  for (const auto& [id, addr] : opt.replicas) {
    if (id != opt.self) to.peers[id] = addr;
  }
  auto transport = Transport::start(node->loop_, to, [raw](Message m) {
    if (raw->stopping_) return;
    raw->core_->step(m);
    raw->drain();
  });
  if (!transport.ok()) return transport.status();
  node->transport_ = std::move(*transport);
  node->ticker_ = std::make_unique<TickTimer>(node->loop_);
  node->loop_.post([raw] {
    raw->drain();
    raw->on_tick();
  });
  node->publish_status();
  node->loop_.start();
  node->running_ = true;
  spdlog::info("paxos node {}: started, cluster {}, {} replicas, listening on {}", opt.self,
               opt.cluster_id, opt.replicas.size(), opt.listen);
  return node;
}

Node::~Node() {
  stop();
}

void Node::stop() {
  if (stopped_.exchange(true)) return;
  if (!running_) return;  // start() failed before the loop ran: nothing to wind down
  std::promise<void> done;
  auto f = done.get_future();
  loop_.post([this, &done] {
    stopping_ = true;
    if (ticker_) ticker_->timer.cancel();
    if (transport_) transport_->stop();
    fail_pending(ProposeResult::Outcome::stopped);
    done.set_value();
  });
  f.wait_for(std::chrono::seconds(10));
  loop_.stop();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  transport_.reset();
  storage_.reset();  // flushes and closes the log
}

void Node::on_tick() {
  if (stopping_) return;
  core_->tick();
  drain();
  ticker_->timer.expires_after(std::chrono::milliseconds(opt_.tick_ms));
  ticker_->timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_tick();
  });
}

void Node::drain() {
  while (!stopping_ && core_->has_ready())
    handle(core_->take_ready());
  publish_status();
  maybe_snapshot();
}

void Node::handle(Ready r) {
  if (r.install) {
    if (cb_.restore) cb_.restore(r.install->index, *r.install->data);
    applied_ = r.install->index;
    last_snapshot_ = r.install->index;  // storage saved it as this replica's snapshot
    spdlog::info("paxos node {}: installed a snapshot at slot {}", opt_.self, r.install->index);
  }
  for (const Ready::Applied& a : r.apply) {
    Value v;
    if (!decode_value(*a.value, &v)) {
      spdlog::critical("paxos node {}: chosen value at slot {} does not decode", opt_.self, a.slot);
      std::abort();
    }
    for (const Command& c : v.commands) {
      if (cb_.apply) cb_.apply(a.slot, c);
      if (c.origin == opt_.self) {
        auto p = proposals_.find(c.seq);
        if (p != proposals_.end()) {
          auto done = std::move(p->second);
          proposals_.erase(p);
          done(ProposeResult{ProposeResult::Outcome::applied, a.slot, std::nullopt});
        }
      }
    }
    applied_ = a.slot;
  }
  while (!applied_waiters_.empty() && applied_waiters_.begin()->first <= applied_) {
    auto fn = std::move(applied_waiters_.begin()->second);
    applied_waiters_.erase(applied_waiters_.begin());
    fn();
  }
  if (r.serving) {
    spdlog::info("paxos node {}: leading with ballot {} from slot {}", opt_.self,
                 r.serving->first.describe(), r.serving->second);
    if (cb_.on_leader) cb_.on_leader(r.serving->first, r.serving->second);
  }
  if (r.lost_leadership) {
    spdlog::info("paxos node {}: lost leadership", opt_.self);
    // P7: what was proposed may still be chosen by the next leader.
    fail_pending(ProposeResult::Outcome::unknown);
    if (cb_.on_leadership_lost) cb_.on_leadership_lost();
  }
  for (uint64_t id : r.reads_failed) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    auto done = std::move(it->second);
    reads_.erase(it);
    done(error(Code::unavailable, "leadership lost before the read was confirmed"));
  }
  for (const auto& [id, index] : r.reads_ready) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    auto done = std::move(it->second);
    reads_.erase(it);
    const Slot at = index;
    if (applied_ >= at) {
      done(at);
    } else {
      applied_waiters_.emplace(at, [done = std::move(done), at] { done(at); });
    }
  }
  for (const Message& m : r.send)
    transport_->send(m);
  if (r.persist_id != 0) {
    auto after = std::make_shared<std::vector<Message>>(std::move(r.send_after_persist));
    const uint64_t id = r.persist_id;
    storage_->persist(r, [this, after, id] {
      // On the loop (the storage's callback executor).
      if (stopping_) return;
      for (const Message& m : *after)
        transport_->send(m);
      core_->on_persisted(id);
      drain();
    });
  } else {
    for (const Message& m : r.send_after_persist)
      transport_->send(m);
  }
}

void Node::fail_pending(ProposeResult::Outcome outcome) {
  auto proposals = std::move(proposals_);
  proposals_.clear();
  for (auto& [seq, done] : proposals)
    done(ProposeResult{outcome, 0, std::nullopt});
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [id, done] : reads)
    done(error(Code::unavailable, "replica stopping or not leader"));
}

void Node::maybe_snapshot() {
  if (snapshot_running_ || stopping_ || !cb_.snapshot) return;
  if (applied_ < last_snapshot_ + opt_.snapshot_every_slots) return;
  const Slot index = applied_;
  std::function<std::string()> serialize = cb_.snapshot();
  if (!serialize) return;
  snapshot_running_ = true;
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  // P6: serialized and written off the loop; the core learns of it (and the
  // log is truncated) only once it is durable.
  snapshot_thread_ = std::thread([this, index, serialize = std::move(serialize)] {
    std::string data = serialize();
    Status s = storage_->save_snapshot(index, data);
    loop_.post([this, index, s, bytes = make_bytes(std::move(data))] {
      snapshot_running_ = false;
      if (!s.ok()) {
        spdlog::error("paxos node {}: snapshot at {} failed: {}", opt_.self, index, s.describe());
        return;
      }
      last_snapshot_ = index;
      if (!stopping_) core_->on_snapshot(index, bytes);
      spdlog::info("paxos node {}: snapshot at slot {} ({} bytes)", opt_.self, index,
                   bytes->size());
    });
  });
}

void Node::publish_status() {
  ReplicaStatus s = core_->status();
  std::lock_guard lock(status_mu_);
  status_.self = opt_.self;
  status_.role = s.role;
  status_.serving = s.serving;
  status_.leader = s.leader;
  status_.ballot = s.ballot;
  status_.promised = s.promised;
  status_.commit_index = s.commit_index;
  status_.applied_index = applied_;
  status_.snapshot_index = s.compaction_index;
}

NodeStatus Node::status() const {
  std::lock_guard lock(status_mu_);
  return status_;
}

TransportStats Node::transport_stats() const {
  return transport_->stats();
}

std::string Node::address_of(NodeId id) const {
  auto it = opt_.replicas.find(id);
  return it == opt_.replicas.end() ? std::string() : it->second;
}

void Node::post(std::function<void()> fn) {
  loop_.post(std::move(fn));
}

void Node::propose(std::string payload, std::function<void(ProposeResult)> done) {
  loop_.post([this, payload = std::move(payload), done = std::move(done)]() mutable {
    if (stopping_) return done(ProposeResult{ProposeResult::Outcome::stopped, 0, std::nullopt});
    auto seq = core_->propose(std::move(payload));
    if (!seq.ok()) {
      ProposeResult r;
      r.outcome = seq.status().code() == Code::busy ? ProposeResult::Outcome::busy
                                                    : ProposeResult::Outcome::not_leader;
      r.leader = core_->status().leader;
      return done(r);
    }
    proposals_.emplace(*seq, std::move(done));
    drain();
  });
}

void Node::read_index(std::function<void(Result<Slot>)> done) {
  loop_.post([this, done = std::move(done)]() mutable {
    if (stopping_) return done(error(Code::unavailable, "replica stopping"));
    const uint64_t id = next_read_id_++;
    Status s = core_->read_index(id);
    if (!s.ok()) return done(error(Code::failed_precondition, s.message()));
    reads_.emplace(id, std::move(done));
    drain();
  });
}

void Node::wait_applied(Slot slot, std::function<void()> done) {
  loop_.post([this, slot, done = std::move(done)]() mutable {
    if (applied_ >= slot) return done();
    applied_waiters_.emplace(slot, std::move(done));
  });
}

}  // namespace dtx::consensus
