// Goal: txids have one spelling, parse back to what was formatted, refuse
// what a leader could never issue, and order by creation (T2); the exec
// digest and SQL values in JSON stay what both sides agreed on.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cmath>

#include "common/status.h"
#include "txn/exec_digest.h"
#include "txn/sql_json.h"
#include "txn/txid.h"
#include "txn/types.h"

namespace dtx::txn {
namespace {

namespace json = boost::json;

TEST(Txid, formats_and_parses_back) {
  const Txid t("c1", BallotId{7, 2}, 1043);
  EXPECT_EQ(t.str(), "c1.7.2.1043");
  auto p = Txid::parse("c1.7.2.1043");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, t);
  EXPECT_EQ(p->ballot(), (BallotId{7, 2}));
  const Txid big("a-b_C", BallotId{INT64_MAX, UINT32_MAX}, INT64_MAX);
  auto q = Txid::parse(big.str());
  ASSERT_TRUE(q.ok()) << big.str();
  EXPECT_EQ(*q, big);
  EXPECT_LE(big.str().size(), kTxidTextMax - (kClusterIdMax - 5));
}

TEST(Txid, refuses_what_no_leader_issues_and_every_second_spelling) {
  for (const char* bad :
       {"", "c1", "c1.7.2", "c1.7.2.0", "c1.0.2.5", "c1.07.2.5", "c1.7.02.5", "c1.7.2.05",
        "c1.7.2.5.", ".7.2.5", "c.1.7.2.5", "c1.-7.2.5", "c1.+7.2.5", "c1.7.4294967296.5",
        "c1.9223372036854775808.2.5", "c1.7.2.9223372036854775808", "c 1.7.2.5", "c1.7.2.5x",
        "abcdefghijklmnopqrstuvwxyz0123456.1.1.1"}) {
    EXPECT_FALSE(Txid::parse(bad).ok()) << bad;
    EXPECT_FALSE(valid_txid_text(bad)) << bad;
  }
  EXPECT_TRUE(valid_txid_text("abcdefghijklmnopqrstuvwxyz012345.1.0.1")) << "32-character cluster";
}

TEST(Txid, orders_by_ballot_then_sequence) {
  auto t = [](uint64_t r, uint32_t n, uint64_t s) { return Txid("c1", BallotId{r, n}, s); };
  EXPECT_LT(t(1, 1, 9), t(1, 1, 10)) << "numeric, not text order";
  EXPECT_LT(t(1, 1, 100), t(1, 2, 1)) << "a higher ballot's first txid follows";
  EXPECT_LT(t(1, 3, 100), t(2, 1, 1));
  EXPECT_GT(t(2, 1, 1).next(), t(2, 1, 1));
  EXPECT_EQ(t(2, 1, 1).next(), t(2, 1, 2));
  EXPECT_NE(Txid("c1", BallotId{1, 1}, 1), Txid("c2", BallotId{1, 1}, 1));
}

TEST(Txid, ids_of_clusters_and_agents) {
  EXPECT_TRUE(valid_cluster_id("prod-eu_1"));
  EXPECT_FALSE(valid_cluster_id("prod.eu")) << "no dots: the txid text splits on them";
  EXPECT_FALSE(valid_cluster_id(std::string(33, 'c')));
  EXPECT_TRUE(valid_agent_id("bank-a.eu_1"));
  EXPECT_FALSE(valid_agent_id("bank a"));
  EXPECT_FALSE(valid_agent_id(std::string(65, 'a')));
  EXPECT_EQ(make_gid("c1", "c1.7.2.5", "bank-a"), "dtx:c1:c1.7.2.5:bank-a");
}

TEST(ExecDigest, is_the_agreed_function_and_depends_on_every_field) {
  const std::vector<SqlValue> p = {int64_t{5}, std::string("a")};
  const uint64_t base = exec_digest(0, 1, "SQL", p);
  // Pinned: the coordinator and agents of different builds must agree.
  EXPECT_EQ(digest_hex(exec_digest(0, 1, "SELECT 1", {})), "833ee6a637d7d70c");
  EXPECT_NE(base, exec_digest(0, 2, "SQL", p));
  EXPECT_NE(base, exec_digest(0, 1, "SQL ", p));
  EXPECT_NE(base, exec_digest(0, 1, "SQL", {int64_t{6}, std::string("a")}));
  EXPECT_NE(base, exec_digest(0, 1, "SQL", {std::string("5"), std::string("a")}));
  EXPECT_NE(base, exec_digest(0, 1, "SQL", {int64_t{5}}));
  EXPECT_NE(base, exec_digest(0, 1, "SQL", {SqlValue{}, std::string("a")}));
  EXPECT_NE(exec_digest(0, 1, "x", {true}), exec_digest(0, 1, "x", {int64_t{1}}));
  EXPECT_NE(exec_digest(0, 1, "x", {1.0}), exec_digest(0, 1, "x", {int64_t{1}}));
  EXPECT_EQ(base, exec_digest(0, 1, "SQL", p));
}

TEST(ExecDigest, hex_round_trips) {
  for (uint64_t d : {uint64_t{0}, uint64_t{1}, uint64_t{0xdeadbeefcafef00d}, ~uint64_t{0}}) {
    EXPECT_EQ(parse_digest_hex(digest_hex(d)), d);
  }
  EXPECT_EQ(digest_hex(0xab), "00000000000000ab");
  EXPECT_EQ(parse_digest_hex("00000000000000AB"), 0xabu);
  for (const char* bad : {"", "zz", "0000000000000000a", "000000000000000g", "+000000000000000"}) {
    EXPECT_FALSE(parse_digest_hex(bad).has_value()) << bad;
  }
}

TEST(SqlJson, every_scalar_round_trips_and_containers_are_refused) {
  const std::vector<SqlValue> values = {
      SqlValue{}, true, false, int64_t{-5}, INT64_MAX, 2.5, std::string("héllo \"x\"")};
  const json::array a = sql_values_to_json(values);
  auto back = sql_values_from_json(json::parse(json::serialize(a)), "params", 100);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, values);
  EXPECT_TRUE(sql_value_to_json(SqlValue{std::nan("")}).is_null()) << "JSON has no NaN";
  auto r = sql_values_from_json(json::parse(R"([1, {"a": 1}])"), "params", 100);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("params[1]"), std::string::npos) << r.status();
  EXPECT_FALSE(sql_values_from_json(json::parse("[18446744073709551615]"), "p", 10).ok())
      << "above int64";
  EXPECT_FALSE(sql_values_from_json(json::parse("[1, 2, 3]"), "p", 2).ok()) << "too many";
  EXPECT_FALSE(sql_values_from_json(json::parse("{}"), "p", 2).ok());
}

TEST(Outcome, names_round_trip) {
  for (Outcome o : {Outcome::committed, Outcome::aborted}) {
    EXPECT_EQ(parse_outcome(outcome_name(o)), o);
  }
  EXPECT_FALSE(parse_outcome("pending").has_value());
}

TEST(DtxAssertDeathTest, value_of_an_error_result_aborts_in_every_build) {
  Result<int> r = error(Code::not_found, "nothing here");
  EXPECT_DEATH((void)r.value(), "value\\(\\) of a Result that holds an error");
  EXPECT_DEATH((void)*std::move(r), "assertion failed");
}

}  // namespace
}  // namespace dtx::txn
