#include "txn/txid.h"

#include <charconv>
#include <limits>
#include <tuple>

namespace dtx::txn {

namespace {

bool id_char(char c, bool dot_ok) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || (dot_ok && c == '.');
}

bool valid_id(std::string_view id, size_t max, bool dot_ok) {
  if (id.empty() || id.size() > max) return false;
  for (char c : id) {
    if (!id_char(c, dot_ok)) return false;
  }
  return true;
}

// A canonical decimal (no sign, no leading zero unless "0") no greater than max.
bool parse_number(std::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > max) return false;
  *out = v;
  return true;
}

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

}  // namespace

bool valid_cluster_id(std::string_view id) {
  return valid_id(id, kClusterIdMax, /*dot_ok=*/false);
}

bool valid_agent_id(std::string_view id) {
  return valid_id(id, kAgentIdMax, /*dot_ok=*/true);
}

std::string BallotId::describe() const {
  return std::to_string(round) + "." + std::to_string(node);
}

std::ostream& operator<<(std::ostream& os, const BallotId& b) {
  return os << b.describe();
}

Result<Txid> Txid::parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return error(Code::invalid_argument,
                 "txid must be <cluster>.<round>.<node>.<seq> (" + std::string(why) + ")");
  };
  if (text.empty() || text.size() > kTxidTextMax) return bad("1 to 83 characters");
  std::string_view parts[4];
  size_t start = 0;
  for (int i = 0; i < 4; ++i) {
    const size_t dot = i < 3 ? text.find('.', start) : std::string_view::npos;
    if (i < 3 && dot == std::string_view::npos) return bad("four parts separated by dots");
    parts[i] = text.substr(start, dot == std::string_view::npos ? text.npos : dot - start);
    start = dot + 1;
  }
  Txid t;
  if (!valid_cluster_id(parts[0])) return bad("the cluster id is 1-32 characters of [A-Za-z0-9_-]");
  t.cluster = std::string(parts[0]);
  uint64_t node = 0;
  if (!parse_number(parts[1], kInt64Max, &t.round) || t.round == 0) {
    return bad("round is a decimal from 1 to 2^63-1");
  }
  if (!parse_number(parts[2], std::numeric_limits<uint32_t>::max(), &node)) {
    return bad("node is a decimal from 0 to 2^32-1");
  }
  t.node = static_cast<uint32_t>(node);
  if (!parse_number(parts[3], kInt64Max, &t.seq) || t.seq == 0) {
    return bad("seq is a decimal from 1 to 2^63-1");
  }
  return t;
}

bool Txid::valid() const {
  return valid_cluster_id(cluster) && round >= 1 && round <= kInt64Max && seq >= 1 &&
         seq <= kInt64Max;
}

std::string Txid::str() const {
  DTX_ASSERT(valid(), "formatting an invalid txid");
  std::string s = cluster;
  s += '.';
  s += std::to_string(round);
  s += '.';
  s += std::to_string(node);
  s += '.';
  s += std::to_string(seq);
  return s;
}

std::strong_ordering operator<=>(const Txid& a, const Txid& b) {
  return std::tie(a.round, a.node, a.seq, a.cluster) <=>
         std::tie(b.round, b.node, b.seq, b.cluster);
}

std::ostream& operator<<(std::ostream& os, const Txid& t) {
  return os << (t.valid() ? t.str() : std::string("<invalid txid>"));
}

bool valid_txid_text(std::string_view text) {
  return Txid::parse(text).ok();
}

}  // namespace dtx::txn
