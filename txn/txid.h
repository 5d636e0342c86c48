// Txid: the identity of a global transaction (CORRECTNESS.md T2).
//
// A txid is (cluster id, ballot round, ballot node, per-ballot sequence):
// the Paxos leader that begins a transaction names it with its own ballot
// and the next number of a counter it keeps for that ballot. Ballots are
// unique and a ballot has one leader, so txids are unique with nothing
// logged, and ordered by creation: a later leader has a higher ballot, and
// one leader counts up.
//
// Text form (URLs, JSON, logs, PostgreSQL gids, marker rows), canonical:
//
//   <cluster>.<round>.<node>.<seq>          e.g.  c1.7.2.1043
//
//   cluster  1-32 characters of [A-Za-z0-9_-] (no dot, so the text splits
//            unambiguously); valid_cluster_id()
//   round    the ballot's round, 1..2^63-1, decimal
//   node     the ballot's node (the leader's replica id), 0..2^32-1
//   seq      the per-ballot sequence, 1..2^63-1
// Numbers are decimal without sign or leading zeros, so one txid has exactly
// one spelling and the text can key maps and database rows. The whole text
// is at most kTxidTextMax characters.
//
// Ordering: (round, node, seq), then cluster. Within one cluster that is
// creation order; the cluster is compared last only to make the order total
// (txids of different clusters are never compared by dtx).
//
// Threading: plain values, pure functions.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "common/status.h"

namespace dtx::txn {

inline constexpr size_t kClusterIdMax = 32;
inline constexpr size_t kAgentIdMax = 64;
inline constexpr size_t kTxidTextMax = kClusterIdMax + 1 + 19 + 1 + 10 + 1 + 19;  // 83

// 1-32 characters of [A-Za-z0-9_-].
bool valid_cluster_id(std::string_view id);
// An agent's id (its participant name, in gids and in fencing): 1-64
// characters of [A-Za-z0-9._-].
bool valid_agent_id(std::string_view id);

// A ballot as txids carry it: the Paxos ballot (round, node) of the leader
// that issued the txid (consensus/core/types.h Ballot, without the
// dependency). Ordered by round, then node.
struct BallotId {
  uint64_t round = 0;
  uint32_t node = 0;
  auto operator<=>(const BallotId&) const = default;
  bool is_zero() const { return round == 0 && node == 0; }
  std::string describe() const;  // "7.2"
};
std::ostream& operator<<(std::ostream& os, const BallotId& b);

struct Txid {
  std::string cluster;
  uint64_t round = 0;
  uint32_t node = 0;
  uint64_t seq = 0;

  Txid() = default;
  Txid(std::string cluster_id, BallotId ballot, uint64_t sequence)
      : cluster(std::move(cluster_id)), round(ballot.round), node(ballot.node), seq(sequence) {}

  // Parses the canonical text; Code::invalid_argument says what is wrong.
  static Result<Txid> parse(std::string_view text);
  // The canonical text. Precondition: valid() (DTX_ASSERT).
  std::string str() const;
  // cluster is a valid id, round and seq in 1..2^63-1.
  bool valid() const;

  BallotId ballot() const { return BallotId{round, node}; }
  // The txid that follows this one in its ballot.
  Txid next() const { return Txid(cluster, ballot(), seq + 1); }

  friend std::strong_ordering operator<=>(const Txid& a, const Txid& b);
  friend bool operator==(const Txid& a, const Txid& b) = default;
};
std::ostream& operator<<(std::ostream& os, const Txid& t);

// Whether `text` is a canonical txid (Txid::parse(text).ok()).
bool valid_txid_text(std::string_view text);

}  // namespace dtx::txn
