// PaxosSim: runs a group of Multi-Paxos replicas (SimPaxosGroup: the real
// consensus::Replica behind the real consensus::Executor, on simulated
// disks) in one process on a simulated network and clocks, from one seed,
// and checks safety after every event and liveness at the end. Its parts
// (Rng, EventQueue, FaultMix, SimNetwork, SimDisk, SimPaxosNode) are the
// library other simulations build on; this file is the key-value scenario.
//
// Faults (FaultMix, by name: none, default, followers, lossy): message
// loss, duplication (also replayed much later, across ballots), delay and
// reordering; partitions that split and heal, single cut links; per-node
// clock drift and pauses; crashes that lose a random part of the unsynced
// writes (log pages, vote-file writes, directory entries: a torn WAL tail,
// a lost rename); restarts from what is on the simulated disk; snapshots
// and log truncation at random points; a restart on an empty data
// directory, which must be refused.
//
// Checks:
//   - the oracle computes "chosen" from every durable acceptance, never
//     from the learners: two different values chosen for one slot is a
//     violation;
//   - every replica applies, in slot order with no gap, exactly the chosen
//     value of each slot, so all applied sequences are prefixes of one
//     sequence, also across crashes and snapshot installs;
//   - no acceptor promises or accepts below what it told anyone before a
//     crash; each replica's check_invariants();
//   - a proposal reported applied was applied as its own command (P10);
//   - with the followers mix, leadership never moves once settled (P9);
//   - the key-value state machine's client history is linearizable (per key,
//     small histories; unknown outcomes may or may not have happened);
//   - liveness: once every fault has healed, every probe command proposed
//     afterwards is applied by every live replica within a bounded time.
// A failing seed replays exactly; the trace hash is the same for the same seed.
#pragma once

#include <cstdint>
#include <string>

#include "consensus/core/replica.h"

namespace dtx::sim {

struct PaxosSimOptions {
  uint64_t seed = 1;
  int replicas = 3;
  int64_t fault_ms = 4000;     // faults are injected during this span
  int64_t liveness_ms = 4000;  // then everything heals; probes must apply within it
  int clients = 3;
  int keys = 12;
  std::string faults = "default";  // a FaultMix name (tests/sim/sim_faults.h)
  consensus::PlantedBugs bugs;
  bool trace = false;  // print every event (for replaying a failing seed)
};

struct PaxosSimResult {
  bool ok = true;
  std::string violation;  // what broke, with the simulated time
  uint64_t trace_hash = 0;
  double simulated_s = 0;
  uint64_t faults = 0;
  uint64_t messages = 0;
  uint64_t applied_slots = 0;   // highest slot applied anywhere
  uint64_t elections = 0;       // leader terms that started serving
  uint64_t leader_changes = 0;  // terms after the one serving when faults began
  uint64_t client_ops = 0;
  uint64_t snapshots = 0;
  uint64_t snapshot_installs = 0;
};

PaxosSimResult run_paxos_sim(const PaxosSimOptions& options);

// Parses a planted bug name (forgotten_promise, forgotten_implicit_promise,
// stale_accepted_value, noop_over_compacted, duplicate_2b_counted,
// no_pre_vote, proposal_identity); false if unknown.
bool parse_planted_bug(const std::string& name, consensus::PlantedBugs* bugs);

}  // namespace dtx::sim
