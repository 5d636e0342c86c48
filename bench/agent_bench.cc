// dtx-agent-bench: branches of one UPDATE through dtx-agent, on both paths
// a coordinator uses: interactive (exec, prepare, commit: three HTTP round
// trips) and one-shot (batch, then commit: two), against the same work done
// directly on the database in the same run.
//
// PostgreSQL: the direct baseline is BEGIN; UPDATE; PREPARE TRANSACTION;
// COMMIT PREPARED with libpqxx, one connection per client. SQLite: BEGIN
// IMMEDIATE; UPDATE; COMMIT with synchronous=FULL and the same busy
// handling, one connection per client. Each client updates its own row, so
// rows never conflict; the SQLite write lock still serialises everything.
// Rows alternate interactive, direct and one-shot runs, --pairs times, and
// each ratio is the median of the per-pair ratios against the direct run of
// the same pair. Requests are built with txn/agent_api.h, as the
// coordinator builds them (fencing fields included); before each agent run
// the forget watermark moves past the previous runs' txids, so marker rows
// stay bounded.
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cinttypes>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "rest/client.h"
#include "tests/support/process.h"
#include "txn/agent_api.h"
#include "txn/exec_digest.h"

namespace {

using namespace dtx;
using Clk = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace json = boost::json;

const char* kToken = "agent-bench-token-0123456789";

struct Row {
  double tps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  uint64_t errors = 0;
  // CPU time per transaction, microseconds: the whole machine's busy time,
  // the agent process's and this load generator's.
  double cpu_us = 0, agent_cpu_us = 0, client_cpu_us = 0;
};

// CPU seconds used so far: by the whole machine (every core's busy time,
// from /proc/stat), by one process (0 for none) and by this one.
struct CpuNow {
  double machine = 0, process = 0, self = 0;
};

CpuNow cpu_now(pid_t pid) {
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  CpuNow c;
  {
    std::ifstream in("/proc/stat");
    std::string cpu;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
    in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
    c.machine = (user + nice + system + irq + softirq) / tick;
  }
  if (pid > 0) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Fields after the command name (which may hold spaces) start at ") ".
    std::istringstream rest(all.substr(all.rfind(')') + 2));
    std::string f;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> f; ++i) {
      if (i == 14) utime = std::stod(f);
      if (i == 15) stime = std::stod(f);
    }
    c.process = (utime + stime) / tick;
  }
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  c.self = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  return c;
}

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "dtx-agent-bench: {}\n", what);
  std::exit(1);
}

double pct(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]) / 1e6;
}

// Runs `clients` threads calling one_tx(client, n) for `seconds`; one_tx
// returns false on an error.
Row closed_loop(int clients, double seconds, const std::function<bool(int, uint64_t)>& one_tx,
                pid_t agent_pid = 0) {
  const CpuNow cpu0 = cpu_now(agent_pid);
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<int64_t> lat;
  std::atomic<uint64_t> errors{0};
  std::vector<std::thread> ts;
  const auto start = Clk::now();
  for (int c = 0; c < clients; ++c) {
    ts.emplace_back([&, c] {
      std::vector<int64_t> mine;
      for (uint64_t n = 0; !stop.load(); ++n) {
        const auto t0 = Clk::now();
        if (!one_tx(c, n)) {
          errors++;
          continue;
        }
        mine.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clk::now() - t0).count());
      }
      std::lock_guard lock(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts)
    t.join();
  const double elapsed = std::chrono::duration<double>(Clk::now() - start).count();
  const CpuNow cpu1 = cpu_now(agent_pid);
  Row r;
  r.tps = static_cast<double>(lat.size()) / elapsed;
  const double n = static_cast<double>(std::max<size_t>(1, lat.size()));
  r.cpu_us = (cpu1.machine - cpu0.machine) / n * 1e6;
  r.agent_cpu_us = (cpu1.process - cpu0.process) / n * 1e6;
  r.client_cpu_us = (cpu1.self - cpu0.self) / n * 1e6;
  r.p50_ms = pct(lat, 0.5);
  r.p99_ms = pct(lat, 0.99);
  r.errors = errors.load();
  return r;
}

// Time spent in each request of the agent path, summed over all clients
// (nanoseconds), to say where a branch's time goes.
struct StepTimes {
  std::atomic<int64_t> exec{0}, prepare{0}, commit{0};
  std::atomic<int64_t> branches{0};
  void reset() { exec = prepare = commit = branches = 0; }
};
StepTimes g_steps;      // interactive rows
StepTimes g_one_steps;  // one-shot rows

int64_t since_ns(Clk::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clk::now() - t0).count();
}

txn::Fence bench_fence() {
  txn::Fence f;
  f.agent_id = "bench";
  f.ballot = txn::BallotId{1, 1};
  return f;
}

// The txid of client `cl`'s n-th branch of run `run`: ballot (run + 1, cl),
// so every run's txids are above the previous runs'.
std::string bench_txid(uint64_t run, int cl, uint64_t n) {
  return txn::Txid("bench", txn::BallotId{run + 1, static_cast<uint32_t>(cl)}, n + 1).str();
}

bool committed(const Result<rest::Response>& r) {
  if (!r.ok() || r->status != 200) return false;
  auto body = r->json_body();
  if (!body.ok()) return false;
  auto a = txn::DecisionAnswer::from_json(*body);
  return a.ok() && a->outcome == txn::Outcome::committed;
}

bool voted_yes(const boost::json::value& body) {
  auto v = txn::VoteAnswer::from_json(body);
  return v.ok() && v->vote == txn::Vote::yes;
}

// One branch through the agent: exec (seq 1), prepare with the digest, commit.
bool agent_tx(rest::Client& client, const std::string& agent, const std::string& txid,
              const std::string& sql, int64_t id) {
  const std::vector<txn::SqlValue> params = {int64_t{1}, id};
  auto t0 = Clk::now();
  auto r = client.post(agent, txn::branch_step_path(txid, "exec"),
                       json::serialize(txn::ExecRequest{bench_fence(), 1, sql, params}.to_json()));
  if (!r.ok() || r->status != 200) return false;
  g_steps.exec += since_ns(t0);
  t0 = Clk::now();
  const txn::PrepareRequest p{bench_fence(), 1, txn::exec_digest(0, 1, sql, params)};
  r = client.post(agent, txn::branch_step_path(txid, "prepare"), json::serialize(p.to_json()));
  if (!r.ok() || r->status != 200 || !voted_yes(*r->json_body())) return false;
  g_steps.prepare += since_ns(t0);
  t0 = Clk::now();
  r = client.post(agent, txn::branch_step_path(txid, "commit"),
                  json::serialize(txn::DecisionRequest{bench_fence()}.to_json()));
  const bool ok = committed(r);
  if (ok) {
    g_steps.commit += since_ns(t0);
    g_steps.branches++;
  }
  return ok;
}

// One one-shot branch: batch (the statement and the prepare), then commit.
bool agent_one_shot(rest::Client& client, const std::string& agent, const std::string& txid,
                    const std::string& sql, int64_t id) {
  auto t0 = Clk::now();
  const txn::BatchRequest b{bench_fence(), {{sql, {int64_t{1}, id}}}};
  auto r = client.post(agent, txn::branch_step_path(txid, "batch"), json::serialize(b.to_json()));
  if (!r.ok() || r->status != 200 || !voted_yes(*r->json_body())) return false;
  g_one_steps.exec += since_ns(t0);
  t0 = Clk::now();
  r = client.post(agent, txn::branch_step_path(txid, "commit"),
                  json::serialize(txn::DecisionRequest{bench_fence()}.to_json()));
  const bool ok = committed(r);
  if (ok) {
    g_one_steps.commit += since_ns(t0);
    g_one_steps.branches++;
  }
  return ok;
}

// Tells the agent that every txid of runs before `run` is forgotten (the
// coordinator's forget watermark), so their outcome records and marker rows go.
void forget_runs_before(rest::Client& client, const std::string& agent, uint64_t run) {
  txn::BranchListRequest q;
  q.limit = 1;
  q.fence = bench_fence();
  q.fence.watermark = txn::Txid("bench", txn::BallotId{run + 1, 0}, 1);
  (void)client.get(agent, q.path());
}

// Mean milliseconds per request of the agent rows since the last call.
std::string step_summary(bool one_shot) {
  StepTimes& g_steps = one_shot ? g_one_steps : ::g_steps;
  const double n = static_cast<double>(std::max<int64_t>(1, g_steps.branches.load()));
  std::string out = one_shot ? fmt::format("batch {:.2f} / commit {:.2f} ms",
                                           static_cast<double>(g_steps.exec.load()) / n / 1e6,
                                           static_cast<double>(g_steps.commit.load()) / n / 1e6)
                             : fmt::format("exec {:.2f} / prepare {:.2f} / commit {:.2f} ms",
                                           static_cast<double>(g_steps.exec.load()) / n / 1e6,
                                           static_cast<double>(g_steps.prepare.load()) / n / 1e6,
                                           static_cast<double>(g_steps.commit.load()) / n / 1e6);
  g_steps.reset();
  return out;
}

class AgentProcess {
 public:
  // Extra dtx-agent flags for experiments (--agent-args).
  static inline std::vector<std::string> extra_args;

  AgentProcess(const std::string& dir, std::vector<std::string> db_args, int pool) {
    std::filesystem::create_directories(dir);
    const std::string token = dir + "/token";
    std::ofstream(token) << kToken << "\n";
    ::chmod(token.c_str(), 0600);
    port_ = testing::free_port();
    std::vector<std::string> args = {"--name",       "bench",
                                     "--cluster",    "bench",
                                     "--listen",     "127.0.0.1:" + std::to_string(port_),
                                     "--token-file", token,
                                     "--workers",    std::to_string(pool),

                                     "--log-level",  "warn"};
    args.insert(args.end(), db_args.begin(), db_args.end());
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    proc_ = testing::Process::spawn(testing::bin_dir() + "/dtx-agent", args, dir + "/agent.log");
    rest::ClientOptions co;
    co.bearer_token = kToken;
    rest::Client probe(co);
    const auto deadline = Clk::now() + 20s;
    while (Clk::now() < deadline) {
      auto r = probe.get(address(), "/readyz", 1000);
      if (r.ok() && r->status == 200) return;
      if (!proc_.running()) break;
      std::this_thread::sleep_for(50ms);
    }
    die("dtx-agent did not start:\n" + proc_.log());
  }
  ~AgentProcess() {
    proc_.signal(SIGTERM);
    proc_.wait(10s);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return proc_.pid(); }

 private:
  uint16_t port_;
  testing::Process proc_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void print_row(const std::string& label, int clients, const std::vector<Row>& agent,
               const std::vector<Row>& direct, const std::string& summary) {
  std::vector<double> ratios, at, ap50, ap99, dt, dp50, dp99;
  uint64_t errors = 0;
  for (size_t i = 0; i < agent.size(); ++i) {
    ratios.push_back(direct[i].tps > 0 ? agent[i].tps / direct[i].tps : 0);
    at.push_back(agent[i].tps);
    ap50.push_back(agent[i].p50_ms);
    ap99.push_back(agent[i].p99_ms);
    dt.push_back(direct[i].tps);
    dp50.push_back(direct[i].p50_ms);
    dp99.push_back(direct[i].p99_ms);
    errors += agent[i].errors + direct[i].errors;
  }
  fmt::print(
      "{:<10} {:>7} | {:>9.0f} {:>7.2f} {:>7.2f} | {:>9.0f} {:>7.2f} {:>7.2f} | {:>6.2f}x{}\n",
      label, clients, median(at), median(ap50), median(ap99), median(dt), median(dp50),
      median(dp99), median(ratios), errors ? fmt::format("  ({} errors)", errors) : "");
  fmt::print("{:<18} | mean per agent request: {}\n", "", summary);
  auto med = [](const std::vector<Row>& rows, double Row::*f) {
    std::vector<double> v;
    for (const Row& r : rows)
      v.push_back(r.*f);
    return median(v);
  };
  fmt::print(
      "{:<18} | CPU per branch: agent path {:.0f} us (agent {:.0f}, load generator {:.0f}, "
      "database and the rest {:.0f}); direct {:.0f} us (load generator {:.0f})\n",
      "", med(agent, &Row::cpu_us), med(agent, &Row::agent_cpu_us), med(agent, &Row::client_cpu_us),
      med(agent, &Row::cpu_us) - med(agent, &Row::agent_cpu_us) - med(agent, &Row::client_cpu_us),
      med(direct, &Row::cpu_us), med(direct, &Row::client_cpu_us));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Benchmark dtx-agent against the same branches done directly on the database."};
  std::string dir = "var/bench-agent";
  std::vector<int> clients = {1, 16, 64};
  double seconds = 3;
  int pairs = 3;
  bool pg = true, sqlite = true;
  std::string pg_url = std::getenv("DTX_TEST_PG_URL") ? std::getenv("DTX_TEST_PG_URL") : "";
  app.add_option("--dir", dir, "scratch directory (SQLite files, agent logs)")->default_val(dir);
  app.add_option("--clients", clients, "client counts")->delimiter(',')->default_str("1,16,64");
  app.add_option("--seconds", seconds, "seconds per run")->default_val(seconds);
  app.add_option("--pairs", pairs, "agent/direct run pairs per row")->default_val(pairs);
  app.add_option("--postgres", pg_url, "PostgreSQL URL (default: $DTX_TEST_PG_URL)");
  app.add_flag("!--no-postgres", pg, "skip PostgreSQL");
  app.add_flag("!--no-sqlite", sqlite, "skip SQLite");
  std::string agent_args;
  app.add_option("--agent-args", agent_args,
                 "extra dtx-agent flags, space-separated (e.g. \"--http-threads 1\")");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  {
    std::istringstream words(agent_args);
    for (std::string w; words >> w;)
      AgentProcess::extra_args.push_back(w);
  }
  const int max_clients = *std::max_element(clients.begin(), clients.end());
  std::filesystem::create_directories(dir);
  const std::string abs = std::filesystem::absolute(dir).string();

  fmt::print("dtx-agent-bench: one-UPDATE branches, {} s runs, {} pairs; ratio = agent / direct\n",
             seconds, pairs);
  fmt::print("{:<10} {:>7} | {:>9} {:>7} {:>7} | {:>9} {:>7} {:>7} | {:>7}\n", "database",
             "clients", "agent tx/s", "p50 ms", "p99 ms", "direct/s", "p50 ms", "p99 ms", "ratio");

  if (pg) {
    if (pg_url.empty())
      die("no PostgreSQL: pass --postgres URL or eval \"export $(scripts/pg-local start)\"");
    {
      pqxx::connection c(pg_url);
      pqxx::nontransaction n(c);
      n.exec("DROP TABLE IF EXISTS bench_accounts");
      n.exec("CREATE TABLE bench_accounts (id integer PRIMARY KEY, v bigint NOT NULL)");
      n.exec("INSERT INTO bench_accounts SELECT g, 0 FROM generate_series(0, 999) g");
      // The agent makes dtx_markers on its first start: a fresh database has none yet.
      n.exec(
          "DO $$ BEGIN IF to_regclass('dtx_markers') IS NOT NULL THEN "
          "DELETE FROM dtx_markers WHERE agent = 'bench'; END IF; END $$");
    }
    AgentProcess agent(abs + "/pg", {"--postgres", pg_url, "--pool", std::to_string(max_clients)},
                       max_clients);
    {
      // What one HTTP round trip costs here, for reading the rows below.
      rest::ClientOptions co;
      co.bearer_token = kToken;
      rest::Client client(co);
      constexpr int kTrips = 2000;
      const auto t0 = Clk::now();
      int ok = 0;
      for (int i = 0; i < kTrips; ++i) {
        auto r = client.get(agent.address(), "/healthz");
        ok += r.ok() && r->status == 200;
      }
      fmt::print("{:<18} | one keep-alive HTTP round trip (GET /healthz, {} of {} ok): {:.0f} us\n",
                 "", ok, kTrips, static_cast<double>(since_ns(t0)) / kTrips / 1e3);
    }
    const std::string sql = "UPDATE bench_accounts SET v = v + $1 WHERE id = $2";
    std::atomic<uint64_t> gen{0};
    // BEGIN; UPDATE; PREPARE TRANSACTION; COMMIT PREPARED, one connection per client.
    auto direct_pg = [&](int c, uint64_t run) {
      std::vector<std::unique_ptr<pqxx::connection>> conns;
      for (int i = 0; i < c; ++i)
        conns.push_back(std::make_unique<pqxx::connection>(pg_url));
      return closed_loop(c, seconds, [&](int cl, uint64_t n) {
        try {
          pqxx::nontransaction x(*conns[cl]);
          const std::string gid = fmt::format("direct-{}-{}-{}", run, cl, n);
          x.exec("BEGIN");
          x.exec_params(sql, 1, cl);
          x.exec("PREPARE TRANSACTION " + x.quote(gid));
          // A prepare that did not happen makes COMMIT PREPARED throw.
          x.exec("COMMIT PREPARED " + x.quote(gid));
          return true;
        } catch (const std::exception&) {
          return false;
        }
      });
    };
    for (int c : clients) {
      std::vector<Row> a, one, d;
      for (int p = 0; p < pairs; ++p) {
        for (bool one_shot : {false, true}) {
          rest::ClientOptions co;
          co.bearer_token = kToken;
          co.connections_per_peer_max = static_cast<size_t>(c);
          co.io_threads = 2;
          rest::Client client(co);
          const uint64_t run = gen++;
          forget_runs_before(client, agent.address(), run);
          (one_shot ? one : a)
              .push_back(closed_loop(
                  c, seconds,
                  [&](int cl, uint64_t n) {
                    return (one_shot ? agent_one_shot : agent_tx)(client, agent.address(),
                                                                  bench_txid(run, cl, n), sql, cl);
                  },
                  agent.pid()));
          if (one_shot) break;
          d.push_back(direct_pg(c, gen++));
        }
      }
      print_row("postgresql", c, a, d, step_summary(false));
      print_row("  one-shot", c, one, d, step_summary(true));
    }
  }

  if (sqlite) {
    const std::string db = abs + "/bench.db";
    std::filesystem::remove(db);
    std::filesystem::remove_all(abs + "/sqlite-wal");
    {
      sqlite3* h = nullptr;
      sqlite3_open(db.c_str(), &h);
      sqlite3_exec(
          h,
          "PRAGMA journal_mode=WAL; CREATE TABLE bench_accounts (id INTEGER PRIMARY KEY, v "
          "INTEGER NOT NULL); WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM g "
          "WHERE x < 999) INSERT INTO bench_accounts SELECT x, 0 FROM g;",
          nullptr, nullptr, nullptr);
      sqlite3_close(h);
    }
    const std::string sql = "UPDATE bench_accounts SET v = v + $1 WHERE id = $2";
    std::atomic<uint64_t> gen{0};
    // BEGIN IMMEDIATE; UPDATE; COMMIT with synchronous=FULL, one connection per client.
    auto direct_sqlite = [&](int c) {
      std::vector<sqlite3*> conns(c, nullptr);
      for (auto& h : conns) {
        sqlite3_open(db.c_str(), &h);
        sqlite3_busy_timeout(h, 5000);
        sqlite3_exec(h, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
      }
      Row r = closed_loop(c, seconds, [&](int cl, uint64_t) {
        sqlite3* h = conns[cl];
        if (sqlite3_exec(h, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
          return false;
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(h, "UPDATE bench_accounts SET v = v + ?1 WHERE id = ?2", -1, &st,
                           nullptr);
        sqlite3_bind_int64(st, 1, 1);
        sqlite3_bind_int64(st, 2, cl);
        const bool ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_finalize(st);
        if (!ok) {
          sqlite3_exec(h, "ROLLBACK", nullptr, nullptr, nullptr);
          return false;
        }
        return sqlite3_exec(h, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
      });
      for (auto h : conns)
        sqlite3_close(h);
      return r;
    };
    for (int c : clients) {
      std::vector<Row> a, one, d;
      for (int p = 0; p < pairs; ++p) {
        for (bool one_shot : {false, true}) {
          {
            AgentProcess agent(abs + "/sqlite", {"--sqlite", db, "--wal-dir", abs + "/sqlite-wal"},
                               std::max(2, c));
            rest::ClientOptions co;
            co.bearer_token = kToken;
            co.connections_per_peer_max = static_cast<size_t>(c);
            rest::Client client(co);
            const uint64_t run = gen++;
            forget_runs_before(client, agent.address(), run);
            (one_shot ? one : a)
                .push_back(closed_loop(
                    c, seconds,
                    [&](int cl, uint64_t n) {
                      return (one_shot ? agent_one_shot : agent_tx)(
                          client, agent.address(), bench_txid(run, cl, n), sql, cl);
                    },
                    agent.pid()));
          }
          if (!one_shot) d.push_back(direct_sqlite(c));  // with no agent running
        }
      }
      print_row("sqlite", c, a, d, step_summary(false));
      print_row("  one-shot", c, one, d, step_summary(true));
    }
  }
  return 0;
}
