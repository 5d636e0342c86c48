// Shared pieces of the SQLite participant's tests: a database and agent WAL
// in a temporary directory, a plain connection to look at the data as any
// other client would, and fork()ed children that crash.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "participant/sqlite/sqlite_resource.h"
#include "tests/support/temp_dir.h"

namespace dtx::participant::sqlite::testing {

// A plain connection to the test database (not through dtx).
class Db {
 public:
  explicit Db(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* get() const { return db_; }
  // Runs SQL (several statements allowed); fails the test on error.
  void exec(const std::string& sql);
  // Runs SQL and returns the SQLite result code (no test failure).
  int try_exec(const std::string& sql);
  // The single integer a query returns; -1 if no row.
  int64_t scalar(const std::string& sql);
  // Every row, each value rendered as SQL text (NULL, 42, 'x').
  std::vector<std::string> rows(const std::string& sql);
  // Every user table (dtx_markers included), sorted, rendered row by row.
  std::string dump();

 private:
  sqlite3* db_ = nullptr;
};

class SqliteTest : public ::testing::Test {
 protected:
  SqliteTest();

  std::string db_path() const { return dir_.sub("bank.db"); }
  std::string wal_dir() const { return dir_.sub("agent-wal"); }
  // Small segments and records, a short busy wait, and on_fatal recorded
  // instead of aborting the test process.
  SqliteOptions options();
  // An opened resource; fails the test if open() fails or finds branches in
  // doubt that `expect_in_doubt` does not list.
  std::unique_ptr<SqliteResource> open_resource(
      const std::vector<std::string>& expect_in_doubt = {});
  // A plain connection (create tables, look at data).
  Db& db();

  // Runs a branch: begin, every statement, prepare. ok when it voted yes.
  Status run_branch(SqliteResource& res, const std::string& txid,
                    const std::vector<std::string>& statements, DbError* err = nullptr);

  // Runs fn in a fork()ed child, which leaves with _exit(fn()) (fn may also
  // _exit or kill itself), and returns the child's wait status. Closes the
  // plain connection first: a child must not share the parent's SQLite
  // connections.
  int run_child(const std::function<int()>& fn);

  dtx::testing::TempDir dir_{"dtx-sqlite"};
  std::vector<Status> fatals_;
  std::unique_ptr<Db> db_;
};

// The exit code of a child that exited, or -signal if a signal killed it.
int exit_code(int wait_status);

}  // namespace dtx::participant::sqlite::testing
