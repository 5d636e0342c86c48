#include "cli/bank.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "cli/api_client.h"
#include "cli/cluster.h"

namespace dtx::cli {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// Ctrl-C ends the workload early; the checks and the report still run. A
// second Ctrl-C kills (SA_RESETHAND).
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
  g_interrupted.store(true);
}
void catch_sigint() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

std::string read_token(const std::string& path) {
  std::ifstream in(path);
  std::string t;
  std::getline(in, t);
  return t;
}

enum class Verdict { pending, committed, aborted, unknown };
struct Transfer {
  std::string id;    // the ledger's key, and the one-shot's Idempotency-Key
  int a = 0, b = 0;  // participant indexes
  int account_a = 0, account_b = 0;
  int64_t amount = 0;
  std::string protocol;
  bool interactive = false;
  std::string txid;
  Verdict verdict = Verdict::pending;
  int64_t started_ms = 0, finished_ms = 0;
};

struct Fault {
  std::string what;
  int64_t at_ms = 0;
  int64_t healed_ms = 0;
  int64_t recovered_after_ms = -1;  // to the first commit after it
};

// What the databases say, read directly (not through dtx).
struct DbView {
  int64_t total = 0;
  int64_t accounts = 0;
  std::set<std::string> ledger;  // transfer ids with a ledger row here
  int prepared = 0;              // PostgreSQL: this cluster's prepared transactions
  bool ok = false;
  std::string error;
};

DbView read_sqlite(const std::string& path) {
  DbView v;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    v.error = "cannot open " + path;
    sqlite3_close(db);
    return v;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);  // one snapshot for both reads
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT COALESCE(SUM(balance), 0), count(*) FROM accounts", -1, &st,
                     nullptr);
  if (st && sqlite3_step(st) == SQLITE_ROW) {
    v.total = sqlite3_column_int64(st, 0);
    v.accounts = sqlite3_column_int64(st, 1);
    v.ok = true;
  }
  sqlite3_finalize(st);
  sqlite3_prepare_v2(db, "SELECT transfer FROM ledger", -1, &st, nullptr);
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    v.ledger.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  }
  sqlite3_finalize(st);
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  if (!v.ok) v.error = std::string("cannot read ") + path + ": " + sqlite3_errmsg(db);
  sqlite3_close(db);
  return v;
}

DbView read_postgres(const std::string& url, const std::string& cluster) {
  DbView v;
  PGconn* c = PQconnectdb((url + "?connect_timeout=5").c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    v.error = PQerrorMessage(c);
    PQfinish(c);
    return v;
  }
  PGresult* r = PQexec(c,
                       "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT COALESCE(SUM(balance), 0), "
                       "count(*) FROM accounts");
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    v.total = std::stoll(PQgetvalue(r, 0, 0));
    v.accounts = std::stoll(PQgetvalue(r, 0, 1));
    v.ok = true;
  } else {
    v.error = PQresultErrorMessage(r);
  }
  PQclear(r);
  r = PQexec(c, "SELECT transfer FROM ledger");
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i)
      v.ledger.insert(PQgetvalue(r, i, 0));
  } else {
    v.ok = false;
  }
  PQclear(r);
  PQclear(PQexec(c, "COMMIT"));
  const std::string q = "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'dtx:" + cluster +
                        ":%' AND database = current_database()";
  r = PQexec(c, q.c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK) v.prepared = std::stoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  return v;
}

class Bank {
 public:
  explicit Bank(const BankOptions& o) : o_(o), rng_(std::random_device{}()) {}

  int run() {
    auto info = load_cluster_info(o_.dir);
    if (!info.ok()) {
      std::fprintf(stderr, "dtx bank: %s\n", info.status().message().c_str());
      return 2;
    }
    info_ = *info;
    token_ = read_token(info_.client_token_file);
    cluster_token_ = read_token(info_.cluster_token_file);
    if (info_.participants.size() < 2) {
      std::fprintf(stderr, "dtx bank: the cluster needs at least two databases\n");
      return 2;
    }
    // The starting state, read from the databases.
    for (const auto& p : info_.participants) {
      DbView v = view(p);
      if (!v.ok) {
        std::fprintf(stderr, "dtx bank: %s: %s\n", p.name.c_str(), v.error.c_str());
        return 2;
      }
      expected_total_ += v.total;
      accounts_per_db_ = static_cast<int>(
          accounts_per_db_ == 0 ? v.accounts : std::min<int64_t>(accounts_per_db_, v.accounts));
    }
    if (accounts_per_db_ < 2) {
      std::fprintf(stderr, "dtx bank: the databases need accounts (dtx cluster up --accounts)\n");
      return 2;
    }
    run_id_ = fmt::format("{:x}", now_ms() % 0xffffff);
    std::printf(
        "dtx bank: %zu databases, %lld in all accounts; %d clients, %s, %.0f%% "
        "interactive%s\n",
        info_.participants.size(), static_cast<long long>(expected_total_), o_.clients,
        fmt::format("{}", fmt::join(o_.protocols, "+")).c_str(), o_.interactive * 100,
        o_.nemesis ? ", nemesis on" : "");
    if (has_sqlite()) {
      std::printf(
          "  (SQLite serialises writers: one transaction holds a database's write lock "
          "from its first statement to its decision, so a SQLite bank runs tens to hundreds of "
          "transfers a second, not thousands)\n");
    }
    catch_sigint();
    start_ms_ = now_ms();
    std::vector<std::thread> clients;
    for (int i = 0; i < o_.clients; ++i)
      clients.emplace_back([this, i] { client(i); });
    std::thread nemesis;
    if (o_.nemesis) nemesis = std::thread([this] { nemesis_loop(); });
    monitor();
    stop_ = true;
    for (auto& t : clients)
      t.join();
    if (nemesis.joinable()) nemesis.join();
    return finish();
  }

 private:
  bool has_sqlite() const {
    for (const auto& p : info_.participants) {
      if (p.kind == "sqlite") return true;
    }
    return false;
  }
  bool locks_whole(int participant) const {
    return info_.participants[participant].kind == "sqlite";
  }
  DbView view(const ClusterParticipant& p) const {
    return p.kind == "sqlite" ? read_sqlite(p.db) : read_postgres(p.db, info_.cluster);
  }

  // ---------------------------------------------------------------- clients

  void client(int index) {
    ApiClient api(info_.apis(), token_, 20'000);
    std::mt19937_64 rng(rng_() + static_cast<uint64_t>(index));
    for (uint64_t n = 0; !stop_.load(); ++n) {
      if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.1) {
        read_pair(api, rng);
        continue;
      }
      Transfer t;
      t.id = fmt::format("t{}-{}-{}", run_id_, index, n);
      const int np = static_cast<int>(info_.participants.size());
      t.a = static_cast<int>(rng() % np);
      t.b = static_cast<int>(rng() % (np - 1));
      if (t.b >= t.a) ++t.b;
      t.account_a = 1 + static_cast<int>(rng() % accounts_per_db_);
      t.account_b = 1 + static_cast<int>(rng() % accounts_per_db_);
      t.amount = 1 + static_cast<int64_t>(rng() % 50);
      t.protocol = o_.protocols[rng() % o_.protocols.size()];
      t.interactive = std::uniform_real_distribution<double>(0, 1)(rng) < o_.interactive;
      t.started_ms = now_ms();
      t.verdict = t.interactive ? interactive(api, t) : one_shot(api, t);
      t.finished_ms = now_ms();
      if (t.verdict == Verdict::pending) continue;  // never began: nothing to check
      std::lock_guard<std::mutex> g(mu_);
      transfers_.push_back(std::move(t));
    }
  }

  json::array side(const Transfer& t, bool first) const {
    const int acct = first ? t.account_a : t.account_b;
    const int64_t delta = first ? -t.amount : t.amount;
    return json::array{
        json::object{{"sql", "UPDATE accounts SET balance = balance + $1 WHERE id = $2"},
                     {"params", json::array{delta, acct}}},
        json::object{{"sql", "INSERT INTO ledger (transfer, account, delta) VALUES ($1, $2, $3)"},
                     {"params", json::array{t.id, acct, delta}}}};
  }

  static std::optional<json::object> body_of(const Result<rest::Response>& r) {
    if (!r.ok()) return std::nullopt;
    boost::system::error_code ec;
    json::value v = json::parse(r->body, ec);
    if (ec || !v.is_object()) return std::nullopt;
    return v.as_object();
  }
  static std::string outcome_in(const std::optional<json::object>& b) {
    if (!b || !b->contains("outcome") || !b->at("outcome").is_string()) return "";
    return b->at("outcome").as_string().c_str();
  }

  Verdict one_shot(ApiClient& api, Transfer& t) {
    // Branches in the participants' order; with SQLite (which locks the
    // whole database from a branch's first statement to its decision) one
    // after the other, so two transfers never hold each other's database.
    json::object first{{"participant", info_.participants[t.a].name},
                       {"statements", side(t, true)}};
    json::object second{{"participant", info_.participants[t.b].name},
                        {"statements", side(t, false)}};
    if (t.b < t.a) std::swap(first, second);
    json::object body{{"protocol", t.protocol},
                      {"branches", json::array{std::move(first), std::move(second)}}};
    if (locks_whole(t.a) || locks_whole(t.b)) body["order"] = "sequential";
    rest::Headers h;
    h.set("Idempotency-Key", t.id);
    const std::string text = json::serialize(body);
    bool sent = false;
    for (int attempt = 0; attempt < 8 && !stop_hard_.load(); ++attempt) {
      auto r = api.call(rest::Method::post, "/v1/submit", text, h);
      auto b = body_of(r);
      if (b && b->contains("txid") && b->at("txid").is_string()) {
        t.txid = b->at("txid").as_string().c_str();
      }
      const std::string o = outcome_in(b);
      if (r.ok() && r->status == 200 && o == "committed") return Verdict::committed;
      if (r.ok() && o == "aborted") return Verdict::aborted;
      if (r.ok() && r->status >= 400 && r->status < 500 && r->status != 409) {
        // Refused before anything ran (a bad request): not a transfer.
        return sent ? Verdict::unknown : Verdict::pending;
      }
      // Unknown, overloaded or unreachable: retry with the same key (it runs
      // once, T4).
      sent = sent || !r.ok() || r->status == 202 || r->status >= 500;
      std::this_thread::sleep_for(std::chrono::milliseconds(200 * (attempt + 1)));
    }
    return sent ? Verdict::unknown : Verdict::pending;
  }

  Verdict interactive(ApiClient& api, Transfer& t) {
    json::object begin{{"protocol", t.protocol}, {"timeout_ms", 15000}};
    Result<rest::Response> r = error(Code::unavailable, "");
    for (int attempt = 0; attempt < 5; ++attempt) {
      r = api.call(rest::Method::post, "/v1/transactions", json::serialize(begin));
      if (r.ok() && r->status == 201) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200 * (attempt + 1)));
    }
    auto b = body_of(r);
    if (!r.ok() || r->status != 201 || !b) return Verdict::pending;
    t.txid = b->at("txid").as_string().c_str();
    const std::string base = "/v1/transactions/" + t.txid;
    bool good = true;
    // In the participants' order (see one_shot).
    for (bool first : t.a < t.b ? std::vector<bool>{true, false} : std::vector<bool>{false, true}) {
      const auto& part = info_.participants[first ? t.a : t.b];
      for (const auto& st : side(t, first)) {
        json::object e = st.as_object();
        e["participant"] = part.name;
        auto x = api.call(rest::Method::post, base + "/exec", json::serialize(e));
        if (!x.ok() || x->status != 200) {
          good = false;
          break;
        }
      }
      if (!good) break;
    }
    if (!good) {
      auto a = api.call(rest::Method::post, base + "/abort", "{}");
      const std::string o = outcome_in(body_of(a));
      if (o == "aborted") return Verdict::aborted;
      if (o == "committed") return Verdict::committed;
      return settle(api, t);
    }
    auto c = api.call(rest::Method::post, base + "/commit", "{}");
    const std::string o = outcome_in(body_of(c));
    if (c.ok() && c->status == 200 && o == "committed") return Verdict::committed;
    if (c.ok() && o == "aborted") return Verdict::aborted;
    return settle(api, t);
  }

  // The outcome of a transaction whose answer was lost: ask its status.
  Verdict settle(ApiClient& api, const Transfer& t) {
    for (int i = 0; i < 60 && !stop_hard_.load(); ++i) {
      auto s = api.call(rest::Method::get, "/v1/transactions/" + t.txid);
      const std::string o = outcome_in(body_of(s));
      if (o == "committed") return Verdict::committed;
      if (o == "aborted") return Verdict::aborted;
      std::this_thread::sleep_for(500ms);
    }
    return Verdict::unknown;
  }

  void read_pair(ApiClient& api, std::mt19937_64& rng) {
    const int np = static_cast<int>(info_.participants.size());
    int a = static_cast<int>(rng() % np);
    int b = static_cast<int>(rng() % (np - 1));
    if (b >= a) ++b;
    if (b < a) std::swap(a, b);
    auto r = api.call(rest::Method::post, "/v1/transactions", "{}");
    auto body = body_of(r);
    if (!r.ok() || r->status != 201 || !body) return;
    const std::string base = "/v1/transactions/" + std::string(body->at("txid").as_string());
    for (int p : {a, b}) {
      const auto& part = info_.participants[p];
      // A read that must see a consistent pair locks what it reads (A7).
      const std::string sql = part.kind == "postgres"
                                  ? "SELECT balance FROM accounts WHERE id = $1 FOR SHARE"
                                  : "SELECT balance FROM accounts WHERE id = $1";
      json::object e{{"participant", part.name},
                     {"sql", sql},
                     {"params", json::array{1 + static_cast<int>(rng() % accounts_per_db_)}}};
      auto x = api.call(rest::Method::post, base + "/exec", json::serialize(e));
      if (!x.ok() || x->status != 200) break;
    }
    (void)api.call(rest::Method::post, base + "/commit", "{}");
  }

  // ---------------------------------------------------------------- nemesis

  int leader_id() {
    ApiClient api(info_.apis(), token_, 2000);
    auto r = api.call(rest::Method::get, "/v1/cluster");
    auto b = body_of(r);
    if (!b || !b->contains("leader") || !b->at("leader").is_int64()) return 0;
    return static_cast<int>(b->at("leader").as_int64());
  }

  ClusterCoordinator* coordinator(int id) {
    for (auto& c : info_.coordinators) {
      if (c.id == id) return &c;
    }
    return nullptr;
  }

  void note(Fault f) {
    std::lock_guard<std::mutex> g(mu_);
    faults_.push_back(std::move(f));
  }

  void restart_coordinator(ClusterCoordinator& c) {
    auto pid = spawn_detached(coordinator_argv(info_, c.id, false),
                              info_.dir + "/logs/coordinator-" + std::to_string(c.id) + ".log");
    if (pid.ok()) c.pid = *pid;
    std::lock_guard<std::mutex> g(mu_);
    (void)save_cluster_info(info_);
  }
  void restart_agent(ClusterParticipant& p) {
    auto pid = spawn_detached(agent_argv(info_, p), info_.dir + "/logs/" + p.name + ".log");
    if (pid.ok()) p.pid = *pid;
    std::lock_guard<std::mutex> g(mu_);
    (void)save_cluster_info(info_);
  }

  void sleep_unless_stopping(int64_t ms) {
    const int64_t until = now_ms() + ms;
    while (now_ms() < until && !stop_hard_.load())
      std::this_thread::sleep_for(20ms);
  }

  void nemesis_loop() {
    std::mt19937_64 rng(rng_());
    bool wiped = false;
    sleep_unless_stopping(static_cast<int64_t>(o_.fault_every_s * 1000));
    while (!stop_.load()) {
      Fault f;
      f.at_ms = now_ms();
      const int kind = static_cast<int>(rng() % 8);
      const int down_ms = 500 + static_cast<int>(rng() % 2000);
      std::vector<ClusterCoordinator*> alive;
      for (auto& c : info_.coordinators) {
        if (c.pid > 0 && process_alive(c.pid)) alive.push_back(&c);
      }
      if (kind <= 1) {
        // kill -9 the leader (kind 0) or any coordinator (kind 1), restart it.
        ClusterCoordinator* c = nullptr;
        if (kind == 0) c = coordinator(leader_id());
        if (!c && !alive.empty()) c = alive[rng() % alive.size()];
        if (!c) continue;
        f.what = fmt::format("kill -9 coordinator {}{}", c->id, kind == 0 ? " (the leader)" : "");
        ::kill(c->pid, SIGKILL);
        sleep_unless_stopping(down_ms);
        restart_coordinator(*c);
      } else if (kind == 2 || kind == 3) {
        ClusterParticipant& p = info_.participants[rng() % info_.participants.size()];
        if (kind == 3 && p.kind == "postgres") {
          f.what = "kill -9 PostgreSQL of " + p.name;
          ::kill(p.server_pid, SIGKILL);
          sleep_unless_stopping(down_ms);
          // Its backends see the postmaster gone and exit; then restart it.
          for (int i = 0; i < 100 && fs::exists(p.server_dir + "/data/postmaster.pid"); ++i) {
            auto st = start_postgres(p);
            if (st.ok()) {
              p.server_pid = *st;
              break;
            }
            std::this_thread::sleep_for(200ms);
          }
          std::lock_guard<std::mutex> g(mu_);
          (void)save_cluster_info(info_);
        } else {
          f.what = "kill -9 agent " + p.name;
          ::kill(p.pid, SIGKILL);
          sleep_unless_stopping(down_ms);
          restart_agent(p);
        }
      } else if (kind <= 6) {
        // Pause (SIGSTOP) a coordinator, an agent or a PostgreSQL server.
        int pid = 0;
        if (kind == 4 && !alive.empty()) {
          ClusterCoordinator* c = alive[rng() % alive.size()];
          pid = c->pid;
          f.what = fmt::format("pause coordinator {}", c->id);
        } else {
          ClusterParticipant& p = info_.participants[rng() % info_.participants.size()];
          pid = kind == 6 && p.kind == "postgres" ? p.server_pid : p.pid;
          f.what =
              "pause " + std::string(pid == p.server_pid ? "PostgreSQL of " : "agent ") + p.name;
        }
        if (pid <= 0) continue;
        ::kill(pid, SIGSTOP);
        sleep_unless_stopping(down_ms);
        ::kill(pid, SIGCONT);
      } else {
        // Once: a follower restarted on a wiped data directory. It must
        // refuse to start (P4: it would have forgotten its promises); the
        // group goes on without it.
        const int leader = leader_id();
        ClusterCoordinator* c = nullptr;
        for (auto* x : alive) {
          if (x->id != leader) c = x;
        }
        if (wiped || alive.size() < info_.coordinators.size() || !c) continue;
        wiped = true;
        f.what = fmt::format("coordinator {} restarted on a wiped data directory", c->id);
        ::kill(c->pid, SIGKILL);
        for (int i = 0; i < 100 && process_alive(c->pid); ++i)
          std::this_thread::sleep_for(20ms);
        const std::string data = info_.dir + "/c" + std::to_string(c->id);
        std::error_code ec;
        fs::rename(data, data + ".wiped", ec);
        auto pid =
            spawn_detached(coordinator_argv(info_, c->id, false),
                           info_.dir + "/logs/coordinator-" + std::to_string(c->id) + ".log");
        sleep_unless_stopping(3000);
        if (pid.ok() && process_alive(*pid)) {
          violation("a coordinator replica started on a wiped data directory (P4)");
          stop_process(*pid, 1000);
        } else {
          f.what += ": refused to start, left out";
        }
        c->pid = 0;
        std::lock_guard<std::mutex> g(mu_);
        (void)save_cluster_info(info_);
      }
      f.healed_ms = now_ms();
      note(f);
      if (o_.faults > 0 && static_cast<int>(faults_.size()) >= o_.faults) break;
      sleep_unless_stopping(static_cast<int64_t>(o_.fault_every_s * 1000));
    }
    nemesis_done_ = true;
  }

  void violation(const std::string& what) {
    std::lock_guard<std::mutex> g(mu_);
    violations_.push_back(what);
  }

  // ---------------------------------------------------------------- progress, checks

  void monitor() {
    const int64_t end = start_ms_ + static_cast<int64_t>(o_.duration_s * 1000);
    int64_t next_check = start_ms_ + 5000;
    size_t last_n = 0;
    int64_t last_t = start_ms_;
    while (true) {
      std::this_thread::sleep_for(1s);
      const int64_t t = now_ms();
      const bool by_faults = o_.nemesis && o_.faults > 0;
      if (g_interrupted.load()) break;
      if (!by_faults && t >= end) break;
      if (by_faults && nemesis_done_.load()) break;
      if (o_.progress) {
        size_t n, c = 0, a = 0, u = 0, f;
        {
          std::lock_guard<std::mutex> g(mu_);
          n = transfers_.size();
          for (const auto& x : transfers_) {
            c += x.verdict == Verdict::committed;
            a += x.verdict == Verdict::aborted;
            u += x.verdict == Verdict::unknown;
          }
          f = faults_.size();
        }
        // A terminal gets one line redrawn every second; a pipe or a log a
        // line every 5 s.
        const bool tty = isatty(STDERR_FILENO) == 1;
        if (tty || t - last_t >= 5000) {
          const double rate = static_cast<double>(n - last_n) * 1000.0 /
                              static_cast<double>(std::max<int64_t>(1, t - last_t));
          std::fprintf(
              stderr, "%s  %5.0f s  %6.0f transfers/s  committed %zu  aborted %zu  unknown %zu%s%s",
              tty ? "\r" : "", static_cast<double>(t - start_ms_) / 1000.0, rate, c, a, u,
              o_.nemesis ? fmt::format("  faults {}", f).c_str() : "", tty ? "   " : "\n");
          last_n = n;
          last_t = t;
        }
      }
      if (t >= next_check) {
        next_check = t + 5000;
        periodic_check();
      }
    }
    if (o_.progress && isatty(STDERR_FILENO) == 1) std::fprintf(stderr, "\n");
  }

  // While transfers run, a database's total can be off only by what is in
  // flight; reading the databases one after the other adds the transfers
  // that finished meanwhile.
  void periodic_check() {
    int64_t total = 0;
    for (const auto& p : info_.participants) {
      DbView v = view(p);
      if (!v.ok) return;  // a database being restarted by the nemesis
      total += v.total;
    }
    int64_t bound = 0;
    const int64_t recent = now_ms() - 60'000;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (const auto& t : transfers_) {
        if (t.finished_ms >= recent || t.verdict == Verdict::unknown) bound += t.amount;
      }
    }
    bound += static_cast<int64_t>(o_.clients) * 50;  // in flight right now
    if (std::llabs(total - expected_total_) > bound) {
      violation(fmt::format("money is off by {} while at most {} was in flight",
                            total - expected_total_, bound));
    }
  }

  // After the workload: wait until nothing is prepared anywhere, then check.
  bool quiesce(std::string* why) {
    ApiClient admin(info_.apis(), cluster_token_, 5000);
    const int64_t deadline = now_ms() + 90'000;
    while (now_ms() < deadline) {
      int prepared = 0;
      for (const auto& p : info_.participants) {
        if (p.kind == "postgres") {
          DbView v = view(p);
          prepared += v.ok ? v.prepared : 1;  // unreadable (restarting): not yet settled
        }
        rest::ClientOptions co;
        co.bearer_token = cluster_token_;
        rest::Client c(co);
        for (const char* state : {"prepared", "precommitted"}) {
          auto r = c.get(p.url, std::string("/v1/branches?state=") + state + "&agent_id=" + p.name,
                         3000);
          if (!r.ok() || r->status != 200) {
            ++prepared;
            continue;
          }
          auto b = body_of(r);
          if (b && b->contains("branches")) {
            prepared += static_cast<int>(b->at("branches").as_array().size());
          }
        }
      }
      if (prepared == 0) return true;
      *why = fmt::format("{} branch(es) still prepared or unreachable", prepared);
      std::this_thread::sleep_for(1s);
    }
    return false;
  }

  int finish() {
    stop_hard_ = true;
    std::printf("dtx bank: workload stopped; waiting until nothing is in doubt...\n");
    std::string why;
    if (!quiesce(&why)) violation("after the faults stopped: " + why);
    // The databases, directly (one still recovering from a kill is waited
    // for; one that never answers fails the run without the checks that
    // would need it).
    int64_t total = 0;
    bool readable = true;
    std::vector<DbView> views;
    for (const auto& p : info_.participants) {
      DbView v = view(p);
      for (const int64_t until = now_ms() + 60'000; !v.ok && now_ms() < until;) {
        std::this_thread::sleep_for(500ms);
        v = view(p);
      }
      if (!v.ok) {
        violation(p.name +
                  " could not be read, so the money and the transfers were not "
                  "checked: " +
                  v.error);
        readable = false;
      }
      total += v.total;
      views.push_back(std::move(v));
    }
    if (readable && total != expected_total_) {
      violation(fmt::format("money is not conserved: {} instead of {}", total, expected_total_));
    }
    std::map<Verdict, size_t> by;
    std::vector<int64_t> lat;
    for (const Transfer& t : transfers_) {
      ++by[t.verdict];
      const bool on_a = views[t.a].ledger.count(t.id) > 0;
      const bool on_b = views[t.b].ledger.count(t.id) > 0;
      if (t.verdict == Verdict::committed) lat.push_back(t.finished_ms - t.started_ms);
      if (!readable) continue;
      if (t.verdict == Verdict::committed && !(on_a && on_b)) {
        violation(
            fmt::format("transfer {} ({}) was answered committed but is {} in the "
                        "databases",
                        t.id, t.txid, on_a ? "on one side only" : "missing"));
      } else if (t.verdict == Verdict::aborted && (on_a || on_b)) {
        violation(fmt::format("transfer {} ({}) was answered aborted but is in a database", t.id,
                              t.txid));
      } else if (on_a != on_b) {
        violation(fmt::format("transfer {} ({}) is on one side only", t.id, t.txid));
      }
    }
    // Recovery: from each fault to the first transfer committed after it.
    for (Fault& f : faults_) {
      int64_t first = -1;
      for (const Transfer& t : transfers_) {
        if (t.verdict == Verdict::committed && t.finished_ms > f.at_ms &&
            (first < 0 || t.finished_ms < first)) {
          first = t.finished_ms;
        }
      }
      f.recovered_after_ms = first < 0 ? -1 : first - f.at_ms;
    }
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) {
      return lat.empty() ? 0 : lat[std::min(lat.size() - 1, static_cast<size_t>(p * lat.size()))];
    };
    const double secs = static_cast<double>(now_ms() - start_ms_) / 1000.0;
    std::printf(
        "\n  transfers: %zu committed, %zu aborted, %zu unknown to their client "
        "(%.0f committed/s over %.0f s)\n",
        by[Verdict::committed], by[Verdict::aborted], by[Verdict::unknown],
        static_cast<double>(by[Verdict::committed]) / std::max(1.0, secs), secs);
    std::printf("  latency of a committed transfer: p50 %lld ms, p99 %lld ms\n",
                static_cast<long long>(pct(0.5)), static_cast<long long>(pct(0.99)));
    if (!faults_.empty()) {
      std::printf("  faults: %zu\n", faults_.size());
      for (const Fault& f : faults_) {
        std::printf(
            "    %6.1f s  %-60s  next commit after %s\n",
            static_cast<double>(f.at_ms - start_ms_) / 1000.0, f.what.c_str(),
            f.recovered_after_ms < 0 ? "none" : fmt::format("{} ms", f.recovered_after_ms).c_str());
      }
    }
    std::printf("  money: %lld in all accounts, %lld at the start\n", static_cast<long long>(total),
                static_cast<long long>(expected_total_));
    if (!o_.report.empty()) write_report(by, total);
    if (violations_.empty()) {
      std::printf(
          "  verdict: PASS (no money created or lost, every outcome as answered, "
          "nothing left in doubt)\n");
      return 0;
    }
    std::printf("  verdict: FAIL\n");
    for (const auto& v : violations_)
      std::printf("    - %s\n", v.c_str());
    return 1;
  }

  void write_report(std::map<Verdict, size_t>& by, int64_t total) {
    json::array fs_;
    for (const Fault& f : faults_) {
      fs_.push_back(json::object{{"fault", f.what},
                                 {"at_s", static_cast<double>(f.at_ms - start_ms_) / 1000.0},
                                 {"recovered_after_ms", f.recovered_after_ms}});
    }
    json::array vs;
    for (const auto& v : violations_)
      vs.push_back(json::value(v));
    std::error_code ec;
    fs::create_directories(fs::path(o_.report).parent_path(), ec);
    std::ofstream(o_.report) << json::serialize(json::object{
                                    {"committed", by[Verdict::committed]},
                                    {"aborted", by[Verdict::aborted]},
                                    {"unknown", by[Verdict::unknown]},
                                    {"total", total},
                                    {"expected_total", expected_total_},
                                    {"faults", fs_},
                                    {"violations", vs},
                                    {"verdict", violations_.empty() ? "pass" : "fail"}})
                             << "\n";
  }

  const BankOptions& o_;
  std::mt19937_64 rng_;
  ClusterInfo info_;
  std::string token_, cluster_token_;
  std::string run_id_;
  int64_t expected_total_ = 0;
  int accounts_per_db_ = 0;
  int64_t start_ms_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> stop_hard_{false};
  std::atomic<bool> nemesis_done_{false};
  std::mutex mu_;
  std::vector<Transfer> transfers_;
  std::vector<Fault> faults_;
  std::vector<std::string> violations_;
};

}  // namespace

int run_bank(const BankOptions& o) {
  // Lines in order with the progress on stderr, also into a pipe or a log.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Bank b(o);
  return b.run();
}

}  // namespace dtx::cli
