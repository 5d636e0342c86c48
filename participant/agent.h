// Agent: the participant service beside one database (docs/agent.md). It
// turns the coordinator's requests into BranchMachine steps
// (core/branch_machine.h) and Resource work (resource.h), asks the
// coordinator group about prepared branches, and runs the timers.
//
// The API (paths, JSON, status codes, fencing, the watermark) is
// txn/agent_api.h; this class implements it.
//
// One job per file:
//   agent.cc          start, stop, the ticker, housekeeping, metrics, info
//   agent_routes.cc   HTTP in, calls out: decode with txn/, queue to a lane,
//                     send the StepAnswer (no protocol logic)
//   agent_steps.cc    exec, prepare, batch, precommit: one branch step each
//   agent_one_phase.cc  commit-one-phase (and the end of a one-phase batch)
//   agent_decide.cc   commit, abort, timer decisions, inquiries, status, listing
//   lanes.h           the bounded lane pool
//   branch_table.h    the branches and outcome records; THE LOCK ORDER
//   fencing.h         agent_id and ballot fencing
//   inquiry.h         asking the coordinator group, following 307s
//
// Threading: HTTP threads only parse, validate and queue; no handler waits
// for a database. Work goes to lanes of workers (a full queue answers
// 503): a branch's first exec or batch, which may wait for a database
// session (PostgreSQL's pool, SQLite's single write lock), to the start
// lane; later execs, which may wait for another branch's row lock, to the
// exec lane; prepare, precommit, commit and abort to the decide lane;
// timer actions, inquiry answers and readiness checks to the work lane. A
// step for the coordinator waits a few milliseconds at most for its
// branch's lock: if another step of the branch is still running it answers
// 409 busy. So a branch that holds a session can always be prepared and
// decided, however many execs wait. One branch's steps run one at a time
// (its lock, branch_table.h). Every step returns its answer after
// releasing the branch's lock, so the coordinator's next request finds it
// free. The ticker thread (or a test, through tick()) drives the timers.
//
// Time: from AgentOptions::clock (a SteadyClock by default; tests pass a
// ManualClock and call tick() instead of running the ticker).
#pragma once

#include <boost/json/object.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "participant/branch_table.h"
#include "participant/core/branch_machine.h"
#include "participant/fencing.h"
#include "participant/lanes.h"
#include "participant/resource.h"
#include "txn/agent_api.h"

namespace dtx::rest {
class Server;
class Client;
}  // namespace dtx::rest

namespace dtx::participant {

class Inquirer;

struct AgentOptions {
  std::string name;     // this participant's agent_id (in gids, fencing and logs)
  std::string cluster;  // the coordinator cluster's id
  // host:port to serve HTTP on; "" serves no HTTP (in-process tests call
  // the steps directly).
  std::string listen = "127.0.0.1:0";
  size_t http_threads = 1;  // they never wait for a database (one: fewest hand-offs)
  size_t workers = 8;       // threads per lane (first execs, later execs, decisions, timers)
  size_t queue_max = 1024;  // queued requests beyond: 503
  size_t body_bytes_max = 1u << 20;
  size_t sql_bytes_max = 256u << 10;
  size_t params_max = 1024;
  uint64_t execs_per_branch_max = 10000;
  std::vector<std::string> coordinators;  // host:port of the coordinator replicas
  std::string token;                      // the cluster token (from a file or the environment)
  int64_t tick_ms = 100;
  BranchTimers timers;  // in ticks
  int64_t tombstone_retention_ms = 7ll * 24 * 3600 * 1000;
  size_t tombstones_max = 1'000'000;
  // Where time comes from; nullptr: a SteadyClock of the agent's own.
  const Clock* clock = nullptr;
  // false: no ticker thread; the owner calls tick() (tests, ManualClock).
  bool run_ticker = true;
};

struct AgentCounters {
  std::atomic<uint64_t> begun{0}, votes_yes{0}, votes_no{0}, votes_read_only{0}, committed{0},
      aborted{0};
  std::atomic<uint64_t> heuristic{0}, inquiries{0}, refused{0}, overloaded{0};
  std::atomic<uint64_t> fenced{0}, markers_forgotten{0};
  // commit-one-phase: committed (read-only ones included), aborted, and
  // COMMITs whose answer was lost (in doubt until the marker settles them).
  std::atomic<uint64_t> one_phase_committed{0}, one_phase_read_only{0}, one_phase_aborted{0},
      one_phase_in_doubt{0};
};

// What a step answers: an HTTP status and a JSON body (txn/agent_api.h).
struct StepAnswer {
  int status = 200;
  boost::json::object body;
};

class Agent {
 public:
  // Opens the resource (locks, checks, crash recovery) before serving, then
  // serves and starts asking about the branches it found prepared.
  static Result<std::unique_ptr<Agent>> start(AgentOptions options,
                                              std::unique_ptr<Resource> resource);
  ~Agent();               // stop()
  uint16_t port() const;  // 0 when not serving HTTP
  void stop();
  const AgentCounters& counters() const { return counters_; }

  // --- the steps (the routes call them on a lane worker; tests may call
  // them directly, from any thread)
  StepAnswer exec(const std::string& txid, const txn::ExecRequest& r);
  StepAnswer prepare(const std::string& txid, const txn::PrepareRequest& r);
  StepAnswer batch(const std::string& txid, const txn::BatchRequest& r);
  // The one-phase fast path (txn/agent_api.h, "commit-one-phase").
  StepAnswer commit_one_phase(const std::string& txid, const txn::PrepareRequest& r);
  StepAnswer precommit(const std::string& txid, const txn::DecisionRequest& r);
  StepAnswer decide(const std::string& txid, Outcome asked, const txn::DecisionRequest& r);
  StepAnswer status(const std::string& txid) const;
  // With the fencing query parameters (a new leader's probe raises the fence).
  StepAnswer status(const std::string& txid, const txn::Fence& fence);
  StepAnswer list(const txn::BranchListRequest& r);
  StepAnswer info() const;

  // One pass of the timers: idle aborts, 3PC commit-alone, inquiries,
  // upkeep. The ticker calls it every tick_ms; tests call it by hand.
  void tick();
  // Outcome records and branches held now (metrics, tests).
  size_t outcome_records() const { return table_.outcomes(); }
  size_t branches_held() const { return table_.branches(); }
  std::optional<txn::Txid> watermark() const { return table_.watermark(); }
  std::string metrics() const;

 private:
  // Lanes (see Threading).
  enum class Lane : size_t { start = 0, exec, decide, work };
  static constexpr size_t kLanes = 4;

  Agent(AgentOptions o, std::unique_ptr<Resource> r);
  Status serve_http();
  bool submit(Lane lane, std::function<void()> job);
  void ticker_loop();
  uint64_t now_ticks() const { return static_cast<uint64_t>(clock_->now_ms() / opt_.tick_ms); }
  int64_t now_ms() const { return clock_->now_ms(); }

  // Fencing and the watermark for a coordinator's request: an answer to
  // send instead of running the step, or nullopt to go on. A raised ballot
  // is stored first (it may wait for the database: lanes only).
  std::optional<StepAnswer> admit(const txn::Fence& fence, bool fence_ballot);
  // Under the branch's lock, for a fenced step admitted earlier: refused if
  // a newer leader's ballot was stored since (its sweep may have passed the
  // branch while this step waited).
  std::optional<StepAnswer> fenced_meanwhile(const std::string& txid, const txn::BallotId& ballot);
  void learn_watermark(const std::optional<txn::Txid>& w);

  // Under the branch's lock (agent_steps.cc).
  struct ExecResult {
    bool ok = false;
    Rows rows;
    StepAnswer error;  // when not ok: the exec's own answer
    DbError reason;    // when not ok: why, as a batch reports it
  };
  ExecResult exec_locked(BranchSlot& slot, const std::string& txid, uint64_t seq,
                         const std::string& sql, const std::vector<SqlValue>& params);
  txn::VoteAnswer prepare_locked(BranchSlot& slot, const std::string& txid, uint64_t exec_count,
                                 uint64_t digest, bool* busy);
  StepAnswer prepare_unknown(const std::string& txid);
  // commit-one-phase under the branch's lock (agent_one_phase.cc): the
  // answer, or `refusal` (409 busy or not_active, 503 when the database's
  // answer to COMMIT was lost: the branch is in doubt until a repeat
  // settles it from the marker).
  struct OnePhaseStep {
    std::optional<StepAnswer> refusal;
    txn::OnePhaseAnswer answer;
  };
  OnePhaseStep one_phase_locked(BranchSlot& slot, const std::string& txid, uint64_t exec_count,
                                uint64_t digest);
  // The branch's end after commit_one_phase() (or its settling) answered.
  OnePhaseStep one_phase_ended(BranchSlot& slot, const std::string& txid, const Result<Outcome>& r,
                               DbError err);
  // A txid with no branch here: its outcome record, else the marker.
  StepAnswer one_phase_unknown(const std::string& txid);
  // GET of a txid with no branch and no outcome record: 200 committed when
  // the marker says so (a one-phase commit), else 404. May wait for the
  // database: lanes only.
  StepAnswer status_from_marker(const std::string& txid);
  // A no vote: the branch leaves the table, aborted (its lock held).
  void retire_no(BranchSlot& slot, const std::string& txid);
  // After every step, under the branch's lock: the machine's invariants
  // (DTX_ASSERT) and the state lock-free readers see.
  static void after_step(BranchSlot& slot);

  // Decisions (agent_decide.cc). `token`: a timer's decision.
  StepAnswer decide_slot(const std::shared_ptr<BranchSlot>& slot, const std::string& txid,
                         Outcome asked, bool from_coordinator, const char* why,
                         BranchMachine::DecisionToken token = 0);
  StepAnswer decide_unknown(const std::string& txid, Outcome asked, bool from_coordinator,
                            const char* why);
  StepAnswer decided(const std::string& txid, Outcome asked, Outcome actual);
  // The answer to a decision for a branch that voted read_only.
  StepAnswer decided_read_only(const std::string& txid, Outcome asked);
  void on_tick_action(const std::string& txid, const std::shared_ptr<BranchSlot>& slot,
                      BranchMachine::TickAction a);
  void inquire(const std::string& txid);
  void on_inquiry(const std::string& txid, BranchMachine::Answer a);
  void upkeep();

  AgentOptions opt_;
  std::unique_ptr<Clock> own_clock_;
  const Clock* clock_;
  std::unique_ptr<Resource> resource_;
  BranchTable table_;
  Fencing fencing_;
  AgentCounters counters_;
  std::unique_ptr<LanePool> lanes_;
  std::unique_ptr<rest::Client> client_;
  std::unique_ptr<Inquirer> inquirer_;
  std::unique_ptr<rest::Server> server_;

  std::mutex tick_mu_;  // the ticker's sleep (woken only to stop)
  std::condition_variable tick_cv_;
  bool stopping_ = false;
  std::thread ticker_;
  std::atomic<bool> stopped_{false};
  int64_t last_housekeeping_ms_ = 0;  // tick() only (one caller at a time)
  int64_t last_maintain_ms_ = 0;      // tick() only
  std::atomic<bool> maintain_queued_{false};
  std::mutex forget_mu_;                     // a leaf
  std::optional<txn::Txid> forget_pending_;  // markers to drop below, at the next upkeep
};

}  // namespace dtx::participant
