#include "tests/sim/sim_disk.h"

#include <algorithm>

namespace dtx::sim {

SimDisk::SimDisk(EventQueue& queue, Rng rng)
    : q_(queue), rng_(rng), fs_(std::make_unique<SimFileSystem>(rng_.next())) {}

void SimDisk::sync(std::function<void()> done) {
  free_at_ = std::max(free_at_, q_.now()) + rng_.between(100, 2000);
  const uint64_t epoch = epoch_;
  q_.at(
      free_at_,
      [this, epoch, done = std::move(done)] {
        if (epoch == epoch_) done();
      },
      0x53594e43);
}

void SimDisk::crash() {
  crashes_ += 1;
  epoch_ += 1;
  free_at_ = q_.now();
  const auto pages = rng_.chance(0.5) ? SimFileSystem::PageLoss::random_unsynced
                                      : SimFileSystem::PageLoss::all_unsynced;
  const auto dirs = rng_.chance(0.5) ? SimFileSystem::DirLoss::random_unsynced
                                     : SimFileSystem::DirLoss::all_unsynced;
  fs_->crash(pages, dirs);
  fs_->restart();
}

void SimDisk::wipe() {
  epoch_ += 1;
  fs_ = std::make_unique<SimFileSystem>(rng_.next());
}

}  // namespace dtx::sim
