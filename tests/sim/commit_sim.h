// The commit simulation: the whole of dtx in one process, from one seed.
//
// Three coordinator replicas, each the real coordinator core (TxnTable and
// Driver) on a real Multi-Paxos replica (SimPaxosNode: the Replica through
// the node's Executor, on a simulated disk); agents, each the real
// BranchMachine over a simulated database with durable prepared state and
// marker rows, fencing, listings, inquiries and timers as dtx-agent does
// them; clients running transfers (interactive and one-shot, 2PC and 3PC,
// some with idempotency keys and retries). Every message crosses a
// SimNetwork that loses, delays, reorders, duplicates and replays them and
// partitions the machines; coordinators and agents crash (losing what was
// not synced) and restart; a database administrator sometimes rolls a
// prepared branch back by hand; an operator sometimes aborts a transaction
// in flight.
//
// Checked after every step:
//   - every replica's table agrees on every decision (the oracle keeps
//     every register ever applied, also after the table forgot it);
//   - every outcome told to a client or an agent equals the register (an
//     "aborted" told before any register must never meet a commit later);
//   - no agent commits what the register aborts or the reverse, nor
//     commits a transaction with no decision;
//   - every core's check_invariants().
// And after the faults heal and the clients stop: no branch stays prepared;
// all participants of a transaction end alike (unless a heuristic was
// injected, which must then be visible as a hazard and never completed);
// each committed branch ran each statement of its client exactly once; and
// money is conserved across the databases.
//
// Planted bugs (CommitSimOptions::bug, names below) must each be caught
// within a stated number of seeds (tests/unit/commit_sim_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtx::sim {

struct CommitSimOptions {
  uint64_t seed = 1;
  std::string faults = "default";  // a FaultMix name (sim_faults.h)
  int agents = 3;
  int clients = 4;
  int64_t fault_ms = 3000;   // faults are injected during this span
  int64_t settle_ms = 6000;  // then everything heals; clients stop halfway
  std::string bug;           // "" or one of commit_sim_bugs()
  bool trace = false;        // print every event worth a line
};

struct CommitSimResult {
  bool ok = true;
  std::string failure;  // the first violation, with the seed and time
  uint64_t trace_hash = 0;
  uint64_t transactions = 0;
  uint64_t committed = 0;  // registers
  uint64_t aborted = 0;
  uint64_t client_unknown = 0;  // answers of "unknown" (or no answer) to a commit
  uint64_t faults = 0;
  uint64_t coordinator_crashes = 0;
  uint64_t agent_crashes = 0;
  uint64_t heuristics = 0;
  uint64_t leader_terms = 0;
  uint64_t events = 0;
};

CommitSimResult run_commit_sim(const CommitSimOptions& options);

// The planted bugs the simulation knows, by name.
std::vector<std::string> commit_sim_bugs();

}  // namespace dtx::sim
