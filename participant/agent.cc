// The agent's start, stop, timers, upkeep and metrics. Steps are in
// agent_steps.cc and agent_decide.cc, routes in agent_routes.cc.
#include "participant/agent.h"

#include <spdlog/spdlog.h>

#include <sstream>

#include "common/logging.h"
#include "participant/inquiry.h"
#include "rest/client.h"
#include "rest/server.h"

namespace dtx::participant {

Agent::Agent(AgentOptions o, std::unique_ptr<Resource> r)
    : opt_(std::move(o)),
      own_clock_(opt_.clock ? nullptr : std::make_unique<SteadyClock>()),
      clock_(opt_.clock ? opt_.clock : own_clock_.get()),
      resource_(std::move(r)),
      table_(BranchTable::Limits{opt_.tombstone_retention_ms, opt_.tombstones_max}),
      fencing_(opt_.name, [this](const txn::BallotId& b) { return resource_->save_fence(b); }) {}

Result<std::unique_ptr<Agent>> Agent::start(AgentOptions options,
                                            std::unique_ptr<Resource> resource) {
  if (!txn::valid_agent_id(options.name) || !txn::valid_cluster_id(options.cluster)) {
    return error(Code::invalid_argument,
                 "the agent name must be 1-64 characters of [A-Za-z0-9._-] and the cluster id "
                 "1-32 characters of [A-Za-z0-9_-]");
  }
  if (options.token.size() < 16) {
    return error(Code::invalid_argument, "the cluster token must be at least 16 characters");
  }
  if (options.workers == 0 || options.queue_max == 0 || options.tick_ms <= 0) {
    return error(Code::invalid_argument, "workers, queue_max and tick_ms must be positive");
  }
  std::unique_ptr<Agent> a(new Agent(std::move(options), std::move(resource)));
  // Recovery first (A5): nothing is served before the resource is consistent.
  auto prepared = a->resource_->open();
  if (!prepared.ok()) return prepared.status();
  // The fence too: a deposed leader fenced before the restart stays fenced.
  auto fence = a->resource_->load_fence();
  if (!fence.ok()) return fence.status();
  a->fencing_.restore(*fence);
  const uint64_t now = a->now_ticks();
  for (const std::string& txid : *prepared) {
    logging::txn_warn(txid, "found prepared at start-up; asking the coordinator for its outcome");
    a->table_.add(
        txid, std::make_shared<BranchSlot>(BranchMachine::recovered(txid, a->opt_.timers, now)));
  }
  rest::ClientOptions co;
  co.bearer_token = a->opt_.token;
  co.default_timeout_ms = 5000;
  a->client_ = std::make_unique<rest::Client>(co);
  a->inquirer_ = std::make_unique<Inquirer>(a->opt_.coordinators, *a->client_, 3000);
  a->lanes_ = std::make_unique<LanePool>(kLanes, a->opt_.workers, a->opt_.queue_max,
                                         "agent " + a->opt_.name);
  if (!a->opt_.listen.empty()) {
    // Not `unavailable`: a port taken is a configuration problem, not a
    // database still starting (agent_main waits for the latter).
    if (Status s = a->serve_http(); !s.ok()) return error(Code::failed_precondition, s.message());
  }
  a->last_housekeeping_ms_ = a->now_ms();  // open() just did it
  if (a->opt_.run_ticker) a->ticker_ = std::thread([p = a.get()] { p->ticker_loop(); });
  spdlog::info(
      "agent {}: serving {} for cluster {} on port {}, {} prepared branch(es) recovered, fence at "
      "ballot {}",
      a->opt_.name, a->resource_->describe(), a->opt_.cluster, a->port(), prepared->size(),
      fence->describe());
  return a;
}

Agent::~Agent() {
  stop();
}

void Agent::stop() {
  if (stopped_.exchange(true)) return;
  if (server_) server_->stop();
  {
    std::lock_guard lock(tick_mu_);
    stopping_ = true;
  }
  tick_cv_.notify_all();
  if (ticker_.joinable()) ticker_.join();
  if (lanes_) lanes_->stop();
  client_.reset();  // fails pending inquiries; their callbacks queue nothing any more
  // Active branches roll back with their sessions; prepared ones stay
  // prepared in the database (the next start recovers them).
  for (auto& [txid, slot] : table_.all()) {
    std::lock_guard lock(slot->mu);
    slot->session.reset();
  }
}

uint16_t Agent::port() const {
  return server_ ? server_->port() : 0;
}

bool Agent::submit(Lane lane, std::function<void()> job) {
  if (lanes_->submit(static_cast<size_t>(lane), std::move(job))) return true;
  counters_.overloaded++;
  return false;
}

void Agent::ticker_loop() {
  for (;;) {
    {
      std::unique_lock lock(tick_mu_);
      if (tick_cv_.wait_for(lock, std::chrono::milliseconds(opt_.tick_ms),
                            [&] { return stopping_; })) {
        return;
      }
    }
    tick();
  }
}

void Agent::tick() {
  const uint64_t now = now_ticks();
  for (auto& [txid, slot] : table_.all()) {
    std::unique_lock lock(slot->mu, std::try_to_lock);
    if (!lock.owns_lock()) continue;  // busy with a request: not idle
    const auto action = slot->m.on_tick(now);
    lock.unlock();
    if (action.kind != BranchMachine::TickKind::none) on_tick_action(txid, slot, action);
  }
  upkeep();
  table_.expire(now_ms());
}

// Cheap upkeep about once a second (one job queued at a time): the
// resource's own, and dropping marker rows below a watermark that rose.
// Hourly: the resource's housekeeping (old marker rows).
void Agent::upkeep() {
  const int64_t now = now_ms();
  if (now - last_maintain_ms_ >= 1000 && !maintain_queued_.exchange(true)) {
    last_maintain_ms_ = now;
    if (!submit(Lane::work, [this] {
          maintain_queued_ = false;
          resource_->maintain();
          std::optional<txn::Txid> w;
          {
            std::lock_guard lock(forget_mu_);
            w.swap(forget_pending_);
          }
          if (!w) return;
          auto n = resource_->forget_below(*w);
          if (n.ok()) {
            counters_.markers_forgotten += *n;
            return;
          }
          if (n.status().code() != Code::busy) {
            spdlog::warn("agent {}: dropping marker rows below {}: {}", opt_.name, w->str(),
                         n.status().describe());
          }
          std::lock_guard lock(forget_mu_);  // again at the next upkeep
          if (!forget_pending_) forget_pending_ = std::move(w);
        })) {
      maintain_queued_ = false;
    }
  }
  if (now - last_housekeeping_ms_ >= 3'600'000) {
    last_housekeeping_ms_ = now;
    submit(Lane::work, [this] { resource_->housekeeping(); });
  }
}

std::optional<StepAnswer> Agent::admit(const txn::Fence& fence, bool fence_ballot) {
  if (auto r = fencing_.admit(fence, fence_ballot)) {
    if (r->status == 409) counters_.fenced++;
    spdlog::warn("agent {}: refused a request: {}", opt_.name, r->error.message);
    return StepAnswer{r->status, r->error.to_json()};
  }
  learn_watermark(fence.watermark);
  return std::nullopt;
}

std::optional<StepAnswer> Agent::fenced_meanwhile(const std::string& txid,
                                                  const txn::BallotId& ballot) {
  auto r = fencing_.still_current(ballot);
  if (!r) return std::nullopt;
  counters_.fenced++;
  logging::txn_warn(txid, "refused: {}", r->error.message);
  return StepAnswer{r->status, r->error.to_json()};
}

void Agent::learn_watermark(const std::optional<txn::Txid>& w) {
  if (!w || w->cluster != opt_.cluster) return;
  if (!table_.raise_watermark(*w)) return;
  std::lock_guard lock(forget_mu_);
  forget_pending_ = *w;
}

StepAnswer Agent::info() const {
  txn::AgentInfo i;
  i.agent_id = opt_.name;
  i.cluster = opt_.cluster;
  i.database = resource_->describe();
  i.highest_ballot = fencing_.highest();
  i.watermark = table_.watermark();
  return StepAnswer{200, i.to_json()};
}

std::string Agent::metrics() const {
  std::ostringstream o;
  auto line = [&](const char* name, const char* type, const char* help, uint64_t v) {
    o << "# HELP dtx_agent_" << name << " " << help << "\n# TYPE dtx_agent_" << name << " " << type
      << "\ndtx_agent_" << name << " " << v << "\n";
  };
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    line(name, "counter", help, v);
  };
  counter("branches_begun_total", "Branches begun.", counters_.begun);
  counter("votes_yes_total", "Prepares that voted yes.", counters_.votes_yes);
  counter("votes_no_total", "Prepares that voted no.", counters_.votes_no);
  counter("votes_read_only_total",
          "Prepares that voted read_only (the branch wrote nothing and ended at once).",
          counters_.votes_read_only);
  counter("committed_total", "Branches committed.", counters_.committed);
  counter("one_phase_committed_total",
          "Branches committed in one phase (commit-one-phase or a one-phase batch), read-only "
          "ones included.",
          counters_.one_phase_committed);
  counter("one_phase_read_only_total", "One-phase commits of branches that wrote nothing.",
          counters_.one_phase_read_only);
  counter("one_phase_aborted_total",
          "One-phase commits that aborted (exec count or digest mismatch, a doomed branch, a "
          "COMMIT the database refused).",
          counters_.one_phase_aborted);
  counter("one_phase_in_doubt_total",
          "One-phase COMMITs whose answer was lost (settled later from the marker).",
          counters_.one_phase_in_doubt);
  counter("aborted_total", "Branches aborted.", counters_.aborted);
  counter("heuristic_total", "Decisions whose applied outcome differed from the one asked.",
          counters_.heuristic);
  counter("inquiries_total", "Outcome inquiries sent to the coordinator group.",
          counters_.inquiries);
  counter("refused_total", "Requests refused (out of sequence, wrong state).", counters_.refused);
  counter("fenced_total", "Requests refused for a stale ballot or another agent_id.",
          counters_.fenced);
  counter("overloaded_total", "Requests refused with 503 because the work queue was full.",
          counters_.overloaded);
  counter("markers_forgotten_total", "Marker rows dropped below the forget watermark.",
          counters_.markers_forgotten);
  line("branches", "gauge", "Branches held (active, prepared, precommitted).", table_.branches());
  line("outcome_records", "gauge", "Outcomes of finished branches kept in memory.",
       table_.outcomes());
  return o.str();
}

}  // namespace dtx::participant
