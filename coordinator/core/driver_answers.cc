// The JSON the coordinator answers clients with (docs/api.md is the
// reference; every shape is built here).
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "coordinator/core/driver.h"

namespace dtx::coordinator {

const char* Driver::phase_name(Phase p) {
  switch (p) {
    case Phase::active:
      return "active";
    case Phase::preparing:
      return "preparing";
    case Phase::deciding:
      return "deciding";
    case Phase::decided:
      return "decided";
    case Phase::aborting:
      return "aborted";
    case Phase::one_phase:
      return "committing";
  }
  return "?";
}

void Driver::answer(uint64_t req, int status, const boost::json::object& body) {
  fx_.answers.push_back(Answer{req, status, boost::json::serialize(body), false});
}

void Driver::answer_error(uint64_t req, int status, std::string_view code, std::string_view message,
                          boost::json::object extra) {
  boost::json::object err;
  err["code"] = code;
  err["message"] = message;
  extra["error"] = std::move(err);
  answer(req, status, extra);
}

void Driver::answer_not_leader(uint64_t req) {
  boost::json::object err;
  err["code"] = "not_leader";
  err["message"] = "this coordinator replica is not the serving leader";
  boost::json::object body;
  body["error"] = std::move(err);
  fx_.answers.push_back(Answer{req, 503, boost::json::serialize(body), true});
}

boost::json::object Driver::reason_json(const AbortReason& r) {
  boost::json::object o;
  if (!r.participant.empty()) o["participant"] = r.participant;
  o["code"] = r.code;
  o["message"] = r.message;
  if (!r.sqlstate.empty()) o["sqlstate"] = r.sqlstate;
  boost::json::object wrap;
  wrap["reason"] = std::move(o);
  return wrap;
}

boost::json::object Driver::participant_json(const std::string& name) {
  boost::json::object o;
  o["participant"] = name;
  return o;
}

boost::json::array Driver::results_json(const Txn& t) {
  boost::json::array out;
  for (const Branch& b : t.branches) {
    boost::json::object br;
    br["participant"] = b.name;
    boost::json::array stmts;
    for (const txn::StatementResult& s : b.results) {
      if (s.ok) {
        stmts.push_back(txn::rows_to_json(s.rows));
      } else {
        boost::json::object e;
        e["code"] = "sql_error";
        e["message"] = s.error.message;
        if (!s.error.sqlstate.empty()) e["sqlstate"] = s.error.sqlstate;
        boost::json::object wrap;
        wrap["error"] = std::move(e);
        stmts.push_back(std::move(wrap));
      }
    }
    br["statements"] = std::move(stmts);
    out.push_back(std::move(br));
  }
  return out;
}

void Driver::answer_outcome(uint64_t req, const Txid& id, Outcome o, const AbortReason& reason,
                            const Txn* t, const std::string* stored_results) {
  boost::json::object body;
  body["txid"] = id.str();
  body["outcome"] = txn::outcome_name(o);
  if (t) {
    body["results"] = results_json(*t);
  } else if (stored_results && !stored_results->empty()) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(*stored_results, ec);
    if (!ec) body["results"] = std::move(v);
  }
  if (o == Outcome::committed) return answer(req, 200, body);
  boost::json::object r = reason_json(reason);
  body["reason"] = std::move(r["reason"]);
  boost::json::object err;
  err["code"] = "aborted";
  err["message"] = reason.message.empty() ? "the transaction aborted"
                                          : "the transaction aborted: " + reason.message;
  body["error"] = std::move(err);
  answer(req, 409, body);
}

void Driver::answer_abort_result(uint64_t req, const Txid& id, Outcome o,
                                 const AbortReason& reason) {
  boost::json::object body;
  body["txid"] = id.str();
  body["outcome"] = txn::outcome_name(o);
  if (o == Outcome::aborted) {
    boost::json::object r = reason_json(reason);
    body["reason"] = std::move(r["reason"]);
    return answer(req, 200, body);
  }
  boost::json::object err;
  err["code"] = "already_committed";
  err["message"] = "the transaction has committed and cannot be aborted";
  body["error"] = std::move(err);
  answer(req, 409, body);
}

void Driver::answer_unknown(uint64_t req, const Txid& id) {
  boost::json::object body;
  body["txid"] = id.str();
  body["outcome"] = "unknown";
  body["message"] =
      "the coordinator leader changed before the outcome was known; ask GET "
      "/v1/transactions/" +
      id.str() + " until it is decided";
  answer(req, 202, body);
}

boost::json::object Driver::begin_json(const Txn& t, const Now& now) {
  boost::json::object body;
  body["txid"] = t.txid.str();
  body["protocol"] = protocol_name(t.protocol);
  body["state"] = "active";
  body["timeout_ms"] = t.timeout_ms;
  body["expires_in_ms"] = std::max<int64_t>(0, t.deadline_ms - now.mono_ms);
  return body;
}

boost::json::object Driver::inquiry_json(const Txid& id, std::string_view outcome) const {
  txn::InquiryAnswer a;
  a.txid = id.str();
  a.outcome = outcome == "committed"   ? txn::InquiryOutcome::committed
              : outcome == "aborted"   ? txn::InquiryOutcome::aborted
              : outcome == "forgotten" ? txn::InquiryOutcome::forgotten
                                       : txn::InquiryOutcome::pending;
  if (table_->watermark().valid()) a.watermark = table_->watermark();
  return a.to_json();
}

boost::json::object Driver::aborted_status_json(const Txid& id, const AbortReason& reason) {
  boost::json::object body;
  body["txid"] = id.str();
  body["state"] = "aborted";
  body["outcome"] = "aborted";
  boost::json::object r = reason_json(reason);
  body["reason"] = std::move(r["reason"]);
  body["participants"] = boost::json::array();
  body["in_doubt"] = false;
  return body;
}

namespace {

const char* vote_text(int v) {
  switch (v) {
    case 1:
      return "pending";
    case 2:
      return "yes";
    case 3:
      return "no";
    case 4:
      return "read_only";
    default:
      return "none";
  }
}

}  // namespace

boost::json::object Driver::status_json(const Txid& id, const Txn* t, const TxnEntry* e,
                                        const Now& now) const {
  boost::json::object body;
  body["txid"] = id.str();
  boost::json::array parts;
  std::string state;
  bool in_doubt = false;
  if (t) {
    body["protocol"] = protocol_name(t->protocol);
    body["created_at_ms"] = t->created_wall_ms;
    if (t->phase == Phase::decided) {
      state = t->acks_done ? "completed" : "decided";
      in_doubt = !t->acks_done;
    } else {
      state = phase_name(t->phase);
      in_doubt = t->phase == Phase::preparing || t->phase == Phase::deciding ||
                 t->phase == Phase::one_phase;
    }
    for (const Branch& b : t->branches) {
      boost::json::object p;
      p["name"] = b.name;
      p["vote"] = vote_text(static_cast<int>(b.vote));
      std::string bstate = !b.touched                  ? "not_reached"
                           : b.hazard                  ? "heuristic_hazard"
                           : b.vote == Vote::read_only ? "read_only"
                           : b.acked                   ? "acknowledged"
                           : b.precommitted            ? "precommitted"
                           : b.vote == Vote::yes       ? "prepared"
                           : b.vote == Vote::no        ? "voted_no"
                           : b.vote == Vote::pending   ? "preparing"
                                                       : "active";
      p["state"] = bstate;
      p["exec_count"] = b.exec_count;
      if (b.prepared_at_ms && !b.acked && now.mono_ms) {
        p["prepared_for_ms"] = now.mono_ms - b.prepared_at_ms;
      }
      if (b.attempts > 1) p["decision_attempts"] = b.attempts;
      parts.push_back(std::move(p));
    }
  }
  if (e) {
    const DecisionRecord& d = e->decision;
    body["protocol"] = protocol_name(d.protocol);
    body["outcome"] = txn::outcome_name(d.outcome);
    body["decided_at_ms"] = d.decided_at_ms;
    if (!body.contains("created_at_ms")) body["created_at_ms"] = d.decided_at_ms;
    if (!t) {
      state = e->completed ? "completed" : "decided";
      in_doubt = !e->completed;
      for (const Enlisted& p : d.participants) {
        boost::json::object po;
        po["name"] = p.name;
        po["state"] = e->completed ? "acknowledged" : "unknown";
        parts.push_back(std::move(po));
      }
    }
    if (d.outcome == Outcome::aborted) {
      boost::json::object r = reason_json(d.reason);
      body["reason"] = std::move(r["reason"]);
    }
    if (!d.operator_name.empty()) {
      body["heuristic"] =
          boost::json::object{{"operator", d.operator_name}, {"reason", d.operator_reason}};
    }
    if (table_->hazards().count(id)) body["heuristic_hazard"] = true;
  } else if (t && t->outcome) {
    body["outcome"] = txn::outcome_name(*t->outcome);
    boost::json::object r = reason_json(t->reason);
    body["reason"] = std::move(r["reason"]);
  } else {
    body["outcome"] = nullptr;
  }
  body["state"] = state;
  body["in_doubt"] = in_doubt;
  body["participants"] = std::move(parts);
  return body;
}

}  // namespace dtx::coordinator
