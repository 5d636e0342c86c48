// Goal: PgResource keeps CORRECTNESS.md A1-A4 and A7 against a real
// PostgreSQL (DTX_TEST_PG_URL, started by scripts/test or scripts/pg-local):
// branches prepare, commit and abort with their data seen from another
// connection; SQL errors, a failed transaction block and a killed backend
// vote no; reconciliation lists exactly this agent's prepared branches; one
// agent per name and database.
//
// Tests run in parallel with other test binaries on the same database:
// every test uses its own table, cluster id and agent name, and removes
// what it left.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <pqxx/pqxx>
#include <thread>

#include "participant/pg/pg_resource.h"
#include "participant/pg/pg_session.h"
#include "participant/pg/pg_sql.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace dtx::participant {
namespace {

using namespace std::chrono_literals;
using pg::PgSession;

// "committed", "aborted", or the error: comparable without dereferencing a
// failed Result.
std::string said(const Result<Outcome>& r) {
  return r.ok() ? outcome_name(*r) : r.status().describe();
}

// Allocations made while one exists are not reported as leaks: for
// reproductions that run plain libpqxx 6.4 on a dead connection, which
// leaks a libpq result each time (see PgSession::run).
struct LeaksIgnored {
#if defined(__SANITIZE_ADDRESS__)
  LeaksIgnored() {
    __lsan_disable();
  }
  ~LeaksIgnored() {
    __lsan_enable();
  }
#endif
};

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The same server, another database.
std::string with_database(const std::string& url, const std::string& db) {
  const size_t slash = url.rfind('/');
  const size_t query = url.find('?', slash);
  return url.substr(0, slash + 1) + db + (query == std::string::npos ? "" : url.substr(query));
}

class PgResourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("DTX_TEST_PG_URL");
    if (url == nullptr || *url == '\0') {
      FAIL() << "DTX_TEST_PG_URL is not set. Run scripts/test, or start the test PostgreSQL with "
                "eval \"export $(scripts/pg-local start)\" and run the tests again.";
    }
    url_ = url;
    static int n = 0;
    tag_ = fmt::format("{}x{}", ::getpid(), n++);
    cluster_ = "test-" + tag_;
    agent_ = "a" + tag_;
    table_ = "dtx_pgtest_" + tag_;
    admin_ = std::make_unique<pqxx::connection>(url_);
    admin("CREATE TABLE " + table_ + " (id int PRIMARY KEY, v text)");
  }

  void TearDown() override {
    if (!admin_) return;
    // Whatever this test left prepared (its own cluster's gids only), then
    // its table and markers.
    for (const std::string& prefix :
         {"dtx:" + cluster_ + ":", "dtx:" + cluster_ + "-other:", "not-dtx-" + tag_}) {
      for (const std::string& gid : prepared_gids(prefix)) {
        admin("ROLLBACK PREPARED " + admin_->quote(gid));
      }
    }
    admin("DROP TABLE IF EXISTS " + table_);
    admin("DELETE FROM dtx_markers WHERE cluster = " + admin_->quote(cluster_));
    admin("DELETE FROM dtx_fence WHERE cluster = " + admin_->quote(cluster_));
  }

  pqxx::result admin(const std::string& sql) {
    pqxx::nontransaction tx(*admin_);
    return tx.exec(sql);
  }

  std::vector<std::string> prepared_gids(const std::string& prefix) {
    std::vector<std::string> gids;
    for (const auto& row : admin("SELECT gid FROM pg_prepared_xacts")) {
      std::string gid = row[0].c_str();
      if (gid.starts_with(prefix)) gids.push_back(gid);
    }
    return gids;
  }

  bool is_prepared(const std::string& txid) {
    return !prepared_gids(make_gid(cluster_, txid, agent_)).empty();
  }

  int64_t rows(const std::string& where = "true") {
    return admin("SELECT count(*) FROM " + table_ + " WHERE " + where)[0][0].as<int64_t>();
  }

  bool marker(const std::string& txid) {
    return admin(fmt::format("SELECT count(*) FROM dtx_markers WHERE cluster = {} AND agent = {} "
                             "AND txid = {}",
                             admin_->quote(cluster_), admin_->quote(agent_),
                             admin_->quote(txid)))[0][0]
               .as<int64_t>() == 1;
  }

  PgOptions options(size_t pool = 2) {
    PgOptions o;
    o.url = url_;
    o.cluster_id = cluster_;
    o.agent_name = agent_;
    o.pool_size = pool;
    o.begin_wait = 1s;
    return o;
  }

  std::unique_ptr<PgResource> open(PgOptions o, std::vector<std::string>* txids = nullptr) {
    auto r = std::make_unique<PgResource>(std::move(o));
    auto listed = r->open();
    EXPECT_TRUE(listed.ok()) << listed.status().describe();
    if (txids && listed.ok()) *txids = *listed;
    return r;
  }

  std::unique_ptr<Branch> begin(PgResource& r, const std::string& txid) {
    auto b = r.begin(txid);
    EXPECT_TRUE(b.ok()) << b.status().describe();
    return b.ok() ? std::move(*b) : nullptr;
  }

  Status insert(Branch& b, int64_t id, const std::string& v) {
    DbError err;
    auto r = b.exec("INSERT INTO " + table_ + " (id, v) VALUES ($1, $2)", {id, v}, &err);
    return r.ok() ? ok_status() : r.status();
  }

  // A branch of `txid` that inserted (id, v) and voted yes.
  void prepare_row(PgResource& r, const std::string& txid, int64_t id) {
    auto b = begin(r, txid);
    ASSERT_TRUE(b);
    ASSERT_TRUE(insert(*b, id, txid).ok());
    DbError err;
    Status vote = r.prepare(std::move(b), &err);
    ASSERT_TRUE(vote.ok()) << vote.describe() << " " << err.sqlstate;
  }

  // pg_terminate_backend(pid), then wait until the backend is gone.
  void kill_backend(int pid) {
    admin(fmt::format("SELECT pg_terminate_backend({})", pid));
    for (int i = 0; i < 100; ++i) {
      if (admin(fmt::format("SELECT count(*) FROM pg_stat_activity WHERE pid = {}", pid))[0][0]
              .as<int64_t>() == 0) {
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "backend " << pid << " did not go away";
  }

  int branch_pid(Branch& b) {
    auto r = b.exec("SELECT pg_backend_pid()", {}, nullptr);
    EXPECT_TRUE(r.ok());
    return r.ok() ? static_cast<int>(std::get<int64_t>(r->rows[0][0])) : 0;
  }

  std::string url_, tag_, cluster_, agent_, table_;
  std::unique_ptr<pqxx::connection> admin_;
};

TEST_F(PgResourceTest, prepared_writes_are_invisible_until_commit) {
  auto r = open(options());
  auto b = begin(*r, "t1");
  ASSERT_TRUE(insert(*b, 1, "one").ok());
  ASSERT_TRUE(insert(*b, 2, "two").ok());
  DbError err;
  ASSERT_TRUE(r->prepare(std::move(b), &err).ok()) << err.message;

  EXPECT_TRUE(is_prepared("t1"));
  EXPECT_EQ(r->prepared(), std::vector<std::string>{"t1"});
  EXPECT_EQ(rows(), 0) << "a reader saw a prepared branch's writes";

  auto out = r->commit("t1");
  ASSERT_TRUE(out.ok()) << out.status().describe();
  EXPECT_EQ(*out, Outcome::committed);
  EXPECT_EQ(rows(), 2);
  EXPECT_EQ(rows("id = 1 AND v = 'one'"), 1);
  EXPECT_TRUE(marker("t1"));
  EXPECT_FALSE(is_prepared("t1"));
  EXPECT_TRUE(r->prepared().empty());
}

TEST_F(PgResourceTest, aborted_branch_leaves_nothing) {
  auto r = open(options());
  prepare_row(*r, "t1", 1);
  auto out = r->abort("t1");
  ASSERT_TRUE(out.ok()) << out.status().describe();
  EXPECT_EQ(*out, Outcome::aborted);
  EXPECT_EQ(rows(), 0);
  EXPECT_FALSE(marker("t1"));
  EXPECT_FALSE(is_prepared("t1"));
  EXPECT_TRUE(r->prepared().empty());
}

TEST_F(PgResourceTest, rows_are_typed_by_column_type_and_counted) {
  auto r = open(options());
  auto b = begin(*r, "t1");
  DbError err;
  auto typed = b->exec(
      "SELECT true AS b, 2::int2 AS i2, 4::int4 AS i4, 9000000000::int8 AS i8, 1.5::float4 AS f4, "
      "0.1::float8 AS f8, 'NaN'::float8 AS nan, 12345678901234567890.000000001::numeric AS num, "
      "'hé'::text AS t, NULL::int AS n, '2024-02-29'::date AS d",
      {}, &err);
  ASSERT_TRUE(typed.ok()) << typed.status().describe();
  EXPECT_EQ(typed->columns, (std::vector<std::string>{"b", "i2", "i4", "i8", "f4", "f8", "nan",
                                                      "num", "t", "n", "d"}));
  ASSERT_EQ(typed->rows.size(), 1u);
  const auto& v = typed->rows[0];
  EXPECT_EQ(v[0], SqlValue(true));
  EXPECT_EQ(v[1], SqlValue(int64_t{2}));
  EXPECT_EQ(v[2], SqlValue(int64_t{4}));
  EXPECT_EQ(v[3], SqlValue(int64_t{9000000000}));
  EXPECT_EQ(v[4], SqlValue(1.5));
  EXPECT_EQ(v[5], SqlValue(0.1));
  ASSERT_TRUE(std::holds_alternative<double>(v[6]));
  EXPECT_TRUE(std::isnan(std::get<double>(v[6])));
  EXPECT_EQ(v[7], SqlValue(std::string("12345678901234567890.000000001")));
  EXPECT_EQ(v[8], SqlValue(std::string("hé")));
  EXPECT_EQ(v[9], SqlValue(std::monostate{}));
  EXPECT_EQ(v[10], SqlValue(std::string("2024-02-29")));

  auto ins =
      b->exec("INSERT INTO " + table_ + " SELECT g, 'x' FROM generate_series(1, 3) g", {}, &err);
  ASSERT_TRUE(ins.ok()) << ins.status().describe();
  EXPECT_EQ(ins->rows_affected, 3);
  EXPECT_TRUE(ins->rows.empty());
  auto upd = b->exec("UPDATE " + table_ + " SET v = 'y' WHERE id >= $1", {int64_t{2}}, &err);
  ASSERT_TRUE(upd.ok());
  EXPECT_EQ(upd->rows_affected, 2);
  auto sel = b->exec("SELECT id, v FROM " + table_ + " ORDER BY id", {}, &err);
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(sel->rows_affected, 3);
  ASSERT_EQ(sel->rows.size(), 3u);
  EXPECT_EQ(sel->rows[2][1], SqlValue(std::string("y")));
  b->rollback();
  EXPECT_EQ(rows(), 0);
}

TEST_F(PgResourceTest, parameters_are_bound_and_stored_verbatim) {
  auto r = open(options());
  auto b = begin(*r, "t1");
  const std::string nasty = "O'Brien\"; DROP TABLE " + table_ + "; -- $1 \\ é";
  ASSERT_TRUE(insert(*b, 1, nasty).ok());
  DbError err;
  auto typed = b->exec("SELECT $1::bool, $2::int8, $3::float8, $4::text IS NULL, $5::float8",
                       {true, int64_t{-42}, 0.1, std::monostate{}, -1e300}, &err);
  ASSERT_TRUE(typed.ok()) << typed.status().describe();
  EXPECT_EQ(typed->rows[0][0], SqlValue(true));
  EXPECT_EQ(typed->rows[0][1], SqlValue(int64_t{-42}));
  EXPECT_EQ(typed->rows[0][2], SqlValue(0.1));
  EXPECT_EQ(typed->rows[0][3], SqlValue(true));
  EXPECT_EQ(typed->rows[0][4], SqlValue(-1e300));
  ASSERT_TRUE(r->prepare(std::move(b), &err).ok()) << err.message;
  ASSERT_TRUE(r->commit("t1").ok());
  auto stored = admin("SELECT v FROM " + table_ + " WHERE id = 1");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(std::string(stored[0][0].c_str()), nasty);
}

TEST_F(PgResourceTest, text_with_a_nul_byte_is_refused_and_dooms_the_branch) {
  auto r = open(options());
  auto b = begin(*r, "t1");
  DbError err;
  auto res = b->exec("SELECT $1::text", {std::string("a\0b", 3)}, &err);
  EXPECT_EQ(res.status().code(), Code::invalid_argument);
  EXPECT_EQ(err.sqlstate, kRefusedByDtx);
  EXPECT_FALSE(r->prepare(std::move(b), &err).ok());
}

TEST_F(PgResourceTest, unique_violation_votes_no_with_its_sqlstate) {
  admin("INSERT INTO " + table_ + " VALUES (1, 'there')");
  auto r = open(options());
  auto b = begin(*r, "t1");
  ASSERT_TRUE(insert(*b, 2, "new").ok());
  DbError err;
  auto dup = b->exec("INSERT INTO " + table_ + " VALUES ($1, 'dup')", {int64_t{1}}, &err);
  EXPECT_EQ(dup.status().code(), Code::invalid_argument);
  EXPECT_EQ(err.sqlstate, "23505");
  DbError vote_err;
  Status vote = r->prepare(std::move(b), &vote_err);
  EXPECT_FALSE(vote.ok());
  EXPECT_EQ(vote_err.sqlstate, "23505");
  EXPECT_EQ(rows("id = 2"), 0);
  EXPECT_FALSE(is_prepared("t1"));
  EXPECT_FALSE(marker("t1"));
  EXPECT_EQ(said(r->abort("t1")), "aborted");  // the coordinator's abort after a no vote
}

TEST_F(PgResourceTest, a_doomed_branch_fails_later_statements_at_once_and_votes_no) {
  auto r = open(options());
  auto b = begin(*r, "t1");
  ASSERT_TRUE(insert(*b, 1, "x").ok());
  DbError err;
  EXPECT_FALSE(b->exec("SELECT 1/0", {}, &err).ok());
  EXPECT_EQ(err.sqlstate, "22012");
  DbError later;
  auto again = b->exec("SELECT 1", {}, &later);
  EXPECT_EQ(again.status().code(), Code::failed_precondition);
  EXPECT_EQ(later.sqlstate, "22012") << "a doomed branch reports the error that doomed it";
  DbError vote_err;
  EXPECT_FALSE(r->prepare(std::move(b), &vote_err).ok());
  EXPECT_EQ(vote_err.sqlstate, "22012");
  EXPECT_EQ(rows(), 0);
  EXPECT_FALSE(is_prepared("t1"));
}

// A2, reproduced on the session PgResource prepares with: PREPARE
// TRANSACTION in a failed transaction block, or outside one, answers the tag
// ROLLBACK and no error; the session must read that as a no.
TEST_F(PgResourceTest, prepare_answered_with_rollback_is_a_no_vote) {
  auto s = PgSession::connect({url_, 30s, "dtx-test"});
  ASSERT_TRUE(s.ok()) << s.status().describe();
  const std::string gid = make_gid(cluster_, "t1", agent_);
  ASSERT_TRUE((*s)->exec_script("BEGIN").ok());
  ASSERT_TRUE((*s)->exec("INSERT INTO " + table_ + " VALUES (1, 'x')").ok());
  EXPECT_FALSE((*s)->exec("SELECT 1/0").ok());
  DbError err;
  Status in_failed_block = (*s)->prepare_transaction(gid, &err);
  EXPECT_FALSE(in_failed_block.ok());
  EXPECT_EQ(err.sqlstate, kPrepareFailed);
  EXPECT_NE(err.message.find("'ROLLBACK'"), std::string::npos) << err.message;
  EXPECT_FALSE(is_prepared("t1"));

  Status outside_a_block = (*s)->prepare_transaction(gid, &err);
  EXPECT_FALSE(outside_a_block.ok());
  EXPECT_EQ(err.sqlstate, kPrepareFailed);
  EXPECT_FALSE(is_prepared("t1"));
  EXPECT_EQ(rows(), 0);
  EXPECT_FALSE((*s)->broken());

  // And the yes path of the same call.
  ASSERT_TRUE((*s)->exec_script("BEGIN").ok());
  EXPECT_TRUE((*s)->prepare_transaction(gid, &err).ok()) << err.message;
  EXPECT_TRUE(is_prepared("t1"));
}

TEST_F(PgResourceTest, error_raised_by_prepare_itself_votes_no) {
  const std::string deferred = table_ + "_d";
  admin("CREATE TABLE " + deferred + " (id int, CONSTRAINT " + deferred +
        "_u UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)");
  admin("INSERT INTO " + deferred + " VALUES (1)");
  auto r = open(options());
  auto b = begin(*r, "t1");
  DbError err;
  ASSERT_TRUE(b->exec("INSERT INTO " + deferred + " VALUES (1)", {}, &err).ok())
      << "the check is deferred to PREPARE";
  Status vote = r->prepare(std::move(b), &err);
  EXPECT_FALSE(vote.ok());
  EXPECT_EQ(err.sqlstate, "23505");
  EXPECT_FALSE(is_prepared("t1"));
  EXPECT_FALSE(marker("t1"));
  EXPECT_EQ(admin("SELECT count(*) FROM " + deferred)[0][0].as<int64_t>(), 1);
  // The session went back to the pool in a usable state.
  prepare_row(*r, "t2", 7);
  prepare_row(*r, "t3", 8);
  EXPECT_EQ(said(r->commit("t2")), "committed");
  EXPECT_EQ(said(r->commit("t3")), "committed");
  EXPECT_EQ(rows(), 2);
  admin("DROP TABLE " + deferred);
}

TEST_F(PgResourceTest, killed_backend_between_exec_and_prepare_votes_no) {
  auto r = open(options(2));
  auto b = begin(*r, "t1");
  ASSERT_TRUE(insert(*b, 1, "x").ok());
  kill_backend(branch_pid(*b));
  DbError err;
  Status vote = r->prepare(std::move(b), &err);
  EXPECT_FALSE(vote.ok());
  EXPECT_EQ(vote.code(), Code::unavailable);
  EXPECT_EQ(err.sqlstate, kSessionLost);
  EXPECT_EQ(rows(), 0) << "nothing may be autocommitted";
  EXPECT_FALSE(is_prepared("t1"));
  EXPECT_FALSE(marker("t1"));

  // A statement on a killed session fails as lost, and dooms the branch.
  auto b2 = begin(*r, "t2");
  kill_backend(branch_pid(*b2));
  for (int i = 0; i < 3; ++i) {
    DbError e;
    EXPECT_FALSE(b2->exec("INSERT INTO " + table_ + " VALUES (2, 'x')", {}, &e).ok());
    EXPECT_EQ(e.sqlstate, kSessionLost);
  }
  EXPECT_FALSE(r->prepare(std::move(b2), &err).ok());
  EXPECT_EQ(rows(), 0);

  // Broken sessions were replaced: the pool still serves every slot.
  for (int i = 0; i < 4; ++i)
    prepare_row(*r, fmt::format("n{}", i), 10 + i);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(said(r->commit(fmt::format("n{}", i))), "committed");
  EXPECT_EQ(rows(), 4);
}

// BEGIN goes out with a branch's first statement, so begin() sends nothing:
// a pooled session whose backend was terminated while idle must be found
// (by the server's FATAL notice, read without a round trip) and replaced,
// not handed to a branch that would then fail its first statement.
TEST_F(PgResourceTest, idle_sessions_whose_backends_died_are_replaced_at_begin) {
  auto r = open(options(2));
  std::vector<int> pids;
  for (int i = 0; i < 2; ++i) {
    auto b = begin(*r, fmt::format("warm{}", i));
    pids.push_back(branch_pid(*b));
    b->rollback();
  }
  for (int pid : pids)
    kill_backend(pid);
  for (int i = 0; i < 2; ++i)
    prepare_row(*r, fmt::format("after{}", i), 20 + i);
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(said(r->commit(fmt::format("after{}", i))), "committed");
  EXPECT_EQ(rows(), 2) << "both branches ran on fresh sessions";
}

// A1, reproduced: libpqxx 6.4 left to itself re-opens a broken connection
// and runs the next statement in autocommit on a new backend. A PgSession
// never does.
TEST_F(PgResourceTest, libpqxx_reconnects_silently_unless_inhibited) {
  {
    [[maybe_unused]] LeaksIgnored libpqxx_leaks_on_dead_connections;
    pqxx::connection plain(url_);
    const int pid = plain.backendpid();
    {
      pqxx::nontransaction tx(plain);
      tx.exec("BEGIN");
      tx.exec("INSERT INTO " + table_ + " VALUES (1, 'in the transaction')");
    }
    kill_backend(pid);
    int new_pid = 0;
    for (int i = 0; i < 5 && new_pid == 0; ++i) {
      try {
        pqxx::nontransaction tx(plain);
        new_pid = tx.exec("INSERT INTO " + table_ +
                          " VALUES (2, 'after the kill') RETURNING pg_backend_pid()")[0][0]
                      .as<int>();
      } catch (const pqxx::broken_connection&) {
      }
    }
    EXPECT_NE(new_pid, 0) << "libpqxx no longer reconnects by itself";
    EXPECT_NE(new_pid, pid);
    EXPECT_EQ(rows("id = 2"), 1) << "the statement after the reconnect autocommitted";
    EXPECT_EQ(rows("id = 1"), 0);
  }
  auto s = PgSession::connect({url_, 30s, "dtx-test"});
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->exec_script("BEGIN").ok());
  ASSERT_TRUE((*s)->exec("INSERT INTO " + table_ + " VALUES (3, 'x')").ok());
  kill_backend((*s)->backend_pid());
  EXPECT_TRUE((*s)->broken_now()) << "the FATAL notice or the closed socket went unseen";
  for (int i = 0; i < 5; ++i) {
    DbError err;
    auto r = (*s)->exec("INSERT INTO " + table_ + " VALUES (4, 'x')", {}, &err);
    EXPECT_EQ(r.status().code(), Code::unavailable);
    EXPECT_EQ(err.sqlstate, kSessionLost);
  }
  EXPECT_TRUE((*s)->broken());
  EXPECT_EQ(rows("id >= 3"), 0);
}

TEST_F(PgResourceTest, statements_that_end_the_transaction_are_refused) {
  auto r = open(options());
  for (const char* sql : {"COMMIT", "  /* why */ commit;", "ROLLBACK", "PREPARE TRANSACTION 'x'",
                          "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ";END"}) {
    auto b = begin(*r, "t1");
    ASSERT_TRUE(insert(*b, 1, "x").ok());
    DbError err;
    auto res = b->exec(sql, {}, &err);
    EXPECT_EQ(res.status().code(), Code::invalid_argument) << sql;
    EXPECT_EQ(err.sqlstate, kRefusedByDtx) << sql;
    DbError vote_err;
    EXPECT_FALSE(r->prepare(std::move(b), &vote_err).ok()) << sql;
    EXPECT_EQ(rows(), 0) << sql;
  }
  // What the guard does not see, the extended protocol stops: one
  // statement per exec.
  auto b = begin(*r, "t2");
  ASSERT_TRUE(insert(*b, 1, "x").ok());
  DbError err;
  EXPECT_FALSE(b->exec("SELECT 1; COMMIT", {}, &err).ok());
  EXPECT_EQ(err.sqlstate, "42601");
  b.reset();
  EXPECT_EQ(rows(), 0);
  // Transaction-scoped settings are fine.
  auto ok = begin(*r, "t3");
  EXPECT_TRUE(ok->exec("SET LOCAL lock_timeout = '1s'", {}, &err).ok()) << err.message;
  EXPECT_TRUE(ok->exec("SET CONSTRAINTS ALL IMMEDIATE", {}, &err).ok()) << err.message;
  EXPECT_TRUE(r->prepare(std::move(ok), &err).ok()) << err.message;
  EXPECT_EQ(said(r->abort("t3")), "aborted");
}

TEST(PgStatementGuard, refuses_transaction_control_and_session_changes) {
  for (const char* sql : {"COMMIT",
                          " commit;",
                          "/* x /* nested */ still */ COMMIT",
                          "-- c\nROLLBACK",
                          ";; END",
                          "BEGIN",
                          "start transaction",
                          "ABORT",
                          "PREPARE TRANSACTION 'x'",
                          "PREPARE q AS SELECT 1",
                          "ROLLBACK TO SAVEPOINT a",
                          "SAVEPOINT a",
                          "RELEASE SAVEPOINT a",
                          "SET TRANSACTION READ ONLY",
                          "SET LOCAL TRANSACTION READ ONLY",
                          "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                          "SET statement_timeout = 0",
                          "set session statement_timeout = 0",
                          "RESET ALL",
                          "DISCARD ALL",
                          "COPY t FROM STDIN",
                          "LISTEN x",
                          "LOAD 'x'",
                          "",
                          "  -- only a comment",
                          "/* unterminated",
                          "DELETE FROM dtx_markers",
                          "INSERT INTO public.DTX_MARKERS VALUES ('c', 'a', 't')",
                          "WITH d AS (DELETE FROM \"dtx_markers\" RETURNING 1) SELECT 1",
                          "UPDATE dtx_fence SET round = 0",
                          "DELETE FROM public.DTX_FENCE"}) {
    EXPECT_TRUE(pg::statement_refusal(sql).has_value()) << "let through: " << sql;
  }
  for (const char* sql : {"SELECT 1", "select * from t for share", "SET LOCAL lock_timeout = '1s'",
                          "set constraints all immediate", "(SELECT 1) UNION (SELECT 2)",
                          "WITH x AS (SELECT 1) SELECT * FROM x", "INSERT INTO t VALUES (1)",
                          "UPDATE t SET v = 1", "DELETE FROM t", "/* c */ SELECT 'COMMIT'",
                          "COMMITTED", "LOCK TABLE t", "SELECT * FROM my_dtx_markers",
                          "SELECT * FROM dtx_markers_archive", "SELECT * FROM dtx_fences"}) {
    EXPECT_FALSE(pg::statement_refusal(sql).has_value()) << "refused: " << sql;
  }
  EXPECT_EQ(pg::leading_words("/* a */ -- b\n set Local x", 3),
            (std::vector<std::string>{"SET", "LOCAL", "X"}));
}

TEST(PgNames, connection_strings_get_tcp_liveness_settings_they_do_not_name) {
  const std::string all =
      "keepalives=1&keepalives_idle=10&keepalives_interval=5&keepalives_count=3&"
      "tcp_user_timeout=30000";
  EXPECT_EQ(pg::with_liveness_defaults("postgresql://u@h:5432/db"),
            "postgresql://u@h:5432/db?" + all);
  EXPECT_EQ(pg::with_liveness_defaults("postgresql://h/db?sslmode=disable"),
            "postgresql://h/db?sslmode=disable&" + all);
  EXPECT_EQ(pg::with_liveness_defaults("postgresql://h/db?tcp_user_timeout=5000"),
            "postgresql://h/db?tcp_user_timeout=5000&keepalives=1&keepalives_idle=10&"
            "keepalives_interval=5&keepalives_count=3");
  EXPECT_EQ(pg::with_liveness_defaults("host=h dbname=db keepalives_idle=60"),
            "host=h dbname=db keepalives_idle=60 keepalives=1 keepalives_interval=5 "
            "keepalives_count=3 tcp_user_timeout=30000");
}

TEST(PgNames, gids_are_checked_and_parsed_exactly) {
  EXPECT_TRUE(pg::check_name("txid", "1.2-3_x").ok());
  EXPECT_FALSE(pg::check_name("txid", "").ok());
  EXPECT_FALSE(pg::check_name("txid", "a:b").ok());
  EXPECT_FALSE(pg::check_name("txid", "a'b").ok());
  EXPECT_TRUE(pg::check_name("txid", std::string(txn::kTxidTextMax, 'a')).ok());
  EXPECT_FALSE(pg::check_name("txid", std::string(txn::kTxidTextMax + 1, 'a')).ok());
  EXPECT_FALSE(pg::check_name("cluster id", std::string(txn::kClusterIdMax + 1, 'c')).ok());
  EXPECT_EQ(pg::txid_of_gid("dtx:c1:t.1:bank", "c1", "bank"), "t.1");
  EXPECT_EQ(pg::txid_of_gid("dtx:c1:t.1:bank", "c1", "ank"), std::nullopt);
  EXPECT_EQ(pg::txid_of_gid("dtx:c1:t.1:bank", "c", "bank"), std::nullopt);
  EXPECT_EQ(pg::txid_of_gid("dtx:c1:a:b:bank", "c1", "bank"), std::nullopt);
  EXPECT_EQ(pg::txid_of_gid("dtx:c1::bank", "c1", "bank"), std::nullopt);
  EXPECT_NE(pg::advisory_lock_key("c", "ab"), pg::advisory_lock_key("ca", "b"));
  EXPECT_EQ(pg::advisory_lock_key("c", "a"), pg::advisory_lock_key("c", "a"));
}

TEST_F(PgResourceTest, commit_and_abort_are_idempotent) {
  auto r = open(options());
  prepare_row(*r, "t1", 1);
  prepare_row(*r, "t2", 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(said(r->commit("t1")), "committed");
    EXPECT_EQ(said(r->abort("t2")), "aborted");
  }
  EXPECT_EQ(rows("id = 1"), 1);
  EXPECT_EQ(rows("id = 2"), 0);
}

TEST_F(PgResourceTest, decisions_made_by_someone_else_are_reported_as_they_are) {
  auto r = open(options());
  prepare_row(*r, "t1", 1);
  prepare_row(*r, "t2", 2);
  admin("ROLLBACK PREPARED " + admin_->quote(make_gid(cluster_, "t1", agent_)));
  admin("COMMIT PREPARED " + admin_->quote(make_gid(cluster_, "t2", agent_)));

  EXPECT_EQ(said(r->commit("t1")), "aborted") << "a heuristic abort must be reported, not hidden";
  EXPECT_EQ(said(r->abort("t2")), "committed") << "a heuristic commit must be reported, not hidden";
  EXPECT_TRUE(r->prepared().empty());
  EXPECT_EQ(rows("id = 1"), 0);
  EXPECT_EQ(rows("id = 2"), 1);
}

TEST_F(PgResourceTest, outcome_of_follows_the_marker) {
  auto r = open(options());
  prepare_row(*r, "t1", 1);
  prepare_row(*r, "t2", 2);
  prepare_row(*r, "t4", 4);
  ASSERT_TRUE(r->commit("t1").ok());
  ASSERT_TRUE(r->abort("t2").ok());
  EXPECT_EQ(said(r->outcome_of("t1")), "committed");
  EXPECT_EQ(said(r->outcome_of("t2")), "aborted");
  EXPECT_EQ(said(r->outcome_of("t3")), "aborted") << "never seen here";
  EXPECT_EQ(r->outcome_of("t4").status().code(), Code::failed_precondition) << "still prepared";
  EXPECT_EQ(r->outcome_of("bad:txid").status().code(), Code::invalid_argument);
}

TEST_F(PgResourceTest, open_lists_branches_a_crashed_instance_left_prepared) {
  auto first = open(options());
  prepare_row(*first, "t1", 1);
  prepare_row(*first, "t2", 2);
  auto active = begin(*first, "t3");  // never prepared: not the next instance's business
  ASSERT_TRUE(insert(*active, 3, "x").ok());
  first.reset();  // the "crash": the resource goes without deciding anything
  std::vector<std::string> txids;
  auto second = open(options(), &txids);
  active.reset();
  EXPECT_EQ(sorted(txids), (std::vector<std::string>{"t1", "t2"}));
  EXPECT_EQ(sorted(second->prepared()), (std::vector<std::string>{"t1", "t2"}));
  EXPECT_EQ(rows(), 0);
  EXPECT_EQ(said(second->commit("t1")), "committed");
  EXPECT_EQ(said(second->abort("t2")), "aborted");
  EXPECT_EQ(rows("id = 1"), 1);
  EXPECT_EQ(rows("id = 2"), 0);
  EXPECT_TRUE(second->prepared().empty());
}

TEST_F(PgResourceTest, prepared_transactions_of_others_are_neither_listed_nor_touched) {
  const std::string other_db_url = with_database(url_, "postgres");
  const std::vector<std::pair<std::string, std::string>> foreign = {
      {url_, make_gid(cluster_ + "-other", "x1", agent_)},  // another cluster
      {url_, make_gid(cluster_, "x2", agent_ + "-other")},  // another agent
      {url_, make_gid(cluster_, "x3", "z" + agent_)},       // an agent whose name ends like ours
      {url_, "not-dtx-" + tag_},                            // not dtx's
      {other_db_url, make_gid(cluster_, "x4", agent_)},     // ours, in another database
  };
  for (const auto& [url, gid] : foreign) {
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    tx.exec("BEGIN");
    tx.exec("PREPARE TRANSACTION " + c.quote(gid));
  }
  auto still_there = [&](const std::string& url, const std::string& gid) {
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    return tx.exec("SELECT count(*) FROM pg_prepared_xacts WHERE gid = " + c.quote(gid) +
                   " AND database = current_database()")[0][0]
               .as<int64_t>() == 1;
  };
  {
    std::vector<std::string> txids;
    auto r = open(options(), &txids);
    EXPECT_TRUE(txids.empty());
    prepare_row(*r, "x2", 1);  // same txid as another agent's: a gid of its own
    EXPECT_EQ(said(r->commit("x2")), "committed");
    EXPECT_EQ(said(r->abort("x1")), "aborted");  // not ours: nothing to do here
    EXPECT_EQ(said(r->abort("x4")), "aborted");
    for (const auto& [url, gid] : foreign)
      EXPECT_TRUE(still_there(url, gid)) << gid;
  }
  for (const auto& [url, gid] : foreign) {
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    tx.exec("ROLLBACK PREPARED " + c.quote(gid));
  }
}

TEST_F(PgResourceTest, one_agent_of_a_name_per_database) {
  auto first = open(options());
  PgResource second(options());
  auto refused = second.open();
  EXPECT_EQ(refused.status().code(), Code::busy);
  EXPECT_NE(refused.status().message().find("already serves"), std::string::npos)
      << refused.status().message();

  PgOptions other = options();
  other.agent_name = agent_ + "-b";
  auto different_name = open(other);

  first.reset();
  PgResource third(options());
  auto reopened = third.open();
  EXPECT_TRUE(reopened.ok()) << reopened.status().describe();
}

TEST_F(PgResourceTest, pool_larger_than_max_prepared_transactions_is_refused) {
  PgResource r(options(250));
  auto refused = r.open();
  EXPECT_EQ(refused.status().code(), Code::failed_precondition);
  EXPECT_NE(refused.status().message().find("set max_prepared_transactions to at least 250"),
            std::string::npos)
      << refused.status().message();
  // The refused instance left no lock behind.
  auto fine = open(options(2));
}

TEST_F(PgResourceTest, begin_waits_for_a_free_session_then_answers_busy) {
  PgOptions o = options(1);
  o.begin_wait = 300ms;
  auto r = open(o);
  auto b1 = begin(*r, "t1");
  const auto start = std::chrono::steady_clock::now();
  auto busy = r->begin("t2");
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(busy.status().code(), Code::busy);
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 3s);

  // A waiting begin() gets the session as soon as it is free.
  std::thread freer([&] {
    std::this_thread::sleep_for(100ms);
    b1->rollback();
  });
  auto got = r->begin("t3");
  freer.join();
  EXPECT_TRUE(got.ok()) << got.status().describe();
}

TEST_F(PgResourceTest, branch_life_cycle_edges) {
  auto r = open(options());
  EXPECT_EQ(r->begin("bad:txid").status().code(), Code::invalid_argument);
  EXPECT_EQ(r->begin("it's").status().code(), Code::invalid_argument);
  auto b = begin(*r, "t1");
  EXPECT_EQ(r->begin("t1").status().code(), Code::already_exists);
  ASSERT_TRUE(insert(*b, 1, "x").ok());
  b->rollback();
  DbError err;
  EXPECT_EQ(b->exec("SELECT 1", {}, &err).status().code(), Code::failed_precondition);
  EXPECT_FALSE(r->prepare(std::move(b), &err).ok());
  {
    auto dropped = begin(*r, "t1");  // the txid is free again
    ASSERT_TRUE(insert(*dropped, 2, "x").ok());
  }  // destroyed while active: rolled back
  EXPECT_EQ(rows(), 0);
  auto running = begin(*r, "t5");
  EXPECT_EQ(r->commit("t5").status().code(), Code::failed_precondition);
  EXPECT_EQ(r->abort("t5").status().code(), Code::failed_precondition);
  EXPECT_EQ(r->outcome_of("t5").status().code(), Code::failed_precondition);
  running->rollback();
  EXPECT_EQ(said(r->outcome_of("t5")), "aborted");
  prepare_row(*r, "t2", 3);
  EXPECT_EQ(r->begin("t2").status().code(), Code::already_exists) << "t2 is prepared here";
  EXPECT_EQ(said(r->commit("t2")), "committed");

  PgResource closed(options());
  EXPECT_EQ(closed.begin("t9").status().code(), Code::failed_precondition);
  EXPECT_FALSE(closed.healthy());
  PgOptions bad = options();
  bad.cluster_id = "a b";
  EXPECT_EQ(PgResource(bad).open().status().code(), Code::invalid_argument);
}

// The shared test server runs with fsync on, so the refusal itself is
// checked on the settings it is decided from.
TEST(PgSql, a_server_that_does_not_make_commits_durable_is_named) {
  EXPECT_FALSE(pg::durability_problem("on", "on").has_value());
  auto off = pg::durability_problem("off", "on");
  ASSERT_TRUE(off.has_value());
  EXPECT_NE(off->find("fsync=off"), std::string::npos) << *off;
  EXPECT_TRUE(pg::durability_problem("on", "off").has_value());
}

TEST_F(PgResourceTest, markers_below_the_forget_watermark_are_deleted_and_others_kept) {
  admin("INSERT INTO " + table_ + " VALUES (1, 'a')");
  auto r = open(options());
  ASSERT_TRUE(r);
  PgResource& res = *r;
  std::vector<std::string> txids;
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    txids.push_back(txn::Txid(cluster_, txn::BallotId{3, 1}, seq).str());
    prepare_row(res, txids.back(), static_cast<int64_t>(100 + seq));
    ASSERT_EQ(*res.commit(txids.back()), Outcome::committed);
  }
  auto n = res.forget_below(txn::Txid(cluster_, txn::BallotId{3, 1}, 4));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(*res.outcome_of(txids[3]), Outcome::committed) << "at the watermark: kept";
  EXPECT_EQ(*res.outcome_of(txids[4]), Outcome::committed);
  EXPECT_EQ(*res.forget_below(txn::Txid("other", txn::BallotId{9, 9}, 9)), 0u)
      << "another cluster's watermark deletes nothing";
}

TEST_F(PgResourceTest, repeatable_read_conflict_reports_serialization_failure) {
  admin("INSERT INTO " + table_ + " VALUES (1, 'a')");
  PgOptions o = options();
  o.isolation = PgIsolation::repeatable_read;
  auto r = open(o);
  auto b = begin(*r, "t1");
  DbError err;
  auto level = b->exec("SHOW transaction_isolation", {}, &err);
  ASSERT_TRUE(level.ok());
  EXPECT_EQ(level->rows[0][0], SqlValue(std::string("repeatable read")));
  ASSERT_TRUE(b->exec("SELECT v FROM " + table_ + " WHERE id = 1", {}, &err).ok());
  admin("UPDATE " + table_ + " SET v = 'b' WHERE id = 1");
  auto conflict = b->exec("UPDATE " + table_ + " SET v = 'c' WHERE id = 1", {}, &err);
  EXPECT_EQ(conflict.status().code(), Code::invalid_argument);
  EXPECT_EQ(err.sqlstate, "40001");
  EXPECT_FALSE(r->prepare(std::move(b), &err).ok());
  EXPECT_EQ(rows("v = 'b'"), 1);
}

TEST_F(PgResourceTest, markers_are_forgotten_after_their_retention) {
  auto r = open(options());
  prepare_row(*r, "t1", 1);
  ASSERT_TRUE(r->commit("t1").ok());
  ASSERT_TRUE(r->forget_markers_before(std::chrono::system_clock::now() - 1h).ok());
  EXPECT_TRUE(marker("t1"));
  ASSERT_TRUE(r->forget_old_markers().ok());
  EXPECT_TRUE(marker("t1"));
  ASSERT_TRUE(r->forget_markers_before(std::chrono::system_clock::now() + 1h).ok());
  EXPECT_FALSE(marker("t1"));
  // Which is why the retention must outlast any question about the txid.
  EXPECT_EQ(said(r->outcome_of("t1")), "aborted");
}

TEST_F(PgResourceTest, healthy_describes_and_survives_a_lost_control_session) {
  auto r = open(options());
  EXPECT_TRUE(r->healthy());
  EXPECT_TRUE(r->describe().starts_with("postgresql dtx_test@")) << r->describe();
  const std::string app = admin_->quote("dtx-agent " + agent_ + " control");
  // The one control session of this agent name; a refused rival's session
  // may still be on its way out.
  auto control_pid = [&] {
    for (int i = 0; i < 100; ++i) {
      auto rs = admin("SELECT pid FROM pg_stat_activity WHERE application_name = " + app);
      if (rs.size() == 1) return rs[0][0].as<int>();
      std::this_thread::sleep_for(50ms);
    }
    for (const auto& row : admin("SELECT pid, state, backend_start, query FROM pg_stat_activity "
                                 "WHERE application_name = " +
                                 app)) {
      ADD_FAILURE() << row[0].c_str() << " " << row[1].c_str() << " " << row[2].c_str() << " "
                    << row[3].c_str();
    }
    return 0;
  };
  ASSERT_NE(control_pid(), 0);
  kill_backend(control_pid());
  // The next check re-opens the control session and re-takes the lock.
  EXPECT_TRUE(r->healthy());
  EXPECT_NE(control_pid(), 0);
  PgResource rival(options());
  EXPECT_EQ(rival.open().status().code(), Code::busy);

  // Lost again, and this time another agent of the name takes the lock:
  // decisions are refused, not made twice.
  prepare_row(*r, "t1", 1);
  kill_backend(control_pid());
  auto usurper = open(options());
  EXPECT_EQ(r->commit("t1").status().code(), Code::busy);
  EXPECT_FALSE(r->healthy());
  EXPECT_EQ(said(usurper->commit("t1")), "committed");
}

// The fence (fencing.h) is a row of dtx_fence: stored durably, never
// lowered, read back by a later instance, and stored again on a fresh
// session when the fence session died while idle.
TEST_F(PgResourceTest, the_fence_is_stored_never_lowered_and_read_back) {
  {
    auto r = open(options());
    EXPECT_EQ(*r->load_fence(), (txn::BallotId{}));
    ASSERT_TRUE(r->save_fence(txn::BallotId{3, 2}).ok());
    ASSERT_TRUE(r->save_fence(txn::BallotId{2, 9}).ok()) << "a lower one is not an error";
    EXPECT_EQ(*r->load_fence(), (txn::BallotId{3, 2})) << "and does not lower it";
    const std::string app = admin_->quote("dtx-agent " + agent_ + " fence");
    auto pid = admin("SELECT pid FROM pg_stat_activity WHERE application_name = " + app);
    ASSERT_EQ(pid.size(), 1u);
    kill_backend(pid[0][0].as<int>());
    ASSERT_TRUE(r->save_fence(txn::BallotId{4, 1}).ok()) << "on a new fence session";
  }
  EXPECT_EQ(admin(fmt::format("SELECT round, node FROM dtx_fence WHERE cluster = {} AND agent = {}",
                              admin_->quote(cluster_), admin_->quote(agent_)))[0][0]
                .as<int64_t>(),
            4);
  // Another instance of the agent (after a restart) reads it back; another
  // agent of the cluster has a fence of its own.
  auto again = open(options());
  EXPECT_EQ(*again->load_fence(), (txn::BallotId{4, 1}));
  PgOptions other = options();
  other.agent_name = agent_ + "-b";
  auto b = open(other);
  EXPECT_EQ(*b->load_fence(), (txn::BallotId{}));
}

// A branch with no transaction id wrote nothing: it ends at once (a
// read_only vote) and its session goes back to the pool; anything that
// wrote, or locked rows, is left to prepare().
TEST_F(PgResourceTest, a_branch_that_wrote_nothing_ends_at_once_and_frees_its_session) {
  auto r = open(options(1));  // one session: a branch still holding it blocks the next
  for (int i = 0; i < 3; ++i) {
    auto b = begin(*r, fmt::format("ro{}", i));
    ASSERT_TRUE(b);
    ASSERT_TRUE(b->exec("SELECT count(*) FROM " + table_, {}, nullptr).ok());
    ASSERT_TRUE(b->exec("WITH x AS (SELECT 1) SELECT * FROM x", {}, nullptr).ok());
    DbError err;
    auto ro = r->end_read_only(b, &err);
    ASSERT_TRUE(ro.ok()) << ro.status().describe();
    EXPECT_TRUE(*ro);
    EXPECT_EQ(b, nullptr) << "consumed";
    EXPECT_FALSE(is_prepared(fmt::format("ro{}", i)));
    EXPECT_FALSE(marker(fmt::format("ro{}", i)));
  }
  // Wrote, locked rows, or wrote through a statement that looks like a read.
  admin("INSERT INTO " + table_ + " VALUES (1, 'one')");
  for (const std::string& sql :
       {"INSERT INTO " + table_ + " VALUES (2, 'two')", "SELECT * FROM " + table_ + " FOR SHARE",
        "WITH d AS (DELETE FROM " + table_ + " WHERE id = 1 RETURNING 1) SELECT count(*) FROM d",
        "UPDATE " + table_ + " SET v = v WHERE id = 99"}) {
    auto b = begin(*r, "w");
    ASSERT_TRUE(b);
    ASSERT_TRUE(b->exec(sql, {}, nullptr).ok()) << sql;
    DbError err;
    auto ro = r->end_read_only(b, &err);
    ASSERT_TRUE(ro.ok()) << ro.status().describe();
    EXPECT_FALSE(*ro) << sql;
    ASSERT_NE(b, nullptr);
    EXPECT_TRUE(r->prepare(std::move(b), &err).ok()) << sql << ": " << err.message;
    EXPECT_EQ(said(r->abort("w")), "aborted");
  }
  EXPECT_EQ(rows(), 1);
}

TEST_F(PgResourceTest, concurrent_branches_commit_independently) {
  auto r = open(options(4));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        const std::string txid = fmt::format("c{}-{}", t, i);
        auto b = r->begin(txid);
        DbError err;
        if (!b.ok() || !insert(**b, t * 100 + i, txid).ok() ||
            !r->prepare(std::move(*b), &err).ok()) {
          ++failures;
          continue;
        }
        auto out = (i % 2 == 0) ? r->commit(txid) : r->abort(txid);
        if (!out.ok()) ++failures;
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(rows(), 20);
  EXPECT_TRUE(r->prepared().empty());
}

}  // namespace
}  // namespace dtx::participant
