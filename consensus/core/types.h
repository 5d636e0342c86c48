// The vocabulary of dtx's Multi-Paxos: ballots, slots, log values.
//
// Words (docs/consensus.md has the glossary): a *slot* is a position in the
// replicated log; a *ballot* (round, node) orders proposers; an acceptor
// *promises* a ballot in phase 1 and *accepts* a (ballot, value) for a slot
// in phase 2; a value is *chosen* once a majority accepted it in one ballot.
// The *commit index* is the highest slot such that every slot up to it is
// known to be chosen.
#pragma once

#include <compare>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace dtx::consensus {

using Slot = uint64_t;
using NodeId = uint32_t;

// Ballots are totally ordered by (round, node); the zero ballot is below all.
struct Ballot {
  uint64_t round = 0;
  NodeId node = 0;

  auto operator<=>(const Ballot&) const = default;
  bool is_zero() const { return round == 0 && node == 0; }
  std::string describe() const;
};
std::ostream& operator<<(std::ostream& os, const Ballot& b);

// Immutable bytes shared between the log, messages and the state machine.
using Bytes = std::shared_ptr<const std::string>;
Bytes make_bytes(std::string s);

// What a slot holds.
enum class ValueKind : uint8_t {
  noop = 1,      // fills a hole found by a new leader; applies nothing
  barrier = 2,   // a new leader's first entry of its own ballot; serving starts once applied
  commands = 3,  // a batch of client commands
};

// A command's identity: the ballot of the leader that queued it and a
// sequence number within that ballot. Unique across restarts of the proposer
// with no logging (P10): a leader queues commands only while it serves a
// ballot it won itself, and a restarted replica campaigns with a round above
// its own durable promise, so no two leaderships, in one process or across
// restarts, share a ballot. The replica that proposed a command resolves it
// when a command with exactly this identity is applied (P7).
struct CommandId {
  Ballot ballot;     // ballot.node is the proposer
  uint64_t seq = 0;  // 1, 2, ... within the ballot

  auto operator<=>(const CommandId&) const = default;
  NodeId origin() const { return ballot.node; }
  std::string describe() const;  // "3.2#17"
};
std::ostream& operator<<(std::ostream& os, const CommandId& id);

// One client command inside a batch.
struct Command {
  CommandId id;
  std::string payload;
};

// Bytes a slot's value adds around its commands, and each command around its
// payload, in the encoding below. Config::command_bytes_max() uses them.
inline constexpr size_t kValueHeaderBytes = 1 + 4;            // kind, count
inline constexpr size_t kCommandHeaderBytes = 8 + 4 + 8 + 4;  // round, node, seq, length

// A slot's value, decoded. Encoded form (the bytes stored and sent):
//   u8 kind
//   barrier:  u64 round, u32 node (the ballot it belongs to)
//   commands: u32 count, then count x (u64 round, u32 node, u64 seq, u32 len,
//             bytes): each command's id and payload
struct Value {
  ValueKind kind = ValueKind::noop;
  Ballot barrier;                 // kind == barrier
  std::vector<Command> commands;  // kind == commands

  std::string describe() const;
};

std::string encode_value(const Value& v);
// False if the bytes are not a well-formed value.
bool decode_value(const std::string& bytes, Value* out);
Bytes noop_value();
Bytes barrier_value(const Ballot& b);

// Bytes of a value as a short digest for logs and the simulator's oracle.
uint64_t value_digest(const std::string& bytes);

}  // namespace dtx::consensus
