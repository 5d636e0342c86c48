// Coordinator: one replica of the coordinator group, as a running service.
// It ties the pure core (core/table.h, core/driver.h) to the world:
//
//   clients --REST--> routes (HTTP threads: parse, check) --post--> loop
//   loop: Paxos node (consensus/node.h), transaction table, drivers
//   loop --AgentCall--> agent link (HTTP client threads) --reply--> loop
//   loop --Proposal--> node.propose --applied--> table.apply --> drivers
//
// Everything that touches the table or the drivers runs on the Paxos node's
// loop thread, one event at a time; HTTP threads only parse and encode, and
// the agent link's threads only encode requests and decode answers. A
// ticker thread posts the drivers' tick every tick_ms.
//
// Threading: start() and stop() from one thread; the rest is internal.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/fs.h"
#include "common/status.h"
#include "coordinator/config.h"

namespace dtx::coordinator {

struct CoordinatorOptions {
  ClusterConfig config;
  uint32_t id = 0;  // this replica
  std::string data_dir;
  bool bootstrap = false;  // a new cluster's first start on an empty data dir
  size_t http_threads = 2;
  size_t agent_client_threads = 1;
  int tick_ms = 2;         // the drivers' timer resolution
  int paxos_tick_ms = 10;  // consensus::NodeOptions::tick_ms
  uint32_t election_ticks = 30;
  uint64_t snapshot_every_slots = 20'000;
  int64_t agent_health_every_ms = 2'000;
  bool unsafe_no_fsync = false;  // refused unless the data dir is explicitly throwaway
  FileSystem* fs = nullptr;      // tests; default POSIX
  // Tests only: kill this process (SIGKILL) at a point of the protocol, so
  // process-level tests can crash a leader exactly there:
  //   "before_decision": when a commit decision is about to be proposed;
  //   "after_decision": when a commit decision was applied, before phase two.
  // It fires once: only while the file test-fault-armed exists in the data
  // directory's parent, which the firing replica removes.
  std::string test_fault;
};

class Coordinator {
 public:
  static Result<std::unique_ptr<Coordinator>> start(CoordinatorOptions options);
  ~Coordinator();  // stop()
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  uint16_t api_port() const;
  // Stops serving: answers what is pending (503), stops the node. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit Coordinator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtx::coordinator
