#include "coordinator/coordinator.h"

#include <spdlog/spdlog.h>

#include <boost/json/serialize.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <future>

#include <unistd.h>

#include "common/logging.h"
#include "coordinator/agent_link.h"
#include "coordinator/coordinator_impl.h"
#include "coordinator/core/records.h"

namespace dtx::coordinator {

void LatencyHistogram::add(int64_t us) {
  size_t i = 0;
  while (i < std::size(kBoundsUs) && us > kBoundsUs[i])
    ++i;
  ++counts[i];
  ++total;
  sum_us += us;
}

Now Coordinator::Impl::now() const {
  const int64_t wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  return Now{clock.now_ms(), wall};
}

void Coordinator::Impl::run(std::function<void()> fn) {
  node->post([this, fn = std::move(fn)] {
    fn();
    flush();
  });
}

void Coordinator::Impl::request(rest::Replier reply, std::string target,
                                std::function<void(uint64_t)> fn) {
  if (stopping.load()) {
    reply(rest::Response::error(503, "stopping", "this coordinator replica is stopping"));
    return;
  }
  const uint64_t id = next_request.fetch_add(1);
  node->post([this, id, reply = std::move(reply), target = std::move(target),
              fn = std::move(fn)]() mutable {
    pending.emplace(id, Pending{std::move(reply), std::move(target)});
    fn(id);
    flush();
  });
}

void Coordinator::Impl::flush() {
  for (int round = 0; round < 16 && driver->has_effects(); ++round) {
    Effects fx = driver->take_effects();
    for (Event& e : fx.events)
      log_event(e);
    for (Answer& a : fx.answers)
      deliver(std::move(a));
    for (Proposal& p : fx.proposals)
      propose(std::move(p));
    for (AgentCall& c : fx.calls)
      send(std::move(c));
  }
  auto& lat = driver->mutable_stats().commit_latency_us;
  for (int64_t us : lat)
    commit_latency.add(us);
  lat.clear();
}

void Coordinator::Impl::log_event(const Event& e) {
  spdlog::level::level_enum level = spdlog::level::info;
  switch (e.level) {
    case Event::Level::debug:
      level = spdlog::level::debug;
      break;
    case Event::Level::info:
      level = spdlog::level::info;
      break;
    case Event::Level::warn:
      level = spdlog::level::warn;
      break;
    case Event::Level::error:
      level = spdlog::level::err;
      break;
  }
  if (e.txid.empty()) {
    spdlog::log(level, "{}", e.message);
  } else {
    logging::txn(level, e.txid, "{}", e.message);
  }
}

void Coordinator::Impl::deliver(Answer a) {
  auto it = pending.find(a.request_id);
  if (it == pending.end()) return;
  Pending p = std::move(it->second);
  pending.erase(it);
  if (!a.not_leader) {
    rest::Response r;
    r.status = a.http_status;
    r.body = std::move(a.body);
    p.reply(std::move(r));
    return;
  }
  // Redirect to the leader (307 keeps the method and body), or 503 when no
  // leader is known.
  const consensus::NodeStatus st = node->status();
  boost::json::object body;
  boost::json::object err;
  if (st.leader && *st.leader != opt.id) {
    const ReplicaAddress* leader = opt.config.replica(*st.leader);
    const std::string url = "http://" + (leader ? leader->api : std::string("?"));
    err["code"] = "not_leader";
    err["message"] = "this replica is a follower; the leader is replica " +
                     std::to_string(*st.leader) + " at " + url;
    body["error"] = std::move(err);
    body["leader"] = *st.leader;
    body["leader_url"] = url;
    rest::Response r = rest::Response::json(307, body);
    r.headers.set("Location", url + p.target);
    p.reply(std::move(r));
    return;
  }
  err["code"] = "no_leader";
  err["message"] = st.leader ? "this replica was elected but does not serve yet; try again"
                             : "no coordinator leader is known (no quorum?); try again";
  body["error"] = std::move(err);
  rest::Response r = rest::Response::json(503, body);
  r.headers.set("Retry-After", "1");
  p.reply(std::move(r));
}

void Coordinator::Impl::send(AgentCall c) {
  agent_calls.fetch_add(1, std::memory_order_relaxed);
  const uint64_t id = c.id;
  const AgentCall::Kind kind = c.kind;
  const std::string url = c.url;
  rest::ClientRequest req = encode_call(c);
  agents->request(url, std::move(req), [this, id, kind](Result<rest::Response> r) {
    AgentReply reply = decode_reply(kind, r);
    if (reply.delivery != AgentReply::Delivery::answered) {
      agent_call_failures.fetch_add(1, std::memory_order_relaxed);
    }
    if (stopping.load()) return;
    run([this, id, reply = std::move(reply)]() mutable {
      driver->on_agent_reply(id, std::move(reply), now());
    });
  });
}

namespace {

// The node's outcome, by its name (consensus::outcome_name), so this shell
// follows the node's list as it grows; a name it does not know counts as
// unknown, the safe reading (P7).
ProposeOutcome outcome_of(const consensus::ProposeResult& r) {
  const std::string_view n = consensus::outcome_name(r.outcome);
  if (n == "applied") return ProposeOutcome::applied;
  if (n == "not_leader") return ProposeOutcome::not_leader;
  if (n == "not_serving") return ProposeOutcome::not_serving;
  if (n == "busy") return ProposeOutcome::busy;
  if (n == "too_large") return ProposeOutcome::too_large;
  if (n == "stopped") return ProposeOutcome::stopped;
  return ProposeOutcome::unknown;
}

// The node hands each applied command to the table; term starts are the
// table's own TERM records (core/records.h), so the node's are skipped.
struct ApplyAdapter {
  Coordinator::Impl* self;
  void operator()(consensus::Slot slot, const consensus::Command& c) const {
    self->on_apply(slot, c);
  }
  template <class Entry>
  void operator()(const Entry& e) const {
    if (e.command) self->on_apply(e.slot, *e.command);
  }
};

}  // namespace

void Coordinator::Impl::propose(Proposal p) {
  if (opt.test_fault == "before_decision") {
    const auto* d = std::get_if<DecisionRecord>(&p.record);
    if (d && d->outcome == Outcome::committed && !d->participants.empty() && test_fault_fires()) {
      spdlog::warn("coordinator: test fault before_decision: killing this process");
      std::raise(SIGKILL);
    }
  }
  std::string bytes = encode_record(p.record);
  const uint64_t id = p.id;
  node->propose(std::move(bytes), [this, id](consensus::ProposeResult r) {
    // Completions run on the loop.
    const ProposeOutcome o = outcome_of(r);
    if (o != ProposeOutcome::applied) ++proposals_refused;
    driver->on_proposed(id, o, now());
    flush();
  });
}

bool Coordinator::Impl::test_fault_fires() {
  // Armed by a file next to the data directories; the first replica to
  // remove it fires, so one fault kills one leader, not every next one.
  std::string dir = opt.data_dir;
  while (!dir.empty() && dir.back() == '/')
    dir.pop_back();
  const auto slash = dir.rfind('/');
  const std::string armed =
      (slash == std::string::npos ? std::string(".") : dir.substr(0, slash)) + "/test-fault-armed";
  return ::unlink(armed.c_str()) == 0;
}

void Coordinator::Impl::on_apply(consensus::Slot slot, const consensus::Command& c) {
  auto rec = decode_record(c.payload);
  if (!rec.ok()) {
    // Every replica applies the same log: a record this build cannot read
    // would make this replica's table differ from the others'. Stop.
    spdlog::critical(
        "coordinator: slot {} holds a record this replica cannot read ({}); "
        "stopping rather than diverge from the group",
        slot, rec.status().describe());
    std::abort();
  }
  ++applied_commands;
  if (slot != last_applied_slot) {
    ++applied_slots;
    last_applied_slot = slot;
  }
  const ApplyResult res = table->apply(slot, *rec);
#ifndef NDEBUG
  if (Status s = table->check_invariants(); !s.ok()) {
    spdlog::critical("coordinator: table invariant broken at slot {}: {}", slot, s.describe());
    std::abort();
  }
#endif
  if (opt.test_fault == "after_decision" && res.kind == ApplyResult::Kind::decided &&
      res.first_decision && res.outcome == Outcome::committed && driver->serving() &&
      test_fault_fires()) {
    spdlog::warn("coordinator: test fault after_decision: killing this process");
    std::raise(SIGKILL);
  }
  if (res.kind == ApplyResult::Kind::ignored && !res.note.empty()) {
    spdlog::debug("coordinator: slot {} {}: {}", slot, describe(*rec), res.note);
  }
  driver->on_applied(*rec, res, now());
  flush();
}

void Coordinator::Impl::restore(consensus::Slot index, const std::string& data) {
  auto t = TxnTable::restore(data);
  if (!t.ok()) {
    spdlog::critical("coordinator: the snapshot at slot {} does not load ({}); stopping", index,
                     t.status().describe());
    std::abort();
  }
  if (t->cluster() != opt.config.cluster) {
    spdlog::critical("coordinator: the snapshot belongs to cluster '{}', not '{}'; stopping",
                     t->cluster(), opt.config.cluster);
    std::abort();
  }
  *table = std::move(*t);
  spdlog::info("coordinator: table restored from the snapshot at slot {} ({} transactions)", index,
               table->entries().size());
}

std::function<std::string()> Coordinator::Impl::snapshot() {
  // Copied on the loop at exactly the applied slot; serialised off it (P6).
  auto copy = std::make_shared<const TxnTable>(*table);
  return [copy] { return copy->snapshot(); };
}

void Coordinator::Impl::tick_loop() {
  std::unique_lock<std::mutex> lock(ticker_mu);
  int64_t next_health = 0;
  while (!stopping.load()) {
    ticker_cv.wait_for(lock, std::chrono::milliseconds(opt.tick_ms));
    if (stopping.load()) break;
    run([this] { driver->tick(now()); });
    const int64_t t = clock.now_ms();
    if (t >= next_health) {
      next_health = t + opt.agent_health_every_ms;
      lock.unlock();
      check_agent_health();
      lock.lock();
    }
  }
}

void Coordinator::Impl::check_agent_health() {
  // The registry lives on the loop: copy the targets there, probe from here.
  run([this] {
    std::map<std::string, std::string> targets;
    for (const auto& [name, e] : table->registry())
      targets[name] = e.url;
    std::lock_guard<std::mutex> g(health_mu);
    health_targets = std::move(targets);
    for (auto it = health.begin(); it != health.end();) {
      it = health_targets.count(it->first) ? std::next(it) : health.erase(it);
    }
  });
  std::map<std::string, std::string> targets;
  {
    std::lock_guard<std::mutex> g(health_mu);
    targets = health_targets;
  }
  for (const auto& [name, url] : targets) {
    rest::ClientRequest req;
    req.method = rest::Method::get;
    req.target = "/readyz";
    req.timeout_ms = 1000;
    agents->request(url, std::move(req), [this, name = name](Result<rest::Response> r) {
      AgentHealth h;
      h.healthy = r.ok() && r->status == 200;
      h.checked_at_ms = now().wall_ms;
      h.detail = r.ok() ? std::to_string(r->status) : r.status().describe();
      std::lock_guard<std::mutex> g(health_mu);
      health[name] = std::move(h);
    });
  }
}

// ---------------------------------------------------------------------------

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Coordinator::~Coordinator() {
  stop();
}

uint16_t Coordinator::api_port() const {
  return impl_->server ? impl_->server->port() : 0;
}

Result<std::unique_ptr<Coordinator>> Coordinator::start(CoordinatorOptions options) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.opt = std::move(options);
  const ClusterConfig& cfg = m.opt.config;
  m.self = cfg.replica(m.opt.id);
  if (!m.self) {
    return error(Code::invalid_argument,
                 "replica id " + std::to_string(m.opt.id) + " is not in the config's replicas");
  }
  auto cluster_auth = rest::TokenAuth::from_tokens({cfg.cluster_token});
  if (!cluster_auth.ok()) {
    return error(Code::invalid_argument, "cluster token: " + cluster_auth.status().message());
  }
  m.cluster_auth = std::move(*cluster_auth);
  auto any_auth = rest::TokenAuth::from_tokens({cfg.client_token, cfg.cluster_token});
  if (!any_auth.ok()) {
    return error(Code::invalid_argument, "client token: " + any_auth.status().message());
  }

  m.table = std::make_unique<TxnTable>(cfg.cluster);
  m.driver = std::make_unique<Driver>(cfg.driver, m.table.get());
  std::vector<ParticipantSetRecord> seed;
  for (const auto& p : cfg.participants)
    seed.push_back(ParticipantSetRecord{p.name, p.agent_id, p.url});
  m.driver->seed_registry(std::move(seed));

  rest::ClientOptions co;
  co.io_threads = m.opt.agent_client_threads;
  co.connections_per_peer_max = 256;
  co.queued_requests_max = 65536;
  co.bearer_token = cfg.cluster_token;
  m.agents = std::make_unique<rest::Client>(co);

  consensus::NodeOptions no;
  no.cluster_id = cluster_number(cfg.cluster);
  no.self = m.opt.id;
  for (const auto& r : cfg.replicas)
    no.replicas[r.id] = r.peer;
  no.listen = m.self->peer_listen;
  no.data_dir = m.opt.data_dir;
  no.bootstrap = m.opt.bootstrap;
  no.secret = cfg.cluster_token;
  no.tick_ms = m.opt.paxos_tick_ms;
  no.election_ticks = m.opt.election_ticks;
  no.snapshot_every_slots = m.opt.snapshot_every_slots;
  no.fs = m.opt.fs;
  consensus::NodeCallbacks cb;
  Impl* self = &m;
  cb.apply = ApplyAdapter{self};
  cb.on_leader = [self](consensus::Ballot b, consensus::Slot) {
    spdlog::info("coordinator: elected leader under ballot {}; proposing its term", b.describe());
    self->driver->on_elected(b, self->now());
    self->flush();
  };
  cb.on_leadership_lost = [self] {
    self->driver->on_not_serving();
    self->flush();
  };
  cb.snapshot = [self] { return self->snapshot(); };
  cb.restore = [self](consensus::Slot index, const std::string& data) {
    self->restore(index, data);
  };
  auto node = consensus::Node::start(std::move(no), std::move(cb));
  if (!node.ok()) return node.status();
  m.node = std::move(*node);

  rest::ServerOptions so;
  const std::string& listen = m.self->api_listen;
  const auto colon = listen.rfind(':');
  so.bind_address = listen.substr(0, colon);
  so.port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  so.io_threads = m.opt.http_threads;
  so.body_bytes_max = 4u << 20;
  auto server = rest::Server::start(so, m.build_router(), std::move(*any_auth));
  if (!server.ok()) {
    m.node->stop();
    return error(server.status().code(),
                 "cannot serve the REST API on " + listen + ": " + server.status().message());
  }
  m.server = std::move(*server);
  m.ticker = std::thread([self] { self->tick_loop(); });
  spdlog::info("coordinator: replica {} of cluster '{}' serving the API on {} (Paxos on {})",
               m.opt.id, cfg.cluster, listen, m.self->peer_listen);
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl)));
}

void Coordinator::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> g(m.ticker_mu);
    m.ticker_cv.notify_all();
  }
  if (m.ticker.joinable()) m.ticker.join();
  if (m.server) m.server->stop();
  if (m.node) {
    // Answer what is still waiting (503) on the loop, then stop the node.
    std::promise<void> done;
    auto fut = done.get_future();
    m.node->post([&m, &done] {
      for (auto& [id, p] : m.pending) {
        p.reply(rest::Response::error(503, "stopping", "this coordinator replica is stopping"));
      }
      m.pending.clear();
      done.set_value();
    });
    fut.wait_for(std::chrono::seconds(5));
    m.node->stop();
  }
  m.agents.reset();
  spdlog::info("coordinator: replica {} stopped", m.opt.id);
}

}  // namespace dtx::coordinator
