// SimNetwork: links between endpoints (small integers: one per simulated
// process or machine) on an EventQueue. A message is a closure that delivers
// it; the network decides whether and when it runs:
//   - every message takes 0.1-3 ms (reordering comes from the spread);
//   - while faults are on (set_faulty), the FaultMix's loss, duplication
//     and late delivery apply, and some messages are kept to be delivered
//     again much later (replay_one, replay_to): duplicates across ballots;
//   - partitions split endpoints into groups, and single links can be cut
//     (non-transitive: A reaches B and B reaches C while A cannot reach C);
//     a message is delivered only if its link is up both when it is sent
//     and when it arrives;
//   - with FaultMix::spare_leader, links touching the spared endpoint lose
//     and delay nothing extra.
//
// Use:
//   SimNetwork net(queue, root.derive("network"), mix);
//   net.send(from, to, [&, m] { nodes[to].deliver(m); }, /*replayable=*/true);
//   net.partition({{0, 1}, {2}});  net.heal();
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "tests/sim/sim_events.h"
#include "tests/sim/sim_faults.h"
#include "tests/sim/sim_rng.h"

namespace dtx::sim {

class SimNetwork {
 public:
  using Deliver = std::function<void()>;

  SimNetwork(EventQueue& queue, Rng rng, FaultMix mix);

  // `interesting` messages are ten times likelier to be kept for a replay.
  // A message with a `generation` (e.g. the ballot it speaks for) is also
  // remembered as the latest of its generation to its addressee, for
  // replay_generations_to().
  void send(int from, int to, Deliver deliver, bool interesting = false,
            std::optional<uint64_t> generation = std::nullopt);
  bool connected(int a, int b) const;

  void set_faulty(bool on) { faulty_ = on; }
  bool faulty() const { return faulty_; }
  // Endpoints listed in one inner vector can talk to each other only;
  // endpoints not listed form one more group together.
  void partition(const std::vector<std::vector<int>>& groups);
  void cut(int a, int b);
  void heal();  // every partition and cut link
  void spare(std::optional<int> endpoint) { spared_ = endpoint; }
  // Delivers a kept message again (if its link is up now); false if none.
  bool replay_one();
  // Schedules up to n kept messages addressed to `to` within `within_us`.
  void replay_to(int to, int n, SimTime within_us);
  // Schedules, within `within_us`, the latest message of each generation
  // below `below` sent to `to` while faults were on: old messages of every
  // earlier ballot find a restarted node (duplicates across ballots).
  void replay_generations_to(int to, uint64_t below, SimTime within_us);

  uint64_t sent() const { return sent_; }
  uint64_t dropped() const { return dropped_; }

 private:
  struct Kept {
    int from = 0;
    int to = 0;
    Deliver deliver;
  };
  int group_of(int endpoint) const;

  EventQueue& q_;
  Rng rng_;
  FaultMix mix_;
  bool faulty_ = false;
  std::map<int, int> group_;  // endpoint -> group; absent: group 0
  std::set<std::pair<int, int>> cut_;
  std::optional<int> spared_;
  std::vector<Kept> kept_;
  std::map<std::pair<int, uint64_t>, Kept> by_generation_;  // (to, generation) -> latest
  uint64_t sent_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace dtx::sim
