// The coordinator's REST API (docs/api.md is the reference). Handlers run
// on HTTP threads: they parse and check the request, then hand a typed
// request to the drivers on the loop (Impl::request). No protocol logic
// here.
#include <boost/json/serialize.hpp>

#include "coordinator/coordinator_impl.h"
#include "rest/json.h"
#include "txn/sql_json.h"

namespace dtx::coordinator {

namespace {

using rest::Replier;
using rest::Request;
using rest::Response;

constexpr size_t kSqlBytesMax = 256 * 1024;
constexpr size_t kParamsMax = 1024;
constexpr size_t kKeyBytesMax = 128;

Response bad(std::string message) {
  return Response::error(400, "invalid_argument", message);
}

// An optional JSON object body: "" is {}.
Result<boost::json::value> body_object(const Request& req) {
  if (req.body.empty()) return boost::json::value(boost::json::object());
  auto doc = rest::parse_json(req.body, rest::JsonLimits{4u << 20, 32});
  if (!doc.ok()) return doc.status();
  if (!doc->is_object()) return error(Code::invalid_argument, "request body must be a JSON object");
  return doc;
}

Result<std::string> idempotency_key(const Request& req) {
  auto k = req.header("Idempotency-Key");
  if (!k) return std::string();
  if (k->empty() || k->size() > kKeyBytesMax) {
    return error(Code::invalid_argument, "Idempotency-Key must be 1-128 characters");
  }
  for (char c : *k) {
    if (c < 0x21 || c > 0x7e) {
      return error(Code::invalid_argument, "Idempotency-Key must be printable ASCII");
    }
  }
  return std::string(*k);
}

Result<std::optional<Protocol>> protocol_of(const boost::json::value& doc) {
  auto p = rest::get_string_or(doc, "protocol", "");
  if (!p.ok()) return p.status();
  if (p->empty()) return std::optional<Protocol>();
  auto parsed = parse_protocol(*p);
  if (!parsed) return error(Code::invalid_argument, "protocol must be \"2pc\" or \"3pc\"");
  return std::optional<Protocol>(*parsed);
}

Result<std::optional<int64_t>> timeout_of(const boost::json::value& doc) {
  if (!doc.as_object().contains("timeout_ms") || doc.as_object().at("timeout_ms").is_null()) {
    return std::optional<int64_t>();
  }
  auto t = rest::get_int64(doc, "timeout_ms", 1, 3'600'000);
  if (!t.ok()) return t.status();
  return std::optional<int64_t>(*t);
}

Result<bool> wait_completed(const boost::json::value& doc) {
  auto w = rest::get_string_or(doc, "wait", "decided");
  if (!w.ok()) return w.status();
  if (*w == "decided") return false;
  if (*w == "completed") return true;
  return error(Code::invalid_argument, "wait must be \"decided\" or \"completed\"");
}

Result<Statement> statement_of(const boost::json::value& doc, const std::string& where) {
  auto sql = rest::get_string(doc, "sql");
  if (!sql.ok()) return error(Code::invalid_argument, where + sql.status().message());
  if (sql->empty() || sql->size() > kSqlBytesMax) {
    return error(Code::invalid_argument, where + "sql must be 1 to 262144 bytes");
  }
  Statement s;
  s.sql = std::move(*sql);
  const auto& o = doc.as_object();
  if (o.contains("params") && !o.at("params").is_null()) {
    auto params = txn::sql_values_from_json(o.at("params"), where + "params", kParamsMax);
    if (!params.ok()) return params.status();
    s.params = std::move(*params);
  }
  return s;
}

Result<std::vector<SubmitBranch>> branches_of(const boost::json::value& doc, size_t stmts_max) {
  auto arr = rest::get_array(doc, "branches");
  if (!arr.ok()) return arr.status();
  std::vector<SubmitBranch> out;
  for (size_t i = 0; i < (*arr)->size(); ++i) {
    const boost::json::value& b = (**arr)[i];
    const std::string where = "branches[" + std::to_string(i) + "].";
    if (!b.is_object()) return error(Code::invalid_argument, where + " must be an object");
    SubmitBranch sb;
    auto part = rest::get_string(b, "participant");
    if (!part.ok()) return error(Code::invalid_argument, where + part.status().message());
    sb.participant = std::move(*part);
    auto stmts = rest::get_array(b, "statements");
    if (!stmts.ok()) return error(Code::invalid_argument, where + stmts.status().message());
    if ((*stmts)->size() > stmts_max) {
      return error(Code::invalid_argument,
                   where + "statements: at most " + std::to_string(stmts_max) + " per branch");
    }
    for (size_t j = 0; j < (*stmts)->size(); ++j) {
      const boost::json::value& s = (**stmts)[j];
      const std::string sw = where + "statements[" + std::to_string(j) + "].";
      if (!s.is_object()) return error(Code::invalid_argument, sw + " must be an object");
      auto st = statement_of(s, sw);
      if (!st.ok()) return st.status();
      sb.statements.push_back(std::move(*st));
    }
    out.push_back(std::move(sb));
  }
  return out;
}

}  // namespace

rest::Router Coordinator::Impl::build_router() {
  rest::Router r;
  Impl* m = this;

  // Routes only the cluster token opens: agents' inquiries and the admin API.
  auto cluster_only = [m](const Request& req, const Replier& reply) {
    if (m->cluster_auth->check(req.header("Authorization")) == rest::TokenAuth::Verdict::ok) {
      return true;
    }
    reply(Response::error(403, "forbidden", "this route needs the cluster token"));
    return false;
  };

  r.post("/v1/transactions", [m](Request req, Replier reply) {
    auto doc = body_object(req);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    BeginRequest b;
    auto p = protocol_of(*doc);
    if (!p.ok()) return reply(Response::from_status(p.status()));
    auto t = timeout_of(*doc);
    if (!t.ok()) return reply(Response::from_status(t.status()));
    auto k = idempotency_key(req);
    if (!k.ok()) return reply(Response::from_status(k.status()));
    b.protocol = *p;
    b.timeout_ms = *t;
    b.idempotency_key = std::move(*k);
    m->request(std::move(reply), req.target,
               [m, b](uint64_t id) { m->driver->begin(id, b, m->now()); });
  });

  r.post("/v1/transactions/{txid}/exec", [m](Request req, Replier reply) {
    auto doc = body_object(req);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    ExecRequest e;
    e.txid = std::string(req.path_param("txid"));
    auto part = rest::get_string(*doc, "participant");
    if (!part.ok()) return reply(Response::from_status(part.status()));
    e.participant = std::move(*part);
    auto st = statement_of(*doc, "");
    if (!st.ok()) return reply(Response::from_status(st.status()));
    e.statement = std::move(*st);
    m->request(std::move(reply), req.target, [m, e = std::move(e)](uint64_t id) mutable {
      m->driver->exec(id, std::move(e), m->now());
    });
  });

  r.post("/v1/transactions/{txid}/commit", [m](Request req, Replier reply) {
    auto doc = body_object(req);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    auto w = wait_completed(*doc);
    if (!w.ok()) return reply(Response::from_status(w.status()));
    CommitRequest c{std::string(req.path_param("txid")), *w};
    m->request(std::move(reply), req.target,
               [m, c](uint64_t id) { m->driver->commit(id, c, m->now()); });
  });

  r.post("/v1/transactions/{txid}/abort", [m](Request req, Replier reply) {
    auto doc = body_object(req);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    std::string txid(req.path_param("txid"));
    m->request(std::move(reply), req.target,
               [m, txid](uint64_t id) { m->driver->abort(id, txid, m->now()); });
  });

  r.get("/v1/transactions/{txid}", [m](Request req, Replier reply) {
    std::string txid(req.path_param("txid"));
    m->request(std::move(reply), req.target,
               [m, txid](uint64_t id) { m->driver->status(id, txid, m->now()); });
  });

  r.get("/v1/transactions", [m](Request req, Replier reply) {
    ListRequest l;
    if (auto s = req.query_param("state")) l.state = std::string(*s);
    static const std::set<std::string> states = {"",        "active",    "preparing", "deciding",
                                                 "decided", "completed", "aborted",   "in_doubt"};
    if (!states.count(l.state)) {
      return reply(
          bad("state must be one of active, preparing, deciding, decided, completed, "
              "aborted, in_doubt"));
    }
    if (auto s = req.query_param("limit")) {
      try {
        l.limit = std::stoll(std::string(*s));
      } catch (...) {
        return reply(bad("limit must be a number from 1 to 1000"));
      }
      if (l.limit < 1 || l.limit > 1000) return reply(bad("limit must be from 1 to 1000"));
    }
    if (auto s = req.query_param("after")) l.after = std::string(*s);
    if (auto s = req.query_param("older_than_ms")) {
      try {
        l.older_than_ms = std::stoll(std::string(*s));
      } catch (...) {
        return reply(bad("older_than_ms must be a number"));
      }
    }
    m->request(std::move(reply), req.target,
               [m, l](uint64_t id) { m->driver->list(id, l, m->now()); });
  });

  r.post("/v1/submit", [m](Request req, Replier reply) {
    auto doc = body_object(req);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    SubmitRequest s;
    auto p = protocol_of(*doc);
    if (!p.ok()) return reply(Response::from_status(p.status()));
    auto t = timeout_of(*doc);
    if (!t.ok()) return reply(Response::from_status(t.status()));
    auto w = wait_completed(*doc);
    if (!w.ok()) return reply(Response::from_status(w.status()));
    auto k = idempotency_key(req);
    if (!k.ok()) return reply(Response::from_status(k.status()));
    auto order = rest::get_string_or(*doc, "order", "parallel");
    if (!order.ok()) return reply(Response::from_status(order.status()));
    if (*order != "parallel" && *order != "sequential") {
      return reply(bad("order must be \"parallel\" or \"sequential\""));
    }
    s.sequential = *order == "sequential";
    auto b = branches_of(*doc, m->opt.config.driver.statements_max);
    if (!b.ok()) return reply(Response::from_status(b.status()));
    s.protocol = *p;
    s.timeout_ms = *t;
    s.wait_completed = *w;
    s.idempotency_key = std::move(*k);
    s.branches = std::move(*b);
    m->request(std::move(reply), req.target, [m, s = std::move(s)](uint64_t id) mutable {
      m->driver->submit(id, std::move(s), m->now());
    });
  });

  // Agents ask for a prepared branch's outcome (cluster token).
  r.get("/v1/transactions/{txid}/outcome", [m, cluster_only](Request req, Replier reply) {
    if (!cluster_only(req, reply)) return;
    std::string txid(req.path_param("txid"));
    m->request(std::move(reply), req.target,
               [m, txid](uint64_t id) { m->driver->inquiry(id, txid, m->now()); });
  });

  r.get("/v1/cluster", [m](Request req, Replier reply) {
    m->node->post([m, reply] { reply(Response::json(200, m->cluster_json())); });
    (void)req;
  });

  // --- admin (cluster token)
  r.get("/v1/admin/in-doubt", [m, cluster_only](Request req, Replier reply) {
    if (!cluster_only(req, reply)) return;
    m->request(std::move(reply), req.target,
               [m](uint64_t id) { m->driver->in_doubt(id, m->now()); });
  });
  r.get("/v1/admin/participants", [m, cluster_only](Request req, Replier reply) {
    if (!cluster_only(req, reply)) return;
    m->node->post([m, reply] {
      boost::json::array out;
      for (const auto& [name, e] : m->table->registry()) {
        out.push_back(
            boost::json::object{{"name", name}, {"agent_id", e.agent_id}, {"url", e.url}});
      }
      reply(Response::json(200, boost::json::object{{"participants", std::move(out)}}));
    });
  });
  r.post("/v1/admin/participants", [m, cluster_only](Request req, Replier reply) {
    if (!cluster_only(req, reply)) return;
    auto doc = body_object(req);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    auto name = rest::get_string(*doc, "name");
    auto url = rest::get_string(*doc, "url");
    if (!name.ok()) return reply(Response::from_status(name.status()));
    if (!url.ok()) return reply(Response::from_status(url.status()));
    auto agent = rest::get_string_or(*doc, "agent_id", *name);
    if (!agent.ok()) return reply(Response::from_status(agent.status()));
    if (!txn::valid_agent_id(*name) || !txn::valid_agent_id(*agent)) {
      return reply(bad("name and agent_id are 1-64 characters of [A-Za-z0-9._-]"));
    }
    if (url->find(':') == std::string::npos || url->size() > 255) {
      return reply(bad("url must be host:port"));
    }
    ParticipantSetRecord p{*name, *agent, *url};
    m->request(std::move(reply), req.target,
               [m, p](uint64_t id) { m->driver->set_participant(id, p, m->now()); });
  });
  r.add(rest::Method::delete_, "/v1/admin/participants/{name}",
        [m, cluster_only](Request req, Replier reply) {
          if (!cluster_only(req, reply)) return;
          std::string name(req.path_param("name"));
          m->request(std::move(reply), req.target,
                     [m, name](uint64_t id) { m->driver->remove_participant(id, name, m->now()); });
        });
  r.post("/v1/admin/transactions/{txid}/decide", [m, cluster_only](Request req, Replier reply) {
    if (!cluster_only(req, reply)) return;
    auto doc = body_object(req);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    OperatorDecision d;
    d.txid = std::string(req.path_param("txid"));
    auto outcome = rest::get_string(*doc, "outcome");
    auto op = rest::get_string(*doc, "operator");
    auto reason = rest::get_string(*doc, "reason");
    if (!outcome.ok()) return reply(Response::from_status(outcome.status()));
    if (!op.ok()) return reply(Response::from_status(op.status()));
    if (!reason.ok()) return reply(Response::from_status(reason.status()));
    auto o = txn::parse_outcome(*outcome);
    if (!o) return reply(bad("outcome must be \"committed\" or \"aborted\""));
    if (op->size() > kNameBytesMax || reason->size() > kReasonBytesMax) {
      return reply(bad("operator (128 bytes) or reason (1024 bytes) too long"));
    }
    d.outcome = *o;
    d.operator_name = *op;
    d.reason = *reason;
    if (auto parts = rest::get_array(*doc, "participants"); parts.ok()) {
      for (const auto& v : **parts) {
        if (!v.is_string()) return reply(bad("participants must be names"));
        d.participants.emplace_back(v.as_string().c_str());
      }
    }
    m->request(std::move(reply), req.target,
               [m, d](uint64_t id) { m->driver->operator_decision(id, d, m->now()); });
  });
  r.post("/v1/admin/transactions/{txid}/redrive", [m, cluster_only](Request req, Replier reply) {
    if (!cluster_only(req, reply)) return;
    std::string txid(req.path_param("txid"));
    m->request(std::move(reply), req.target,
               [m, txid](uint64_t id) { m->driver->redrive(id, txid, m->now()); });
  });
  r.post("/v1/admin/transactions/{txid}/clear-hazard",
         [m, cluster_only](Request req, Replier reply) {
           if (!cluster_only(req, reply)) return;
           auto doc = body_object(req);
           if (!doc.ok()) return reply(Response::from_status(doc.status()));
           auto parsed = Txid::parse(req.path_param("txid"));
           if (!parsed.ok()) return reply(Response::error(404, "not_found", "no such txid"));
           auto op = rest::get_string(*doc, "operator");
           auto reason = rest::get_string(*doc, "reason");
           if (!op.ok()) return reply(Response::from_status(op.status()));
           if (!reason.ok()) return reply(Response::from_status(reason.status()));
           HazardClearedRecord h{*parsed, *op, *reason};
           m->request(std::move(reply), req.target,
                      [m, h](uint64_t id) { m->driver->clear_hazard(id, h, m->now()); });
         });

  // --- health (no token)
  r.add_public(rest::Method::get, "/healthz",
               [](Request, Replier reply) { reply(Response::text(200, "ok\n")); });
  r.add_public(rest::Method::get, "/readyz", [m](Request, Replier reply) {
    // Ready: a leader is known and this replica can reach it (it hears its
    // heartbeats), or it is the serving leader itself.
    const consensus::NodeStatus st = m->node->status();
    if (st.leader && (*st.leader != m->opt.id || st.serving)) {
      return reply(
          Response::text(200, "ready: leader is replica " + std::to_string(*st.leader) + "\n"));
    }
    reply(Response::text(
        503, st.leader ? "not ready: elected, not serving yet\n" : "not ready: no leader known\n"));
  });
  r.add_public(rest::Method::get, "/metrics", [m](Request, Replier reply) {
    m->node->post(
        [m, reply] { reply(Response::text(200, m->metrics_text(), "text/plain; version=0.0.4")); });
  });
  return r;
}

}  // namespace dtx::coordinator
