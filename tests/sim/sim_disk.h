// SimDisk: one simulated machine's disk: a SimFileSystem (tests/support/
// sim_fs.h: what is written apart from what is durable) plus the time its
// syncs take. Syncs complete in the order they were asked for, one at a
// time, each 0.1-2 ms after the previous one (or after it was asked for).
// A crash is a power cut: the file system keeps what was durable and a
// random part of what was not (some unsynced pages of each file, some
// unsynced directory entries), or none of it; rarely the disk is replaced
// by an empty one.
//
// Use:
//   SimDisk disk(queue, root.derive("disk", i));
//   write with disk.fs() (any FileSystem user: SimPaxosStorage, a WAL...);
//   disk.sync([&] { /* what was written before is durable: do the fsyncs */ });
//   disk.crash();   // then recover from disk.fs()
// Callbacks of syncs asked for before a crash never run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "tests/sim/sim_events.h"
#include "tests/sim/sim_rng.h"
#include "tests/support/sim_fs.h"

namespace dtx::sim {

class SimDisk {
 public:
  SimDisk(EventQueue& queue, Rng rng);

  SimFileSystem& fs() { return *fs_; }
  // Runs `done` when a sync asked for now completes (in order, after every
  // sync asked for before). `done` performs the fsyncs themselves.
  void sync(std::function<void()> done);
  // A power cut: unsynced writes are lost (all, or a random part), pending
  // syncs never complete. The file system is usable again at once (the
  // machine's next process recovers from it).
  void crash();
  // The disk is replaced by an empty one.
  void wipe();
  uint64_t crashes() const { return crashes_; }

 private:
  EventQueue& q_;
  Rng rng_;
  std::unique_ptr<SimFileSystem> fs_;
  SimTime free_at_ = 0;
  uint64_t epoch_ = 0;  // bumped by crash: pending syncs are dropped
  uint64_t crashes_ = 0;
};

}  // namespace dtx::sim
