#include "participant/resource.h"

namespace dtx::participant {

const char* outcome_name(Outcome o) {
  return o == Outcome::committed ? "committed" : "aborted";
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

}  // namespace dtx::participant
