// The agent integration tests' fixture: a dtx-agent process, a test
// coordinator that answers its inquiries, and direct access to its database.
// Every message is built and read with txn/agent_api.h, as the coordinator
// does; requests carry the fencing fields (agent_id, ballot) unless a test
// says otherwise.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <stdexcept>
#include <thread>

#include "participant/core/branch_machine.h"
#include "rest/client.h"
#include "rest/router.h"
#include "rest/server.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "txn/agent_api.h"
#include "txn/exec_digest.h"

namespace dtx::participant {

using namespace std::chrono_literals;
namespace json = boost::json;

inline const char* kToken = "agent-test-token-0123456789";

inline std::string pg_url() {
  const char* u = std::getenv("DTX_TEST_PG_URL");
  return u ? u : "";
}

// Answers GET /v1/transactions/{txid}/outcome from a map the test fills
// (txn::InquiryAnswer), or, as a follower, redirects to a leader.
class TestCoordinator {
 public:
  TestCoordinator() {
    rest::Router router;
    router.add(rest::Method::get, "/v1/transactions/{txid}/outcome",
               [this](rest::Request req, rest::Replier reply) {
                 std::lock_guard lock(mu_);
                 std::string txid(req.path_param("txid"));
                 asked_[txid]++;
                 if (!redirect_to_.empty()) {
                   rest::Response r = rest::Response::error(307, "not_leader", "ask the leader");
                   r.headers.set("Location", "http://" + redirect_to_ + req.target);
                   return reply(std::move(r));
                 }
                 txn::InquiryAnswer a;
                 a.txid = txid;
                 a.watermark = watermark_;
                 auto it = outcomes_.find(txid);
                 a.outcome = it == outcomes_.end() ? txn::InquiryOutcome::pending : it->second;
                 reply(rest::Response::json(a.http_status(), a.to_json()));
               });
    auto auth = rest::TokenAuth::from_tokens({kToken});
    server_ = std::move(*rest::Server::start({}, std::move(router), std::move(*auth)));
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  void decide(const std::string& txid, const std::string& outcome) {
    std::lock_guard lock(mu_);
    outcomes_[txid] = outcome == "committed"   ? txn::InquiryOutcome::committed
                      : outcome == "aborted"   ? txn::InquiryOutcome::aborted
                      : outcome == "forgotten" ? txn::InquiryOutcome::forgotten
                                               : txn::InquiryOutcome::pending;
  }
  // From now on answer 307 naming `leader` (host:port).
  void redirect_to(const std::string& leader) {
    std::lock_guard lock(mu_);
    redirect_to_ = leader;
  }
  void set_watermark(std::optional<txn::Txid> w) {
    std::lock_guard lock(mu_);
    watermark_ = std::move(w);
  }
  int asked(const std::string& txid) {
    std::lock_guard lock(mu_);
    return asked_[txid];
  }

 private:
  std::mutex mu_;
  std::map<std::string, txn::InquiryOutcome> outcomes_;
  std::map<std::string, int> asked_;
  std::string redirect_to_;
  std::optional<txn::Txid> watermark_;
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
                                  coordinators_.empty() ? coordinator_.address() : coordinators_,
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
    // An extra option given twice takes the extra value (CLI11 takes each once).
    for (size_t i = 0; i < extra_args_.size(); ++i) {
      const bool has_value = i + 1 < extra_args_.size() && extra_args_[i + 1].rfind("--", 0) != 0;
      auto at = std::find(a.begin(), a.end(), extra_args_[i]);
      if (at != a.end() && has_value && at + 1 != a.end()) {
        *(at + 1) = extra_args_[++i];
        continue;
      }
      a.push_back(extra_args_[i]);
      if (has_value) a.push_back(extra_args_[++i]);
    }
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
    ADD_FAILURE() << "dtx-agent did not become ready:\n" << agent_.log();
    // Ends the test (gtest reports it) instead of letting it go on without an agent.
    throw std::runtime_error("dtx-agent did not start");
  }
  void kill9() {
    agent_.signal(SIGKILL);
    ASSERT_TRUE(agent_.wait(5s).has_value());
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

  // The fencing fields every coordinator request carries.
  txn::Fence fence() const {
    txn::Fence f;
    f.agent_id = name_;
    f.ballot = ballot_;
    return f;
  }
  // Posts body; a JSON object without "agent_id" gets the fence added
  // (tests of malformed bodies send them as they are).
  Result<rest::Response> post(const std::string& target, const std::string& body) {
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (!ec && v.is_object() && !v.as_object().contains("agent_id")) {
      fence().add_to(v.as_object());
      return client_->post(addr(), target, json::serialize(v), 10'000);
    }
    return client_->post(addr(), target, body, 10'000);
  }

  // exec with seq, folding it into the digest the way the coordinator will.
  Result<rest::Response> exec(const std::string& txid, const std::string& sql,
                              const std::vector<SqlValue>& params = {}) {
    uint64_t& seq = seq_[txid];
    ++seq;
    digest_[txid] = txn::exec_digest(digest_[txid], seq, sql, params);
    txn::ExecRequest req{fence(), seq, sql, params};
    return post(txn::branch_step_path(txid, "exec"), json::serialize(req.to_json()));
  }
  std::string prepare(const std::string& txid) {
    txn::PrepareRequest req{fence(), seq_[txid], digest_[txid]};
    auto r = post(txn::branch_step_path(txid, "prepare"), json::serialize(req.to_json()));
    if (!r.ok() || r->status != 200) return "error";
    auto v = txn::VoteAnswer::from_json(*r->json_body());
    return v.ok() ? txn::vote_name(v->vote) : "error";
  }
  std::string decide(const std::string& txid, const std::string& what) {
    txn::DecisionRequest req{fence()};
    auto r = post(txn::branch_step_path(txid, what), json::serialize(req.to_json()));
    if (!r.ok()) return "error:" + r.status().describe();
    if (r->status != 200) return "http " + std::to_string(r->status) + " " + r->error_code();
    auto a = txn::DecisionAnswer::from_json(*r->json_body());
    return a.ok() ? txn::outcome_name(a->outcome) : "error";
  }
  // commit-one-phase of txid with the exec count and digest of the test's
  // execs (or `count` execs): the HTTP status, and the answer (200) or the
  // error code.
  struct OnePhase {
    int status = 0;
    std::string code;  // the error's, when not 200
    txn::OnePhaseAnswer answer;
    std::string body;
  };
  OnePhase commit_one_phase(const std::string& txid, std::optional<uint64_t> count = std::nullopt) {
    txn::PrepareRequest req{fence(), count.value_or(seq_[txid]), digest_[txid]};
    auto r = post(txn::branch_step_path(txid, "commit-one-phase"), json::serialize(req.to_json()));
    OnePhase out;
    if (!r.ok()) {
      out.code = r.status().describe();
      return out;
    }
    out.status = r->status;
    out.body = r->body;
    if (r->status != 200) {
      out.code = r->error_code();
      return out;
    }
    auto a = txn::OnePhaseAnswer::from_json(*r->json_body());
    if (a.ok()) out.answer = *a;
    return out;
  }
  // GET /v1/branches/{txid} (no fencing parameters): the status, and the
  // branch's state when 200.
  std::pair<int, std::optional<txn::BranchStatus>> branch_status(const std::string& txid) {
    auto r = client_->get(addr(), txn::branch_path(txid), 5000);
    if (!r.ok()) return {0, std::nullopt};
    if (r->status != 200) return {r->status, std::nullopt};
    auto s = txn::BranchStatus::from_json(*r->json_body());
    if (!s.ok()) return {r->status, std::nullopt};
    return {r->status, *s};
  }
  // PostgreSQL transactions prepared by this agent (pg_prepared_xacts); 0 on SQLite.
  int64_t pg_prepared_of_agent() {
    if (db_ != Db::postgres) return 0;
    pqxx::nontransaction n(*pg_);
    return n
        .exec("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE " +
              n.quote("%:" + name_))[0][0]
        .as<int64_t>();
  }
  // The agent's counter `name` from /metrics; -1 if absent.
  int64_t metric(const std::string& name) {
    auto r = client_->get(addr(), "/metrics", 5000);
    if (!r.ok()) return -1;
    const std::string key = "\ndtx_agent_" + name + " ";
    const size_t at = r->body.find(key);
    if (at == std::string::npos) return -1;
    return std::stoll(r->body.substr(at + key.size()));
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
    fence().add_to(exec);
    return std::thread([this, txid, body = json::serialize(exec), out] {
      rest::ClientOptions co;
      co.bearer_token = kToken;
      rest::Client c(co);
      *out = c.post(addr(), "/v1/branches/" + txid + "/exec", body, 10'000);
    });
  }
  // A txid unique to this test (cluster c1, the fixture's ballot); the label
  // is for the reader only.
  std::string tx(const std::string& label) {
    (void)label;
    return txn::Txid("c1", ballot_, ++txids_).str();
  }

  std::vector<std::string> prepared_listed() { return listed(txn::BranchState::prepared); }
  // Every branch the listing shows in `state` (all states if none), page
  // by page; with the busy mark when `busy` is given.
  std::vector<std::string> listed(std::optional<txn::BranchState> state, size_t limit = 1000,
                                  std::vector<bool>* busy = nullptr) {
    std::vector<std::string> out;
    txn::BranchListRequest q;
    q.state = state;
    q.limit = limit;
    for (int pages = 0; pages < 1000; ++pages) {
      auto r = client_->get(addr(), q.path(), 5000);
      if (!r.ok() || r->status != 200) return out;
      auto a = txn::BranchListAnswer::from_json(*r->json_body());
      if (!a.ok()) return out;
      for (const auto& b : a->branches) {
        out.push_back(b.txid);
        if (busy) busy->push_back(b.busy);
      }
      if (!a->next) break;
      q.after = *a->next;
    }
    return out;
  }

  // Waits until GET /v1/branches/{txid} shows `state` ("busy": a step of
  // the branch is running).
  bool wait_state(const std::string& txid, const std::string& state, std::chrono::milliseconds t) {
    const auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = client_->get(addr(), "/v1/branches/" + txid, 2000);
      if (r.ok() && r->status == 200) {
        auto s = txn::BranchStatus::from_json(*r->json_body());
        if (s.ok() && (state == "busy" ? s->busy : txn::branch_state_name(s->state) == state)) {
          return true;
        }
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  Db db_;
  testing::TempDir dir_{"dtx-agent-it"};
  std::string name_, table_, token_path_, sqlite_path_;
  std::vector<std::string> extra_args_;  // appended to every start
  std::string coordinators_;             // --coordinator, when not coordinator_ alone
  txn::BallotId ballot_{1, 1};           // the fixture's coordinator ballot
  uint64_t txids_ = 0;
  std::unique_ptr<pqxx::connection> pg_;
  TestCoordinator coordinator_;
  std::unique_ptr<rest::Client> client_;
  testing::Process agent_;
  uint16_t port_ = 0;
  std::map<std::string, uint64_t> seq_, digest_;
  static inline int counter_ = 0;
};

}  // namespace dtx::participant
