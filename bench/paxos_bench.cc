// dtx-paxos-bench: commands/s and commit latency of dtx's Multi-Paxos group
// against a 3-member etcd measured in the same run.
//
// dtx: three dtx-paxos-kv replicas as separate processes on loopback, fsync
// on, data under --dir; N closed-loop clients each PUT a 100-byte value
// through the leader over HTTP/1.1 keep-alive and wait for it to be applied.
// etcd: bench/baselines/etcd.sh starts three etcd members on the same disk;
// dtx-etcd-load drives etcd's gRPC KV Put with the same value size and
// client counts. Both clusters run for the whole benchmark and the rows
// alternate (dtx, etcd) per client count.
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "rest/client.h"
#include "tests/support/process.h"

namespace {

using namespace dtx;
using Clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

const char* kToken = "bench-token-0123456789abcdef";

struct Row {
  double ops_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  uint64_t errors = 0;
};

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "dtx-paxos-bench: {}\n", what);
  std::exit(1);
}

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) die("cannot run " + cmd);
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p))
    out.append(buf, n);
  const int rc = ::pclose(p);
  if (rc != 0) die("command failed (" + std::to_string(rc) + "): " + cmd + "\n" + out);
  return out;
}

std::string field(const std::string& text, const std::string& key) {
  auto pos = text.find(key + "=");
  if (pos == std::string::npos) return {};
  pos += key.size() + 1;
  auto end = text.find_first_of(" \n", pos);
  return text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

double percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]) / 1e6;
}

// --- the dtx cluster -----------------------------------------------------------

class DtxCluster {
 public:
  DtxCluster(const std::string& dir, uint32_t window, const std::vector<std::string>& kv_args)
      : dir_(dir) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    write(dir_ + "/secret", "bench-cluster-secret-0123456789");
    write(dir_ + "/token", kToken);
    std::string replicas, http;
    for (int i = 1; i <= 3; ++i) {
      replicas += (i > 1 ? "," : "") + std::to_string(i) +
                  "=127.0.0.1:" + std::to_string(testing::free_port());
      http_.push_back("127.0.0.1:" + std::to_string(testing::free_port()));
      http += (i > 1 ? "," : "") + std::to_string(i) + "=" + http_.back();
    }
    for (int i = 1; i <= 3; ++i) {
      std::vector<std::string> args = {"--id",
                                       std::to_string(i),
                                       "--cluster",
                                       "1",
                                       "--replicas",
                                       replicas,
                                       "--http",
                                       http,
                                       "--data",
                                       dir_ + "/data" + std::to_string(i),
                                       "--secret-file",
                                       dir_ + "/secret",
                                       "--token-file",
                                       dir_ + "/token",
                                       "--bootstrap",
                                       "--log-level",
                                       "warn",
                                       "--snapshot-every",
                                       "100000",
                                       "--window",
                                       std::to_string(window)};
      args.insert(args.end(), kv_args.begin(), kv_args.end());
      procs_.push_back(testing::Process::spawn(testing::bin_dir() + "/dtx-paxos-kv", args,
                                               dir_ + "/log" + std::to_string(i)));
    }
  }
  ~DtxCluster() {
    for (auto& p : procs_)
      p.signal(SIGTERM);
    for (auto& p : procs_)
      p.wait(5s);
  }

  static void write(const std::string& path, const std::string& s) {
    std::ofstream(path) << s << "\n";
    ::chmod(path.c_str(), 0600);
  }

  // The leader's HTTP address.
  std::string leader(rest::Client& client) {
    const auto deadline = Clk::now() + 15s;
    while (Clk::now() < deadline) {
      for (const std::string& h : http_) {
        auto r = client.get(h, "/status", 1000);
        if (!r.ok() || r->status != 200) continue;
        auto j = r->json_body();
        if (j.ok() && j->as_object().at("serving").as_bool()) return h;
      }
      std::this_thread::sleep_for(50ms);
    }
    die("no dtx leader elected; see " + dir_ + "/log*");
  }

 private:
  std::string dir_;
  std::vector<std::string> http_;
  std::vector<testing::Process> procs_;
};

Row run_dtx(const std::string& leader, int clients, double seconds, size_t value_bytes) {
  rest::ClientOptions co;
  co.io_threads = 1;
  co.connections_per_peer_max = static_cast<size_t>(clients);
  co.queued_requests_max = static_cast<size_t>(clients) * 2;
  co.bearer_token = kToken;
  co.default_timeout_ms = 10'000;
  rest::Client client(co);
  const std::string value(value_bytes, 'v');
  std::atomic<bool> measuring{false}, stopping{false};
  std::atomic<int> in_flight{0};
  std::atomic<uint64_t> errors{0};
  std::mutex mu;
  std::vector<int64_t> lat;
  lat.reserve(1 << 20);
  std::function<void(int)> issue = [&](int c) {
    if (stopping.load()) return;
    rest::ClientRequest req;
    req.method = rest::Method::put;
    req.target = "/kv/client-" + std::to_string(c);
    req.body = value;
    const auto t0 = Clk::now();
    in_flight++;
    client.request(leader, std::move(req), [&, c, t0](Result<rest::Response> r) {
      const int64_t ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clk::now() - t0).count();
      if (!r.ok() || r->status != 200) {
        errors++;
      } else if (measuring.load()) {
        std::lock_guard lock(mu);
        lat.push_back(ns);
      }
      in_flight--;
      issue(c);
    });
  };
  for (int c = 0; c < clients; ++c)
    issue(c);
  std::this_thread::sleep_for(1s);  // warm-up
  measuring = true;
  const auto start = Clk::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  const double elapsed = std::chrono::duration<double>(Clk::now() - start).count();
  stopping = true;
  const auto deadline = Clk::now() + 15s;
  while (in_flight.load() > 0 && Clk::now() < deadline)
    std::this_thread::sleep_for(5ms);
  std::lock_guard lock(mu);
  Row r;
  r.ops_per_s = static_cast<double>(lat.size()) / elapsed;
  r.p50_ms = percentile(lat, 0.50);
  r.p99_ms = percentile(lat, 0.99);
  r.errors = errors.load();
  return r;
}

Row run_etcd(const std::string& load_bin, const std::string& endpoints, int clients, double seconds,
             size_t value_bytes) {
  const std::string out = run_command(
      fmt::format("{} --endpoints {} --clients {} --seconds {} --value-bytes {} 2>/dev/null",
                  load_bin, endpoints, clients, seconds, value_bytes));
  Row r;
  r.ops_per_s = std::atof(field(out, "puts_per_s").c_str());
  r.p50_ms = std::atof(field(out, "p50_ms").c_str());
  r.p99_ms = std::atof(field(out, "p99_ms").c_str());
  r.errors = std::strtoull(field(out, "errors").c_str(), nullptr, 10);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Benchmark dtx's Multi-Paxos group against a 3-member etcd, in one run."};
  std::string dir = "var/bench-paxos";
  std::vector<int> clients = {1, 16, 64, 256};
  double seconds = 5;
  size_t value_bytes = 100;
  bool skip_etcd = false;
  uint32_t window = 0;
  std::vector<std::string> kv_args;
  std::string etcd_script = "bench/baselines/etcd.sh";
  app.add_option("--dir", dir, "scratch directory on the disk to measure")->default_val(dir);
  app.add_option("--clients", clients, "client counts")->delimiter(',')->default_str("1,16,64,256");
  app.add_option("--seconds", seconds, "measured seconds per row")->default_val(seconds);
  app.add_option("--value-bytes", value_bytes, "bytes per value")->default_val(value_bytes);
  app.add_option("--etcd-script", etcd_script, "the etcd cluster script")->default_val(etcd_script);
  app.add_option("--window", window, "dtx Paxos window (0: default)");
  app.add_option("--kv-arg", kv_args, "an extra argument for every dtx-paxos-kv (repeat)")
      ->allow_extra_args(false);
  app.add_flag("--skip-etcd", skip_etcd, "measure dtx only (no baseline: no ratios)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  std::filesystem::create_directories(dir);
  const std::string abs_dir = std::filesystem::absolute(dir).string();
  DtxCluster dtx(abs_dir + "/dtx", window, kv_args);
  rest::ClientOptions co;
  co.bearer_token = kToken;
  rest::Client probe(co);
  const std::string leader = dtx.leader(probe);

  std::string endpoints, etcd_dir;
  const std::string load_bin = testing::bin_dir() + "/dtx-etcd-load";
  if (!skip_etcd) {
    if (!std::filesystem::exists(load_bin)) {
      die(load_bin +
          " was not built (needs libgrpc++-dev; run scripts/setup) — or pass --skip-etcd");
    }
    const std::string out = run_command(etcd_script + " start --dir " + abs_dir);
    endpoints = field(out, "ENDPOINTS");
    etcd_dir = field(out, "ETCD_DIR");
    if (endpoints.empty() || etcd_dir.empty()) die("etcd.sh printed no endpoints:\n" + out);
  }

  fmt::print(
      "dtx-paxos-bench: 3 replicas each, {}-byte values, fsync on, {:.0f} s per row, in {}\n",
      value_bytes, seconds, abs_dir);
  fmt::print("{:>8} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>9} {:>9}\n", "clients",
             "dtx ops/s", "p50 ms", "p99 ms", "etcd put/s", "p50 ms", "p99 ms", "x etcd",
             "p50 ratio");
  for (int c : clients) {
    Row d = run_dtx(leader, c, seconds, value_bytes);
    Row e;
    if (!skip_etcd) e = run_etcd(load_bin, endpoints, c, seconds, value_bytes);
    const double ratio = e.ops_per_s > 0 ? d.ops_per_s / e.ops_per_s : 0;
    const double p50_ratio = e.p50_ms > 0 ? d.p50_ms / e.p50_ms : 0;
    fmt::print(
        "{:>8} | {:>10.0f} {:>8.2f} {:>8.2f} | {:>10.0f} {:>8.2f} {:>8.2f} | {:>8.2f}x "
        "{:>9.2f}{}\n",
        c, d.ops_per_s, d.p50_ms, d.p99_ms, e.ops_per_s, e.p50_ms, e.p99_ms, ratio, p50_ratio,
        d.errors + e.errors ? fmt::format("  ({} errors)", d.errors + e.errors) : "");
    std::fflush(stdout);
  }
  if (!skip_etcd) run_command(etcd_script + " stop " + etcd_dir + " >/dev/null 2>&1");
  return 0;
}
