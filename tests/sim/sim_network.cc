#include "tests/sim/sim_network.h"

#include <algorithm>

namespace dtx::sim {

SimNetwork::SimNetwork(EventQueue& queue, Rng rng, FaultMix mix)
    : q_(queue), rng_(rng), mix_(std::move(mix)) {}

int SimNetwork::group_of(int endpoint) const {
  auto it = group_.find(endpoint);
  return it == group_.end() ? 0 : it->second;
}

bool SimNetwork::connected(int a, int b) const {
  return group_of(a) == group_of(b) && !cut_.count({std::min(a, b), std::max(a, b)});
}

void SimNetwork::send(int from, int to, Deliver deliver, bool interesting,
                      std::optional<uint64_t> generation) {
  sent_ += 1;
  const bool spared = spared_ && (*spared_ == from || *spared_ == to) && mix_.spare_leader;
  const bool faults = faulty_ && !spared;
  if (faults && rng_.chance(mix_.loss)) {
    dropped_ += 1;
    return;
  }
  SimTime delay = rng_.between(100, 3000);
  if (faults && rng_.chance(mix_.late)) delay += rng_.between(mix_.late_us_min, mix_.late_us_max);
  if (!connected(from, to)) {
    dropped_ += 1;
    return;
  }
  if (faults && generation && mix_.keep_for_replay > 0) {
    by_generation_[{to, *generation}] = Kept{from, to, deliver};
    if (by_generation_.size() > 512) by_generation_.erase(by_generation_.begin());
  }
  if (faults && rng_.chance(interesting ? mix_.keep_for_replay * 10 : mix_.keep_for_replay)) {
    Kept k{from, to, deliver};
    if (kept_.size() < 256) {
      kept_.push_back(std::move(k));
    } else {
      kept_[rng_.below(kept_.size())] = std::move(k);
    }
  }
  if (faults && rng_.chance(mix_.duplicate)) {
    q_.after(
        rng_.between(100, 3000),
        [this, from, to, deliver] {
          if (connected(from, to)) deliver();
        },
        0x4d5347);
  }
  q_.after(
      delay,
      [this, from, to, deliver = std::move(deliver)] {
        if (connected(from, to)) deliver();  // the link may have gone down meanwhile
      },
      0x4d5347);
}

void SimNetwork::partition(const std::vector<std::vector<int>>& groups) {
  group_.clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int e : groups[g])
      group_[e] = static_cast<int>(g) + 1;
  }
}

void SimNetwork::cut(int a, int b) {
  if (a != b) cut_.insert({std::min(a, b), std::max(a, b)});
}

void SimNetwork::heal() {
  group_.clear();
  cut_.clear();
}

bool SimNetwork::replay_one() {
  if (kept_.empty()) return false;
  const Kept& k = kept_[rng_.below(kept_.size())];
  if (connected(k.from, k.to)) k.deliver();
  return true;
}

void SimNetwork::replay_generations_to(int to, uint64_t below, SimTime within_us) {
  for (auto it = by_generation_.lower_bound({to, 0});
       it != by_generation_.end() && it->first.first == to && it->first.second < below; ++it) {
    Kept k = it->second;
    q_.after(rng_.between(0, within_us), [this, k] {
      if (connected(k.from, k.to)) k.deliver();
    });
  }
}

void SimNetwork::replay_to(int to, int n, SimTime within_us) {
  std::vector<size_t> mine;
  for (size_t i = 0; i < kept_.size(); ++i) {
    if (kept_[i].to == to) mine.push_back(i);
  }
  for (int i = 0; i < n && !mine.empty(); ++i) {
    const Kept k = kept_[mine[rng_.below(mine.size())]];
    q_.after(rng_.between(0, within_us), [this, k] {
      if (connected(k.from, k.to)) k.deliver();
    });
  }
}

}  // namespace dtx::sim
