// FaultMix: what can go wrong in a simulation, and how often, under a name.
// A simulation picks a mix by name (dtx-sim --faults NAME); its fault
// injector draws fault events from the weights, and SimNetwork draws message
// faults from the probabilities. Faults happen only during the fault span;
// then everything heals and liveness is checked.
//
// Named mixes:
//   none       no faults at all (a baseline: everything must just work)
//   default    every fault: message loss, delay, reordering, duplication
//              and late replay across ballots; partitions and single cut
//              links; crashes (losing unsynced writes, sometimes the disk)
//              and restarts; clock drift and pauses; snapshots at random
//              points; rare paths made to fire
//   followers  the same faults, but never to the serving leader: only
//              followers crash, pause or get cut off, at most a minority at
//              a time, and links touching the leader lose nothing. The
//              simulation then requires that leadership never moves (P9).
//   lossy      message faults only, heavy
//
// Use:
//   FaultMix mix = fault_mix("followers").value();
//   if (rng.below(mix.total_weight()) < mix.crash) ...
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/sim/sim_events.h"

namespace dtx::sim {

struct FaultMix {
  std::string name;
  // Message faults (per message, while faulty).
  double loss = 0;       // dropped
  double duplicate = 0;  // delivered twice, each copy with its own delay
  double late = 0;       // delayed by late_us_min..late_us_max on top
  SimTime late_us_min = 5 * kSimMs;
  SimTime late_us_max = 60 * kSimMs;
  double keep_for_replay = 0;  // kept to be delivered again much later
  // Fault events: one every gap_us_min..gap_us_max, of a kind drawn by
  // weight.
  SimTime gap_us_min = 50 * kSimMs;
  SimTime gap_us_max = 400 * kSimMs;
  uint32_t crash = 0;
  uint32_t partition = 0;  // a random split, or single links cut
  uint32_t pause = 0;
  uint32_t heal = 0;        // partitions and cut links heal early
  uint32_t replay = 0;      // an old message delivered again, across ballots
  double disk_loss = 0;     // chance (once per run) that a crash replaces the disk
  bool rare_paths = false;  // crash right after a promise, a higher ballot, a snapshot
  // Faults never touch the serving leader: no crash, pause or cut of it, at
  // most a minority of replicas faulty at once, no loss on its links.
  bool spare_leader = false;

  uint32_t total_weight() const { return crash + partition + pause + heal + replay; }
  bool any() const { return total_weight() > 0 || loss > 0 || late > 0 || keep_for_replay > 0; }
};

// The mix with this name, or nullopt.
std::optional<FaultMix> fault_mix(const std::string& name);
std::vector<std::string> fault_mix_names();

}  // namespace dtx::sim
