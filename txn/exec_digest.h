// The exec digest (CORRECTNESS.md T5): a running 64-bit hash of every exec
// of a branch, folded in order. The coordinator folds each exec it sends,
// the agent each exec it runs; prepare carries the coordinator's count and
// digest, and a mismatch votes no.
//
//   uint64_t d = 0;
//   d = exec_digest(d, 1, "UPDATE t SET v = v + $1 WHERE id = $2", {int64_t{5}, int64_t{1}});
//   d = exec_digest(d, 2, ...);
//   PrepareRequest{.exec_count = 2, .digest = d}
//
// Canonical encoding folded per exec: seq, the SQL's length and bytes, the
// parameter count, then per parameter a type tag (0 null, 1 bool, 2
// integer, 3 real, 4 text) and its value (bool and integer as 8 bytes, real
// as its IEEE bits, text as length and bytes); all integers little-endian
// 8 bytes. The hash is two CRC-32C lanes (common/crc32c.h). It detects lost,
// repeated or altered execs, not an adversary. On the wire it is 16
// lower-case hex digits (digest_hex).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "txn/types.h"

namespace dtx::txn {

uint64_t exec_digest(uint64_t digest, uint64_t seq, std::string_view sql,
                     const std::vector<SqlValue>& params);

// "00000000deadbeef": 16 lower-case hex digits.
std::string digest_hex(uint64_t digest);
// Exactly 16 hex digits (either case); nullopt otherwise.
std::optional<uint64_t> parse_digest_hex(std::string_view hex);

}  // namespace dtx::txn
