// dtx-commit-sim: runs the commit simulation (commit_sim.h) over seeds.
//
//   dtx-commit-sim --seeds 1000                 # seeds 1..1000, default faults
//   dtx-commit-sim --seed 42 --trace            # replay one seed, event by event
//   dtx-commit-sim --bug retry_exec_blindly --seeds 200   # how soon a planted bug is caught
//
// Exit 0 when every seed passes (or, with --bug, when the bug is caught).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "tests/sim/commit_sim.h"

int main(int argc, char** argv) {
  CLI::App app{"dtx-commit-sim: coordinators, agents and clients under faults, from a seed."};
  uint64_t seed = 0, start = 1, seeds = 100;
  std::string faults = "default", bug;
  bool trace = false;
  int agents = 3, clients = 4;
  int64_t fault_ms = 3000;
  app.add_option("--seed", seed, "run this one seed");
  app.add_option("--start", start, "first seed of a range");
  app.add_option("--seeds", seeds, "how many seeds");
  app.add_option("--faults", faults, "fault mix: none, default, followers, lossy");
  std::string bugs_help = "a planted bug:";
  for (const auto& b : dtx::sim::commit_sim_bugs())
    bugs_help += " " + b;
  app.add_option("--bug", bug, bugs_help);
  app.add_option("--agents", agents)->check(CLI::Range(2, 8));
  app.add_option("--clients", clients)->check(CLI::Range(1, 32));
  app.add_option("--fault-ms", fault_ms, "simulated time with faults");
  app.add_flag("--trace", trace, "print the run, event by event");
  CLI11_PARSE(app, argc, argv);

  if (seed != 0) {
    start = seed;
    seeds = 1;
  }
  uint64_t txns = 0, committed = 0, aborted = 0, faults_n = 0, terms = 0;
  for (uint64_t s = start; s < start + seeds; ++s) {
    dtx::sim::CommitSimOptions o;
    o.seed = s;
    o.faults = faults;
    o.bug = bug;
    o.trace = trace;
    o.agents = agents;
    o.clients = clients;
    o.fault_ms = fault_ms;
    const auto r = dtx::sim::run_commit_sim(o);
    txns += r.transactions;
    committed += r.committed;
    aborted += r.aborted;
    faults_n += r.faults;
    terms += r.leader_terms;
    if (seeds == 1) {
      std::printf(
          "seed %lu: %s; %lu transactions, %lu committed, %lu aborted, %lu unknown to "
          "clients, %lu faults, %lu leader terms; trace hash %016lx\n",
          static_cast<unsigned long>(s), r.ok ? "ok" : r.failure.c_str(),
          static_cast<unsigned long>(r.transactions), static_cast<unsigned long>(r.committed),
          static_cast<unsigned long>(r.aborted), static_cast<unsigned long>(r.client_unknown),
          static_cast<unsigned long>(r.faults), static_cast<unsigned long>(r.leader_terms),
          static_cast<unsigned long>(r.trace_hash));
    }
    if (!r.ok) {
      if (!bug.empty()) {
        std::printf("planted bug %s caught at seed %lu: %s\n", bug.c_str(),
                    static_cast<unsigned long>(s), r.failure.c_str());
        return 0;
      }
      std::printf("FAILED: %s\nreplay: dtx-commit-sim --seed %lu --faults %s --trace\n",
                  r.failure.c_str(), static_cast<unsigned long>(s), faults.c_str());
      return 1;
    }
  }
  if (!bug.empty()) {
    std::printf("planted bug %s NOT caught in %lu seeds\n", bug.c_str(),
                static_cast<unsigned long>(seeds));
    return 1;
  }
  std::printf(
      "%lu seeds passed: %lu transactions (%lu committed, %lu aborted registers), %lu "
      "faults, %lu leader terms\n",
      static_cast<unsigned long>(seeds), static_cast<unsigned long>(txns),
      static_cast<unsigned long>(committed), static_cast<unsigned long>(aborted),
      static_cast<unsigned long>(faults_n), static_cast<unsigned long>(terms));
  return 0;
}
