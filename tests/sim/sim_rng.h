// Rng: the simulator's one source of randomness. One seed drives a whole
// run; every part of a simulation (network, faults, disks, clients, each
// node's election jitter) draws from its own stream derived from that seed,
// so adding draws to one part never shifts what another part sees.
//
// Use:
//   Rng root(seed);
//   Rng net = root.derive("network");      // same seed and name: same stream
//   Rng disk3 = root.derive("disk", 3);    // per-node streams
//   if (net.chance(0.05)) ...;  net.between(100, 3000);
// splitmix64: deterministic, fast, good enough for test schedules.
#pragma once

#include <cstdint>
#include <string_view>

namespace dtx::sim {

class Rng {
 public:
  explicit Rng(uint64_t seed = 1) : s_(seed * 0x2545F4914F6CDD1Dull + 1), seed_(seed) {}

  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); 0 when n == 0.
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  // Uniform in [lo, hi].
  int64_t between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo + 1)));
  }
  // Uniform in [0, 1).
  double real() { return static_cast<double>(next() >> 11) / static_cast<double>(1ull << 53); }
  bool chance(double p) { return real() < p; }

  // A seed for a named sub-stream (and an index, for one per node): a pure
  // function of this generator's seed, the name and the index; it draws
  // nothing from this generator.
  uint64_t derive_seed(std::string_view name, uint64_t index = 0) const {
    uint64_t h = seed_ ^ 0xcbf29ce484222325ull;
    for (char c : name)
      h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
    h = (h ^ index) * 0x100000001b3ull;
    return mix(h);
  }
  Rng derive(std::string_view name, uint64_t index = 0) const {
    return Rng(derive_seed(name, index));
  }
  uint64_t seed() const { return seed_; }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t s_;
  uint64_t seed_;
};

}  // namespace dtx::sim
