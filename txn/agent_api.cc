#include "txn/agent_api.h"

#include <charconv>
#include <limits>

#include "txn/exec_digest.h"
#include "txn/sql_json.h"

namespace dtx::txn {

namespace json = boost::json;

namespace {

Status bad(std::string message) {
  return error(Code::invalid_argument, std::move(message));
}

Result<const json::object*> object_of(const json::value& v, std::string_view what) {
  if (!v.is_object()) return bad(std::string(what) + " must be a JSON object");
  return &v.get_object();
}

// A field's value; nullptr when missing or null.
const json::value* field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

Result<std::string> get_string(const json::object& o, std::string_view key) {
  const json::value* v = field(o, key);
  if (!v) return bad("field '" + std::string(key) + "' is required");
  if (!v->is_string()) return bad("field '" + std::string(key) + "' must be a string");
  return std::string(v->get_string());
}

Result<std::optional<std::string>> get_string_opt(const json::object& o, std::string_view key) {
  if (!field(o, key)) return std::optional<std::string>();
  auto s = get_string(o, key);
  if (!s.ok()) return s.status();
  return std::optional<std::string>(std::move(*s));
}

Result<uint64_t> get_u64(const json::object& o, std::string_view key, uint64_t min,
                         uint64_t max = static_cast<uint64_t>(INT64_MAX)) {
  const json::value* v = field(o, key);
  if (!v) return bad("field '" + std::string(key) + "' is required");
  uint64_t n = 0;
  if (v->is_int64() && v->get_int64() >= 0) {
    n = static_cast<uint64_t>(v->get_int64());
  } else if (v->is_uint64()) {
    n = v->get_uint64();
  } else {
    return bad("field '" + std::string(key) + "' must be a non-negative integer");
  }
  if (n < min || n > max) {
    return bad("field '" + std::string(key) + "' must be from " + std::to_string(min) + " to " +
               std::to_string(max));
  }
  return n;
}

Result<bool> get_bool(const json::object& o, std::string_view key, bool fallback) {
  const json::value* v = field(o, key);
  if (!v) return fallback;
  if (!v->is_bool()) return bad("field '" + std::string(key) + "' must be a boolean");
  return v->get_bool();
}

Result<std::optional<Txid>> get_txid_opt(const json::object& o, std::string_view key) {
  auto s = get_string_opt(o, key);
  if (!s.ok()) return s.status();
  if (!*s) return std::optional<Txid>();
  auto t = Txid::parse(**s);
  if (!t.ok()) return bad("field '" + std::string(key) + "': " + t.status().message());
  return std::optional<Txid>(std::move(*t));
}

Result<DbError> db_error_from_json(const json::value& v, std::string_view what) {
  auto o = object_of(v, what);
  if (!o.ok()) return o.status();
  DbError e;
  auto st = get_string_opt(**o, "sqlstate");
  auto msg = get_string_opt(**o, "message");
  if (!st.ok()) return st.status();
  if (!msg.ok()) return msg.status();
  e.sqlstate = st->value_or("");
  e.message = msg->value_or("");
  return e;
}

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

Result<std::vector<SqlValue>> params_of(const json::object& o, size_t max) {
  const json::value* p = field(o, "params");
  if (!p) return std::vector<SqlValue>();
  return sql_values_from_json(*p, "params", max);
}

}  // namespace

// --- paths ------------------------------------------------------------------

std::string branch_step_path(std::string_view txid, std::string_view step) {
  std::string p = "/v1/branches/";
  p += txid;
  p += '/';
  p += step;
  return p;
}

std::string branch_path(std::string_view txid) {
  return "/v1/branches/" + std::string(txid);
}

std::string branch_path(std::string_view txid, const Fence& fence) {
  std::string p = branch_path(txid);
  if (const std::string q = fence.query(); !q.empty()) p += "?" + q;
  return p;
}

std::string outcome_path(std::string_view txid) {
  return "/v1/transactions/" + std::string(txid) + "/outcome";
}

// --- shared pieces ----------------------------------------------------------

const char* branch_state_name(BranchState s) {
  switch (s) {
    case BranchState::active:
      return "active";
    case BranchState::prepared:
      return "prepared";
    case BranchState::precommitted:
      return "precommitted";
    case BranchState::committed:
      return "committed";
    case BranchState::aborted:
      return "aborted";
  }
  return "?";
}

std::optional<BranchState> parse_branch_state(std::string_view name) {
  for (BranchState s : {BranchState::active, BranchState::prepared, BranchState::precommitted,
                        BranchState::committed, BranchState::aborted}) {
    if (name == branch_state_name(s)) return s;
  }
  return std::nullopt;
}

const char* vote_name(Vote v) {
  switch (v) {
    case Vote::yes:
      return "yes";
    case Vote::no:
      return "no";
    case Vote::read_only:
      return "read_only";
  }
  return "?";
}

json::object ballot_to_json(const BallotId& b) {
  return json::object{{"round", b.round}, {"node", b.node}};
}

Result<BallotId> ballot_from_json(const json::value& v, std::string_view what) {
  auto o = object_of(v, what);
  if (!o.ok()) return o.status();
  auto round = get_u64(**o, "round", 0);
  auto node = get_u64(**o, "node", 0, std::numeric_limits<uint32_t>::max());
  if (!round.ok()) return bad(std::string(what) + ": " + round.status().message());
  if (!node.ok()) return bad(std::string(what) + ": " + node.status().message());
  return BallotId{*round, static_cast<uint32_t>(*node)};
}

Result<BallotId> parse_ballot_text(std::string_view text) {
  const size_t dot = text.find('.');
  uint64_t round = 0, node = 0;
  if (dot == std::string_view::npos || !parse_u64(text.substr(0, dot), &round) ||
      !parse_u64(text.substr(dot + 1), &node) || round > static_cast<uint64_t>(INT64_MAX) ||
      node > std::numeric_limits<uint32_t>::max()) {
    return bad("ballot must be <round>.<node>");
  }
  return BallotId{round, static_cast<uint32_t>(node)};
}

void Fence::add_to(json::object& body) const {
  body["agent_id"] = agent_id;
  if (!ballot.is_zero()) body["ballot"] = ballot_to_json(ballot);
  if (watermark) body["watermark"] = watermark->str();
}

Result<Fence> Fence::from_json(const json::value& body, bool ballot_required) {
  auto o = object_of(body, "request body");
  if (!o.ok()) return o.status();
  Fence f;
  auto agent = get_string(**o, "agent_id");
  if (!agent.ok()) return agent.status();
  if (!valid_agent_id(*agent))
    return bad("field 'agent_id' must be 1-64 characters of [A-Za-z0-9._-]");
  f.agent_id = std::move(*agent);
  if (const json::value* b = field(**o, "ballot")) {
    auto ballot = ballot_from_json(*b, "field 'ballot'");
    if (!ballot.ok()) return ballot.status();
    f.ballot = *ballot;
  } else if (ballot_required) {
    return bad("field 'ballot' is required");
  }
  auto w = get_txid_opt(**o, "watermark");
  if (!w.ok()) return w.status();
  f.watermark = std::move(*w);
  return f;
}

std::string Fence::query() const {
  std::string q;
  auto add = [&q](std::string_view k, const std::string& v) {
    if (!q.empty()) q += '&';
    q += k;
    q += '=';
    q += v;  // agent ids, ballots and txids need no percent-encoding
  };
  if (!agent_id.empty()) add("agent_id", agent_id);
  if (!ballot.is_zero()) add("ballot", ballot.describe());
  if (watermark) add("watermark", watermark->str());
  return q;
}

Result<Fence> Fence::from_query(
    const std::function<std::optional<std::string_view>(std::string_view)>& param) {
  Fence f;
  if (auto a = param("agent_id")) {
    if (!valid_agent_id(*a)) return bad("agent_id must be 1-64 characters of [A-Za-z0-9._-]");
    f.agent_id = std::string(*a);
  }
  if (auto b = param("ballot")) {
    auto ballot = parse_ballot_text(*b);
    if (!ballot.ok()) return ballot.status();
    f.ballot = *ballot;
  }
  if (auto w = param("watermark")) {
    auto t = Txid::parse(*w);
    if (!t.ok()) return bad("watermark: " + t.status().message());
    f.watermark = std::move(*t);
  }
  return f;
}

// --- rows and errors ----------------------------------------------------------

json::object rows_to_json(const Rows& rows) {
  json::array cols, out;
  cols.reserve(rows.columns.size());
  for (const auto& c : rows.columns)
    cols.emplace_back(json::string(c));
  out.reserve(rows.rows.size());
  for (const auto& r : rows.rows)
    out.push_back(sql_values_to_json(r));
  return json::object{{"columns", std::move(cols)},
                      {"rows", std::move(out)},
                      {"rows_affected", rows.rows_affected}};
}

Result<Rows> rows_from_json(const json::value& body) {
  auto o = object_of(body, "rows");
  if (!o.ok()) return o.status();
  Rows r;
  if (const json::value* c = field(**o, "columns")) {
    if (!c->is_array()) return bad("field 'columns' must be an array");
    for (const auto& name : c->get_array()) {
      if (!name.is_string()) return bad("field 'columns' must hold strings");
      r.columns.emplace_back(name.get_string());
    }
  }
  if (const json::value* rows = field(**o, "rows")) {
    if (!rows->is_array()) return bad("field 'rows' must be an array");
    for (const auto& row : rows->get_array()) {
      auto values = sql_values_from_json(row, "rows[]", std::numeric_limits<size_t>::max());
      if (!values.ok()) return values.status();
      r.rows.push_back(std::move(*values));
    }
  }
  if (const json::value* n = field(**o, "rows_affected")) {
    if (!n->is_int64()) return bad("field 'rows_affected' must be an integer");
    r.rows_affected = n->get_int64();
  }
  return r;
}

json::object db_error_to_json(const DbError& e) {
  return json::object{{"sqlstate", e.sqlstate}, {"message", e.message}};
}

// --- requests and answers ---------------------------------------------------

json::object ExecRequest::to_json() const {
  json::object o;
  fence.add_to(o);
  o["seq"] = seq;
  o["sql"] = sql;
  o["params"] = sql_values_to_json(params);
  return o;
}

Result<ExecRequest> ExecRequest::from_json(const json::value& body, const ApiLimits& l) {
  auto fence = Fence::from_json(body, /*ballot_required=*/true);
  if (!fence.ok()) return fence.status();
  const json::object& o = body.get_object();
  ExecRequest r;
  r.fence = std::move(*fence);
  auto seq = get_u64(o, "seq", 1);
  auto sql = get_string(o, "sql");
  if (!seq.ok()) return seq.status();
  if (!sql.ok()) return sql.status();
  if (sql->empty()) return bad("field 'sql' must not be empty");
  auto params = params_of(o, l.params_max);
  if (!params.ok()) return params.status();
  r.seq = *seq;
  r.sql = std::move(*sql);
  r.params = std::move(*params);
  return r;
}

json::object ExecAnswer::to_json() const {
  return rows_to_json(rows);
}

Result<ExecAnswer> ExecAnswer::from_json(const json::value& body) {
  auto r = rows_from_json(body);
  if (!r.ok()) return r.status();
  return ExecAnswer{std::move(*r)};
}

json::object PrepareRequest::to_json() const {
  json::object o;
  fence.add_to(o);
  o["exec_count"] = exec_count;
  o["digest"] = digest_hex(digest);
  return o;
}

Result<PrepareRequest> PrepareRequest::from_json(const json::value& body) {
  auto fence = Fence::from_json(body, /*ballot_required=*/true);
  if (!fence.ok()) return fence.status();
  const json::object& o = body.get_object();
  PrepareRequest r;
  r.fence = std::move(*fence);
  auto count = get_u64(o, "exec_count", 0);
  auto digest = get_string(o, "digest");
  if (!count.ok()) return count.status();
  if (!digest.ok()) return digest.status();
  auto d = parse_digest_hex(*digest);
  if (!d) return bad("field 'digest' must be 16 hex digits");
  r.exec_count = *count;
  r.digest = *d;
  return r;
}

json::object VoteAnswer::to_json() const {
  json::object o{{"vote", vote_name(vote)}};
  if (vote == Vote::no) o["reason"] = db_error_to_json(reason);
  return o;
}

Result<VoteAnswer> VoteAnswer::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  auto vote = get_string(**o, "vote");
  if (!vote.ok()) return vote.status();
  VoteAnswer a;
  if (*vote == "yes") {
    a.vote = Vote::yes;
  } else if (*vote == "read_only") {
    a.vote = Vote::read_only;
  } else if (*vote == "no") {
    a.vote = Vote::no;
    if (const json::value* r = field(**o, "reason")) {
      auto e = db_error_from_json(*r, "field 'reason'");
      if (!e.ok()) return e.status();
      a.reason = std::move(*e);
    }
  } else {
    return bad("field 'vote' must be \"yes\", \"no\" or \"read_only\"");
  }
  return a;
}

json::object BatchRequest::to_json() const {
  json::object o;
  fence.add_to(o);
  json::array st;
  st.reserve(statements.size());
  for (const Statement& s : statements) {
    st.push_back(json::object{{"sql", s.sql}, {"params", sql_values_to_json(s.params)}});
  }
  o["statements"] = std::move(st);
  if (one_phase) o["one_phase"] = true;
  return o;
}

Result<BatchRequest> BatchRequest::from_json(const json::value& body, const ApiLimits& l) {
  auto fence = Fence::from_json(body, /*ballot_required=*/true);
  if (!fence.ok()) return fence.status();
  const json::object& o = body.get_object();
  BatchRequest r;
  r.fence = std::move(*fence);
  const json::value* st = field(o, "statements");
  if (!st || !st->is_array() || st->get_array().empty()) {
    return bad("field 'statements' must be a non-empty array");
  }
  if (st->get_array().size() > l.statements_max) {
    return bad("field 'statements' has more than " + std::to_string(l.statements_max) + " entries");
  }
  for (const json::value& s : st->get_array()) {
    auto so = object_of(s, "statements[]");
    if (!so.ok()) return so.status();
    auto sql = get_string(**so, "sql");
    if (!sql.ok()) return sql.status();
    if (sql->empty()) return bad("field 'sql' must not be empty");
    auto params = params_of(**so, l.params_max);
    if (!params.ok()) return params.status();
    r.statements.push_back(Statement{std::move(*sql), std::move(*params)});
  }
  auto one = get_bool(o, "one_phase", false);
  if (!one.ok()) return one.status();
  r.one_phase = *one;
  return r;
}

json::object OnePhaseAnswer::to_json() const {
  json::object o{{"outcome", outcome_name(outcome)}};
  if (outcome == Outcome::aborted) o["reason"] = db_error_to_json(reason);
  if (read_only) o["read_only"] = true;
  return o;
}

Result<OnePhaseAnswer> OnePhaseAnswer::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  auto s = get_string(**o, "outcome");
  if (!s.ok()) return s.status();
  auto out = parse_outcome(*s);
  if (!out) return bad("field 'outcome' must be \"committed\" or \"aborted\"");
  OnePhaseAnswer a;
  a.outcome = *out;
  if (const json::value* r = field(**o, "reason")) {
    auto e = db_error_from_json(*r, "field 'reason'");
    if (!e.ok()) return e.status();
    a.reason = std::move(*e);
  }
  auto ro = get_bool(**o, "read_only", false);
  if (!ro.ok()) return ro.status();
  a.read_only = *ro;
  return a;
}

json::object BatchAnswer::to_json() const {
  json::array rs;
  rs.reserve(results.size());
  for (const StatementResult& r : results) {
    if (r.ok) {
      rs.push_back(rows_to_json(r.rows));
    } else {
      rs.push_back(json::object{{"error", json::object{{"code", errc::sql_error},
                                                       {"message", r.error.message},
                                                       {"sqlstate", r.error.sqlstate}}}});
    }
  }
  json::object o = one_phase ? one_phase->to_json() : vote.to_json();
  o["results"] = std::move(rs);
  return o;
}

Result<BatchAnswer> BatchAnswer::from_json(const json::value& body) {
  BatchAnswer a;
  if (body.is_object() && body.get_object().contains("outcome")) {
    auto one = OnePhaseAnswer::from_json(body);
    if (!one.ok()) return one.status();
    a.one_phase = std::move(*one);
  } else {
    auto v = VoteAnswer::from_json(body);
    if (!v.ok()) return v.status();
    a.vote = std::move(*v);
  }
  const json::value* rs = field(body.get_object(), "results");
  if (!rs || !rs->is_array()) return bad("field 'results' must be an array");
  for (const json::value& r : rs->get_array()) {
    auto ro = object_of(r, "results[]");
    if (!ro.ok()) return ro.status();
    StatementResult sr;
    if (const json::value* e = field(**ro, "error")) {
      auto err = db_error_from_json(*e, "results[].error");
      if (!err.ok()) return err.status();
      sr.error = std::move(*err);
    } else {
      auto rows = rows_from_json(r);
      if (!rows.ok()) return rows.status();
      sr.ok = true;
      sr.rows = std::move(*rows);
    }
    a.results.push_back(std::move(sr));
  }
  return a;
}

json::object DecisionRequest::to_json() const {
  json::object o;
  fence.add_to(o);
  return o;
}

Result<DecisionRequest> DecisionRequest::from_json(const json::value& body) {
  auto fence = Fence::from_json(body, /*ballot_required=*/false);
  if (!fence.ok()) return fence.status();
  return DecisionRequest{std::move(*fence)};
}

json::object PrecommitAnswer::to_json() const {
  return json::object{{"state", branch_state_name(state)}};
}

Result<PrecommitAnswer> PrecommitAnswer::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  auto s = get_string(**o, "state");
  if (!s.ok()) return s.status();
  auto st = parse_branch_state(*s);
  if (!st) return bad("field 'state' is not a branch state");
  return PrecommitAnswer{*st};
}

json::object DecisionAnswer::to_json() const {
  json::object o{{"outcome", outcome_name(outcome)}, {"heuristic", heuristic}};
  if (read_only) o["read_only"] = true;
  return o;
}

Result<DecisionAnswer> DecisionAnswer::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  auto s = get_string(**o, "outcome");
  if (!s.ok()) return s.status();
  auto out = parse_outcome(*s);
  if (!out) return bad("field 'outcome' must be \"committed\" or \"aborted\"");
  auto h = get_bool(**o, "heuristic", false);
  if (!h.ok()) return h.status();
  auto ro = get_bool(**o, "read_only", false);
  if (!ro.ok()) return ro.status();
  return DecisionAnswer{*out, *h, *ro};
}

json::object BranchStatus::to_json() const {
  json::object o{{"txid", txid},
                 {"state", branch_state_name(state)},
                 {"exec_count", exec_count},
                 {"doomed", doomed},
                 {"busy", busy}};
  if (outcome) o["outcome"] = outcome_name(*outcome);
  if (read_only) o["read_only"] = true;
  return o;
}

Result<BranchStatus> BranchStatus::from_json(const json::value& body) {
  auto o = object_of(body, "branch");
  if (!o.ok()) return o.status();
  BranchStatus b;
  auto txid = get_string(**o, "txid");
  auto state = get_string(**o, "state");
  if (!txid.ok()) return txid.status();
  if (!state.ok()) return state.status();
  auto st = parse_branch_state(*state);
  if (!st) return bad("field 'state' is not a branch state");
  b.txid = std::move(*txid);
  b.state = *st;
  if (field(**o, "exec_count")) {
    auto n = get_u64(**o, "exec_count", 0);
    if (!n.ok()) return n.status();
    b.exec_count = *n;
  }
  auto doomed = get_bool(**o, "doomed", false);
  auto busy = get_bool(**o, "busy", false);
  if (!doomed.ok()) return doomed.status();
  if (!busy.ok()) return busy.status();
  b.doomed = *doomed;
  b.busy = *busy;
  auto ro = get_bool(**o, "read_only", false);
  if (!ro.ok()) return ro.status();
  b.read_only = *ro;
  auto out = get_string_opt(**o, "outcome");
  if (!out.ok()) return out.status();
  if (*out) {
    b.outcome = parse_outcome(**out);
    if (!b.outcome) return bad("field 'outcome' must be \"committed\" or \"aborted\"");
  }
  return b;
}

std::string BranchListRequest::path() const {
  std::string p = "/v1/branches?limit=" + std::to_string(limit);
  if (state) p += std::string("&state=") + branch_state_name(*state);
  if (!after.empty()) p += "&after=" + after;
  if (const std::string q = fence.query(); !q.empty()) p += "&" + q;
  return p;
}

Result<BranchListRequest> BranchListRequest::from_query(
    const std::function<std::optional<std::string_view>(std::string_view)>& param) {
  BranchListRequest r;
  if (auto s = param("state"); s && !s->empty()) {
    r.state = parse_branch_state(*s);
    if (!r.state || *r.state == BranchState::committed || *r.state == BranchState::aborted) {
      return bad("state must be active, prepared or precommitted");
    }
  }
  if (auto a = param("after")) r.after = std::string(*a);
  if (auto l = param("limit")) {
    uint64_t n = 0;
    if (!parse_u64(*l, &n) || n == 0 || n > kLimitMax) {
      return bad("limit must be from 1 to " + std::to_string(kLimitMax));
    }
    r.limit = static_cast<size_t>(n);
  }
  auto fence = Fence::from_query(param);
  if (!fence.ok()) return fence.status();
  r.fence = std::move(*fence);
  return r;
}

json::object BranchListAnswer::to_json() const {
  json::array bs;
  bs.reserve(branches.size());
  for (const BranchStatus& b : branches) {
    bs.push_back(
        json::object{{"txid", b.txid}, {"state", branch_state_name(b.state)}, {"busy", b.busy}});
  }
  json::object o{{"branches", std::move(bs)}};
  if (next) o["next"] = *next;
  return o;
}

Result<BranchListAnswer> BranchListAnswer::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  const json::value* bs = field(**o, "branches");
  if (!bs || !bs->is_array()) return bad("field 'branches' must be an array");
  BranchListAnswer a;
  for (const json::value& b : bs->get_array()) {
    auto s = BranchStatus::from_json(b);
    if (!s.ok()) return s.status();
    a.branches.push_back(std::move(*s));
  }
  auto next = get_string_opt(**o, "next");
  if (!next.ok()) return next.status();
  a.next = std::move(*next);
  return a;
}

json::object AgentInfo::to_json() const {
  json::object o{{"agent_id", agent_id},
                 {"cluster", cluster},
                 {"database", database},
                 {"highest_ballot", ballot_to_json(highest_ballot)}};
  if (watermark) o["watermark"] = watermark->str();
  return o;
}

Result<AgentInfo> AgentInfo::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  AgentInfo a;
  auto id = get_string(**o, "agent_id");
  auto cluster = get_string(**o, "cluster");
  auto db = get_string_opt(**o, "database");
  if (!id.ok()) return id.status();
  if (!cluster.ok()) return cluster.status();
  if (!db.ok()) return db.status();
  a.agent_id = std::move(*id);
  a.cluster = std::move(*cluster);
  a.database = db->value_or("");
  if (const json::value* b = field(**o, "highest_ballot")) {
    auto ballot = ballot_from_json(*b, "field 'highest_ballot'");
    if (!ballot.ok()) return ballot.status();
    a.highest_ballot = *ballot;
  }
  auto w = get_txid_opt(**o, "watermark");
  if (!w.ok()) return w.status();
  a.watermark = std::move(*w);
  return a;
}

const char* inquiry_outcome_name(InquiryOutcome o) {
  switch (o) {
    case InquiryOutcome::committed:
      return "committed";
    case InquiryOutcome::aborted:
      return "aborted";
    case InquiryOutcome::pending:
      return "pending";
    case InquiryOutcome::forgotten:
      return "forgotten";
  }
  return "?";
}

json::object InquiryAnswer::to_json() const {
  json::object o{{"txid", txid}, {"outcome", inquiry_outcome_name(outcome)}};
  if (watermark) o["watermark"] = watermark->str();
  if (outcome == InquiryOutcome::forgotten) {
    o["error"] = json::object{
        {"code", errc::forgotten},
        {"message", "the transaction is below the forget watermark and has no record"}};
  }
  return o;
}

Result<InquiryAnswer> InquiryAnswer::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  InquiryAnswer a;
  auto txid = get_string_opt(**o, "txid");
  auto out = get_string(**o, "outcome");
  if (!txid.ok()) return txid.status();
  if (!out.ok()) return out.status();
  a.txid = txid->value_or("");
  bool found = false;
  for (InquiryOutcome k : {InquiryOutcome::committed, InquiryOutcome::aborted,
                           InquiryOutcome::pending, InquiryOutcome::forgotten}) {
    if (*out == inquiry_outcome_name(k)) {
      a.outcome = k;
      found = true;
    }
  }
  if (!found) return bad("field 'outcome' must be committed, aborted, pending or forgotten");
  auto w = get_txid_opt(**o, "watermark");
  if (!w.ok()) return w.status();
  a.watermark = std::move(*w);
  return a;
}

json::object ApiError::to_json() const {
  json::object e{{"code", code}, {"message", message}};
  if (expected_seq) e["expected_seq"] = *expected_seq;
  if (reason) e["reason"] = db_error_to_json(*reason);
  if (sqlstate) e["sqlstate"] = *sqlstate;
  if (highest_ballot) e["highest_ballot"] = ballot_to_json(*highest_ballot);
  if (state) e["state"] = *state;
  return json::object{{"error", std::move(e)}};
}

Result<ApiError> ApiError::from_json(const json::value& body) {
  auto o = object_of(body, "answer");
  if (!o.ok()) return o.status();
  const json::value* ev = field(**o, "error");
  if (!ev || !ev->is_object()) return bad("not an error answer");
  const json::object& e = ev->get_object();
  ApiError a;
  auto code = get_string(e, "code");
  if (!code.ok()) return code.status();
  a.code = std::move(*code);
  auto msg = get_string_opt(e, "message");
  if (!msg.ok()) return msg.status();
  a.message = msg->value_or("");
  if (field(e, "expected_seq")) {
    auto n = get_u64(e, "expected_seq", 0);
    if (!n.ok()) return n.status();
    a.expected_seq = *n;
  }
  if (const json::value* r = field(e, "reason")) {
    auto err = db_error_from_json(*r, "field 'reason'");
    if (!err.ok()) return err.status();
    a.reason = std::move(*err);
  }
  auto st = get_string_opt(e, "sqlstate");
  if (!st.ok()) return st.status();
  a.sqlstate = std::move(*st);
  if (const json::value* b = field(e, "highest_ballot")) {
    auto ballot = ballot_from_json(*b, "field 'highest_ballot'");
    if (!ballot.ok()) return ballot.status();
    a.highest_ballot = *ballot;
  }
  auto state = get_string_opt(e, "state");
  if (!state.ok()) return state.status();
  a.state = std::move(*state);
  return a;
}

}  // namespace dtx::txn
