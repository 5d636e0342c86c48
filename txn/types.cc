#include "txn/types.h"

namespace dtx::txn {

const char* outcome_name(Outcome o) {
  return o == Outcome::committed ? "committed" : "aborted";
}

std::optional<Outcome> parse_outcome(std::string_view name) {
  if (name == "committed") return Outcome::committed;
  if (name == "aborted") return Outcome::aborted;
  return std::nullopt;
}

std::string make_gid(std::string_view cluster, std::string_view txid, std::string_view agent) {
  std::string gid = "dtx:";
  gid += cluster;
  gid += ':';
  gid += txid;
  gid += ':';
  gid += agent;
  return gid;
}

}  // namespace dtx::txn
