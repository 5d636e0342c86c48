// dtx bank: a bank workload that must never create or lose money, run
// against a local cluster (dtx cluster up), with a checker that reads the
// databases directly and, with --nemesis, faults injected while it runs.
//
// Every database holds accounts(id, balance) and ledger(transfer, account,
// delta). A transfer moves an amount between accounts of two different
// databases in one global transaction (2PC or 3PC, interactive or
// one-shot with an idempotency key); each side updates the balance and
// writes its ledger row. Some transactions read a pair of balances across
// databases, locking what they read (FOR SHARE on PostgreSQL, A7).
//
// The checker, on the databases themselves: the total is conserved (at the
// end exactly; periodically within what is in flight); every transfer the
// client saw committed has both ledger rows, none it saw aborted has
// either, each unknown one has both or neither; no branch stays prepared
// once the faults stop (pg_prepared_xacts, the agents' listings).
//
// The nemesis: kill -9 and restart of the leader, of any coordinator, of
// an agent, of a PostgreSQL server; SIGSTOP/SIGCONT pauses of each; once, a
// coordinator replica restarted on a wiped data directory (it refuses to
// start, P4, and the group goes on without it). The report lists every
// fault and the time until the next committed transfer after it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtx::cli {

struct BankOptions {
  std::string dir = "var/cluster";
  double duration_s = 20;
  int clients = 8;
  std::vector<std::string> protocols = {"2pc", "3pc"};
  double interactive = 0.5;  // share of transfers run interactively
  bool nemesis = false;
  int faults = 0;            // with --nemesis: run until this many faults healed (0: duration)
  double fault_every_s = 3;  // a fault every this many seconds
  std::string report;        // JSON report path ("" none)
  bool progress = true;
};

int run_bank(const BankOptions& o);

}  // namespace dtx::cli
