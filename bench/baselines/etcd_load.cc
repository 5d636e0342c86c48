// dtx-etcd-load: closed-loop Put load over etcd's native gRPC KV API, the
// baseline dtx-paxos-bench compares dtx's Multi-Paxos replication against
// (start a cluster with bench/baselines/etcd.sh).
//
// Each of --clients clients keeps exactly one Put outstanding: it sends the
// next one when the reply to the previous one arrives. Clients are driven
// asynchronously through gRPC completion queues (one per --threads thread),
// over a few channels (--channels per endpoint, each its own HTTP/2
// connection), so a thousand clients cost a thousand small structs, not a
// thousand threads. Only Puts that complete inside the measured window
// (after --warmup-seconds, for --seconds) count towards the figures.
//
// By default the generator asks every endpoint for its status once, finds
// the leader and sends every Put to it (--target leader); --target all
// spreads clients round-robin over all endpoints and lets followers forward.
//
// stdout gets one machine-readable line:
//   clients=64 puts=21000 seconds=5.00 puts_per_s=4200.0 p50_ms=14.20 p99_ms=31.00 errors=0 ...
// stderr gets a human one. Exit status 1 if any Put failed or none completed.
#include <fmt/format.h>
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "etcd_kv.grpc.pb.h"

namespace {

using Clk = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> endpoints;
  int clients = 1;
  double seconds = 10.0;
  double warmup_seconds = 1.0;
  size_t value_bytes = 100;
  int64_t keys = 0;  // 0: one key per client
  std::string target = "leader";
  int channels_per_endpoint = 2;
  int threads = 2;
  int timeout_ms = 5000;
};

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "dtx-etcd-load: {}\n", what);
  std::exit(1);
}

std::string strip_scheme(std::string ep) {
  for (const char* scheme : {"http://", "https://"}) {
    const std::string s = scheme;
    if (ep.rfind(s, 0) == 0) ep = ep.substr(s.size());
  }
  while (!ep.empty() && ep.back() == '/')
    ep.pop_back();
  return ep;
}

std::shared_ptr<grpc::Channel> make_channel(const std::string& endpoint, int index) {
  grpc::ChannelArguments args;
  // Channels with equal arguments may share one connection through the
  // global subchannel pool; a local pool gives each channel its own.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("dtx.etcd_load.channel", index);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

// Asks each endpoint for its status and returns the endpoint whose member id
// is the leader's, if any endpoint knows and is the leader.
std::optional<std::string> find_leader(const std::vector<std::string>& endpoints) {
  uint64_t leader = 0;
  std::vector<std::pair<std::string, uint64_t>> members;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    auto stub = etcdserverpb::Maintenance::NewStub(make_channel(endpoints[i], -1));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    etcdserverpb::StatusResponse resp;
    grpc::Status s = stub->Status(&ctx, etcdserverpb::StatusRequest(), &resp);
    if (!s.ok()) {
      fmt::print(stderr, "dtx-etcd-load: status of {} failed: {}\n", endpoints[i],
                 s.error_message());
      continue;
    }
    members.emplace_back(endpoints[i], resp.header().member_id());
    if (resp.leader() != 0) leader = resp.leader();
  }
  for (auto& [ep, id] : members) {
    if (leader != 0 && id == leader) return ep;
  }
  return std::nullopt;
}

// One closed-loop client: at most one Put (or one back-off alarm) in flight.
struct Client {
  int id = 0;
  int64_t seq = 0;  // Puts sent so far, picks the next key
  etcdserverpb::KV::Stub* stub = nullptr;
  grpc::CompletionQueue* cq = nullptr;
  std::vector<int64_t>* latencies = nullptr;  // owned by this client's CQ thread

  bool backing_off = false;
  grpc::Alarm alarm;
  std::optional<grpc::ClientContext> ctx;
  etcdserverpb::PutRequest req;
  etcdserverpb::PutResponse resp;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>> reader;
  Clk::time_point sent;
};

class Load {
 public:
  explicit Load(const Options& o) : o_(o), value_(o.value_bytes, 'v') {
    keys_ = o.keys > 0 ? o.keys : o.clients;
  }

  void run(const std::vector<std::string>& endpoints) {
    // Channels interleave endpoints, so client i talks to endpoint i % n.
    for (int c = 0; c < o_.channels_per_endpoint; ++c) {
      for (const auto& ep : endpoints) {
        const int index = static_cast<int>(channels_.size());
        channels_.push_back(make_channel(ep, index));
        stubs_.push_back(etcdserverpb::KV::NewStub(channels_.back()));
      }
    }
    for (size_t i = 0; i < channels_.size(); ++i) {
      if (!channels_[i]->WaitForConnected(std::chrono::system_clock::now() +
                                          std::chrono::seconds(5))) {
        die(fmt::format("cannot connect to {}", endpoints[i % endpoints.size()]));
      }
    }

    const int nthreads = std::max(1, std::min(o_.threads, o_.clients));
    for (int t = 0; t < nthreads; ++t)
      cqs_.push_back(std::make_unique<grpc::CompletionQueue>());
    latencies_.resize(nthreads);
    for (auto& v : latencies_)
      v.reserve(1 << 16);
    clients_.reserve(o_.clients);
    for (int i = 0; i < o_.clients; ++i) {
      auto c = std::make_unique<Client>();
      c->id = i;
      c->stub = stubs_[i % stubs_.size()].get();
      c->cq = cqs_[i % nthreads].get();
      c->latencies = &latencies_[i % nthreads];
      clients_.push_back(std::move(c));
    }

    start_ = Clk::now();
    measure_from_ = start_ + std::chrono::duration_cast<Clk::duration>(
                                 std::chrono::duration<double>(o_.warmup_seconds));
    measure_to_ = measure_from_ + std::chrono::duration_cast<Clk::duration>(
                                      std::chrono::duration<double>(o_.seconds));
    in_flight_ = o_.clients;
    for (auto& c : clients_)
      send(*c);
    std::vector<std::thread> threads;
    for (int t = 0; t < nthreads; ++t)
      threads.emplace_back([this, t] { poll(*cqs_[t]); });

    std::this_thread::sleep_until(measure_to_);
    // Clients stop on their own once past measure_to_; wait for the stragglers.
    const auto give_up = Clk::now() + std::chrono::milliseconds(o_.timeout_ms + 2000);
    while (in_flight_.load() > 0 && Clk::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (in_flight_.load() > 0) {
      fmt::print(stderr, "dtx-etcd-load: {} Puts still outstanding at exit\n", in_flight_.load());
    }
    for (auto& cq : cqs_)
      cq->Shutdown();
    for (auto& th : threads)
      th.join();
  }

  const std::vector<std::vector<int64_t>>& latencies() const { return latencies_; }
  int64_t errors() const { return errors_.load(); }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }
  double window_seconds() const { return o_.seconds; }
  int64_t keys() const { return keys_; }

 private:
  void send(Client& c) {
    const int64_t key = (c.id + c.seq * o_.clients) % keys_;
    ++c.seq;
    c.req.set_key(fmt::format("dtx-bench/{:08d}", key));
    c.req.set_value(value_);
    c.ctx.reset();
    c.ctx.emplace();
    c.sent = Clk::now();
    c.ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(o_.timeout_ms));
    c.reader = c.stub->PrepareAsyncPut(&*c.ctx, c.req, c.cq);
    c.reader->StartCall();
    c.reader->Finish(&c.resp, &c.status, &c);
  }

  void poll(grpc::CompletionQueue& cq) {
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
      Client& c = *static_cast<Client*>(tag);
      const auto now = Clk::now();
      if (c.backing_off) {
        c.backing_off = false;
        if (now >= measure_to_) {
          --in_flight_;
        } else {
          send(c);
        }
        continue;
      }
      if (!c.status.ok()) {
        note_error(c.status);
      } else if (now >= measure_from_ && now < measure_to_) {
        c.latencies->push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.sent).count());
      }
      if (now >= measure_to_) {
        --in_flight_;
      } else if (!c.status.ok()) {
        // Do not spin on a dead endpoint: retry after 10 ms.
        c.backing_off = true;
        c.alarm.Set(&cq, std::chrono::system_clock::now() + std::chrono::milliseconds(10), &c);
      } else {
        send(c);
      }
    }
  }

  void note_error(const grpc::Status& s) {
    if (errors_.fetch_add(1) == 0) {
      std::lock_guard lock(mu_);
      first_error_ =
          fmt::format("code {}: {}", static_cast<int>(s.error_code()), s.error_message());
    }
  }

  Options o_;
  std::string value_;
  int64_t keys_ = 1;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs_;
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs_;
  std::vector<std::vector<int64_t>> latencies_;  // one vector per CQ thread
  std::vector<std::unique_ptr<Client>> clients_;
  Clk::time_point start_, measure_from_, measure_to_;
  std::atomic<int> in_flight_{0};
  std::atomic<int64_t> errors_{0};
  std::mutex mu_;
  std::string first_error_;
};

double percentile_ms(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Closed-loop Put load over etcd's gRPC KV API (the etcd baseline for dtx-paxos-bench)."};
  Options o;
  std::string endpoints;
  app.add_option("--endpoints", endpoints,
                 "comma-separated host:port client endpoints (default: $ETCD_ENDPOINTS)")
      ->envname("ETCD_ENDPOINTS")
      ->required();
  app.add_option("--clients", o.clients, "concurrent closed-loop clients (one Put in flight each)")
      ->default_val(o.clients)
      ->check(CLI::Range(1, 100000));
  app.add_option("--seconds", o.seconds, "length of the measured window")
      ->default_val(o.seconds)
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup-seconds", o.warmup_seconds, "unmeasured load before the window")
      ->default_val(o.warmup_seconds)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--value-bytes", o.value_bytes, "bytes per value")->default_val(o.value_bytes);
  app.add_option("--keys", o.keys, "key space (0: one key per client)")
      ->default_val(o.keys)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--target", o.target,
                 "leader: all clients on the leader (found through Maintenance/Status); "
                 "all: clients round-robin over every endpoint")
      ->default_val(o.target)
      ->check(CLI::IsMember({"leader", "all"}));
  app.add_option("--channels", o.channels_per_endpoint,
                 "gRPC channels (TCP connections) per endpoint used")
      ->default_val(o.channels_per_endpoint)
      ->check(CLI::Range(1, 64));
  app.add_option("--threads", o.threads, "completion-queue threads")
      ->default_val(o.threads)
      ->check(CLI::Range(1, 64));
  app.add_option("--timeout-ms", o.timeout_ms, "deadline of each Put")
      ->default_val(o.timeout_ms)
      ->check(CLI::Range(1, 600000));
  CLI11_PARSE(app, argc, argv);

  std::vector<std::string> all;
  for (size_t pos = 0; pos <= endpoints.size();) {
    size_t comma = endpoints.find(',', pos);
    if (comma == std::string::npos) comma = endpoints.size();
    std::string ep = strip_scheme(endpoints.substr(pos, comma - pos));
    if (!ep.empty()) all.push_back(ep);
    pos = comma + 1;
  }
  if (all.empty()) die("--endpoints: no endpoint given");

  std::vector<std::string> used = all;
  std::string target = "all";
  if (o.target == "leader") {
    if (auto leader = find_leader(all)) {
      used = {*leader};
      target = "leader";
    } else {
      fmt::print(stderr, "dtx-etcd-load: no leader found; spreading clients over all endpoints\n");
    }
  }

  Load load(o);
  load.run(used);

  std::vector<int64_t> lat;
  for (const auto& v : load.latencies())
    lat.insert(lat.end(), v.begin(), v.end());
  const auto puts = static_cast<int64_t>(lat.size());
  const double rate = static_cast<double>(puts) / load.window_seconds();
  const double p50 = percentile_ms(lat, 0.50);
  const double p99 = percentile_ms(lat, 0.99);
  const int64_t errors = load.errors();

  fmt::print(
      "clients={} puts={} seconds={:.2f} puts_per_s={:.1f} p50_ms={:.3f} p99_ms={:.3f} "
      "errors={} target={} endpoints={} value_bytes={} keys={}\n",
      o.clients, puts, load.window_seconds(), rate, p50, p99, errors, target, used.size(),
      o.value_bytes, load.keys());
  std::fflush(stdout);
  fmt::print(stderr,
             "dtx-etcd-load: {} clients -> {} ({}): {:.0f} puts/s, p50 {:.2f} ms, p99 {:.2f} ms, "
             "{} errors ({:.1f} s measured after {:.1f} s warm-up, {}-byte values, {} keys)\n",
             o.clients, fmt::join(used, ","), target, rate, p50, p99, errors, load.window_seconds(),
             o.warmup_seconds, o.value_bytes, load.keys());
  if (errors > 0) fmt::print(stderr, "dtx-etcd-load: first error: {}\n", load.first_error());
  return (errors > 0 || puts == 0) ? 1 : 0;
}
