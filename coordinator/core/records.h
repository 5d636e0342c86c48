// The coordinator's log records: what the leader proposes to the Paxos log
// and every replica applies, in slot order, to its transaction table
// (table.h). The Paxos log is the coordinator's only durable state, so
// these records are the whole of what a coordinator remembers.
//
// Records (one per Paxos command; the node batches many into a slot):
//   DECISION        the write-once register of one transaction (T1): its
//                   outcome, protocol, participants, idempotency key, the
//                   abort reason, and whether an operator wrote it. For 3PC
//                   a committed DECISION is the PRECOMMIT record: it *is*
//                   the commit decision.
//   COMPLETED       transactions every participant acknowledged with the
//                   register's outcome; batched, written lazily.
//   HAZARD          a participant acknowledged another outcome than the
//                   register's (T6): kept visible until an operator clears it.
//   HAZARD_CLEARED  an operator looked at a hazard and cleared it.
//   PARTICIPANT_SET / PARTICIPANT_REMOVE
//                   the participant registry (name -> agent id, url).
//   WATERMARK       txids below it are forgotten (T3).
//   TERM            a new leader's first record: its term starts here. A
//                   leader serves (begins, decides) only once its TERM is
//                   applied, so everything chosen before is applied first;
//                   decisions count only in their proposer's term (T1).
//
// Wire format (binary, little-endian, consensus/core/codec.h):
//   u8 version (1), u8 kind, then the fields of the kind in the order the
//   structs list them; strings are u32 length + bytes, lists u32 count +
//   items, optional fields a u8 presence flag. decode_record() refuses
//   unknown versions and kinds, bad flags and trailing bytes.
//
// Threading: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "consensus/core/types.h"
#include "txn/txid.h"
#include "txn/types.h"

namespace dtx::coordinator {

using txn::Outcome;
using txn::Txid;

enum class Protocol : uint8_t { two_pc = 1, three_pc = 2 };
const char* protocol_name(Protocol p);  // "2pc", "3pc"
std::optional<Protocol> parse_protocol(std::string_view s);

// A participant enlisted in a transaction, as the registry named it when the
// transaction used it.
struct Enlisted {
  std::string name;
  std::string agent_id;
  friend bool operator==(const Enlisted&, const Enlisted&) = default;
};

// Why a transaction aborted: which participant said no (or failed), with
// the database's SQLSTATE when there is one.
struct AbortReason {
  std::string participant;  // empty: not a participant's doing
  std::string code;         // "vote_no", "sql_error", "timeout", "coordinator_failover", ...
  std::string message;
  std::string sqlstate;
  friend bool operator==(const AbortReason&, const AbortReason&) = default;
};

struct DecisionRecord {
  Txid txid;
  // The ballot of the leader that proposed it. A decision takes effect only
  // in its proposer's term (the last TERM applied before it is of this
  // ballot): a value an old leader got accepted by a minority, and that a
  // later leader re-proposes after a newer TERM, is ignored, so once a new
  // leader serves, an older-ballot txid with no decision can never get one
  // from its old leader.
  consensus::Ballot term;
  Outcome outcome = Outcome::aborted;
  Protocol protocol = Protocol::two_pc;
  std::vector<Enlisted> participants;
  std::string idempotency_key;  // empty: none
  AbortReason reason;           // aborted only
  int64_t decided_at_ms = 0;    // the proposing leader's wall clock (display only)
  std::string operator_name;    // non-empty: an operator's (heuristic) decision (T9)
  std::string operator_reason;
  // A keyed one-shot submit's per-statement results (JSON), so a retry after
  // a failover can return the first answer whole. Empty when too large.
  std::string results_json;
  friend bool operator==(const DecisionRecord&, const DecisionRecord&) = default;
};

struct CompletedRecord {
  std::vector<Txid> txids;
  friend bool operator==(const CompletedRecord&, const CompletedRecord&) = default;
};

struct HazardRecord {
  Txid txid;
  std::string participant;
  Outcome applied = Outcome::aborted;  // what the participant says it applied
  int64_t at_ms = 0;
  friend bool operator==(const HazardRecord&, const HazardRecord&) = default;
};

struct HazardClearedRecord {
  Txid txid;
  std::string operator_name;
  std::string operator_reason;
  friend bool operator==(const HazardClearedRecord&, const HazardClearedRecord&) = default;
};

struct ParticipantSetRecord {
  std::string name;
  std::string agent_id;
  std::string url;  // host:port of the agent
  friend bool operator==(const ParticipantSetRecord&, const ParticipantSetRecord&) = default;
};

struct ParticipantRemoveRecord {
  std::string name;
  friend bool operator==(const ParticipantRemoveRecord&, const ParticipantRemoveRecord&) = default;
};

struct WatermarkRecord {
  Txid watermark;          // every txid below it is forgotten
  consensus::Ballot term;  // as DecisionRecord::term
  friend bool operator==(const WatermarkRecord&, const WatermarkRecord&) = default;
};

struct TermRecord {
  consensus::Ballot ballot;  // the new leader's Paxos ballot
  friend bool operator==(const TermRecord&, const TermRecord&) = default;
};

using Record =
    std::variant<DecisionRecord, CompletedRecord, HazardRecord, HazardClearedRecord,
                 ParticipantSetRecord, ParticipantRemoveRecord, WatermarkRecord, TermRecord>;

std::string encode_record(const Record& r);
Result<Record> decode_record(std::string_view bytes);
// "DECISION txid=... committed 2pc [a,b]" for logs and scenario tests.
std::string describe(const Record& r);

// Limits every record keeps (the leader checks them before proposing).
inline constexpr size_t kNameBytesMax = 128;
inline constexpr size_t kReasonBytesMax = 1024;
inline constexpr size_t kResultsBytesMax = 64 * 1024;
inline constexpr size_t kCompletedBatchMax = 4096;

}  // namespace dtx::coordinator
