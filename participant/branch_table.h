// BranchTable: the agent's branches and the outcomes of finished ones.
//
// A branch lives in a BranchSlot from its first exec (or batch, or its
// recovery at start-up) until its decision; then the slot leaves the table
// and an outcome record (txid -> committed/aborted) answers repeats of the
// decision. Outcome records are dropped below the coordinator group's
// forget watermark (T3: those txids are never asked about again), and
// bounded besides by a retention time and a count (oldest first), which
// only matter when no watermark comes.
//
// LOCK ORDER (every lock in participant/ that guards branch state):
//   1. BranchSlot::mu   a branch's lock: one step of the branch at a time.
//                       Held across the database work of that step.
//   2. BranchTable::mu_ the table's lock: a leaf. Taken with or without a
//                       branch lock held; nothing is called under it that
//                       takes another lock (no database work, no branch
//                       lock, no queueing, no logging of its own).
//   Leaves, like 2: the lane pool's queue lock (lanes.h) and the fence's
//   lock (fencing.h). The fence's save lock (fencing.h) is held across
//   storing a raised ballot in the resource; a step takes it only in
//   admit(), before any lock above.
// Never take a branch lock while holding the table's lock, and never hold
// two branch locks at once.
//
// Threading: every method is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "participant/core/branch_machine.h"
#include "participant/resource.h"
#include "txn/txid.h"

namespace dtx::participant {

struct BranchSlot {
  explicit BranchSlot(BranchMachine machine)
      : m(std::move(machine)), known_state(m.state()), known_execs(0) {}

  std::mutex mu;                    // the branch's lock (lock order 1)
  BranchMachine m;                  // guarded by mu
  std::unique_ptr<Branch> session;  // guarded by mu; while ACTIVE

  // What a reader that does not take mu may show (listings, status while a
  // step runs): the state and exec count after the last step.
  std::atomic<BranchState> known_state;
  std::atomic<uint64_t> known_execs;
  // Under mu, after every step: publishes the state for lock-free readers.
  void publish() {
    known_state.store(m.state(), std::memory_order_release);
    known_execs.store(m.exec_count(), std::memory_order_release);
  }
};

class BranchTable {
 public:
  struct Limits {
    int64_t retention_ms = 7ll * 24 * 3600 * 1000;  // outcome records kept at most this long
    size_t outcomes_max = 1'000'000;                // and at most this many
  };
  explicit BranchTable(Limits limits) : limits_(limits) {}

  std::shared_ptr<BranchSlot> find(const std::string& txid) const;

  enum class OpenResult { opened, existing, finished, forgotten };
  // The slot of txid, created with `make()` if the txid is new; finished if
  // it has an outcome record, forgotten if it is below the watermark
  // (then *slot stays null).
  OpenResult open(const std::string& txid, const std::function<BranchMachine()>& make,
                  std::shared_ptr<BranchSlot>* slot);
  // Adds a recovered branch (start-up).
  void add(const std::string& txid, std::shared_ptr<BranchSlot> slot);

  // The branch is decided: it leaves the table, its outcome is recorded
  // (read_only: it voted read_only; the outcome is then committed).
  void retire(const std::string& txid, Outcome outcome, int64_t now_ms, bool read_only = false);
  // Records an outcome for a txid with no branch here (an answer from the
  // database's markers). False, recording nothing, if a branch of the txid
  // was opened meanwhile.
  bool remember(const std::string& txid, Outcome outcome, int64_t now_ms);
  std::optional<Outcome> outcome(const std::string& txid) const;
  // Whether the outcome record of txid says it voted read_only.
  bool read_only(const std::string& txid) const;

  // Every branch, in txid-text order.
  std::vector<std::pair<std::string, std::shared_ptr<BranchSlot>>> all() const;
  // At most `limit` branches after `after` (txid-text order); *next is the
  // last one returned when more may follow.
  std::vector<std::pair<std::string, std::shared_ptr<BranchSlot>>> page(
      const std::string& after, size_t limit, std::optional<std::string>* next) const;
  size_t branches() const;
  size_t outcomes() const;

  // The forget watermark. raise_watermark() keeps the higher of the old and
  // the new (of the agent's own cluster only: the caller checks), drops the
  // outcome records below it and returns true if it rose.
  bool raise_watermark(const txn::Txid& w);
  std::optional<txn::Txid> watermark() const;
  // Whether txid (canonical text) is below the watermark.
  bool below_watermark(const std::string& txid) const;

  // Drops outcome records past the retention or beyond the count.
  void expire(int64_t now_ms);

 private:
  struct Record {
    Outcome outcome;
    int64_t decided_ms;
    bool read_only = false;
  };
  bool below_watermark_locked(const std::string& txid) const;
  void record_locked(const std::string& txid, Outcome outcome, int64_t now_ms,
                     bool read_only = false);

  const Limits limits_;
  mutable std::mutex mu_;  // lock order 2: a leaf
  std::map<std::string, std::shared_ptr<BranchSlot>> branches_;
  // Outcome records by txid order (for the watermark), and their ages.
  std::map<txn::Txid, Record> outcomes_;
  std::deque<std::pair<int64_t, txn::Txid>> outcome_ages_;
  std::optional<txn::Txid> watermark_;
};

}  // namespace dtx::participant
