// Fencing: which coordinator requests the agent takes (docs/agent.md,
// "Fencing"; txn/agent_api.h).
//
//   - A request naming another agent_id is refused (409 wrong_agent): the
//     coordinator's map of names to addresses is wrong, and an answer from
//     this agent would be taken for another's.
//   - exec, prepare and batch from a ballot lower than the highest seen are
//     refused (409 stale_ballot): a deposed leader must not run statements
//     or collect votes. Decisions are never refused for their ballot (the
//     decision is the log's, whoever carries it).
//   - Every ballot seen, decisions' and listings' included, raises the
//     highest. It is kept in memory only: after a restart the next request
//     sets it again (a deposed leader's txids are aborted by the new one).
//
// Threading: thread-safe; its lock is a leaf (branch_table.h, LOCK ORDER).
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "txn/agent_api.h"

namespace dtx::participant {

class Fencing {
 public:
  explicit Fencing(std::string agent_id) : agent_id_(std::move(agent_id)) {}

  // nullopt: admitted (and the ballot, if higher, recorded); else the 409
  // error to answer. An empty agent_id (GETs may omit it) is not checked.
  std::optional<txn::ApiError> admit(const txn::Fence& fence, bool fence_ballot);
  txn::BallotId highest() const;
  const std::string& agent_id() const { return agent_id_; }

 private:
  const std::string agent_id_;
  mutable std::mutex mu_;
  txn::BallotId highest_;
};

}  // namespace dtx::participant
