#include "coordinator/config.h"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "rest/auth.h"
#include "rest/json.h"
#include "txn/txid.h"

namespace dtx::coordinator {

const ReplicaAddress* ClusterConfig::replica(uint32_t id) const {
  for (const auto& r : replicas) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

uint64_t cluster_number(std::string_view cluster) {
  // FNV-1a: stable across versions and machines.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : cluster) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h == 0 ? 1 : h;
}

namespace {

bool valid_address(std::string_view a) {
  const auto colon = a.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= a.size()) return false;
  for (char c : a.substr(colon + 1)) {
    if (c < '0' || c > '9') return false;
  }
  return a.size() - colon - 1 <= 5;
}

Result<std::string> token(const std::string& env, const boost::json::value& doc,
                          std::string_view field, const std::string& base_dir) {
  if (auto t = rest::TokenAuth::from_env(env); t.ok()) return t->primary_token();
  auto file = rest::get_string_or(doc, field, "");
  if (!file.ok()) return file.status();
  if (file->empty()) {
    return error(Code::invalid_argument,
                 "no " + std::string(field) + " in the config and " + env + " is not set");
  }
  std::string path = *file;
  if (path[0] != '/' && !base_dir.empty()) path = base_dir + "/" + path;
  auto t = rest::TokenAuth::from_file(path);
  if (!t.ok()) return error(t.status().code(), std::string(field) + ": " + t.status().message());
  return t->primary_token();
}

Status read_limits(const boost::json::value& doc, DriverConfig& d) {
  if (auto o = rest::get_object(doc, "limits"); o.ok()) {
    boost::json::value v = **o;
    auto in_flight = rest::get_int64_or(v, "in_flight_max", d.in_flight_max, 1, 1'000'000);
    if (!in_flight.ok()) return in_flight.status();
    d.in_flight_max = static_cast<uint32_t>(*in_flight);
    auto parts = rest::get_int64_or(v, "participants_max", d.participants_max, 1, 64);
    if (!parts.ok()) return parts.status();
    d.participants_max = static_cast<uint32_t>(*parts);
    auto stmts = rest::get_int64_or(v, "statements_max", d.statements_max, 1, 10'000);
    if (!stmts.ok()) return stmts.status();
    d.statements_max = static_cast<uint32_t>(*stmts);
  }
  if (auto o = rest::get_object(doc, "timeouts_ms"); o.ok()) {
    boost::json::value v = **o;
    struct F {
      const char* name;
      int64_t* field;
    } fields[] = {{"transaction", &d.default_timeout_ms},
                  {"exec", &d.exec_timeout_ms},
                  {"prepare", &d.prepare_timeout_ms},
                  {"decision", &d.decision_timeout_ms}};
    for (const F& f : fields) {
      auto x = rest::get_int64_or(v, f.name, *f.field, 1, 3'600'000);
      if (!x.ok()) return x.status();
      *f.field = *x;
    }
  }
  auto retention = rest::get_int64_or(doc, "retention_ms", d.retention_ms, 1000,
                                      int64_t{365} * 24 * 3600 * 1000);
  if (!retention.ok()) return retention.status();
  d.retention_ms = *retention;
  auto retained = rest::get_int64_or(doc, "retained_max", static_cast<int64_t>(d.retained_max),
                                     1000, 100'000'000);
  if (!retained.ok()) return retained.status();
  d.retained_max = static_cast<uint64_t>(*retained);
  return ok_status();
}

}  // namespace

Result<ClusterConfig> parse_config(std::string_view text, const std::string& base_dir) {
  auto doc = rest::parse_json(text);
  if (!doc.ok()) return doc.status();
  ClusterConfig c;
  auto cluster = rest::get_string(*doc, "cluster");
  if (!cluster.ok()) return cluster.status();
  if (!txn::valid_cluster_id(*cluster)) {
    return error(Code::invalid_argument,
                 "cluster must be 1-32 characters of [A-Za-z0-9_-], not '" + *cluster + "'");
  }
  c.cluster = *cluster;
  auto replicas = rest::get_array(*doc, "replicas");
  if (!replicas.ok()) return replicas.status();
  std::set<uint32_t> ids;
  for (size_t i = 0; i < (*replicas)->size(); ++i) {
    const boost::json::value& r = (**replicas)[i];
    const std::string where = "replicas[" + std::to_string(i) + "]";
    auto id = rest::get_int64(r, "id", 1, 1'000'000);
    auto peer = rest::get_string(r, "peer");
    auto api = rest::get_string(r, "api");
    if (!id.ok()) return error(Code::invalid_argument, where + ": " + id.status().message());
    if (!peer.ok()) return error(Code::invalid_argument, where + ": " + peer.status().message());
    if (!api.ok()) return error(Code::invalid_argument, where + ": " + api.status().message());
    ReplicaAddress a;
    a.id = static_cast<uint32_t>(*id);
    a.peer = *peer;
    a.api = *api;
    auto peer_listen = rest::get_string_or(r, "peer_listen", a.peer);
    auto api_listen = rest::get_string_or(r, "api_listen", a.api);
    if (!peer_listen.ok())
      return error(Code::invalid_argument, where + ": " + peer_listen.status().message());
    if (!api_listen.ok())
      return error(Code::invalid_argument, where + ": " + api_listen.status().message());
    a.peer_listen = *peer_listen;
    a.api_listen = *api_listen;
    for (const std::string* s : {&a.peer, &a.api, &a.peer_listen, &a.api_listen}) {
      if (!valid_address(*s)) {
        return error(Code::invalid_argument, where + ": '" + *s + "' is not host:port");
      }
    }
    if (!ids.insert(a.id).second) {
      return error(Code::invalid_argument,
                   where + ": replica id " + std::to_string(a.id) + " appears twice");
    }
    c.replicas.push_back(std::move(a));
  }
  if (c.replicas.size() != 3 && c.replicas.size() != 5 && c.replicas.size() != 1) {
    return error(Code::invalid_argument,
                 "a coordinator group has 3 or 5 replicas (1 for a test), not " +
                     std::to_string(c.replicas.size()));
  }
  if (auto parts = rest::get_array(*doc, "participants"); parts.ok()) {
    std::set<std::string> names;
    for (size_t i = 0; i < (*parts)->size(); ++i) {
      const boost::json::value& p = (**parts)[i];
      const std::string where = "participants[" + std::to_string(i) + "]";
      auto name = rest::get_string(p, "name");
      auto url = rest::get_string(p, "url");
      if (!name.ok()) return error(Code::invalid_argument, where + ": " + name.status().message());
      if (!url.ok()) return error(Code::invalid_argument, where + ": " + url.status().message());
      ParticipantSeed s;
      s.name = *name;
      s.url = *url;
      auto agent_id = rest::get_string_or(p, "agent_id", s.name);
      if (!agent_id.ok())
        return error(Code::invalid_argument, where + ": " + agent_id.status().message());
      s.agent_id = *agent_id;
      if (!txn::valid_agent_id(s.name) || !txn::valid_agent_id(s.agent_id)) {
        return error(Code::invalid_argument,
                     where + ": names are 1-64 characters of [A-Za-z0-9._-]");
      }
      if (!valid_address(s.url)) {
        return error(Code::invalid_argument, where + ": url '" + s.url + "' is not host:port");
      }
      if (!names.insert(s.name).second) {
        return error(Code::invalid_argument, where + ": '" + s.name + "' appears twice");
      }
      c.participants.push_back(std::move(s));
    }
  } else if (doc->as_object().contains("participants")) {
    return parts.status();
  }
  auto client = token("DTX_CLIENT_TOKEN", *doc, "client_token_file", base_dir);
  if (!client.ok()) return client.status();
  auto clustert = token("DTX_CLUSTER_TOKEN", *doc, "cluster_token_file", base_dir);
  if (!clustert.ok()) return clustert.status();
  if (*client == *clustert) {
    return error(Code::invalid_argument,
                 "the client token and the cluster token must differ (the cluster token lets "
                 "its holder decide transactions)");
  }
  c.client_token = *client;
  c.cluster_token = *clustert;
  DTX_RETURN_IF_ERROR(read_limits(*doc, c.driver));
  return c;
}

Result<ClusterConfig> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return error(Code::not_found, "cannot read the config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  auto c = parse_config(ss.str(), dir);
  if (!c.ok()) return error(c.status().code(), path + ": " + c.status().message());
  return c;
}

}  // namespace dtx::coordinator
