// SimPaxosNode and SimPaxosGroup: Multi-Paxos replicas inside a
// deterministic simulation, to embed in any simulation that needs a
// replicated log (the Paxos simulator in paxos_sim.cc, and the commit
// simulation, which runs coordinator cores on top of them).
//
// A SimPaxosNode is one replica on one simulated machine: the real
// consensus::Replica driven through the real consensus::Executor (the one
// consensus::Node uses, so the shell's ordering rules are the ones checked
// here), its durable state in SimPaxosStorage on its own SimDisk, its
// messages on a SimNetwork, its ticks on the EventQueue with its machine's
// clock drift. The application plugs in through SimPaxosHooks: apply and
// restore (the state machine), snapshot, leadership events, and observers
// for oracles. Everything runs on the simulation's one thread; every hook
// is called from inside an event.
//
// Use (a group of three with a state machine per replica):
//   EventQueue q;
//   Rng root(seed);
//   SimNetwork net(q, root.derive("network"), *fault_mix("default"));
//   SimPaxosGroupOptions go;            // 3 replicas on endpoints 0..2
//   SimPaxosGroup group(q, net, root.derive("paxos"), go, [&](int i) {
//     SimPaxosHooks h;
//     h.apply = [&, i](const consensus::AppliedEntry& e) { machines[i].apply(e); };
//     h.restore = [&, i](consensus::Slot s, const std::string& d) { machines[i].load(s, d); };
//     h.snapshot = [&, i](consensus::Slot) { return machines[i].image(); };
//     return h;
//   });
//   group.start();
//   ... group.node(i).propose(bytes, [](consensus::ProposeResult r) { ... });
//   ... group.node(i).crash();  q.after(50'000, [&] { group.node(i).start(false); });
//   while (q.run_next(end)) { ...checks... }
// The commit simulation puts its coordinator core for replica i on endpoint
// go.endpoint_base + i (the same machine) and crashes both together.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "consensus/core/replica.h"
#include "consensus/executor.h"
#include "tests/sim/sim_disk.h"
#include "tests/sim/sim_events.h"
#include "tests/sim/sim_network.h"
#include "tests/sim/sim_paxos_storage.h"
#include "tests/sim/sim_rng.h"

namespace dtx::sim {

// A ballot as a SimNetwork message generation (ordered like ballots).
inline uint64_t ballot_generation(const consensus::Ballot& b) {
  return (b.round << 16) | (b.node & 0xffff);
}

struct SimPaxosHooks {
  // The state machine: each applied entry, in slot order.
  std::function<void(const consensus::AppliedEntry&)> apply;
  // Replace the state machine: at every start with the snapshot on disk, or
  // with (0, "") for a fresh state machine; and on a snapshot installed from
  // a peer.
  std::function<void(consensus::Slot index, const std::string& data)> restore;
  // The state machine's image at applied index `index` (a local snapshot).
  std::function<std::string(consensus::Slot index)> snapshot;
  std::function<void(consensus::Ballot ballot, consensus::Slot barrier_slot)> on_leader;
  std::function<void()> on_leadership_lost;
  // Observers for oracles and traces.
  std::function<void(consensus::Slot, const consensus::Bytes&)> on_applied_value;
  // An accept record became durable (its sync completed, or it survived a
  // crash and was read back at restart).
  std::function<void(const consensus::LogRecord&)> on_durable_accept;
  // A persist became durable: its records, and the promise it wrote, if any.
  std::function<void(const std::vector<consensus::LogRecord>& records,
                     std::optional<consensus::Ballot> promise)>
      on_persisted;
  // Every message this replica sends.
  std::function<void(const consensus::Message&)> on_send;
  // The disk failed under the replica (a simulator bug, or a fault the
  // simulation did not expect).
  std::function<void(const Status&)> on_fatal;
};

struct SimPaxosNodeOptions {
  // self, members, cluster_id, timing, limits, planted bugs; the election
  // seed is drawn per incarnation.
  consensus::Config config;
  SimTime tick_us = 10 * kSimMs;
  double drift = 0;  // the machine's clock runs 1+drift times slower
  int endpoint = 0;  // its address on the SimNetwork
  std::string dir = "/paxos";
};

class SimPaxosNode {
 public:
  using PeerLookup = std::function<SimPaxosNode*(consensus::NodeId)>;

  SimPaxosNode(EventQueue& queue, SimNetwork& net, SimPaxosNodeOptions options, SimPaxosHooks hooks,
               Rng rng);
  ~SimPaxosNode();

  void set_peers(PeerLookup peers) { peers_ = std::move(peers); }
  // Recovers from the disk and starts ticking. Fails (and stays down) on a
  // disk without IDENTITY unless bootstrap: P4.
  Status start(bool bootstrap);
  // Power cut: every pending callback resolves (propose: stopped; reads and
  // waits: closed), unsynced writes are lost as the disk decides.
  void crash();
  // The machine's disk is replaced by an empty one (call while down).
  void wipe_disk() { disk_.wipe(); }
  // The machine freezes until `t`: no ticks, no deliveries, no disk
  // completions until then (they happen late, in order).
  void pause_until(SimTime t) { paused_until_ = std::max(paused_until_, t); }

  void deliver(const consensus::Message& m);
  void propose(std::string payload, consensus::Executor::ProposeCallback done);
  void read_index(consensus::Executor::ReadCallback done);
  void wait_applied(consensus::Slot slot, consensus::Executor::WaitCallback done);
  // Takes a local snapshot at the applied index now; it is durable (and the
  // log truncated below it) after write_us.
  void snapshot_now(SimTime write_us);

  bool up() const { return exec_ != nullptr; }
  bool paused() const { return paused_until_ > q_.now(); }
  uint64_t incarnation() const { return incarnation_; }
  consensus::NodeId id() const { return opt_.config.self; }
  int endpoint() const { return opt_.endpoint; }
  // Only while up.
  consensus::Executor& executor() { return *exec_; }
  const consensus::Replica& core() const { return exec_->core(); }
  consensus::Replica& core() { return exec_->core(); }
  SimDisk& disk() { return disk_; }
  const SimPaxosStorage* storage() const { return storage_.get(); }
  uint64_t snapshots_saved() const { return snapshots_; }
  uint64_t installs() const { return installs_; }

 private:
  class Io;
  // Runs fn after `delay` of this machine's clock, in this incarnation,
  // after any pause.
  void later(SimTime delay, std::function<void()> fn, uint64_t tag);
  void run_when_awake(uint64_t inc, std::function<void()> fn);
  void tick();
  void send(const consensus::Message& m);
  void persist(const consensus::Ready& r);
  void fatal(const Status& s);
  SimTime local(SimTime delay) const {
    return static_cast<SimTime>(static_cast<double>(delay) * (1.0 + opt_.drift));
  }

  EventQueue& q_;
  SimNetwork& net_;
  SimPaxosNodeOptions opt_;
  SimPaxosHooks hooks_;
  Rng rng_;
  SimDisk disk_;
  PeerLookup peers_;
  std::unique_ptr<Io> io_;
  std::unique_ptr<SimPaxosStorage> storage_;
  std::unique_ptr<consensus::Executor> exec_;
  uint64_t incarnation_ = 0;
  SimTime paused_until_ = 0;
  bool snapshot_running_ = false;
  uint64_t snapshots_ = 0;
  uint64_t installs_ = 0;
};

struct SimPaxosGroupOptions {
  int replicas = 3;  // 3 or 5; NodeIds 1..replicas
  uint64_t cluster_id = 7;
  int endpoint_base = 0;     // replica with NodeId k is endpoint endpoint_base + k - 1
  consensus::Config config;  // timing and limits for all (self, members, seed filled in)
  SimTime tick_us = 10 * kSimMs;
  double drift_max = 0.05;  // each machine's clock drift, uniform in +-drift_max
};

class SimPaxosGroup {
 public:
  using HooksFor = std::function<SimPaxosHooks(int index)>;

  SimPaxosGroup(EventQueue& queue, SimNetwork& net, Rng rng, SimPaxosGroupOptions options,
                HooksFor hooks);
  // Bootstraps and starts every replica.
  Status start();
  int size() const { return static_cast<int>(nodes_.size()); }
  // By index, 0..size()-1 (NodeId index + 1).
  SimPaxosNode& node(int index) { return *nodes_[index]; }
  SimPaxosNode* by_id(consensus::NodeId id);
  const std::vector<consensus::NodeId>& members() const { return members_; }
  // The index of the up replica that serves with the highest ballot, if any.
  std::optional<int> serving_leader() const;

 private:
  std::vector<consensus::NodeId> members_;
  std::vector<std::unique_ptr<SimPaxosNode>> nodes_;
};

}  // namespace dtx::sim
