// Goal: the agent's lanes, locks and timers behave as docs/agent.md says,
// tested in-process against a fake database and a manual clock: timers fire
// when the clock is moved, not after sleeps; a coordinator's step never
// waits behind a running exec; queues are bounded; outcome records stay
// bounded by the forget watermark.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "common/clock.h"
#include "participant/agent.h"
#include "participant/lanes.h"
#include "txn/agent_api.h"

namespace dtx::participant {
namespace {

using namespace std::chrono_literals;

// A gate a test opens: wait() blocks until open().
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// What the fake database was asked to do.
struct FakeLog {
  std::mutex mu;
  std::set<std::string> prepared, committed, aborted, rolled_back, read_only;
  int begun = 0;
  std::function<void()> on_exec;  // runs inside every exec (a test may block it)
  txn::BallotId fence;            // the stored fence (survives an agent's restart)
  int fence_saves = 0;
  bool fence_store_fails = false;
  // commit_one_phase() commits, and then its answer is lost (Code::unavailable).
  bool one_phase_answer_lost = false;
};

class FakeBranch : public Branch {
 public:
  FakeBranch(std::string txid, FakeLog& log) : txid_(std::move(txid)), log_(log) {}
  const std::string& txid() const override { return txid_; }
  Result<Rows> exec(std::string_view sql, const std::vector<SqlValue>&, DbError* err) override {
    if (log_.on_exec) log_.on_exec();
    if (sql.find("FAIL") != std::string_view::npos) {
      *err = DbError{"23514", "check violated"};
      return error(Code::failed_precondition, "check violated");
    }
    wrote_ = wrote_ || !sql.starts_with("SELECT");
    Rows r;
    r.rows_affected = 1;
    return r;
  }
  void rollback() override {
    std::lock_guard lock(log_.mu);
    log_.rolled_back.insert(txid_);
  }
  bool wrote() const { return wrote_; }

 private:
  bool wrote_ = false;
  std::string txid_;
  FakeLog& log_;
};

class FakeResource : public Resource {
 public:
  explicit FakeResource(FakeLog& log) : log_(log) {}
  Result<std::vector<std::string>> open() override { return std::vector<std::string>{}; }
  Result<std::unique_ptr<Branch>> begin(const std::string& txid) override {
    std::lock_guard lock(log_.mu);
    log_.begun++;
    return std::unique_ptr<Branch>(std::make_unique<FakeBranch>(txid, log_));
  }
  Status prepare(std::unique_ptr<Branch> b, DbError*) override {
    std::lock_guard lock(log_.mu);
    log_.prepared.insert(b->txid());
    return ok_status();
  }
  Result<bool> end_read_only(std::unique_ptr<Branch>& b, DbError*) override {
    if (static_cast<FakeBranch&>(*b).wrote()) return false;
    std::lock_guard lock(log_.mu);
    log_.read_only.insert(b->txid());
    b.reset();
    return true;
  }
  Result<Outcome> commit_one_phase(std::unique_ptr<Branch> b, DbError*) override {
    std::lock_guard lock(log_.mu);
    log_.committed.insert(b->txid());
    if (log_.one_phase_answer_lost) return error(Code::unavailable, "the session broke at COMMIT");
    return Outcome::committed;
  }
  Result<Outcome> commit(const std::string& txid) override {
    std::lock_guard lock(log_.mu);
    log_.committed.insert(txid);
    return Outcome::committed;
  }
  Result<Outcome> abort(const std::string& txid) override {
    std::lock_guard lock(log_.mu);
    log_.aborted.insert(txid);
    return Outcome::aborted;
  }
  Result<Outcome> outcome_of(const std::string& txid) override {
    std::lock_guard lock(log_.mu);
    return log_.committed.count(txid) ? Outcome::committed : Outcome::aborted;
  }
  std::vector<std::string> prepared() const override { return {}; }
  Result<txn::BallotId> load_fence() override {
    std::lock_guard lock(log_.mu);
    return log_.fence;
  }
  Status save_fence(const txn::BallotId& b) override {
    std::lock_guard lock(log_.mu);
    if (log_.fence_store_fails) return error(Code::unavailable, "the fake store is down");
    if (log_.fence < b) log_.fence = b;
    log_.fence_saves++;
    return ok_status();
  }
  std::string describe() const override { return "fake"; }
  bool healthy() override { return true; }

 private:
  FakeLog& log_;
};

constexpr int64_t kTickMs = 10;

class InProcess : public ::testing::Test {
 protected:
  void SetUp() override { start(); }
  // (Re)starts the agent on the same fake database.
  void start() {
    agent_.reset();
    AgentOptions o;
    o.name = "fake-a";
    o.cluster = "c1";
    o.listen = "";  // no HTTP: the test calls the steps
    o.token = "in-process-token-0123456789";
    o.tick_ms = kTickMs;
    o.workers = 2;
    o.clock = &clock_;
    o.run_ticker = false;
    o.timers.active_idle_ticks = 100;
    o.timers.inquiry_first_ticks = 5;
    o.timers.inquiry_max_ticks = 40;
    o.timers.precommit_timeout_ticks = 50;
    auto a = Agent::start(o, std::make_unique<FakeResource>(log_));
    ASSERT_TRUE(a.ok()) << a.status();
    agent_ = std::move(*a);
  }

  txn::Fence fence() const {
    txn::Fence f;
    f.agent_id = "fake-a";
    f.ballot = txn::BallotId{1, 1};
    return f;
  }
  std::string tx(uint64_t seq) const { return txn::Txid("c1", txn::BallotId{1, 1}, seq).str(); }
  StepAnswer exec(const std::string& txid, uint64_t seq, const std::string& sql = "UPDATE x") {
    digest_[txid] = txn::exec_digest(digest_[txid], seq, sql, {});
    return agent_->exec(txid, txn::ExecRequest{fence(), seq, sql, {}});
  }
  StepAnswer prepare(const std::string& txid, uint64_t count) {
    return agent_->prepare(txid, txn::PrepareRequest{fence(), count, digest_[txid]});
  }
  std::string state_of(const std::string& txid) {
    auto s = txn::BranchStatus::from_json(agent_->status(txid).body);
    return s.ok() ? txn::branch_state_name(s->state) : "none";
  }
  // Lane workers run the timers' decisions: wait (briefly, on real time)
  // for what the manual clock set off.
  bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 2000 && !done(); ++i)
      std::this_thread::sleep_for(1ms);
    return done();
  }
  void advance_ticks(uint64_t ticks) {
    for (uint64_t i = 0; i < ticks; ++i) {
      clock_.advance_ns(kTickMs * 1'000'000);
      agent_->tick();
    }
  }

  ManualClock clock_{1'000'000'000};
  FakeLog log_;
  std::unique_ptr<Agent> agent_;
  std::map<std::string, uint64_t> digest_;
};

TEST_F(InProcess, an_idle_branch_aborts_when_the_clock_says_so_not_before) {
  const std::string t = tx(1);
  ASSERT_EQ(exec(t, 1).status, 200);
  advance_ticks(99);
  EXPECT_EQ(state_of(t), "active") << "99 ticks idle of 100";
  advance_ticks(1);
  EXPECT_TRUE(eventually([&] { return state_of(t) == "aborted"; }));
  std::lock_guard lock(log_.mu);
  EXPECT_TRUE(log_.rolled_back.count(t));
}

TEST_F(InProcess, a_precommitted_branch_commits_alone_when_its_timer_runs_out) {
  const std::string t = tx(2);
  ASSERT_EQ(exec(t, 1).status, 200);
  ASSERT_EQ(prepare(t, 1).status, 200);
  ASSERT_EQ(agent_->precommit(t, txn::DecisionRequest{fence()}).status, 200);
  advance_ticks(49);
  EXPECT_EQ(state_of(t), "precommitted");
  advance_ticks(1);
  EXPECT_TRUE(eventually([&] { return state_of(t) == "committed"; }));
  std::lock_guard lock(log_.mu);
  EXPECT_TRUE(log_.committed.count(t));
}

TEST_F(InProcess, a_prepared_branch_asks_on_a_capped_backoff_and_never_decides_alone) {
  const std::string t = tx(3);
  ASSERT_EQ(exec(t, 1).status, 200);
  ASSERT_EQ(prepare(t, 1).status, 200);
  const uint64_t before = agent_->counters().inquiries;
  // No coordinator answers: asked after 5 ticks, then 10, 20, 40, 40, ...
  std::vector<uint64_t> asked_at;
  for (uint64_t tick = 1; tick <= 200; ++tick) {
    advance_ticks(1);
    // Each unanswered inquiry is handled on a lane before the next tick.
    ASSERT_TRUE(eventually([&] { return state_of(t) == "prepared"; }));
    if (agent_->counters().inquiries > before + asked_at.size()) {
      asked_at.push_back(tick);
      // Let the lane take the (unreachable) answer before time moves on.
      const uint64_t answered = agent_->counters().inquiries;
      ASSERT_TRUE(eventually([&] {
        auto s = txn::BranchStatus::from_json(agent_->status(t).body);
        return s.ok() && !s->busy && agent_->counters().inquiries == answered;
      }));
      std::this_thread::sleep_for(2ms);
    }
    if (asked_at.size() >= 5) break;
  }
  ASSERT_GE(asked_at.size(), 4u);
  // (the unanswered inquiry is handled on a lane: give it a tick either way)
  EXPECT_NEAR(static_cast<double>(asked_at[0]), 5, 1);
  EXPECT_NEAR(static_cast<double>(asked_at[1] - asked_at[0]), 10, 1);
  EXPECT_NEAR(static_cast<double>(asked_at[2] - asked_at[1]), 20, 1);
  EXPECT_NEAR(static_cast<double>(asked_at[3] - asked_at[2]), 40, 1) << "capped";
  EXPECT_EQ(state_of(t), "prepared") << "never decides alone";
  EXPECT_EQ(agent_->decide(t, Outcome::committed, txn::DecisionRequest{fence()}).status, 200);
  EXPECT_EQ(state_of(t), "committed");
}

TEST_F(InProcess, coordinator_steps_answer_busy_at_once_while_an_exec_holds_the_branch) {
  const std::string t = tx(4);
  ASSERT_EQ(exec(t, 1).status, 200);
  Gate gate, entered;
  log_.on_exec = [&] {
    entered.open();
    gate.wait();
  };
  std::thread running([&] { EXPECT_EQ(exec(t, 2).status, 200); });
  entered.wait();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(prepare(t, 2).body.at("error").at("code").as_string(), "busy");
  EXPECT_EQ(agent_->decide(t, Outcome::aborted, txn::DecisionRequest{fence()})
                .body.at("error")
                .at("code")
                .as_string(),
            "busy");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "neither waited for the exec";
  auto s = txn::BranchStatus::from_json(agent_->status(t).body);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->busy);
  EXPECT_EQ(s->state, txn::BranchState::active);
  auto l = txn::BranchListAnswer::from_json(agent_->list(txn::BranchListRequest{}).body);
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->branches.size(), 1u) << "a busy branch is listed (T10)";
  EXPECT_TRUE(l->branches[0].busy);
  // The ticker only glances at a busy branch: no timer fires through it.
  advance_ticks(200);
  gate.open();
  running.join();
  log_.on_exec = nullptr;
  EXPECT_EQ(state_of(t), "active");
  EXPECT_EQ(txn::VoteAnswer::from_json(prepare(t, 2).body)->vote, txn::Vote::yes);
}

TEST_F(InProcess, a_stale_ballot_is_fenced_and_the_watermark_bounds_outcome_records) {
  for (uint64_t seq = 1; seq <= 200; ++seq) {
    txn::BatchRequest b{fence(), {{"UPDATE x", {}}}};
    if (seq > 10) b.fence.watermark = txn::Txid("c1", txn::BallotId{1, 1}, seq - 10);
    auto a = txn::BatchAnswer::from_json(agent_->batch(tx(seq), b).body);
    ASSERT_TRUE(a.ok());
    ASSERT_EQ(a->vote.vote, txn::Vote::yes);
    ASSERT_EQ(agent_->decide(tx(seq), Outcome::committed, txn::DecisionRequest{b.fence}).status,
              200);
  }
  EXPECT_LE(agent_->outcome_records(), 11u);
  EXPECT_EQ(agent_->branches_held(), 0u);
  txn::Fence newer = fence();
  newer.ballot = txn::BallotId{2, 1};
  ASSERT_EQ(agent_->list(txn::BranchListRequest{std::nullopt, "", 10, newer}).status, 200);
  EXPECT_EQ(exec(tx(500), 1).status, 409) << "ballot 1.1 after 2.1 was seen";
}

TEST_F(InProcess, a_raised_fence_is_stored_before_the_answer_and_reloaded_at_start) {
  ASSERT_EQ(exec(tx(599), 1).status, 200);  // ballot 1.1, stored
  EXPECT_EQ(log_.fence, (txn::BallotId{1, 1}));
  txn::Fence newer = fence();
  newer.ballot = txn::BallotId{2, 1};
  // The store is down: the sweep is refused and the fence stays where it was.
  log_.fence_store_fails = true;
  auto r = agent_->list(txn::BranchListRequest{std::nullopt, "", 10, newer});
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body.at("error").at("code").as_string(), "unavailable");
  EXPECT_EQ(txn::AgentInfo::from_json(agent_->info().body)->highest_ballot, (txn::BallotId{1, 1}))
      << "not raised: it is not durable";
  log_.fence_store_fails = false;
  ASSERT_EQ(agent_->list(txn::BranchListRequest{std::nullopt, "", 10, newer}).status, 200);
  EXPECT_EQ(log_.fence, (txn::BallotId{2, 1}));
  const int saves = log_.fence_saves;
  ASSERT_EQ(agent_->list(txn::BranchListRequest{std::nullopt, "", 10, newer}).status, 200);
  EXPECT_EQ(log_.fence_saves, saves) << "a ballot already stored is not stored again";
  // A restart loads it before serving.
  start();
  EXPECT_EQ(txn::AgentInfo::from_json(agent_->info().body)->highest_ballot, (txn::BallotId{2, 1}));
  EXPECT_EQ(exec(tx(600), 1).body.at("error").at("code").as_string(), "stale_ballot");
  // A probe of one branch with a newer ballot raises it too.
  txn::Fence newest = fence();
  newest.ballot = txn::BallotId{3, 1};
  EXPECT_EQ(agent_->status(tx(601), newest).status, 404);
  EXPECT_EQ(log_.fence, (txn::BallotId{3, 1}));
  newest.agent_id = "someone-else";
  EXPECT_EQ(agent_->status(tx(601), newest).status, 409) << "wrong_agent";
}

TEST_F(InProcess, a_step_admitted_before_a_new_leaders_sweep_is_refused_once_it_has_the_branch) {
  const std::string t = tx(7);
  ASSERT_EQ(exec(t, 1).status, 200);
  Gate gate, entered;
  log_.on_exec = [&] {
    entered.open();
    gate.wait();
  };
  std::thread running([&] { EXPECT_EQ(exec(t, 2).status, 200); });
  entered.wait();
  log_.on_exec = nullptr;
  // The old leader's next exec is admitted (1.1 is current) and waits for
  // the branch's lock; meanwhile the new leader's sweep raises the fence.
  std::optional<StepAnswer> late;
  std::thread waiting([&] { late = exec(t, 3); });
  std::this_thread::sleep_for(50ms);
  txn::Fence newer = fence();
  newer.ballot = txn::BallotId{2, 1};
  auto l = txn::BranchListAnswer::from_json(
      agent_->list(txn::BranchListRequest{std::nullopt, "", 10, newer}).body);
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->branches.size(), 1u);
  EXPECT_TRUE(l->branches[0].busy);
  gate.open();
  running.join();
  waiting.join();
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->status, 409);
  EXPECT_EQ(late->body.at("error").at("code").as_string(), "stale_ballot")
      << "refused once it got the branch: the sweep came first";
  EXPECT_EQ(prepare(t, 2).body.at("error").at("code").as_string(), "stale_ballot");
}

TEST_F(InProcess, a_branch_that_only_read_votes_read_only_and_takes_no_part_in_phase_two) {
  const std::string t = tx(20);
  ASSERT_EQ(exec(t, 1, "SELECT 1").status, 200);
  ASSERT_EQ(exec(t, 2, "SELECT 2").status, 200);
  auto v = txn::VoteAnswer::from_json(prepare(t, 2).body);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->vote, txn::Vote::read_only);
  EXPECT_EQ(agent_->branches_held(), 0u) << "it is over";
  EXPECT_EQ(txn::VoteAnswer::from_json(prepare(t, 2).body)->vote, txn::Vote::read_only)
      << "a repeat";
  for (Outcome asked : {Outcome::aborted, Outcome::committed}) {
    auto a = txn::DecisionAnswer::from_json(
        agent_->decide(t, asked, txn::DecisionRequest{fence()}).body);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->outcome, asked) << "either outcome is true of a branch that changed nothing";
    EXPECT_FALSE(a->heuristic);
    EXPECT_TRUE(a->read_only);
  }
  EXPECT_EQ(agent_->counters().heuristic, 0u);
  auto s = txn::BranchStatus::from_json(agent_->status(t).body);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->state, txn::BranchState::committed);
  EXPECT_TRUE(s->read_only);
  {
    std::lock_guard lock(log_.mu);
    EXPECT_TRUE(log_.read_only.count(t));
    EXPECT_FALSE(log_.prepared.count(t) || log_.committed.count(t) || log_.aborted.count(t));
  }
  // A branch that wrote votes yes; a batch of reads votes read_only.
  const std::string w = tx(21);
  ASSERT_EQ(exec(w, 1, "SELECT 1").status, 200);
  ASSERT_EQ(exec(w, 2, "UPDATE x").status, 200);
  EXPECT_EQ(txn::VoteAnswer::from_json(prepare(w, 2).body)->vote, txn::Vote::yes);
  auto b = txn::BatchAnswer::from_json(
      agent_->batch(tx(22), txn::BatchRequest{fence(), {{"SELECT 1", {}}}}).body);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->vote.vote, txn::Vote::read_only);
  EXPECT_EQ(agent_->counters().votes_read_only, 2u);
}

TEST(LanePool, queues_are_bounded_and_a_lane_runs_its_jobs_in_order) {
  LanePool pool(2, 1, 2, "test");
  Gate gate, started;
  std::mutex mu;
  std::vector<int> ran;
  ASSERT_TRUE(pool.submit(0, [&] {
    started.open();
    gate.wait();
  }));
  started.wait();  // the one worker of lane 0 is busy
  EXPECT_TRUE(pool.submit(0, [&] {
    std::lock_guard l(mu);
    ran.push_back(1);
  }));
  EXPECT_TRUE(pool.submit(0, [&] {
    std::lock_guard l(mu);
    ran.push_back(2);
  }));
  EXPECT_FALSE(pool.submit(0, [] {})) << "a full lane refuses";
  Gate other;
  EXPECT_TRUE(pool.submit(1, [&] { other.open(); })) << "another lane is not held up";
  other.wait();
  gate.open();
  pool.stop();  // runs what is queued, then joins
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
  EXPECT_FALSE(pool.submit(0, [] {})) << "stopped";
}

// A one-phase COMMIT whose answer was lost may have committed: the branch
// is in doubt, nothing may abort it, and a repeat settles it from the marker.
TEST_F(InProcess, a_one_phase_commit_whose_answer_was_lost_is_never_presumed_aborted) {
  const std::string t = tx(40);
  ASSERT_EQ(exec(t, 1).status, 200);
  {
    std::lock_guard lock(log_.mu);
    log_.one_phase_answer_lost = true;
  }
  const txn::PrepareRequest req{fence(), 1, digest_[t]};
  StepAnswer a = agent_->commit_one_phase(t, req);
  EXPECT_EQ(a.status, 503);
  EXPECT_EQ(a.body.at("error").at("code").as_string(), "unavailable");
  auto s = txn::BranchStatus::from_json(agent_->status(t).body);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->busy) << "a probe must not take it for an active branch to abort";
  a = agent_->decide(t, Outcome::aborted, txn::DecisionRequest{fence()});
  EXPECT_EQ(a.status, 409) << "never rolled back: it may have committed";
  EXPECT_EQ(exec(t, 2).status, 409);
  advance_ticks(200);
  EXPECT_EQ(state_of(t), "active") << "no idle abort either";
  a = agent_->commit_one_phase(t, req);
  ASSERT_EQ(a.status, 200);
  auto o = txn::OnePhaseAnswer::from_json(a.body);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->outcome, Outcome::committed) << "settled by the marker";
  EXPECT_EQ(agent_->branches_held(), 0u);
  EXPECT_EQ(agent_->counters().one_phase_in_doubt, 1u);
  EXPECT_EQ(agent_->counters().one_phase_committed, 1u);
  std::lock_guard lock(log_.mu);
  EXPECT_FALSE(log_.rolled_back.count(t));
}

}  // namespace
}  // namespace dtx::participant
