// dtx cluster up|down|status: a whole dtx on loopback, for trying it out,
// the demo, the bank workload and the benchmark. Real processes: N
// dtx-coordinator replicas, one dtx-agent per database, SQLite files and,
// with --postgres, throwaway PostgreSQL servers of their own; everything
// under one directory (var/cluster by default).
//
// The directory holds cluster.json (the coordinators' config), the two token
// files (0600), each replica's data, each agent's database and WAL, logs/,
// and info.json: what `up` started (pids, addresses, each participant's kind
// and database), which `down`, `status`, `dtx bank` and `dtx bench` read.
// `down` stops only what `up` started, by pid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace dtx::cli {

struct ClusterUpOptions {
  std::string dir = "var/cluster";
  int coordinators = 3;
  int sqlite = 2;
  int postgres = 0;
  int accounts = 100;    // rows of the bank's accounts table in each database
  int base_port = 7000;  // coordinators' API base+1.., Paxos base+101.., agents base+701..
  bool fresh = false;    // wipe an existing directory first
  bool unsafe_no_fsync = false;
  std::string cluster = "local";
};

// What info.json records.
struct ClusterParticipant {
  std::string name;
  std::string kind;    // "sqlite" or "postgres"
  std::string url;     // the agent's host:port
  std::string db;      // SQLite file, or PostgreSQL URL
  int pid = 0;         // the agent
  int server_pid = 0;  // PostgreSQL's postmaster (postgres kind)
  std::string server_dir;
  int server_port = 0;
};
struct ClusterCoordinator {
  int id = 0;
  std::string api;
  std::string peer;
  int pid = 0;
};
struct ClusterInfo {
  std::string dir;
  std::string cluster;
  std::vector<ClusterCoordinator> coordinators;
  std::vector<ClusterParticipant> participants;
  std::string client_token_file;
  std::string cluster_token_file;
  bool unsafe_no_fsync = false;

  std::vector<std::string> apis() const;
};

int cluster_up(const ClusterUpOptions& o);
int cluster_down(const std::string& dir, bool wipe);
int cluster_status(const std::string& dir);

Result<ClusterInfo> load_cluster_info(const std::string& dir);
Status save_cluster_info(const ClusterInfo& info);

// Process control shared with the nemesis (dtx bank).
// Starts `argv` detached (its own session), output appended to `log`.
Result<int> spawn_detached(const std::vector<std::string>& argv, const std::string& log);
bool process_alive(int pid);
// SIGTERM, then SIGKILL after `grace_ms`; true if it is gone.
bool stop_process(int pid, int grace_ms);
// The argv that starts coordinator `id` / participant `p` (for restarts).
std::vector<std::string> coordinator_argv(const ClusterInfo& info, int id, bool bootstrap);
std::vector<std::string> agent_argv(const ClusterInfo& info, const ClusterParticipant& p);
// Starts (or restarts) PostgreSQL for a participant; its postmaster pid.
Result<int> start_postgres(const ClusterParticipant& p);
// Waits until `addr` answers GET `path` with 200 (or the timeout passes).
bool wait_http_ok(const std::string& addr, const std::string& path, int timeout_ms);

}  // namespace dtx::cli
