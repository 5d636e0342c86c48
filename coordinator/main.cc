// dtx-coordinator: one replica of a dtx coordinator group.
//
//   dtx-coordinator --config /etc/dtx/cluster.json --id 1 --data-dir /var/lib/dtx/c1 [--bootstrap]
//
// The config file (coordinator/config.h) is the same on every replica; the
// tokens come from the files it names or from DTX_CLIENT_TOKEN and
// DTX_CLUSTER_TOKEN, never from the command line. --bootstrap is for a new
// cluster's first start only: a replica whose data directory was lost must
// not be restarted empty (it would have forgotten its Paxos promises).
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <thread>

#include "common/logging.h"
#include "coordinator/coordinator.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace dtx;
  CLI::App app{"dtx-coordinator: one replica of a dtx coordinator group (2PC/3PC on Multi-Paxos)."};
  std::string config_path, data_dir, log_level = "info";
  uint32_t id = 0;
  bool bootstrap = false;
  size_t http_threads = 2;
  uint64_t snapshot_every = 20'000;
  app.add_option("--config", config_path, "the cluster's config file (JSON; docs/operations.md)")
      ->required();
  app.add_option("--id", id, "this replica's id, as listed in the config's replicas")->required();
  app.add_option("--data-dir", data_dir, "where this replica keeps its Paxos log and snapshots")
      ->required();
  app.add_flag("--bootstrap", bootstrap,
               "initialise an empty data directory (a new cluster's first start only)");
  app.add_option("--http-threads", http_threads, "threads serving the REST API")
      ->check(CLI::Range(1, 64));
  app.add_option("--snapshot-every", snapshot_every,
                 "take a snapshot of the transaction table every this many slots")
      ->check(CLI::Range(100, 100'000'000));
  app.add_option("--log-level", log_level, std::string(logging::kLevelNames));
  std::string test_fault;
  app.add_option("--test-fault", test_fault)
      ->group("")  // hidden: process-level tests only
      ->check(CLI::IsMember({"before_decision", "after_decision"}));
  CLI11_PARSE(app, argc, argv);

  if (Status s = logging::setup("dtx-coordinator", log_level); !s.ok()) {
    fprintf(stderr, "dtx-coordinator: %s\n", s.describe().c_str());
    return 2;
  }
  auto config = coordinator::load_config(config_path);
  if (!config.ok()) {
    spdlog::error("{}", config.status().message());
    return 2;
  }
  coordinator::CoordinatorOptions o;
  o.config = std::move(*config);
  o.id = id;
  o.data_dir = data_dir;
  o.bootstrap = bootstrap;
  o.http_threads = http_threads;
  o.snapshot_every_slots = snapshot_every;
  o.test_fault = test_fault;

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  auto c = coordinator::Coordinator::start(std::move(o));
  if (!c.ok()) {
    spdlog::error("cannot start: {}", c.status().describe());
    return 1;
  }
  while (!g_stop)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  spdlog::info("stopping on signal");
  (*c)->stop();
  return 0;
}
