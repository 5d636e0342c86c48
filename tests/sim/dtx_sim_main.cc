// dtx-sim: runs the Multi-Paxos simulator over many seeds and reports.
//   dtx-sim --seeds 2000 --replicas 3
//   dtx-sim --seed 1234 --trace            # replay one seed, printing every event
//   dtx-sim --seeds 500 --bug forgotten_promise   # show the checker catches a planted bug
//   dtx-sim --seeds 500 --faults followers        # faults only to followers: leadership must stay
//   dtx-sim --scenario commit --seeds 2000        # the commit simulation (dtx-commit-sim)
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/sim/paxos_sim.h"
#include "tests/sim/sim_faults.h"

namespace {

// --scenario commit: the whole-system commit simulation, which has its own
// binary (dtx-commit-sim, next to this one) and options; it is run with the
// other arguments. --scenario paxos (the default): this simulator.
void run_scenario(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  std::string scenario = "paxos";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--scenario" && i + 1 < argc) {
      scenario = argv[++i];
    } else if (a.rfind("--scenario=", 0) == 0) {
      scenario = a.substr(11);
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (scenario == "paxos") return;
  if (scenario != "commit") {
    std::fprintf(stderr, "dtx-sim: --scenario takes paxos or commit, not '%s'\n", scenario.c_str());
    std::exit(2);
  }
  const std::string self = argv[0];
  const auto slash = self.rfind('/');
  const std::string bin =
      (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/dtx-commit-sim";
  rest[0] = const_cast<char*>(bin.c_str());
  rest.push_back(nullptr);
  ::execv(bin.c_str(), rest.data());
  std::fprintf(stderr, "dtx-sim: cannot run %s: %s\n", bin.c_str(), std::strerror(errno));
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  run_scenario(argc, argv);
  CLI::App app{"Deterministic simulation of dtx's Multi-Paxos group."};
  std::string scenario_unused = "paxos";
  app.add_option("--scenario", scenario_unused,
                 "paxos (this simulator), or commit: the whole-system commit simulation "
                 "(dtx-commit-sim) with the other options");
  uint64_t seeds = 100, first = 1;
  std::optional<uint64_t> one;
  int replicas = 3;
  int64_t fault_ms = 4000, liveness_ms = 4000;
  bool trace = false, expect_violation = false;
  std::string bug, faults = "default";
  app.add_option("--seeds", seeds, "how many seeds to run")->default_val(seeds);
  app.add_option("--first-seed", first, "first seed")->default_val(first);
  app.add_option("--seed", one, "run exactly this seed");
  app.add_option("--replicas", replicas, "group size")
      ->check(CLI::IsMember({3, 5}))
      ->default_val(3);
  app.add_option("--fault-ms", fault_ms, "simulated time with faults")->default_val(fault_ms);
  app.add_option("--liveness-ms", liveness_ms, "healed time in which probes must apply")
      ->default_val(liveness_ms);
  app.add_option("--faults", faults,
                 "fault mix: none, default, followers (never the leader; leadership must stay), "
                 "lossy")
      ->default_val(faults);
  app.add_option("--bug", bug,
                 "plant a bug: forgotten_promise, forgotten_implicit_promise, "
                 "stale_accepted_value, noop_over_compacted, duplicate_2b_counted, no_pre_vote, "
                 "proposal_identity");
  app.add_flag("--expect-violation", expect_violation,
               "succeed only if some seed finds a violation (for planted bugs)");
  app.add_flag("--trace", trace, "print every event");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  dtx::sim::PaxosSimOptions o;
  o.replicas = replicas;
  o.fault_ms = fault_ms;
  o.liveness_ms = liveness_ms;
  o.trace = trace;
  o.faults = faults;
  if (!dtx::sim::fault_mix(faults)) {
    fmt::print(stderr, "dtx-sim: unknown fault mix '{}'\n", faults);
    return 2;
  }
  if (!bug.empty() && !dtx::sim::parse_planted_bug(bug, &o.bugs)) {
    fmt::print(stderr, "dtx-sim: unknown bug '{}'\n", bug);
    return 2;
  }
  if (one) {
    first = *one;
    seeds = 1;
  }
  const auto start = std::chrono::steady_clock::now();
  uint64_t ran = 0, violations = 0, fault_count = 0, ops = 0, elections = 0, changes = 0;
  double simulated = 0;
  for (uint64_t s = first; s < first + seeds; ++s) {
    o.seed = s;
    dtx::sim::PaxosSimResult r = dtx::sim::run_paxos_sim(o);
    ++ran;
    simulated += r.simulated_s;
    fault_count += r.faults;
    changes += r.leader_changes;
    ops += r.client_ops;
    elections += r.elections;
    if (one) {
      fmt::print(
          "seed {}: trace hash {:016x}, {} slots applied, {} snapshots, {} installs, {} leader "
          "terms, {} leader changes after faults began\n",
          s, r.trace_hash, r.applied_slots, r.snapshots, r.snapshot_installs, r.elections,
          r.leader_changes);
    }
    if (!r.ok) {
      ++violations;
      fmt::print(
          "VIOLATION seed {} ({} replicas, faults {}{}): {}\n  replay: dtx-sim --seed {} "
          "--replicas {} --faults {}{} --trace\n",
          s, replicas, faults, bug.empty() ? "" : ", bug " + bug, r.violation, s, replicas, faults,
          bug.empty() ? "" : " --bug " + bug);
      if (expect_violation) break;
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(
      "dtx-sim: {} seeds, {} replicas, faults {}, {:.0f} simulated s, {} faults, {} client ops, "
      "{} leader terms, {} leader changes after faults began, {} violations ({:.1f} s wall)\n",
      ran, replicas, faults, simulated, fault_count, ops, elections, changes, violations, wall);
  if (expect_violation) return violations > 0 ? 0 : 1;
  return violations == 0 ? 0 : 1;
}
