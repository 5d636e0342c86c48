// Fencing: which coordinator requests the agent takes (docs/agent.md,
// "Fencing"; txn/agent_api.h).
//
//   - A request naming another agent_id is refused (409 wrong_agent): the
//     coordinator's map of names to addresses is wrong, and an answer from
//     this agent would be taken for another's.
//   - exec, prepare, batch and commit-one-phase from a ballot lower than the
//     highest seen are refused (409 stale_ballot): a deposed leader must not
//     run statements or collect votes. Decisions are never refused for their
//     ballot (the decision is the log's, whoever carries it).
//   - Every ballot seen, decisions', listings' and branch probes' included,
//     raises the highest. The highest is durable: a request that raises it
//     is admitted only once the store (the resource: a PostgreSQL table, or
//     the SQLite agent's WAL) has made it durable; if the store fails, the
//     request is refused (503 unavailable) and the highest stays where it
//     was. restore() sets it from the store at start, before serving. So a
//     deposed leader stays fenced through any number of agent restarts.
//
// Threading: thread-safe. Two locks: mu_, a leaf (branch_table.h, LOCK
// ORDER), and save_mu_, held across the store's write of a raised ballot so
// that saves happen one at a time and in ballot order. save_mu_ is taken
// only by admit(), with no other agent lock held (steps admit first, before
// taking their branch's lock); under it only the store's own locks.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "common/status.h"
#include "txn/agent_api.h"

namespace dtx::participant {

class Fencing {
 public:
  // Makes a raised ballot durable; ok only once it is.
  using Store = std::function<Status(const txn::BallotId&)>;
  Fencing(std::string agent_id, Store store)
      : agent_id_(std::move(agent_id)), store_(std::move(store)) {}

  // A request the fence refuses: its HTTP status (409, or 503 when a raised
  // ballot could not be stored) and error.
  struct Refusal {
    int status = 409;
    txn::ApiError error;
  };

  // At start, before serving: the highest ballot the store holds.
  void restore(const txn::BallotId& stored);
  // nullopt: admitted (and the ballot, if higher, stored and recorded); else
  // the refusal to answer. An empty agent_id (GETs may omit it) is not
  // checked. fence_ballot: the step is fenced (exec, prepare, batch,
  // commit-one-phase), so a lower ballot is refused.
  std::optional<Refusal> admit(const txn::Fence& fence, bool fence_ballot);
  // The check again, for a step admitted earlier that has now taken its
  // branch's lock: refused if a higher ballot was stored meanwhile (a new
  // leader's sweep that came between the admission and the step).
  std::optional<Refusal> still_current(const txn::BallotId& ballot) const;
  // Whether admitting `ballot` would store it (it is higher than the
  // highest): such a request must run where it may wait for the store.
  bool would_raise(const txn::BallotId& ballot) const;
  txn::BallotId highest() const;
  const std::string& agent_id() const { return agent_id_; }

 private:
  std::optional<Refusal> stale_locked(const txn::BallotId& ballot) const;  // requires mu_

  const std::string agent_id_;
  const Store store_;
  std::mutex save_mu_;  // one store write at a time; not a leaf (see above)
  mutable std::mutex mu_;
  txn::BallotId highest_;  // guarded by mu_; always durable
};

}  // namespace dtx::participant
