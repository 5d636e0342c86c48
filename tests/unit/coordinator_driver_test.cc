// Goal: the coordinator leader's drivers run 2PC and 3PC as
// docs/protocol.md says: answers come from the applied register (T1), txids
// carry the ballot (T2), execs are sequenced and never retried blindly
// (T5), acknowledgements carry outcomes (T6), a new leader re-drives and
// sweeps (T7), and nothing is presumed about a forgotten txid (T3).
#include <gtest/gtest.h>

#include "tests/unit/coordinator_harness.h"
#include "txn/exec_digest.h"

namespace dtx::coordinator {
namespace {

using testing::Harness;
using K = AgentCall::Kind;

const Ballot kB1{1, 1};
const Ballot kB2{2, 2};

// Begins a transaction with one exec on each of `parts`, all answered 200.
std::string interactive(Harness& h, std::vector<std::string> parts, Protocol p = Protocol::two_pc) {
  const std::string txid = h.begin(p);
  for (const auto& part : parts) {
    const uint64_t r = h.exec(txid, part);
    h.reply(h.take(K::exec, part), Harness::ok_exec());
    EXPECT_EQ(h.answers.at(r).http_status, 200);
  }
  return txid;
}

TEST(CoordinatorDriver, txids_carry_the_ballot_and_count_up) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const Txid t1 = testing::parse(h.begin());
  const Txid t2 = testing::parse(h.begin());
  EXPECT_EQ(t1.ballot(), (txn::BallotId{1, 1}));
  EXPECT_EQ(t1.seq + 1, t2.seq);
  EXPECT_TRUE(h.proposals.empty()) << "begin writes nothing to the log";
}

TEST(CoordinatorDriver, execs_are_sequenced_and_folded_into_the_digest) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = h.begin();
  h.exec(txid, "a", "UPDATE t SET v = 1");
  AgentCall c1 = h.take(K::exec, "a");
  EXPECT_EQ(c1.seq, 1u);
  EXPECT_EQ(c1.ballot, kB1);
  EXPECT_EQ(c1.agent_id, "a");
  // One exec at a time per transaction.
  const uint64_t second = h.exec(txid, "a", "UPDATE t SET v = 2");
  EXPECT_EQ(h.answers.at(second).http_status, 409);
  h.reply(c1, Harness::ok_exec());
  h.exec(txid, "a", "UPDATE t SET v = 2");
  AgentCall c2 = h.take(K::exec, "a");
  EXPECT_EQ(c2.seq, 2u);
  h.reply(c2, Harness::ok_exec());
  h.commit(txid);
  AgentCall p = h.take(K::prepare, "a");
  uint64_t d = 0;
  d = txn::exec_digest(d, 1, "UPDATE t SET v = 1", {});
  d = txn::exec_digest(d, 2, "UPDATE t SET v = 2", {});
  EXPECT_EQ(p.exec_count, 2u);
  EXPECT_EQ(p.digest, d);
}

TEST(CoordinatorDriver, two_phase_commit_answers_from_the_applied_register) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a", "b"});
  const uint64_t c = h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  EXPECT_TRUE(h.proposals.empty());
  h.reply(h.take(K::prepare, "b"), Harness::vote(true));
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  EXPECT_EQ(h.proposed_decisions()[0].outcome, Outcome::committed);
  EXPECT_EQ(h.proposed_decisions()[0].participants.size(), 2u);
  // Proposed is not decided: no answer, no commit sent (T1).
  EXPECT_FALSE(h.answered(c));
  EXPECT_FALSE(h.has_call(K::commit));
  h.apply_all();
  ASSERT_TRUE(h.answered(c));
  EXPECT_EQ(h.answers.at(c).http_status, 200);
  EXPECT_EQ(h.json(c).at("outcome").as_string(), "committed");
  h.reply(h.take(K::commit, "a"), Harness::applied(Outcome::committed));
  h.reply(h.take(K::commit, "b"), Harness::applied(Outcome::committed));
  // COMPLETED is lazy: it goes out with the next flush.
  EXPECT_TRUE(h.proposals.empty());
  h.advance(10);
  ASSERT_EQ(h.proposals.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<CompletedRecord>(h.proposals.front().record));
  h.apply_all();
  EXPECT_TRUE(h.table.find(testing::parse(txid))->completed);
  EXPECT_EQ(h.driver.in_flight(), 0u);
}

TEST(CoordinatorDriver, the_register_wins_over_what_was_proposed) {
  // An abort reaches the register first (the client aborted while votes
  // came in): the commit that follows is a no-op and everyone hears abort.
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  const uint64_t c = h.commit(txid);
  const uint64_t ab = h.req();
  h.driver.abort(ab, txid, h.now);
  h.pump();
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.apply_all();
  EXPECT_EQ(h.answers.at(c).http_status, 409);
  EXPECT_EQ(h.json(c).at("outcome").as_string(), "aborted");
  EXPECT_EQ(h.answers.at(ab).http_status, 200);
  EXPECT_TRUE(h.has_call(K::abort, "a"));
  EXPECT_FALSE(h.has_call(K::commit, "a"));
}

TEST(CoordinatorDriver, a_no_vote_aborts_in_the_log_and_reaches_every_touched_branch) {
  Harness h;
  h.register_participants({"a", "b", "c"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a", "b"});
  // An exec on c that failed with a SQL error: touched, doomed.
  const std::string txid2 = txid;
  const uint64_t c = h.commit(txid);
  h.reply(h.take(K::prepare, "b"), Harness::vote(false));
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  EXPECT_EQ(h.proposed_decisions()[0].outcome, Outcome::aborted);
  EXPECT_EQ(h.proposed_decisions()[0].reason.participant, "b");
  h.apply_all();
  EXPECT_EQ(h.answers.at(c).http_status, 409);
  auto body = h.json(c);
  EXPECT_EQ(body.at("reason").as_object().at("participant").as_string(), "b");
  EXPECT_EQ(body.at("reason").as_object().at("sqlstate").as_string(), "40001");
  // a's prepare is still out; b voted no: both get the abort (b at once).
  EXPECT_TRUE(h.has_call(K::abort, "b"));
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  EXPECT_TRUE(h.has_call(K::abort, "a"));
}

// Defect: the agent's read_only vote (a branch that wrote nothing) was taken
// for a no, so every transaction with a read-only branch aborted.
TEST(CoordinatorDriver, a_read_only_branch_commits_and_is_left_out_of_phase_two) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a", "b"});
  const uint64_t c = h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::vote_read_only());
  EXPECT_TRUE(h.proposals.empty()) << "b has not voted";
  h.reply(h.take(K::prepare, "b"), Harness::vote(true));
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  EXPECT_EQ(h.proposed_decisions()[0].outcome, Outcome::committed);
  ASSERT_EQ(h.proposed_decisions()[0].participants.size(), 1u);
  EXPECT_EQ(h.proposed_decisions()[0].participants[0].name, "b");
  h.apply_all();
  EXPECT_EQ(h.answers.at(c).http_status, 200);
  EXPECT_TRUE(h.has_call(K::commit, "b"));
  EXPECT_FALSE(h.has_call(K::commit, "a"));
  h.reply(h.take(K::commit, "b"), Harness::applied(Outcome::committed));
  h.advance(10);
  h.apply_all();
  EXPECT_TRUE(h.table.find(testing::parse(txid))->completed);
  EXPECT_EQ(h.driver.in_flight(), 0u);
}

TEST(CoordinatorDriver, an_abort_skips_read_only_branches_and_all_read_only_commits) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  {
    const std::string txid = interactive(h, {"a", "b"});
    const uint64_t c = h.commit(txid);
    h.reply(h.take(K::prepare, "a"), Harness::vote_read_only());
    h.reply(h.take(K::prepare, "b"), Harness::vote(false));
    ASSERT_EQ(h.proposed_decisions().size(), 1u);
    EXPECT_EQ(h.proposed_decisions()[0].outcome, Outcome::aborted);
    ASSERT_EQ(h.proposed_decisions()[0].participants.size(), 1u);
    EXPECT_EQ(h.proposed_decisions()[0].participants[0].name, "b");
    h.apply_all();
    EXPECT_EQ(h.answers.at(c).http_status, 409);
    EXPECT_FALSE(h.has_call(K::abort, "a"));
    h.reply(h.take(K::abort, "b"), Harness::applied(Outcome::aborted));
  }
  {
    // Nothing written anywhere: committed through the register, no phase two.
    const std::string txid = interactive(h, {"a", "b"});
    const uint64_t c = h.commit(txid);
    h.reply(h.take(K::prepare, "a"), Harness::vote_read_only());
    h.reply(h.take(K::prepare, "b"), Harness::vote_read_only());
    h.apply_all();
    EXPECT_EQ(h.answers.at(c).http_status, 200);
    EXPECT_EQ(h.json(c).at("outcome").as_string(), "committed");
    EXPECT_FALSE(h.has_call(K::commit));
    h.advance(10);
    h.apply_all();
    EXPECT_TRUE(h.table.find(testing::parse(txid))->completed);
  }
}

// --- the one-phase fast path -----------------------------------------------

TEST(CoordinatorDriver, one_participant_commits_in_one_phase_with_the_record_after) {
  Harness h(testing::one_phase_config());
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  const uint64_t c = h.commit(txid);
  EXPECT_FALSE(h.has_call(K::prepare)) << "no PREPARE";
  AgentCall call = h.take(K::commit_one_phase, "a");
  EXPECT_EQ(call.exec_count, 1u);
  EXPECT_TRUE(h.proposals.empty()) << "no decision record before the commit";
  h.reply(call, Harness::one_phase(Outcome::committed));
  ASSERT_TRUE(h.answered(c)) << "answered from the agent's outcome";
  EXPECT_EQ(h.answers.at(c).http_status, 200);
  ASSERT_EQ(h.proposed_decisions().size(), 1u) << "then the register records it";
  EXPECT_EQ(h.proposed_decisions()[0].outcome, Outcome::committed);
  h.apply_all();
  EXPECT_FALSE(h.has_call(K::commit)) << "no phase two";
  h.advance(10);
  h.apply_all();
  EXPECT_TRUE(h.table.find(testing::parse(txid))->completed);
  EXPECT_EQ(h.driver.in_flight(), 0u);
}

TEST(CoordinatorDriver, a_lost_one_phase_answer_is_asked_again_never_guessed) {
  Harness h(testing::one_phase_config());
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  const uint64_t c = h.commit(txid);
  h.reply(h.take(K::commit_one_phase, "a"), Harness::lost());
  EXPECT_FALSE(h.answered(c));
  EXPECT_TRUE(h.proposals.empty());
  h.advance(20);
  // Asked again; the connection fails outright this time: still not a guess.
  h.reply(h.take(K::commit_one_phase, "a"), Harness::error(409, "busy"));
  h.advance(5);
  AgentReply refused;
  refused.delivery = AgentReply::Delivery::not_sent;
  h.reply(h.take(K::commit_one_phase, "a"), refused);
  EXPECT_FALSE(h.answered(c)) << "the first ask may have committed";
  h.advance(100);
  h.reply(h.take(K::commit_one_phase, "a"), Harness::one_phase(Outcome::committed));
  EXPECT_EQ(h.answers.at(c).http_status, 200);
}

TEST(CoordinatorDriver, a_one_phase_abort_is_answered_and_not_logged) {
  Harness h(testing::one_phase_config());
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  const uint64_t c = h.commit(txid);
  h.reply(h.take(K::commit_one_phase, "a"), Harness::one_phase(Outcome::aborted));
  EXPECT_EQ(h.answers.at(c).http_status, 409);
  EXPECT_EQ(h.json(c).at("reason").as_object().at("sqlstate").as_string(), "40001");
  EXPECT_TRUE(h.proposals.empty());
  EXPECT_FALSE(h.has_call(K::abort)) << "the agent has already rolled it back";
  // Status still knows it.
  const uint64_t s = h.req();
  h.driver.status(s, txid, h.now);
  h.pump();
  EXPECT_EQ(h.json(s).at("state").as_string(), "aborted");
}

TEST(CoordinatorDriver, one_shot_one_phase_only_without_an_idempotency_key) {
  Harness h(testing::one_phase_config());
  h.register_participants({"a"});
  h.serve(kB1);
  SubmitRequest s;
  s.branches = {{"a", {txn::Statement{"UPDATE t SET v = 1", {}}}}};
  uint64_t r = h.req();
  h.driver.submit(r, s, h.now);
  h.pump();
  AgentCall b = h.take(K::batch, "a");
  EXPECT_TRUE(b.one_phase);
  AgentReply ok;
  ok.http_status = 200;
  ok.batch = txn::BatchAnswer{};
  ok.batch->results.resize(1);
  ok.batch->results[0].ok = true;
  ok.batch->one_phase = txn::OnePhaseAnswer{Outcome::committed, {}, false};
  h.reply(b, ok);
  EXPECT_EQ(h.answers.at(r).http_status, 200);
  // With a key: the decision record comes first (T4).
  s.idempotency_key = "k1";
  r = h.req();
  h.driver.submit(r, s, h.now);
  h.pump();
  EXPECT_FALSE(h.take(K::batch, "a").one_phase);
}

// A new leader asked about an older leader's txid that has no record: it
// may have committed in one phase before that leader wrote it down, so the
// agents are probed (raising their fence) before anything is presumed.
TEST(CoordinatorDriver, a_new_leader_probes_before_presuming_an_older_txid_aborted) {
  Harness h(testing::one_phase_config());
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string committed = interactive(h, {"a"});
  h.commit(committed);
  h.take(K::commit_one_phase, "a");  // it commits there; the leader dies first
  const std::string open = interactive(h, {"b"});
  h.driver.on_not_serving();
  h.pump();
  h.calls.clear();
  h.elect(kB2);
  h.answer_sweep({});
  const uint64_t s1 = h.req();
  h.driver.status(s1, committed, h.now);
  h.pump();
  EXPECT_TRUE(h.proposals.empty());
  AgentCall pa = h.take(K::probe, "a");
  EXPECT_EQ(pa.ballot, kB2) << "the probe carries the new ballot (the fence)";
  h.reply(pa, Harness::branch(txn::BranchState::committed));
  EXPECT_TRUE(h.proposals.empty()) << "b has not answered";
  // b is busy with it, then unreachable, then says it has no such branch.
  h.reply(h.take(K::probe, "b"), Harness::branch(txn::BranchState::active, /*busy=*/true));
  h.advance(5);
  h.reply(h.take(K::probe, "b"), Harness::lost());
  h.advance(60);
  h.reply(h.take(K::probe, "b"), Harness::error(404, "not_found"));
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  EXPECT_EQ(h.proposed_decisions()[0].outcome, Outcome::committed);
  h.apply_all();
  EXPECT_EQ(h.json(s1).at("outcome").as_string(), "committed");

  // The other: active at b, nowhere committed: aborted in the log.
  const uint64_t s2 = h.req();
  h.driver.status(s2, open, h.now);
  h.pump();
  h.reply(h.take(K::probe, "a"), Harness::error(404, "not_found"));
  h.reply(h.take(K::probe, "b"), Harness::branch(txn::BranchState::active));
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  EXPECT_EQ(h.proposed_decisions()[0].outcome, Outcome::aborted);
  h.apply_all();
  EXPECT_EQ(h.json(s2).at("outcome").as_string(), "aborted");
}

TEST(CoordinatorDriver, abort_before_any_prepare_is_not_logged) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  const uint64_t ab = h.req();
  h.driver.abort(ab, txid, h.now);
  h.pump();
  EXPECT_EQ(h.answers.at(ab).http_status, 200);
  EXPECT_TRUE(h.proposals.empty());
  h.reply(h.take(K::abort, "a"), Harness::applied(Outcome::aborted));
  EXPECT_EQ(h.driver.in_flight(), 0u);
  // A repeat is answered the same (idempotent).
  const uint64_t again = h.req();
  h.driver.abort(again, txid, h.now);
  h.pump();
  EXPECT_EQ(h.answers.at(again).http_status, 200);
}

TEST(CoordinatorDriver, an_exec_with_unknown_outcome_dooms_the_transaction) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = h.begin();
  const uint64_t e = h.exec(txid, "a");
  h.reply(h.take(K::exec, "a"), Harness::lost());
  EXPECT_EQ(h.answers.at(e).http_status, 504);
  // Never retried (T5): the next exec is refused, commit aborts.
  EXPECT_FALSE(h.has_call(K::exec));
  const uint64_t e2 = h.exec(txid, "a");
  EXPECT_EQ(h.answers.at(e2).http_status, 409);
  const uint64_t c = h.commit(txid);
  EXPECT_EQ(h.answers.at(c).http_status, 409);
  EXPECT_FALSE(h.has_call(K::prepare));
  EXPECT_TRUE(h.has_call(K::abort, "a"));
}

TEST(CoordinatorDriver, an_exec_that_was_not_sent_can_be_sent_again) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = h.begin();
  const uint64_t e = h.exec(txid, "a");
  AgentReply r;
  r.delivery = AgentReply::Delivery::not_sent;
  h.reply(h.take(K::exec, "a"), r);
  EXPECT_EQ(h.answers.at(e).http_status, 502);
  h.exec(txid, "a");
  EXPECT_EQ(h.take(K::exec, "a").seq, 1u) << "the seq was not used";
}

TEST(CoordinatorDriver, busy_agents_are_asked_again_promptly) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::error(409, "busy"));
  EXPECT_FALSE(h.has_call(K::prepare));
  h.advance(2);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.apply_all();
  h.reply(h.take(K::commit, "a"), Harness::error(409, "busy"));
  h.advance(2);
  EXPECT_TRUE(h.has_call(K::commit, "a"));
}

TEST(CoordinatorDriver, three_phase_commit_precommits_everyone_before_commit) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a", "b"}, Protocol::three_pc);
  const uint64_t c = h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.reply(h.take(K::prepare, "b"), Harness::vote(true));
  h.apply_all();  // the PRECOMMIT decision
  EXPECT_EQ(h.answers.at(c).http_status, 200) << "the PRECOMMIT record is the commit decision";
  AgentCall pa = h.take(K::precommit, "a");
  AgentCall pb = h.take(K::precommit, "b");
  EXPECT_FALSE(h.has_call(K::commit));
  AgentReply ok;
  ok.http_status = 200;
  ok.precommit = txn::PrecommitAnswer{};
  h.reply(pa, ok);
  EXPECT_FALSE(h.has_call(K::commit)) << "do-commit waits for every pre-commit";
  h.reply(pb, ok);
  EXPECT_TRUE(h.has_call(K::commit, "a"));
  EXPECT_TRUE(h.has_call(K::commit, "b"));
}

TEST(CoordinatorDriver, a_mismatching_acknowledgement_is_a_hazard_never_completed) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.apply_all();
  h.reply(h.take(K::commit, "a"), Harness::applied(Outcome::aborted));
  ASSERT_EQ(h.proposals.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<HazardRecord>(h.proposals.front().record));
  h.apply_all();
  h.advance(50);
  for (const auto& p : h.proposals) {
    EXPECT_FALSE(std::holds_alternative<CompletedRecord>(p.record));
  }
  EXPECT_FALSE(h.table.find(testing::parse(txid))->completed);
  EXPECT_EQ(h.driver.stats().hazards, 1u);
}

TEST(CoordinatorDriver, unknown_branch_is_not_an_acknowledgement) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.apply_all();
  h.reply(h.take(K::commit, "a"), Harness::error(404, "not_found"));
  h.advance(100);
  EXPECT_TRUE(h.has_call(K::commit, "a")) << "asked again";
  EXPECT_FALSE(h.table.find(testing::parse(txid))->completed);
}

TEST(CoordinatorDriver, losing_leadership_answers_unknown_never_a_guess) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  const uint64_t c = h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  h.driver.on_not_serving();
  h.pump();
  EXPECT_EQ(h.answers.at(c).http_status, 202);
  EXPECT_EQ(h.json(c).at("outcome").as_string(), "unknown");
}

TEST(CoordinatorDriver, a_new_leader_redrives_decided_transactions_and_sweeps_orphans) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string decided = interactive(h, {"a", "b"});
  h.commit(decided);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.reply(h.take(K::prepare, "b"), Harness::vote(true));
  h.apply_all();
  const std::string orphan = interactive(h, {"a"});
  h.commit(orphan);  // prepared at a, never decided: the leader dies
  h.driver.on_not_serving();
  h.pump();
  h.calls.clear();

  // A new leader: it re-drives the decided one at once, and the sweep finds
  // the orphan prepared at a.
  h.elect(kB2);
  EXPECT_TRUE(h.has_call(K::commit, "a"));
  EXPECT_TRUE(h.has_call(K::commit, "b"));
  txn::BranchStatus held;
  held.txid = orphan;
  held.state = txn::BranchState::prepared;
  h.answer_sweep({{"a", {held}}});
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  const DecisionRecord d = h.proposed_decisions()[0];
  EXPECT_EQ(d.outcome, Outcome::aborted);
  EXPECT_EQ(d.reason.code, "coordinator_failover");
  EXPECT_TRUE(d.idempotency_key.empty()) << "an orphan abort consumes no key (T4)";
  EXPECT_FALSE(h.driver.sweep_done()) << "not done until the orphan abort is applied";
  h.apply_all();
  EXPECT_TRUE(h.driver.sweep_done());
  EXPECT_TRUE(h.has_call(K::abort, "a"));
}

// Found by the commit simulation (seed 42): one agent listed an orphan as
// active and another as prepared; the prepared branch was left out of the
// unlogged abort, the watermark forgot the txid, and the branch stayed in
// doubt for good.
TEST(CoordinatorDriver, an_orphan_prepared_anywhere_is_aborted_in_the_log) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string orphan = interactive(h, {"a", "b"});
  h.driver.on_not_serving();
  h.pump();
  h.calls.clear();
  h.driver.on_elected(kB2, h.now);
  h.pump();
  h.apply_all();
  txn::BranchStatus active;
  active.txid = orphan;
  active.state = txn::BranchState::active;
  txn::BranchStatus prepared = active;
  prepared.state = txn::BranchState::prepared;
  h.answer_sweep({{"a", {active}}, {"b", {prepared}}});
  ASSERT_EQ(h.proposed_decisions().size(), 1u) << "the prepared branch needs a logged abort";
  EXPECT_FALSE(h.driver.sweep_done());
  h.apply_all();
  EXPECT_TRUE(h.driver.sweep_done());
  EXPECT_TRUE(h.has_call(K::abort, "a"));
  EXPECT_TRUE(h.has_call(K::abort, "b"));
  EXPECT_EQ(h.table.find(testing::parse(orphan))->decision.outcome, Outcome::aborted);
}

// Found by the commit simulation (seed 696 with read-only branches): a
// presumed abort written for one agent's inquiry lists no participants. The
// leader that wrote it lost its term before the log applied it; re-elected,
// it re-drove the abort before starting the sweep, found nobody to tell,
// wrote COMPLETED, and the branch another agent still held prepared was
// left in doubt (and could have been forgotten below the watermark).
TEST(CoordinatorDriver, an_adopted_decision_completes_only_after_every_agent_was_swept) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  const std::string old = interactive(h, {"a", "b"});
  h.commit(old);  // prepares go out; the leader dies before any vote
  h.driver.on_not_serving();
  h.pump();
  h.calls.clear();
  // The next leader presumes abort for b's inquiry (no participants known)
  // and loses its term before the record is applied.
  h.elect(kB2);
  h.answer_sweep({});
  const uint64_t q = h.req();
  h.driver.inquiry(q, old, h.now);
  h.pump();
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  EXPECT_TRUE(h.proposed_decisions()[0].participants.empty());
  h.driver.on_not_serving();
  h.pump();
  h.calls.clear();
  // Re-elected: the abort is applied with its TERM; a still holds old prepared.
  const Ballot kB3{3, 2};
  h.elect(kB3);
  h.advance(50);
  for (const auto& p : h.proposals) {
    EXPECT_FALSE(std::holds_alternative<CompletedRecord>(p.record))
        << "COMPLETED before a was swept";
  }
  h.apply_all();
  txn::BranchStatus held;
  held.txid = old;
  held.state = txn::BranchState::prepared;
  h.answer_sweep({{"a", {held}}});
  h.reply(h.take(K::abort, "a"), Harness::applied(Outcome::aborted));
  h.advance(50);
  h.apply_all();
  EXPECT_TRUE(h.table.find(testing::parse(old))->completed);
}

TEST(CoordinatorDriver, inquiries_follow_presumed_abort_but_never_below_the_watermark) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string mine = interactive(h, {"a"});
  h.commit(mine);
  // In flight here: pending.
  uint64_t q = h.req();
  h.driver.inquiry(q, mine, h.now);
  h.pump();
  EXPECT_EQ(h.json(q).at("outcome").as_string(), "pending");
  // An older leader's txid (its term is in the log) with no decision: the
  // leader writes ABORT, then answers from the register.
  h.driver.on_not_serving();
  h.pump();
  h.elect(kB2);
  h.answer_sweep({});
  q = h.req();
  h.driver.inquiry(q, mine, h.now);
  h.pump();
  EXPECT_FALSE(h.answered(q));
  ASSERT_EQ(h.proposed_decisions().size(), 1u);
  h.apply_all();
  EXPECT_EQ(h.json(q).at("outcome").as_string(), "aborted");
  // A txid of a ballot that never served: 404, nothing written.
  q = h.req();
  h.driver.inquiry(q, "c1.9.9.1", h.now);
  h.pump();
  EXPECT_EQ(h.answers.at(q).http_status, 404);
  EXPECT_TRUE(h.proposals.empty());
  // Below the watermark: forgotten (410), never presumed aborted.
  (void)h.table.apply(++h.slot, WatermarkRecord{Txid("c1", {2, 2}, 1), kB2});
  q = h.req();
  h.driver.inquiry(q, "c1.1.1.7", h.now);
  h.pump();
  EXPECT_EQ(h.answers.at(q).http_status, 410);
  EXPECT_EQ(h.json(q).at("outcome").as_string(), "forgotten");
  EXPECT_TRUE(h.proposals.empty());
}

TEST(CoordinatorDriver, a_follower_answers_decided_inquiries_and_redirects_the_rest) {
  Harness h;
  h.table.on_term(++h.slot, kB1);
  DecisionRecord d;
  d.txid = Txid("c1", {1, 1}, 3);
  d.term = kB1;
  d.outcome = Outcome::committed;
  (void)h.table.apply(++h.slot, d);
  uint64_t q = h.req();
  h.driver.inquiry(q, d.txid.str(), h.now);
  h.pump();
  EXPECT_EQ(h.answers.at(q).http_status, 200);
  EXPECT_EQ(h.json(q).at("outcome").as_string(), "committed");
  q = h.req();
  h.driver.inquiry(q, "c1.1.1.4", h.now);
  h.pump();
  EXPECT_TRUE(h.answers.at(q).not_leader);
}

TEST(CoordinatorDriver, exec_on_an_older_leaders_transaction_aborts_it) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string old = interactive(h, {"a"});
  h.driver.on_not_serving();
  h.pump();
  h.elect(kB2);
  h.answer_sweep({});
  const uint64_t e = h.exec(old, "a");
  // First a probe: did it commit in one phase at a? (No: still active there.)
  EXPECT_TRUE(h.proposals.empty());
  h.reply(h.take(K::probe, "a"), Harness::branch(txn::BranchState::active));
  h.apply_all();
  EXPECT_EQ(h.answers.at(e).http_status, 409);
  EXPECT_EQ(h.json(e).at("error").as_object().at("code").as_string(), "coordinator_failover");
  EXPECT_EQ(h.table.find(testing::parse(old))->decision.outcome, Outcome::aborted);
}

TEST(CoordinatorDriver, a_keyed_submit_runs_once_across_a_failover) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  auto submit = [&](const std::string& key) {
    SubmitRequest s;
    s.idempotency_key = key;
    s.branches = {{"a", {{"UPDATE t SET v = v - 5 WHERE id = 1", {}}}},
                  {"b", {{"UPDATE t SET v = v + 5 WHERE id = 2", {}}}}};
    const uint64_t r = h.req();
    h.driver.submit(r, std::move(s), h.now);
    h.pump();
    return r;
  };
  auto batch_yes = [&](const AgentCall& c) {
    AgentReply r;
    r.http_status = 200;
    r.batch = txn::BatchAnswer{};
    txn::StatementResult sr;
    sr.ok = true;
    sr.rows.rows_affected = 1;
    r.batch->results.push_back(sr);
    r.batch->vote.vote = txn::Vote::yes;
    h.reply(c, r);
  };
  const uint64_t s1 = submit("transfer-42");
  const uint64_t s2 = submit("transfer-42");  // a retry while the first runs
  EXPECT_EQ(h.calls.size(), 2u) << "the retry attaches to the first";
  batch_yes(h.take(K::batch, "a"));
  batch_yes(h.take(K::batch, "b"));
  h.apply_all();
  EXPECT_EQ(h.answers.at(s1).http_status, 200);
  EXPECT_EQ(h.answers.at(s2).body, h.answers.at(s1).body);
  // After a failover the key is found in the replicated table.
  h.driver.on_not_serving();
  h.pump();
  h.calls.clear();
  h.elect(kB2);
  h.answer_sweep({});
  h.calls.clear();
  const uint64_t s3 = submit("transfer-42");
  EXPECT_FALSE(h.has_call(K::batch)) << "a keyed retry runs once";
  EXPECT_EQ(h.answers.at(s3).http_status, 200);
  EXPECT_EQ(h.json(s3).at("txid"), h.json(s1).at("txid"));
  EXPECT_EQ(h.json(s3).at("results"), h.json(s1).at("results"));
}

TEST(CoordinatorDriver, a_sequential_submit_sends_each_branch_after_the_one_before_voted_yes) {
  Harness h;
  h.register_participants({"a", "b"});
  h.serve(kB1);
  SubmitRequest s;
  s.sequential = true;
  s.branches = {{"b", {{"UPDATE t SET v = 1", {}}}}, {"a", {{"UPDATE t SET v = 2", {}}}}};
  const uint64_t r = h.req();
  h.driver.submit(r, std::move(s), h.now);
  h.pump();
  ASSERT_EQ(h.calls.size(), 1u);
  EXPECT_EQ(h.calls.front().participant, "b") << "in the order given";
  AgentReply yes;
  yes.http_status = 200;
  yes.batch = txn::BatchAnswer{};
  yes.batch->vote.vote = txn::Vote::yes;
  h.reply(h.take(K::batch, "b"), yes);
  EXPECT_TRUE(h.proposals.empty()) << "no decision before every branch voted";
  h.reply(h.take(K::batch, "a"), yes);
  h.apply_all();
  EXPECT_EQ(h.answers.at(r).http_status, 200);
  // A no from the first branch: the second is never sent, the abort goes
  // only where something ran.
  SubmitRequest s2;
  s2.sequential = true;
  s2.branches = {{"a", {{"UPDATE t SET v = 3", {}}}}, {"b", {{"UPDATE t SET v = 4", {}}}}};
  const uint64_t r2 = h.req();
  h.driver.submit(r2, std::move(s2), h.now);
  h.pump();
  AgentReply no = yes;
  no.batch->vote.vote = txn::Vote::no;
  h.reply(h.take(K::batch, "a"), no);
  h.apply_all();
  EXPECT_EQ(h.answers.at(r2).http_status, 409);
  EXPECT_FALSE(h.has_call(K::batch, "b"));
  EXPECT_FALSE(h.has_call(K::abort, "b"));
}

TEST(CoordinatorDriver, the_watermark_moves_only_over_completed_transactions) {
  DriverConfig cfg = testing::test_config();
  cfg.retention_ms = 1000;
  Harness h(cfg);
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string done = interactive(h, {"a"});
  h.commit(done);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.apply_all();
  h.reply(h.take(K::commit, "a"), Harness::applied(Outcome::committed));
  h.advance(10);
  h.apply_all();
  const std::string open = interactive(h, {"a"});
  h.commit(open);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.apply_all();  // decided, not acknowledged
  h.advance(2000);
  h.apply_all();
  // Past the completed one, stopped at the open one.
  EXPECT_EQ(h.table.watermark(), testing::parse(open));
  EXPECT_EQ(h.table.classify(testing::parse(done)), TxnTable::Known::forgotten);
  EXPECT_EQ(h.table.classify(testing::parse(open)), TxnTable::Known::decided);
  // Agents learn it with every call.
  h.reply(h.take(K::commit, "a"), Harness::error(503, "overloaded"));
  h.advance(100);
  EXPECT_EQ(h.take(K::commit, "a").watermark, testing::parse(open));
}

TEST(CoordinatorDriver, an_operator_never_contradicts_the_register) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  const std::string txid = interactive(h, {"a"});
  h.commit(txid);
  h.reply(h.take(K::prepare, "a"), Harness::vote(true));
  h.apply_all();
  const uint64_t r = h.req();
  h.driver.operator_decision(r, OperatorDecision{txid, Outcome::aborted, "alice", "stuck", {}},
                             h.now);
  h.pump();
  EXPECT_EQ(h.answers.at(r).http_status, 409);
  EXPECT_TRUE(h.proposals.empty());
}

TEST(CoordinatorDriver, overload_is_refused_not_queued) {
  DriverConfig cfg = testing::test_config();
  cfg.in_flight_max = 2;
  Harness h(cfg);
  h.register_participants({"a"});
  h.serve(kB1);
  h.begin();
  h.begin();
  const uint64_t r = h.req();
  h.driver.begin(r, BeginRequest{}, h.now);
  h.pump();
  EXPECT_EQ(h.answers.at(r).http_status, 503);
}

TEST(CoordinatorDriver, an_idle_transaction_times_out_and_aborts) {
  Harness h;
  h.register_participants({"a"});
  h.serve(kB1);
  BeginRequest b;
  b.timeout_ms = 100;
  const uint64_t r = h.req();
  h.driver.begin(r, b, h.now);
  h.pump();
  const std::string txid = h.json(r).at("txid").as_string().c_str();
  h.exec(txid, "a");
  h.reply(h.take(K::exec, "a"), Harness::ok_exec());
  h.advance(150);
  EXPECT_TRUE(h.has_call(K::abort, "a"));
  const uint64_t c = h.commit(txid);
  EXPECT_EQ(h.answers.at(c).http_status, 409);
  EXPECT_EQ(h.json(c).at("reason").as_object().at("code").as_string(), "timeout");
}

}  // namespace
}  // namespace dtx::coordinator
