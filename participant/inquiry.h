// Inquirer: asks the coordinator group for the outcome of a prepared
// branch (GET /v1/transactions/{txid}/outcome, txn/agent_api.h).
//
// It asks one replica; a follower answers 307 with the leader in
// Location, and the inquiry follows it at once (at most kRedirectsMax
// hops, and only to a replica of the configured list: the request carries
// the cluster token), so one inquiry reaches the leader and the branch's
// backoff is not spent on followers. A replica that does not answer (or answers
// something unusable) makes the next inquiry start at the next replica in
// the list; one that redirected makes it start at the leader it named.
//
// Threading: ask() from any thread; `done` runs once, on a client thread,
// and must not block.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "participant/core/branch_machine.h"
#include "txn/txid.h"

namespace dtx::rest {
class Client;
}

namespace dtx::participant {

class Inquirer {
 public:
  static constexpr int kRedirectsMax = 2;
  struct Reply {
    BranchMachine::Answer answer = BranchMachine::Answer::unreachable;
    std::optional<txn::Txid> watermark;  // when the answer carried one
  };
  Inquirer(std::vector<std::string> coordinators, rest::Client& client, int64_t timeout_ms)
      : coordinators_(std::move(coordinators)), client_(client), timeout_ms_(timeout_ms) {}

  void ask(const std::string& txid, std::function<void(Reply)> done);
  bool empty() const { return coordinators_.empty(); }

 private:
  void ask_at(const std::string& txid, const std::string& peer, int hops,
              std::function<void(Reply)> done);
  // The peer ("host:port") a Location names; nullopt if it has none.
  static std::optional<std::string> peer_of(std::string_view location);

  const std::vector<std::string> coordinators_;
  rest::Client& client_;
  const int64_t timeout_ms_;
  std::atomic<size_t> next_{0};  // where the next inquiry starts
};

}  // namespace dtx::participant
