// Goal: dtx-agent, as a real process over real HTTP, holds every branch it
// voted yes for through kill -9, applies only the decisions it is given,
// refuses what CORRECTNESS.md A1-A7 and T5-T6 forbid, on a real PostgreSQL
// server and on real SQLite files. A small test coordinator inside the test
// answers the agent's outcome inquiries.
#include "tests/integration/agent_fixture.h"

namespace dtx::participant {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

TEST_P(AgentFixture, exec_prepare_commit_and_abort) {
  start_agent();
  const std::string t1 = tx("commit"), t2 = tx("abort");
  auto r = exec(t1, transfer_sql(), {int64_t{-30}, int64_t{1}});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->json_body()->as_object().at("rows_affected").as_int64(), 1);
  r = exec(t1, "SELECT v FROM " + table_ + " WHERE id = $1", {int64_t{1}});
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->json_body()->as_object().at("rows").as_array()[0].as_array()[0].as_int64(), 70)
      << "the branch sees its own write";
  ASSERT_EQ(prepare(t1), "yes");
  EXPECT_EQ(balance(1), 100) << "a reader does not see a prepared branch's writes";
  EXPECT_EQ(decide(t1, "commit"), "committed");
  EXPECT_EQ(balance(1), 70);

  ASSERT_EQ(exec(t2, transfer_sql(), {int64_t{-5}, int64_t{2}})->status, 200);
  ASSERT_EQ(prepare(t2), "yes");
  EXPECT_EQ(decide(t2, "abort"), "aborted");
  EXPECT_EQ(balance(2), 100);
  // Repeats get the same answers.
  EXPECT_EQ(decide(t1, "commit"), "committed");
  EXPECT_EQ(decide(t2, "abort"), "aborted");
  EXPECT_EQ(prepare(t1), "yes");
  EXPECT_EQ(balance(1), 70);
}

TEST_P(AgentFixture, constraint_violation_and_any_earlier_failure_vote_no) {
  start_agent();
  const std::string t1 = tx("violates");
  auto r = exec(t1, transfer_sql(), {int64_t{-500}, int64_t{1}});  // CHECK (v >= 0)
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_EQ(prepare(t1), "no");
  EXPECT_EQ(balance(1), 100);

  const std::string t2 = tx("after-failure");
  ASSERT_EQ(exec(t2, "SELECT no_such_column FROM " + table_)->status, 422);
  auto later = exec(t2, transfer_sql(), {int64_t{-1}, int64_t{2}});
  EXPECT_EQ(later->status, 409) << "a doomed branch runs nothing more";
  EXPECT_EQ(prepare(t2), "no");
  EXPECT_EQ(balance(2), 100);
}

TEST_P(AgentFixture, out_of_sequence_and_late_execs_are_refused) {
  start_agent();
  const std::string t = tx("seq");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-1}, int64_t{1}})->status, 200);
  // seq 3 when 2 is expected.
  auto r = post("/v1/branches/" + t + "/exec",
                json::serialize(json::object{{"seq", 3}, {"sql", "SELECT 1"}}));
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(r->error_code(), "out_of_sequence");
  // A repeat of seq 1 does not run twice.
  r = post("/v1/branches/" + t + "/exec",
           json::serialize(
               json::object{{"seq", 1}, {"sql", transfer_sql()}, {"params", json::array{-1, 1}}}));
  EXPECT_EQ(r->status, 409);
  ASSERT_EQ(prepare(t), "yes");
  // A late exec after prepare must not run (it would autocommit outside the
  // prepared transaction: reproduced on PostgreSQL).
  r = post("/v1/branches/" + t + "/exec",
           json::serialize(
               json::object{{"seq", 2}, {"sql", transfer_sql()}, {"params", json::array{-50, 2}}}));
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(r->error_code(), "not_active");
  EXPECT_EQ(decide(t, "abort"), "aborted");
  EXPECT_EQ(balance(1), 100);
  EXPECT_EQ(balance(2), 100) << "nothing autocommitted";
}

TEST_P(AgentFixture,
       kill9_after_a_yes_vote_keeps_the_branch_prepared_until_the_coordinator_decides) {
  // One round ends committed, one aborted. (SQLite holds one prepared branch
  // at a time: its single write lock is the branch's until the decision.)
  for (const std::string outcome : {"committed", "aborted"}) {
    SCOPED_TRACE(outcome);
    start_agent();
    const std::string t = tx("crash-" + outcome);
    ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-10}, int64_t{1}})->status, 200);
    ASSERT_EQ(prepare(t), "yes");
    const int64_t before = balance(1);
    kill9();
    EXPECT_EQ(balance(1), before);
    start_agent();
    EXPECT_EQ(prepared_listed(), std::vector<std::string>{t})
        << "the branch is still prepared after kill -9\n"
        << agent_.log();
    EXPECT_EQ(balance(1), before) << "still invisible to readers";
    // The agent asks; the coordinator's log decides.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (coordinator_.asked(t) == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_GT(coordinator_.asked(t), 0) << "the agent must ask about an in-doubt branch";
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(prepared_listed().size(), 1u) << "pending: it never decides alone";
    coordinator_.decide(t, outcome);
    EXPECT_TRUE(wait_state(t, outcome, 10s)) << agent_.log();
    EXPECT_EQ(balance(1), outcome == "committed" ? before - 10 : before);
    // The coordinator's own decision, arriving late, gets the applied outcome.
    EXPECT_EQ(decide(t, outcome == "committed" ? "commit" : "abort"), outcome);
    kill9();
  }
}

TEST_P(AgentFixture, a_decided_branch_is_answered_from_the_database_after_a_restart) {
  start_agent();
  const std::string t = tx("marker");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-7}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  ASSERT_EQ(decide(t, "commit"), "committed");
  kill9();  // the outcome record in memory is gone
  start_agent();
  EXPECT_EQ(decide(t, "commit"), "committed") << "settled by the marker row (A3)";
  EXPECT_EQ(balance(1), 93) << "applied once";
  // A later transaction on the same row is not undone by anything.
  const std::string later = tx("later");
  ASSERT_EQ(exec(later, transfer_sql(), {int64_t{-3}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(later), "yes");
  ASSERT_EQ(decide(later, "commit"), "committed");
  kill9();
  start_agent();
  EXPECT_EQ(balance(1), 90);
  EXPECT_EQ(decide(tx("never-seen"), "commit"), "aborted") << "no marker: it never committed here";
}

TEST_P(AgentFixture, a_second_agent_on_the_same_database_is_refused) {
  start_agent();
  testing::Process second = testing::Process::spawn(
      testing::bin_dir() + "/dtx-agent",
      [&] {
        auto a = agent_args(name_);
        for (size_t i = 0; i + 1 < a.size(); ++i) {
          if (a[i] == "--listen") a[i + 1] = "127.0.0.1:" + std::to_string(testing::free_port());
          if (a[i] == "--wal-dir") a[i + 1] = dir_.sub("wal2");
        }
        return a;
      }(),
      dir_.sub("second.log"));
  auto st = second.wait(15s);
  ASSERT_TRUE(st.has_value()) << "the second agent kept running";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) != 0);
  EXPECT_NE(second.log().find("busy"), std::string::npos) << second.log();
}

// An agent started while its PostgreSQL does not answer yet (a server still
// starting or recovering from a crash) waits for it instead of exiting:
// before, it exited at once and, with nobody to restart it, every
// transaction through it aborted from then on (found by a 100-fault soak).
TEST_P(AgentFixture, an_agent_waits_for_a_database_that_does_not_answer_yet) {
  if (GetParam() != Db::postgres) GTEST_SKIP() << "a PostgreSQL server that is down";
  testing::Process p = testing::Process::spawn(
      testing::bin_dir() + "/dtx-agent",
      [&] {
        auto a = agent_args(name_);
        for (size_t i = 0; i + 1 < a.size(); ++i) {
          if (a[i] == "--postgres") {
            a[i + 1] = "postgresql://postgres@127.0.0.1:" + std::to_string(testing::free_port()) +
                       "/nothing";
          }
        }
        return a;
      }(),
      dir_.sub("waiting.log"));
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(p.running()) << p.log();
  EXPECT_NE(p.log().find("does not answer yet"), std::string::npos) << p.log();
  p.signal(SIGTERM);
  auto st = p.wait(10s);
  ASSERT_TRUE(st.has_value()) << "it stops when told to while waiting";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
}

TEST_P(AgentFixture, bad_input_gets_the_right_status_and_changes_nothing) {
  start_agent();
  const std::string t = tx("bad");
  auto r = post("/v1/branches/" + t + "/exec", "{not json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->error_code(), "invalid_argument");
  r = post("/v1/branches/" + t + "/exec", R"({"seq": 1, "sql": 5})");
  EXPECT_EQ(r->status, 400);
  r = post("/v1/branches/" + t + "/exec", R"({"seq": 1, "sql": "SELECT 1", "params": [{"a": 1}]})");
  EXPECT_EQ(r->status, 400);
  r = post("/v1/branches/bad%20txid/exec", R"({"seq": 1, "sql": "SELECT 1"})");
  EXPECT_EQ(r->status, 400);
  r = post("/v1/branches/" + t + "/exec",
           json::serialize(json::object{{"seq", 1}, {"sql", std::string(2u << 20, 'x')}}));
  EXPECT_EQ(r->status, 413);
  r = post("/v1/branches/" + t + "/prepare", R"({"exec_count": 1, "digest": "zz"})");
  EXPECT_EQ(r->status, 400);
  auto get = client_->get(addr(), "/v1/branches/" + tx("unknown"), 2000);
  EXPECT_EQ(get->status, 404);
  // Tokens: missing, wrong.
  rest::Client anonymous;
  auto noauth = anonymous.post(addr(), "/v1/branches/" + t + "/commit", "{}");
  EXPECT_EQ(noauth->status, 401);
  rest::ClientOptions wrong;
  wrong.bearer_token = "wrong-token-0123456789";
  rest::Client intruder(wrong);
  auto denied =
      intruder.post(addr(), "/v1/branches/" + t + "/exec",
                    json::serialize(json::object{
                        {"seq", 1}, {"sql", transfer_sql()}, {"params", json::array{-1, 1}}}));
  EXPECT_EQ(denied->status, 403);
  EXPECT_EQ(client_->get(addr(), "/healthz", 2000)->status, 200) << "health checks need no token";
  EXPECT_EQ(balance(1), 100);
  EXPECT_EQ(balance(2), 100);
  // Then the agent still works.
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-1}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  EXPECT_EQ(decide(t, "commit"), "committed");
}

TEST_P(AgentFixture, precommitted_branch_refuses_abort_and_commits_on_its_own) {
  start_agent();
  const std::string t = tx("3pc");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-4}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  auto r = post("/v1/branches/" + t + "/precommit", "{}");
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(decide(t, "abort"), "http 409 precommitted");
  // No do-commit arrives: it commits by itself after its timeout.
  EXPECT_TRUE(wait_state(t, "committed", 10s)) << agent_.log();
  EXPECT_EQ(balance(1), 96);
}

TEST_P(AgentFixture, branches_holding_a_session_go_on_while_first_execs_wait_for_one) {
  // One worker per lane. PostgreSQL: every pooled session is held by a
  // branch; SQLite: one branch holds the write lock. A new branch's first
  // exec then waits for a session; the holders must still prepare and be
  // decided, or the waiter would time out (5 s) and nothing would move.
  extra_args_ = {"--workers", "1"};
  start_agent();
  std::vector<std::string> held;
  ASSERT_NO_FATAL_FAILURE(hold_every_session(&held));
  const std::string waiter = tx("waiter");
  std::optional<Result<rest::Response>> waited;
  std::thread t = first_exec_async(waiter, {{"sql", "SELECT 1"}}, &waited);
  ASSERT_TRUE(wait_state(waiter, "busy", 5s)) << "the waiter's first exec is under way";
  for (const std::string& h : held) {
    ASSERT_EQ(prepare(h), "read_only") << h << ": the holders only read";
    EXPECT_EQ(decide(h, "commit"), "committed") << h;
  }
  t.join();
  ASSERT_TRUE(waited.has_value() && waited->ok());
  EXPECT_EQ((*waited)->status, 200)
      << (*waited)->body << ": the waiter got the session the holders freed";
  EXPECT_EQ(decide(waiter, "abort"), "aborted");
}

TEST_P(AgentFixture, an_abort_answered_before_a_queued_first_exec_runs_keeps_it_from_running) {
  // One worker per lane, every session held (as above): the first exec of
  // `running` waits for a session, and the one of `queued` waits behind it.
  extra_args_ = {"--workers", "1"};
  start_agent();
  std::vector<std::string> held;
  ASSERT_NO_FATAL_FAILURE(hold_every_session(&held));
  const json::object update{{"sql", "UPDATE " + table_ + " SET v = v - 1 WHERE id = 2"}};
  const std::string running = tx("running"), queued = tx("queued");
  std::optional<Result<rest::Response>> running_answer, queued_answer;
  std::thread t1 = first_exec_async(running, update, &running_answer);
  ASSERT_TRUE(wait_state(running, "busy", 5s));
  std::thread t2 = first_exec_async(queued, update, &queued_answer);
  std::this_thread::sleep_for(100ms);  // let it reach the queue
  // The coordinator gives up on `queued` before its first exec ran.
  EXPECT_EQ(decide(queued, "abort"), "aborted");
  for (const std::string& h : held)
    EXPECT_EQ(decide(h, "abort"), "aborted") << h;
  t1.join();
  t2.join();
  ASSERT_TRUE(running_answer.has_value() && running_answer->ok());
  EXPECT_EQ((*running_answer)->status, 200) << (*running_answer)->body;
  ASSERT_TRUE(queued_answer.has_value() && queued_answer->ok());
  EXPECT_EQ((*queued_answer)->status, 409)
      << (*queued_answer)->body << ": an aborted txid must not open a branch afterwards";
  EXPECT_EQ((*queued_answer)->error_code(), "not_active");
  EXPECT_EQ(decide(running, "abort"), "aborted");
  EXPECT_EQ(balance(2), 100);
}

TEST_P(AgentFixture, a_step_for_a_branch_whose_exec_waits_answers_busy_at_once) {
  start_agent();
  const std::string holder = tx("holder"), waiter = tx("waiter");
  ASSERT_EQ(exec(holder, transfer_sql(), {int64_t{-1}, int64_t{1}})->status, 200);
  // The waiter's first exec waits for the holder's row lock (PostgreSQL) or
  // SQLite's write lock, holding the waiter's branch lock meanwhile.
  std::optional<Result<rest::Response>> waited;
  std::thread t =
      first_exec_async(waiter, {{"sql", transfer_sql()}, {"params", json::array{-2, 1}}}, &waited);
  ASSERT_TRUE(wait_state(waiter, "busy", 5s));
  EXPECT_EQ(decide(waiter, "abort"), "http 409 busy") << "answered without waiting";
  auto health = client_->get(addr(), "/healthz", 1000);
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(decide(holder, "abort"), "aborted");
  t.join();
  ASSERT_TRUE(waited.has_value() && waited->ok());
  EXPECT_EQ((*waited)->status, 200) << (*waited)->body;
  EXPECT_EQ(decide(waiter, "abort"), "aborted");
  EXPECT_EQ(balance(1), 100);
}

INSTANTIATE_TEST_SUITE_P(Db, AgentFixture, ::testing::Values(Db::postgres, Db::sqlite),
                         [](const ::testing::TestParamInfo<Db>& i) {
                           return i.param == Db::postgres ? "postgres" : "sqlite";
                         });

// --- SQLite only -----------------------------------------------------------

class SqliteAgent : public AgentFixture {};

TEST_P(SqliteAgent, a_write_to_a_table_without_a_primary_key_is_refused) {
  sql_setup("CREATE TABLE nokey_" + name_ + " (a INTEGER, b TEXT)");
  start_agent();
  const std::string t = tx("nokey");
  auto r =
      exec(t, "INSERT INTO nokey_" + name_ + " VALUES ($1, $2)", {int64_t{1}, std::string("x")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 422) << "the session extension would skip this table (A6)";
  EXPECT_EQ(r->json_body()->as_object().at("error").as_object().at("sqlstate").as_string(),
            "dtx01");
  EXPECT_EQ(prepare(t), "no");
  const std::string ddl = tx("ddl");
  EXPECT_EQ(exec(ddl, "CREATE TABLE sneaky (id INTEGER PRIMARY KEY)")->status, 422);
  EXPECT_EQ(prepare(ddl), "no");
}

TEST_P(SqliteAgent, a_branch_with_a_trigger_and_a_cascade_is_redone_exactly_after_a_crash) {
  sql_setup("CREATE TABLE parent_" + name_ + " (id INTEGER PRIMARY KEY, name TEXT)");
  sql_setup("CREATE TABLE child_" + name_ +
            " (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent_" + name_ +
            "(id) ON DELETE CASCADE)");
  sql_setup("CREATE TABLE audit_" + name_ + " (id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT)");
  sql_setup("CREATE TRIGGER trg_" + name_ + " AFTER DELETE ON parent_" + name_ +
            " BEGIN INSERT INTO audit_" + name_ + " (what) VALUES ('deleted ' || old.name); END");
  sql_setup("INSERT INTO parent_" + name_ + " VALUES (1, 'alpha'), (2, 'beta')");
  sql_setup("INSERT INTO child_" + name_ + " VALUES (10, 1), (11, 1), (20, 2)");
  start_agent();
  const std::string t = tx("cascade");
  ASSERT_EQ(exec(t, "DELETE FROM parent_" + name_ + " WHERE id = $1", {int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  kill9();
  // An operator can read the branch's redo and undo while the agent is down.
  testing::Process show = testing::Process::spawn(
      testing::bin_dir() + "/dtx-agent",
      {"show-prepared", "--wal-dir", dir_.sub("wal"), "--sqlite", sqlite_path_, "--txid", t},
      dir_.sub("show.log"));
  ASSERT_TRUE(show.wait(10s).has_value());
  EXPECT_NE(show.log().find("parent_" + name_), std::string::npos) << show.log();
  EXPECT_NE(show.log().find("child_" + name_), std::string::npos) << show.log();
  start_agent();  // redo with triggers and cascades not fired again
  ASSERT_EQ(prepared_listed(), std::vector<std::string>{t}) << agent_.log();
  coordinator_.decide(t, "committed");
  ASSERT_TRUE(wait_state(t, "committed", 10s)) << agent_.log();
  auto count = [&](const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(sqlite_path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
  };
  EXPECT_EQ(count("SELECT count(*) FROM parent_" + name_), 1);
  EXPECT_EQ(count("SELECT count(*) FROM child_" + name_), 1) << "the cascade, once";
  EXPECT_EQ(count("SELECT count(*) FROM audit_" + name_), 1) << "the trigger, once";
}

TEST_P(SqliteAgent, kill9_between_the_database_commit_and_the_agents_record) {
  start_agent();
  const std::string t = tx("commit-crash");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-25}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(t), "yes");
  // Restart the agent with a crash point right after SQLite's COMMIT.
  kill9();
  ::setenv("DTX_AGENT_TEST_CRASH_AT", "db_committed", 1);
  start_agent();
  ::unsetenv("DTX_AGENT_TEST_CRASH_AT");
  coordinator_.decide(t, "committed");
  auto st = agent_.wait(10s);
  ASSERT_TRUE(st.has_value()) << "the crash point was not reached\n" << agent_.log();
  EXPECT_EQ(balance(1), 75) << "SQLite committed before the crash";
  // Recovery finds the marker: committed, not re-applied.
  start_agent();
  EXPECT_TRUE(prepared_listed().empty());
  EXPECT_EQ(balance(1), 75) << "applied once";
  // A later transaction on the same row is not undone by anything.
  const std::string later = tx("later");
  ASSERT_EQ(exec(later, transfer_sql(), {int64_t{-5}, int64_t{1}})->status, 200);
  ASSERT_EQ(prepare(later), "yes");
  ASSERT_EQ(decide(later, "commit"), "committed");
  kill9();
  start_agent();
  EXPECT_EQ(balance(1), 70);
  EXPECT_EQ(decide(t, "commit"), "committed");
}

// The answer to a one-phase commit is lost with the agent, killed right
// after SQLite's COMMIT: the marker answers the repeat and the probe.
TEST_P(SqliteAgent, kill9_right_after_a_one_phase_commit_is_answered_from_the_marker) {
  start_agent();
  const std::string t = tx("one-phase-crash");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-15}, int64_t{1}})->status, 200);
  // No way to set the crash point in a running agent: this branch dies
  // with it, and the next agent, started with the crash point, runs one
  // that commits.
  kill9();
  ::setenv("DTX_AGENT_TEST_CRASH_AT", "one_phase_committed", 1);
  start_agent();
  ::unsetenv("DTX_AGENT_TEST_CRASH_AT");
  const std::string c = tx("one-phase-crash-2");
  ASSERT_EQ(exec(c, transfer_sql(), {int64_t{-15}, int64_t{1}})->status, 200);
  OnePhase lost = commit_one_phase(c);
  EXPECT_NE(lost.status, 200) << "the agent died before answering: " << lost.body;
  auto st = agent_.wait(10s);
  ASSERT_TRUE(st.has_value()) << "the crash point was not reached\n" << agent_.log();
  EXPECT_EQ(balance(1), 85) << "SQLite committed before the crash";
  start_agent();
  auto [status, probe] = branch_status(c);
  ASSERT_EQ(status, 200) << "the marker says it committed";
  EXPECT_EQ(probe->outcome, Outcome::committed);
  OnePhase again = commit_one_phase(c);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.answer.outcome, Outcome::committed);
  again = commit_one_phase(t);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.answer.outcome, Outcome::aborted) << "killed before its commit-one-phase";
  EXPECT_TRUE(listed(std::nullopt).empty());
  EXPECT_EQ(balance(1), 85) << "committed once";
}

INSTANTIATE_TEST_SUITE_P(Db, SqliteAgent, ::testing::Values(Db::sqlite),
                         [](const ::testing::TestParamInfo<Db>&) { return std::string("sqlite"); });

}  // namespace
}  // namespace dtx::participant
