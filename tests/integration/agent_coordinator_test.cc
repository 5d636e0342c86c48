// Goal: the agent's half of the coordinator protocol works as a
// coordinator uses it, on real PostgreSQL and SQLite: fencing by agent_id
// and ballot, the one-shot batch, the forget watermark keeping state
// bounded, durability preconditions; and the defects found when the agent
// was first driven that way stay fixed (each test below named after one
// failed against the agent before its fix).
#include <sys/wait.h>

#include "tests/integration/agent_fixture.h"

namespace dtx::participant {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

class AgentProtocol : public AgentFixture {
 protected:
  // Markers of this agent on its database, as another reader counts them.
  int64_t count_markers() {
    if (db_ == Db::postgres) {
      pqxx::nontransaction n(*pg_);
      return n.exec("SELECT count(*) FROM dtx_markers WHERE agent = " + n.quote(name_))[0][0]
          .as<int64_t>();
    }
    sqlite3* db = nullptr;
    sqlite3_open_v2(sqlite_path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM dtx_markers", -1, &st, nullptr);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
  }
  bool has_marker(const std::string& txid) {
    if (db_ == Db::postgres) {
      pqxx::nontransaction n(*pg_);
      return n.exec("SELECT count(*) FROM dtx_markers WHERE agent = " + n.quote(name_) +
                    " AND txid = " + n.quote(txid))[0][0]
                 .as<int64_t>() == 1;
    }
    sqlite3* db = nullptr;
    sqlite3_open_v2(sqlite_path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM dtx_markers WHERE txid = ?1", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, txid.c_str(), -1, SQLITE_TRANSIENT);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v == 1;
  }
  // No branch of the agent holds a session in a transaction or a lock on
  // the account table: PostgreSQL: no branch session idle in a transaction,
  // and an ACCESS EXCLUSIVE lock is granted at once; SQLite: another
  // connection gets the write lock at once.
  bool database_free() {
    if (db_ == Db::postgres) {
      {
        pqxx::nontransaction n(*pg_);
        const int64_t in_tx =
            n.exec("SELECT count(*) FROM pg_stat_activity WHERE application_name = " +
                   n.quote("dtx-agent " + name_ + " branch") + " AND xact_start IS NOT NULL")[0][0]
                .as<int64_t>();
        if (in_tx != 0) return false;
      }
      try {
        pqxx::work w(*pg_);
        w.exec("LOCK TABLE " + table_ + " IN ACCESS EXCLUSIVE MODE NOWAIT");
        w.abort();
        return true;
      } catch (const std::exception&) {
        return false;
      }
    }
    sqlite3* db = nullptr;
    sqlite3_open(sqlite_path_.c_str(), &db);
    sqlite3_busy_timeout(db, 0);
    const bool got = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    return got;
  }
  std::string batch_vote(const std::string& txid, std::vector<txn::Statement> statements) {
    txn::BatchRequest b{fence(), std::move(statements)};
    auto r = post(txn::branch_step_path(txid, "batch"), json::serialize(b.to_json()));
    if (!r.ok() || r->status != 200) return "error";
    auto a = txn::BatchAnswer::from_json(*r->json_body());
    return a.ok() ? txn::vote_name(a->vote.vote) : "error";
  }
};

// --- the defects -------------------------------------------------------------

// Defect: a 307 from a follower was never followed (the index taken from
// Location was overwritten, and the backoff doubled).
TEST_P(AgentProtocol, an_inquiry_follows_a_307_to_the_leader_at_once) {
  TestCoordinator follower1, follower2;
  follower1.redirect_to(coordinator_.address());
  follower2.redirect_to(coordinator_.address());
  coordinators_ = follower1.address() + "," + follower2.address() + "," + coordinator_.address();
  extra_args_ = {"--inquiry-first-ms", "300", "--inquiry-max-ms", "5000"};
  start_agent();
  const std::string t = tx("redirected");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-5}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  coordinator_.decide(t, "committed");
  EXPECT_TRUE(wait_state(t, "committed", 3s)) << agent_.log();
  EXPECT_EQ(follower1.asked(t), 1) << "the first inquiry went to the first replica";
  EXPECT_EQ(follower2.asked(t), 0) << "and followed its redirect, not the list";
  EXPECT_EQ(coordinator_.asked(t), 1);
  EXPECT_EQ(balance(1), 95);
}

// Defect: a listing left out a branch whose lock was held, so a failover
// sweep missed exactly the branches in trouble (T10).
TEST_P(AgentProtocol, a_listing_shows_busy_branches_marked_and_pages) {
  start_agent();
  const std::string holder = tx("holder"), waiter = tx("waiter");
  ASSERT_EQ(exec(holder, transfer_sql(), {int64_t{-1}, int64_t{1}})->status, 200);
  std::optional<Result<rest::Response>> waited;
  std::thread th =
      first_exec_async(waiter, {{"sql", transfer_sql()}, {"params", json::array{-2, 1}}}, &waited);
  // The waiter's exec holds its branch's lock (its status says busy).
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  bool under_way = false;
  while (!under_way && std::chrono::steady_clock::now() < deadline) {
    auto r = client_->get(addr(), txn::branch_path(waiter), 2000);
    under_way = r.ok() && r->status == 200 && r->body.find("busy") != std::string::npos;
    if (!under_way) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(under_way);
  std::vector<bool> busy;
  const auto all = listed(std::nullopt, /*limit=*/1, &busy);
  EXPECT_EQ(all.size(), 2u) << "both branches, one page each";
  std::map<std::string, bool> marks;
  for (size_t i = 0; i < all.size(); ++i)
    marks[all[i]] = busy[i];
  EXPECT_TRUE(marks.count(waiter)) << "the busy branch is listed";
  EXPECT_TRUE(marks[waiter]) << "and marked busy";
  EXPECT_FALSE(marks[holder]);
  EXPECT_EQ(listed(txn::BranchState::active).size(), 2u) << "its last known state is active";
  EXPECT_EQ(decide(holder, "abort"), "aborted");
  th.join();
  EXPECT_EQ(decide(waiter, "abort"), "aborted");
}

// Defect: a first exec that got no session answered 503 busy (which means
// "ask again") although it had used its seq and doomed the branch.
TEST_P(AgentProtocol, a_first_exec_that_gets_no_session_says_the_branch_is_doomed) {
  start_agent();
  std::vector<std::string> held;
  ASSERT_NO_FATAL_FAILURE(hold_every_session(&held));
  const std::string starved = tx("starved");
  auto r = exec(starved, "SELECT 1");  // waits the whole session wait (5 s), then gives up
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->error_code(), "no_session") << r->body << ": not busy, which means ask again";
  EXPECT_EQ(prepare(starved), "no") << "the branch is doomed";
  for (const std::string& h : held)
    EXPECT_EQ(decide(h, "abort"), "aborted");
}

// Defect: a commit or abort meeting an outcome record of the other outcome
// answered heuristic: true but raised no alarm and counted nothing.
TEST_P(AgentProtocol, a_decision_that_meets_the_other_outcome_alarms_and_counts) {
  start_agent();
  const std::string t = tx("decided");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-3}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  ASSERT_EQ(decide(t, "commit"), "committed");
  const int64_t before = metric("heuristic_total");
  auto r = post(txn::branch_step_path(t, "abort"), "{}");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  auto a = txn::DecisionAnswer::from_json(*r->json_body());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->outcome, txn::Outcome::committed);
  EXPECT_TRUE(a->heuristic);
  EXPECT_EQ(metric("heuristic_total"), before + 1) << "counted";
  EXPECT_NE(agent_.log().find("ALARM"), std::string::npos) << "and alarmed";
  EXPECT_EQ(balance(1), 97);
}

// Defect: dtx-agent-bench on a fresh database died of an uncaught
// pqxx::undefined_table (it cleaned dtx_markers before any agent made it).
TEST_P(AgentProtocol, dtx_agent_bench_runs_on_a_fresh_database) {
  if (db_ != Db::postgres) GTEST_SKIP() << "the PostgreSQL half is the one that failed";
  const std::string db = "dtx_fresh_" + name_;
  sql_setup("DROP DATABASE IF EXISTS " + db);
  sql_setup("CREATE DATABASE " + db);
  std::string url = pg_url();
  url = url.substr(0, url.rfind('/') + 1) + db;
  testing::Process bench =
      testing::Process::spawn(testing::bin_dir() + "/dtx-agent-bench",
                              {"--no-sqlite", "--postgres", url, "--clients", "1", "--pairs", "1",
                               "--seconds", "0.3", "--dir", dir_.sub("bench")},
                              dir_.sub("bench.log"));
  auto st = bench.wait(120s);
  ASSERT_TRUE(st.has_value()) << "the bench did not finish\n" << bench.log();
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << bench.log();
  sql_setup("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
}

// Defect: the fence (the highest ballot seen) lived in memory only. After a
// new leader's sweep raised it and the agent restarted, the deposed
// leader's exec and prepare were accepted again: a branch could be
// prepared after the sweep, with no decision ever coming for it.
TEST_P(AgentProtocol, the_fence_survives_a_kill9) {
  start_agent();
  txn::BranchListRequest sweep;
  sweep.fence = fence();
  sweep.fence.ballot = txn::BallotId{2, 1};
  ASSERT_EQ(client_->get(addr(), sweep.path(), 5000)->status, 200);
  kill9();
  start_agent();
  auto info = client_->get(addr(), std::string(txn::kAgentInfoPath), 5000);
  auto i = txn::AgentInfo::from_json(*info->json_body());
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(i->highest_ballot, (txn::BallotId{2, 1})) << "loaded before serving";
  // The deposed leader (ballot 1.1) runs nothing and collects no vote.
  const std::string t = tx("deposed");
  auto r = exec(t, transfer_sql(), {int64_t{-1}, int64_t{1}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_EQ(r->error_code(), "stale_ballot");
  txn::PrepareRequest p{fence(), 1, digest_[t]};
  r = post(txn::branch_step_path(t, "prepare"), json::serialize(p.to_json()));
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_EQ(r->error_code(), "stale_ballot");
  EXPECT_EQ(balance(1), 100);
}

// A new leader probes one branch (GET with its ballot) before presuming
// an abort: the probe raises the fence, durably, like a sweep.
TEST_P(AgentProtocol, a_branch_probe_with_a_new_ballot_raises_the_fence_for_good) {
  start_agent();
  const std::string t = tx("probed");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-1}, int64_t{1}})->status, 200);
  txn::Fence probe = fence();
  probe.ballot = txn::BallotId{2, 1};
  auto r = client_->get(addr(), txn::branch_path(t, probe), 5000);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  auto st = txn::BranchStatus::from_json(*r->json_body());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, txn::BranchState::active);
  // The old leader can no longer prepare it, before or after a restart.
  txn::PrepareRequest p{fence(), seq_[t], digest_[t]};
  r = post(txn::branch_step_path(t, "prepare"), json::serialize(p.to_json()));
  EXPECT_EQ(r->error_code(), "stale_ballot") << r->body;
  kill9();
  start_agent();
  r = post(txn::branch_step_path(tx("after"), "batch"),
           json::serialize(txn::BatchRequest{fence(), {{"SELECT 1", {}}}}.to_json()));
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_EQ(r->error_code(), "stale_ballot");
  // A probe naming another agent is refused; one without fencing
  // parameters is a plain read.
  probe.agent_id = "someone-else";
  EXPECT_EQ(client_->get(addr(), txn::branch_path(t, probe), 5000)->error_code(), "wrong_agent");
  EXPECT_EQ(client_->get(addr(), txn::branch_path(t), 5000)->status, 404)
      << "the active branch died with the agent";
  EXPECT_EQ(balance(1), 100);
}

// Defect: on SQLite, a branch's COMMITTED record waits in memory for the
// next PREPARED record's fsync (the marker row is the proof of the commit).
// The forget watermark then deleted that marker: after a kill -9 before the
// next prepare, recovery found a PREPARED record with no decision and no
// marker, re-applied the committed branch's redo, met its own changes as a
// conflict, and refused to start.
TEST_P(AgentProtocol, a_marker_dropped_below_the_watermark_never_leaves_a_branch_undecided) {
  start_agent();
  const std::string t = tx("committed-then-forgotten");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-6}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  ASSERT_EQ(decide(t, "commit"), "committed");
  // A later request carries a watermark above t: its marker goes at the
  // next upkeep.
  txn::BranchListRequest q;
  q.fence = fence();
  q.fence.watermark = *txn::Txid::parse(tx("watermark"));
  ASSERT_EQ(client_->get(addr(), q.path(), 5000)->status, 200);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (count_markers() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  ASSERT_EQ(count_markers(), 0) << agent_.log();
  kill9();
  start_agent();  // throws if the agent does not start
  EXPECT_TRUE(prepared_listed().empty()) << agent_.log();
  EXPECT_EQ(balance(1), 94) << "committed once, not redone";
}

// --- what the coordinator needs -------------------------------------------------

TEST_P(AgentProtocol, a_branch_of_only_selects_votes_read_only_and_holds_nothing_after) {
  start_agent();
  const std::string reader = tx("reader");
  const std::string select = "SELECT v FROM " + table_ + " WHERE id = $1";
  ASSERT_EQ(exec(reader, select, {int64_t{1}})->status, 200);
  ASSERT_EQ(exec(reader, "SELECT count(*) FROM " + table_)->status, 200);
  EXPECT_FALSE(database_free()) << "the active branch holds its session and lock";
  const int64_t heuristics = metric("heuristic_total");
  EXPECT_EQ(prepare(reader), "read_only");
  EXPECT_TRUE(database_free()) << "no session in a transaction, no lock, after a read_only vote";
  EXPECT_FALSE(has_marker(reader)) << "nothing prepared, no marker";
  EXPECT_EQ(prepare(reader), "read_only") << "a repeat";
  // It takes no part in phase two; a decision sent anyway finds nothing to
  // do and is no heuristic.
  EXPECT_EQ(decide(reader, "abort"), "aborted");
  EXPECT_EQ(decide(reader, "commit"), "committed");
  EXPECT_EQ(metric("heuristic_total"), heuristics);
  auto st = client_->get(addr(), txn::branch_path(reader), 5000);
  ASSERT_EQ(st->status, 200);
  auto s = txn::BranchStatus::from_json(*st->json_body());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->state, txn::BranchState::committed);
  EXPECT_TRUE(s->read_only);
  EXPECT_EQ(metric("votes_read_only_total"), 1);

  // A branch that wrote votes yes, and holds until its decision.
  const std::string writer = tx("writer");
  ASSERT_EQ(exec(writer, select, {int64_t{1}})->status, 200);
  ASSERT_EQ(exec(writer, transfer_sql(), {int64_t{-5}, int64_t{1}})->status, 200);
  EXPECT_EQ(prepare(writer), "yes");
  EXPECT_FALSE(database_free());
  EXPECT_EQ(decide(writer, "commit"), "committed");
  EXPECT_TRUE(has_marker(writer));
  EXPECT_EQ(balance(1), 95);
  // In a one-shot batch too.
  EXPECT_EQ(batch_vote(tx("batch-reader"), {{select, {int64_t{2}}}}), "read_only");
  EXPECT_TRUE(database_free());
  if (db_ == Db::postgres) {
    // Row locks need a transaction id: a locking read holds until the
    // decision (A7). So does a statement that looks like a read but
    // writes: the server's transaction id decides, not the first word.
    const std::string locking = tx("locking");
    ASSERT_EQ(exec(locking, select + " FOR SHARE", {int64_t{1}})->status, 200);
    EXPECT_EQ(prepare(locking), "yes");
    EXPECT_EQ(decide(locking, "abort"), "aborted");
    EXPECT_EQ(batch_vote(tx("cte"), {{"WITH u AS (UPDATE " + table_ +
                                          " SET v = v + 1 WHERE id = 2 RETURNING 1) "
                                          "SELECT count(*) FROM u",
                                      {}}}),
              "yes");
  } else {
    // Changing a row to the value it had is still a change to SQLite.
    EXPECT_EQ(batch_vote(tx("same"), {{"UPDATE " + table_ + " SET v = v WHERE id = 2", {}}}),
              "yes");
  }
}

TEST_P(AgentProtocol, requests_are_fenced_by_agent_id_and_ballot_but_decisions_are_not) {
  start_agent();
  const std::string old_tx = tx("old-leader");
  ASSERT_EQ(exec(old_tx, transfer_sql(), {int64_t{-1}, int64_t{1}})->status, 200);
  // Another agent's name: refused, whatever the step.
  txn::ExecRequest wrong{fence(), 1, "SELECT 1", {}};
  wrong.fence.agent_id = "someone-else";
  auto r = post(txn::branch_step_path(tx("wrong"), "exec"), json::serialize(wrong.to_json()));
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(r->error_code(), "wrong_agent");
  txn::DecisionRequest wrong_decision{wrong.fence};
  r = post(txn::branch_step_path(old_tx, "commit"), json::serialize(wrong_decision.to_json()));
  EXPECT_EQ(r->error_code(), "wrong_agent") << "an answer meant for another agent is refused";
  // A new leader's sweep (ballot 2.1) raises the fence.
  txn::BranchListRequest sweep;
  sweep.fence = fence();
  sweep.fence.ballot = txn::BallotId{2, 1};
  ASSERT_EQ(client_->get(addr(), sweep.path(), 5000)->status, 200);
  auto info = client_->get(addr(), std::string(txn::kAgentInfoPath), 5000);
  ASSERT_EQ(info->status, 200);
  auto i = txn::AgentInfo::from_json(*info->json_body());
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(i->agent_id, name_);
  EXPECT_EQ(i->cluster, "c1");
  EXPECT_EQ(i->highest_ballot, (txn::BallotId{2, 1}));
  // The old leader (ballot 1.1) may no longer run statements or collect votes...
  r = exec(old_tx, transfer_sql(), {int64_t{-1}, int64_t{1}});
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(r->error_code(), "stale_ballot");
  auto e = txn::ApiError::from_json(*r->json_body());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->highest_ballot, (txn::BallotId{2, 1}));
  seq_[old_tx]--;  // that exec never ran
  txn::PrepareRequest p{fence(), seq_[old_tx], digest_[old_tx]};
  r = post(txn::branch_step_path(old_tx, "prepare"), json::serialize(p.to_json()));
  EXPECT_EQ(r->error_code(), "stale_ballot");
  // ...but a decision is the log's, whoever carries it.
  EXPECT_EQ(decide(old_tx, "abort"), "aborted");
  ballot_ = txn::BallotId{2, 1};
  const std::string new_tx = tx("new-leader");
  ASSERT_EQ(exec(new_tx, transfer_sql(), {int64_t{-2}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(new_tx), "yes");
  EXPECT_EQ(decide(new_tx, "commit"), "committed");
  EXPECT_EQ(balance(1), 98);
}

TEST_P(AgentProtocol, a_batch_runs_a_one_shot_branch_and_votes_in_one_round_trip) {
  start_agent();
  const std::string t = tx("one-shot");
  txn::BatchRequest b{fence(),
                      {{transfer_sql(), {int64_t{-10}, int64_t{1}}},
                       {transfer_sql(), {int64_t{10}, int64_t{2}}},
                       {"SELECT v FROM " + table_ + " WHERE id = $1", {int64_t{1}}}}};
  auto r = post(txn::branch_step_path(t, "batch"), json::serialize(b.to_json()));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  auto a = txn::BatchAnswer::from_json(*r->json_body());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->vote.vote, txn::Vote::yes) << a->vote.reason.message;
  ASSERT_EQ(a->results.size(), 3u);
  EXPECT_EQ(a->results[0].rows.rows_affected, 1);
  EXPECT_EQ(a->results[2].rows.rows, (std::vector<std::vector<SqlValue>>{{int64_t{90}}}));
  EXPECT_EQ(balance(1), 100) << "prepared, not committed";
  EXPECT_EQ(decide(t, "commit"), "committed");
  EXPECT_EQ(balance(1), 90);
  EXPECT_EQ(balance(2), 110);
  // A repeat runs nothing.
  r = post(txn::branch_step_path(t, "batch"), json::serialize(b.to_json()));
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(r->error_code(), "not_active");
  EXPECT_EQ(balance(1), 90);
  // Any error stops the batch and votes no; nothing of it stays.
  const std::string bad = tx("one-shot-fails");
  txn::BatchRequest fails{fence(),
                          {{transfer_sql(), {int64_t{-1}, int64_t{2}}},
                           {transfer_sql(), {int64_t{-500}, int64_t{1}}},  // CHECK (v >= 0)
                           {transfer_sql(), {int64_t{1}, int64_t{2}}}}};
  r = post(txn::branch_step_path(bad, "batch"), json::serialize(fails.to_json()));
  ASSERT_EQ(r->status, 200) << r->body;
  a = txn::BatchAnswer::from_json(*r->json_body());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->vote.vote, txn::Vote::no);
  ASSERT_EQ(a->results.size(), 2u) << "the third never ran";
  EXPECT_TRUE(a->results[0].ok);
  EXPECT_FALSE(a->results[1].ok);
  EXPECT_FALSE(a->results[1].error.message.empty());
  EXPECT_EQ(decide(bad, "abort"), "aborted");
  EXPECT_EQ(balance(1), 90);
  EXPECT_EQ(balance(2), 110);
}

TEST_P(AgentProtocol, the_forget_watermark_keeps_outcome_records_and_markers_bounded) {
  start_agent();
  constexpr int kBranches = 300, kLag = 20;
  std::vector<std::string> txids;
  for (int i = 0; i < kBranches; ++i) {
    const std::string t = tx("bounded");
    txids.push_back(t);
    txn::BatchRequest b{fence(), {{transfer_sql(), {int64_t{1}, int64_t{1}}}}};
    if (i >= kLag) b.fence.watermark = *txn::Txid::parse(txids[i - kLag]);
    auto r = post(txn::branch_step_path(t, "batch"), json::serialize(b.to_json()));
    ASSERT_EQ(r->status, 200) << r->body;
    txn::DecisionRequest d{b.fence};
    r = post(txn::branch_step_path(t, "commit"), json::serialize(d.to_json()));
    ASSERT_EQ(r->status, 200) << r->body;
  }
  EXPECT_EQ(balance(1), 100 + kBranches) << "every branch committed";
  // Outcome records below the watermark are gone at once...
  EXPECT_LE(metric("outcome_records"), kLag + 1);
  // ...marker rows at the next upkeep (about a second).
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (count_markers() > kLag + 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  EXPECT_LE(count_markers(), kLag + 1) << agent_.log();
  // Below the watermark a txid with no record is forgotten, never presumed aborted.
  auto r = post(txn::branch_step_path(txids[0], "commit"), "{}");
  EXPECT_EQ(r->status, 410) << r->body;
  EXPECT_EQ(r->error_code(), "forgotten");
  // Above it the marker still answers after a restart.
  kill9();
  start_agent();
  EXPECT_EQ(decide(txids.back(), "commit"), "committed");
}

TEST_P(AgentProtocol, unsafe_no_fsync_starts_with_a_warning) {
  extra_args_ = {"--unsafe-no-fsync"};
  start_agent();
  EXPECT_NE(agent_.log().find("UNSAFE"), std::string::npos) << agent_.log();
}

TEST_P(AgentProtocol, an_inquiry_answer_carries_the_watermark_to_the_agent) {
  start_agent();
  const std::string t = tx("asks");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-1}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  const txn::Txid w("c1", ballot_, 1);  // below t
  coordinator_.set_watermark(w);
  coordinator_.decide(t, "committed");
  ASSERT_TRUE(wait_state(t, "committed", 5s)) << agent_.log();
  auto info = client_->get(addr(), std::string(txn::kAgentInfoPath), 5000);
  auto i = txn::AgentInfo::from_json(*info->json_body());
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(i->watermark, w);
}

// --- the one-phase fast path (issue 11) -------------------------------------------

// A transaction with one participant commits in one round trip: no PREPARE,
// the marker committed with the branch's writes, nothing left in doubt.
TEST_P(AgentProtocol, a_one_phase_commit_commits_the_row_and_prepares_nothing) {
  start_agent();
  const std::string t = tx("one-phase");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-25}, int64_t{1}})->status, 200);
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{25}, int64_t{2}})->status, 200);
  OnePhase c = commit_one_phase(t);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.answer.outcome, Outcome::committed) << c.body;
  EXPECT_FALSE(c.answer.read_only);
  // Durable and visible once answered: the rows and the marker, read
  // directly from the database.
  EXPECT_EQ(balance(1), 75);
  EXPECT_EQ(balance(2), 125);
  EXPECT_TRUE(has_marker(t)) << "the marker is in the database after the answer";
  EXPECT_EQ(pg_prepared_of_agent(), 0) << "no PREPARE TRANSACTION";
  EXPECT_TRUE(listed(std::nullopt).empty()) << "the agent holds nothing";
  EXPECT_TRUE(database_free()) << "session and locks are free at once";
  // A repeat answers from the outcome record, and runs nothing.
  c = commit_one_phase(t);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.answer.outcome, Outcome::committed);
  auto [status, st] = branch_status(t);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(st->state, txn::BranchState::committed);
  EXPECT_EQ(st->outcome, Outcome::committed);
  EXPECT_EQ(metric("one_phase_committed_total"), 1);
  EXPECT_EQ(metric("votes_yes_total"), 0);
  EXPECT_EQ(balance(1), 75);
}

// The coordinator may lose the answer: the marker settles it, also after a
// kill -9 of the agent right after the commit; a branch killed before its
// commit-one-phase never committed.
TEST_P(AgentProtocol, a_lost_one_phase_answer_is_settled_by_the_marker_after_a_kill9) {
  start_agent();
  const std::string done = tx("committed"), cut = tx("killed-before");
  ASSERT_EQ(exec(done, transfer_sql(), {int64_t{-7}, int64_t{1}})->status, 200);
  ASSERT_EQ(commit_one_phase(done).answer.outcome, Outcome::committed);
  ASSERT_EQ(exec(cut, transfer_sql(), {int64_t{-9}, int64_t{2}})->status, 200);
  kill9();
  start_agent();
  EXPECT_EQ(balance(1), 93);
  EXPECT_EQ(balance(2), 100) << "the active branch died with the agent";
  // GET first (a new leader's probe before it presumes an abort), then the
  // repeat.
  auto [status, st] = branch_status(done);
  ASSERT_EQ(status, 200) << "the marker says it committed";
  EXPECT_EQ(st->state, txn::BranchState::committed);
  EXPECT_EQ(st->outcome, Outcome::committed);
  EXPECT_EQ(branch_status(cut).first, 404) << "no trace of a branch that never committed";
  OnePhase c = commit_one_phase(done);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.answer.outcome, Outcome::committed);
  c = commit_one_phase(cut);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.answer.outcome, Outcome::aborted);
  EXPECT_FALSE(c.answer.reason.message.empty());
  // Once answered aborted it stays so: a late first exec opens nothing.
  EXPECT_EQ(exec(cut, transfer_sql(), {int64_t{-9}, int64_t{2}})->error_code(), "not_active");
  c = commit_one_phase(done);
  EXPECT_EQ(c.answer.outcome, Outcome::committed);
  EXPECT_EQ(balance(1), 93);
  EXPECT_EQ(balance(2), 100);
  EXPECT_EQ(pg_prepared_of_agent(), 0);
}

TEST_P(AgentProtocol, a_one_phase_commit_is_fenced_like_prepare) {
  start_agent();
  const std::string t = tx("fenced");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-3}, int64_t{1}})->status, 200);
  txn::Fence probe = fence();
  probe.ballot = txn::BallotId{2, 1};
  ASSERT_EQ(client_->get(addr(), txn::branch_path(t, probe), 5000)->status, 200);
  OnePhase c = commit_one_phase(t);
  EXPECT_EQ(c.status, 409) << c.body;
  EXPECT_EQ(c.code, "stale_ballot");
  txn::PrepareRequest other{fence(), seq_[t], digest_[t]};
  other.fence.agent_id = "someone-else";
  other.fence.ballot = txn::BallotId{2, 1};
  auto r = post(txn::branch_step_path(t, "commit-one-phase"), json::serialize(other.to_json()));
  EXPECT_EQ(r->error_code(), "wrong_agent") << r->body;
  EXPECT_FALSE(has_marker(t));
  EXPECT_EQ(balance(1), 100);
  EXPECT_EQ(metric("one_phase_committed_total"), 0);
}

TEST_P(AgentProtocol, a_one_phase_commit_with_another_exec_count_or_digest_aborts) {
  start_agent();
  const std::string t = tx("mismatch"), d = tx("digest");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-4}, int64_t{1}})->status, 200);
  OnePhase c = commit_one_phase(t, 2);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.answer.outcome, Outcome::aborted);
  EXPECT_EQ(c.answer.reason.sqlstate, kRefusedByDtx) << c.answer.reason.message;
  EXPECT_EQ(commit_one_phase(t).answer.outcome, Outcome::aborted) << "a repeat: the same answer";
  ASSERT_EQ(exec(d, transfer_sql(), {int64_t{-4}, int64_t{1}})->status, 200);
  digest_[d] ^= 1;
  EXPECT_EQ(commit_one_phase(d).answer.outcome, Outcome::aborted);
  EXPECT_FALSE(has_marker(t));
  EXPECT_FALSE(has_marker(d));
  EXPECT_EQ(balance(1), 100);
  EXPECT_TRUE(database_free()) << "rolled back at once";
  EXPECT_EQ(metric("one_phase_aborted_total"), 2);
}

TEST_P(AgentProtocol, a_one_phase_commit_the_database_refuses_aborts_with_its_reason) {
  start_agent();
  // A deferred foreign key is checked at COMMIT only.
  const std::string refs = table_ + "_refs";
  if (db_ == Db::postgres) {
    sql_setup("CREATE TABLE " + refs + " (id integer PRIMARY KEY, acct integer REFERENCES " +
              table_ + " (id) DEFERRABLE INITIALLY DEFERRED)");
  } else {
    sql_setup("CREATE TABLE " + refs + " (id INTEGER PRIMARY KEY, acct INTEGER REFERENCES " +
              table_ + " (id) DEFERRABLE INITIALLY DEFERRED)");
  }
  const std::string t = tx("refused-at-commit");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-2}, int64_t{1}})->status, 200);
  ASSERT_EQ(
      exec(t, "INSERT INTO " + refs + " (id, acct) VALUES ($1, $2)", {int64_t{1}, int64_t{99}})
          ->status,
      200);
  OnePhase c = commit_one_phase(t);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.answer.outcome, Outcome::aborted);
  EXPECT_EQ(c.answer.reason.sqlstate,
            db_ == Db::postgres ? "23503" : "SQLITE_CONSTRAINT_FOREIGNKEY")
      << c.answer.reason.message;
  EXPECT_FALSE(has_marker(t)) << "the marker went with the rest";
  EXPECT_EQ(balance(1), 100);
  EXPECT_TRUE(database_free());
  EXPECT_EQ(commit_one_phase(t).answer.outcome, Outcome::aborted);
  if (db_ == Db::postgres) sql_setup("DROP TABLE " + refs);
}

TEST_P(AgentProtocol, a_branch_that_wrote_nothing_commits_in_one_phase_with_no_marker) {
  start_agent();
  const std::string t = tx("read-only");
  ASSERT_EQ(exec(t, "SELECT v FROM " + table_ + " WHERE id = $1", {int64_t{1}})->status, 200);
  OnePhase c = commit_one_phase(t);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.answer.outcome, Outcome::committed);
  EXPECT_TRUE(c.answer.read_only);
  EXPECT_FALSE(has_marker(t));
  EXPECT_TRUE(database_free());
  c = commit_one_phase(t);
  EXPECT_TRUE(c.answer.read_only) << "a repeat: the same answer";
  auto [status, st] = branch_status(t);
  ASSERT_EQ(status, 200);
  EXPECT_TRUE(st->read_only);
  EXPECT_EQ(metric("one_phase_read_only_total"), 1);
}

TEST_P(AgentProtocol, a_one_phase_batch_runs_and_commits_in_one_round_trip) {
  start_agent();
  const std::string t = tx("one-phase-batch");
  txn::BatchRequest b{fence(),
                      {{transfer_sql(), {int64_t{-10}, int64_t{1}}},
                       {transfer_sql(), {int64_t{10}, int64_t{2}}},
                       {"SELECT v FROM " + table_ + " WHERE id = $1", {int64_t{1}}}},
                      /*one_phase=*/true};
  auto r = post(txn::branch_step_path(t, "batch"), json::serialize(b.to_json()));
  ASSERT_EQ(r->status, 200) << r->body;
  auto a = txn::BatchAnswer::from_json(*r->json_body());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(a->one_phase.has_value()) << r->body;
  EXPECT_EQ(a->one_phase->outcome, Outcome::committed) << r->body;
  ASSERT_EQ(a->results.size(), 3u);
  EXPECT_EQ(a->results[2].rows.rows, (std::vector<std::vector<SqlValue>>{{int64_t{90}}}));
  EXPECT_EQ(balance(1), 90) << "committed, nothing to decide";
  EXPECT_EQ(balance(2), 110);
  EXPECT_TRUE(has_marker(t));
  EXPECT_EQ(pg_prepared_of_agent(), 0);
  EXPECT_EQ(commit_one_phase(t, 3).answer.outcome, Outcome::committed) << "asked again";
  // An error stops the batch: aborted, with the statement's reason.
  const std::string bad = tx("one-phase-batch-fails");
  txn::BatchRequest fails{
      fence(),
      {{transfer_sql(), {int64_t{-1}, int64_t{2}}}, {transfer_sql(), {int64_t{-500}, int64_t{1}}}},
      true};
  r = post(txn::branch_step_path(bad, "batch"), json::serialize(fails.to_json()));
  ASSERT_EQ(r->status, 200) << r->body;
  a = txn::BatchAnswer::from_json(*r->json_body());
  ASSERT_TRUE(a.ok() && a->one_phase) << r->body;
  EXPECT_EQ(a->one_phase->outcome, Outcome::aborted);
  EXPECT_EQ(a->one_phase->reason.sqlstate, a->results[1].error.sqlstate);
  EXPECT_FALSE(has_marker(bad));
  EXPECT_EQ(balance(1), 90);
  EXPECT_EQ(balance(2), 110);
  EXPECT_TRUE(database_free());
}

INSTANTIATE_TEST_SUITE_P(Db, AgentProtocol, ::testing::Values(Db::postgres, Db::sqlite),
                         [](const ::testing::TestParamInfo<Db>& i) {
                           return i.param == Db::postgres ? "postgres" : "sqlite";
                         });

}  // namespace
}  // namespace dtx::participant
