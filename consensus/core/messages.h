// Messages between replicas, and their wire format.
//
// Every message names its sender and the ballot it speaks for. The wire form
// (encode_message/decode_message) is a versioned binary encoding, all
// integers little-endian:
//   u8 format version (2), u8 type, u32 from, u64 ballot.round,
//   u32 ballot.node, then the type's fields in the order of the struct,
//   strings and byte values as u32 length + bytes, vectors as u32 count +
//   elements.
// The TCP transport frames and authenticates these bytes; the decoder
// rejects anything malformed, never reads past its input, and bounds every
// count by the input's length.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "consensus/core/types.h"

namespace dtx::consensus {

// An accepted or chosen value reported in phase 1 or sent in catch-up.
struct SlotValue {
  Slot slot = 0;
  Ballot accepted;  // ballot it was accepted in (zero when only known chosen)
  bool chosen = false;
  Bytes value;
};

// Phase 1a: a candidate asks for promises. first_unchosen is the candidate's
// commit index + 1: acceptors need not report what it already knows.
struct Phase1a {
  Slot first_unchosen = 1;
};

// Phase 1b: a promise. Carries the acceptor's compaction (snapshot) index
// and commit index, and every value it accepted above both (P1).
struct Phase1b {
  Slot compaction_index = 0;
  Slot commit_index = 0;
  std::vector<SlotValue> accepted;
};

// Phase 2a: the leader asks acceptors to accept values, and tells them its
// commit index.
struct Phase2a {
  std::vector<SlotValue> entries;  // accepted == the message ballot
  Slot commit_index = 0;
};

// Phase 2b: sent only after the acceptance is durable (P3). `compacted`
// non-zero: some entries of the 2a were at or below this acceptor's
// compaction index, so it cannot vote for them (they are chosen, and it
// holds only a snapshot); a leader that has such a slot open goes back to
// phase 1, whose catch-up fetches that snapshot.
struct Phase2b {
  Slot compacted = 0;
  std::vector<Slot> slots;
};

// A refusal: the receiver has promised `promised`, above the sender's ballot.
struct Nack {
  Ballot promised;
};

// Leader liveness, commit index, and read-index rounds (P5).
struct Heartbeat {
  Slot commit_index = 0;
  uint64_t round = 0;  // read-index / check-quorum round
};
struct HeartbeatAck {
  uint64_t round = 0;
  Slot commit_index = 0;  // the follower's, for status
};

// Catch-up of chosen values, any replica to any replica, in bounded batches.
struct Fetch {
  Slot from = 0;
  Slot to = 0;  // inclusive
};
struct FetchReply {
  std::vector<SlotValue> entries;  // chosen, from `from` upward, no gaps
  Slot snapshot_index = 0;         // non-zero: `from` is compacted, fetch this snapshot
  Slot commit_index = 0;           // the sender's
};

// Snapshot transfer, pulled by the receiver in resumable chunks (P6).
struct SnapshotFetch {
  Slot index = 0;       // the snapshot wanted (0: the newest)
  uint64_t offset = 0;  // resume here
};
struct SnapshotChunk {
  Slot index = 0;
  uint64_t total_bytes = 0;
  uint64_t offset = 0;
  std::string data;
};

// Pre-vote (P9): before a follower campaigns it asks whether a majority
// would promise it, carrying in the message's ballot the ballot it would
// campaign with. Nobody raises a promise for it. A replica grants it only if
// it heard from no leader for the last Config::prevote_quiet_ticks (a leader
// itself never grants), so a replica that restarts or heals from a
// partition cannot depose a leader that a majority still hears.
struct PreVote {
  Slot commit_index = 0;  // the asker's, for logs
};
struct PreVoteReply {
  bool granted = false;
  Ballot promised;  // the replier's promise: a campaign must go above it
};

using Payload =
    std::variant<Phase1a, Phase1b, Phase2a, Phase2b, Nack, Heartbeat, HeartbeatAck, Fetch,
                 FetchReply, SnapshotFetch, SnapshotChunk, PreVote, PreVoteReply>;

struct Message {
  NodeId from = 0;
  NodeId to = 0;  // not on the wire: the transport knows the peer
  Ballot ballot;
  Payload payload;

  std::string describe() const;
};

inline constexpr uint8_t kWireVersion = 2;  // 2: pre-vote, command ids with ballots

std::string encode_message(const Message& m);
Result<Message> decode_message(std::span<const uint8_t> bytes, NodeId to);

const char* payload_name(const Payload& p);

}  // namespace dtx::consensus
