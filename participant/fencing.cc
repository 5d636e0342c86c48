#include "participant/fencing.h"

#include <spdlog/spdlog.h>

namespace dtx::participant {

void Fencing::restore(const txn::BallotId& stored) {
  std::lock_guard lock(mu_);
  if (highest_ < stored) highest_ = stored;
}

std::optional<Fencing::Refusal> Fencing::stale_locked(const txn::BallotId& ballot) const {
  if (!(ballot < highest_)) return std::nullopt;
  Refusal r;
  r.error.code = std::string(txn::errc::stale_ballot);
  r.error.message = "ballot " + ballot.describe() + " is older than " + highest_.describe() +
                    ", already seen: a newer coordinator leader exists";
  r.error.highest_ballot = highest_;
  return r;
}

std::optional<Fencing::Refusal> Fencing::admit(const txn::Fence& fence, bool fence_ballot) {
  if (!fence.agent_id.empty() && fence.agent_id != agent_id_) {
    Refusal r;
    r.error.code = std::string(txn::errc::wrong_agent);
    r.error.message = "this is agent " + agent_id_ + ", not " + fence.agent_id;
    return r;
  }
  {
    std::lock_guard lock(mu_);
    if (fence_ballot) {
      if (auto r = stale_locked(fence.ballot)) return r;
    }
    if (!(highest_ < fence.ballot)) return std::nullopt;
  }
  // A higher ballot: durable before the request is admitted (and so before
  // it is answered). Saves go one at a time; a save that finds a higher
  // one stored meanwhile has nothing left to do.
  std::lock_guard save(save_mu_);
  {
    std::lock_guard lock(mu_);
    if (fence_ballot) {
      if (auto r = stale_locked(fence.ballot)) return r;
    }
    if (!(highest_ < fence.ballot)) return std::nullopt;
  }
  if (Status s = store_(fence.ballot); !s.ok()) {
    spdlog::error("agent {}: could not store the fence {}: {}", agent_id_, fence.ballot.describe(),
                  s.describe());
    Refusal r;
    r.status = 503;
    r.error.code = std::string(txn::errc::unavailable);
    r.error.message = "ballot " + fence.ballot.describe() +
                      " is new here and could not be stored (" + s.message() +
                      "): nothing ran, ask again";
    return r;
  }
  {
    std::lock_guard lock(mu_);
    highest_ = fence.ballot;
  }
  spdlog::info("agent {}: fence raised to ballot {} (stored)", agent_id_, fence.ballot.describe());
  return std::nullopt;
}

std::optional<Fencing::Refusal> Fencing::still_current(const txn::BallotId& ballot) const {
  std::lock_guard lock(mu_);
  return stale_locked(ballot);
}

bool Fencing::would_raise(const txn::BallotId& ballot) const {
  std::lock_guard lock(mu_);
  return highest_ < ballot;
}

txn::BallotId Fencing::highest() const {
  std::lock_guard lock(mu_);
  return highest_;
}

}  // namespace dtx::participant
