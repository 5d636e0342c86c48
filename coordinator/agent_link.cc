#include "coordinator/agent_link.h"

#include <boost/json/serialize.hpp>

#include "rest/json.h"

namespace dtx::coordinator {

namespace {

txn::Fence fence_of(const AgentCall& c) {
  txn::Fence f;
  f.agent_id = c.agent_id;
  f.ballot = txn::BallotId{c.ballot.round, c.ballot.node};
  if (c.watermark.valid()) f.watermark = c.watermark;
  return f;
}

std::string_view step_of(AgentCall::Kind k) {
  switch (k) {
    case AgentCall::Kind::exec:
      return "exec";
    case AgentCall::Kind::prepare:
      return "prepare";
    case AgentCall::Kind::batch:
      return "batch";
    case AgentCall::Kind::precommit:
      return "precommit";
    case AgentCall::Kind::commit:
      return "commit";
    case AgentCall::Kind::abort:
      return "abort";
    case AgentCall::Kind::commit_one_phase:
      return "commit-one-phase";
    case AgentCall::Kind::list:
    case AgentCall::Kind::probe:
      return "";
  }
  return "";
}

}  // namespace

rest::ClientRequest encode_call(const AgentCall& c) {
  rest::ClientRequest req;
  req.timeout_ms = c.timeout_ms;
  if (c.kind == AgentCall::Kind::list) {
    txn::BranchListRequest l;
    l.state = c.state_filter;
    l.after = c.after;
    l.limit = c.list_limit;
    l.fence = fence_of(c);
    req.method = rest::Method::get;
    req.target = l.path();
    return req;
  }
  if (c.kind == AgentCall::Kind::probe) {
    // GET of one branch with the fencing parameters: raises the agent's
    // fence, so the older leader can no longer commit it in one phase.
    req.method = rest::Method::get;
    req.target = txn::branch_path(c.txid.str(), fence_of(c));
    return req;
  }
  req.method = rest::Method::post;
  req.target = txn::branch_step_path(c.txid.str(), step_of(c.kind));
  boost::json::object body;
  switch (c.kind) {
    case AgentCall::Kind::exec: {
      txn::ExecRequest e;
      e.fence = fence_of(c);
      e.seq = c.seq;
      e.sql = c.statement.sql;
      e.params = c.statement.params;
      body = e.to_json();
      break;
    }
    case AgentCall::Kind::prepare:
    case AgentCall::Kind::commit_one_phase: {
      txn::PrepareRequest p;
      p.fence = fence_of(c);
      p.exec_count = c.exec_count;
      p.digest = c.digest;
      body = p.to_json();
      break;
    }
    case AgentCall::Kind::batch: {
      txn::BatchRequest b;
      b.fence = fence_of(c);
      b.statements = c.statements;
      b.one_phase = c.one_phase;
      body = b.to_json();
      break;
    }
    default: {
      txn::DecisionRequest d;
      d.fence = fence_of(c);
      body = d.to_json();
      break;
    }
  }
  req.body = boost::json::serialize(body);
  return req;
}

AgentReply decode_reply(AgentCall::Kind kind, const Result<rest::Response>& r) {
  AgentReply out;
  if (!r.ok()) {
    switch (r.status().code()) {
      case Code::unavailable:
      case Code::busy:
        out.delivery = AgentReply::Delivery::not_sent;
        break;
      case Code::timeout:
        out.delivery = AgentReply::Delivery::unknown;
        out.timed_out = true;
        break;
      default:
        out.delivery = AgentReply::Delivery::unknown;
        break;
    }
    return out;
  }
  const rest::Response& resp = *r;
  out.http_status = resp.status;
  auto doc = rest::parse_json(resp.body, rest::JsonLimits{32u << 20, 64});
  if (resp.status != 200) {
    if (doc.ok()) {
      if (auto e = txn::ApiError::from_json(*doc); e.ok()) out.error = std::move(*e);
    }
    if (!out.error) {
      out.error = txn::ApiError{};
      out.error->code = "http_" + std::to_string(resp.status);
      out.error->message = "the agent answered " + std::to_string(resp.status);
    }
    return out;
  }
  auto malformed = [&] {
    AgentReply bad;
    bad.delivery = AgentReply::Delivery::unknown;
    return bad;
  };
  if (!doc.ok()) return malformed();
  switch (kind) {
    case AgentCall::Kind::exec:
      out.body = resp.body;
      break;
    case AgentCall::Kind::prepare: {
      auto v = txn::VoteAnswer::from_json(*doc);
      if (!v.ok()) return malformed();
      out.vote = std::move(*v);
      break;
    }
    case AgentCall::Kind::batch: {
      auto b = txn::BatchAnswer::from_json(*doc);
      if (!b.ok()) return malformed();
      out.batch = std::move(*b);
      break;
    }
    case AgentCall::Kind::precommit: {
      auto p = txn::PrecommitAnswer::from_json(*doc);
      if (!p.ok()) return malformed();
      out.precommit = std::move(*p);
      break;
    }
    case AgentCall::Kind::commit:
    case AgentCall::Kind::abort: {
      auto d = txn::DecisionAnswer::from_json(*doc);
      if (!d.ok()) return malformed();
      out.decision = std::move(*d);
      break;
    }
    case AgentCall::Kind::commit_one_phase: {
      auto o = txn::OnePhaseAnswer::from_json(*doc);
      if (!o.ok()) return malformed();
      out.one_phase = std::move(*o);
      break;
    }
    case AgentCall::Kind::probe: {
      auto b = txn::BranchStatus::from_json(*doc);
      if (!b.ok()) return malformed();
      out.status = std::move(*b);
      break;
    }
    case AgentCall::Kind::list: {
      auto l = txn::BranchListAnswer::from_json(*doc);
      if (!l.ok()) return malformed();
      out.list = std::move(*l);
      break;
    }
  }
  return out;
}

}  // namespace dtx::coordinator
