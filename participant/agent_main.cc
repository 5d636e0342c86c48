// dtx-agent: the participant agent beside one database (docs/agent.md).
//
//   dtx-agent --name bank-a --cluster c1 --postgres postgresql://dtx@127.0.0.1/bank
//             --coordinator 127.0.0.1:7001 --token-file /etc/dtx/cluster-token
//   dtx-agent --name ledger --cluster c1 --sqlite ledger.db --wal-dir ledger-wal ...
//   dtx-agent show-prepared --wal-dir ledger-wal --txid T [--sqlite ledger.db]
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "common/logging.h"
#include "participant/agent.h"
#include "participant/pg/pg_resource.h"
#include "participant/sqlite/sqlite_resource.h"
#include "rest/auth.h"

namespace {

using namespace dtx;
using namespace dtx::participant;

volatile std::sig_atomic_t g_stop = 0;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

int fail(const std::string& what, int code = 2) {
  fmt::print(stderr, "dtx-agent: {}\n", what);
  return code;
}

// Everything the command line says.
struct Flags {
  AgentOptions opt;
  std::string postgres, sqlite, wal_dir, token_file, coordinators, isolation = "read-committed";
  std::string log_level = "info";
  size_t pool = 16;
  int64_t active_ms = 60'000, inquiry_first_ms = 1000, inquiry_max_ms = 30'000,
          precommit_ms = 10'000, retention_ms = AgentOptions{}.tombstone_retention_ms;
  bool unsafe_no_fsync = false;
  std::string show_txid, resolve_txid, resolve_outcome;
  CLI::App* show = nullptr;
  CLI::App* resolve = nullptr;
};

void add_flags(CLI::App& app, Flags& f) {
  app.add_option("--name", f.opt.name, "this participant's name, as the coordinator knows it");
  app.add_option("--cluster", f.opt.cluster, "the coordinator cluster's id");
  app.add_option("--listen", f.opt.listen, "host:port to serve the branch API on")
      ->default_val("127.0.0.1:7701");
  app.add_option("--postgres", f.postgres,
                 "PostgreSQL URL (postgresql://user@host:port/db); the password from PGPASSWORD "
                 "or ~/.pgpass");
  app.add_option("--sqlite", f.sqlite, "SQLite database file");
  app.add_option("--wal-dir", f.wal_dir, "SQLite: the agent's write-ahead log directory");
  app.add_option("--coordinator", f.coordinators,
                 "coordinator replicas to ask about prepared branches: host:port,...");
  app.add_option(
      "--token-file", f.token_file,
      "file holding the cluster token (or set DTX_CLUSTER_TOKEN); never on the command line");
  app.add_option("--pool", f.pool,
                 "PostgreSQL: branch sessions (max_prepared_transactions must be at least this)")
      ->default_val(f.pool);
  app.add_option("--isolation", f.isolation, "PostgreSQL branches' isolation level")
      ->check(CLI::IsMember({"read-committed", "repeatable-read", "serializable"}))
      ->default_val(f.isolation);
  app.add_option("--workers", f.opt.workers,
                 "threads per lane (first execs, later execs, decisions, timer work)")
      ->default_val(f.opt.workers);
  app.add_option("--http-threads", f.opt.http_threads,
                 "HTTP I/O threads (they never wait for the database)")
      ->default_val(f.opt.http_threads);
  app.add_option("--active-timeout-ms", f.active_ms, "an ACTIVE branch idle this long aborts")
      ->default_val(f.active_ms);
  app.add_option("--inquiry-first-ms", f.inquiry_first_ms,
                 "a PREPARED branch first asks the coordinator after this long")
      ->default_val(f.inquiry_first_ms);
  app.add_option("--inquiry-max-ms", f.inquiry_max_ms, "cap of the inquiry backoff")
      ->default_val(f.inquiry_max_ms);
  app.add_option("--precommit-timeout-ms", f.precommit_ms,
                 "a PRECOMMITTED branch commits by itself after this long (3PC)")
      ->default_val(f.precommit_ms);
  app.add_option(
         "--retention-ms", f.retention_ms,
         "how long decided branches' outcomes are kept in memory (>= the coordinator's retention)")
      ->default_val(f.retention_ms);
  app.add_option("--tick-ms", f.opt.tick_ms, "timer resolution")->default_val(f.opt.tick_ms);
  app.add_flag("--unsafe-no-fsync", f.unsafe_no_fsync,
               "start even if the database does not make commits durable (PostgreSQL fsync or "
               "full_page_writes off, SQLite synchronous not FULL): tests only; warns at every "
               "start");
  app.add_option("--log-level", f.log_level, logging::kLevelNames.data())->default_val(f.log_level);
}

void add_subcommands(CLI::App& app, Flags& f) {
  f.show = app.add_subcommand(
      "show-prepared", "print a SQLite branch's redo and undo from the agent WAL (agent stopped)");
  f.show->add_option("--txid", f.show_txid, "the branch")->required();
  f.resolve = app.add_subcommand(
      "resolve",
      "SQLite, agent stopped: record that an operator settled a prepared branch by hand (after a "
      "conflicting redo stopped the agent); inspect it with show-prepared first");
  f.resolve->add_option("--txid", f.resolve_txid, "the branch")->required();
  f.resolve->add_option("--outcome", f.resolve_outcome, "what the operator made of it")
      ->check(CLI::IsMember({"committed", "aborted"}))
      ->required();
}

int show_prepared(const Flags& f) {
  if (f.wal_dir.empty()) return fail("show-prepared needs --wal-dir");
  auto text = f.sqlite.empty() ? sqlite::describe_prepared(f.wal_dir, f.show_txid)
                               : sqlite::describe_prepared(f.wal_dir, f.show_txid, f.sqlite);
  if (!text.ok()) return fail(text.status().describe(), 1);
  fmt::print("{}", *text);
  return 0;
}

int resolve_by_operator(const Flags& f) {
  if (f.wal_dir.empty() || f.sqlite.empty()) return fail("resolve needs --sqlite and --wal-dir");
  sqlite::SqliteOptions so;
  so.db_path = f.sqlite;
  so.wal_dir = f.wal_dir;
  Status s = sqlite::SqliteResource::resolve_by_operator(
      so, f.resolve_txid, f.resolve_outcome == "committed" ? Outcome::committed : Outcome::aborted);
  if (!s.ok()) return fail(s.describe(), 1);
  fmt::print("recorded: {} was {} by an operator\n", f.resolve_txid, f.resolve_outcome);
  return 0;
}

// Checks the flags and completes the agent's options; "" when usable,
// else what is wrong.
std::string configure(Flags& f) {
  if (f.opt.name.empty() || f.opt.cluster.empty()) return "--name and --cluster are required";
  if (f.postgres.empty() == f.sqlite.empty()) return "give exactly one of --postgres or --sqlite";
  if (!f.sqlite.empty() && f.wal_dir.empty()) return "--sqlite needs --wal-dir";
  auto token = f.token_file.empty() ? rest::TokenAuth::from_env("DTX_CLUSTER_TOKEN")
                                    : rest::TokenAuth::from_file(f.token_file);
  if (!token.ok()) return "cluster token: " + token.status().describe();
  f.opt.token = token->primary_token();
  f.opt.coordinators = split(f.coordinators);
  if (f.opt.coordinators.empty()) {
    spdlog::warn("no --coordinator given: prepared branches will wait for decisions to be sent");
  }
  auto ticks = [&](int64_t ms) {
    return static_cast<uint64_t>(std::max<int64_t>(1, ms / f.opt.tick_ms));
  };
  f.opt.timers.active_idle_ticks = ticks(f.active_ms);
  f.opt.timers.inquiry_first_ticks = ticks(f.inquiry_first_ms);
  f.opt.timers.inquiry_max_ticks = ticks(f.inquiry_max_ms);
  f.opt.timers.precommit_timeout_ticks = ticks(f.precommit_ms);
  f.opt.tombstone_retention_ms = f.retention_ms;
  return "";
}

std::unique_ptr<Resource> make_resource(const Flags& f) {
  if (!f.postgres.empty()) {
    // A connection attempt to an unreachable server must not hang a worker
    // (or the health check) for the TCP timeout: 10 s unless the URL or the
    // environment says otherwise.
    ::setenv("PGCONNECT_TIMEOUT", "10", /*overwrite=*/0);
    PgOptions po;
    po.url = f.postgres;
    po.cluster_id = f.opt.cluster;
    po.agent_name = f.opt.name;
    po.pool_size = f.pool;
    po.unsafe_no_fsync = f.unsafe_no_fsync;
    po.isolation = f.isolation == "serializable"      ? PgIsolation::serializable
                   : f.isolation == "repeatable-read" ? PgIsolation::repeatable_read
                                                      : PgIsolation::read_committed;
    return std::make_unique<PgResource>(po);
  }
  sqlite::SqliteOptions so;
  so.db_path = f.sqlite;
  so.wal_dir = f.wal_dir;
  so.unsafe_no_fsync = f.unsafe_no_fsync;
  // Tests only: crash at a named point (see SqliteOptions::test_hook), to
  // show recovery between a database commit and the agent's record of it.
  if (const char* at = std::getenv("DTX_AGENT_TEST_CRASH_AT")) {
    std::string point = at;
    so.test_hook = [point](std::string_view p, const std::string& txid) {
      if (p == point) {
        logging::txn_warn(txid, "test hook: crashing at {}", point);
        spdlog::default_logger()->flush();
        ::_exit(9);
      }
    };
  }
  return std::make_unique<sqlite::SqliteResource>(so);
}

int run_agent(const Flags& f) {
  if (f.unsafe_no_fsync) {
    spdlog::warn(
        "UNSAFE: --unsafe-no-fsync: agent {} starts even if its database may lose a prepared "
        "branch or a commit in a crash",
        f.opt.name);
  }
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  // A database that does not answer yet (starting, recovering from a crash)
  // is waited for, with backoff, rather than given up on: nothing is served
  // before recovery has run (A5), so waiting changes nothing but the delay.
  auto agent = Agent::start(f.opt, make_resource(f));
  for (int64_t wait_ms = 250; !agent.ok() && agent.status().code() == Code::unavailable && !g_stop;
       wait_ms = std::min<int64_t>(wait_ms * 2, 5000)) {
    spdlog::warn("agent {}: the database does not answer yet ({}); trying again in {} ms",
                 f.opt.name, agent.status().describe(), wait_ms);
    for (int64_t slept = 0; slept < wait_ms && !g_stop; slept += 50)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    agent = Agent::start(f.opt, make_resource(f));
  }
  if (g_stop && !agent.ok()) return 0;
  if (!agent.ok()) {
    spdlog::critical("agent {} cannot start: {}", f.opt.name, agent.status().describe());
    return 1;
  }
  while (!g_stop)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  spdlog::info("agent {} stopping", f.opt.name);
  (*agent)->stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "dtx-agent: the participant agent beside one PostgreSQL or SQLite database. It runs each "
      "global transaction's branch, votes, holds prepared branches through crashes and applies "
      "the coordinator group's decisions. See docs/agent.md."};
  app.require_subcommand(0, 1);
  app.fallthrough();  // subcommands take the top-level options too (--wal-dir, --sqlite)
  Flags f;
  add_flags(app, f);
  add_subcommands(app, f);
  CLI11_PARSE(app, argc, argv);
  if (Status s = logging::setup("dtx-agent", f.log_level); !s.ok()) return fail(s.describe());
  if (f.show->parsed()) return show_prepared(f);
  if (f.resolve->parsed()) return resolve_by_operator(f);
  if (std::string bad = configure(f); !bad.empty()) return fail(bad);
  return run_agent(f);
}
