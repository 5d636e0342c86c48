// Goal: after a crash at any point of a branch's life, a restarted SQLite
// resource holds exactly the branches that may still commit, never undoes a
// later transaction, never doubles a trigger or cascade, and refuses to
// serve rather than guess (A5, A6).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "participant/sqlite/sqlite_changeset.h"
#include "participant/sqlite/sqlite_wal_records.h"
#include "tests/integration/sqlite_test_support.h"
#include "wal/segmented_log.h"

namespace dtx::participant::sqlite::testing {
namespace {

constexpr const char* kBankSchema =
    "CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL UNIQUE, "
    "balance INTEGER NOT NULL);"
    "INSERT INTO accounts VALUES (1, 'alice', 100), (2, 'bob', 50);";

// Exit codes of the crashing children.
constexpr int kChildSetupFailed = 3;

class SqliteRecoveryTest : public SqliteTest {
 protected:
  void SetUp() override { db().exec(kBankSchema); }

  // In a child: open, run the statements as branch txid, prepare, then die
  // at `point` ("prepared": _exit after the yes vote; "kill": SIGKILL after
  // it; "db_committed": commit and die between the database COMMIT and the
  // COMMITTED record).
  void crash_child(const std::string& txid, const std::vector<std::string>& statements,
                   const std::string& point) {
    int status = run_child([&]() -> int {
      SqliteOptions o = options();
      o.on_fatal = [](const Status&) { ::_exit(kChildSetupFailed); };
      o.test_hook = [&](std::string_view at, const std::string&) {
        if (at == point) ::_exit(0);
      };
      SqliteResource res(o);
      if (!res.open().ok()) return kChildSetupFailed;
      if (!run_branch(res, txid, statements).ok()) return kChildSetupFailed;
      if (point == "prepared") ::_exit(0);
      if (point == "kill") ::kill(::getpid(), SIGKILL);
      (void)res.commit(txid);
      return kChildSetupFailed;  // the hook should have ended the process
    });
    const int code = exit_code(status);
    ASSERT_TRUE(code == 0 || code == -SIGKILL) << "child exit " << code;
  }

  std::string redo_of(const std::string& txid) {
    auto records = read_log_read_only(wal_dir());
    EXPECT_TRUE(records.ok()) << records.status();
    if (!records.ok()) return {};
    for (const auto& r : *records) {
      if (r.type == RecordType::prepared && r.txid == txid) {
        return std::string(r.redo.begin(), r.redo.end());
      }
    }
    ADD_FAILURE() << "no PREPARED record for " << txid;
    return {};
  }

  // Appends PREPARED{txid, redo, its inverse} to the agent WAL, as a
  // prepare() would.
  void append_prepared(const std::string& txid, const std::vector<uint8_t>& redo) {
    wal::Options w;
    w.dir = wal_dir();
    w.segment_bytes = options().wal_segment_bytes;
    w.buffer_bytes = 128 * 1024;
    w.record_payload_bytes_max = 96 * 1024;
    auto log = wal::SegmentedLog::open(w);
    ASSERT_TRUE(log.ok()) << log.status();
    auto undo = invert_changeset(redo);
    ASSERT_TRUE(undo.ok());
    ASSERT_TRUE((*log)
                    ->append_sync(static_cast<uint16_t>(RecordType::prepared),
                                  encode_prepared(txid, redo, *undo, 0))
                    .ok());
  }
};

std::span<const uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The changeset of `sql` run on c (inside the caller's transaction).
std::vector<uint8_t> changeset_of(Db& c, const std::string& sql) {
  sqlite3_session* session = nullptr;
  EXPECT_EQ(sqlite3session_create(c.get(), "main", &session), SQLITE_OK);
  sqlite3session_attach(session, nullptr);
  c.exec(sql);
  int n = 0;
  void* cs = nullptr;
  EXPECT_EQ(sqlite3session_changeset(session, &n, &cs), SQLITE_OK);
  sqlite3session_delete(session);
  return take_sqlite_bytes(cs, n);
}

TEST_F(SqliteRecoveryTest, a_branch_prepared_before_a_crash_is_held_and_commits_once) {
  crash_child("t1",
              {"UPDATE accounts SET balance = balance - 30 WHERE id = 1",
               "UPDATE accounts SET balance = balance + 30 WHERE id = 2",
               "INSERT INTO accounts VALUES (3, 'carol', 1)"},
              "prepared");
  // The crash lost the SQLite transaction: nothing is in the database.
  EXPECT_EQ(db().rows("SELECT balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"100", "50"}));
  auto res = open_resource({"t1"});
  EXPECT_EQ(res->prepared(), std::vector<std::string>{"t1"});
  // Redone and held, but not visible to readers until committed.
  EXPECT_EQ(db().rows("SELECT balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"100", "50"}));
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers"), 0);
  EXPECT_EQ(res->begin("other").status().code(), Code::busy);  // it holds the write lock
  EXPECT_EQ(res->outcome_of("t1").status().code(), Code::failed_precondition);
  auto out = res->commit("t1");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, Outcome::committed);
  EXPECT_EQ(db().rows("SELECT id, balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"1|70", "2|80", "3|1"}));
  EXPECT_EQ(*res->commit("t1"), Outcome::committed);
  res.reset();
  // Nothing is left in doubt, and nothing is applied twice.
  res = open_resource({});
  EXPECT_EQ(db().rows("SELECT id, balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"1|70", "2|80", "3|1"}));
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers WHERE txid = 't1'"), 1);
}

TEST_F(SqliteRecoveryTest, a_branch_killed_after_its_yes_vote_can_be_aborted) {
  crash_child("t1", {"DELETE FROM accounts WHERE id = 2"}, "kill");
  auto res = open_resource({"t1"});
  EXPECT_EQ(db().scalar("SELECT count(*) FROM accounts"), 2);
  auto out = res->abort("t1");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, Outcome::aborted);
  EXPECT_EQ(db().scalar("SELECT count(*) FROM accounts"), 2);
  EXPECT_EQ(*res->outcome_of("t1"), Outcome::aborted);
  // The write lock is free again.
  ASSERT_TRUE(run_branch(*res, "t2", {"DELETE FROM accounts WHERE id = 1"}).ok());
  ASSERT_TRUE(res->commit("t2").ok());
  res.reset();
  res = open_resource({});
  EXPECT_EQ(db().rows("SELECT id FROM accounts"), std::vector<std::string>{"2"});
}

// Killed between the database COMMIT and the COMMITTED record: the marker
// says committed, the redo is not applied, and a transaction that changed the
// same rows afterwards survives.
TEST_F(SqliteRecoveryTest, a_commit_the_wal_missed_is_found_by_its_marker) {
  crash_child("t1", {"UPDATE accounts SET balance = 60 WHERE id = 1"}, "db_committed");
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 60);
  // A later transaction while the agent is down (an operator, a script).
  db().exec("UPDATE accounts SET balance = 10 WHERE id = 1");
  const std::string redo = redo_of("t1");
  ASSERT_FALSE(redo.empty());
  {
    auto d = describe_prepared(wal_dir(), "t1");
    ASSERT_TRUE(d.ok());
    EXPECT_NE(d->find("decision: none recorded"), std::string::npos) << *d;
  }

  auto res = open_resource({});  // committed by marker: nothing in doubt
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 10);
  EXPECT_EQ(*res->outcome_of("t1"), Outcome::committed);
  EXPECT_EQ(*res->commit("t1"), Outcome::committed);
  res.reset();
  auto d = describe_prepared(wal_dir(), "t1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NE(d->find("decision: COMMITTED"), std::string::npos) << *d;

  // Why the marker matters (A5): re-applying the redo blindly would silently
  // undo the later transaction...
  db().exec("BEGIN");
  db().exec("DELETE FROM dtx_markers WHERE txid = 't1'");  // as if the marker were not checked
  auto replace_all = [](void*, int, sqlite3_changeset_iter*) { return SQLITE_CHANGESET_REPLACE; };
  ASSERT_EQ(sqlite3changeset_apply(db().get(), static_cast<int>(redo.size()),
                                   const_cast<char*>(redo.data()), nullptr, +replace_all, nullptr),
            SQLITE_OK);
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 60);  // 10 is lost
  db().exec("ROLLBACK");
  // ...while the strict apply refuses, changing nothing.
  db().exec("BEGIN");
  db().exec("DELETE FROM dtx_markers WHERE txid = 't1'");
  std::string conflict;
  Status s = apply_strict(db().get(), span_of(redo), &conflict);
  EXPECT_EQ(s.code(), Code::failed_precondition) << s;
  EXPECT_NE(conflict.find("UPDATE of accounts key (1)"), std::string::npos) << conflict;
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 10);
  db().exec("ROLLBACK");
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 10);
}

// A branch whose trigger and ON DELETE CASCADE changed other rows, redone
// after a crash, commits to exactly what a normal commit gives.
TEST_F(SqliteRecoveryTest, triggers_and_cascades_are_not_fired_again_by_the_redo) {
  const std::string schema =
      "CREATE TABLE owners(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
      "CREATE TABLE cards(id INTEGER PRIMARY KEY, owner INTEGER NOT NULL "
      "  REFERENCES owners(id) ON DELETE CASCADE);"
      "CREATE TABLE audit(id INTEGER PRIMARY KEY, msg TEXT NOT NULL);"
      "CREATE TRIGGER audit_balance AFTER UPDATE OF balance ON accounts BEGIN "
      "  INSERT INTO audit(msg) VALUES ('account ' || new.id || ': ' || old.balance || ' -> ' "
      "  || new.balance); END;"
      "INSERT INTO owners VALUES (1, 'alice'), (2, 'bob');"
      "INSERT INTO cards VALUES (10, 1), (11, 1), (12, 2);";
  const std::vector<std::string> branch = {"UPDATE accounts SET balance = balance - 5 WHERE id = 1",
                                           "UPDATE accounts SET balance = balance + 5 WHERE id = 2",
                                           "DELETE FROM owners WHERE id = 1"};

  // The reference: the same branch committed normally in another database.
  std::string expected;
  {
    SqliteOptions o = options();
    o.db_path = dir_.sub("reference.db");
    o.wal_dir = dir_.sub("reference-wal");
    Db ref(o.db_path);
    ref.exec(kBankSchema);
    ref.exec(schema);
    SqliteResource res(o);
    ASSERT_TRUE(res.open().ok());
    ASSERT_TRUE(run_branch(res, "t1", branch).ok());
    ASSERT_TRUE(res.commit("t1").ok());
    expected = ref.dump();
  }
  EXPECT_NE(expected.find("'account 1: 100 -> 95'"), std::string::npos) << expected;
  EXPECT_EQ(expected.find("  10|1"), std::string::npos) << expected;  // cascaded away

  db().exec(schema);
  crash_child("t1", branch, "prepared");
  const std::string redo = redo_of("t1");
  // Naively redone (triggers and foreign keys on, as on a branch connection),
  // the trigger writes its audit row again and the cascade deletes the
  // cards again, so the recorded rows conflict with them.
  {
    Db naive(db_path());
    naive.exec("PRAGMA foreign_keys = ON; BEGIN IMMEDIATE");
    std::string conflict;
    Status s = apply_strict(naive.get(), span_of(redo), &conflict);
    EXPECT_EQ(s.code(), Code::failed_precondition) << s;
    EXPECT_FALSE(conflict.empty());
    naive.exec("ROLLBACK");
  }
  auto res = open_resource({"t1"});
  auto out = res->commit("t1");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(db().dump(), expected);
}

// Someone changed the branch's rows while the agent was down: the redo
// conflicts, open() refuses naming the txid, and nothing changes until an
// operator settles it.
TEST_F(SqliteRecoveryTest, a_conflicting_redo_refuses_to_open_and_changes_nothing) {
  crash_child("t-conflict", {"UPDATE accounts SET balance = 1 WHERE id = 2"}, "prepared");
  db().exec("UPDATE accounts SET balance = 49 WHERE id = 2");
  const std::string before = db().dump();
  for (int attempt = 0; attempt < 2; ++attempt) {
    SqliteResource res(options());
    auto r = res.open();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::failed_precondition);
    EXPECT_NE(r.status().message().find("txid=t-conflict"), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find("conflicts"), std::string::npos) << r.status();
    EXPECT_EQ(db().dump(), before);
  }
  auto d = describe_prepared(wal_dir(), "t-conflict", db_path());
  ASSERT_TRUE(d.ok());
  EXPECT_NE(d->find("in doubt"), std::string::npos) << *d;
  EXPECT_NE(d->find("UPDATE accounts WHERE id=2: balance 50 -> 1"), std::string::npos) << *d;

  // The operator decides it by hand; the agent then starts.
  EXPECT_EQ(SqliteResource::resolve_by_operator(options(), "nope", Outcome::aborted).code(),
            Code::not_found);
  ASSERT_TRUE(SqliteResource::resolve_by_operator(options(), "t-conflict", Outcome::aborted).ok());
  auto res = open_resource({});
  EXPECT_EQ(db().dump(), before);
  d = describe_prepared(wal_dir(), "t-conflict");
  ASSERT_TRUE(d.ok());
  EXPECT_NE(d->find("settled by an operator as aborted"), std::string::npos) << *d;
}

// A row the redo deletes gained a child while the agent was down: with
// foreign keys off for the redo, only the check after it sees that.
TEST_F(SqliteRecoveryTest, a_redo_that_would_orphan_rows_refuses_to_open) {
  db().exec(
      "CREATE TABLE owners(id INTEGER PRIMARY KEY);"
      "CREATE TABLE cards(id INTEGER PRIMARY KEY, owner INTEGER REFERENCES owners(id));"
      "INSERT INTO owners VALUES (1), (2);");
  crash_child("t1", {"DELETE FROM owners WHERE id = 2"}, "prepared");
  db().exec("INSERT INTO cards VALUES (5, 2)");
  SqliteResource res(options());
  auto r = res.open();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("foreign key"), std::string::npos) << r.status();
  EXPECT_EQ(db().scalar("SELECT count(*) FROM owners"), 2);
}

// Serialised branches leave at most one undecided PREPARED record; should
// there be several, they are redone and held one at a time, oldest first.
TEST_F(SqliteRecoveryTest, several_undecided_branches_are_held_one_at_a_time_in_order) {
  // Two branches in sequence, recorded and then rolled back: as if both had
  // prepared and neither decision had reached the WAL.
  db().exec("CREATE TABLE dtx_markers(txid TEXT PRIMARY KEY, created_at INTEGER NOT NULL)");
  db().exec("BEGIN");
  auto old_redo = changeset_of(db(),
                               "UPDATE accounts SET balance = balance * 2 WHERE id = 1;"
                               "INSERT INTO dtx_markers VALUES ('t-old', 0)");
  auto new_redo = changeset_of(db(),
                               "UPDATE accounts SET balance = balance + 1 WHERE id = 1;"
                               "INSERT INTO dtx_markers VALUES ('t-new', 0)");
  const std::string final_state = db().dump();
  db().exec("ROLLBACK");
  append_prepared("t-old", old_redo);
  append_prepared("t-new", new_redo);

  auto res = open_resource({"t-old", "t-new"});
  EXPECT_EQ(res->prepared(), (std::vector<std::string>{"t-old", "t-new"}));
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 100);
  EXPECT_EQ(res->commit("t-new").status().code(), Code::busy);  // the older one first
  EXPECT_EQ(res->begin("fresh").status().code(), Code::busy);
  ASSERT_EQ(*res->commit("t-old"), Outcome::committed);
  EXPECT_EQ(db().scalar("SELECT balance FROM accounts WHERE id = 1"), 200);
  EXPECT_EQ(res->prepared(), std::vector<std::string>{"t-new"});
  ASSERT_EQ(*res->commit("t-new"), Outcome::committed);
  EXPECT_EQ(db().dump(), final_state);
  EXPECT_TRUE(res->begin("fresh").ok());
}

TEST_F(SqliteRecoveryTest, a_queued_branch_can_be_aborted_before_its_redo) {
  crash_child("t-a", {"UPDATE accounts SET balance = 1 WHERE id = 1"}, "prepared");
  db().exec("BEGIN");
  auto redo = changeset_of(db(),
                           "UPDATE accounts SET balance = 2 WHERE id = 2;"
                           "INSERT INTO dtx_markers VALUES ('t-b', 0)");
  db().exec("ROLLBACK");
  append_prepared("t-b", redo);
  auto res = open_resource({"t-a", "t-b"});
  EXPECT_EQ(*res->abort("t-b"), Outcome::aborted);
  EXPECT_EQ(res->prepared(), std::vector<std::string>{"t-a"});
  EXPECT_EQ(*res->commit("t-a"), Outcome::committed);
  EXPECT_EQ(db().rows("SELECT balance FROM accounts ORDER BY id"),
            (std::vector<std::string>{"1", "50"}));
  res.reset();
  open_resource({});
}

// Decided records do not pile up: the WAL prefix is truncated.
TEST_F(SqliteRecoveryTest, the_agent_wal_is_truncated_once_its_records_are_decided) {
  auto res = open_resource();
  const std::string filler(2000, 'x');
  db().exec("CREATE TABLE blobs(id INTEGER PRIMARY KEY, body TEXT)");
  for (int i = 0; i < 400; ++i) {
    const std::string txid = "t" + std::to_string(i);
    auto b = res->begin(txid);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_TRUE((*b)->exec("INSERT OR REPLACE INTO blobs VALUES (1, $1)",
                           {filler + std::to_string(i)}, nullptr)
                    .ok());
    ASSERT_TRUE(res->prepare(std::move(*b), nullptr).ok());
    ASSERT_TRUE((i % 2 ? res->commit(txid) : res->abort(txid)).ok());
  }
  // About 2.4 MB of records went through 256 KiB segments.
  size_t segments = 0;
  for (const auto& e : std::filesystem::directory_iterator(wal_dir()))
    segments += e.path().extension() == ".wal";
  EXPECT_LE(segments, 3u);
  res.reset();
  open_resource({});
  EXPECT_EQ(db().scalar("SELECT count(*) FROM dtx_markers"), 200);
}

}  // namespace
}  // namespace dtx::participant::sqlite::testing
