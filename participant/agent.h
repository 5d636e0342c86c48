// Agent: the participant service beside one database. It turns the
// coordinator's requests (REST, cluster token) into BranchMachine steps
// (core/branch_machine.h) and Resource work (resource.h), asks the
// coordinator group about prepared branches, and runs the timers.
//
// API (JSON; every route but /healthz and /readyz needs the cluster token):
//   POST /v1/branches/{txid}/exec       {"seq": n, "sql": "...", "params": [...]}
//        200 {"columns": [...], "rows": [[...]], "rows_affected": n}
//        409 {"error": {"code": "out_of_sequence"|"not_active"|"doomed"|"busy", ...}}
//        422 {"error": {"code": "sql_error", "message", "sqlstate"}}  (the branch is doomed)
//        503 {"error": {"code": "busy"}} no database session free
//   POST /v1/branches/{txid}/prepare    {"exec_count": n, "digest": "<16 hex>"}
//        200 {"vote": "yes"} | {"vote": "no", "reason": {"sqlstate", "message"}}
//   POST /v1/branches/{txid}/precommit  200 {"state": "precommitted"} | 409
//   POST /v1/branches/{txid}/commit     200 {"outcome": "committed"|"aborted", "heuristic": bool}
//   POST /v1/branches/{txid}/abort      200 {"outcome": ...}; 409 for a pre-committed branch
//   GET  /v1/branches/{txid}            200 {"txid", "state", "exec_count", "outcome"?}
//   GET  /v1/branches?state=prepared    200 {"branches": [{"txid", "state"}]}
//   GET  /healthz, /readyz, /metrics (Prometheus text)
// Decisions are answered with the outcome actually applied (T6); a decision
// for a finished branch from a retained outcome (kept tombstone_retention
// after the decision; after a restart, the database's marker rows answer).
//
// Inquiries: a PREPARED branch asks the coordinator group
//   GET /v1/transactions/{txid}/outcome -> {"outcome": "committed"|"aborted"|"pending"}
//   (410: forgotten — an alarm; 307: ask the leader named in Location)
// on a timer with capped exponential backoff, and never decides alone.
//
// Threading: HTTP threads only parse, validate and queue; no handler
// waits for a database. Work goes to lanes of workers (a full queue
// answers 503): a branch's first exec, which may wait for a database
// session (PostgreSQL's pool, SQLite's single write lock), to the start
// lane; later execs, which may wait for another branch's row lock, to the
// exec lane; prepare, precommit, commit and abort to the decide lane;
// timer actions, inquiry answers and readiness checks to the work lane. A
// step for the coordinator waits a few milliseconds at most for its
// branch's lock: if another step of the branch is still running it answers
// 409 busy. So a branch that
// holds a session can always be prepared and decided, however many execs
// wait. One branch's steps run one at a time. A ticker thread drives the
// timers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "participant/core/branch_machine.h"
#include "participant/resource.h"

namespace dtx::rest {
class Server;
class Client;
struct Request;
class Replier;
}  // namespace dtx::rest

namespace dtx::participant {

struct AgentOptions {
  std::string name;     // this participant's name (in gids and logs)
  std::string cluster;  // the coordinator cluster's id
  std::string listen = "127.0.0.1:0";
  size_t http_threads = 2;  // they never wait for a database
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
};

struct AgentCounters {
  std::atomic<uint64_t> begun{0}, votes_yes{0}, votes_no{0}, committed{0}, aborted{0};
  std::atomic<uint64_t> heuristic{0}, inquiries{0}, refused{0}, overloaded{0};
};

class Agent {
 public:
  // Opens the resource (locks, checks, crash recovery) before serving, then
  // serves and starts asking about the branches it found prepared.
  static Result<std::unique_ptr<Agent>> start(AgentOptions options,
                                              std::unique_ptr<Resource> resource);
  ~Agent();  // stop()
  uint16_t port() const;
  void stop();
  const AgentCounters& counters() const { return counters_; }

 private:
  struct Slot;
  struct Tombstone {
    Outcome outcome;
    int64_t decided_ms;
  };
  using Reply = std::function<void(int status, std::string body)>;

  Agent(AgentOptions o, std::unique_ptr<Resource> r);
  // Lanes, each with its own workers (see Threading): a branch holding a
  // session must always be able to prepare and be decided, so decisions
  // never queue behind execs that wait for sessions or row locks.
  enum class Lane { start, exec, decide, work };
  static constexpr int kLanes = 4;
  bool submit(std::function<void()> job, Lane lane = Lane::work);
  void worker_loop(Lane lane);
  void ticker_loop();
  uint64_t now_ticks() const;

  // Work, on a worker thread.
  void do_exec(const std::string& txid, uint64_t seq, std::string sql, std::vector<SqlValue> params,
               const rest::Replier& reply);
  void do_prepare(const std::string& txid, uint64_t exec_count, uint64_t digest,
                  const rest::Replier& reply);
  void do_precommit(const std::string& txid, const rest::Replier& reply);
  // `armed_in`: a timer's decision, armed while the branch was in that
  // state; it is dropped if the branch moved on meanwhile.
  void do_decide(const std::string& txid, Outcome asked, const rest::Replier* reply,
                 const char* why, std::optional<BranchState> armed_in = std::nullopt);
  void do_tick_action(const std::string& txid, BranchMachine::TickAction a);
  void inquire(const std::string& txid);
  void on_inquiry(const std::string& txid, BranchMachine::Answer a);

  std::shared_ptr<Slot> find(const std::string& txid);
  void retire(const std::string& txid, Outcome outcome);
  std::optional<Outcome> tombstone(const std::string& txid);
  void register_routes(void* router);
  std::string metrics() const;

  AgentOptions opt_;
  std::unique_ptr<Resource> resource_;
  std::unique_ptr<rest::Server> server_;
  std::unique_ptr<rest::Client> client_;
  AgentCounters counters_;

  std::mutex mu_;  // branches_, tombstones_
  std::map<std::string, std::shared_ptr<Slot>> branches_;
  std::map<std::string, Tombstone> tombstones_;
  std::deque<std::string> tombstone_order_;

  std::mutex q_mu_;
  std::condition_variable q_cv_[kLanes];  // one per lane: a job wakes one worker of its lane
  std::condition_variable tick_cv_;       // the ticker's sleep (woken only to stop)
  std::deque<std::function<void()>> queue_[kLanes];
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::thread ticker_;
  std::atomic<size_t> coordinator_index_{0};
  std::atomic<bool> stopped_{false};
  int64_t last_housekeeping_ms_ = 0;  // ticker thread only
  int64_t last_maintain_ms_ = 0;      // ticker thread only
  std::atomic<bool> maintain_queued_{false};
};

}  // namespace dtx::participant
