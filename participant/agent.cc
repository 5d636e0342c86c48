#include "participant/agent.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <chrono>
#include <cinttypes>
#include <sstream>
#include <thread>

#include "common/logging.h"
#include "rest/client.h"
#include "rest/json.h"
#include "rest/router.h"
#include "rest/server.h"

namespace dtx::participant {

namespace json = boost::json;
using rest::Replier;
using rest::Request;
using rest::Response;

struct Agent::Slot {
  explicit Slot(BranchMachine machine) : m(std::move(machine)) {}
  std::mutex mu;  // one step of this branch at a time
  BranchMachine m;
  std::unique_ptr<Branch> session;  // while ACTIVE
};

namespace {

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool valid_txid(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  for (char c : t) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

json::value to_json(const SqlValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return nullptr;
  if (const bool* b = std::get_if<bool>(&v)) return *b;
  if (const int64_t* i = std::get_if<int64_t>(&v)) return *i;
  if (const double* d = std::get_if<double>(&v)) return *d;
  return json::string(std::get<std::string>(v));
}

Result<SqlValue> from_json(const json::value& v, size_t index) {
  switch (v.kind()) {
    case json::kind::null:
      return SqlValue{};
    case json::kind::bool_:
      return SqlValue{v.get_bool()};
    case json::kind::int64:
      return SqlValue{v.get_int64()};
    case json::kind::uint64:
      if (v.get_uint64() > static_cast<uint64_t>(INT64_MAX)) break;
      return SqlValue{static_cast<int64_t>(v.get_uint64())};
    case json::kind::double_:
      return SqlValue{v.get_double()};
    case json::kind::string:
      return SqlValue{std::string(v.get_string())};
    default:
      break;
  }
  return error(Code::invalid_argument, "params[" + std::to_string(index) +
                                           "] must be null, a boolean, a number or a string");
}

Response json_error(int status, std::string_view code, std::string_view message,
                    json::object extra = {}) {
  json::object e{{"code", code}, {"message", message}};
  for (auto& [k, v] : extra)
    e[k] = v;
  return Response::json(status, json::object{{"error", e}});
}

// Takes a branch's lock for a coordinator's step, waiting at most a few
// milliseconds: long enough for the ticker's glance or a step that is just
// answering, not for an exec that runs a statement (that answers busy).
bool lock_briefly(std::unique_lock<std::mutex>& lock) {
  for (int i = 0; i < 50; ++i) {
    if (lock.try_lock()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return false;
}

// Runs a branch step with a replier that keeps its answer, and sends the
// answer once the step returned: the branch's lock, taken inside the step,
// is free before the client can send its next request (which would
// otherwise find it held and be answered busy).
template <class Step>
void answer_after(const Replier& reply, Step&& step) {
  std::optional<Response> out;
  step(Replier::to([&out](Response r) { out = std::move(r); }));
  if (out) reply(std::move(*out));
}

json::object reason_json(const DbError& e) {
  return json::object{{"sqlstate", e.sqlstate}, {"message", e.message}};
}

}  // namespace

// ---------------------------------------------------------------------------
// Start and stop

Agent::Agent(AgentOptions o, std::unique_ptr<Resource> r)
    : opt_(std::move(o)), resource_(std::move(r)) {}

Result<std::unique_ptr<Agent>> Agent::start(AgentOptions options,
                                            std::unique_ptr<Resource> resource) {
  if (!valid_txid(options.name) || !valid_txid(options.cluster)) {
    return error(Code::invalid_argument,
                 "agent name and cluster id must be 1-128 characters of [A-Za-z0-9._-]");
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
  const uint64_t now = a->now_ticks();
  for (const std::string& txid : *prepared) {
    logging::txn_warn(txid, "found prepared at start-up; asking the coordinator for its outcome");
    a->branches_.emplace(
        txid, std::make_shared<Slot>(BranchMachine::recovered(txid, a->opt_.timers, now)));
  }

  rest::ClientOptions co;
  co.bearer_token = a->opt_.token;
  co.default_timeout_ms = 5000;
  a->client_ = std::make_unique<rest::Client>(co);

  auto auth = rest::TokenAuth::from_tokens({a->opt_.token});
  if (!auth.ok()) return auth.status();
  rest::Router router;
  a->register_routes(&router);
  const auto colon = a->opt_.listen.rfind(':');
  if (colon == std::string::npos) {
    return error(Code::invalid_argument, "listen address must be host:port");
  }
  rest::ServerOptions so;
  so.bind_address = a->opt_.listen.substr(0, colon);
  so.port = static_cast<uint16_t>(std::stoul(a->opt_.listen.substr(colon + 1)));
  so.io_threads = a->opt_.http_threads;
  so.body_bytes_max = a->opt_.body_bytes_max;
  auto server = rest::Server::start(so, std::move(router), std::move(*auth));
  if (!server.ok()) return server.status();
  a->server_ = std::move(*server);

  for (size_t i = 0; i < a->opt_.workers; ++i) {
    for (Lane lane : {Lane::start, Lane::exec, Lane::decide, Lane::work}) {
      a->workers_.emplace_back([p = a.get(), lane] { p->worker_loop(lane); });
    }
  }
  a->last_housekeeping_ms_ = steady_ms();  // open() just did it
  a->ticker_ = std::thread([p = a.get()] { p->ticker_loop(); });
  spdlog::info("agent {}: serving {} for cluster {} on port {}, {} prepared branch(es) recovered",
               a->opt_.name, a->resource_->describe(), a->opt_.cluster, a->port(),
               prepared->size());
  return a;
}

Agent::~Agent() {
  stop();
}

void Agent::stop() {
  if (stopped_.exchange(true)) return;
  if (server_) server_->stop();
  {
    std::lock_guard lock(q_mu_);
    stopping_ = true;
  }
  for (auto& cv : q_cv_)
    cv.notify_all();
  tick_cv_.notify_all();
  for (auto& w : workers_)
    w.join();
  if (ticker_.joinable()) ticker_.join();
  client_.reset();
  // Active branches roll back with their sessions; prepared ones stay
  // prepared in the database (the next start recovers them).
  std::lock_guard lock(mu_);
  branches_.clear();
}

uint16_t Agent::port() const {
  return server_ ? server_->port() : 0;
}

uint64_t Agent::now_ticks() const {
  return static_cast<uint64_t>(steady_ms() / opt_.tick_ms);
}

bool Agent::submit(std::function<void()> job, Lane lane) {
  auto& q = queue_[static_cast<int>(lane)];
  {
    std::lock_guard lock(q_mu_);
    if (stopping_ || q.size() >= opt_.queue_max) {
      counters_.overloaded++;
      return false;
    }
    q.push_back(std::move(job));
  }
  q_cv_[static_cast<int>(lane)].notify_one();
  return true;
}

void Agent::worker_loop(Lane lane) {
  auto& q = queue_[static_cast<int>(lane)];
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(q_mu_);
      q_cv_[static_cast<int>(lane)].wait(lock, [&] { return stopping_ || !q.empty(); });
      if (q.empty()) return;
      job = std::move(q.front());
      q.pop_front();
    }
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("agent {}: a queued job failed: {}", opt_.name, e.what());
    } catch (...) {
      spdlog::error("agent {}: a queued job failed", opt_.name);
    }
  }
}

void Agent::ticker_loop() {
  for (;;) {
    {
      std::unique_lock lock(q_mu_);
      if (tick_cv_.wait_for(lock, std::chrono::milliseconds(opt_.tick_ms),
                            [&] { return stopping_; })) {
        return;
      }
    }
    std::vector<std::pair<std::string, std::shared_ptr<Slot>>> slots;
    {
      std::lock_guard lock(mu_);
      slots.assign(branches_.begin(), branches_.end());
    }
    const uint64_t now = now_ticks();
    for (auto& [txid, slot] : slots) {
      std::unique_lock lock(slot->mu, std::try_to_lock);
      if (!lock.owns_lock()) continue;  // busy with a request: not idle
      const auto action = slot->m.on_tick(now);
      lock.unlock();
      if (action == BranchMachine::TickAction::none) continue;
      if (action == BranchMachine::TickAction::inquire) {
        inquire(txid);
      } else if (!submit([this, txid = txid, action] { do_tick_action(txid, action); })) {
        // Queue full: clear the mark so the machine fires again.
        std::lock_guard relock(slot->mu);
        slot->m.clear_decision_mark();
      }
    }
    // Hourly clean-up in the database (old marker rows).
    // Cheap upkeep about once a second (one job queued at a time).
    if (steady_ms() - last_maintain_ms_ >= 1000 && !maintain_queued_.exchange(true)) {
      last_maintain_ms_ = steady_ms();
      if (!submit([this] {
            maintain_queued_ = false;
            resource_->maintain();
          })) {
        maintain_queued_ = false;
      }
    }
    if (steady_ms() - last_housekeeping_ms_ >= 3'600'000) {
      last_housekeeping_ms_ = steady_ms();
      submit([this] { resource_->housekeeping(); });
    }
    // Forget outcomes past their retention.
    const int64_t cutoff = steady_ms() - opt_.tombstone_retention_ms;
    std::lock_guard lock(mu_);
    while (!tombstone_order_.empty()) {
      auto it = tombstones_.find(tombstone_order_.front());
      if (it != tombstones_.end() && it->second.decided_ms > cutoff &&
          tombstones_.size() <= opt_.tombstones_max) {
        break;
      }
      if (it != tombstones_.end()) tombstones_.erase(it);
      tombstone_order_.pop_front();
    }
  }
}

// ---------------------------------------------------------------------------
// Branch bookkeeping

std::shared_ptr<Agent::Slot> Agent::find(const std::string& txid) {
  std::lock_guard lock(mu_);
  auto it = branches_.find(txid);
  return it == branches_.end() ? nullptr : it->second;
}

void Agent::retire(const std::string& txid, Outcome outcome) {
  std::lock_guard lock(mu_);
  branches_.erase(txid);
  if (tombstones_.emplace(txid, Tombstone{outcome, steady_ms()}).second) {
    tombstone_order_.push_back(txid);
  }
}

std::optional<Outcome> Agent::tombstone(const std::string& txid) {
  std::lock_guard lock(mu_);
  auto it = tombstones_.find(txid);
  if (it == tombstones_.end()) return std::nullopt;
  return it->second.outcome;
}

// ---------------------------------------------------------------------------
// Work

void Agent::do_exec(const std::string& txid, uint64_t seq, std::string sql,
                    std::vector<SqlValue> params, const Replier& reply) {
  std::shared_ptr<Slot> slot = find(txid);
  if (!slot) {
    if (seq != 1 || tombstone(txid)) {
      return reply(json_error(
          409, tombstone(txid) ? "not_active" : "out_of_sequence",
          tombstone(txid) ? "the branch is finished" : "unknown branch: its first exec has seq 1",
          json::object{{"expected_seq", 1}}));
    }
    bool finished = false;
    {
      std::lock_guard lock(mu_);
      finished = tombstones_.count(txid) > 0;  // decided while this exec was queued
      if (!finished) {
        auto [it, fresh] = branches_.try_emplace(
            txid, std::make_shared<Slot>(BranchMachine(txid, opt_.timers, now_ticks())));
        slot = it->second;
      }
    }
    if (finished) {
      return reply(json_error(409, "not_active", "the branch is finished",
                              json::object{{"expected_seq", 1}}));
    }
  }
  std::lock_guard lock(slot->mu);
  const uint64_t now = now_ticks();
  switch (slot->m.on_exec(seq, now)) {
    case BranchMachine::ExecVerdict::run:
      break;
    case BranchMachine::ExecVerdict::out_of_sequence:
      counters_.refused++;
      return reply(json_error(409, "out_of_sequence", "exec out of sequence",
                              json::object{{"expected_seq", slot->m.exec_count() + 1}}));
    case BranchMachine::ExecVerdict::busy:
      return reply(json_error(409, "busy", "another exec of this branch is running"));
    case BranchMachine::ExecVerdict::doomed:
      return reply(json_error(409, "doomed", "an earlier statement failed; the branch will vote no",
                              json::object{{"reason", reason_json(slot->m.vote_no_reason())}}));
    case BranchMachine::ExecVerdict::not_active:
      counters_.refused++;
      logging::txn_warn(txid, "exec {} refused: branch is {}", seq, state_name(slot->m.state()));
      return reply(json_error(409, "not_active",
                              std::string("the branch is ") + state_name(slot->m.state())));
  }
  if (seq > opt_.execs_per_branch_max) {
    DbError e{std::string(kRefusedByDtx), "too many statements in one branch"};
    slot->m.on_exec_done(seq, sql, params, false, e, now);
    return reply(json_error(413, "too_many_statements", e.message));
  }
  DbError err;
  if (!slot->session) {
    auto b = resource_->begin(txid);
    if (!b.ok()) {
      err = DbError{"", b.status().message()};
      slot->m.on_exec_done(seq, sql, params, false, err, now_ticks());
      return reply(Response::from_status(b.status()));
    }
    slot->session = std::move(*b);
    counters_.begun++;
    logging::txn_debug(txid, "branch begun");
  }
  auto rows = slot->session->exec(sql, params, &err);
  slot->m.on_exec_done(seq, sql, params, rows.ok(), err, now_ticks());
  if (!rows.ok()) {
    logging::txn_info(txid, "exec {} failed ({} {}): the branch will vote no", seq, err.sqlstate,
                      err.message);
    return reply(json_error(422, "sql_error",
                            err.message.empty() ? rows.status().message() : err.message,
                            json::object{{"sqlstate", err.sqlstate}}));
  }
  json::array cols, out_rows;
  for (const auto& c : rows->columns)
    cols.emplace_back(json::string(c));
  for (const auto& r : rows->rows) {
    json::array row;
    for (const auto& v : r)
      row.push_back(to_json(v));
    out_rows.push_back(std::move(row));
  }
  reply(Response::json(200, json::object{{"columns", std::move(cols)},
                                         {"rows", std::move(out_rows)},
                                         {"rows_affected", rows->rows_affected}}));
}

void Agent::do_prepare(const std::string& txid, uint64_t exec_count, uint64_t digest,
                       const Replier& reply) {
  std::shared_ptr<Slot> slot = find(txid);
  if (!slot) {
    // A finished branch answers from its outcome; an unknown one votes no.
    auto t = tombstone(txid);
    if (t == Outcome::committed) return reply(Response::json(200, json::object{{"vote", "yes"}}));
    return reply(Response::json(
        200, json::object{
                 {"vote", "no"},
                 {"reason", reason_json(DbError{std::string(kRefusedByDtx),
                                                t ? "the branch aborted" : "unknown branch"})}}));
  }
  // Never wait long for the branch's lock (an exec may hold it for as long
  // as a statement runs): a step still running answers busy, and the
  // coordinator asks again.
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (!lock_briefly(lock)) {
    return reply(json_error(409, "busy", "another step of this branch is running"));
  }
  auto vote_no = [&](const DbError& e) {
    reply(Response::json(200, json::object{{"vote", "no"}, {"reason", reason_json(e)}}));
  };
  const uint64_t now = now_ticks();
  switch (slot->m.on_prepare(exec_count, digest, now)) {
    case BranchMachine::PrepareVerdict::vote_yes:
      return reply(Response::json(200, json::object{{"vote", "yes"}}));
    case BranchMachine::PrepareVerdict::vote_no:
      return vote_no(slot->m.vote_no_reason());
    case BranchMachine::PrepareVerdict::busy:
      return reply(json_error(409, "busy", "an exec or prepare of this branch is running"));
    case BranchMachine::PrepareVerdict::rollback: {
      if (slot->session) slot->session->rollback();
      slot->session.reset();
      slot->m.on_prepare_done(false, slot->m.vote_no_reason(), now_ticks());
      counters_.votes_no++;
      logging::txn_info(txid, "votes no: {}", slot->m.vote_no_reason().message);
      DbError e = slot->m.vote_no_reason();
      retire(txid, Outcome::aborted);
      return vote_no(e);
    }
    case BranchMachine::PrepareVerdict::run:
      break;
  }
  DbError err;
  Status s = slot->session ? resource_->prepare(std::move(slot->session), &err)
                           : error(Code::failed_precondition, "no statement ran in this branch");
  if (!slot->session && !s.ok() && err.message.empty()) {
    err = DbError{std::string(kRefusedByDtx), s.message()};
  }
  slot->m.on_prepare_done(s.ok(), err, now_ticks());
  if (s.ok()) {
    counters_.votes_yes++;
    logging::txn_info(txid, "prepared: votes yes");
    return reply(Response::json(200, json::object{{"vote", "yes"}}));
  }
  counters_.votes_no++;
  logging::txn_info(txid, "votes no ({} {})", err.sqlstate, err.message);
  retire(txid, Outcome::aborted);
  vote_no(err);
}

void Agent::do_precommit(const std::string& txid, const Replier& reply) {
  std::shared_ptr<Slot> slot = find(txid);
  if (!slot) {
    if (tombstone(txid) == Outcome::committed) {
      return reply(Response::json(200, json::object{{"state", "committed"}}));
    }
    return reply(json_error(409, "not_prepared", "no prepared branch with this txid"));
  }
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (!lock_briefly(lock)) {
    return reply(json_error(409, "busy", "another step of this branch is running"));
  }
  if (slot->m.on_precommit(now_ticks()) == BranchMachine::PrecommitVerdict::refused) {
    return reply(json_error(409, "not_prepared",
                            std::string("the branch is ") + state_name(slot->m.state())));
  }
  logging::txn_info(txid, "pre-committed");
  reply(Response::json(200, json::object{{"state", state_name(slot->m.state())}}));
}

void Agent::do_decide(const std::string& txid, Outcome asked, const Replier* reply, const char* why,
                      std::optional<BranchState> armed_in) {
  auto answer = [&](Outcome actual) {
    const bool heuristic = actual != asked;
    if (reply) {
      (*reply)(Response::json(
          200, json::object{{"outcome", outcome_name(actual)}, {"heuristic", heuristic}}));
    }
  };
  std::shared_ptr<Slot> slot = find(txid);
  if (!slot) {
    std::optional<Outcome> known = tombstone(txid);
    if (!known) {
      auto o = resource_->outcome_of(txid);
      if (!o.ok()) {
        if (reply) (*reply)(Response::from_status(o.status()));
        return;
      }
      known = *o;
      // Remembered, so a first exec of this txid still queued behind this
      // answer is refused rather than opening a branch the coordinator
      // already counts as aborted. If that exec opened the branch while the
      // database was asked, the decision goes through the branch instead.
      bool opened_meanwhile = false;
      {
        std::lock_guard l(mu_);
        opened_meanwhile = branches_.count(txid) > 0;
        if (!opened_meanwhile && tombstones_.emplace(txid, Tombstone{*o, steady_ms()}).second) {
          tombstone_order_.push_back(txid);
        }
      }
      if (opened_meanwhile) return do_decide(txid, asked, reply, why, armed_in);
    }
    if (*known != asked && asked == Outcome::committed) {
      counters_.heuristic++;
      logging::txn_error(txid, "ALARM: asked to commit, but the branch here is aborted (T6)");
    }
    return answer(*known);
  }
  // A coordinator's request never waits for the branch's lock (answered
  // busy, asked again); the agent's own timers and inquiries do, on the
  // work lane.
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (reply) {
    if (!lock_briefly(lock)) {
      return (*reply)(json_error(409, "busy", "another step of this branch is running"));
    }
  } else {
    lock.lock();
  }
  if (armed_in) {
    slot->m.clear_decision_mark();  // the timer's mark; taken afresh below
    if (slot->m.state() != *armed_in) {
      logging::txn_info(txid, "timer decision dropped: the branch is now {}",
                        state_name(slot->m.state()));
      return;
    }
  }
  const auto verdict = asked == Outcome::committed ? slot->m.on_commit() : slot->m.on_abort();
  switch (verdict) {
    case BranchMachine::DecisionVerdict::answer: {
      auto o = slot->m.outcome();
      if (!o) {
        if (reply) (*reply)(json_error(409, "busy", "a decision for this branch is under way"));
        return;
      }
      return answer(*o);
    }
    case BranchMachine::DecisionVerdict::refused:
      counters_.refused++;
      if (slot->m.state() == BranchState::precommitted) {
        logging::txn_error(txid, "ALARM: abort refused for a pre-committed branch (T8)");
      }
      if (reply) {
        (*reply)(json_error(409, asked == Outcome::committed ? "not_prepared" : "precommitted",
                            std::string("the branch is ") + state_name(slot->m.state())));
      }
      return;
    case BranchMachine::DecisionVerdict::run_commit:
    case BranchMachine::DecisionVerdict::run_abort:
      break;
  }
  Outcome actual;
  if (slot->m.state() == BranchState::active) {
    if (slot->session) slot->session->rollback();
    slot->session.reset();
    actual = Outcome::aborted;
  } else {
    auto r = asked == Outcome::committed ? resource_->commit(txid) : resource_->abort(txid);
    if (!r.ok()) {
      // The database did not answer: the branch stays as it was; asked again later.
      slot->m.on_decision_failed();
      logging::txn_warn(txid, "{} failed: {}", outcome_name(asked), r.status().describe());
      if (reply) (*reply)(Response::from_status(r.status()));
      return;
    }
    actual = *r;
  }
  if (slot->m.on_decided(asked, actual, now_ticks())) {
    counters_.heuristic++;
    logging::txn_error(txid, "ALARM: heuristic outcome: asked to {}, the database has {} (T6)",
                       outcome_name(asked), outcome_name(actual));
  } else {
    logging::txn_info(txid, "{} ({})", outcome_name(actual), why);
  }
  (actual == Outcome::committed ? counters_.committed : counters_.aborted)++;
  retire(txid, actual);
  answer(actual);
}

void Agent::do_tick_action(const std::string& txid, BranchMachine::TickAction a) {
  // The machine marked the decision under way when it fired; do_decide
  // clears that mark and decides under one hold of the branch's lock, and
  // only if the branch is still in the state the timer was armed in (a
  // prepare may have won the lock first: an idle abort must not follow a
  // yes vote).
  switch (a) {
    case BranchMachine::TickAction::abort_idle:
      return do_decide(txid, Outcome::aborted, nullptr, "idle too long", BranchState::active);
    case BranchMachine::TickAction::commit_alone:
      return do_decide(txid, Outcome::committed, nullptr,
                       "pre-committed and no commit arrived in time", BranchState::precommitted);
    default:
      return;
  }
}

void Agent::inquire(const std::string& txid) {
  counters_.inquiries++;
  if (opt_.coordinators.empty()) {
    return on_inquiry(txid, BranchMachine::Answer::unreachable);
  }
  const size_t i = coordinator_index_.load() % opt_.coordinators.size();
  rest::ClientRequest req;
  req.method = rest::Method::get;
  req.target = "/v1/transactions/" + txid + "/outcome";
  req.timeout_ms = 3000;
  client_->request(opt_.coordinators[i], std::move(req), [this, txid, i](Result<Response> r) {
    BranchMachine::Answer a = BranchMachine::Answer::unreachable;
    if (r.ok()) {
      if (r->status == 200) {
        auto j = r->json_body();
        const std::string o = j.ok() && j->is_object() && j->as_object().contains("outcome") &&
                                      j->as_object().at("outcome").is_string()
                                  ? std::string(j->as_object().at("outcome").as_string())
                                  : "";
        a = o == "committed" ? BranchMachine::Answer::committed
            : o == "aborted" ? BranchMachine::Answer::aborted
            : o == "pending" ? BranchMachine::Answer::pending
                             : BranchMachine::Answer::unreachable;
      } else if (r->status == 410 || r->status == 404) {
        a = BranchMachine::Answer::forgotten;
        logging::txn_error(
            txid, "ALARM: the coordinator has no record of this prepared branch ({})", r->status);
      } else if (r->status == 307) {
        // Ask the leader next time.
        if (auto loc = r->headers.get("Location")) {
          for (size_t k = 0; k < opt_.coordinators.size(); ++k) {
            if (loc->find(opt_.coordinators[k]) != std::string_view::npos) coordinator_index_ = k;
          }
        }
      }
    }
    if (a == BranchMachine::Answer::unreachable) coordinator_index_ = i + 1;
    if (!submit([this, txid, a] { on_inquiry(txid, a); })) {
      // Queue full: count it as unanswered, so the branch asks again later.
      if (auto slot = find(txid)) {
        std::lock_guard lock(slot->mu);
        slot->m.on_inquiry_answer(BranchMachine::Answer::unreachable, now_ticks());
      }
    }
  });
}

void Agent::on_inquiry(const std::string& txid, BranchMachine::Answer a) {
  std::shared_ptr<Slot> slot = find(txid);
  if (!slot) return;
  BranchMachine::DecisionVerdict v;
  {
    std::lock_guard lock(slot->mu);
    v = slot->m.on_inquiry_answer(a, now_ticks());
    if (v == BranchMachine::DecisionVerdict::run_commit ||
        v == BranchMachine::DecisionVerdict::run_abort) {
      slot->m.clear_decision_mark();  // do_decide takes the decision afresh
    }
  }
  if (v == BranchMachine::DecisionVerdict::run_commit) {
    do_decide(txid, Outcome::committed, nullptr, "the coordinator's log says committed");
  } else if (v == BranchMachine::DecisionVerdict::run_abort) {
    do_decide(txid, Outcome::aborted, nullptr, "the coordinator's log says aborted");
  } else if (a == BranchMachine::Answer::pending) {
    logging::txn_debug(txid, "still pending at the coordinator");
  }
}

// ---------------------------------------------------------------------------
// HTTP

std::string Agent::metrics() const {
  std::ostringstream o;
  auto line = [&](const char* name, const char* help, uint64_t v) {
    o << "# HELP dtx_agent_" << name << " " << help << "\n# TYPE dtx_agent_" << name
      << " counter\ndtx_agent_" << name << " " << v << "\n";
  };
  line("branches_begun_total", "Branches begun.", counters_.begun);
  line("votes_yes_total", "Prepares that voted yes.", counters_.votes_yes);
  line("votes_no_total", "Prepares that voted no.", counters_.votes_no);
  line("committed_total", "Branches committed.", counters_.committed);
  line("aborted_total", "Branches aborted.", counters_.aborted);
  line("heuristic_total", "Decisions whose applied outcome differed from the one asked.",
       counters_.heuristic);
  line("inquiries_total", "Outcome inquiries sent to the coordinator group.", counters_.inquiries);
  line("refused_total", "Requests refused (out of sequence, wrong state).", counters_.refused);
  line("overloaded_total", "Requests refused with 503 because the work queue was full.",
       counters_.overloaded);
  return o.str();
}

void Agent::register_routes(void* router_ptr) {
  rest::Router& router = *static_cast<rest::Router*>(router_ptr);
  // Queues a branch step to `lane`; its answer goes out once the step has
  // returned (answer_after).
  auto queue = [this](const Replier& reply, Lane lane, std::function<void(const Replier&)> step) {
    if (!submit([reply, step = std::move(step)] { answer_after(reply, step); }, lane))
      reply(json_error(503, "overloaded", "the agent's work queue is full"));
  };
  auto txid_of = [](const Request& req, const Replier& reply) -> std::optional<std::string> {
    std::string txid(req.path_param("txid"));
    if (!valid_txid(txid)) {
      reply(json_error(400, "invalid_argument", "txid must be 1-128 characters of [A-Za-z0-9._-]"));
      return std::nullopt;
    }
    return txid;
  };

  router.add(rest::Method::post, "/v1/branches/{txid}/exec",
             [this, queue, txid_of](Request req, Replier reply) {
               auto txid = txid_of(req, reply);
               if (!txid) return;
               auto body = rest::parse_json(req.body);
               if (!body.ok()) return reply(Response::from_status(body.status()));
               if (!body->is_object())
                 return reply(json_error(400, "invalid_argument", "body must be an object"));
               const json::object& o = body->as_object();
               auto seq = rest::get_int64(*body, "seq", 1, INT64_MAX);
               auto sql = rest::get_string(*body, "sql");
               if (!seq.ok()) return reply(Response::from_status(seq.status()));
               if (!sql.ok()) return reply(Response::from_status(sql.status()));
               if (sql->empty() || sql->size() > opt_.sql_bytes_max) {
                 return reply(json_error(
                     sql->empty() ? 400 : 413, "invalid_argument",
                     "sql must be 1 to " + std::to_string(opt_.sql_bytes_max) + " bytes"));
               }
               std::vector<SqlValue> params;
               if (o.contains("params")) {
                 if (!o.at("params").is_array()) {
                   return reply(json_error(400, "invalid_argument", "params must be an array"));
                 }
                 const json::array& a = o.at("params").as_array();
                 if (a.size() > opt_.params_max) {
                   return reply(json_error(413, "invalid_argument", "too many params"));
                 }
                 for (size_t i = 0; i < a.size(); ++i) {
                   auto v = from_json(a[i], i);
                   if (!v.ok()) return reply(Response::from_status(v.status()));
                   params.push_back(std::move(*v));
                 }
               }
               // A branch's first exec may wait for a database session or
               // SQLite's write lock, a later one for another branch's row lock:
               // each has its own lane, so neither waits behind the other and
               // decisions never wait behind either (see Threading).
               const Lane lane = *seq == 1 && find(*txid) == nullptr ? Lane::start : Lane::exec;
               queue(reply, lane,
                     [this, t = *txid, n = static_cast<uint64_t>(*seq), q = std::string(*sql),
                      p = std::move(params)](const Replier& r) mutable {
                       do_exec(t, n, std::move(q), std::move(p), r);
                     });
             });
  router.add(rest::Method::post, "/v1/branches/{txid}/prepare",
             [this, queue, txid_of](Request req, Replier reply) {
               auto txid = txid_of(req, reply);
               if (!txid) return;
               auto body = rest::parse_json(req.body);
               if (!body.ok()) return reply(Response::from_status(body.status()));
               if (!body->is_object())
                 return reply(json_error(400, "invalid_argument", "body must be an object"));
               auto count = rest::get_int64(*body, "exec_count", 0, INT64_MAX);
               auto digest = rest::get_string(*body, "digest");
               if (!count.ok()) return reply(Response::from_status(count.status()));
               if (!digest.ok()) return reply(Response::from_status(digest.status()));
               uint64_t d = 0;
               if (digest->size() != 16 ||
                   std::sscanf(std::string(*digest).c_str(), "%16" SCNx64, &d) != 1) {
                 return reply(json_error(400, "invalid_argument", "digest must be 16 hex digits"));
               }
               queue(reply, Lane::decide,
                     [this, t = *txid, c = static_cast<uint64_t>(*count), d](const Replier& r) {
                       do_prepare(t, c, d, r);
                     });
             });
  // precommit, commit and abort: a txid and an empty body, on the decide lane.
  using DecideStep = std::function<void(const std::string&, const Replier&)>;
  auto decide_route = [queue, txid_of](DecideStep body) {
    return [queue, txid_of, body = std::move(body)](Request req, Replier reply) {
      auto txid = txid_of(req, reply);
      if (!txid) return;
      queue(reply, Lane::decide, [body, t = *txid](const Replier& r) { body(t, r); });
    };
  };
  router.add(rest::Method::post, "/v1/branches/{txid}/precommit",
             decide_route([this](const std::string& t, const Replier& r) { do_precommit(t, r); }));
  router.add(rest::Method::post, "/v1/branches/{txid}/commit",
             decide_route([this](const std::string& t, const Replier& r) {
               do_decide(t, Outcome::committed, &r, "the coordinator says commit");
             }));
  router.add(rest::Method::post, "/v1/branches/{txid}/abort",
             decide_route([this](const std::string& t, const Replier& r) {
               do_decide(t, Outcome::aborted, &r, "the coordinator says abort");
             }));
  router.add(rest::Method::get, "/v1/branches/{txid}", [this, txid_of](Request req, Replier reply) {
    auto txid = txid_of(req, reply);
    if (!txid) return;
    if (auto slot = find(*txid)) {
      std::unique_lock lock(slot->mu, std::try_to_lock);
      json::object o{{"txid", *txid}};
      if (lock.owns_lock()) {
        o["state"] = state_name(slot->m.state());
        o["exec_count"] = slot->m.exec_count();
        o["doomed"] = slot->m.doomed();
      } else {
        o["state"] = "busy";
      }
      return reply(Response::json(200, o));
    }
    if (auto t = tombstone(*txid)) {
      return reply(Response::json(
          200, json::object{
                   {"txid", *txid}, {"state", outcome_name(*t)}, {"outcome", outcome_name(*t)}}));
    }
    reply(json_error(404, "not_found", "no such branch here"));
  });
  router.add(rest::Method::get, "/v1/branches", [this](Request req, Replier reply) {
    std::string want(req.query_param("state").value_or(""));
    if (!want.empty() && want != "active" && want != "prepared" && want != "precommitted") {
      return reply(
          json_error(400, "invalid_argument", "state must be active, prepared or precommitted"));
    }
    std::vector<std::pair<std::string, std::shared_ptr<Slot>>> slots;
    {
      std::lock_guard lock(mu_);
      slots.assign(branches_.begin(), branches_.end());
    }
    json::array out;
    for (auto& [txid, slot] : slots) {
      std::unique_lock lock(slot->mu, std::try_to_lock);
      if (!lock.owns_lock()) continue;
      const char* st = state_name(slot->m.state());
      if (!want.empty() && want != st) continue;
      out.push_back(json::object{{"txid", txid}, {"state", st}});
    }
    reply(Response::json(200, json::object{{"branches", std::move(out)}}));
  });
  router.add_public(rest::Method::get, "/healthz",
                    [](Request, Replier reply) { reply(Response::text(200, "ok\n")); });
  router.add_public(rest::Method::get, "/readyz", [this](Request, Replier reply) {
    if (!submit([this, reply] {
          if (resource_->healthy()) {
            reply(Response::text(200, "ready\n"));
          } else {
            reply(json_error(503, "unavailable", resource_->describe() + " does not answer"));
          }
        })) {
      reply(json_error(503, "overloaded", "the agent's work queue is full"));
    }
  });
  router.add(rest::Method::get, "/metrics", [this](Request, Replier reply) {
    reply(Response::text(200, metrics(), "text/plain; version=0.0.4"));
  });
}

}  // namespace dtx::participant
