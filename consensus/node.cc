#include "consensus/node.h"

#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <future>
#include <random>

#include "consensus/asio_internal.h"

namespace dtx::consensus {

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
  node->command_bytes_max_ = cfg.command_bytes_max();

  StorageOptions so;
  so.dir = opt.data_dir;
  so.cluster_id = opt.cluster_id;
  so.self = opt.self;
  so.members = cfg.members;
  so.bootstrap = opt.bootstrap;
  so.fs = opt.fs;
  // P10: a slot holding one batch of the largest size must fit one log
  // record, or a proposal would become a value no replica can store.
  if (record_bytes_max(so) < batch_record_bytes(cfg.batch_bytes_max)) {
    return error(Code::invalid_argument,
                 "batch_bytes_max " + std::to_string(cfg.batch_bytes_max) +
                     " does not fit the write-ahead log's record limit of " +
                     std::to_string(record_bytes_max(so)) + " bytes");
  }
  Node* raw = node.get();
  so.callback_executor = [raw](std::function<void()> fn) { raw->loop_.post(std::move(fn)); };
  Recovered rec;
  auto storage = PaxosStorage::open(so, &rec);
  if (!storage.ok()) return storage.status();
  node->storage_ = std::move(*storage);

  // Everything from here on happens on the loop thread, restore() included.
  node->loop_.start();
  node->running_ = true;
  std::promise<Status> started;
  auto f = started.get_future();
  node->loop_.post(
      [raw, &cfg, &rec, &started] { started.set_value(raw->start_on_loop(cfg, std::move(rec))); });
  Status s = f.get();
  if (!s.ok()) return s;  // ~Node stops the loop
  spdlog::info("paxos node {}: started, cluster {}, {} replicas, listening on {}", opt.self,
               opt.cluster_id, opt.replicas.size(), opt.listen);
  return node;
}

Status Node::start_on_loop(const Config& cfg, Recovered rec) {
  if (rec.snapshot && cb_.restore) cb_.restore(rec.snapshot_index, *rec.snapshot);
  last_snapshot_ = rec.snapshot_index;
  const Slot applied = rec.snapshot_index;
  ExecutorCallbacks ec;
  ec.apply = cb_.apply;
  ec.restore = [this](Slot index, const std::string& data) {
    if (cb_.restore) cb_.restore(index, data);
    // The storage saved it as this replica's snapshot (P6).
    last_snapshot_ = std::max(last_snapshot_, index);
    spdlog::info("paxos node {}: installed a snapshot at slot {}", opt_.self, index);
  };
  ec.on_leader = [this](Ballot b, Slot slot) {
    spdlog::info("paxos node {}: leading with ballot {} from slot {}", opt_.self, b.describe(),
                 slot);
    if (cb_.on_leader) cb_.on_leader(b, slot);
  };
  ec.on_leadership_lost = [this] {
    spdlog::info("paxos node {}: lost leadership", opt_.self);
    if (cb_.on_leadership_lost) cb_.on_leadership_lost();
  };
  ExecutorIo& io = *this;
  exec_ = std::make_unique<Executor>(std::make_unique<Replica>(cfg, std::move(rec)), io,
                                     std::move(ec), applied);

  TransportOptions to;
  to.self = opt_.self;
  to.cluster_id = opt_.cluster_id;
  to.membership_hash = membership_hash(opt_.cluster_id, cfg.members);
  to.listen = opt_.listen;
  to.secret = opt_.secret;
  for (const auto& [id, addr] : opt_.replicas) {
    if (id != opt_.self) to.peers[id] = addr;
  }
  auto transport = Transport::start(loop_, to, [this](std::vector<Message>& messages) {
    if (stopping_) return;
    exec_->step_all(messages);
    after_step();
  });
  if (!transport.ok()) {
    stopping_ = true;
    exec_->stop();
    return transport.status();
  }
  transport_ = std::move(*transport);
  ticker_ = std::make_unique<TickTimer>(loop_);
  exec_->process();
  after_step();
  on_tick();
  return ok_status();
}

Node::~Node() {
  stop();
}

void Node::stop() {
  {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (!running_) return;  // start() failed before the loop ran: nothing to wind down
  // Queued after every call posted before stopped_ was set: those run first,
  // and whatever they left pending resolves here.
  std::promise<void> done;
  auto f = done.get_future();
  loop_.post([this, &done] {
    stopping_ = true;
    if (ticker_) ticker_->timer.cancel();
    if (transport_) transport_->stop();
    if (exec_) exec_->stop();
    publish_status();
    done.set_value();
  });
  if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    spdlog::error("paxos node {}: the loop did not wind down within 10 s", opt_.self);
  }
  loop_.stop();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  transport_.reset();
  storage_.reset();  // flushes and closes the log
}

bool Node::post_unless_stopped(std::function<void()> fn) {
  std::lock_guard lock(stop_mu_);
  if (stopped_) return false;
  loop_.post(std::move(fn));
  return true;
}

void Node::after_step() {
  publish_status();
  maybe_snapshot();
}

void Node::on_tick() {
  if (stopping_) return;
  exec_->tick();
  after_step();
  ticker_->timer.expires_after(std::chrono::milliseconds(opt_.tick_ms));
  ticker_->timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_tick();
  });
}

void Node::send(const Message& m) {
  transport_->send(m);
}

void Node::persist(const Ready& ready) {
  const uint64_t id = ready.persist_id;
  // A follower's acceptances are synced on the loop when the log is idle:
  // the 2b leaves right after the fdatasync, with no hand-off to the log's
  // flusher thread and back, and 2a messages that arrive meanwhile are
  // read together afterwards and synced as one batch. A leader does so only
  // when this persist is all it has to do (one slot open, nothing queued):
  // otherwise its loop keeps counting votes, applying and answering while
  // the flusher thread syncs.
  bool on_loop = false;
  if (opt_.sync_on_loop) {
    const ReplicaStatus s = exec_->core().status();
    on_loop =
        s.role != Role::leader || (s.last_slot <= s.commit_index + 1 && s.pending_commands == 0);
  }
  storage_->persist(
      ready,
      [this, id] {
        // On the loop (the storage's callback executor).
        if (stopping_) return;
        exec_->on_persisted(id);
        after_step();
      },
      on_loop);
}

void Node::maybe_snapshot() {
  if (snapshot_running_ || stopping_ || !cb_.snapshot) return;
  const Slot applied = exec_->applied_index();
  if (applied < last_snapshot_ + opt_.snapshot_every_slots) return;
  const Slot index = applied;
  std::function<std::string()> serialize = cb_.snapshot();
  if (!serialize) return;
  snapshot_running_ = true;
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  // P6: serialized and written off the loop; the core learns of it (and the
  // log is truncated) only once it is durable. The storage writes one
  // snapshot at a time: a peer's snapshot installed meanwhile waits for this
  // one, and whichever index is higher stays.
  snapshot_thread_ = std::thread([this, index, serialize = std::move(serialize)] {
    std::string data = serialize();
    Status s = storage_->save_snapshot(index, data);
    loop_.post([this, index, s, bytes = make_bytes(std::move(data))] {
      snapshot_running_ = false;
      if (!s.ok()) {
        spdlog::error("paxos node {}: snapshot at {} failed: {}", opt_.self, index, s.describe());
        return;
      }
      if (index <= last_snapshot_) {
        spdlog::info("paxos node {}: snapshot at slot {} superseded by one at {}", opt_.self, index,
                     last_snapshot_);
        return;
      }
      last_snapshot_ = index;
      if (!stopping_) exec_->on_snapshot(index, bytes);
      spdlog::info("paxos node {}: snapshot at slot {} ({} bytes)", opt_.self, index,
                   bytes->size());
    });
  });
}

void Node::publish_status() {
  if (!exec_) return;
  ReplicaStatus s = exec_->core().status();
  const wal::LogStats log = storage_ ? storage_->log().stats() : wal::LogStats{};
  std::lock_guard lock(status_mu_);
  status_.log_syncs = log.syncs;
  status_.log_sync_ns = log.batch_sync_ns;
  status_.self = opt_.self;
  status_.role = stopping_ ? Role::follower : s.role;
  status_.serving = !stopping_ && s.serving;
  status_.leader = s.leader;
  status_.ballot = s.ballot;
  status_.promised = s.promised;
  status_.commit_index = s.commit_index;
  status_.applied_index = exec_->applied_index();
  status_.snapshot_index = s.compaction_index;
}

NodeStatus Node::status() const {
  std::lock_guard lock(status_mu_);
  return status_;
}

TransportStats Node::transport_stats() const {
  return transport_ ? transport_->stats() : TransportStats{};
}

std::string Node::address_of(NodeId id) const {
  auto it = opt_.replicas.find(id);
  return it == opt_.replicas.end() ? std::string() : it->second;
}

void Node::post(std::function<void()> fn) {
  post_unless_stopped(std::move(fn));
}

void Node::propose(std::string payload, std::function<void(ProposeResult)> done) {
  auto shared = std::make_shared<std::function<void(ProposeResult)>>(std::move(done));
  const bool posted = post_unless_stopped([this, payload = std::move(payload), shared]() mutable {
    exec_->propose(std::move(payload), std::move(*shared));
    after_step();
  });
  if (!posted) (*shared)(ProposeResult{ProposeResult::Outcome::stopped, 0, {}, std::nullopt});
}

void Node::read_index(std::function<void(Result<Slot>)> done) {
  auto shared = std::make_shared<std::function<void(Result<Slot>)>>(std::move(done));
  const bool posted = post_unless_stopped([this, shared] {
    exec_->read_index(std::move(*shared));
    after_step();
  });
  if (!posted) (*shared)(error(Code::closed, "replica stopped"));
}

void Node::wait_applied(Slot slot, std::function<void(Status)> done) {
  auto shared = std::make_shared<std::function<void(Status)>>(std::move(done));
  const bool posted =
      post_unless_stopped([this, slot, shared] { exec_->wait_applied(slot, std::move(*shared)); });
  if (!posted) (*shared)(error(Code::closed, "replica stopped"));
}

}  // namespace dtx::consensus
