// dtx bench: closed-loop clients running one-shot transfers across two
// PostgreSQL participants through a coordinator group, against the cost
// floor of any 2PC on the same two databases: a client driving PREPARE
// TRANSACTION and COMMIT PREPARED itself, with no coordinator. The runs
// alternate (baseline, dtx 2PC, dtx 3PC, for each client count), so the
// ratios compare like with like on a shared, noisy machine.
//
// Output: a table on stdout (transactions/s, p50/p99/p999 latency, ratio to
// the baseline), and under --out: bench.json, bench.md and bench.svg
// (throughput and latency against clients).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtx::cli {

struct BenchOptions {
  std::vector<std::string> coordinators;  // host:port of the replicas
  std::string token;                      // client token
  std::string participant_a, participant_b;
  std::string pg_a, pg_b;  // the two databases behind them (for the baseline and the table)
  std::string table = "dtx_bench_accounts";
  std::vector<int> clients = {1, 4, 16, 64};
  std::vector<std::string> modes = {"direct", "2pc", "3pc"};
  double seconds = 5;
  double warmup_seconds = 1;
  std::string out_dir = "var/bench";
  bool progress = true;
};

// Runs the benchmark; returns the process exit code (0 on success).
int run_bench(const BenchOptions& o);

}  // namespace dtx::cli
