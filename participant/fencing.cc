#include "participant/fencing.h"

namespace dtx::participant {

std::optional<txn::ApiError> Fencing::admit(const txn::Fence& fence, bool fence_ballot) {
  if (!fence.agent_id.empty() && fence.agent_id != agent_id_) {
    txn::ApiError e;
    e.code = std::string(txn::errc::wrong_agent);
    e.message = "this is agent " + agent_id_ + ", not " + fence.agent_id;
    return e;
  }
  std::lock_guard lock(mu_);
  if (fence_ballot && fence.ballot < highest_) {
    txn::ApiError e;
    e.code = std::string(txn::errc::stale_ballot);
    e.message = "ballot " + fence.ballot.describe() + " is older than " + highest_.describe() +
                ", already seen: a newer coordinator leader exists";
    e.highest_ballot = highest_;
    return e;
  }
  if (highest_ < fence.ballot) highest_ = fence.ballot;
  return std::nullopt;
}

txn::BallotId Fencing::highest() const {
  std::lock_guard lock(mu_);
  return highest_;
}

}  // namespace dtx::participant
