// TxnTable: the coordinator's replicated state machine. Every replica
// applies the same records (records.h) in the same slot order, so every
// replica holds the same table; the leader's drivers (driver.h) read it,
// and every answer to a client or decision sent to an agent comes from it
// (T1).
//
// What it holds:
//   - one write-once decision register per transaction (T1): the first
//     DECISION applied for a txid wins; later ones change nothing and the
//     caller is told the register's value;
//   - which decided transactions are completed (every participant
//     acknowledged the register's outcome) and which carry a heuristic
//     hazard (T6);
//   - idempotency keys, unique (T4): a key names the first transaction
//     decided with it;
//   - the participant registry: name -> (agent id, url);
//   - the terms: every leader ballot whose TERM record was applied, with its
//     slot. A txid's ballot must be one of them, or the txid could never
//     have been issued (T2, T3);
//   - the current term: a decision or watermark takes effect only when its
//     proposer leads the term it is applied in (records.h, DecisionRecord);
//   - the forget watermark (T3): below it, completed transactions are
//     dropped and an unknown txid is "forgotten", never "aborted".
//
// Bounded: the leader advances the watermark over completed transactions
// older than the retention, and over the oldest ones when more than
// `retained_max` are kept (driver.h).
//
// Pure: no I/O, no clock (times are values in the records). Snapshots are
// byte strings (snapshot()/restore()).
//
// Threading: single-threaded; the owner serialises every call.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "consensus/core/types.h"
#include "coordinator/core/records.h"

namespace dtx::coordinator {

using consensus::Ballot;
using consensus::Slot;

// The ballot a txid was issued under.
inline Ballot ballot_of(const Txid& t) {
  return Ballot{t.round, t.node};
}

struct RegistryEntry {
  std::string agent_id;
  std::string url;
  friend bool operator==(const RegistryEntry&, const RegistryEntry&) = default;
};

struct TxnEntry {
  DecisionRecord decision;
  Slot decided_slot = 0;
  bool completed = false;
};

struct HazardEntry {
  std::vector<HazardRecord> reports;  // one per participant report, oldest first
};

// What applying one record did, for the drivers.
struct ApplyResult {
  enum class Kind {
    decided,         // a DECISION set the register (first_decision) or met it set
    completed,       // COMPLETED marked these txids
    hazard,          // a HAZARD was recorded
    hazard_cleared,  // a HAZARD_CLEARED removed one
    registry,        // the registry changed
    watermark,       // the watermark moved
    term,            // a TERM started a leader's term
    ignored,         // nothing changed (a stale or repeated record); see note
  };
  Kind kind = Kind::ignored;
  Txid txid;                           // decided, hazard, hazard_cleared
  bool first_decision = false;         // decided: this record set the register
  Outcome outcome = Outcome::aborted;  // decided: the register's value
  bool key_conflict = false;           // decided: its key already named another txid
  std::vector<Txid> txids;             // completed: those newly completed
  Ballot ballot;                       // term: the new term
  std::string note;                    // ignored: why
};

class TxnTable {
 public:
  explicit TxnTable(std::string cluster);

  const std::string& cluster() const { return cluster_; }

  ApplyResult apply(Slot slot, const Record& r);
  // A new leader's term starts at `slot` (a TERM record does this through
  // apply(); tests may call it directly).
  void on_term(Slot slot, const Ballot& ballot);

  // --- queries
  const TxnEntry* find(const Txid& t) const;
  // The txid a key was first decided with.
  std::optional<Txid> by_key(std::string_view key) const;

  enum class Known {
    decided,       // find() has it
    forgotten,     // below the watermark and not kept: its outcome is gone
    never_issued,  // no leader of its ballot ever served: could not exist
    undecided,     // could exist and has no decision (yet)
  };
  Known classify(const Txid& t) const;

  const std::map<std::string, RegistryEntry>& registry() const { return registry_; }
  const RegistryEntry* participant(std::string_view name) const;
  const Txid& watermark() const { return watermark_; }
  // The current term: the ballot of the last TERM applied (zero before
  // any). Decisions and watermarks count only if proposed in it.
  Ballot current_term() const;
  Slot current_term_slot() const;
  const std::map<Ballot, Slot>& terms() const { return terms_; }
  // Decided and not completed, in txid order.
  const std::set<Txid>& open() const { return open_; }
  const std::map<Txid, TxnEntry>& entries() const { return entries_; }
  const std::map<Txid, HazardEntry>& hazards() const { return hazards_; }
  Slot applied_slot() const { return applied_slot_; }

  struct Counts {
    uint64_t decided_committed = 0;  // since the table's birth (snapshots keep them)
    uint64_t decided_aborted = 0;
    uint64_t completed = 0;
    uint64_t forgotten = 0;  // dropped below the watermark
  };
  const Counts& counts() const { return counts_; }

  // --- snapshots (P6: taken at exactly an applied slot)
  std::string snapshot() const;
  static Result<TxnTable> restore(std::string_view bytes);

  // Invariants: the watermark never goes back, every key names an entry with
  // that key, open_ is exactly the entries not completed, terms are
  // ordered, every completed entry is at or above the watermark. Also
  // remembers each register's outcome across calls and flags a change (the
  // simulator runs it after every step).
  Status check_invariants();

 private:
  ApplyResult apply_decision(Slot slot, const DecisionRecord& d);
  ApplyResult apply_completed(const CompletedRecord& c);
  ApplyResult apply_watermark(const WatermarkRecord& w);

  std::string cluster_;
  std::map<Txid, TxnEntry> entries_;
  std::set<Txid> open_;
  std::unordered_map<std::string, Txid> keys_;
  std::map<Txid, HazardEntry> hazards_;
  std::map<std::string, RegistryEntry> registry_;
  std::map<Ballot, Slot> terms_;
  Txid watermark_;
  Ballot term_;  // the last TERM applied
  Slot applied_slot_ = 0;
  Counts counts_;

  // Invariant tracking (not part of the state).
  Txid checked_watermark_;
  std::map<Txid, Outcome> seen_registers_;
};

}  // namespace dtx::coordinator
