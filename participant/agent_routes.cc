// The agent's HTTP routes: decode with txn/ (txn/agent_api.h), check
// limits, queue the step to its lane, send its StepAnswer. No protocol
// logic here: that is in agent_steps.cc and agent_decide.cc.
#include "common/logging.h"
#include "participant/agent.h"
#include "rest/json.h"
#include "rest/router.h"
#include "rest/server.h"

namespace dtx::participant {

namespace json = boost::json;
using rest::Replier;
using rest::Request;
using rest::Response;

namespace {

Response to_response(StepAnswer a) {
  return Response::json(a.status, a.body);
}

Response invalid(int status, std::string message) {
  txn::ApiError e;
  e.code = std::string(txn::errc::invalid_argument);
  e.message = std::move(message);
  return Response::json(status, e.to_json());
}

}  // namespace

Status Agent::serve_http() {
  rest::Router router;
  const txn::ApiLimits limits{opt_.params_max, opt_.execs_per_branch_max};
  // Queues a step to `lane`; its answer goes out once the step returned
  // (and so released the branch's lock).
  auto queue = [this](const Replier& reply, Lane lane, std::function<StepAnswer()> step) {
    if (!submit(lane, [reply, step = std::move(step)] { reply(to_response(step())); })) {
      txn::ApiError e;
      e.code = std::string(txn::errc::overloaded);
      e.message = "the agent's work queue is full";
      reply(Response::json(503, e.to_json()));
    }
  };
  // The txid of the path: canonical, and of this agent's cluster.
  auto txid_of = [this](const Request& req, const Replier& reply) -> std::optional<std::string> {
    std::string txid(req.path_param("txid"));
    auto t = txn::Txid::parse(txid);
    if (!t.ok()) {
      reply(invalid(400, t.status().message()));
      return std::nullopt;
    }
    if (t->cluster != opt_.cluster) {
      reply(invalid(400, "txid " + txid + " is not of cluster " + opt_.cluster));
      return std::nullopt;
    }
    return txid;
  };
  // Parses the body and decodes it as T; answers 400 itself on failure.
  auto body_of = [](const Request& req, const Replier& reply,
                    auto decode) -> decltype(decode(json::value())) {
    auto doc = rest::parse_json(req.body);
    if (!doc.ok()) {
      reply(invalid(400, doc.status().message()));
      return doc.status();
    }
    auto r = decode(*doc);
    if (!r.ok()) reply(invalid(400, r.status().message()));
    return r;
  };
  auto sql_too_big = [this](const std::string& sql, const Replier& reply) {
    if (sql.size() <= opt_.sql_bytes_max) return false;
    reply(invalid(413, "sql must be 1 to " + std::to_string(opt_.sql_bytes_max) + " bytes"));
    return true;
  };

  router.add(rest::Method::post, "/v1/branches/{txid}/exec", [=, this](Request req, Replier reply) {
    auto txid = txid_of(req, reply);
    if (!txid) return;
    auto r = body_of(req, reply,
                     [&](const json::value& v) { return txn::ExecRequest::from_json(v, limits); });
    if (!r.ok() || sql_too_big(r->sql, reply)) return;
    // A branch's first exec may wait for a database session or SQLite's
    // write lock, a later one for another branch's row lock: each has its
    // own lane, so neither waits behind the other and decisions never wait
    // behind either (see Threading).
    const Lane lane = r->seq == 1 && !table_.find(*txid) ? Lane::start : Lane::exec;
    queue(reply, lane, [this, t = *txid, x = std::move(*r)] { return exec(t, x); });
  });
  router.add(
      rest::Method::post, "/v1/branches/{txid}/batch", [=, this](Request req, Replier reply) {
        auto txid = txid_of(req, reply);
        if (!txid) return;
        auto r = body_of(req, reply, [&](const json::value& v) {
          return txn::BatchRequest::from_json(v, limits);
        });
        if (!r.ok()) return;
        for (const txn::Statement& st : r->statements) {
          if (sql_too_big(st.sql, reply)) return;
        }
        queue(reply, Lane::start, [this, t = *txid, x = std::move(*r)] { return batch(t, x); });
      });
  router.add(
      rest::Method::post, "/v1/branches/{txid}/prepare", [=, this](Request req, Replier reply) {
        auto txid = txid_of(req, reply);
        if (!txid) return;
        auto r = body_of(req, reply,
                         [](const json::value& v) { return txn::PrepareRequest::from_json(v); });
        if (!r.ok()) return;
        queue(reply, Lane::decide, [this, t = *txid, x = *r] { return prepare(t, x); });
      });
  router.add(
      rest::Method::post, "/v1/branches/{txid}/commit-one-phase",
      [=, this](Request req, Replier reply) {
        auto txid = txid_of(req, reply);
        if (!txid) return;
        auto r = body_of(req, reply,
                         [](const json::value& v) { return txn::PrepareRequest::from_json(v); });
        if (!r.ok()) return;
        queue(reply, Lane::decide, [this, t = *txid, x = *r] { return commit_one_phase(t, x); });
      });
  // precommit, commit and abort: a txid and a DecisionRequest, on the decide lane.
  auto decision_route =
      [=](std::function<StepAnswer(const std::string&, const txn::DecisionRequest&)> step) {
        return [=](Request req, Replier reply) {
          auto txid = txid_of(req, reply);
          if (!txid) return;
          auto r = body_of(req, reply,
                           [](const json::value& v) { return txn::DecisionRequest::from_json(v); });
          if (!r.ok()) return;
          queue(reply, Lane::decide, [step, t = *txid, x = *r] { return step(t, x); });
        };
      };
  router.add(rest::Method::post, "/v1/branches/{txid}/precommit",
             decision_route([this](const std::string& t, const txn::DecisionRequest& r) {
               return precommit(t, r);
             }));
  router.add(rest::Method::post, "/v1/branches/{txid}/commit",
             decision_route([this](const std::string& t, const txn::DecisionRequest& r) {
               return decide(t, Outcome::committed, r);
             }));
  router.add(rest::Method::post, "/v1/branches/{txid}/abort",
             decision_route([this](const std::string& t, const txn::DecisionRequest& r) {
               return decide(t, Outcome::aborted, r);
             }));
  // Reads never wait for a branch's lock: they run on the HTTP thread,
  // unless they carry a ballot that raises the fence, which is stored
  // before the answer (a new leader's sweep or probe), or ask about a txid
  // with no branch and no outcome record here, whose marker is read (a
  // one-phase commit before a restart): those wait for the database, so
  // they go to the decide lane.
  router.add(rest::Method::get, "/v1/branches/{txid}", [=, this](Request req, Replier reply) {
    auto txid = txid_of(req, reply);
    if (!txid) return;
    auto f = txn::Fence::from_query([&req](std::string_view k) { return req.query_param(k); });
    if (!f.ok()) return reply(invalid(400, f.status().message()));
    if (fencing_.would_raise(f->ballot) || (!table_.find(*txid) && !table_.outcome(*txid))) {
      return queue(reply, Lane::decide,
                   [this, t = *txid, x = std::move(*f)] { return status(t, x); });
    }
    reply(to_response(status(*txid, *f)));
  });
  router.add(rest::Method::get, "/v1/branches", [=, this](Request req, Replier reply) {
    auto r = txn::BranchListRequest::from_query(
        [&req](std::string_view k) { return req.query_param(k); });
    if (!r.ok()) return reply(invalid(400, r.status().message()));
    if (fencing_.would_raise(r->fence.ballot)) {
      return queue(reply, Lane::decide, [this, x = std::move(*r)] { return list(x); });
    }
    reply(to_response(list(*r)));
  });
  router.add(rest::Method::get, std::string(txn::kAgentInfoPath),
             [this](Request, Replier reply) { reply(to_response(info())); });
  router.add_public(rest::Method::get, "/healthz",
                    [](Request, Replier reply) { reply(Response::text(200, "ok\n")); });
  router.add_public(rest::Method::get, "/readyz", [this](Request, Replier reply) {
    if (!submit(Lane::work, [this, reply] {
          if (resource_->healthy()) {
            reply(Response::text(200, "ready\n"));
          } else {
            reply(Response::error(503, "unavailable", resource_->describe() + " does not answer"));
          }
        })) {
      reply(Response::error(503, txn::errc::overloaded, "the agent's work queue is full"));
    }
  });
  router.add(rest::Method::get, "/metrics", [this](Request, Replier reply) {
    reply(Response::text(200, metrics(), "text/plain; version=0.0.4"));
  });

  auto auth = rest::TokenAuth::from_tokens({opt_.token});
  if (!auth.ok()) return auth.status();
  const auto colon = opt_.listen.rfind(':');
  if (colon == std::string::npos) {
    return error(Code::invalid_argument, "listen address must be host:port");
  }
  rest::ServerOptions so;
  so.bind_address = opt_.listen.substr(0, colon);
  so.port = static_cast<uint16_t>(std::stoul(opt_.listen.substr(colon + 1)));
  so.io_threads = opt_.http_threads;
  so.body_bytes_max = opt_.body_bytes_max;
  auto server = rest::Server::start(so, std::move(router), std::move(*auth));
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  return ok_status();
}

}  // namespace dtx::participant
