// Node: one replica of the coordinator group, running the Multi-Paxos core
// (core/replica.h) through the Executor (executor.h) on an event loop with
// real time, durable storage (storage.h) and the TCP transport
// (transport.h).
//
// What the application (the coordinator's transaction table) gets:
//   - propose(bytes) resolves exactly once. Once queued, it resolves as
//     applied (with the slot it landed in; the apply callback saw the
//     command first) or unknown, never "failed" (P7): after a leader change
//     the next leader may still choose it, so commands must be idempotent
//     (carry a client id and sequence). Every other outcome means it was
//     never queued: not_leader (with the leader, if known), not_serving (this
//     replica leads but has not applied its barrier yet; retry in a few
//     milliseconds), too_large (payload above command_bytes_max()), busy,
//     and stopped. A command's identity (CommandId: the leader's ballot and
//     a sequence number) is unique across restarts (P10), so a proposal
//     resolves as applied only for its own command.
//   - apply(AppliedEntry), for every entry of every chosen slot, in slot
//     order, on every replica alike: each command, and each leader's
//     barrier as a term_start (its ballot; ballot.node is the leader), so a
//     state machine can act on "a new term started at slot s"
//     deterministically everywhere, not only on the leader. Exactly once per
//     process lifetime: after a restart, from the snapshot on. A term_start
//     whose ballot is not above the highest one applied so far is stale
//     (see AppliedEntry) and must be ignored; keep that ballot in the
//     snapshot.
//   - on_leader(ballot, barrier_slot) once this replica leads and has
//     applied its barrier (T1: it may serve from then on; the term_start of
//     that barrier was applied just before), and on_leadership_lost().
//   - read_index(): a linearizable read point (P5) that resolves once the
//     local state machine has applied up to it.
//   - wait_applied(slot): resolves once the local state machine applied it.
//   - snapshot hooks: the node asks for a snapshot every
//     snapshot_every_slots applied slots; the application hands back a
//     serializer that runs off the loop (P6); restore() loads one.
//   - status(): role, leader, ballot, commit and applied index.
//   - stop(): every pending propose resolves with stopped, every pending
//     read_index and wait_applied with Code::closed; so does any call made
//     after stop().
//
// Threading: the public methods may be called from any thread (not from
// inside a callback while stop() waits for the loop). Every callback
// (apply, restore, on_leader, on_leadership_lost, snapshot, and the `done`
// of propose, read_index and wait_applied) runs on the node's loop thread,
// one at a time, and must not block: the same thread sends heartbeats and
// counts votes, and a callback that blocks for an election timeout costs
// the leadership. restore() runs on the loop thread too, also the one at
// start, before start() returns and before any other callback. The only
// exception: a call made after stop() runs its `done` at once on the
// calling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/status.h"
#include "consensus/core/replica.h"
#include "consensus/event_loop.h"
#include "consensus/executor.h"
#include "consensus/storage.h"
#include "consensus/transport.h"

namespace dtx::consensus {

struct NodeOptions {
  uint64_t cluster_id = 0;
  NodeId self = 0;
  std::map<NodeId, std::string> replicas;  // every member, self included: id -> host:port
  std::string listen;                      // defaults to replicas[self]
  std::string data_dir;
  bool bootstrap = false;
  std::string secret;  // cluster secret, >= 16 bytes
  int tick_ms = 10;
  uint32_t heartbeat_ticks = 2;
  uint32_t election_ticks = 30;  // 300-600 ms with 10 ms ticks
  uint64_t snapshot_every_slots = 20000;
  Config tuning;  // window, batch and catch-up limits (self, members, seed are filled in)
  FileSystem* fs = nullptr;
  // A follower's persist that finds the write-ahead log idle is written and
  // fdatasync'd on the loop thread itself (the loop blocks for that one
  // sync) instead of being handed to the log's flusher thread and the
  // completion posted back: two thread wake-ups off the path of every 2b.
  // A leader does the same only when the persist is all it has to do (one
  // slot open, nothing queued): at 1 client, not under load.
  bool sync_on_loop = true;
};

struct NodeStatus {
  NodeId self = 0;
  Role role = Role::follower;
  bool serving = false;
  std::optional<NodeId> leader;
  Ballot ballot;
  Ballot promised;
  Slot commit_index = 0;
  Slot applied_index = 0;
  Slot snapshot_index = 0;
  // The Paxos log's fdatasync calls and the time spent in them (counters
  // since start): their ratio is the mean fsync latency.
  uint64_t log_syncs = 0;
  uint64_t log_sync_ns = 0;
};

struct NodeCallbacks {
  // Each applied entry (command or term start), in slot order.
  std::function<void(const AppliedEntry& entry)> apply;
  std::function<void(Ballot ballot, Slot barrier_slot)> on_leader;
  std::function<void()> on_leadership_lost;
  // Called at an applied index; returns a serializer that the node runs on
  // another thread. Must capture an immutable view of the state.
  std::function<std::function<std::string()>()> snapshot;
  // Replaces the state machine with a snapshot taken at applied index
  // `index`: at start (from disk) and when one is installed from a peer.
  std::function<void(Slot index, const std::string& data)> restore;
};

class Node final : private ExecutorIo {
 public:
  static Result<std::unique_ptr<Node>> start(NodeOptions options, NodeCallbacks callbacks);
  ~Node() override;  // stop()

  void propose(std::string payload, std::function<void(ProposeResult)> done);
  void read_index(std::function<void(Result<Slot>)> done);
  void wait_applied(Slot slot, std::function<void(Status)> done);
  // Runs fn on the loop thread (the application's executor); dropped after
  // stop().
  void post(std::function<void()> fn);
  // The largest payload propose() takes; larger ones resolve too_large.
  // Fixed for the node's lifetime (Config::command_bytes_max(): about
  // 1 MiB with the default batch_bytes_max).
  size_t command_bytes_max() const { return command_bytes_max_; }
  NodeStatus status() const;
  TransportStats transport_stats() const;
  std::string address_of(NodeId id) const;
  void stop();

 private:
  explicit Node(NodeOptions o, NodeCallbacks c);
  Status start_on_loop(const Config& cfg, Recovered rec);
  // Posts fn to the loop unless stopped; false if stopped.
  bool post_unless_stopped(std::function<void()> fn);
  void after_step();
  void on_tick();
  void maybe_snapshot();
  void publish_status();
  // ExecutorIo.
  void send(const Message& m) override;
  void persist(const Ready& ready) override;

  NodeOptions opt_;
  NodeCallbacks cb_;
  size_t command_bytes_max_ = 0;
  EventLoop loop_;
  std::unique_ptr<PaxosStorage> storage_;
  std::unique_ptr<Executor> exec_;
  std::unique_ptr<Transport> transport_;
  struct TickTimer;
  std::unique_ptr<TickTimer> ticker_;

  // Loop thread only.
  Slot last_snapshot_ = 0;
  bool snapshot_running_ = false;
  bool stopping_ = false;
  std::thread snapshot_thread_;

  mutable std::mutex status_mu_;
  NodeStatus status_;
  std::mutex stop_mu_;
  bool stopped_ = false;  // guarded by stop_mu_
  bool running_ = false;  // the loop was started
};

}  // namespace dtx::consensus
