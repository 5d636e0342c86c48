// Node: one replica of the coordinator group, running the Multi-Paxos core
// (core/replica.h) on an event loop with real time, durable storage
// (storage.h) and the TCP transport (transport.h).
//
// What the application (the coordinator's transaction table) gets:
//   - propose(bytes) resolves as applied (with the slot it landed in) or
//     unknown, never "failed" once queued (P7): after a leader change the
//     next leader may still choose it, so commands must be idempotent
//     (carry a client id and sequence). not_leader (with the leader, if
//     known) and busy mean it was never queued.
//   - an apply callback, on the loop thread, for every command of every
//     chosen slot in slot order, exactly once per process lifetime (after a
//     restart, from the snapshot on);
//   - on_leader(ballot, barrier_slot) once this replica leads and has
//     applied its barrier (T1: it may serve from then on), and
//     on_leadership_lost();
//   - read_index(): a linearizable read point (P5) that resolves once the
//     local state machine has applied up to it;
//   - snapshot hooks: the node asks for a snapshot every
//     snapshot_every_slots applied slots; the application hands back a
//     serializer that runs off the loop (P6); restore() loads one;
//   - status(): role, leader, ballot, commit and applied index.
//
// Threading: the public methods may be called from any thread; callbacks
// and completions run on the node's loop thread, one at a time.
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
};

struct ProposeResult {
  enum class Outcome { applied, unknown, not_leader, busy, stopped };
  Outcome outcome = Outcome::unknown;
  Slot slot = 0;                 // applied: where
  std::optional<NodeId> leader;  // not_leader: who leads, if known
};
const char* outcome_name(ProposeResult::Outcome o);

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
};

struct NodeCallbacks {
  std::function<void(Slot slot, const Command& command)> apply;
  std::function<void(Ballot ballot, Slot barrier_slot)> on_leader;
  std::function<void()> on_leadership_lost;
  // Called on the loop at an applied index; returns a serializer that the
  // node runs on another thread. Must capture an immutable view of the state.
  std::function<std::function<std::string()>()> snapshot;
  // Replaces the state machine with a snapshot (at start, or installed from
  // a peer), on the loop.
  std::function<void(Slot index, const std::string& data)> restore;
};

class Node {
 public:
  static Result<std::unique_ptr<Node>> start(NodeOptions options, NodeCallbacks callbacks);
  ~Node();  // stop()

  void propose(std::string payload, std::function<void(ProposeResult)> done);
  void read_index(std::function<void(Result<Slot>)> done);
  // Runs done once the local state machine applied `slot`.
  void wait_applied(Slot slot, std::function<void()> done);
  // Runs fn on the loop thread (the application's executor).
  void post(std::function<void()> fn);
  NodeStatus status() const;
  TransportStats transport_stats() const;
  std::string address_of(NodeId id) const;
  void stop();

 private:
  explicit Node(NodeOptions o, NodeCallbacks c);
  void drain();
  void on_tick();
  void handle(Ready r);
  void maybe_snapshot();
  void publish_status();
  void fail_pending(ProposeResult::Outcome outcome);

  NodeOptions opt_;
  NodeCallbacks cb_;
  EventLoop loop_;
  std::unique_ptr<PaxosStorage> storage_;
  std::unique_ptr<Replica> core_;
  std::unique_ptr<Transport> transport_;
  struct TickTimer;
  std::unique_ptr<TickTimer> ticker_;

  // Loop thread only.
  std::map<uint64_t, std::function<void(ProposeResult)>> proposals_;  // by command seq
  std::map<uint64_t, std::function<void(Result<Slot>)>> reads_;
  std::multimap<Slot, std::function<void()>> applied_waiters_;
  uint64_t next_read_id_ = 1;
  Slot applied_ = 0;
  Slot last_snapshot_ = 0;
  bool snapshot_running_ = false;
  bool stopping_ = false;
  std::thread snapshot_thread_;

  mutable std::mutex status_mu_;
  NodeStatus status_;
  std::atomic<bool> stopped_{false};
  bool running_ = false;  // the loop was started
};

}  // namespace dtx::consensus
