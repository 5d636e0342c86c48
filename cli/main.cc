// dtx: the command line for a dtx coordinator group.
//
//   TX=$(dtx begin)
//   dtx exec $TX bank-a 'UPDATE accounts SET balance = balance - $1 WHERE id = $2' 5 1
//   dtx exec $TX bank-b 'UPDATE accounts SET balance = balance + $1 WHERE id = $2' 5 7
//   dtx commit $TX
//
// Coordinators: --coordinator host:port (repeatable) or DTX_COORDINATOR
// ("h1:p1,h2:p2"); default 127.0.0.1:7001. Tokens: --token-file or
// DTX_TOKEN (the client token); admin commands (indoubt) need the cluster
// token: --cluster-token-file or DTX_CLUSTER_TOKEN. Never on the command
// line itself.
//
// Exit codes: 0 success (committed); 1 aborted; 2 bad usage or input (4xx);
// 3 outcome unknown (ask `dtx status`); 4 unreachable, or a server error.
#include <CLI/CLI.hpp>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/api_client.h"
#include "cli/bank.h"
#include "cli/bench.h"
#include "cli/cluster.h"
#include "rest/auth.h"
#include "rest/json.h"

namespace {

using namespace dtx;

enum Exit { kOk = 0, kAborted = 1, kUsage = 2, kUnknown = 3, kFailed = 4 };

struct Common {
  std::vector<std::string> coordinators;
  std::string token_file;
  std::string cluster_token_file;
  bool json = false;
  int64_t timeout_ms = 60'000;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Result<std::string> load_token(const std::string& file, const char* env) {
  if (!file.empty()) {
    auto t = rest::TokenAuth::from_file(file);
    if (!t.ok()) return t.status();
    return t->primary_token();
  }
  auto t = rest::TokenAuth::from_env(env);
  if (!t.ok()) {
    return error(
        Code::invalid_argument,
        std::string("no token: give --token-file (or --cluster-token-file) or set ") + env);
  }
  return t->primary_token();
}

std::vector<std::string> coordinators_of(const Common& c) {
  if (!c.coordinators.empty()) return c.coordinators;
  if (const char* e = std::getenv("DTX_COORDINATOR"); e && *e) return split(e, ',');
  return {"127.0.0.1:7001"};
}

std::string text_of(const boost::json::value& v) {
  if (v.is_string()) return std::string(v.as_string().c_str());
  if (v.is_null()) return "NULL";
  return boost::json::serialize(v);
}

void print_rows(const boost::json::object& o) {
  if (o.contains("columns") && o.at("columns").is_array() && !o.at("columns").as_array().empty()) {
    const auto& cols = o.at("columns").as_array();
    const auto& rows = o.at("rows").as_array();
    std::vector<size_t> width;
    for (const auto& c : cols)
      width.push_back(text_of(c).size());
    for (const auto& r : rows) {
      const auto& a = r.as_array();
      for (size_t i = 0; i < a.size() && i < width.size(); ++i)
        width[i] = std::max(width[i], text_of(a[i]).size());
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string l;
      for (size_t i = 0; i < cells.size(); ++i) {
        l += (i ? " | " : " ");
        l += cells[i];
        l += std::string(width[i] - std::min(width[i], cells[i].size()), ' ');
      }
      std::printf("%s\n", l.c_str());
    };
    std::vector<std::string> head;
    for (const auto& c : cols)
      head.push_back(text_of(c));
    line(head);
    std::string sep;
    for (size_t i = 0; i < width.size(); ++i)
      sep += (i ? "-+-" : "-") + std::string(width[i], '-');
    std::printf("%s\n", sep.c_str());
    for (const auto& r : rows) {
      std::vector<std::string> cells;
      for (const auto& v : r.as_array())
        cells.push_back(text_of(v));
      cells.resize(width.size());
      line(cells);
    }
    std::printf("(%zu rows)\n", rows.size());
  }
  if (o.contains("rows_affected")) {
    std::printf("rows affected: %s\n", text_of(o.at("rows_affected")).c_str());
  }
}

// A parameter given on the command line: a JSON scalar if it parses as one
// (5, 2.5, true, null, "5"), else the text itself.
boost::json::value param_of(const std::string& s) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(s, ec);
  if (!ec && !v.is_array() && !v.is_object()) return v;
  return boost::json::value(s);
}

int exit_for(int status) {
  if (status >= 200 && status < 300) return status == 202 ? kUnknown : kOk;
  if (status == 409) return kAborted;
  if (status >= 400 && status < 500) return kUsage;
  return kFailed;
}

// Prints an answer: JSON as is with --json; else a short human form.
int report(const Common& c, const rest::Response& r, const std::string& kind) {
  auto doc = rest::parse_json(r.body);
  if (c.json || !doc.ok() || !doc->is_object()) {
    std::printf("%s\n", r.body.c_str());
    if (kind == "outcome" && doc.ok() && doc->is_object()) {
      const auto& o = doc->as_object();
      if (o.contains("outcome") && o.at("outcome") == "aborted") return kAborted;
    }
    return exit_for(r.status);
  }
  const auto& o = doc->as_object();
  if (o.contains("error") && !(o.contains("outcome") && kind == "outcome")) {
    const auto& e = o.at("error").as_object();
    std::fprintf(stderr, "dtx: %s (%d %s)\n", text_of(e.at("message")).c_str(), r.status,
                 text_of(e.at("code")).c_str());
    return exit_for(r.status);
  }
  if (kind == "begin") {
    std::printf("%s\n", text_of(o.at("txid")).c_str());
  } else if (kind == "rows") {
    print_rows(o);
  } else if (kind == "outcome") {
    const std::string outcome = text_of(o.at("outcome"));
    std::printf("%s %s\n", text_of(o.at("txid")).c_str(), outcome.c_str());
    if (o.contains("reason")) {
      const auto& why = o.at("reason").as_object();
      std::printf(
          "  reason: %s%s%s\n", text_of(why.at("code")).c_str(),
          why.contains("participant") ? (" at " + text_of(why.at("participant"))).c_str() : "",
          why.contains("message") ? (": " + text_of(why.at("message"))).c_str() : "");
    }
    if (o.contains("results")) {
      for (const auto& b : o.at("results").as_array()) {
        const auto& bo = b.as_object();
        std::printf("-- %s\n", text_of(bo.at("participant")).c_str());
        for (const auto& st : bo.at("statements").as_array())
          if (st.is_object()) print_rows(st.as_object());
      }
    }
    if (outcome == "aborted") return kAborted;
    if (outcome == "unknown") return kUnknown;
  } else {
    std::printf("%s\n", boost::json::serialize(*doc).c_str());
  }
  return exit_for(r.status);
}

int run(const Common& c, bool cluster_token, rest::Method m, const std::string& target,
        const std::string& body, const std::string& kind, const std::string& key = "") {
  auto token = cluster_token ? load_token(c.cluster_token_file, "DTX_CLUSTER_TOKEN")
                             : load_token(c.token_file, "DTX_TOKEN");
  if (!token.ok()) {
    std::fprintf(stderr, "dtx: %s\n", token.status().message().c_str());
    return kUsage;
  }
  cli::ApiClient api(coordinators_of(c), *token, c.timeout_ms);
  rest::Headers h;
  if (!key.empty()) h.set("Idempotency-Key", key);
  auto r = api.call(m, target, body, h);
  if (!r.ok()) {
    std::fprintf(stderr, "dtx: %s\n", r.status().describe().c_str());
    // A request that may have reached the leader has an unknown outcome.
    return r.status().code() == Code::unavailable ? kFailed : kUnknown;
  }
  return report(c, *r, kind);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dtx: transactions across databases, by hand and from scripts."};
  app.require_subcommand(1);
  Common c;
  app.add_option("--coordinator,-c", c.coordinators,
                 "a coordinator's host:port (repeatable; default $DTX_COORDINATOR or "
                 "127.0.0.1:7001)");
  app.add_option("--token-file", c.token_file, "file holding the client token (else $DTX_TOKEN)");
  app.add_option("--cluster-token-file", c.cluster_token_file,
                 "file holding the cluster token, for admin commands (else $DTX_CLUSTER_TOKEN)");
  app.add_flag("--json", c.json, "print the coordinator's JSON answer as is");
  app.add_option("--timeout-ms", c.timeout_ms, "how long to wait for an answer")
      ->check(CLI::Range(1, 3'600'000));
  app.footer(
      "Exit codes: 0 ok/committed, 1 aborted, 2 bad usage or input, 3 outcome unknown, "
      "4 unreachable or server error.");

  std::string protocol, key, txid, participant, sql, wait = "decided", state, file;
  int64_t tx_timeout = 0, limit = 100;
  std::vector<std::string> params;

  auto* begin = app.add_subcommand("begin", "begin a transaction; prints its txid");
  begin->add_option("--protocol", protocol, "2pc (default) or 3pc")
      ->check(CLI::IsMember({"2pc", "3pc"}));
  begin->add_option("--timeout", tx_timeout, "abort it if not committed within this many ms");
  begin->add_option("--key", key, "an Idempotency-Key: a repeat returns the same transaction");

  auto* exec = app.add_subcommand("exec", "run one SQL statement in a transaction");
  exec->add_option("txid", txid, "the transaction")->required();
  exec->add_option("participant", participant, "the database's participant name")->required();
  exec->add_option("sql", sql, "the statement; $1, $2... are bound to the params")->required();
  exec->add_option("params", params,
                   "parameters: JSON scalars (5, 2.5, true, null, '\"5\"') or plain text");

  auto* commit = app.add_subcommand("commit", "commit a transaction (exit 0 committed, 1 aborted)");
  commit->add_option("txid", txid)->required();
  commit
      ->add_option("--wait", wait,
                   "decided (default: answer at the decision) or completed (after every "
                   "database applied it)")
      ->check(CLI::IsMember({"decided", "completed"}));

  auto* abort = app.add_subcommand("abort", "abort a transaction");
  abort->add_option("txid", txid)->required();

  auto* submit = app.add_subcommand(
      "submit",
      "run a one-shot transaction from a JSON file ('-' for stdin): "
      "{\"protocol\", \"branches\": [{\"participant\", \"statements\": [{\"sql\", "
      "\"params\"}]}]}");
  submit->add_option("file", file)->required();
  submit->add_option("--key", key, "an Idempotency-Key: a retry runs it once");

  auto* status = app.add_subcommand("status", "show a transaction's state and outcome");
  status->add_option("txid", txid)->required();

  auto* list = app.add_subcommand("list", "list recent transactions");
  list->add_option("--state", state,
                   "active, preparing, deciding, decided, completed, aborted or in_doubt");
  list->add_option("--limit", limit)->check(CLI::Range(1, 1000));

  auto* cluster = app.add_subcommand(
      "cluster",
      "show the coordinator group (leader, replicas, participants); or run a local one: "
      "`dtx cluster up|down|status`");
  cli::ClusterUpOptions up_opt;
  bool wipe = false;
  std::string cluster_dir = "var/cluster";
  auto* cluster_up = cluster->add_subcommand(
      "up",
      "start a local cluster: coordinators, SQLite and PostgreSQL databases with their "
      "agents, an accounts table in each (data, logs and tokens under --dir)");
  cluster_up->add_option("--dir", up_opt.dir, "where everything goes")->default_val(up_opt.dir);
  cluster_up->add_option("--coordinators", up_opt.coordinators, "3 or 5")
      ->default_val(up_opt.coordinators);
  cluster_up->add_option("--sqlite", up_opt.sqlite, "SQLite databases, each with an agent")
      ->default_val(up_opt.sqlite);
  cluster_up
      ->add_option("--postgres", up_opt.postgres,
                   "throwaway PostgreSQL servers, each with an agent")
      ->default_val(up_opt.postgres);
  cluster_up->add_option("--accounts", up_opt.accounts, "bank accounts per database")
      ->default_val(up_opt.accounts);
  cluster_up
      ->add_option("--base-port", up_opt.base_port,
                   "coordinators from base+1, Paxos from base+101, agents from base+701, "
                   "PostgreSQL from base+801 (the next free port each)")
      ->default_val(up_opt.base_port);
  cluster_up->add_flag("--fresh", up_opt.fresh, "wipe an earlier cluster in --dir first");
  cluster_up->add_flag("--unsafe-no-fsync", up_opt.unsafe_no_fsync,
                       "databases without fsync (demos on tmpfs only; loud about it)");
  auto* cluster_down = cluster->add_subcommand(
      "down", "stop what `dtx cluster up` started (by pid) and its PostgreSQL servers");
  cluster_down->add_option("--dir", cluster_dir)->default_val(cluster_dir);
  cluster_down->add_flag("--wipe", wipe, "remove the directory too");
  auto* cluster_st =
      cluster->add_subcommand("status", "which of the local cluster's processes run");
  cluster_st->add_option("--dir", cluster_dir)->default_val(cluster_dir);
  auto* indoubt = app.add_subcommand(
      "indoubt", "list in-doubt transactions with each participant's state (cluster token)");

  cli::BankOptions bank_opt;
  std::string bank_protocols = "2pc,3pc";
  auto* bank = app.add_subcommand(
      "bank",
      "transfers between accounts of different databases of a local cluster (dtx cluster up), "
      "checked in the databases themselves: no money created or lost, every outcome as "
      "answered, nothing left in doubt; --nemesis injects faults while it runs");
  bank->add_option("--dir", bank_opt.dir, "the local cluster's directory")
      ->default_val(bank_opt.dir);
  bank->add_option("--duration", bank_opt.duration_s, "seconds to run (without --faults)")
      ->default_val(bank_opt.duration_s);
  bank->add_option("--clients", bank_opt.clients, "concurrent clients")
      ->default_val(bank_opt.clients)
      ->check(CLI::Range(1, 256));
  bank->add_option("--protocols", bank_protocols, "2pc, 3pc or both, comma-separated")
      ->default_val(bank_protocols);
  bank->add_option("--interactive", bank_opt.interactive,
                   "share of transfers run interactively (begin, execs, commit); the rest are "
                   "one-shot submits with an idempotency key")
      ->default_val(bank_opt.interactive)
      ->check(CLI::Range(0.0, 1.0));
  bank->add_flag("--nemesis", bank_opt.nemesis,
                 "kill -9 and restart coordinators (the leader too), agents and PostgreSQL "
                 "servers, pause them, and once restart a replica on a wiped data directory");
  bank->add_option("--faults", bank_opt.faults,
                   "with --nemesis: run until this many faults were injected and healed")
      ->check(CLI::Range(0, 100000));
  bank->add_option("--fault-every", bank_opt.fault_every_s, "seconds between faults")
      ->default_val(bank_opt.fault_every_s);
  bank->add_option("--report", bank_opt.report, "write the report as JSON here");

  cli::BenchOptions bench_opt;
  std::string bench_participants = "bank-a,bank-b", bench_clients = "1,4,16,64",
              bench_modes = "direct,2pc,3pc";
  auto* bench = app.add_subcommand(
      "bench",
      "closed-loop one-shot transfers across two PostgreSQL participants through dtx, against "
      "a client doing PREPARE TRANSACTION / COMMIT PREPARED on the same two databases itself");
  bench->add_option("--participants", bench_participants,
                    "the two PostgreSQL participants' names, comma-separated");
  bench->add_option("--pg-a", bench_opt.pg_a, "the first participant's database URL")->required();
  bench->add_option("--pg-b", bench_opt.pg_b, "the second participant's database URL")->required();
  bench->add_option("--clients", bench_clients, "client counts, comma-separated");
  bench->add_option("--modes", bench_modes,
                    "direct (the baseline), 2pc, 3pc; comma-separated, run in this order");
  bench->add_option("--seconds", bench_opt.seconds, "measured seconds per row");
  bench->add_option("--table", bench_opt.table, "the table created in both databases");
  bench->add_option("--out", bench_opt.out_dir, "where bench.json, bench.md and bench.svg go");

  CLI11_PARSE(app, argc, argv);

  if (*begin) {
    boost::json::object b;
    if (!protocol.empty()) b["protocol"] = protocol;
    if (tx_timeout > 0) b["timeout_ms"] = tx_timeout;
    return run(c, false, rest::Method::post, "/v1/transactions", boost::json::serialize(b), "begin",
               key);
  }
  if (*exec) {
    boost::json::object b;
    b["participant"] = participant;
    b["sql"] = sql;
    boost::json::array ps;
    for (const auto& p : params)
      ps.push_back(param_of(p));
    b["params"] = std::move(ps);
    return run(c, false, rest::Method::post, "/v1/transactions/" + txid + "/exec",
               boost::json::serialize(b), "rows");
  }
  if (*commit) {
    boost::json::object b;
    b["wait"] = wait;
    return run(c, false, rest::Method::post, "/v1/transactions/" + txid + "/commit",
               boost::json::serialize(b), "outcome");
  }
  if (*abort) {
    return run(c, false, rest::Method::post, "/v1/transactions/" + txid + "/abort", "{}",
               "outcome");
  }
  if (*submit) {
    std::string body;
    if (file == "-") {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      body = ss.str();
    } else {
      std::ifstream in(file);
      if (!in) {
        std::fprintf(stderr, "dtx: cannot read %s\n", file.c_str());
        return kUsage;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      body = ss.str();
    }
    return run(c, false, rest::Method::post, "/v1/submit", body, "outcome", key);
  }
  if (*status) return run(c, false, rest::Method::get, "/v1/transactions/" + txid, "", "json");
  if (*list) {
    std::string target = "/v1/transactions?limit=" + std::to_string(limit);
    if (!state.empty()) target += "&state=" + state;
    return run(c, false, rest::Method::get, target, "", "json");
  }
  if (*cluster_up) return cli::cluster_up(up_opt);
  if (*cluster_down) return cli::cluster_down(cluster_dir, wipe);
  if (*cluster_st) return cli::cluster_status(cluster_dir);
  if (*cluster) return run(c, false, rest::Method::get, "/v1/cluster", "", "json");
  if (*indoubt) return run(c, true, rest::Method::get, "/v1/admin/in-doubt", "", "json");
  if (*bank) {
    bank_opt.protocols = split(bank_protocols, ',');
    for (const auto& p : bank_opt.protocols) {
      if (p != "2pc" && p != "3pc") {
        std::fprintf(stderr, "dtx: --protocols takes 2pc and 3pc\n");
        return kUsage;
      }
    }
    return cli::run_bank(bank_opt);
  }
  if (*bench) {
    auto token = load_token(c.token_file, "DTX_TOKEN");
    if (!token.ok()) {
      std::fprintf(stderr, "dtx: %s\n", token.status().message().c_str());
      return kUsage;
    }
    bench_opt.token = *token;
    bench_opt.coordinators = coordinators_of(c);
    const auto parts = split(bench_participants, ',');
    if (parts.size() != 2) {
      std::fprintf(stderr, "dtx: --participants names exactly two participants\n");
      return kUsage;
    }
    bench_opt.participant_a = parts[0];
    bench_opt.participant_b = parts[1];
    bench_opt.clients.clear();
    for (const auto& x : split(bench_clients, ',')) {
      const int n = std::atoi(x.c_str());
      if (n < 1 || n > 512) {
        std::fprintf(stderr, "dtx: --clients takes numbers from 1 to 512\n");
        return kUsage;
      }
      bench_opt.clients.push_back(n);
    }
    bench_opt.modes = split(bench_modes, ',');
    for (const auto& m : bench_opt.modes) {
      if (m != "direct" && m != "2pc" && m != "3pc") {
        std::fprintf(stderr, "dtx: --modes takes direct, 2pc and 3pc\n");
        return kUsage;
      }
    }
    return cli::run_bench(bench_opt);
  }
  return kUsage;
}
