// Replica: one member of dtx's Multi-Paxos group, as a pure state machine.
//
// It does no I/O, reads no clock and draws no randomness of its own (its
// election jitter comes from a generator seeded by Config::seed). It is fed
// tick(), step(message), propose(), read_index(), on_persisted() and
// on_snapshot(), and hands back a Ready: what to persist, what to send
// (now, or only once the persist is durable), chosen values to apply in
// slot order, and leadership and read events. consensus::Executor
// (executor.h) carries a Ready out in the one order every shell uses.
//
// Protocol (docs/consensus.md; rules P1-P10 of CORRECTNESS.md):
//   - Every replica is proposer, acceptor and learner. A stable leader runs
//     phase 1 once for all open slots, then phase 2 per slot with a window
//     of slots in flight and many commands batched into one slot.
//   - Election (P9): a follower that hears from no leader for a randomized
//     timeout (election_ticks..2*election_ticks) first asks for a pre-vote:
//     would a majority promise it? A replica grants one only if it heard
//     from no leader for prevote_quiet_ticks() itself, and a leader never
//     does, and nobody raises a promise for it. Only with a majority of
//     grants does it campaign with a ballot (a round above every round it
//     has seen, itself). So a replica that restarts or heals from a
//     partition cannot depose a leader that a majority still hears.
//   - Phase 1 (P1): 1a carries the candidate's first unchosen slot; each 1b
//     carries the acceptor's compaction and commit index and every value it
//     accepted above them. With a majority of promises, the new leader first
//     catches up to the highest commit index in the quorum (fetching chosen
//     values or a snapshot), then re-proposes under its own ballot the
//     highest-ballot value for every slot up to the highest slot reported,
//     no-ops only for true holes, then a barrier of its own ballot. It serves
//     (Ready::serving) once the barrier is applied, and only then accepts
//     proposals (P10).
//   - Phase 2: acceptors accept if the ballot is at least their promise,
//     raising the promise durably when it is higher (implicit promise, P3);
//     a 2b leaves only after the acceptance is durable. 2b votes are counted
//     per distinct acceptor per (slot, ballot); the leader's own vote counts
//     once its own write is durable (P2).
//   - Learning (P2): a follower marks slot s chosen from the leader's commit
//     index only if its accepted ballot for s equals that leader's ballot;
//     otherwise it fetches the chosen value, in bounded batches.
//   - Check-quorum (P5): a leader that hears from no majority for an election
//     timeout steps down. Reads use read-index: a heartbeat round acked by a
//     majority confirms leadership; no clock assumption.
//   - Snapshots (P6): the application snapshots at an applied index and
//     reports it (on_snapshot); the log below is dropped. A replica that
//     needs compacted slots pulls the snapshot in resumable chunks.
//   - Commands (P7, P10): each queued command gets a CommandId (the leader's
//     ballot and a sequence number in it), unique across restarts; a payload
//     larger than Config::command_bytes_max() is refused at propose, never
//     put in a slot (a value the log cannot store would stop every replica).
//
// Threading: single-threaded; the owner serialises every call.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "consensus/core/messages.h"
#include "consensus/core/types.h"

namespace dtx::consensus {

// Mistakes the simulator must be able to catch (CORRECTNESS.md, P8). All
// false outside tests/sim.
struct PlantedBugs {
  bool forget_promise = false;  // promises are never persisted
  bool forget_implicit_promise =
      false;                          // a 2a with a higher ballot raises the promise in memory only
  bool apply_stale_accepted = false;  // learn chosen from the commit index whatever the ballot
  bool noop_over_compacted = false;   // a new leader fills no-ops without catching up first
  bool count_duplicate_2b = false;    // count 2b messages, not distinct acceptors
  bool no_pre_vote = false;           // campaign at once on a timeout (P9)
  bool propose_before_serving = false;   // queue proposals before the barrier is applied (P10)
  bool command_ids_per_process = false;  // command ids restart in every process (P10)
  bool any() const {
    return forget_promise || forget_implicit_promise || apply_stale_accepted ||
           noop_over_compacted || count_duplicate_2b || no_pre_vote || propose_before_serving ||
           command_ids_per_process;
  }
};

struct Config {
  uint64_t cluster_id = 0;
  NodeId self = 0;
  std::vector<NodeId> members;  // every replica, self included; 3 or 5; same on all
  uint32_t heartbeat_ticks = 1;
  uint32_t election_ticks = 10;  // base election timeout
  uint64_t seed = 1;             // election jitter
  // Slots proposed but not yet chosen, at most. Each slot carries a batch of
  // every command queued when it opens, so a small window makes big batches
  // (4 measured best on loopback); raise it for links with long round trips.
  uint32_t window_slots = 4;
  // Thrifty phase 2: once serving, the leader sends a new slot's 2a only to
  // the followers that make a majority with it fastest (those that voted
  // most recently and were heard from in the last two heartbeats); the
  // others learn it by catch-up from the commit index. Fewer concurrent
  // fsyncs per slot on shared disks. A slot still open a tick later goes to
  // every acceptor that has not voted.
  bool thrifty = true;
  size_t batch_bytes_max = 1 << 20;
  uint32_t batch_commands_max = 4096;
  uint32_t pending_commands_max = 1 << 16;  // queued proposals; beyond: busy
  uint32_t catchup_entries_max = 512;       // per Fetch
  size_t catchup_bytes_max = 4 << 20;
  size_t snapshot_chunk_bytes = 1 << 20;
  PlantedBugs bugs;

  // The largest command payload propose() takes: one command alone must fit
  // a slot's batch (and the shell's log record must hold a batch).
  size_t command_bytes_max() const {
    return batch_bytes_max - kValueHeaderBytes - kCommandHeaderBytes;
  }
  // A replica grants a pre-vote only if it heard from no leader for this many
  // ticks: several heartbeats, well below the election timeout.
  uint32_t prevote_quiet_ticks() const {
    return election_ticks / 2 > 2 * heartbeat_ticks ? election_ticks / 2 : 2 * heartbeat_ticks + 1;
  }
};

Status validate(const Config& c);

// A durable log record, as the shell stores and replays it.
struct LogRecord {
  enum class Kind : uint8_t { accept = 1, chosen = 2, commit = 3 };
  Kind kind = Kind::accept;
  Slot slot = 0;  // accept/chosen: the slot; commit: the commit index
  Ballot ballot;  // accept
  Bytes value;    // accept/chosen
};

// What a restarting replica finds on disk.
struct Recovered {
  Ballot promised;
  Slot snapshot_index = 0;
  Bytes snapshot;                  // the state machine image at snapshot_index
  std::vector<LogRecord> records;  // in the order they were written
};

struct Ready {
  // Non-zero when something must be made durable: promise, records and
  // install. Call on_persisted(persist_id) once it is.
  uint64_t persist_id = 0;
  std::optional<Ballot> promise;  // write the vote file
  std::vector<LogRecord> records;
  struct Install {
    Slot index = 0;
    Bytes data;
  };
  // Load into the state machine before `apply`, and persist as the snapshot.
  std::optional<Install> install;
  std::vector<Message> send;                // send now
  std::vector<Message> send_after_persist;  // send once this persist (and those before) are durable
  struct Applied {
    Slot slot = 0;
    Bytes value;  // encoded Value
  };
  std::vector<Applied> apply;  // chosen, in slot order, each once
  // The leader's barrier was applied: it serves from here (T1: a new leader
  // serves only after applying a barrier of its own ballot).
  std::optional<std::pair<Ballot, Slot>> serving;
  bool lost_leadership = false;  // stopped being leader (or candidate that had proposed)
  std::vector<std::pair<uint64_t, Slot>> reads_ready;  // read id, read index
  std::vector<uint64_t> reads_failed;

  bool empty() const;
  bool needs_persist() const { return persist_id != 0; }
};

enum class Role { follower, candidate, leader };
const char* role_name(Role r);

struct ReplicaStatus {
  Role role = Role::follower;
  Ballot promised;
  Ballot ballot;                 // as leader or candidate
  std::optional<NodeId> leader;  // the leader this replica follows (or itself)
  bool serving = false;
  Slot commit_index = 0;
  Slot applied_index = 0;
  Slot compaction_index = 0;
  Slot last_slot = 0;  // highest slot in the log
  size_t pending_commands = 0;
  bool pre_voting = false;  // asking for pre-votes
};

class Replica {
 public:
  Replica(Config config, Recovered recovered);

  void tick();
  void step(const Message& m);
  // Serving leader only: queues a command for the next slot and returns its
  // identity. Errors, all meaning it was never queued:
  //   failed_precondition  not the leader (status().leader names it, if known)
  //   unavailable          the leader, but its barrier is not applied yet (P10)
  //   invalid_argument     payload larger than Config::command_bytes_max()
  //   busy                 pending_commands_max commands already queued
  Result<CommandId> propose(std::string payload);
  // Leader only: confirm leadership with a heartbeat round, then report
  // (id, commit index) in Ready::reads_ready.
  Status read_index(uint64_t id);
  void on_persisted(uint64_t persist_id);
  // The application saved a snapshot of its state at applied index `index`.
  void on_snapshot(Slot index, Bytes data);

  bool has_ready() const;
  Ready take_ready();

  ReplicaStatus status() const;
  const Config& config() const { return cfg_; }
  size_t quorum() const { return cfg_.members.size() / 2 + 1; }
  // Checks internal invariants (and remembers the promise, which must never
  // go back); the simulator runs it after every step.
  Status check_invariants();

 private:
  struct SlotState {
    Ballot accepted;  // zero: not accepted here (learned chosen only)
    Bytes value;
    bool chosen = false;
    uint64_t proposed_tick = 0;  // leader: when it proposed this slot in its ballot
  };
  struct Candidacy {
    std::map<NodeId, Phase1b> promises;
    Slot catch_up_to = 0;  // highest commit index in the quorum
    NodeId catch_up_from = 0;
    bool quorum_reached = false;
  };
  struct PendingPersist {
    uint64_t id = 0;
    Ballot vote_ballot;  // own 2b for these slots
    std::vector<Slot> vote_slots;
    bool own_promise = false;  // own 1b for ballot_ becomes countable
  };
  struct PendingRead {
    uint64_t id = 0;
    Slot index = 0;
    uint64_t round = 0;
  };

  // Acceptor.
  void on_phase1a(const Message& m, const Phase1a& p);
  void on_phase2a(const Message& m, const Phase2a& p);
  void raise_promise(const Ballot& b, bool implicit);
  Phase1b make_phase1b(Slot first_unchosen) const;
  // Learner.
  void learn_commit(Slot commit, const Ballot& leader_ballot, NodeId leader);
  void mark_chosen(Slot s, Bytes value, bool record);
  void advance_commit();
  void maybe_apply();
  void maybe_fetch(NodeId from, Slot upto);
  void retry_catch_up();
  void on_fetch(const Message& m, const Fetch& p);
  void on_fetch_reply(const Message& m, const FetchReply& p);
  void on_snapshot_fetch(const Message& m, const SnapshotFetch& p);
  void on_snapshot_chunk(const Message& m, const SnapshotChunk& p);
  // Proposer.
  void start_election();
  void on_pre_vote(const Message& m, const PreVote& p);
  void on_pre_vote_reply(const Message& m, const PreVoteReply& p);
  void campaign();
  void on_phase1b(const Message& m, const Phase1b& p);
  void maybe_finish_phase1();
  void on_phase2b(const Message& m, const Phase2b& p);
  void on_nack(const Message& m, const Nack& p);
  void on_heartbeat(const Message& m, const Heartbeat& p);
  void on_heartbeat_ack(const Message& m, const HeartbeatAck& p);
  void propose_slot(Slot s, Bytes value);
  void maybe_propose();
  void send_heartbeats();
  void retransmit_phase2a();
  std::vector<NodeId> phase2a_targets() const;
  void step_down(const Ballot& seen);
  void follow(const Ballot& b, NodeId leader);
  void note_round(const Ballot& b);

  void send(NodeId to, Payload p, const Ballot& b);
  void send_after_persist(NodeId to, Payload p, const Ballot& b);
  void add_record(LogRecord r);
  uint64_t reset_election_timeout();
  uint64_t next_random();

  Config cfg_;
  uint64_t rng_;

  // Acceptor state.
  Ballot promised_;
  std::map<Slot, SlotState> log_;  // slots above compaction_index_
  Slot compaction_index_ = 0;
  Bytes snapshot_;
  Slot commit_index_ = 0;
  Slot applied_index_ = 0;
  Slot commit_mark_ = 0;  // highest commit index written as a record

  // Roles.
  Role role_ = Role::follower;
  Ballot ballot_;  // own ballot as candidate or leader
  uint64_t max_round_seen_ = 0;
  std::optional<NodeId> leader_;
  Ballot leader_ballot_;
  bool serving_ = false;
  Slot barrier_slot_ = 0;
  uint64_t ticks_ = 0;
  uint64_t last_leader_contact_tick_ = 0;
  uint64_t election_timeout_ticks_ = 0;
  uint64_t election_started_tick_ = 0;
  Candidacy candidacy_;
  struct PreVoting {
    bool active = false;
    Ballot ballot;  // the ballot this replica would campaign with
    std::set<NodeId> grants;
    uint64_t started_tick = 0;
  };
  PreVoting prevote_;

  // Leader state.
  Slot next_slot_ = 1;
  std::map<Slot, std::set<NodeId>> votes_;  // for ballot_
  std::map<Slot, uint32_t> vote_counts_;    // planted bug count_duplicate_2b
  std::deque<Command> pending_;
  uint64_t next_seq_ = 1;     // within ballot_
  uint64_t process_seq_ = 1;  // planted bug command_ids_per_process
  std::map<NodeId, uint64_t> last_heard_tick_;
  std::map<NodeId, uint64_t> last_vote_order_;  // thrifty: who voted most recently
  uint64_t vote_order_ = 0;
  uint64_t heartbeat_round_ = 0;
  std::map<uint64_t, std::set<NodeId>> round_acks_;
  std::vector<PendingRead> reads_;
  std::vector<SlotValue> outgoing_2a_;  // entries for this Ready's Phase2a

  // Catch-up.
  Slot leader_commit_ = 0;  // highest commit index heard from a leader
  uint64_t fetch_sent_tick_ = 0;
  bool fetch_outstanding_ = false;
  struct IncomingSnapshot {
    Slot index = 0;
    uint64_t total = 0;
    std::string data;
    NodeId from = 0;
    int retries = 0;
  };
  std::optional<IncomingSnapshot> incoming_;

  // Persistence.
  Ready ready_;
  uint64_t next_persist_id_ = 1;
  bool persist_open_ = false;  // ready_ already has persistent content
  PendingPersist persist_now_;
  std::deque<PendingPersist> in_flight_;

  // Invariant tracking.
  Ballot last_promised_seen_;
  Slot checked_commit_ = 0;
  std::map<Slot, uint64_t> chosen_digest_;
};

}  // namespace dtx::consensus
