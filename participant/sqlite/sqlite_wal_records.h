// The SQLite agent's records in its write-ahead log (wal/segmented_log.h,
// format in wal/format.h), their encoding, and a read-only reader of a log
// directory for operator tools.
//
// ---------------------------------------------------------------------------
// Record types and payloads (integers little-endian; "str16" is a u16 byte
// count then the bytes, "blob32" a u32 byte count then the bytes):
//
//   1 PREPARED   str16 txid, blob32 redo, blob32 undo, u64 prepared_at_ms
//                  redo: the branch's changeset (sqlite3session_changeset),
//                  marker row included; undo: its inverse
//                  (sqlite3changeset_invert), kept for operators repairing a
//                  heuristic outcome. Appended and fsync'd before the yes
//                  vote.
//   2 COMMITTED  str16 txid   after the database COMMIT (not waited for: the
//                              marker row is the proof)
//   3 ABORTED    str16 txid   after the database ROLLBACK (not waited for)
//   4 RESOLVED   str16 txid, u8 outcome (1 committed, 2 aborted)
//                  an operator settled an in-doubt branch by hand
//                  (SqliteResource::resolve_by_operator); fsync'd.
//   5 FENCE      u64 round, u32 node
//                  the highest coordinator ballot the agent has seen
//                  (participant/fencing.h); appended and fsync'd before the
//                  request that raised it is answered. The last one read at
//                  recovery is the fence. Copied forward (appended again)
//                  before prefix truncation could drop the segment holding
//                  it, and kept until the copy is durable.
//
// A txid is 1..kTxidBytesMax bytes. A record that passes the WAL's checksum
// but does not decode as above is corruption. (An agent from before FENCE
// records existed reads type 5 as corruption: do not downgrade past it.)
// ---------------------------------------------------------------------------
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "participant/resource.h"
#include "txn/txid.h"

namespace dtx::participant::sqlite {

enum class RecordType : uint16_t {
  prepared = 1,
  committed = 2,
  aborted = 3,
  resolved = 4,
  fence = 5,
};

inline constexpr size_t kTxidBytesMax = 256;

struct AgentRecord {
  uint64_t lsn = 0;
  RecordType type = RecordType::prepared;
  std::string txid;
  std::vector<uint8_t> redo;           // PREPARED only
  std::vector<uint8_t> undo;           // PREPARED only
  int64_t prepared_at_ms = 0;          // PREPARED only
  Outcome outcome = Outcome::aborted;  // RESOLVED only
  txn::BallotId ballot;                // FENCE only (txid empty)
};

const char* record_type_name(RecordType t);

std::vector<uint8_t> encode_prepared(const std::string& txid, std::span<const uint8_t> redo,
                                     std::span<const uint8_t> undo, int64_t prepared_at_ms);
// COMMITTED and ABORTED.
std::vector<uint8_t> encode_decided(const std::string& txid);
std::vector<uint8_t> encode_resolved(const std::string& txid, Outcome outcome);
std::vector<uint8_t> encode_fence(const txn::BallotId& ballot);

// Decodes a record's payload; Code::corruption if it does not parse.
Result<AgentRecord> decode_record(uint64_t lsn, uint16_t type, std::span<const uint8_t> payload);

// Reads every durable record of the log in `dir`, in LSN order, without
// taking the log's lock and without changing a byte: usable whether or not
// an agent has the log open (a running agent's latest records may be
// missed). A torn tail ends the log; damage before it is Code::corruption.
Result<std::vector<AgentRecord>> read_log_read_only(const std::string& dir);

}  // namespace dtx::participant::sqlite
