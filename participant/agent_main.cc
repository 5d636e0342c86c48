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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "dtx-agent: the participant agent beside one PostgreSQL or SQLite database. It runs each "
      "global transaction's branch, votes, holds prepared branches through crashes and applies "
      "the coordinator group's decisions. See docs/agent.md."};
  app.require_subcommand(0, 1);
  app.fallthrough();  // subcommands take the top-level options too (--wal-dir, --sqlite)
  AgentOptions opt;
  std::string postgres, sqlite, wal_dir, token_file, coordinators, isolation = "read-committed";
  std::string log_level = "info";
  size_t pool = 16;
  int64_t active_ms = 60'000, inquiry_first_ms = 1000, inquiry_max_ms = 30'000,
          precommit_ms = 10'000, retention_ms = opt.tombstone_retention_ms;
  app.add_option("--name", opt.name, "this participant's name, as the coordinator knows it");
  app.add_option("--cluster", opt.cluster, "the coordinator cluster's id");
  app.add_option("--listen", opt.listen, "host:port to serve the branch API on")
      ->default_val("127.0.0.1:7701");
  app.add_option("--postgres", postgres,
                 "PostgreSQL URL (postgresql://user@host:port/db); the password from PGPASSWORD "
                 "or ~/.pgpass");
  app.add_option("--sqlite", sqlite, "SQLite database file");
  app.add_option("--wal-dir", wal_dir, "SQLite: the agent's write-ahead log directory");
  app.add_option("--coordinator", coordinators,
                 "coordinator replicas to ask about prepared branches: host:port,...");
  app.add_option(
      "--token-file", token_file,
      "file holding the cluster token (or set DTX_CLUSTER_TOKEN); never on the command line");
  app.add_option("--pool", pool,
                 "PostgreSQL: branch sessions (max_prepared_transactions must be at least this)")
      ->default_val(pool);
  app.add_option("--isolation", isolation, "PostgreSQL branches' isolation level")
      ->check(CLI::IsMember({"read-committed", "repeatable-read", "serializable"}))
      ->default_val(isolation);
  app.add_option("--workers", opt.workers,
                 "threads per lane (first execs, later execs, decisions, timer work)")
      ->default_val(opt.workers);
  app.add_option("--http-threads", opt.http_threads,
                 "HTTP I/O threads (they never wait for the database)")
      ->default_val(opt.http_threads);
  app.add_option("--active-timeout-ms", active_ms, "an ACTIVE branch idle this long aborts")
      ->default_val(active_ms);
  app.add_option("--inquiry-first-ms", inquiry_first_ms,
                 "a PREPARED branch first asks the coordinator after this long")
      ->default_val(inquiry_first_ms);
  app.add_option("--inquiry-max-ms", inquiry_max_ms, "cap of the inquiry backoff")
      ->default_val(inquiry_max_ms);
  app.add_option("--precommit-timeout-ms", precommit_ms,
                 "a PRECOMMITTED branch commits by itself after this long (3PC)")
      ->default_val(precommit_ms);
  app.add_option(
         "--retention-ms", retention_ms,
         "how long decided branches' outcomes are kept in memory (>= the coordinator's retention)")
      ->default_val(retention_ms);
  app.add_option("--tick-ms", opt.tick_ms, "timer resolution")->default_val(opt.tick_ms);
  bool unsafe_no_fsync = false;
  app.add_flag("--unsafe-no-fsync", unsafe_no_fsync,
               "start even if the database does not make commits durable (PostgreSQL fsync or "
               "full_page_writes off, SQLite synchronous not FULL): tests only; warns at every "
               "start");
  app.add_option("--log-level", log_level, logging::kLevelNames.data())->default_val(log_level);

  auto* show = app.add_subcommand(
      "show-prepared", "print a SQLite branch's redo and undo from the agent WAL (agent stopped)");
  std::string show_txid;
  show->add_option("--txid", show_txid, "the branch")->required();
  auto* resolve = app.add_subcommand(
      "resolve",
      "SQLite, agent stopped: record that an operator settled a prepared branch by hand (after a "
      "conflicting redo stopped the agent); inspect it with show-prepared first");
  std::string resolve_txid, resolve_outcome;
  resolve->add_option("--txid", resolve_txid, "the branch")->required();
  resolve->add_option("--outcome", resolve_outcome, "what the operator made of it")
      ->check(CLI::IsMember({"committed", "aborted"}))
      ->required();
  CLI11_PARSE(app, argc, argv);

  if (Status s = logging::setup("dtx-agent", log_level); !s.ok()) return fail(s.describe());

  if (show->parsed()) {
    if (wal_dir.empty()) return fail("show-prepared needs --wal-dir");
    auto text = sqlite.empty() ? sqlite::describe_prepared(wal_dir, show_txid)
                               : sqlite::describe_prepared(wal_dir, show_txid, sqlite);
    if (!text.ok()) return fail(text.status().describe(), 1);
    fmt::print("{}", *text);
    return 0;
  }

  if (resolve->parsed()) {
    if (wal_dir.empty() || sqlite.empty()) return fail("resolve needs --sqlite and --wal-dir");
    sqlite::SqliteOptions so;
    so.db_path = sqlite;
    so.wal_dir = wal_dir;
    Status s = sqlite::SqliteResource::resolve_by_operator(
        so, resolve_txid, resolve_outcome == "committed" ? Outcome::committed : Outcome::aborted);
    if (!s.ok()) return fail(s.describe(), 1);
    fmt::print("recorded: {} was {} by an operator\n", resolve_txid, resolve_outcome);
    return 0;
  }

  if (opt.name.empty() || opt.cluster.empty()) return fail("--name and --cluster are required");
  if (postgres.empty() == sqlite.empty()) return fail("give exactly one of --postgres or --sqlite");
  if (!sqlite.empty() && wal_dir.empty()) return fail("--sqlite needs --wal-dir");
  auto token = token_file.empty() ? rest::TokenAuth::from_env("DTX_CLUSTER_TOKEN")
                                  : rest::TokenAuth::from_file(token_file);
  if (!token.ok()) return fail("cluster token: " + token.status().describe());
  opt.token = token->primary_token();
  opt.coordinators = split(coordinators);
  if (opt.coordinators.empty()) {
    spdlog::warn("no --coordinator given: prepared branches will wait for decisions to be sent");
  }
  auto ticks = [&](int64_t ms) {
    return static_cast<uint64_t>(std::max<int64_t>(1, ms / opt.tick_ms));
  };
  opt.timers.active_idle_ticks = ticks(active_ms);
  opt.timers.inquiry_first_ticks = ticks(inquiry_first_ms);
  opt.timers.inquiry_max_ticks = ticks(inquiry_max_ms);
  opt.timers.precommit_timeout_ticks = ticks(precommit_ms);
  opt.tombstone_retention_ms = retention_ms;

  std::unique_ptr<Resource> resource;
  if (!postgres.empty()) {
    // A connection attempt to an unreachable server must not hang a worker
    // (or the health check) for the TCP timeout: 10 s unless the URL or the
    // environment says otherwise.
    ::setenv("PGCONNECT_TIMEOUT", "10", /*overwrite=*/0);
    PgOptions po;
    po.url = postgres;
    po.cluster_id = opt.cluster;
    po.agent_name = opt.name;
    po.pool_size = pool;
    po.unsafe_no_fsync = unsafe_no_fsync;
    po.isolation = isolation == "serializable"      ? PgIsolation::serializable
                   : isolation == "repeatable-read" ? PgIsolation::repeatable_read
                                                    : PgIsolation::read_committed;
    resource = std::make_unique<PgResource>(po);
  } else {
    sqlite::SqliteOptions so;
    so.db_path = sqlite;
    so.wal_dir = wal_dir;
    so.unsafe_no_fsync = unsafe_no_fsync;
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
    resource = std::make_unique<sqlite::SqliteResource>(so);
  }
  if (unsafe_no_fsync) {
    spdlog::warn(
        "UNSAFE: --unsafe-no-fsync: agent {} starts even if its database may lose a prepared "
        "branch or a commit in a crash",
        opt.name);
  }
  auto agent = Agent::start(opt, std::move(resource));
  if (!agent.ok()) {
    spdlog::critical("agent {} cannot start: {}", opt.name, agent.status().describe());
    return 1;
  }
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  while (!g_stop)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  spdlog::info("agent {} stopping", opt.name);
  (*agent)->stop();
  return 0;
}
