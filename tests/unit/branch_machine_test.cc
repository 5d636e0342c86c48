// Goal: the branch life cycle keeps T5, T6 and T8 whatever order requests
// arrive in.
#include <gtest/gtest.h>

#include "participant/core/branch_machine.h"

namespace dtx::participant {
namespace {

using V = BranchMachine;

BranchTimers timers() {
  BranchTimers t;
  t.active_idle_ticks = 50;
  t.inquiry_first_ticks = 2;
  t.inquiry_max_ticks = 16;
  t.precommit_timeout_ticks = 20;
  return t;
}

// Runs execs 1..n successfully.
uint64_t run_execs(BranchMachine& m, int n, uint64_t now = 0) {
  uint64_t digest = 0;
  for (int i = 1; i <= n; ++i) {
    EXPECT_EQ(m.on_exec(i, now), V::ExecVerdict::run);
    const std::string sql = "UPDATE t SET v = v + $1 WHERE id = $2";
    std::vector<SqlValue> params = {int64_t{i}, std::string("k")};
    m.on_exec_done(i, sql, params, true, {}, now);
    digest = exec_digest(digest, i, sql, params);
  }
  return digest;
}

TEST(BranchMachine, execs_run_only_in_sequence_and_only_while_active) {
  BranchMachine m("t1", timers(), 0);
  EXPECT_EQ(m.on_exec(2, 0), V::ExecVerdict::out_of_sequence);
  EXPECT_EQ(m.on_exec(1, 0), V::ExecVerdict::run);
  EXPECT_EQ(m.on_exec(2, 0), V::ExecVerdict::busy) << "exec 1 is still running";
  m.on_exec_done(1, "x", {}, true, {}, 0);
  EXPECT_EQ(m.on_exec(1, 0), V::ExecVerdict::out_of_sequence) << "a repeated exec never runs twice";
  const uint64_t d = exec_digest(0, 1, "x", {});
  ASSERT_EQ(m.on_prepare(1, d, 0), V::PrepareVerdict::run);
  EXPECT_EQ(m.on_exec(2, 0), V::ExecVerdict::not_active) << "no statement while preparing";
  m.on_prepare_done(true, {}, 0);
  EXPECT_EQ(m.on_exec(2, 0), V::ExecVerdict::not_active)
      << "a late exec after prepare must not run (it would autocommit)";
}

TEST(BranchMachine, any_exec_error_dooms_the_branch_to_a_no_vote) {
  BranchMachine m("t1", timers(), 0);
  ASSERT_EQ(m.on_exec(1, 0), V::ExecVerdict::run);
  m.on_exec_done(1, "INSERT", {}, false, DbError{"23505", "duplicate key"}, 0);
  EXPECT_TRUE(m.doomed());
  EXPECT_EQ(m.on_exec(2, 0), V::ExecVerdict::doomed);
  EXPECT_EQ(m.on_prepare(1, m.digest(), 0), V::PrepareVerdict::rollback);
  m.on_prepare_done(false, m.vote_no_reason(), 0);
  EXPECT_EQ(m.state(), BranchState::aborted);
  EXPECT_EQ(m.vote_no_reason().sqlstate, "23505");
  EXPECT_EQ(m.on_prepare(1, m.digest(), 0), V::PrepareVerdict::vote_no) << "same answer again";
}

TEST(BranchMachine, prepare_with_a_wrong_count_or_digest_votes_no) {
  for (int variant = 0; variant < 2; ++variant) {
    BranchMachine m("t1", timers(), 0);
    const uint64_t d = run_execs(m, 3);
    const auto v = variant == 0 ? m.on_prepare(2, d, 0) : m.on_prepare(3, d ^ 1, 0);
    EXPECT_EQ(v, V::PrepareVerdict::rollback);
    EXPECT_EQ(m.vote_no_reason().sqlstate, std::string(kRefusedByDtx));
  }
  BranchMachine ok("t2", timers(), 0);
  const uint64_t d = run_execs(ok, 3);
  EXPECT_EQ(ok.on_prepare(3, d, 0), V::PrepareVerdict::run);
}

TEST(BranchMachine, digest_depends_on_every_field) {
  const std::vector<SqlValue> p = {int64_t{5}, std::string("a")};
  const uint64_t base = exec_digest(0, 1, "SQL", p);
  EXPECT_NE(base, exec_digest(0, 2, "SQL", p));
  EXPECT_NE(base, exec_digest(0, 1, "SQL ", p));
  EXPECT_NE(base, exec_digest(0, 1, "SQL", {int64_t{6}, std::string("a")}));
  EXPECT_NE(base, exec_digest(0, 1, "SQL", {std::string("5"), std::string("a")}));
  EXPECT_NE(base, exec_digest(0, 1, "SQL", {int64_t{5}}));
  EXPECT_EQ(base, exec_digest(0, 1, "SQL", p));
}

TEST(BranchMachine, decisions_are_idempotent_and_report_what_was_applied) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_prepare(1, d, 0), V::PrepareVerdict::run);
  m.on_prepare_done(true, {}, 0);
  EXPECT_EQ(m.on_prepare(1, d, 0), V::PrepareVerdict::vote_yes);
  ASSERT_EQ(m.on_commit(), V::DecisionVerdict::run_commit);
  EXPECT_EQ(m.on_commit(), V::DecisionVerdict::answer) << "a decision is under way";
  EXPECT_TRUE(m.on_decided(Outcome::committed, Outcome::aborted, 0)) << "heuristic: flagged";
  EXPECT_EQ(m.outcome(), Outcome::aborted);
  EXPECT_EQ(m.on_commit(), V::DecisionVerdict::answer);
  EXPECT_EQ(m.on_abort(), V::DecisionVerdict::answer);
}

TEST(BranchMachine, a_precommitted_branch_refuses_abort_and_commits_on_its_timer) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_prepare(1, d, 0), V::PrepareVerdict::run);
  m.on_prepare_done(true, {}, 0);
  EXPECT_EQ(m.on_precommit(5), V::PrecommitVerdict::ok);
  EXPECT_EQ(m.on_abort(), V::DecisionVerdict::refused);
  EXPECT_EQ(m.on_tick(10).kind, V::TickKind::none);
  EXPECT_EQ(m.on_tick(25).kind, V::TickKind::commit_alone);
}

TEST(BranchMachine, a_prepared_branch_asks_with_capped_backoff_and_never_decides_alone) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_prepare(1, d, 0), V::PrepareVerdict::run);
  m.on_prepare_done(true, {}, 0);
  std::vector<uint64_t> asked_at;
  for (uint64_t t = 0; t < 200; ++t) {
    const auto a = m.on_tick(t).kind;
    ASSERT_NE(a, V::TickKind::abort_idle);
    ASSERT_NE(a, V::TickKind::commit_alone);
    if (a == V::TickKind::inquire) {
      asked_at.push_back(t);
      EXPECT_EQ(m.on_inquiry_answer(V::Answer::pending, t), V::DecisionVerdict::answer);
    }
  }
  ASSERT_GE(asked_at.size(), 5u);
  EXPECT_EQ(asked_at[1] - asked_at[0], 4u);  // 2, then doubling
  EXPECT_EQ(asked_at[2] - asked_at[1], 8u);
  EXPECT_EQ(asked_at.back() - asked_at[asked_at.size() - 2], 16u) << "capped";
  EXPECT_EQ(m.state(), BranchState::prepared);
  EXPECT_EQ(m.on_tick(1000).kind, V::TickKind::inquire);
  EXPECT_EQ(m.on_inquiry_answer(V::Answer::committed, 1000), V::DecisionVerdict::run_commit);
}

TEST(BranchMachine, a_decision_that_failed_is_asked_for_again_after_a_backoff) {
  BranchMachine m = BranchMachine::recovered("t9", timers(), 100);
  ASSERT_EQ(m.on_tick(100).kind, V::TickKind::inquire);
  ASSERT_EQ(m.on_inquiry_answer(V::Answer::committed, 100), V::DecisionVerdict::run_commit);
  ASSERT_EQ(m.on_commit(), V::DecisionVerdict::run_commit) << "the shell takes the decision";
  m.on_decision_failed();  // the database did not answer
  EXPECT_EQ(m.state(), BranchState::prepared);
  EXPECT_EQ(m.on_tick(101).kind, V::TickKind::none) << "not every tick";
  uint64_t t = 101;
  while (m.on_tick(t).kind != V::TickKind::inquire && t < 200)
    ++t;
  EXPECT_GE(t, 102u);
  EXPECT_LE(t, 116u) << "asked again within the capped backoff";
  EXPECT_EQ(m.on_inquiry_answer(V::Answer::committed, t), V::DecisionVerdict::run_commit);
}

TEST(BranchMachine, a_precommitted_commit_that_failed_is_retried_after_another_timeout) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_prepare(1, d, 0), V::PrepareVerdict::run);
  m.on_prepare_done(true, {}, 0);
  ASSERT_EQ(m.on_precommit(0), V::PrecommitVerdict::ok);
  const auto first = m.on_tick(20);
  ASSERT_EQ(first.kind, V::TickKind::commit_alone);
  ASSERT_EQ(m.on_timer_decision(first.token), V::DecisionVerdict::run_commit);
  m.on_decision_failed();  // the database did not answer
  for (uint64_t t = 21; t < 40; ++t)
    EXPECT_EQ(m.on_tick(t).kind, V::TickKind::none) << t;
  const auto second = m.on_tick(41);
  EXPECT_EQ(second.kind, V::TickKind::commit_alone);
  ASSERT_EQ(m.on_timer_decision(second.token), V::DecisionVerdict::run_commit);
  EXPECT_EQ(m.on_decided(Outcome::committed, Outcome::committed, 41), false);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  EXPECT_EQ(m.state(), BranchState::committed);
}

TEST(BranchMachine, an_idle_active_branch_aborts_itself) {
  BranchMachine m("t1", timers(), 0);
  run_execs(m, 1, 0);
  EXPECT_EQ(m.on_tick(49).kind, V::TickKind::none);
  EXPECT_EQ(m.on_tick(50).kind, V::TickKind::abort_idle);
}

TEST(BranchMachine, a_timer_decision_runs_once_and_a_stale_token_is_ignored) {
  BranchMachine m("t1", timers(), 0);
  run_execs(m, 1, 0);
  const auto fired = m.on_tick(50);
  ASSERT_EQ(fired.kind, V::TickKind::abort_idle);
  ASSERT_NE(fired.token, 0u);
  EXPECT_EQ(m.on_exec(2, 50), V::ExecVerdict::not_active) << "the idle abort is under way";
  EXPECT_EQ(m.on_tick(60).kind, V::TickKind::none) << "fired once until its token comes back";
  // The shell could not queue it: dropped; the timer fires again, with a new token.
  m.drop_decision(fired.token);
  const auto again = m.on_tick(61);
  ASSERT_EQ(again.kind, V::TickKind::abort_idle);
  EXPECT_NE(again.token, fired.token);
  EXPECT_EQ(m.on_timer_decision(fired.token), V::DecisionVerdict::answer) << "stale: ignored";
  EXPECT_EQ(m.on_timer_decision(again.token), V::DecisionVerdict::run_abort);
  EXPECT_EQ(m.on_timer_decision(again.token), V::DecisionVerdict::answer) << "used once";
  EXPECT_FALSE(m.on_decided(Outcome::aborted, Outcome::aborted, 62));
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
}

TEST(BranchMachine, a_prepare_that_meets_a_pending_idle_abort_votes_no_and_the_abort_goes_on) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1, 0);
  const auto fired = m.on_tick(50);
  ASSERT_EQ(fired.kind, V::TickKind::abort_idle);
  EXPECT_EQ(m.on_prepare(1, d, 50), V::PrepareVerdict::vote_no);
  EXPECT_TRUE(m.doomed()) << "one branch never votes both ways";
  EXPECT_EQ(m.on_timer_decision(fired.token), V::DecisionVerdict::run_abort);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
}

TEST(BranchMachine, invariants_hold_through_every_path) {
  std::string why;
  BranchMachine m("t1", timers(), 0);
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  const uint64_t d = run_execs(m, 2);
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  ASSERT_EQ(m.on_prepare(2, d, 0), V::PrepareVerdict::run);
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  m.on_prepare_done(true, {}, 0);
  ASSERT_EQ(m.on_precommit(1), V::PrecommitVerdict::ok);
  const auto fired = m.on_tick(21);
  ASSERT_EQ(fired.kind, V::TickKind::commit_alone);
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  EXPECT_EQ(m.on_abort(), V::DecisionVerdict::refused);
  EXPECT_EQ(m.on_timer_decision(fired.token), V::DecisionVerdict::run_commit);
  m.on_decided(Outcome::committed, Outcome::committed, 22);
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  EXPECT_EQ(m.state(), BranchState::committed);
}

TEST(BranchMachine, a_branch_that_wrote_nothing_is_committed_at_its_read_only_vote) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 2);
  ASSERT_EQ(m.on_prepare(2, d, 1), V::PrepareVerdict::run);
  m.on_prepare_read_only(1);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  EXPECT_EQ(m.state(), BranchState::committed);
  EXPECT_TRUE(m.read_only());
  EXPECT_EQ(m.outcome(), Outcome::committed);
  EXPECT_EQ(m.on_prepare(2, d, 2), V::PrepareVerdict::vote_yes)
      << "a repeat: the shell answers read_only";
  EXPECT_EQ(m.on_exec(3, 2), V::ExecVerdict::not_active);
  EXPECT_EQ(m.on_abort(), V::DecisionVerdict::answer) << "no part in phase two";
  EXPECT_EQ(m.on_commit(), V::DecisionVerdict::answer);
  EXPECT_EQ(m.on_tick(1000).kind, V::TickKind::none) << "no timer, no inquiry";
  EXPECT_NE(m.describe().find("read-only"), std::string::npos);
}

TEST(BranchMachine, a_recovered_branch_asks_at_once) {
  BranchMachine m = BranchMachine::recovered("t9", timers(), 100);
  EXPECT_EQ(m.state(), BranchState::prepared);
  EXPECT_EQ(m.on_tick(100).kind, V::TickKind::inquire);
  EXPECT_EQ(m.on_inquiry_answer(V::Answer::aborted, 100), V::DecisionVerdict::run_abort);
}

// --- one-phase commit (issue 11)

TEST(BranchMachine, commit_one_phase_goes_from_active_to_committed) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 2);
  ASSERT_EQ(m.on_commit_one_phase(2, d, 1), V::OnePhaseVerdict::run);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  EXPECT_EQ(m.on_exec(3, 1), V::ExecVerdict::not_active) << "no statement while committing";
  EXPECT_EQ(m.on_commit_one_phase(2, d, 1), V::OnePhaseVerdict::busy);
  EXPECT_EQ(m.on_prepare(2, d, 1), V::PrepareVerdict::busy);
  EXPECT_EQ(m.on_abort(), V::DecisionVerdict::answer) << "no abort beside the commit";
  EXPECT_EQ(m.on_tick(1000).kind, V::TickKind::none) << "no idle abort beside the commit";
  m.on_one_phase_done(V::OnePhaseResult::committed, {}, 2);
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  EXPECT_EQ(m.state(), BranchState::committed);
  EXPECT_TRUE(m.one_phase());
  EXPECT_FALSE(m.read_only());
  EXPECT_EQ(m.outcome(), Outcome::committed);
  EXPECT_EQ(m.on_commit_one_phase(2, d, 3), V::OnePhaseVerdict::committed) << "a repeat";
  EXPECT_EQ(m.on_exec(3, 3), V::ExecVerdict::not_active);
  EXPECT_EQ(m.on_abort(), V::DecisionVerdict::answer) << "the shell answers committed: heuristic";
  EXPECT_EQ(m.on_tick(1000).kind, V::TickKind::none);
  EXPECT_NE(m.describe().find("one-phase"), std::string::npos);
}

TEST(BranchMachine, commit_one_phase_with_a_wrong_count_or_digest_rolls_back) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 2);
  ASSERT_EQ(m.on_commit_one_phase(1, d, 1), V::OnePhaseVerdict::rollback);
  EXPECT_TRUE(m.doomed());
  m.on_one_phase_done(V::OnePhaseResult::aborted, m.vote_no_reason(), 1);
  EXPECT_EQ(m.state(), BranchState::aborted);
  EXPECT_EQ(m.vote_no_reason().sqlstate, kRefusedByDtx);
  EXPECT_NE(m.vote_no_reason().message.find("commit-one-phase names 1 execs"), std::string::npos);
  EXPECT_EQ(m.on_commit_one_phase(2, d, 2), V::OnePhaseVerdict::aborted) << "the same answer";
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;

  BranchMachine n("t2", timers(), 0);
  const uint64_t dn = run_execs(n, 2);
  EXPECT_EQ(n.on_commit_one_phase(2, dn ^ 1, 0), V::OnePhaseVerdict::rollback);
}

TEST(BranchMachine, a_doomed_branch_never_commits_in_one_phase) {
  BranchMachine m("t1", timers(), 0);
  ASSERT_EQ(m.on_exec(1, 0), V::ExecVerdict::run);
  m.on_exec_done(1, "INSERT", {}, false, DbError{"23505", "duplicate key"}, 0);
  EXPECT_EQ(m.on_commit_one_phase(1, m.digest(), 0), V::OnePhaseVerdict::rollback);
  m.on_one_phase_done(V::OnePhaseResult::aborted, m.vote_no_reason(), 0);
  EXPECT_EQ(m.vote_no_reason().sqlstate, "23505") << "the first error is the reason";
}

TEST(BranchMachine, a_refused_one_phase_commit_aborts_with_the_database_reason) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_commit_one_phase(1, d, 0), V::OnePhaseVerdict::run);
  m.on_one_phase_done(V::OnePhaseResult::aborted, DbError{"40001", "serialization failure"}, 0);
  EXPECT_EQ(m.state(), BranchState::aborted);
  EXPECT_EQ(m.vote_no_reason().sqlstate, "40001");
  EXPECT_EQ(m.outcome(), Outcome::aborted);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
}

TEST(BranchMachine, a_read_only_one_phase_commit_is_committed_and_read_only) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_commit_one_phase(1, d, 0), V::OnePhaseVerdict::run);
  m.on_one_phase_done(V::OnePhaseResult::read_only, {}, 0);
  EXPECT_TRUE(m.read_only());
  EXPECT_TRUE(m.one_phase());
  EXPECT_EQ(m.on_commit_one_phase(1, d, 1), V::OnePhaseVerdict::committed);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
}

TEST(BranchMachine, a_one_phase_commit_whose_answer_was_lost_is_in_doubt_and_takes_no_step) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_commit_one_phase(1, d, 0), V::OnePhaseVerdict::run);
  m.on_one_phase_done(V::OnePhaseResult::unknown, DbError{std::string(kSessionLost), "gone"}, 0);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  EXPECT_TRUE(m.in_doubt());
  EXPECT_EQ(m.state(), BranchState::active);
  EXPECT_FALSE(m.outcome()) << "neither committed nor aborted: the marker says";
  EXPECT_EQ(m.on_exec(2, 0), V::ExecVerdict::not_active);
  EXPECT_EQ(m.on_prepare(1, d, 0), V::PrepareVerdict::busy);
  EXPECT_EQ(m.on_abort(), V::DecisionVerdict::answer) << "never rolled back as if active";
  EXPECT_EQ(m.on_commit(), V::DecisionVerdict::answer);
  EXPECT_EQ(m.on_tick(1000).kind, V::TickKind::none) << "no idle abort of a branch in doubt";
  EXPECT_TRUE(m.check_invariants(&why)) << why;
  ASSERT_EQ(m.on_commit_one_phase(1, d, 0), V::OnePhaseVerdict::settle) << "a repeat settles it";
  m.on_one_phase_done(V::OnePhaseResult::unknown, {}, 0);  // the database is still away
  EXPECT_TRUE(m.in_doubt());
  ASSERT_EQ(m.on_commit_one_phase(1, d, 0), V::OnePhaseVerdict::settle);
  m.on_one_phase_done(V::OnePhaseResult::committed, {}, 0);  // the marker is there
  EXPECT_FALSE(m.in_doubt());
  EXPECT_EQ(m.outcome(), Outcome::committed);
  EXPECT_TRUE(m.check_invariants(&why)) << why;
}

TEST(BranchMachine, commit_one_phase_is_refused_for_a_prepared_branch_and_busy_beside_an_exec) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1);
  ASSERT_EQ(m.on_exec(2, 0), V::ExecVerdict::run);
  EXPECT_EQ(m.on_commit_one_phase(1, d, 0), V::OnePhaseVerdict::busy);
  m.on_exec_done(2, "x", {}, true, {}, 0);
  ASSERT_EQ(m.on_prepare(2, m.digest(), 0), V::PrepareVerdict::run);
  m.on_prepare_done(true, {}, 0);
  EXPECT_EQ(m.on_commit_one_phase(2, m.digest(), 0), V::OnePhaseVerdict::refused)
      << "a prepared branch's outcome is the coordinator's decision";
}

TEST(BranchMachine, a_one_phase_commit_that_meets_a_pending_idle_abort_answers_aborted) {
  BranchMachine m("t1", timers(), 0);
  const uint64_t d = run_execs(m, 1, 0);
  const auto fired = m.on_tick(50);
  ASSERT_EQ(fired.kind, V::TickKind::abort_idle);
  EXPECT_EQ(m.on_commit_one_phase(1, d, 50), V::OnePhaseVerdict::aborted);
  EXPECT_TRUE(m.doomed()) << "never committed once an abort was under way";
  EXPECT_EQ(m.on_timer_decision(fired.token), V::DecisionVerdict::run_abort);
  std::string why;
  EXPECT_TRUE(m.check_invariants(&why)) << why;
}

}  // namespace
}  // namespace dtx::participant
