#include "cli/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "rest/client.h"

namespace dtx::cli {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::string bin_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  return fs::path(buf).parent_path().string();
}

std::string pg_bin_dir() {
  std::string best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string b = e.path().string() + "/bin";
    if (fs::exists(b + "/initdb") && b > best) best = b;
  }
  return best;
}

bool is_root() {
  return ::geteuid() == 0;
}

// Runs argv (as the postgres user when root and `as_postgres`), waits, and
// returns its exit status; output to `log`.
int run_wait(std::vector<std::string> argv, const std::string& log, bool as_postgres = false) {
  if (as_postgres && is_root()) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> a;
    for (auto& s : argv)
      a.push_back(s.data());
    a.push_back(nullptr);
    ::execvp(a[0], a.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

std::string random_token() {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::string t;
  for (int i = 0; i < 40; ++i)
    t += k[rd() % 62];
  return t;
}

void write_secret(const std::string& path, const std::string& text) {
  std::ofstream(path) << text << "\n";
  ::chmod(path.c_str(), 0600);
}

const char* kSchema =
    "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL "
    "CHECK (balance >= 0));"
    "CREATE TABLE IF NOT EXISTS ledger (transfer TEXT NOT NULL, account INTEGER NOT NULL, "
    "delta BIGINT NOT NULL, PRIMARY KEY (transfer, account));";

Status init_sqlite(const std::string& path, int accounts) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    sqlite3_close(db);
    return error(Code::io_error, "cannot create " + path);
  }
  std::string sql = std::string("PRAGMA journal_mode=WAL;") + kSchema +
                    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < " +
                    std::to_string(accounts) +
                    ") INSERT OR IGNORE INTO accounts SELECT i, 1000 FROM g;";
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  if (rc != SQLITE_OK) return error(Code::io_error, path + ": " + msg);
  return ok_status();
}

Status init_postgres_db(const std::string& url, int accounts) {
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string m = PQerrorMessage(c);
    PQfinish(c);
    return error(Code::unavailable, url + ": " + m);
  }
  const std::string sql = std::string(kSchema) +
                          "INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, " +
                          std::to_string(accounts) + ") g ON CONFLICT (id) DO NOTHING;";
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string m = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  if (!ok) return error(Code::io_error, url + ": " + m);
  return ok_status();
}

json::object to_json(const ClusterInfo& i) {
  json::array cs, ps;
  for (const auto& c : i.coordinators) {
    cs.push_back(json::object{{"id", c.id}, {"api", c.api}, {"peer", c.peer}, {"pid", c.pid}});
  }
  for (const auto& p : i.participants) {
    ps.push_back(json::object{{"name", p.name},
                              {"kind", p.kind},
                              {"url", p.url},
                              {"db", p.db},
                              {"pid", p.pid},
                              {"server_pid", p.server_pid},
                              {"server_dir", p.server_dir},
                              {"server_port", p.server_port}});
  }
  return json::object{{"dir", i.dir},
                      {"cluster", i.cluster},
                      {"coordinators", cs},
                      {"participants", ps},
                      {"client_token_file", i.client_token_file},
                      {"cluster_token_file", i.cluster_token_file},
                      {"unsafe_no_fsync", i.unsafe_no_fsync}};
}

std::string str(const json::object& o, const char* k) {
  return o.contains(k) && o.at(k).is_string() ? std::string(o.at(k).as_string().c_str()) : "";
}
int num(const json::object& o, const char* k) {
  return o.contains(k) && o.at(k).is_int64() ? static_cast<int>(o.at(k).as_int64()) : 0;
}

}  // namespace

std::vector<std::string> ClusterInfo::apis() const {
  std::vector<std::string> out;
  for (const auto& c : coordinators)
    out.push_back(c.api);
  return out;
}

Status save_cluster_info(const ClusterInfo& info) {
  const std::string tmp = info.dir + "/info.json.tmp";
  std::ofstream(tmp) << json::serialize(to_json(info)) << "\n";
  std::error_code ec;
  fs::rename(tmp, info.dir + "/info.json", ec);
  if (ec) return error(Code::io_error, "cannot write " + info.dir + "/info.json");
  return ok_status();
}

Result<ClusterInfo> load_cluster_info(const std::string& dir) {
  std::ifstream in(dir + "/info.json");
  if (!in) {
    return error(Code::not_found,
                 "no cluster in " + dir + " (no info.json): start one with `dtx cluster up`");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec || !v.is_object()) return error(Code::corruption, dir + "/info.json is not valid JSON");
  const auto& o = v.as_object();
  ClusterInfo i;
  i.dir = str(o, "dir");
  i.cluster = str(o, "cluster");
  i.client_token_file = str(o, "client_token_file");
  i.cluster_token_file = str(o, "cluster_token_file");
  i.unsafe_no_fsync = o.contains("unsafe_no_fsync") && o.at("unsafe_no_fsync").as_bool();
  for (const auto& c : o.at("coordinators").as_array()) {
    const auto& co = c.as_object();
    i.coordinators.push_back(
        ClusterCoordinator{num(co, "id"), str(co, "api"), str(co, "peer"), num(co, "pid")});
  }
  for (const auto& p : o.at("participants").as_array()) {
    const auto& po = p.as_object();
    ClusterParticipant cp;
    cp.name = str(po, "name");
    cp.kind = str(po, "kind");
    cp.url = str(po, "url");
    cp.db = str(po, "db");
    cp.pid = num(po, "pid");
    cp.server_pid = num(po, "server_pid");
    cp.server_dir = str(po, "server_dir");
    cp.server_port = num(po, "server_port");
    i.participants.push_back(std::move(cp));
  }
  return i;
}

Result<int> spawn_detached(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid < 0) return error(Code::io_error, "fork failed");
  if (pid == 0) {
    ::setsid();
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    std::vector<std::string> copy = argv;
    std::vector<char*> a;
    for (auto& s : copy)
      a.push_back(s.data());
    a.push_back(nullptr);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  return static_cast<int>(pid);
}

bool process_alive(int pid) {
  if (pid <= 0) return false;
  // Reap it if it is our child that exited.
  ::waitpid(pid, nullptr, WNOHANG);
  return ::kill(pid, 0) == 0;
}

bool stop_process(int pid, int grace_ms) {
  if (!process_alive(pid)) return true;
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_alive(pid)) return true;
    std::this_thread::sleep_for(20ms);
  }
  ::kill(pid, SIGKILL);
  for (int i = 0; i < 100 && process_alive(pid); ++i)
    std::this_thread::sleep_for(20ms);
  return !process_alive(pid);
}

bool wait_http_ok(const std::string& addr, const std::string& path, int timeout_ms) {
  rest::Client client;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = client.get(addr, path, 1000);
    if (r.ok() && r->status == 200) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::vector<std::string> coordinator_argv(const ClusterInfo& info, int id, bool bootstrap) {
  std::vector<std::string> a = {bin_dir() + "/dtx-coordinator",
                                "--config",
                                info.dir + "/cluster.json",
                                "--id",
                                std::to_string(id),
                                "--data-dir",
                                info.dir + "/c" + std::to_string(id)};
  if (bootstrap) a.push_back("--bootstrap");
  return a;
}

std::vector<std::string> agent_argv(const ClusterInfo& info, const ClusterParticipant& p) {
  std::string coords;
  for (const auto& c : info.coordinators)
    coords += (coords.empty() ? "" : ",") + c.api;
  std::vector<std::string> a = {bin_dir() + "/dtx-agent",
                                "--name",
                                p.name,
                                "--cluster",
                                info.cluster,
                                "--listen",
                                p.url,
                                "--coordinator",
                                coords,
                                "--token-file",
                                info.cluster_token_file};
  if (p.kind == "sqlite") {
    a.insert(a.end(), {"--sqlite", p.db, "--wal-dir", info.dir + "/agents/" + p.name + "/wal"});
  } else {
    a.insert(a.end(), {"--postgres", p.db, "--pool", "32"});
  }
  if (info.unsafe_no_fsync) a.push_back("--unsafe-no-fsync");
  return a;
}

Result<int> start_postgres(const ClusterParticipant& p) {
  const std::string bin = pg_bin_dir();
  if (bin.empty()) {
    return error(Code::not_found,
                 "PostgreSQL server binaries not found (apt-get install postgresql; "
                 "scripts/setup installs it)");
  }
  const std::string data = p.server_dir + "/data";
  if (run_wait({bin + "/pg_ctl", "-D", data, "-l", p.server_dir + "/server.log", "-w", "-t", "60",
                "start"},
               p.server_dir + "/pg_ctl.log", true) != 0) {
    return error(Code::unavailable,
                 "PostgreSQL did not start; see " + p.server_dir + "/server.log");
  }
  std::ifstream pidf(data + "/postmaster.pid");
  int pid = 0;
  pidf >> pid;
  return pid;
}

namespace {

Result<ClusterParticipant> create_postgres(const ClusterUpOptions& o, const std::string& name,
                                           int port) {
  const std::string bin = pg_bin_dir();
  if (bin.empty()) {
    return error(Code::not_found,
                 "PostgreSQL server binaries not found (apt-get install postgresql)");
  }
  ClusterParticipant p;
  p.name = name;
  p.kind = "postgres";
  p.server_port = port;
  // PostgreSQL refuses to run as root: as root, its files go to a folder
  // the postgres user owns.
  if (is_root()) {
    std::string tmpl = "/tmp/dtx-cluster-" + name + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) return error(Code::io_error, "mkdtemp failed");
    p.server_dir = tmpl;
    passwd* pw = ::getpwnam("postgres");
    if (!pw) return error(Code::not_found, "no postgres user (apt-get install postgresql)");
    if (::chown(p.server_dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return error(Code::io_error, "cannot chown " + p.server_dir);
    }
  } else {
    p.server_dir = o.dir + "/pg/" + name;
    fs::create_directories(p.server_dir);
  }
  const std::string data = p.server_dir + "/data";
  if (run_wait({bin + "/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"},
               p.server_dir + "/initdb.log", true) != 0) {
    return error(Code::io_error, "initdb failed; see " + p.server_dir + "/initdb.log");
  }
  {
    // Appended as the postgres user's file: write through a temporary then
    // append with the same rights (root may write it directly).
    std::ofstream conf(data + "/postgresql.conf", std::ios::app);
    conf << "listen_addresses = '127.0.0.1'\nport = " << port << "\nunix_socket_directories = '"
         << p.server_dir << "'\nmax_prepared_transactions = 100\nmax_connections = 200\n"
         << "shared_buffers = 64MB\nsynchronous_commit = on\n"
         << (o.unsafe_no_fsync ? "fsync = off\nfull_page_writes = off\n" : "fsync = on\n");
  }
  auto pid = start_postgres(p);
  if (!pid.ok()) return pid.status();
  p.server_pid = *pid;
  if (run_wait({bin + "/psql", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "postgres",
                "-q", "-c", "CREATE DATABASE dtx", "postgres"},
               p.server_dir + "/psql.log", true) != 0) {
    return error(Code::io_error, "cannot create the database; see " + p.server_dir + "/psql.log");
  }
  p.db = fmt::format("postgresql://postgres@127.0.0.1:{}/dtx", port);
  DTX_RETURN_IF_ERROR(init_postgres_db(p.db, o.accounts));
  return p;
}

int next_free(int* port) {
  while (!port_free(*port))
    ++*port;
  return (*port)++;
}

}  // namespace

int cluster_up(const ClusterUpOptions& o) {
  if (o.coordinators != 3 && o.coordinators != 5) {
    std::fprintf(stderr, "dtx cluster up: --coordinators is 3 or 5\n");
    return 2;
  }
  if (o.sqlite + o.postgres < 2) {
    std::fprintf(stderr, "dtx cluster up: at least two databases (--sqlite, --postgres)\n");
    return 2;
  }
  std::error_code ec;
  if (fs::exists(o.dir + "/info.json")) {
    auto old = load_cluster_info(o.dir);
    if (old.ok()) {
      for (const auto& c : old->coordinators) {
        if (process_alive(c.pid)) {
          std::fprintf(stderr,
                       "dtx cluster up: a cluster started from %s is still running (dtx cluster "
                       "down first)\n",
                       o.dir.c_str());
          return 2;
        }
      }
    }
    if (!o.fresh) {
      std::fprintf(stderr,
                   "dtx cluster up: %s holds an earlier cluster; `dtx cluster down --wipe` or "
                   "`dtx cluster up --fresh` starts a new one\n",
                   o.dir.c_str());
      return 2;
    }
  }
  if (o.fresh) fs::remove_all(o.dir, ec);
  fs::create_directories(o.dir + "/logs", ec);
  if (ec) {
    std::fprintf(stderr, "dtx cluster up: cannot create %s: %s\n", o.dir.c_str(),
                 ec.message().c_str());
    return 2;
  }
  ClusterInfo info;
  info.dir = fs::absolute(o.dir).lexically_normal().string();
  if (!info.dir.empty() && info.dir.back() == '/') info.dir.pop_back();
  info.cluster = o.cluster;
  info.unsafe_no_fsync = o.unsafe_no_fsync;
  info.client_token_file = info.dir + "/client-token";
  info.cluster_token_file = info.dir + "/cluster-token";
  write_secret(info.client_token_file, random_token());
  write_secret(info.cluster_token_file, random_token());

  int port = o.base_port + 1;
  for (int i = 1; i <= o.coordinators; ++i) {
    ClusterCoordinator c;
    c.id = i;
    c.api = "127.0.0.1:" + std::to_string(next_free(&port));
    info.coordinators.push_back(c);
  }
  port = o.base_port + 101;
  for (auto& c : info.coordinators)
    c.peer = "127.0.0.1:" + std::to_string(next_free(&port));
  int agent_port = o.base_port + 701;
  int pg_port = o.base_port + 801;
  std::printf("dtx cluster: starting in %s\n", info.dir.c_str());
  for (int i = 1; i <= o.sqlite; ++i) {
    ClusterParticipant p;
    p.name = "lite-" + std::to_string(i);
    p.kind = "sqlite";
    fs::create_directories(info.dir + "/agents/" + p.name, ec);
    p.db = info.dir + "/agents/" + p.name + "/bank.db";
    if (Status s = init_sqlite(p.db, o.accounts); !s.ok()) {
      std::fprintf(stderr, "dtx cluster up: %s\n", s.describe().c_str());
      return 1;
    }
    p.url = "127.0.0.1:" + std::to_string(next_free(&agent_port));
    info.participants.push_back(std::move(p));
  }
  for (int i = 1; i <= o.postgres; ++i) {
    std::printf("  PostgreSQL server pg-%d...\n", i);
    auto p = create_postgres(o, "pg-" + std::to_string(i), next_free(&pg_port));
    if (!p.ok()) {
      std::fprintf(stderr, "dtx cluster up: %s\n", p.status().describe().c_str());
      (void)save_cluster_info(info);
      return 1;
    }
    p->url = "127.0.0.1:" + std::to_string(next_free(&agent_port));
    info.participants.push_back(std::move(*p));
  }

  // The coordinators' config: replicas and the registry's seed.
  json::array reps, parts;
  for (const auto& c : info.coordinators) {
    reps.push_back(json::object{{"id", c.id}, {"peer", c.peer}, {"api", c.api}});
  }
  for (const auto& p : info.participants)
    parts.push_back(json::object{{"name", p.name}, {"url", p.url}});
  std::ofstream(info.dir + "/cluster.json")
      << json::serialize(json::object{{"cluster", info.cluster},
                                      {"replicas", reps},
                                      {"participants", parts},
                                      {"client_token_file", "client-token"},
                                      {"cluster_token_file", "cluster-token"}})
      << "\n";

  for (auto& c : info.coordinators) {
    auto pid = spawn_detached(coordinator_argv(info, c.id, true),
                              info.dir + "/logs/coordinator-" + std::to_string(c.id) + ".log");
    if (!pid.ok()) return 1;
    c.pid = *pid;
  }
  for (auto& p : info.participants) {
    auto pid = spawn_detached(agent_argv(info, p), info.dir + "/logs/" + p.name + ".log");
    if (!pid.ok()) return 1;
    p.pid = *pid;
  }
  if (Status s = save_cluster_info(info); !s.ok()) {
    std::fprintf(stderr, "dtx cluster up: %s\n", s.describe().c_str());
    return 1;
  }
  // Ready: a serving leader, and every agent answering /readyz.
  rest::ClientOptions co;
  std::ifstream tf(info.client_token_file);
  std::getline(tf, co.bearer_token);
  rest::Client client(co);
  std::string leader;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (leader.empty() && std::chrono::steady_clock::now() < deadline) {
    for (const auto& c : info.coordinators) {
      auto r = client.get(c.api, "/v1/cluster", 1000);
      if (r.ok() && r->status == 200 && r->body.find("\"serving\":true") != std::string::npos) {
        leader = c.api;
      }
    }
    if (leader.empty()) std::this_thread::sleep_for(100ms);
  }
  if (leader.empty()) {
    std::fprintf(stderr, "dtx cluster up: no leader within 30 s; see %s/logs\n", info.dir.c_str());
    return 1;
  }
  for (const auto& p : info.participants) {
    if (!wait_http_ok(p.url, "/readyz", 30'000)) {
      std::fprintf(stderr, "dtx cluster up: agent %s not ready within 30 s; see %s/logs/%s.log\n",
                   p.name.c_str(), info.dir.c_str(), p.name.c_str());
      return 1;
    }
  }
  std::printf("dtx cluster: ready\n  coordinators:");
  for (const auto& c : info.coordinators)
    std::printf(" http://%s", c.api.c_str());
  std::printf("  (leader http://%s)\n  participants:\n", leader.c_str());
  for (const auto& p : info.participants) {
    std::printf("    %-8s %-8s agent %s, %s\n", p.name.c_str(), p.kind.c_str(), p.url.c_str(),
                p.db.c_str());
  }
  std::printf("  tokens: %s (client), %s (cluster)\n  logs: %s/logs\n",
              info.client_token_file.c_str(), info.cluster_token_file.c_str(), info.dir.c_str());
  std::printf(
      "  try: curl -s --location-trusted -H \"Authorization: Bearer $(cat %s)\" "
      "http://%s/v1/cluster\n",
      info.client_token_file.c_str(), info.coordinators[0].api.c_str());
  if (o.unsafe_no_fsync) {
    std::printf(
        "  WARNING: --unsafe-no-fsync: the databases do not make commits durable; "
        "for demos only\n");
  }
  return 0;
}

int cluster_down(const std::string& dir, bool wipe) {
  auto info = load_cluster_info(dir);
  if (!info.ok()) {
    std::fprintf(stderr, "dtx cluster down: %s\n", info.status().message().c_str());
    return 2;
  }
  int stopped = 0;
  for (const auto& p : info->participants) {
    if (p.pid && process_alive(p.pid)) stopped += stop_process(p.pid, 5000);
  }
  for (const auto& c : info->coordinators) {
    if (c.pid && process_alive(c.pid)) stopped += stop_process(c.pid, 5000);
  }
  for (const auto& p : info->participants) {
    if (p.kind != "postgres") continue;
    if (p.server_pid && process_alive(p.server_pid)) {
      ::kill(p.server_pid, SIGINT);  // fast shutdown
      for (int i = 0; i < 200 && process_alive(p.server_pid); ++i)
        std::this_thread::sleep_for(50ms);
      if (process_alive(p.server_pid)) ::kill(p.server_pid, SIGKILL);
      ++stopped;
    }
    std::error_code ec;
    if (p.server_dir.rfind("/tmp/dtx-cluster-", 0) == 0) fs::remove_all(p.server_dir, ec);
  }
  std::printf("dtx cluster: stopped %d processes started from %s\n", stopped, dir.c_str());
  if (wipe) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    std::printf("dtx cluster: removed %s\n", dir.c_str());
  }
  return 0;
}

int cluster_status(const std::string& dir) {
  auto info = load_cluster_info(dir);
  if (!info.ok()) {
    std::fprintf(stderr, "dtx cluster status: %s\n", info.status().message().c_str());
    return 2;
  }
  rest::ClientOptions co;
  std::ifstream tf(info->client_token_file);
  std::getline(tf, co.bearer_token);
  rest::Client client(co);
  int down = 0;
  std::printf("cluster %s in %s\n", info->cluster.c_str(), info->dir.c_str());
  for (const auto& c : info->coordinators) {
    const bool alive = process_alive(c.pid);
    std::string role = "down";
    if (alive) {
      auto r = client.get(c.api, "/v1/cluster", 1000);
      role = "not answering";
      if (r.ok() && r->status == 200) {
        role = r->body.find("\"serving\":true") != std::string::npos ? "leader" : "follower";
      }
    }
    down += alive ? 0 : 1;
    std::printf("  coordinator %d  pid %-7d %-14s http://%s\n", c.id, c.pid, role.c_str(),
                c.api.c_str());
  }
  for (const auto& p : info->participants) {
    const bool alive = process_alive(p.pid);
    std::string state = "down";
    if (alive) {
      auto r = client.get(p.url, "/readyz", 1000);
      state = r.ok() && r->status == 200 ? "ready" : "not ready";
    }
    down += alive ? 0 : 1;
    std::printf("  %-14s pid %-7d %-14s %s (%s)\n", p.name.c_str(), p.pid, state.c_str(),
                p.url.c_str(), p.kind.c_str());
  }
  return down == 0 ? 0 : 1;
}

}  // namespace dtx::cli
