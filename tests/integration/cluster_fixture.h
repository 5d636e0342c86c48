// A whole dtx on loopback for process-level tests: three dtx-coordinator
// processes, a dtx-agent on PostgreSQL (DTX_TEST_PG_URL) and one on a
// SQLite file, each with an accounts table, and clients holding the client
// and the cluster token. Real processes, real sockets, real databases.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <random>
#include <stdexcept>
#include <thread>

#include "rest/client.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace dtx::testing {

using namespace std::chrono_literals;
namespace json = boost::json;

inline std::string test_pg_url() {
  const char* u = std::getenv("DTX_TEST_PG_URL");
  return u ? u : "";
}

class LocalCluster {
 public:
  static constexpr const char* kClientToken = "client-token-for-tests-0123456789";
  static constexpr const char* kClusterToken = "cluster-token-for-tests-9876543210";
  static constexpr int kAccounts = 10;
  static constexpr int64_t kInitialBalance = 1000;

  struct Options {
    std::string fault;  // --test-fault for every coordinator
    int prepare_timeout_ms = 3000;
    int decision_timeout_ms = 1000;
    // Names; empty: made unique from the cluster id (tests run in parallel
    // on one PostgreSQL database).
    std::string pg_name, sqlite_name, pg_table;
  };

  static Options with_fault(std::string fault) {
    Options o;
    o.fault = std::move(fault);
    return o;
  }

  LocalCluster() : LocalCluster(Options()) {}
  explicit LocalCluster(Options o) : opt_(o) {
    std::mt19937_64 rng(std::random_device{}());
    cluster_ = "t" + std::to_string(rng() % 1'000'000'000);
    pg_table_ = o.pg_table.empty() ? "acct_" + cluster_ : o.pg_table;
    pg_name_ = o.pg_name.empty() ? "pg-" + cluster_ : o.pg_name;
    sqlite_name_ = o.sqlite_name.empty() ? "lite" : o.sqlite_name;
    sqlite_path_ = dir_.sub("ledger.db");
    write_file(dir_.sub("client-token"), kClientToken);
    write_file(dir_.sub("cluster-token"), kClusterToken);
    for (int i = 1; i <= 3; ++i) {
      coords_[i].api_port = free_port();
      coords_[i].peer_port = free_port();
    }
    pg_port_ = free_port();
    sqlite_port_ = free_port();
    rest::ClientOptions co;
    co.bearer_token = kClientToken;
    co.default_timeout_ms = 20'000;
    client_ = std::make_unique<rest::Client>(co);
    co.bearer_token = kClusterToken;
    admin_ = std::make_unique<rest::Client>(co);
  }

  ~LocalCluster() {
    for (auto& [id, c] : coords_)
      c.proc.kill_and_wait();
    pg_agent_.kill_and_wait();
    sqlite_agent_.kill_and_wait();
    if (!test_pg_url().empty()) {
      try {
        pqxx::connection conn(test_pg_url());
        pqxx::nontransaction tx(conn);
        // Leave nothing prepared behind for other tests.
        for (const auto& row : tx.exec("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE " +
                                       tx.quote("dtx:" + cluster_ + ":%"))) {
          tx.exec("ROLLBACK PREPARED " + tx.quote(row[0].c_str()));
        }
        tx.exec("DROP TABLE IF EXISTS " + pg_table_);
      } catch (const std::exception&) {
      }
    }
  }

  const std::string& cluster() const { return cluster_; }
  const std::string& pg_name() const { return pg_name_; }
  const std::string& pg_table() const { return pg_table_; }
  const std::string& sqlite_name() const { return sqlite_name_; }
  std::string dir() const { return dir_.path(); }
  std::string api(int id) const { return "127.0.0.1:" + std::to_string(coords_.at(id).api_port); }
  Process& coordinator(int id) { return coords_.at(id).proc; }
  Process& pg_agent() { return pg_agent_; }
  Process& sqlite_agent() { return sqlite_agent_; }

  // --- start-up

  void create_databases() {
    pqxx::connection conn(test_pg_url());
    pqxx::work tx(conn);
    tx.exec("DROP TABLE IF EXISTS " + pg_table_);
    tx.exec("CREATE TABLE " + pg_table_ +
            " (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))");
    for (int i = 1; i <= kAccounts; ++i) {
      tx.exec("INSERT INTO " + pg_table_ + " VALUES (" + std::to_string(i) + ", " +
              std::to_string(kInitialBalance) + ")");
    }
    tx.commit();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(sqlite_path_.c_str(), &db), SQLITE_OK);
    std::string sql = "PRAGMA journal_mode=WAL; CREATE TABLE " + sqlite_table() +
                      " (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));";
    for (int i = 1; i <= kAccounts; ++i) {
      sql += "INSERT INTO " + sqlite_table() + " VALUES (" + std::to_string(i) + ", " +
             std::to_string(kInitialBalance) + ");";
    }
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }

  void write_config() {
    json::object cfg;
    cfg["cluster"] = cluster_;
    json::array reps;
    for (const auto& [id, c] : coords_) {
      reps.push_back(json::object{{"id", id},
                                  {"peer", "127.0.0.1:" + std::to_string(c.peer_port)},
                                  {"api", "127.0.0.1:" + std::to_string(c.api_port)}});
    }
    cfg["replicas"] = std::move(reps);
    cfg["participants"] = json::array{
        json::object{{"name", pg_name_}, {"url", "127.0.0.1:" + std::to_string(pg_port_)}},
        json::object{{"name", sqlite_name()},
                     {"url", "127.0.0.1:" + std::to_string(sqlite_port_)}}};
    cfg["client_token_file"] = "client-token";
    cfg["cluster_token_file"] = "cluster-token";
    cfg["timeouts_ms"] = json::object{{"prepare", opt_.prepare_timeout_ms},
                                      {"decision", opt_.decision_timeout_ms},
                                      {"exec", 5000}};
    write_file(dir_.sub("cluster.json"), json::serialize(cfg));
  }

  void start_coordinator(int id, bool bootstrap, const std::string& fault) {
    std::vector<std::string> args = {
        "--config",   dir_.sub("cluster.json"),           "--id",        std::to_string(id),
        "--data-dir", dir_.sub("c" + std::to_string(id)), "--log-level", "debug"};
    if (bootstrap) args.push_back("--bootstrap");
    if (!fault.empty()) args.insert(args.end(), {"--test-fault", fault});
    coords_[id].proc = Process::spawn(bin_dir() + "/dtx-coordinator", args,
                                      dir_.sub("c" + std::to_string(id) + ".log"));
  }

  void start_pg_agent() {
    pg_agent_ = Process::spawn(bin_dir() + "/dtx-agent",
                               {"--name",
                                pg_name_,
                                "--cluster",
                                cluster_,
                                "--listen",
                                "127.0.0.1:" + std::to_string(pg_port_),
                                "--postgres",
                                test_pg_url(),
                                "--pool",
                                "8",
                                "--coordinator",
                                api(1) + "," + api(2) + "," + api(3),
                                "--token-file",
                                dir_.sub("cluster-token"),
                                "--inquiry-first-ms",
                                "200",
                                "--inquiry-max-ms",
                                "1000",
                                "--log-level",
                                "debug"},
                               dir_.sub("pg-agent.log"));
    wait_ready("127.0.0.1:" + std::to_string(pg_port_), pg_agent_);
  }

  void start_sqlite_agent() {
    sqlite_agent_ = Process::spawn(bin_dir() + "/dtx-agent",
                                   {"--name",
                                    sqlite_name(),
                                    "--cluster",
                                    cluster_,
                                    "--listen",
                                    "127.0.0.1:" + std::to_string(sqlite_port_),
                                    "--sqlite",
                                    sqlite_path_,
                                    "--wal-dir",
                                    dir_.sub("lite-wal"),
                                    "--coordinator",
                                    api(1) + "," + api(2) + "," + api(3),
                                    "--token-file",
                                    dir_.sub("cluster-token"),
                                    "--inquiry-first-ms",
                                    "200",
                                    "--inquiry-max-ms",
                                    "1000",
                                    "--log-level",
                                    "debug"},
                                   dir_.sub("sqlite-agent.log"));
    wait_ready("127.0.0.1:" + std::to_string(sqlite_port_), sqlite_agent_);
  }

  // Everything, ready: a serving leader and both agents answering.
  void start() {
    if (test_pg_url().empty()) throw std::runtime_error("DTX_TEST_PG_URL is not set");
    create_databases();
    write_config();
    if (!opt_.fault.empty()) write_file(dir_.sub("test-fault-armed"), opt_.fault);
    for (int id = 1; id <= 3; ++id)
      start_coordinator(id, true, opt_.fault);
    start_pg_agent();
    start_sqlite_agent();
    wait_leader();
  }

  void wait_ready(const std::string& addr, Process& p) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = client_->get(addr, "/readyz", 1000);
      if (r.ok() && r->status == 200) return;
      if (!p.running()) break;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << addr << " did not become ready:\n" << p.log();
    throw std::runtime_error("a process did not start");
  }

  // The id of the serving leader, waiting for one (0 if none in time).
  int wait_leader(std::chrono::milliseconds timeout = 20s, int not_this = 0) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& [id, c] : coords_) {
        if (id == not_this || !c.proc.running()) continue;
        auto r = client_->get(api(id), "/v1/cluster", 1000);
        if (!r.ok() || r->status != 200) continue;
        auto doc = json::parse(r->body).as_object();
        if (doc["serving"].as_bool()) return id;
      }
      std::this_thread::sleep_for(50ms);
    }
    dump_logs();
    ADD_FAILURE() << "no serving leader";
    return 0;
  }

  void dump_logs() {
    for (auto& [id, c] : coords_) {
      std::string log = c.proc.log();
      if (log.size() > 6000) log = log.substr(log.size() - 6000);
      std::fprintf(stderr, "---- coordinator %d\n%s\n", id, log.c_str());
    }
  }

  // --- requests (to the leader, following redirects like any client)

  Result<rest::Response> call(rest::Method m, const std::string& target,
                              const std::string& body = "", const rest::Headers& h = {},
                              bool admin = false) {
    Result<rest::Response> last = error(Code::unavailable, "no coordinator answered");
    for (int id = 1; id <= 3; ++id) {
      std::string peer = api(id);
      for (int hop = 0; hop < 4; ++hop) {
        rest::ClientRequest req;
        req.method = m;
        req.target = target;
        req.body = body;
        req.headers = h;
        last = (admin ? admin_ : client_)->request_sync(peer, req);
        if (!last.ok()) break;
        if (last->status != 307) return last;
        auto loc = last->headers.get("Location");
        if (!loc) return last;
        std::string l(*loc);
        l = l.substr(7);  // http://
        peer = l.substr(0, l.find('/'));
      }
      if (last.ok()) return last;
      if (last.status().code() != Code::unavailable) return last;
    }
    return last;
  }
  json::object post(const std::string& target, const json::object& body, int* status = nullptr,
                    const rest::Headers& h = {}) {
    auto r = call(rest::Method::post, target, json::serialize(body), h);
    if (!r.ok()) {
      if (status) *status = -1;
      return json::object{{"client_error", r.status().describe()}};
    }
    if (status) *status = r->status;
    return json::parse(r->body).as_object();
  }
  json::object get(const std::string& target, int* status = nullptr) {
    auto r = call(rest::Method::get, target);
    if (!r.ok()) {
      if (status) *status = -1;
      return json::object{{"client_error", r.status().describe()}};
    }
    if (status) *status = r->status;
    return json::parse(r->body).as_object();
  }
  rest::Client& client() { return *client_; }
  rest::Client& admin() { return *admin_; }

  std::string begin(const std::string& protocol = "2pc") {
    int st = 0;
    auto b = post("/v1/transactions", json::object{{"protocol", protocol}}, &st);
    EXPECT_EQ(st, 201) << json::serialize(b);
    return b.contains("txid") ? std::string(b["txid"].as_string()) : "";
  }
  int exec(const std::string& txid, const std::string& participant, const std::string& sql,
           json::array params) {
    int st = 0;
    post("/v1/transactions/" + txid + "/exec",
         json::object{{"participant", participant}, {"sql", sql}, {"params", std::move(params)}},
         &st);
    return st;
  }
  std::string pg_update() const {
    return "UPDATE " + pg_table_ + " SET balance = balance + $1 WHERE id = $2";
  }
  // The SQLite table: "accounts" when the PostgreSQL one is named so (the
  // API docs' cluster), else "acct".
  std::string sqlite_table() const { return pg_table_ == "accounts" ? "accounts" : "acct"; }
  std::string sqlite_update() const {
    return "UPDATE " + sqlite_table() + " SET balance = balance + $1 WHERE id = $2";
  }
  // An interactive transfer of `amount` from PostgreSQL account `from` to
  // SQLite account `to`, not yet committed.
  std::string transfer(int64_t amount, int from, int to, const std::string& protocol = "2pc") {
    const std::string txid = begin(protocol);
    EXPECT_EQ(exec(txid, pg_name_, pg_update(), json::array{-amount, from}), 200);
    EXPECT_EQ(exec(txid, sqlite_name(), sqlite_update(), json::array{amount, to}), 200);
    return txid;
  }

  // --- the databases themselves

  int64_t pg_balance(int id) {
    pqxx::connection conn(test_pg_url());
    pqxx::nontransaction tx(conn);
    return tx.exec("SELECT balance FROM " + pg_table_ + " WHERE id = " + std::to_string(id))[0][0]
        .as<int64_t>();
  }
  int64_t sqlite_balance(int id) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(sqlite_path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* st = nullptr;
    const std::string q = "SELECT balance FROM " + sqlite_table() + " WHERE id = ?";
    sqlite3_prepare_v2(db, q.c_str(), -1, &st, nullptr);
    sqlite3_bind_int(st, 1, id);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
  }
  int pg_prepared() {
    pqxx::connection conn(test_pg_url());
    pqxx::nontransaction tx(conn);
    return tx
        .exec("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE " +
              tx.quote("dtx:" + cluster_ + ":%"))[0][0]
        .as<int>();
  }
  // Waits until `pred` holds (true) or the timeout passes (false).
  template <class F>
  static bool eventually(F pred, std::chrono::milliseconds timeout = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return pred();
  }

 private:
  static void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path) << text << "\n";
    ::chmod(path.c_str(), 0600);
  }

  struct Coord {
    uint16_t api_port = 0;
    uint16_t peer_port = 0;
    Process proc;
  };
  Options opt_;
  TempDir dir_{"dtx-cluster"};
  std::string cluster_, pg_table_, pg_name_, sqlite_name_, sqlite_path_;
  std::map<int, Coord> coords_;
  uint16_t pg_port_ = 0, sqlite_port_ = 0;
  Process pg_agent_, sqlite_agent_;
  std::unique_ptr<rest::Client> client_, admin_;
};

}  // namespace dtx::testing
