// Executor: carries out a Replica's Ready, in the one order every shell
// uses, and turns the core's events into the application's callbacks and
// the outcomes of its proposals. consensus::Node (real time, disk and TCP)
// and the simulator's SimPaxosNode (tests/sim) both drive their Replica
// through it, so the ordering rules the simulator checks are the ones the
// node runs.
//
// For each Ready, in this order:
//   1. install: the state machine is replaced by the snapshot (restore)
//      before anything above it is applied;
//   2. apply: every chosen slot in slot order, each command or term start as
//      an AppliedEntry; a command this replica proposed resolves as applied
//      right after its entry was applied; then wait_applied and read_index
//      waiters whose slot is applied;
//   3. leadership: serving -> on_leader; lost leadership -> every queued
//      proposal resolves as unknown (P7: the next leader may still choose
//      it), then on_leadership_lost; failed and confirmed reads;
//   4. send: the messages that need no persist;
//   5. persist: handed to the I/O (ExecutorIo::persist); the messages that
//      must wait for it (every 1b and 2b, P3) are held and sent only once
//      the I/O reports it durable (on_persisted), in persist order, and only
//      then does the core learn that it is durable.
//
// Re-entrancy: a callback may call propose(), read_index(), wait_applied()
// or stop() on its own executor; the I/O may report a persist durable from
// inside persist(). Both are queued and handled by the drain in progress.
//
// Threading: none of its own. The owner serialises every call (Node: its
// loop thread; the simulator: its single thread), and every callback runs
// on that thread, from inside one of the calls.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "consensus/core/replica.h"

namespace dtx::consensus {

// What happened to a proposal. applied and unknown are the outcomes of a
// proposal that was queued (P7); every other outcome means it was never
// queued and can never be chosen.
struct ProposeResult {
  enum class Outcome {
    applied,      // chosen and applied at `slot` (the apply callback saw it first)
    unknown,      // queued, then leadership changed: the next leader may still choose it
    not_leader,   // this replica does not lead; `leader` names who does, if known
    not_serving,  // this replica leads but has not applied its barrier yet: retry shortly
    too_large,    // payload above command_bytes_max(): refused, never sent
    busy,         // proposal queue full
    stopped,      // the node stopped; for a queued proposal, whether it applies is unknown
  };
  Outcome outcome = Outcome::unknown;
  Slot slot = 0;                 // applied: where
  CommandId id;                  // applied, unknown: the command's identity
  std::optional<NodeId> leader;  // not_leader: who leads, if known
};
const char* outcome_name(ProposeResult::Outcome o);

// One entry of the applied stream, in slot order on every replica alike.
// Several commands may share a slot (a batch): they come in batch order.
// No-ops are not reported.
struct AppliedEntry {
  enum class Kind : uint8_t {
    command,     // a client command
    term_start,  // a leader's barrier: from this slot on, `ballot` leads
  };
  Kind kind = Kind::command;
  Slot slot = 0;
  // kind == command: valid during the callback only.
  const Command* command = nullptr;
  // kind == term_start: the new leader's ballot (ballot.node is the leader).
  // A barrier of an older ballot can still be chosen after a newer one's (a
  // later leader re-proposes what it found accepted), so a state machine
  // keeps the highest ballot it applied (in its snapshots too) and treats a
  // term_start at or below it as stale.
  Ballot ballot;

  NodeId leader() const { return ballot.node; }
  std::string describe() const;
};

struct ExecutorCallbacks {
  // Each applied entry, in slot order. Must not block.
  std::function<void(const AppliedEntry&)> apply;
  // Replace the state machine with a snapshot taken at applied index
  // `index` (installed from a peer). Must not block for long.
  std::function<void(Slot index, const std::string& data)> restore;
  // This replica leads with `ballot` and applied its barrier at `slot`: it
  // serves from here (T1).
  std::function<void(Ballot ballot, Slot barrier_slot)> on_leader;
  std::function<void()> on_leadership_lost;
  // Observers for tests and the simulator's oracle: every chosen slot's
  // encoded value as it is applied, every snapshot installed.
  std::function<void(Slot slot, const Bytes& value)> on_applied_value;
};

// The side effects an executor asks of its shell.
class ExecutorIo {
 public:
  virtual ~ExecutorIo() = default;
  // Best effort; Paxos retransmits what matters.
  virtual void send(const Message& m) = 0;
  // Make ready.promise, ready.install and ready.records durable, after
  // everything persisted before, then call Executor::on_persisted(
  // ready.persist_id) on the executor's thread (possibly from inside this
  // call). Completions must come in persist order.
  virtual void persist(const Ready& ready) = 0;
};

class Executor {
 public:
  using ProposeCallback = std::function<void(ProposeResult)>;
  using ReadCallback = std::function<void(Result<Slot>)>;
  using WaitCallback = std::function<void(Status)>;

  // `applied_index` is the index of the snapshot the state machine was
  // restored from (0 if none).
  Executor(std::unique_ptr<Replica> core, ExecutorIo& io, ExecutorCallbacks callbacks,
           Slot applied_index);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Carries out whatever the core has ready: once after construction (a
  // restart can apply at once), and after calling the core directly.
  void process();
  void tick();
  void step(const Message& m);
  // Several messages that arrived together: stepped in order, then carried
  // out at once (one persist for all the acceptances among them).
  void step_all(const std::vector<Message>& messages);
  // Queues a command; `done` runs exactly once: at once for a refusal,
  // later with applied, unknown or stopped.
  void propose(std::string payload, ProposeCallback done);
  // A linearizable read point (P5): resolves with the commit index a
  // heartbeat round confirmed, once it is applied here. Errors:
  // failed_precondition (not the serving leader), unavailable (leadership
  // lost before it was confirmed), closed (stopped).
  void read_index(ReadCallback done);
  // Runs done(ok) once `slot` is applied here, or done(closed) on stop.
  void wait_applied(Slot slot, WaitCallback done);
  // The I/O made persist `persist_id` (and every earlier one) durable.
  void on_persisted(uint64_t persist_id);
  // The shell saved a snapshot of the state machine at applied index
  // `index`; the core drops its log below.
  void on_snapshot(Slot index, Bytes data);
  // Resolves every pending proposal (stopped), read and wait (closed), and
  // ignores every later input except propose/read_index/wait_applied,
  // which resolve at once the same way. Idempotent.
  void stop();

  bool stopped() const { return stopped_; }
  Slot applied_index() const { return applied_; }
  size_t command_bytes_max() const { return core_->config().command_bytes_max(); }
  size_t pending_proposals() const { return proposals_.size(); }
  const Replica& core() const { return *core_; }
  Replica& core() { return *core_; }

 private:
  void drain();
  void handle(Ready r);
  void apply_value(Slot slot, const Bytes& value);
  void release_waiters();
  void deliver_persisted();
  void fail_proposals(ProposeResult::Outcome outcome);

  std::unique_ptr<Replica> core_;
  ExecutorIo& io_;
  ExecutorCallbacks cb_;
  Slot applied_ = 0;
  bool draining_ = false;
  bool stopped_ = false;

  std::map<CommandId, ProposeCallback> proposals_;
  std::map<uint64_t, ReadCallback> reads_;
  std::multimap<Slot, WaitCallback> waiters_;
  uint64_t next_read_id_ = 1;

  struct InFlight {
    uint64_t id = 0;
    std::vector<Message> after;  // sent once durable
  };
  std::deque<InFlight> in_flight_;
  uint64_t durable_id_ = 0;  // highest persist reported durable
};

}  // namespace dtx::consensus
