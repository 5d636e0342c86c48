// Goal: every agent API message survives to_json/from_json unchanged, and
// malformed bodies are refused with a message naming the field, so the
// coordinator and the agent can never disagree on a shape.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>

#include "txn/agent_api.h"

namespace dtx::txn {
namespace {

namespace json = boost::json;

// Through text, as on the wire.
json::value wire(const json::object& o) {
  return json::parse(json::serialize(o));
}

Fence fence() {
  Fence f;
  f.agent_id = "bank-a";
  f.ballot = BallotId{7, 2};
  f.watermark = Txid("c1", BallotId{6, 1}, 99);
  return f;
}

TEST(AgentApi, exec_prepare_and_decisions_round_trip) {
  ExecRequest e{
      fence(), 3, "UPDATE t SET v = v + $1 WHERE id = $2", {int64_t{5}, std::string("k")}};
  auto e2 = ExecRequest::from_json(wire(e.to_json()));
  ASSERT_TRUE(e2.ok()) << e2.status();
  EXPECT_EQ(e2->seq, 3u);
  EXPECT_EQ(e2->sql, e.sql);
  EXPECT_EQ(e2->params, e.params);
  EXPECT_EQ(e2->fence.agent_id, "bank-a");
  EXPECT_EQ(e2->fence.ballot, (BallotId{7, 2}));
  EXPECT_EQ(e2->fence.watermark, e.fence.watermark);

  PrepareRequest p{fence(), 3, 0xfedcba9876543210};
  auto p2 = PrepareRequest::from_json(wire(p.to_json()));
  ASSERT_TRUE(p2.ok()) << p2.status();
  EXPECT_EQ(p2->exec_count, 3u);
  EXPECT_EQ(p2->digest, 0xfedcba9876543210u);
  EXPECT_EQ(json::serialize(p.to_json()["digest"]), "\"fedcba9876543210\"");

  DecisionRequest d{Fence{"bank-a", {}, std::nullopt}};
  auto d2 = DecisionRequest::from_json(wire(d.to_json()));
  ASSERT_TRUE(d2.ok()) << d2.status() << ": decisions need no ballot";
  EXPECT_TRUE(d2->fence.ballot.is_zero());

  for (const auto& a :
       {DecisionAnswer{Outcome::committed, false}, DecisionAnswer{Outcome::aborted, true},
        DecisionAnswer{Outcome::aborted, false, true}}) {
    auto a2 = DecisionAnswer::from_json(wire(a.to_json()));
    ASSERT_TRUE(a2.ok());
    EXPECT_EQ(a2->outcome, a.outcome);
    EXPECT_EQ(a2->heuristic, a.heuristic);
    EXPECT_EQ(a2->read_only, a.read_only);
  }
  EXPECT_FALSE(DecisionAnswer{}.to_json().contains("read_only")) << "only when true";
  for (Vote v : {Vote::yes, Vote::no, Vote::read_only}) {
    auto v2 = VoteAnswer::from_json(wire(VoteAnswer{v, {}}.to_json()));
    ASSERT_TRUE(v2.ok()) << v2.status();
    EXPECT_EQ(v2->vote, v);
  }
  EXPECT_EQ(json::serialize(VoteAnswer{Vote::read_only, {}}.to_json()), R"({"vote":"read_only"})");
  EXPECT_FALSE(VoteAnswer::from_json(wire(json::object{{"vote", "maybe"}})).ok());
  auto pc = PrecommitAnswer::from_json(wire(PrecommitAnswer{}.to_json()));
  ASSERT_TRUE(pc.ok());
  EXPECT_EQ(pc->state, BranchState::precommitted);
}

TEST(AgentApi, fencing_fields_are_required_where_the_agent_fences) {
  for (
      const char* body :
      {R"({"seq": 1, "sql": "SELECT 1"})", R"({"agent_id": "a", "seq": 1, "sql": "SELECT 1"})",
       R"({"agent_id": "a b", "ballot": {"round": 1, "node": 1}, "seq": 1, "sql": "x"})",
       R"({"agent_id": "a", "ballot": {"round": 1}, "seq": 1, "sql": "x"})",
       R"({"agent_id": "a", "ballot": {"round": 1, "node": 1}, "seq": 0, "sql": "x"})",
       R"({"agent_id": "a", "ballot": {"round": 1, "node": 1}, "seq": 1, "sql": ""})",
       R"({"agent_id": "a", "ballot": {"round": 1, "node": 1}, "seq": 1, "sql": "x", "watermark": "nope"})",
       R"({"agent_id": "a", "ballot": {"round": 1, "node": 1}, "seq": 1, "sql": "x", "params": [[1]]})",
       R"([1])"}) {
    EXPECT_FALSE(ExecRequest::from_json(json::parse(body)).ok()) << body;
  }
  auto missing = ExecRequest::from_json(json::parse(R"({"seq": 1, "sql": "SELECT 1"})"));
  EXPECT_NE(missing.status().message().find("agent_id"), std::string::npos) << missing.status();
  EXPECT_FALSE(
      PrepareRequest::from_json(
          json::parse(
              R"({"agent_id": "a", "ballot": {"round": 1, "node": 1}, "exec_count": 1, "digest": "zz"})"))
          .ok());
  EXPECT_FALSE(DecisionRequest::from_json(json::parse("{}")).ok()) << "agent_id is always required";
}

TEST(AgentApi, batch_and_its_answer_round_trip) {
  BatchRequest b{fence(),
                 {{"UPDATE t SET v = v - $1 WHERE id = $2", {int64_t{1}, int64_t{2}}},
                  {"SELECT v FROM t WHERE id = $1", {int64_t{2}}}}};
  auto b2 = BatchRequest::from_json(wire(b.to_json()));
  ASSERT_TRUE(b2.ok()) << b2.status();
  ASSERT_EQ(b2->statements.size(), 2u);
  EXPECT_EQ(b2->statements[1].sql, b.statements[1].sql);
  EXPECT_EQ(b2->statements[0].params, b.statements[0].params);
  EXPECT_FALSE(
      BatchRequest::from_json(
          json::parse(R"({"agent_id": "a", "ballot": {"round": 1, "node": 1}, "statements": []})"))
          .ok());
  ApiLimits small;
  small.statements_max = 1;
  EXPECT_FALSE(BatchRequest::from_json(wire(b.to_json()), small).ok());

  BatchAnswer a;
  StatementResult ok;
  ok.ok = true;
  ok.rows.columns = {"v"};
  ok.rows.rows = {{int64_t{99}}};
  ok.rows.rows_affected = 1;
  StatementResult failed;
  failed.error = DbError{"23514", "check violated"};
  a.results = {ok, failed};
  a.vote = VoteAnswer{Vote::no, DbError{"23514", "check violated"}};
  auto a2 = BatchAnswer::from_json(wire(a.to_json()));
  ASSERT_TRUE(a2.ok()) << a2.status();
  ASSERT_EQ(a2->results.size(), 2u);
  EXPECT_TRUE(a2->results[0].ok);
  EXPECT_EQ(a2->results[0].rows.rows, ok.rows.rows);
  EXPECT_FALSE(a2->results[1].ok);
  EXPECT_EQ(a2->results[1].error.sqlstate, "23514");
  EXPECT_EQ(a2->vote.vote, Vote::no);
  EXPECT_EQ(a2->vote.reason.message, "check violated");
}

TEST(AgentApi, one_phase_batches_and_answers_round_trip) {
  BatchRequest b{fence(), {{"UPDATE t SET v = v - $1 WHERE id = $2", {int64_t{1}, int64_t{2}}}}};
  EXPECT_FALSE(BatchRequest::from_json(wire(b.to_json()))->one_phase);
  b.one_phase = true;
  auto b2 = BatchRequest::from_json(wire(b.to_json()));
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_TRUE(b2->one_phase);

  OnePhaseAnswer aborted{Outcome::aborted, DbError{"40001", "could not serialize"}, false};
  auto a2 = OnePhaseAnswer::from_json(wire(aborted.to_json()));
  ASSERT_TRUE(a2.ok()) << a2.status();
  EXPECT_EQ(a2->outcome, Outcome::aborted);
  EXPECT_EQ(a2->reason.sqlstate, "40001");
  OnePhaseAnswer ro{Outcome::committed, {}, true};
  auto r2 = OnePhaseAnswer::from_json(wire(ro.to_json()));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->outcome, Outcome::committed);
  EXPECT_TRUE(r2->read_only);
  EXPECT_FALSE(OnePhaseAnswer::from_json(json::parse(R"({"outcome": "maybe"})")).ok());

  BatchAnswer a;
  StatementResult ok;
  ok.ok = true;
  ok.rows.rows_affected = 1;
  a.results = {ok};
  a.one_phase = OnePhaseAnswer{Outcome::committed, {}, false};
  auto ba = BatchAnswer::from_json(wire(a.to_json()));
  ASSERT_TRUE(ba.ok()) << ba.status();
  ASSERT_TRUE(ba->one_phase.has_value());
  EXPECT_EQ(ba->one_phase->outcome, Outcome::committed);
  ASSERT_EQ(ba->results.size(), 1u);
  // The prepare form has no outcome.
  a.one_phase.reset();
  a.vote = VoteAnswer{Vote::yes, {}};
  auto bv = BatchAnswer::from_json(wire(a.to_json()));
  ASSERT_TRUE(bv.ok());
  EXPECT_FALSE(bv->one_phase.has_value());
  EXPECT_EQ(bv->vote.vote, Vote::yes);
}

TEST(AgentApi, status_listing_agent_info_and_inquiry_round_trip) {
  BranchStatus s{"c1.7.2.5", BranchState::prepared, 3, false, true, std::nullopt};
  auto s2 = BranchStatus::from_json(wire(s.to_json()));
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ(s2->state, BranchState::prepared);
  EXPECT_TRUE(s2->busy);
  EXPECT_EQ(s2->exec_count, 3u);
  EXPECT_FALSE(s2->read_only);
  BranchStatus ro{"c1.7.2.5", BranchState::committed, 1, false, false, Outcome::committed, true};
  auto ro2 = BranchStatus::from_json(wire(ro.to_json()));
  ASSERT_TRUE(ro2.ok()) << ro2.status();
  EXPECT_TRUE(ro2->read_only);

  BranchListAnswer l;
  BranchStatus active;
  active.txid = "c1.7.2.6";
  l.branches = {s, active};
  l.next = "c1.7.2.6";
  auto l2 = BranchListAnswer::from_json(wire(l.to_json()));
  ASSERT_TRUE(l2.ok()) << l2.status();
  ASSERT_EQ(l2->branches.size(), 2u);
  EXPECT_TRUE(l2->branches[0].busy);
  EXPECT_FALSE(l2->branches[1].busy);
  EXPECT_EQ(l2->next, "c1.7.2.6");

  BranchListRequest q;
  q.state = BranchState::prepared;
  q.after = "c1.7.2.6";
  q.limit = 50;
  q.fence = fence();
  const std::string path = q.path();
  std::map<std::string, std::string, std::less<>> params;
  for (size_t at = path.find('?') + 1; at < path.size();) {
    size_t amp = path.find('&', at);
    if (amp == std::string::npos) amp = path.size();
    const std::string kv = path.substr(at, amp - at);
    params[kv.substr(0, kv.find('='))] = kv.substr(kv.find('=') + 1);
    at = amp + 1;
  }
  auto q2 =
      BranchListRequest::from_query([&](std::string_view k) -> std::optional<std::string_view> {
        auto it = params.find(k);
        if (it == params.end()) return std::nullopt;
        return std::string_view(it->second);
      });
  ASSERT_TRUE(q2.ok()) << q2.status() << " " << path;
  EXPECT_EQ(q2->state, BranchState::prepared);
  EXPECT_EQ(q2->after, "c1.7.2.6");
  EXPECT_EQ(q2->limit, 50u);
  EXPECT_EQ(q2->fence.ballot, (BallotId{7, 2}));
  EXPECT_EQ(q2->fence.watermark, q.fence.watermark);
  auto none = [](std::string_view) -> std::optional<std::string_view> { return std::nullopt; };
  EXPECT_EQ(BranchListRequest::from_query(none)->limit, 1000u);
  auto committed = [](std::string_view k) -> std::optional<std::string_view> {
    if (k == "state") return "committed";
    return std::nullopt;
  };
  EXPECT_FALSE(BranchListRequest::from_query(committed).ok());

  AgentInfo i{"bank-a", "c1", "postgresql bank@127.0.0.1:5432", BallotId{7, 2}, fence().watermark};
  auto i2 = AgentInfo::from_json(wire(i.to_json()));
  ASSERT_TRUE(i2.ok()) << i2.status();
  EXPECT_EQ(i2->agent_id, "bank-a");
  EXPECT_EQ(i2->highest_ballot, (BallotId{7, 2}));
  EXPECT_EQ(i2->watermark, i.watermark);

  for (InquiryOutcome o : {InquiryOutcome::committed, InquiryOutcome::aborted,
                           InquiryOutcome::pending, InquiryOutcome::forgotten}) {
    InquiryAnswer in{"c1.7.2.5", o, fence().watermark};
    auto in2 = InquiryAnswer::from_json(wire(in.to_json()));
    ASSERT_TRUE(in2.ok()) << in2.status();
    EXPECT_EQ(in2->outcome, o);
    EXPECT_EQ(in2->watermark, in.watermark);
    EXPECT_EQ(in.http_status(), o == InquiryOutcome::forgotten ? 410 : 200);
  }
  // GET of one branch with the fencing parameters (a new leader's probe).
  EXPECT_EQ(branch_path("c1.7.2.5", fence()),
            "/v1/branches/c1.7.2.5?agent_id=bank-a&ballot=7.2&watermark=c1.6.1.99");
  EXPECT_EQ(branch_path("c1.7.2.5", Fence{}), "/v1/branches/c1.7.2.5");
  std::map<std::string, std::string, std::less<>> probe{{"agent_id", "bank-a"}, {"ballot", "7.2"}};
  auto probed = Fence::from_query([&](std::string_view k) -> std::optional<std::string_view> {
    auto it = probe.find(k);
    if (it == probe.end()) return std::nullopt;
    return std::string_view(it->second);
  });
  ASSERT_TRUE(probed.ok()) << probed.status();
  EXPECT_EQ(probed->agent_id, "bank-a");
  EXPECT_EQ(probed->ballot, (BallotId{7, 2}));
  EXPECT_FALSE(probed->watermark.has_value());
  probe["ballot"] = "7";
  EXPECT_FALSE(Fence::from_query([&](std::string_view k) -> std::optional<std::string_view> {
                 auto it = probe.find(k);
                 if (it == probe.end()) return std::nullopt;
                 return std::string_view(it->second);
               }).ok())
      << "a ballot is <round>.<node>";
  EXPECT_EQ(outcome_path("c1.7.2.5"), "/v1/transactions/c1.7.2.5/outcome");
  EXPECT_EQ(branch_step_path("c1.7.2.5", "batch"), "/v1/branches/c1.7.2.5/batch");
}

TEST(AgentApi, errors_round_trip_with_their_extra_fields) {
  ApiError e;
  e.code = std::string(errc::stale_ballot);
  e.message = "a newer leader exists";
  e.highest_ballot = BallotId{9, 1};
  e.expected_seq = 4;
  e.reason = DbError{"23505", "dup"};
  e.sqlstate = "23505";
  e.state = "prepared";
  auto e2 = ApiError::from_json(wire(e.to_json()));
  ASSERT_TRUE(e2.ok()) << e2.status();
  EXPECT_EQ(e2->code, "stale_ballot");
  EXPECT_EQ(e2->highest_ballot, (BallotId{9, 1}));
  EXPECT_EQ(e2->expected_seq, 4u);
  EXPECT_EQ(e2->reason->sqlstate, "23505");
  EXPECT_EQ(e2->sqlstate, "23505");
  EXPECT_EQ(e2->state, "prepared");
  EXPECT_FALSE(ApiError::from_json(json::parse(R"({"vote": "yes"})")).ok());
}

}  // namespace
}  // namespace dtx::txn
