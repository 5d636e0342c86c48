// Coordinator's internals, shared by coordinator.cc (the loop and the node),
// routes.cc (the REST API) and metrics.cc. Not a public header.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "consensus/node.h"
#include "coordinator/coordinator.h"
#include "coordinator/core/driver.h"
#include "coordinator/core/table.h"
#include "rest/auth.h"
#include "rest/client.h"
#include "rest/router.h"
#include "rest/server.h"

namespace dtx::coordinator {

// Commit latency in microseconds, Prometheus-style cumulative buckets.
struct LatencyHistogram {
  static constexpr int64_t kBoundsUs[] = {500,    1000,   2000,   5000,    10000,   20000,   50000,
                                          100000, 250000, 500000, 1000000, 2500000, 10000000};
  uint64_t counts[std::size(kBoundsUs) + 1] = {};
  uint64_t total = 0;
  int64_t sum_us = 0;
  void add(int64_t us);
};

struct AgentHealth {
  bool healthy = false;
  int64_t checked_at_ms = 0;  // wall
  std::string detail;
};

struct Coordinator::Impl {
  CoordinatorOptions opt;
  const ReplicaAddress* self = nullptr;
  SteadyClock clock;
  std::optional<rest::TokenAuth> cluster_auth;

  std::unique_ptr<consensus::Node> node;
  std::unique_ptr<rest::Client> agents;  // bearer: the cluster token
  std::unique_ptr<rest::Server> server;

  // --- loop thread only
  std::unique_ptr<TxnTable> table;
  std::unique_ptr<Driver> driver;
  struct Pending {
    rest::Replier reply;
    std::string target;  // for the Location of a redirect
  };
  std::unordered_map<uint64_t, Pending> pending;
  LatencyHistogram commit_latency;
  uint64_t proposals_refused = 0;
  // Batching: commands and distinct slots applied (commands per slot is
  // the Paxos batch size).
  uint64_t applied_commands = 0;
  uint64_t applied_slots = 0;
  consensus::Slot last_applied_slot = 0;

  // --- any thread
  std::atomic<uint64_t> next_request{1};
  std::atomic<bool> stopping{false};
  std::thread ticker;
  std::mutex ticker_mu;
  std::condition_variable ticker_cv;
  mutable std::mutex health_mu;
  std::map<std::string, AgentHealth> health;          // by participant name
  std::map<std::string, std::string> health_targets;  // name -> url, refreshed on the loop
  std::atomic<uint64_t> agent_calls{0};
  std::atomic<uint64_t> agent_call_failures{0};

  Now now() const;
  // Runs fn on the loop, then carries out what the drivers asked for.
  void run(std::function<void()> fn);
  // A client request: registers its replier and runs fn(request id) on the
  // loop.
  void request(rest::Replier reply, std::string target, std::function<void(uint64_t)> fn);
  void flush();
  void deliver(Answer a);
  void send(AgentCall c);
  void propose(Proposal p);
  void log_event(const Event& e);
  void tick_loop();
  void check_agent_health();
  bool test_fault_fires();

  // Node callbacks (loop thread).
  void on_apply(consensus::Slot slot, const consensus::Command& c);
  void restore(consensus::Slot index, const std::string& data);
  std::function<std::string()> snapshot();

  rest::Router build_router();
  std::string metrics_text();
  boost::json::object cluster_json();
};

}  // namespace dtx::coordinator
