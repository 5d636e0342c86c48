#include "participant/inquiry.h"

#include "common/logging.h"
#include "rest/client.h"
#include "txn/agent_api.h"

namespace dtx::participant {

void Inquirer::ask(const std::string& txid, std::function<void(Reply)> done) {
  if (coordinators_.empty()) return done(Reply{});
  const size_t i = next_.load() % coordinators_.size();
  ask_at(txid, coordinators_[i], 0, std::move(done));
}

std::optional<std::string> Inquirer::peer_of(std::string_view location) {
  // "http://host:port/v1/..." or "host:port/..." or "/v1/..." (no peer).
  if (auto scheme = location.find("://"); scheme != std::string_view::npos) {
    location.remove_prefix(scheme + 3);
  }
  const size_t slash = location.find('/');
  std::string_view authority = location.substr(0, slash);
  if (authority.empty()) return std::nullopt;
  return std::string(authority);
}

void Inquirer::ask_at(const std::string& txid, const std::string& peer, int hops,
                      std::function<void(Reply)> done) {
  rest::ClientRequest req;
  req.method = rest::Method::get;
  req.target = txn::outcome_path(txid);
  req.timeout_ms = timeout_ms_;
  client_.request(peer, std::move(req), [this, txid, peer, hops, done](Result<rest::Response> r) {
    Reply reply;
    auto advance = [&] {
      for (size_t k = 0; k < coordinators_.size(); ++k) {
        if (coordinators_[k] == peer) next_ = k + 1;
      }
    };
    if (!r.ok()) {
      advance();
      return done(reply);
    }
    if (r->status == 307) {
      auto loc = r->headers.get("Location");
      auto leader = loc ? peer_of(*loc) : std::nullopt;
      // Only to a replica of our own list: the request carries the cluster
      // token, which must never go to an address someone else named.
      std::optional<size_t> known;
      for (size_t k = 0; leader && k < coordinators_.size(); ++k) {
        if (coordinators_[k] == *leader) known = k;
      }
      if (known && hops < kRedirectsMax) {
        next_ = *known;  // start there next time too
        return ask_at(txid, *leader, hops + 1, done);
      }
      advance();
      return done(reply);
    }
    auto body = r->json_body();
    auto answer = body.ok() ? txn::InquiryAnswer::from_json(*body) : body.status();
    if (answer.ok()) reply.watermark = answer->watermark;
    if (r->status == 200 && answer.ok() && answer->outcome != txn::InquiryOutcome::forgotten) {
      reply.answer =
          answer->outcome == txn::InquiryOutcome::committed ? BranchMachine::Answer::committed
          : answer->outcome == txn::InquiryOutcome::aborted ? BranchMachine::Answer::aborted
                                                            : BranchMachine::Answer::pending;
    } else if (r->status == 410 || r->status == 404) {
      reply.answer = BranchMachine::Answer::forgotten;
      logging::txn_error(txid, "ALARM: the coordinator has no record of this prepared branch ({})",
                         r->status);
    } else {
      advance();
    }
    done(reply);
  });
}

}  // namespace dtx::participant
