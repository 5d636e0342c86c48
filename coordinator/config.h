// The coordinator group's configuration file, shared by every replica, and
// the per-replica options given on the command line.
//
//   {
//     "cluster": "c1",
//     "replicas": [
//       {"id": 1, "peer": "127.0.0.1:7101", "api": "127.0.0.1:7001"},
//       {"id": 2, "peer": "127.0.0.1:7102", "api": "127.0.0.1:7002"},
//       {"id": 3, "peer": "127.0.0.1:7103", "api": "127.0.0.1:7003"}
//     ],
//     "participants": [
//       {"name": "bank-a", "url": "127.0.0.1:7701"},
//       {"name": "bank-b", "url": "127.0.0.1:7702", "agent_id": "bank-b"}
//     ],
//     "client_token_file": "client-token",
//     "cluster_token_file": "cluster-token",
//     "limits": {"in_flight_max": 10000, "participants_max": 16},
//     "timeouts_ms": {"transaction": 30000, "exec": 30000, "prepare": 10000,
//                     "decision": 5000},
//     "retention_ms": 86400000
//   }
//
// - cluster: 1-32 characters of [A-Za-z0-9_-]; it names every txid and
//   every PostgreSQL gid, so it must not change.
// - replicas: 3 or 5. `peer` is the Multi-Paxos address, `api` the REST
//   address clients, agents and redirects use. Either may carry a separate
//   `peer_listen` / `api_listen` (e.g. "0.0.0.0:7001" in a container).
// - participants: the registry's seed, proposed once when the cluster is
//   bootstrapped; later changes go through the admin API (docs/operations.md).
//   `agent_id` defaults to the name (the agent's --name).
// - Tokens: `DTX_CLIENT_TOKEN` and `DTX_CLUSTER_TOKEN` in the environment win
//   over the files; relative file paths are relative to the config file.
//   Never on the command line. The cluster token also authenticates the
//   replicas to each other (HMAC handshake) and must be at least 16 bytes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/driver.h"

namespace dtx::coordinator {

struct ReplicaAddress {
  uint32_t id = 0;
  std::string peer;         // host:port, Multi-Paxos
  std::string api;          // host:port, REST
  std::string peer_listen;  // defaults to peer
  std::string api_listen;   // defaults to api
};

struct ParticipantSeed {
  std::string name;
  std::string url;
  std::string agent_id;
};

struct ClusterConfig {
  std::string cluster;
  std::vector<ReplicaAddress> replicas;
  std::vector<ParticipantSeed> participants;
  std::string client_token;
  std::string cluster_token;
  DriverConfig driver;

  const ReplicaAddress* replica(uint32_t id) const;
};

// Reads and checks the file (every problem named, with its field).
Result<ClusterConfig> load_config(const std::string& path);
// The same from text; `base_dir` resolves relative token files.
Result<ClusterConfig> parse_config(std::string_view text, const std::string& base_dir);

// A 64-bit id for the Paxos layer, derived from the cluster name.
uint64_t cluster_number(std::string_view cluster);

}  // namespace dtx::coordinator
