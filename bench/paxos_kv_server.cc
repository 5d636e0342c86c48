// dtx-paxos-kv: one replica of a replicated key-value store on dtx's
// Multi-Paxos node, behind a small HTTP endpoint. It is the fixture of the
// consensus integration tests and of dtx-paxos-bench; the coordinator uses
// the same Node with its transaction table instead of this map.
//
//   PUT /kv/{key}      body: the value. 200 {"slot": n} once applied;
//                      307 with Location and {"leader": id} on a follower;
//                      413 when key and value do not fit a Paxos slot;
//                      503 {"error": ...} when the outcome is unknown, the
//                      leader does not serve yet or the replica is busy.
//   GET /kv/{key}      linearizable read (read-index): 200 {"value": ...} or 404.
//   GET /status        the node's status.
//   GET /healthz       no token needed.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <boost/json.hpp>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/logging.h"
#include "consensus/core/codec.h"
#include "consensus/node.h"
#include "rest/auth.h"
#include "rest/server.h"

namespace {

using namespace dtx;
using namespace dtx::consensus;

volatile std::sig_atomic_t g_stop = 0;

Result<std::map<NodeId, std::string>> parse_replicas(const std::string& spec) {
  std::map<NodeId, std::string> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      return error(Code::invalid_argument, "expected id=host:port, got '" + item + "'");
    }
    const unsigned long id = std::stoul(item.substr(0, eq));
    out[static_cast<NodeId>(id)] = item.substr(eq + 1);
  }
  return out;
}

Result<std::string> read_secret(const std::string& path) {
  std::ifstream in(path);
  if (!in) return error(Code::not_found, "cannot read " + path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
    s.pop_back();
  return s;
}

// The state machine: touched only on the node's loop thread.
class KvStore {
 public:
  void apply(const Command& c) {
    Reader r(c.payload);
    std::string key = r.bytes();
    std::string value = r.bytes();
    if (r.done()) (*map_)[key] = std::move(value);
  }
  std::optional<std::string> get(const std::string& key) const {
    auto it = map_->find(key);
    if (it == map_->end()) return std::nullopt;
    return it->second;
  }
  std::function<std::string()> snapshot() {
    // Copy on the loop; serialize off it.
    auto copy = std::make_shared<const std::map<std::string, std::string>>(*map_);
    return [copy] {
      Writer w;
      w.u32(static_cast<uint32_t>(copy->size()));
      for (const auto& [k, v] : *copy) {
        w.bytes(k);
        w.bytes(v);
      }
      return w.take();
    };
  }
  void restore(const std::string& data) {
    auto m = std::make_shared<std::map<std::string, std::string>>();
    Reader r(data);
    const uint32_t n = r.count(8);
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      std::string k = r.bytes();
      (*m)[k] = r.bytes();
    }
    map_ = std::move(m);
  }

 private:
  std::shared_ptr<std::map<std::string, std::string>> map_ =
      std::make_shared<std::map<std::string, std::string>>();
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A replicated key-value store on dtx's Multi-Paxos (test and benchmark fixture)."};
  uint32_t id = 0;
  uint64_t cluster = 0;
  std::string replicas_spec, http_spec, data_dir, secret_file, token_file, log_level = "info";
  bool bootstrap = false;
  int tick_ms = 10;
  uint64_t snapshot_every = 20000;
  uint32_t window = 0;
  bool sync_on_loop = true;
  app.add_option("--id", id, "this replica's id")->required();
  app.add_option("--cluster", cluster, "cluster id")->required();
  app.add_option("--replicas", replicas_spec, "every replica: id=host:port,... (Paxos transport)")
      ->required();
  app.add_option("--http", http_spec, "every replica's HTTP endpoint: id=host:port,...")
      ->required();
  app.add_option("--data", data_dir, "data directory")->required();
  app.add_option("--secret-file", secret_file, "file holding the cluster secret")->required();
  app.add_option("--token-file", token_file, "file holding the HTTP bearer token(s)")->required();
  app.add_flag("--bootstrap", bootstrap, "create a new data directory (new cluster only)");
  app.add_option("--tick-ms", tick_ms, "Paxos tick")->default_val(tick_ms);
  app.add_option("--snapshot-every", snapshot_every, "slots between snapshots")
      ->default_val(snapshot_every);
  app.add_option("--window", window, "Paxos slots in flight (0: the node's default)");
  app.add_option("--sync-on-loop", sync_on_loop,
                 "fdatasync a lone persist on the node's loop thread (false: always on the "
                 "log's flusher thread)")
      ->default_val(sync_on_loop);
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->default_val("info");
  CLI11_PARSE(app, argc, argv);

  if (Status s = logging::setup("dtx-paxos-kv", log_level); !s.ok()) {
    fmt::print(stderr, "dtx-paxos-kv: {}\n", s.describe());
    return 2;
  }
  auto replicas = parse_replicas(replicas_spec);
  auto http = parse_replicas(http_spec);
  auto secret = read_secret(secret_file);
  auto auth = rest::TokenAuth::from_file(token_file);
  for (const Status& s : {replicas.status(), http.status(), secret.status(), auth.status()}) {
    if (!s.ok()) {
      fmt::print(stderr, "dtx-paxos-kv: {}\n", s.describe());
      return 2;
    }
  }
  if (!http->count(id)) {
    fmt::print(stderr, "dtx-paxos-kv: --http has no endpoint for replica {}\n", id);
    return 2;
  }

  auto kv = std::make_shared<KvStore>();
  NodeOptions no;
  no.cluster_id = cluster;
  no.self = id;
  no.replicas = *replicas;
  no.data_dir = data_dir;
  no.bootstrap = bootstrap;
  no.secret = *secret;
  no.tick_ms = tick_ms;
  no.snapshot_every_slots = snapshot_every;
  if (window > 0) no.tuning.window_slots = window;
  no.sync_on_loop = sync_on_loop;
  NodeCallbacks cb;
  cb.apply = [kv](const AppliedEntry& e) {
    if (e.kind == AppliedEntry::Kind::command) kv->apply(*e.command);
  };
  cb.snapshot = [kv] { return kv->snapshot(); };
  cb.restore = [kv](Slot, const std::string& data) { kv->restore(data); };
  auto node_r = Node::start(no, cb);
  if (!node_r.ok()) {
    spdlog::critical("cannot start replica {}: {}", id, node_r.status().describe());
    return 1;
  }
  std::shared_ptr<Node> node = std::move(*node_r);
  // Shared, not copied into every request's callback.
  auto http_of = std::make_shared<const std::map<NodeId, std::string>>(*http);

  auto redirect = [http_of](std::optional<NodeId> leader, const std::string& target) {
    boost::json::object o;
    o["error"] = boost::json::object{{"code", "not_leader"}, {"message", "not the leader"}};
    if (!leader || !http_of->count(*leader)) return rest::Response::json(503, o);
    o["leader"] = *leader;
    o["leader_url"] = "http://" + http_of->at(*leader);
    rest::Response r = rest::Response::json(307, o);
    r.headers.set("Location", "http://" + http_of->at(*leader) + target);
    return r;
  };

  rest::Router router;
  router.add(
      rest::Method::put, "/kv/{key}", [node, redirect](rest::Request req, rest::Replier reply) {
        Writer w;
        w.bytes(req.path_param("key"));
        w.bytes(req.body);
        const std::string target = req.target;
        node->propose(w.take(), [reply, redirect, target](ProposeResult r) {
          switch (r.outcome) {
            case ProposeResult::Outcome::applied:
              // {"slot": n}, formatted directly: this is every write's answer.
              return reply(rest::Response::text(200, "{\"slot\":" + std::to_string(r.slot) + "}",
                                                rest::kJsonContentType));
            case ProposeResult::Outcome::not_leader:
              return reply(redirect(r.leader, target));
            case ProposeResult::Outcome::busy:
              return reply(rest::Response::error(503, "busy", "proposal queue full"));
            case ProposeResult::Outcome::not_serving:
              return reply(rest::Response::error(503, "not_serving",
                                                 "the leader has not applied its barrier yet"));
            case ProposeResult::Outcome::too_large:
              return reply(
                  rest::Response::error(413, "too_large", "the value does not fit a Paxos slot"));
            default:
              return reply(
                  rest::Response::error(503, outcome_name(r.outcome),
                                        "leadership changed: the write may or may not apply"));
          }
        });
      });
  router.add(
      rest::Method::get, "/kv/{key}", [node, kv, redirect](rest::Request req, rest::Replier reply) {
        std::string key(req.path_param("key"));
        const std::string target = req.target;
        node->read_index([node, kv, key, reply, redirect, target](Result<Slot> at) {
          if (!at.ok()) return reply(redirect(node->status().leader, target));
          // On the loop, with the state machine at or past the read index.
          auto v = kv->get(key);
          if (!v) return reply(rest::Response::error(404, "not_found", "no such key"));
          reply(rest::Response::json(200, boost::json::object{{"value", *v}, {"read_index", *at}}));
        });
      });
  router.add(rest::Method::get, "/status", [node](rest::Request, rest::Replier reply) {
    NodeStatus s = node->status();
    boost::json::object o{{"self", s.self},
                          {"role", role_name(s.role)},
                          {"serving", s.serving},
                          {"ballot", s.ballot.describe()},
                          {"commit_index", s.commit_index},
                          {"applied_index", s.applied_index},
                          {"snapshot_index", s.snapshot_index}};
    if (s.leader) o["leader"] = *s.leader;
    reply(rest::Response::json(200, o));
  });
  router.add_public(rest::Method::get, "/healthz", [](rest::Request, rest::Replier reply) {
    reply(rest::Response::text(200, "ok\n"));
  });

  auto hp = split_host_port(http_of->at(id));
  if (!hp.ok()) {
    spdlog::critical("{}", hp.status().describe());
    return 2;
  }
  rest::ServerOptions so;
  so.bind_address = hp->first;
  so.port = hp->second;
  so.io_threads = 1;
  so.connections_max = 2048;
  so.pipeline_requests_max = 64;
  auto server = rest::Server::start(so, std::move(router), std::move(*auth));
  if (!server.ok()) {
    spdlog::critical("cannot serve HTTP on {}: {}", http_of->at(id), server.status().describe());
    return 1;
  }
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  while (!g_stop)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  spdlog::info("replica {} stopping", id);
  (*server)->stop();
  node->stop();
  return 0;
}
