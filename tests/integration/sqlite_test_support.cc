#include "tests/integration/sqlite_test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "participant/sqlite/sqlite_util.h"

namespace dtx::participant::sqlite::testing {

Db::Db(const std::string& path) {
  EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
  sqlite3_busy_timeout(db_, 2000);
}

Db::~Db() {
  sqlite3_close_v2(db_);
}

void Db::exec(const std::string& sql) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
  EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (msg ? msg : "");
  sqlite3_free(msg);
}

int Db::try_exec(const std::string& sql) {
  return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
}

int64_t Db::scalar(const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK)
      << sql << ": " << sqlite3_errmsg(db_);
  int64_t v = -1;
  if (s && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

std::vector<std::string> Db::rows(const std::string& sql) {
  std::vector<std::string> out;
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK)
      << sql << ": " << sqlite3_errmsg(db_);
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    std::string row;
    for (int c = 0; c < sqlite3_column_count(s); ++c)
      row += (c ? "|" : "") + render_value(stored_column(s, c));
    out.push_back(row);
  }
  sqlite3_finalize(s);
  return out;
}

std::string Db::dump() {
  std::string out;
  for (const auto& t : rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                            "LIKE 'sqlite_%' ORDER BY name")) {
    const std::string name = t.substr(1, t.size() - 2);  // strip the quotes
    out += name + ":\n";
    // Markers differ in created_at between databases; compare their txids.
    const std::string sql = name == "dtx_markers"
                                ? "SELECT txid FROM dtx_markers ORDER BY txid"
                                : "SELECT * FROM " + quote_ident(name) + " ORDER BY 1";
    for (const auto& r : rows(sql))
      out += "  " + r + "\n";
  }
  return out;
}

SqliteTest::SqliteTest() = default;

SqliteOptions SqliteTest::options() {
  SqliteOptions o;
  o.db_path = db_path();
  o.wal_dir = wal_dir();
  o.busy_wait = std::chrono::milliseconds(300);
  o.changeset_bytes_max = 64 * 1024;
  o.wal_segment_bytes = 256 * 1024;
  o.on_fatal = [this](const Status& s) { fatals_.push_back(s); };
  return o;
}

std::unique_ptr<SqliteResource> SqliteTest::open_resource(
    const std::vector<std::string>& expect_in_doubt) {
  auto res = std::make_unique<SqliteResource>(options());
  auto in_doubt = res->open();
  EXPECT_TRUE(in_doubt.ok()) << in_doubt.status();
  if (in_doubt.ok()) {
    EXPECT_EQ(*in_doubt, expect_in_doubt);
  }
  return res;
}

Db& SqliteTest::db() {
  if (!db_) db_ = std::make_unique<Db>(db_path());
  return *db_;
}

Status SqliteTest::run_branch(SqliteResource& res, const std::string& txid,
                              const std::vector<std::string>& statements, DbError* err) {
  DbError ignored;
  if (err == nullptr) err = &ignored;
  auto b = res.begin(txid);
  if (!b.ok()) return b.status();
  for (const auto& sql : statements) {
    auto r = (*b)->exec(sql, {}, err);
    if (!r.ok()) break;  // prepare votes no with the recorded error
  }
  return res.prepare(std::move(*b), err);
}

int SqliteTest::run_child(const std::function<int()>& fn) {
  db_.reset();
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 100;
    try {
      code = fn();
    } catch (...) {
      code = 101;
    }
    ::_exit(code);
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return status;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1000;
}

}  // namespace dtx::participant::sqlite::testing
