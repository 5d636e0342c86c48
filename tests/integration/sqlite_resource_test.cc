// Goal: a SQLite branch runs only what the session extension can record,
// votes yes only once its redo is durable, and commits or aborts exactly as
// the contract in participant/resource.h says (A5, A6, T5, T6).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "participant/sqlite/sqlite_changeset.h"
#include "participant/sqlite/sqlite_wal_records.h"
#include "tests/integration/sqlite_test_support.h"
#include "tests/support/sim_fs.h"

namespace dtx::participant::sqlite::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kBankSchema =
    "CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL UNIQUE, "
    "balance INTEGER NOT NULL);"
    "INSERT INTO accounts VALUES (1, 'alice', 100), (2, 'bob', 50);";

class SqliteResourceTest : public SqliteTest {
 protected:
  void SetUp() override { db().exec(kBankSchema); }

  // exec that must succeed.
  Rows run(Branch& b, const std::string& sql, const std::vector<SqlValue>& params = {}) {
    DbError err;
    auto r = b.exec(sql, params, &err);
    EXPECT_TRUE(r.ok()) << sql << ": " << err.sqlstate << ": " << err.message;
    return r.ok() ? std::move(*r) : Rows{};
  }
  // exec that must be refused by dtx; returns the reason.
  std::string refused(Branch& b, const std::string& sql) {
    DbError err;
    auto r = b.exec(sql, {}, &err);
    EXPECT_FALSE(r.ok()) << sql << " ran";
    EXPECT_EQ(err.sqlstate, kRefusedByDtx) << sql << ": " << err.message;
    return err.message;
  }
  // Every statement in its own fresh branch must be refused.
  void expect_refused(SqliteResource& res, const std::vector<std::string>& statements) {
    int n = 0;
    for (const auto& sql : statements) {
      auto b = res.begin("refuse-" + std::to_string(n++));
      ASSERT_TRUE(b.ok()) << b.status();
      refused(**b, sql);
      DbError err;
      EXPECT_FALSE(res.prepare(std::move(*b), &err).ok()) << sql;
      EXPECT_EQ(err.sqlstate, kRefusedByDtx);
    }
  }
};

TEST_F(SqliteResourceTest, exec_prepare_commit_is_visible_to_another_connection) {
  auto res = open_resource();
  auto b = res->begin("t1");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->txid(), "t1");
  Rows r = run(**b, "UPDATE accounts SET balance = balance - 30 WHERE id = 1");
  EXPECT_EQ(r.rows_affected, 1);
  r = run(**b, "UPDATE accounts SET balance = balance + 30 WHERE id = 2");
  EXPECT_EQ(r.rows_affected, 1);
  DbError err;
  ASSERT_TRUE(res->prepare(std::move(*b), &err).ok()) << err.message;
  EXPECT_EQ(res->prepared(), std::vector<std::string>{"t1"});
  auto out = res->commit("t1");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, Outcome::committed);
  EXPECT_TRUE(res->prepared().empty());
  EXPECT_EQ(db().rows("SELECT id, balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"1|70", "2|80"}));
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers WHERE txid = 't1'"), 1);
  EXPECT_EQ(*res->outcome_of("t1"), Outcome::committed);
  EXPECT_TRUE(res->healthy());
  EXPECT_EQ(res->describe(), "sqlite " + db_path());
}

TEST_F(SqliteResourceTest, abort_leaves_nothing) {
  auto res = open_resource();
  ASSERT_TRUE(run_branch(*res, "t1",
                         {"DELETE FROM accounts WHERE id = 2",
                          "INSERT INTO accounts VALUES (3, 'carol', 7)"})
                  .ok());
  auto out = res->abort("t1");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, Outcome::aborted);
  EXPECT_EQ(db().rows("SELECT id FROM accounts ORDER BY id"), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers"), 0);
  EXPECT_EQ(*res->outcome_of("t1"), Outcome::aborted);
  // The write lock is free again.
  auto b = res->begin("t2");
  ASSERT_TRUE(b.ok()) << b.status();
}

TEST_F(SqliteResourceTest, rows_come_back_typed) {
  db().exec("CREATE TABLE kinds(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, n)");
  db().exec("INSERT INTO kinds VALUES (1, -7, 2.5, 'héllo', X'00FF10', NULL)");
  auto res = open_resource();
  auto b = res->begin("t1");
  ASSERT_TRUE(b.ok());
  Rows r = run(**b, "SELECT i, r, t, b, n, 1 + 1 AS two FROM kinds");
  EXPECT_EQ(r.columns, (std::vector<std::string>{"i", "r", "t", "b", "n", "two"}));
  ASSERT_EQ(r.rows.size(), 1u);
  const auto& row = r.rows[0];
  EXPECT_EQ(std::get<int64_t>(row[0]), -7);
  EXPECT_DOUBLE_EQ(std::get<double>(row[1]), 2.5);
  EXPECT_EQ(std::get<std::string>(row[2]), "héllo");
  EXPECT_EQ(std::get<std::string>(row[3]), std::string("\x00\xff\x10", 3));  // a BLOB's bytes
  EXPECT_TRUE(std::holds_alternative<std::monostate>(row[4]));
  EXPECT_EQ(std::get<int64_t>(row[5]), 2);
  EXPECT_EQ(r.rows_affected, 0);
  // RETURNING gives rows and a count.
  r = run(**b, "UPDATE kinds SET i = i * 2 RETURNING id, i");
  EXPECT_EQ(r.rows_affected, 1);
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(std::get<int64_t>(r.rows[0][1]), -14);
}

TEST_F(SqliteResourceTest, a_result_larger_than_the_limit_fails_the_statement) {
  SqliteOptions o = options();
  o.result_rows_max = 1;
  SqliteResource res(o);
  ASSERT_TRUE(res.open().ok());
  auto b = res.begin("t1");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(run(**b, "SELECT id FROM accounts WHERE id = 1").rows.size(), 1u);
  EXPECT_NE(refused(**b, "SELECT id FROM accounts").find("more than 1 rows"), std::string::npos);
}

TEST_F(SqliteResourceTest, parameters_are_bound_by_position_and_stored_verbatim) {
  db().exec("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, flag, x REAL, maybe)");
  auto res = open_resource();
  auto b = res->begin("t1");
  ASSERT_TRUE(b.ok());
  const std::string nasty = "it's; DROP TABLE accounts; -- \"quoted\"";
  // $2 appears before $1: each binds by its number, not by its place.
  run(**b, "INSERT INTO notes(body, id, flag, x, maybe) VALUES ($2, $1, $3, $4, $5)",
      {int64_t{7}, nasty, true, 0.25, std::monostate{}});
  run(**b, "INSERT INTO notes(id, body, flag) VALUES (?, ?, ?)",
      {int64_t{8}, std::string("plain"), false});
  Rows r = run(**b, "SELECT body, flag, x, maybe FROM notes WHERE id = $1", {int64_t{7}});
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(std::get<std::string>(r.rows[0][0]), nasty);
  EXPECT_EQ(std::get<int64_t>(r.rows[0][1]), 1);
  EXPECT_DOUBLE_EQ(std::get<double>(r.rows[0][2]), 0.25);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r.rows[0][3]));
  ASSERT_TRUE(res->prepare(std::move(*b), nullptr).ok());
  ASSERT_TRUE(res->commit("t1").ok());
  EXPECT_EQ(
      db().rows("SELECT body, flag FROM notes ORDER BY id"),
      (std::vector<std::string>{"'it''s; DROP TABLE accounts; -- \"quoted\"'|1", "'plain'|0"}));
  EXPECT_EQ(db().scalar("SELECT count(*) FROM accounts"), 2);

  // Too few, too many, or named parameters: refused, the branch dooms.
  for (auto [sql, params] : std::vector<std::pair<std::string, std::vector<SqlValue>>>{
           {"SELECT $1 + $2", {int64_t{1}}},
           {"SELECT $1", {int64_t{1}, int64_t{2}}},
           {"SELECT :name", {int64_t{1}}}}) {
    auto b2 = res->begin("bad-params");
    ASSERT_TRUE(b2.ok());
    DbError err;
    EXPECT_FALSE((*b2)->exec(sql, params, &err).ok()) << sql;
    EXPECT_EQ(err.sqlstate, kRefusedByDtx) << err.message;
  }
}

TEST_F(SqliteResourceTest, constraint_violation_votes_no_with_the_error_and_commits_nothing) {
  auto res = open_resource();
  auto b = res->begin("t1");
  ASSERT_TRUE(b.ok());
  run(**b, "UPDATE accounts SET balance = 0 WHERE id = 1");
  DbError err;
  auto r = (*b)->exec("INSERT INTO accounts VALUES (3, 'alice', 1)", {}, &err);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(err.sqlstate, "SQLITE_CONSTRAINT_UNIQUE");
  EXPECT_NE(err.message.find("accounts.owner"), std::string::npos) << err.message;
  DbError vote;
  Status s = res->prepare(std::move(*b), &vote);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(vote.sqlstate, "SQLITE_CONSTRAINT_UNIQUE");
  EXPECT_TRUE(res->prepared().empty());
  EXPECT_EQ(db().rows("SELECT balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"100", "50"}));
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers"), 0);
}

TEST_F(SqliteResourceTest, statement_after_a_failed_one_does_not_run_and_the_branch_votes_no) {
  auto res = open_resource();
  auto b = res->begin("t1");
  ASSERT_TRUE(b.ok());
  DbError err;
  ASSERT_FALSE((*b)->exec("INSERT INTO accounts VALUES (1, 'dup', 1)", {}, &err).ok());
  EXPECT_EQ(err.sqlstate, "SQLITE_CONSTRAINT_PRIMARYKEY");
  // A later statement is not run at all (T5), so it cannot write.
  DbError later;
  EXPECT_FALSE((*b)->exec("UPDATE accounts SET balance = 1", {}, &later).ok());
  EXPECT_NE(later.message.find("doomed"), std::string::npos) << later.message;
  EXPECT_FALSE((*b)->exec("SELECT 1", {}, &later).ok());
  DbError vote;
  ASSERT_FALSE(res->prepare(std::move(*b), &vote).ok());
  EXPECT_EQ(vote.sqlstate, "SQLITE_CONSTRAINT_PRIMARYKEY");
  EXPECT_EQ(db().rows("SELECT balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"100", "50"}));
}

TEST_F(SqliteResourceTest, ddl_is_refused) {
  auto res = open_resource();
  expect_refused(
      *res,
      {"CREATE TABLE t(x INTEGER PRIMARY KEY)", "DROP TABLE accounts",
       "ALTER TABLE accounts ADD COLUMN note TEXT", "CREATE INDEX i ON accounts(balance)",
       "CREATE TRIGGER tr AFTER INSERT ON accounts BEGIN SELECT 1; END",
       "CREATE VIEW v AS SELECT 1", "DROP INDEX IF EXISTS nope", "ANALYZE", "REINDEX", "VACUUM"});
  EXPECT_EQ(db().scalar("SELECT count(*) FROM sqlite_master"), 4);  // 2 tables, 2 autoindexes
}

TEST_F(SqliteResourceTest, transaction_control_is_refused) {
  auto res = open_resource();
  expect_refused(
      *res, {"BEGIN", "COMMIT", "ROLLBACK", "END", "SAVEPOINT s", "RELEASE s", "ROLLBACK TO s"});
}

TEST_F(SqliteResourceTest, attach_and_temp_schemas_are_refused) {
  auto res = open_resource();
  expect_refused(
      *res, {"ATTACH DATABASE ':memory:' AS other", "DETACH DATABASE other",
             "CREATE TEMP TABLE scratch(x INTEGER PRIMARY KEY)", "SELECT * FROM temp.sqlite_master",
             "SELECT count(*) FROM sqlite_temp_master",
             "CREATE TEMP TRIGGER t AFTER INSERT ON accounts BEGIN SELECT 1; END"});
}

TEST_F(SqliteResourceTest, writing_pragmas_are_refused_and_reading_ones_run) {
  auto res = open_resource();
  expect_refused(
      *res, {"PRAGMA foreign_keys = OFF", "PRAGMA user_version = 3", "PRAGMA journal_mode = DELETE",
             "PRAGMA optimize", "PRAGMA wal_checkpoint", "PRAGMA defer_foreign_keys = ON",
             "PRAGMA writable_schema = ON", "PRAGMA temp.table_info(accounts)"});
  auto b = res->begin("reads");
  ASSERT_TRUE(b.ok());
  Rows r = run(**b, "PRAGMA table_info(accounts)");
  EXPECT_EQ(r.rows.size(), 3u);
  r = run(**b, "PRAGMA user_version");
  EXPECT_EQ(r.rows.size(), 1u);
  r = run(**b, "SELECT name FROM pragma_table_info('accounts') ORDER BY cid");
  EXPECT_EQ(r.rows.size(), 3u);
  EXPECT_TRUE(res->prepare(std::move(*b), nullptr).ok());
  EXPECT_TRUE(res->abort("reads").ok());
}

TEST_F(SqliteResourceTest, only_one_statement_per_exec) {
  auto res = open_resource();
  expect_refused(*res, {"UPDATE accounts SET balance = 0; DROP TABLE accounts",
                        "SELECT 1; SELECT 2", "", "  -- only a comment"});
  auto b = res->begin("ok");
  ASSERT_TRUE(b.ok());
  run(**b, "UPDATE accounts SET balance = 1 WHERE id = 1; -- done\n ; /* trailing */ ");
}

TEST_F(SqliteResourceTest, writes_the_session_cannot_record_are_refused) {
  db().exec(
      "CREATE TABLE nokey(a, b); INSERT INTO nokey VALUES (1, 2);"
      "CREATE VIEW rich AS SELECT * FROM accounts WHERE balance > 60;"
      "CREATE TRIGGER rich_ins INSTEAD OF INSERT ON rich BEGIN "
      "  INSERT INTO accounts VALUES (new.id, new.owner, new.balance); END;"
      "CREATE TABLE counters(id INTEGER PRIMARY KEY AUTOINCREMENT, n);"
      "INSERT INTO counters(n) VALUES (1);"
      "CREATE TABLE gen(id INTEGER PRIMARY KEY, x, y AS (x * 2));"
      "CREATE TABLE audit_nokey(msg);"
      "CREATE TRIGGER t_audit AFTER DELETE ON accounts BEGIN "
      "  INSERT INTO audit_nokey VALUES ('deleted ' || old.id); END;");
  auto res = open_resource();
  auto b = res->begin("k1");
  ASSERT_TRUE(b.ok());
  std::string why = refused(**b, "INSERT INTO nokey VALUES (3, 4)");
  EXPECT_NE(why.find("no explicit PRIMARY KEY"), std::string::npos) << why;
  b->reset();
  // Also when the write is a trigger's: the authorizer sees trigger bodies.
  b = res->begin("k2");
  ASSERT_TRUE(b.ok());
  why = refused(**b, "DELETE FROM accounts WHERE id = 2");
  EXPECT_NE(why.find("audit_nokey"), std::string::npos) << why;
  b->reset();
  expect_refused(
      *res, {"UPDATE nokey SET a = 0", "DELETE FROM nokey", "INSERT INTO rich VALUES (9, 'x', 1)",
             "INSERT INTO gen(id, x) VALUES (1, 1)", "DELETE FROM sqlite_sequence",
             "DELETE FROM dtx_markers", "INSERT INTO dtx_markers VALUES ('forged', 0)"});
  // Reading such tables is fine.
  auto r = res->begin("read");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(run(**r, "SELECT a, b FROM nokey").rows.size(), 1u);
  EXPECT_EQ(db().scalar("SELECT count(*) FROM nokey"), 1);
}

// Why the refusal above: the session extension records nothing for a table
// without a PRIMARY KEY, and no error says so (A6, reproduced here).
TEST_F(SqliteResourceTest, session_extension_silently_skips_tables_without_a_primary_key) {
  db().exec("CREATE TABLE nokey(a, b)");
  sqlite3* raw = db().get();
  sqlite3_session* session = nullptr;
  ASSERT_EQ(sqlite3session_create(raw, "main", &session), SQLITE_OK);
  ASSERT_EQ(sqlite3session_attach(session, nullptr), SQLITE_OK);
  db().exec(
      "BEGIN; INSERT INTO nokey VALUES (1, 2); UPDATE accounts SET balance = 0 WHERE id = 1;");
  int n = 0;
  void* cs = nullptr;
  ASSERT_EQ(sqlite3session_changeset(session, &n, &cs), SQLITE_OK);
  sqlite3session_delete(session);
  auto changes = decode_changeset(take_sqlite_bytes(cs, n));
  db().exec("ROLLBACK");
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 1u);  // only the accounts row; the nokey insert is gone
  EXPECT_EQ((*changes)[0].table, "accounts");
}

// The session also skips rows with a NULL in a (nullable, non-INTEGER)
// PRIMARY KEY column. That is only visible in the data, so prepare() checks
// that the changeset holds every row the branch changed.
TEST_F(SqliteResourceTest, changeset_must_hold_every_changed_row) {
  db().exec(
      "CREATE TABLE tags(name TEXT PRIMARY KEY, n INTEGER);"
      "INSERT INTO tags VALUES ('a', 1);"
      "CREATE TABLE log(id INTEGER PRIMARY KEY, msg TEXT);"
      "CREATE TRIGGER t_log AFTER UPDATE ON accounts BEGIN "
      "  INSERT INTO log(msg) VALUES ('balance ' || new.balance); END;");
  auto res = open_resource();

  // A NULL key escapes the session: vote no.
  DbError err;
  Status s = run_branch(*res, "null-key", {"INSERT INTO tags VALUES (NULL, 5)"}, &err);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(err.sqlstate, kRefusedByDtx);
  EXPECT_NE(err.message.find("the changeset does not hold that change"), std::string::npos)
      << err.message;
  EXPECT_EQ(db().scalar("SELECT count(*) FROM tags"), 1);
  // So does updating a NULL-key row into a keyed one.
  db().exec("INSERT INTO tags VALUES (NULL, 9)");
  s = run_branch(*res, "null-key-2", {"UPDATE tags SET name = 'b' WHERE name IS NULL"}, &err);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(err.message.find("the changeset does not hold that change"), std::string::npos)
      << err.message;
  // And deleting one.
  s = run_branch(*res, "null-key-3", {"DELETE FROM tags WHERE name IS NULL"}, &err);
  ASSERT_FALSE(s.ok());
  db().exec("DELETE FROM tags WHERE name IS NULL");

  // Net changes are fine: a row updated twice, a row inserted then deleted,
  // a row updated back to what it was, and rows a trigger wrote.
  s = run_branch(
      *res, "net",
      {"UPDATE accounts SET balance = 1 WHERE id = 1",
       "UPDATE accounts SET balance = 2 WHERE id = 1", "INSERT INTO tags VALUES ('tmp', 0)",
       "DELETE FROM tags WHERE name = 'tmp'", "UPDATE tags SET n = 2 WHERE name = 'a'",
       "UPDATE tags SET n = 1 WHERE name = 'a'",
       "INSERT OR REPLACE INTO accounts VALUES (3, 'bob', 5)"},
      &err);
  ASSERT_TRUE(s.ok()) << err.sqlstate << ": " << err.message;
  ASSERT_TRUE(res->commit("net").ok());
  EXPECT_EQ(db().rows("SELECT id, owner, balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"1|'alice'|2", "3|'bob'|5"}));
  EXPECT_EQ(db().scalar("SELECT count(*) FROM log"), 2);
}

TEST_F(SqliteResourceTest, deferred_foreign_key_violation_votes_no) {
  db().exec(
      "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
      "CREATE TABLE child(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id) "
      "DEFERRABLE INITIALLY DEFERRED);");
  auto res = open_resource();
  DbError err;
  Status s = run_branch(*res, "t1", {"INSERT INTO child VALUES (1, 42)"}, &err);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(err.sqlstate, "SQLITE_CONSTRAINT_FOREIGNKEY");
  EXPECT_EQ(db().scalar("SELECT count(*) FROM child"), 0);
}

TEST_F(SqliteResourceTest, reader_does_not_see_a_prepared_branch_until_commit) {
  auto res = open_resource();
  ASSERT_TRUE(run_branch(*res, "t1", {"UPDATE accounts SET balance = 999 WHERE id = 1"}).ok());
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 100);
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers"), 0);
  // A writer elsewhere cannot get in while the branch holds the write lock.
  sqlite3_busy_timeout(db().get(), 50);
  EXPECT_EQ(db().try_exec("UPDATE accounts SET balance = 0 WHERE id = 2") & 0xff, SQLITE_BUSY);
  ASSERT_TRUE(res->commit("t1").ok());
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 999);
}

TEST_F(SqliteResourceTest, commit_and_abort_are_idempotent_and_report_what_the_database_has) {
  auto res = open_resource();
  ASSERT_TRUE(run_branch(*res, "c", {"UPDATE accounts SET balance = 1 WHERE id = 1"}).ok());
  EXPECT_EQ(*res->commit("c"), Outcome::committed);
  EXPECT_EQ(*res->commit("c"), Outcome::committed);
  EXPECT_EQ(*res->abort("c"), Outcome::committed);  // too late: T6, the caller alarms
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 1);

  ASSERT_TRUE(run_branch(*res, "a", {"UPDATE accounts SET balance = 2 WHERE id = 1"}).ok());
  EXPECT_EQ(*res->abort("a"), Outcome::aborted);
  EXPECT_EQ(*res->abort("a"), Outcome::aborted);
  EXPECT_EQ(*res->commit("a"), Outcome::aborted);  // heuristic: the caller alarms
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 1);

  EXPECT_EQ(*res->outcome_of("never-seen"), Outcome::aborted);
  ASSERT_TRUE(run_branch(*res, "held", {"UPDATE accounts SET balance = 3 WHERE id = 1"}).ok());
  EXPECT_EQ(res->outcome_of("held").status().code(), Code::failed_precondition);
  EXPECT_EQ(res->begin("held").status().code(), Code::failed_precondition);
  EXPECT_EQ(*res->commit("held"), Outcome::committed);
}

TEST_F(SqliteResourceTest, a_second_resource_on_the_same_database_is_busy) {
  auto res = open_resource();
  SqliteOptions o = options();
  o.wal_dir = dir_.sub("other-wal");  // even with a WAL of its own
  SqliteResource second(o);
  auto r = second.open();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::busy);
  EXPECT_NE(r.status().message().find("another dtx agent serves this database"), std::string::npos)
      << r.status();
  // The agent WAL is locked too.
  SqliteOptions w = options();
  w.db_path = dir_.sub("another.db");
  SqliteResource third(w);
  EXPECT_EQ(third.open().status().code(), Code::busy);
  // Once the first is gone, the database can be served again.
  res.reset();
  EXPECT_TRUE(second.open().ok());
}

TEST_F(SqliteResourceTest, begin_waits_for_the_write_lock_then_is_busy) {
  auto res = open_resource();
  auto first = res->begin("first");
  ASSERT_TRUE(first.ok());
  auto t0 = std::chrono::steady_clock::now();
  auto second = res->begin("second");
  auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::busy);
  EXPECT_GE(waited, 290ms);
  EXPECT_LT(waited, 3s);
  EXPECT_NE(second.status().message().find("first"), std::string::npos) << second.status();

  // Prepared but undecided still holds it; a decision during the wait lets
  // the waiter in.
  ASSERT_TRUE(res->prepare(std::move(*first), nullptr).ok());
  std::thread decider([&] {
    std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(res->commit("first").ok());
  });
  auto third = res->begin("third");
  decider.join();
  ASSERT_TRUE(third.ok()) << third.status();
  third->reset();  // rolled back: the lock is free at once
  EXPECT_TRUE(res->begin("fourth").ok());
}

TEST_F(SqliteResourceTest, concurrent_branches_take_turns_with_the_write_lock) {
  SqliteOptions o = options();
  o.busy_wait = std::chrono::seconds(20);
  SqliteResource res(o);
  ASSERT_TRUE(res.open().ok());
  constexpr int kThreads = 4, kEach = 15;
  std::atomic<int> committed{0}, aborted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string txid = "w" + std::to_string(t) + "-" + std::to_string(i);
        auto b = res.begin(txid);
        ASSERT_TRUE(b.ok()) << b.status();
        DbError err;
        const int64_t from = 1 + (t + i) % 2, to = 3 - from;
        ASSERT_TRUE(
            (*b)->exec("UPDATE accounts SET balance = balance - 1 WHERE id = $1", {from}, &err)
                .ok());
        ASSERT_TRUE(
            (*b)->exec("UPDATE accounts SET balance = balance + 1 WHERE id = $1", {to}, &err).ok());
        ASSERT_TRUE(res.prepare(std::move(*b), &err).ok()) << err.message;
        if (i % 3 == 0) {
          EXPECT_EQ(*res.abort(txid), Outcome::aborted);
          ++aborted;
        } else {
          EXPECT_EQ(*res.commit(txid), Outcome::committed);
          ++committed;
        }
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(db().scalar("SELECT sum(balance) FROM accounts"), 150);
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers"), committed.load());
  EXPECT_EQ(committed + aborted, kThreads * kEach);
}

TEST_F(SqliteResourceTest, begin_is_busy_while_another_process_writes) {
  auto res = open_resource();
  db().exec("BEGIN IMMEDIATE");
  auto b = res->begin("t1");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Code::busy) << b.status();
  db().exec("ROLLBACK");
  EXPECT_TRUE(res->begin("t1").ok());
}

// The PREPARED record is fsync'd before prepare() votes yes.
TEST_F(SqliteResourceTest, the_yes_vote_waits_for_the_wal_fsync) {
  sim::SimFileSystem fs(7);
  std::mutex mu;
  std::condition_variable cv;
  bool armed = false, in_sync = false, release = false;
  fs.set_before_sync([&](const std::string& path) {
    std::unique_lock lk(mu);
    if (!armed || path.find("0000000000000001.wal") == std::string::npos) return;
    in_sync = true;
    cv.notify_all();
    cv.wait(lk, [&] { return release; });
  });
  SqliteOptions o = options();
  o.wal_dir = "/wal";
  o.wal_fs = &fs;
  SqliteResource res(o);
  ASSERT_TRUE(res.open().ok());
  auto b = res.begin("t1");
  ASSERT_TRUE(b.ok());
  run(**b, "UPDATE accounts SET balance = 0 WHERE id = 1");
  const uint64_t syncs_before = fs.syncs();
  {
    std::lock_guard lk(mu);
    armed = true;
  }
  std::atomic<bool> voted{false};
  Status vote;
  std::thread preparer([&] {
    vote = res.prepare(std::move(*b), nullptr);
    voted = true;
  });
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, 5s, [&] { return in_sync; }));
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(voted.load()) << "prepare() voted before the WAL's fsync returned";
  {
    std::lock_guard lk(mu);
    release = true;
    armed = false;
  }
  cv.notify_all();
  preparer.join();
  EXPECT_TRUE(vote.ok()) << vote;
  EXPECT_GT(fs.syncs(), syncs_before);
  // The durable image holds the PREPARED record.
  auto img = fs.durable_bytes("/wal/0000000000000001.wal");
  std::string needle = "t1";
  EXPECT_NE(std::search(img.begin(), img.end(), needle.begin(), needle.end()), img.end());
  EXPECT_TRUE(res.commit("t1").ok());
}

// A failed fsync of the PREPARED record is final (W5): no yes vote, the
// resource stops.
TEST_F(SqliteResourceTest, a_failed_wal_fsync_votes_no_and_stops_the_resource) {
  sim::SimFileSystem fs(8);
  SqliteOptions o = options();
  o.wal_dir = "/wal";
  o.wal_fs = &fs;
  SqliteResource res(o);
  ASSERT_TRUE(res.open().ok());
  // One whole branch first, and time for the next segment to be made, so
  // the failing fsync is the PREPARED record's.
  ASSERT_TRUE(run_branch(res, "t0", {"UPDATE accounts SET balance = 1 WHERE id = 2"}).ok());
  ASSERT_TRUE(res.commit("t0").ok());
  std::this_thread::sleep_for(200ms);
  auto b = res.begin("t1");
  ASSERT_TRUE(b.ok());
  run(**b, "UPDATE accounts SET balance = 0 WHERE id = 1");
  fs.fail_next_syncs(1);
  DbError err;
  EXPECT_FALSE(res.prepare(std::move(*b), &err).ok());
  EXPECT_EQ(err.sqlstate, kPrepareFailed);
  EXPECT_FALSE(fatals_.empty());
  EXPECT_FALSE(res.healthy());
  EXPECT_EQ(res.begin("t2").status().code(), Code::closed);
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 100);
}

TEST_F(SqliteResourceTest, describe_prepared_shows_redo_and_undo) {
  auto res = open_resource();
  ASSERT_TRUE(run_branch(*res, "t-desc",
                         {"UPDATE accounts SET balance = 70 WHERE id = 1",
                          "INSERT INTO accounts VALUES (3, 'carol', 5)",
                          "DELETE FROM accounts WHERE id = 2"})
                  .ok());
  auto text = describe_prepared(wal_dir(), "t-desc", db_path());
  ASSERT_TRUE(text.ok()) << text.status();
  const std::string& t = *text;
  EXPECT_NE(t.find("txid=t-desc: PREPARED"), std::string::npos) << t;
  EXPECT_NE(t.find("decision: none recorded: in doubt"), std::string::npos) << t;
  EXPECT_NE(t.find("redo (4 change(s)"), std::string::npos) << t;
  EXPECT_NE(t.find("UPDATE accounts WHERE id=1: balance 100 -> 70"), std::string::npos) << t;
  EXPECT_NE(t.find("INSERT INTO accounts: id=3, owner='carol', balance=5"), std::string::npos) << t;
  EXPECT_NE(t.find("DELETE FROM accounts: id=2, owner='bob', balance=50"), std::string::npos) << t;
  EXPECT_NE(t.find("INSERT INTO dtx_markers: txid='t-desc'"), std::string::npos) << t;
  // The undo turns each change around.
  const size_t undo = t.find("undo (4 change(s)");
  ASSERT_NE(undo, std::string::npos) << t;
  EXPECT_NE(t.find("UPDATE accounts WHERE id=1: balance 70 -> 100", undo), std::string::npos) << t;
  EXPECT_NE(t.find("DELETE FROM accounts: id=3, owner='carol', balance=5", undo), std::string::npos)
      << t;
  EXPECT_NE(t.find("INSERT INTO accounts: id=2, owner='bob', balance=50", undo), std::string::npos)
      << t;
  EXPECT_NE(t.find("DELETE FROM dtx_markers: txid='t-desc'", undo), std::string::npos) << t;

  ASSERT_TRUE(res->commit("t-desc").ok());
  res.reset();  // flushes the COMMITTED record, which commit() does not wait for
  // Without a database, columns are numbered; the decision shows.
  auto bare = describe_prepared(wal_dir(), "t-desc");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_NE(bare->find("decision: COMMITTED"), std::string::npos) << *bare;
  EXPECT_NE(bare->find("UPDATE accounts WHERE c0=1: c2 100 -> 70"), std::string::npos) << *bare;
  EXPECT_EQ(describe_prepared(wal_dir(), "nope").status().code(), Code::not_found);
}

// The fence lives in the agent WAL: a FENCE record, read back at open, and
// kept through prefix truncation (copied forward) without pinning the log.
TEST_F(SqliteResourceTest, the_fence_survives_restarts_and_wal_truncation) {
  db().exec("CREATE TABLE blobs(id INTEGER PRIMARY KEY, v TEXT)");
  auto res = open_resource();
  EXPECT_EQ(*res->load_fence(), (txn::BallotId{}));
  ASSERT_TRUE(res->save_fence(txn::BallotId{2, 1}).ok());
  ASSERT_TRUE(res->save_fence(txn::BallotId{1, 7}).ok());
  EXPECT_EQ(*res->load_fence(), (txn::BallotId{2, 1})) << "never lowered";
  // About 20 KiB of redo and undo per branch: 256 KiB segments fill every
  // dozen branches, and each decision lets the log truncate its prefix.
  for (int i = 0; i < 80; ++i) {
    const std::string txid = "big-" + std::to_string(i);
    ASSERT_TRUE(
        run_branch(*res, txid,
                   {"INSERT INTO blobs VALUES (" + std::to_string(i) + ", hex(randomblob(5000)))"})
            .ok());
    ASSERT_EQ(*res->commit(txid), Outcome::committed);
  }
  size_t segments = 0;
  auto names = posix_file_system().list(wal_dir());
  ASSERT_TRUE(names.ok());
  for (const auto& name : *names)
    segments += name.ends_with(".wal");
  EXPECT_LE(segments, 4u) << "the FENCE record must not pin the log's head";
  res.reset();
  res = open_resource();
  EXPECT_EQ(*res->load_fence(), (txn::BallotId{2, 1})) << "read back after truncation";
  ASSERT_TRUE(res->save_fence(txn::BallotId{3, 1}).ok());
  res.reset();
  res = open_resource();
  EXPECT_EQ(*res->load_fence(), (txn::BallotId{3, 1}));
}

// A branch that changed no row ends at once (a read_only vote) and frees
// the write lock; one that changed any row is left to prepare(), even when
// its changes cancel out.
TEST_F(SqliteResourceTest, a_branch_that_wrote_nothing_ends_at_once_and_frees_the_write_lock) {
  auto res = open_resource();
  auto b = res->begin("ro");
  ASSERT_TRUE(b.ok());
  run(**b, "SELECT * FROM accounts");
  run(**b, "UPDATE accounts SET balance = 0 WHERE id = 99");  // no row
  DbError err;
  auto ro = res->end_read_only(*b, &err);
  ASSERT_TRUE(ro.ok()) << ro.status();
  EXPECT_TRUE(*ro);
  EXPECT_EQ(*b, nullptr);
  EXPECT_EQ(db().try_exec("BEGIN IMMEDIATE"), SQLITE_OK) << "the write lock is free";
  db().exec("ROLLBACK");
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers"), 0);
  for (const std::vector<std::string>& statements : std::vector<std::vector<std::string>>{
           {"UPDATE accounts SET balance = balance WHERE id = 1"},
           {"INSERT INTO accounts VALUES (3, 'carol', 1)", "DELETE FROM accounts WHERE id = 3"}}) {
    auto w = res->begin("w");
    ASSERT_TRUE(w.ok());
    for (const auto& sql : statements)
      run(**w, sql);
    auto r = res->end_read_only(*w, &err);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(*r) << statements[0];
    ASSERT_NE(*w, nullptr);
    ASSERT_TRUE(res->prepare(std::move(*w), &err).ok()) << err.message;
    EXPECT_EQ(*res->abort("w"), Outcome::aborted);
  }
  EXPECT_EQ(db().rows("SELECT id, balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"1|100", "2|50"}));
}

TEST(SqliteWalRecords, round_trip_and_reject_garbage) {
  std::vector<uint8_t> redo{1, 2, 3}, undo{4, 5};
  auto p = decode_record(9, 1, encode_prepared("tx", redo, undo, 1234));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->type, RecordType::prepared);
  EXPECT_EQ(p->txid, "tx");
  EXPECT_EQ(p->redo, redo);
  EXPECT_EQ(p->undo, undo);
  EXPECT_EQ(p->prepared_at_ms, 1234);
  auto c = decode_record(10, 2, encode_decided("tx"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->type, RecordType::committed);
  auto r = decode_record(11, 4, encode_resolved("tx", Outcome::committed));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, Outcome::committed);
  auto f = decode_record(12, 5, encode_fence(txn::BallotId{7, 3}));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->type, RecordType::fence);
  EXPECT_EQ(f->ballot, (txn::BallotId{7, 3}));
  EXPECT_TRUE(f->txid.empty());
  auto bytes = encode_prepared("tx", redo, undo, 1);
  bytes.pop_back();
  EXPECT_EQ(decode_record(1, 1, bytes).status().code(), Code::corruption);
  auto extra = encode_decided("tx");
  extra.push_back(0);
  EXPECT_EQ(decode_record(1, 3, extra).status().code(), Code::corruption);
  EXPECT_EQ(decode_record(1, 99, encode_decided("tx")).status().code(), Code::corruption);
}

}  // namespace
}  // namespace dtx::participant::sqlite::testing
