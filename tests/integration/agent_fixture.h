// The agent integration tests' fixture: a dtx-agent process, a test
// coordinator that answers its inquiries, and direct access to its database.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>

#include "participant/core/branch_machine.h"
#include "rest/client.h"
#include "rest/router.h"
#include "rest/server.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace dtx::participant {

using namespace std::chrono_literals;
namespace json = boost::json;

inline const char* kToken = "agent-test-token-0123456789";

inline std::string pg_url() {
  const char* u = std::getenv("DTX_TEST_PG_URL");
  return u ? u : "";
}

// Answers GET /v1/transactions/{txid}/outcome from a map the test fills.
class TestCoordinator {
 public:
  TestCoordinator() {
    rest::Router router;
    router.add(
        rest::Method::get, "/v1/transactions/{txid}/outcome",
        [this](rest::Request req, rest::Replier reply) {
          std::lock_guard lock(mu_);
          std::string txid(req.path_param("txid"));
          asked_[txid]++;
          auto it = outcomes_.find(txid);
          reply(rest::Response::json(
              200, json::object{{"txid", txid},
                                {"outcome", it == outcomes_.end() ? "pending" : it->second}}));
        });
    auto auth = rest::TokenAuth::from_tokens({kToken});
    server_ = std::move(*rest::Server::start({}, std::move(router), std::move(*auth)));
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  void decide(const std::string& txid, const std::string& outcome) {
    std::lock_guard lock(mu_);
    outcomes_[txid] = outcome;
  }
  int asked(const std::string& txid) {
    std::lock_guard lock(mu_);
    return asked_[txid];
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> outcomes_;
  std::map<std::string, int> asked_;
  std::unique_ptr<rest::Server> server_;
};

enum class Db { postgres, sqlite };

// One dtx-agent process and direct access to its database.
class AgentFixture : public ::testing::TestWithParam<Db> {
 protected:
  void SetUp() override {
    db_ = GetParam();
    name_ = "agent" + std::to_string(::getpid()) + "x" + std::to_string(counter_++);
    table_ = "acct_" + name_;
    token_path_ = dir_.sub("token");
    std::ofstream(token_path_) << kToken << "\n";
    ::chmod(token_path_.c_str(), 0600);
    if (db_ == Db::postgres) {
      ASSERT_FALSE(pg_url().empty()) << "DTX_TEST_PG_URL is not set: run scripts/test, or eval "
                                        "\"export $(scripts/pg-local start)\"";
      pg_ = std::make_unique<pqxx::connection>(pg_url());
      sql_setup("CREATE TABLE " + table_ +
                " (id integer PRIMARY KEY, v integer NOT NULL CHECK (v >= 0))");
    } else {
      sqlite_path_ = dir_.sub("bank.db");
      sql_setup("CREATE TABLE " + table_ +
                " (id INTEGER PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0))");
    }
    sql_setup("INSERT INTO " + table_ + " VALUES (1, 100), (2, 100)");
    rest::ClientOptions co;
    co.bearer_token = kToken;
    co.default_timeout_ms = 10'000;
    client_ = std::make_unique<rest::Client>(co);
  }

  void TearDown() override {
    agent_.kill_and_wait();
    if (db_ == Db::postgres && pg_) {
      // Leave nothing prepared behind for other tests.
      pqxx::nontransaction n(*pg_);
      for (const auto& row :
           n.exec("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE '%:" + name_ + "'")) {
        n.exec("ROLLBACK PREPARED " + n.quote(row[0].c_str()));
      }
      n.exec("DROP TABLE IF EXISTS " + table_);
    }
  }

  // Schema and data set-up, and checks, on a connection of the test's own.
  void sql_setup(const std::string& sql) {
    if (db_ == Db::postgres) {
      pqxx::nontransaction n(*pg_);
      n.exec(sql);
      return;
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(sqlite_path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  // The balance of account id, as another reader sees it now.
  int64_t balance(int id) {
    const std::string sql = "SELECT v FROM " + table_ + " WHERE id = " + std::to_string(id);
    if (db_ == Db::postgres) {
      pqxx::nontransaction n(*pg_);
      auto r = n.exec(sql);
      return r.empty() ? -1 : r[0][0].as<int64_t>();
    }
    sqlite3* db = nullptr;
    sqlite3_open_v2(sqlite_path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
  }

  std::vector<std::string> agent_args(const std::string& name) {
    std::vector<std::string> a = {"--name",
                                  name,
                                  "--cluster",
                                  "c1",
                                  "--listen",
                                  "127.0.0.1:" + std::to_string(port_),
                                  "--token-file",
                                  token_path_,
                                  "--coordinator",
                                  coordinator_.address(),
                                  "--inquiry-first-ms",
                                  "100",
                                  "--inquiry-max-ms",
                                  "400",
                                  "--tick-ms",
                                  "20",
                                  "--precommit-timeout-ms",
                                  "500",
                                  "--log-level",
                                  "debug"};
    if (db_ == Db::postgres) {
      a.insert(a.end(), {"--postgres", pg_url(), "--pool", "4"});
    } else {
      a.insert(a.end(), {"--sqlite", sqlite_path_, "--wal-dir", dir_.sub("wal")});
    }
    a.insert(a.end(), extra_args_.begin(), extra_args_.end());
    return a;
  }

  void start_agent() {
    if (port_ == 0) port_ = testing::free_port();
    agent_ = testing::Process::spawn(testing::bin_dir() + "/dtx-agent", agent_args(name_),
                                     dir_.sub("agent.log"));
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = client_->get(addr(), "/readyz", 1000);
      if (r.ok() && r->status == 200) return;
      if (!agent_.running()) break;
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "dtx-agent did not become ready:\n" << agent_.log();
  }
  void kill9() {
    agent_.signal(SIGKILL);
    ASSERT_TRUE(agent_.wait(5s).has_value());
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

  Result<rest::Response> post(const std::string& target, const std::string& body) {
    return client_->post(addr(), target, body, 10'000);
  }

  // exec with seq, folding it into the digest the way the coordinator will.
  Result<rest::Response> exec(const std::string& txid, const std::string& sql,
                              const std::vector<SqlValue>& params = {}) {
    uint64_t& seq = seq_[txid];
    ++seq;
    digest_[txid] = exec_digest(digest_[txid], seq, sql, params);
    json::array p;
    for (const SqlValue& v : params) {
      if (const int64_t* i = std::get_if<int64_t>(&v)) p.emplace_back(*i);
      if (const std::string* s = std::get_if<std::string>(&v)) p.emplace_back(json::string(*s));
    }
    return post("/v1/branches/" + txid + "/exec",
                json::serialize(json::object{{"seq", seq}, {"sql", sql}, {"params", p}}));
  }
  std::string prepare(const std::string& txid) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016" PRIx64, digest_[txid]);
    auto r = post("/v1/branches/" + txid + "/prepare",
                  json::serialize(json::object{{"exec_count", seq_[txid]}, {"digest", hex}}));
    if (!r.ok() || r->status != 200) return "error";
    return std::string(r->json_body()->as_object().at("vote").as_string());
  }
  std::string decide(const std::string& txid, const std::string& what) {
    auto r = post("/v1/branches/" + txid + "/" + what, "{}");
    if (!r.ok()) return "error:" + r.status().describe();
    if (r->status != 200) return "http " + std::to_string(r->status) + " " + r->error_code();
    return std::string(r->json_body()->as_object().at("outcome").as_string());
  }
  std::string transfer_sql() const { return "UPDATE " + table_ + " SET v = v + $1 WHERE id = $2"; }

  // Begins branches until every database session is held (PostgreSQL: the
  // pool of 4; SQLite: the one write lock); their txids go to *held.
  void hold_every_session(std::vector<std::string>* held) {
    const int holders = db_ == Db::postgres ? 4 : 1;
    for (int i = 0; i < holders; ++i) {
      held->push_back(tx("hold" + std::to_string(i)));
      ASSERT_EQ(
          exec(held->back(), "SELECT v FROM " + table_ + " WHERE id = $1", {int64_t{1}})->status,
          200);
    }
  }
  // The first exec (seq 1) of txid, on a thread and a client of its own;
  // its answer lands in *out.
  std::thread first_exec_async(const std::string& txid, json::object exec,
                               std::optional<Result<rest::Response>>* out) {
    exec["seq"] = 1;
    return std::thread([this, txid, body = json::serialize(exec), out] {
      rest::ClientOptions co;
      co.bearer_token = kToken;
      rest::Client c(co);
      *out = c.post(addr(), "/v1/branches/" + txid + "/exec", body, 10'000);
    });
  }
  // A txid unique to this test.
  std::string tx(const std::string& s) const { return name_ + "-" + s; }

  std::vector<std::string> prepared_listed() {
    auto r = client_->get(addr(), "/v1/branches?state=prepared", 5000);
    std::vector<std::string> out;
    if (!r.ok() || r->status != 200) return out;
    auto doc = r->json_body();  // kept alive for the loop
    if (!doc.ok()) return out;
    for (const auto& b : doc->as_object().at("branches").as_array()) {
      out.emplace_back(b.as_object().at("txid").as_string());
    }
    return out;
  }

  // Waits until GET /v1/branches/{txid} shows `state`.
  bool wait_state(const std::string& txid, const std::string& state, std::chrono::milliseconds t) {
    const auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = client_->get(addr(), "/v1/branches/" + txid, 2000);
      if (r.ok() && r->status == 200 &&
          r->json_body()->as_object().at("state").as_string() == state) {
        return true;
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  Db db_;
  testing::TempDir dir_{"dtx-agent-it"};
  std::string name_, table_, token_path_, sqlite_path_;
  std::vector<std::string> extra_args_;  // appended to every start
  std::unique_ptr<pqxx::connection> pg_;
  TestCoordinator coordinator_;
  std::unique_ptr<rest::Client> client_;
  testing::Process agent_;
  uint16_t port_ = 0;
  std::map<std::string, uint64_t> seq_, digest_;
  static inline int counter_ = 0;
};

}  // namespace dtx::participant
