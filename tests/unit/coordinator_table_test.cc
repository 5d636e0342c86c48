// Goal: the coordinator's replicated transaction table keeps one write-once
// decision register per txid (T1), unique idempotency keys (T4), the term
// rule, and a watermark below which txids are forgotten, never presumed
// aborted (T3); its records and snapshots survive encoding.
#include <gtest/gtest.h>

#include "coordinator/core/records.h"
#include "coordinator/core/table.h"

namespace dtx::coordinator {
namespace {

const Ballot kB1{1, 1};
const Ballot kB2{2, 2};

Txid tx(Ballot b, uint64_t seq) {
  return Txid("c1", txn::BallotId{b.round, b.node}, seq);
}

DecisionRecord decision(Txid id, Outcome o, Ballot term, std::string key = "") {
  DecisionRecord d;
  d.txid = id;
  d.term = term;
  d.outcome = o;
  d.protocol = Protocol::two_pc;
  d.participants = {{"a", "a"}, {"b", "b"}};
  d.idempotency_key = std::move(key);
  d.decided_at_ms = 1000;
  if (o == Outcome::aborted) d.reason = AbortReason{"b", "vote_no", "no", "40001"};
  return d;
}

TEST(CoordinatorRecords, every_kind_round_trips) {
  std::vector<Record> all = {
      decision(tx(kB1, 7), Outcome::aborted, kB1, "k1"),
      CompletedRecord{{tx(kB1, 1), tx(kB1, 2)}},
      HazardRecord{tx(kB1, 3), "a", Outcome::committed, 55},
      HazardClearedRecord{tx(kB1, 3), "ops", "checked by hand"},
      ParticipantSetRecord{"bank-a", "bank-a", "127.0.0.1:7701"},
      ParticipantRemoveRecord{"bank-a"},
      WatermarkRecord{tx(kB2, 9), kB2},
      TermRecord{kB2},
  };
  for (const Record& r : all) {
    const std::string bytes = encode_record(r);
    auto back = decode_record(bytes);
    ASSERT_TRUE(back.ok()) << describe(r);
    EXPECT_EQ(*back, r) << describe(r);
    // A record cut anywhere is refused, never half-read.
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      EXPECT_FALSE(decode_record(std::string_view(bytes).substr(0, cut)).ok()) << cut;
    }
    EXPECT_FALSE(decode_record(bytes + "x").ok());
  }
}

TEST(CoordinatorTable, first_decision_wins_and_later_ones_report_it) {
  TxnTable t("c1");
  t.on_term(1, kB1);
  auto r1 = t.apply(2, decision(tx(kB1, 1), Outcome::committed, kB1));
  EXPECT_EQ(r1.kind, ApplyResult::Kind::decided);
  EXPECT_TRUE(r1.first_decision);
  auto r2 = t.apply(3, decision(tx(kB1, 1), Outcome::aborted, kB1));
  EXPECT_EQ(r2.kind, ApplyResult::Kind::decided);
  EXPECT_FALSE(r2.first_decision);
  EXPECT_EQ(r2.outcome, Outcome::committed);
  EXPECT_EQ(t.find(tx(kB1, 1))->decision.outcome, Outcome::committed);
  EXPECT_TRUE(t.check_invariants().ok());
}

TEST(CoordinatorTable, a_past_terms_decision_takes_no_effect) {
  // An old leader's decision, re-proposed after a newer leader's barrier,
  // must not land: the new leader may already treat the txid as aborted.
  TxnTable t("c1");
  t.on_term(1, kB1);
  t.on_term(5, kB2);
  auto r = t.apply(6, decision(tx(kB1, 1), Outcome::committed, kB1));
  EXPECT_EQ(r.kind, ApplyResult::Kind::ignored);
  EXPECT_EQ(t.find(tx(kB1, 1)), nullptr);
  EXPECT_EQ(t.classify(tx(kB1, 1)), TxnTable::Known::undecided);
  // The current leader's abort of that txid does land.
  auto a = t.apply(7, decision(tx(kB1, 1), Outcome::aborted, kB2));
  EXPECT_TRUE(a.first_decision);
  EXPECT_EQ(t.find(tx(kB1, 1))->decision.outcome, Outcome::aborted);
}

TEST(CoordinatorTable, idempotency_keys_name_the_first_transaction) {
  TxnTable t("c1");
  t.on_term(1, kB1);
  (void)t.apply(2, decision(tx(kB1, 1), Outcome::committed, kB1, "key-1"));
  auto r = t.apply(3, decision(tx(kB1, 2), Outcome::committed, kB1, "key-1"));
  EXPECT_TRUE(r.key_conflict);
  ASSERT_TRUE(t.by_key("key-1"));
  EXPECT_EQ(*t.by_key("key-1"), tx(kB1, 1));
  EXPECT_TRUE(t.check_invariants().ok());
}

TEST(CoordinatorTable, watermark_forgets_completed_transactions_only) {
  TxnTable t("c1");
  t.on_term(1, kB1);
  (void)t.apply(2, decision(tx(kB1, 1), Outcome::committed, kB1, "k"));
  (void)t.apply(3, decision(tx(kB1, 2), Outcome::aborted, kB1));
  (void)t.apply(4, CompletedRecord{{tx(kB1, 1)}});
  EXPECT_EQ(t.open().size(), 1u);
  (void)t.apply(5, WatermarkRecord{tx(kB1, 5), kB1});
  // Completed and below: forgotten, with its key. Open: kept.
  EXPECT_EQ(t.find(tx(kB1, 1)), nullptr);
  EXPECT_EQ(t.classify(tx(kB1, 1)), TxnTable::Known::forgotten);
  EXPECT_FALSE(t.by_key("k"));
  EXPECT_EQ(t.classify(tx(kB1, 2)), TxnTable::Known::decided);
  // An unknown txid below the watermark is forgotten, never undecided.
  EXPECT_EQ(t.classify(tx(kB1, 4)), TxnTable::Known::forgotten);
  // A decision for a forgotten txid does not resurrect it.
  EXPECT_EQ(t.apply(6, decision(tx(kB1, 3), Outcome::committed, kB1)).kind,
            ApplyResult::Kind::ignored);
  // The watermark never goes back.
  EXPECT_EQ(t.apply(7, WatermarkRecord{tx(kB1, 2), kB1}).kind, ApplyResult::Kind::ignored);
  EXPECT_EQ(t.watermark(), tx(kB1, 5));
  EXPECT_TRUE(t.check_invariants().ok());
}

TEST(CoordinatorTable, a_txid_of_a_ballot_that_never_served_was_never_issued) {
  TxnTable t("c1");
  t.on_term(1, kB1);
  EXPECT_EQ(t.classify(tx(kB1, 42)), TxnTable::Known::undecided);
  EXPECT_EQ(t.classify(tx(Ballot{1, 3}, 1)), TxnTable::Known::never_issued);
  EXPECT_EQ(t.classify(tx(kB2, 1)), TxnTable::Known::never_issued);
}

TEST(CoordinatorTable, snapshot_restores_everything) {
  TxnTable t("c1");
  t.on_term(1, kB1);
  (void)t.apply(2, ParticipantSetRecord{"a", "a", "127.0.0.1:1"});
  (void)t.apply(3, decision(tx(kB1, 1), Outcome::committed, kB1, "k"));
  (void)t.apply(4, decision(tx(kB1, 2), Outcome::aborted, kB1));
  (void)t.apply(5, HazardRecord{tx(kB1, 2), "a", Outcome::committed, 9});
  (void)t.apply(6, CompletedRecord{{tx(kB1, 1)}});
  t.on_term(7, kB2);
  const std::string snap = t.snapshot();
  auto back = TxnTable::restore(snap);
  ASSERT_TRUE(back.ok()) << back.status().describe();
  EXPECT_EQ(back->snapshot(), snap);
  EXPECT_EQ(back->current_term(), kB2);
  EXPECT_EQ(back->open().size(), 1u);
  EXPECT_EQ(*back->by_key("k"), tx(kB1, 1));
  EXPECT_EQ(back->hazards().size(), 1u);
  EXPECT_EQ(back->participant("a")->url, "127.0.0.1:1");
  EXPECT_TRUE(back->check_invariants().ok());
  for (size_t cut = 0; cut < snap.size(); cut += 7) {
    EXPECT_FALSE(TxnTable::restore(std::string_view(snap).substr(0, cut)).ok());
  }
}

}  // namespace
}  // namespace dtx::coordinator
