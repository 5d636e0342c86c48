// Driver: the coordinator leader's transaction drivers, as a pure state
// machine. It begins transactions, forwards execs, runs 2PC and 3PC over
// the agents, proposes decisions to the log, answers clients from the
// applied register, re-drives decisions until every agent acknowledged,
// sweeps the agents after a failover, answers agents' inquiries, and moves
// the forget watermark. docs/protocol.md explains the protocol; the rules
// it keeps are T1-T10 of CORRECTNESS.md.
//
// It does no I/O, reads no clock and draws no randomness. The shell feeds it
//   - client requests (begin, exec, commit, abort, submit, status, list,
//     inquiry, admin), each with a request id;
//   - agents' replies to the calls it asked for (on_agent_reply);
//   - the outcome of its proposals (on_proposed) and every applied record
//     (on_applied, after the table applied it) and term (on_term);
//   - leadership (on_elected once the Paxos node made it leader, then it
//     proposes a TERM record and serves once that is applied;
//     on_not_serving when leadership is lost);
//   - time (tick, and `now` with every input);
// and collects Effects: agent calls to send, records to propose, answers to
// give clients, and events to log.
//
// Rules it keeps (docs/protocol.md says why each is safe):
//   - Every client answer about an outcome, and every decision sent to an
//     agent, is read from the applied register (T1), never from a
//     proposal's fate. A proposal that ends `unknown` means leadership was
//     lost: waiting clients get 202 unknown.
//   - txids carry the leader's ballot (T2). Exec and commit are served only
//     for txids of this leader's ballot; an older one with no decision is
//     aborted in the log and answered 409 coordinator_failover.
//   - Execs are sequenced and folded into the branch digest (T5); one exec
//     at a time per branch; an exec whose outcome is unknown dooms the
//     transaction; exec and prepare are never retried blindly.
//   - Any prepare that may have run makes the abort logged; an abort before
//     any prepare is not logged (presumed abort).
//   - Decisions are re-sent with capped backoff until acknowledged with the
//     register's outcome; a different outcome is a hazard (T6), logged and
//     kept visible; "unknown branch" never counts (T10). COMPLETED is
//     proposed lazily, in batches.
//   - Once its TERM is applied a new leader re-drives every decided, not completed
//     transaction and sweeps every registered agent (T7); undecided
//     older-ballot branches it finds are aborted in the log.
//   - Below the watermark an unknown txid is forgotten (410), never
//     presumed aborted (T3); the watermark moves only over completed
//     transactions, once this term's sweep is done.
//   - An operator's decision is written only to an empty register (T9).
//
// Threading: single-threaded; the shell runs it on the Paxos node's loop.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "coordinator/core/records.h"
#include "coordinator/core/table.h"
#include "txn/agent_api.h"
#include "txn/types.h"

namespace dtx::coordinator {

// Mistakes the commit simulation must catch (CORRECTNESS.md T1-T10; the
// table in docs/protocol.md). All false outside tests/sim.
struct DriverBugs {
  bool outcome_from_proposal =
      false;  // phase two and answers use the outcome proposed, not the register's
  bool precommit_as_undecided =
      false;  // a new leader aborts prepared branches of a 3PC commit decision
  bool presume_abort_below_watermark = false;  // a forgotten txid is answered "aborted"
  bool retry_exec_blindly =
      false;  // an exec with unknown outcome is sent again (next seq), not doomed
  bool ack_without_outcome = false;  // any answer to a decision counts as acknowledged (T6, T10)
  bool no_one_phase_probe = false;   // an older leader's txid is presumed aborted unprobed
  bool any() const {
    return outcome_from_proposal || precommit_as_undecided || presume_abort_below_watermark ||
           retry_exec_blindly || ack_without_outcome || no_one_phase_probe;
  }
};

struct DriverConfig {
  uint32_t in_flight_max = 10'000;  // transactions driven at once: 503 overloaded beyond
  uint32_t participants_max = 16;   // per transaction
  uint32_t statements_max = 1'000;  // per branch of a one-shot submit
  int64_t default_timeout_ms = 30'000;
  int64_t timeout_max_ms = 600'000;
  int64_t exec_timeout_ms = 30'000;     // an exec call's deadline at the agent
  int64_t prepare_timeout_ms = 10'000;  // prepare (and the one-shot batch) call
  int64_t decision_timeout_ms = 5'000;  // precommit, commit, abort calls
  int64_t retry_min_ms = 20;            // decision re-send backoff, doubling
  int64_t retry_max_ms = 2'000;
  bool one_phase = true;            // one participant: commit in one phase (see docs/protocol.md)
  int64_t busy_retry_ms = 2;        // an agent answered busy: ask again soon
  int64_t completed_flush_ms = 20;  // COMPLETED batches
  int64_t sweep_retry_ms = 500;     // an agent the sweep could not reach
  int64_t watermark_every_ms = 1'000;         // how often the watermark is reconsidered
  int64_t retention_ms = 24LL * 3600 * 1000;  // finished transactions are kept this long
  uint64_t retained_max = 1'000'000;          // ... and at most this many
  uint32_t list_page = 500;                   // branches per sweep page
  size_t recent_max = 100'000;                // unlogged outcomes remembered for status
  size_t keys_in_flight_max = 100'000;        // idempotency keys of undecided transactions
  DriverBugs bugs;                            // planted bugs: tests/sim only
};

// Time from the shell: monotonic for timers, wall clock for stamps shown to
// people (decided_at_ms, created_at_ms).
struct Now {
  int64_t mono_ms = 0;
  int64_t wall_ms = 0;
};

using txn::Statement;

// A request to one agent. The shell encodes it (txn/agent_api.h) with the
// fencing fields (this leader's ballot, the agent id) and the watermark,
// sends it with timeout_ms, and reports the reply with on_agent_reply(id).
struct AgentCall {
  // commit_one_phase: the one-phase fast path (one participant); probe: GET
  // of a branch with this leader's ballot (is an older leader's txid
  // committed in one phase somewhere?).
  enum class Kind { exec, prepare, batch, precommit, commit, abort, list, commit_one_phase, probe };
  uint64_t id = 0;
  Kind kind = Kind::exec;
  std::string participant;  // registry name
  std::string agent_id;
  std::string url;
  Txid txid;  // all but list
  Ballot ballot;
  Txid watermark;
  int64_t timeout_ms = 0;
  // exec
  uint64_t seq = 0;
  Statement statement;
  // prepare
  uint64_t exec_count = 0;
  uint64_t digest = 0;
  // batch: run as execs 1..n, then prepare (one_phase: commit-one-phase)
  std::vector<Statement> statements;
  bool one_phase = false;
  // list
  std::optional<txn::BranchState> state_filter;  // none: every branch
  std::string after;
  uint32_t list_limit = 500;
};
const char* call_kind_name(AgentCall::Kind k);

// An agent's reply, decoded by the shell (txn/agent_api.h). A 200 whose
// body does not decode is reported as Delivery::unknown.
struct AgentReply {
  enum class Delivery {
    answered,  // an HTTP answer of any status
    not_sent,  // certainly not sent (connect failed): safe to send again
    unknown,   // timed out or broke after sending: it may have run
  };
  Delivery delivery = Delivery::answered;
  bool timed_out = false;  // unknown: because of the deadline
  int http_status = 0;
  std::optional<txn::ApiError> error;  // a non-2xx answer
  std::string body;                    // exec 200: the result, passed to the client as is
  std::optional<txn::VoteAnswer> vote;
  std::optional<txn::BatchAnswer> batch;
  std::optional<txn::PrecommitAnswer> precommit;
  std::optional<txn::DecisionAnswer> decision;
  std::optional<txn::BranchListAnswer> list;
  std::optional<txn::OnePhaseAnswer> one_phase;  // commit_one_phase
  std::optional<txn::BranchStatus> status;       // probe

  std::string_view error_code() const { return error ? std::string_view(error->code) : ""; }
};

// An answer to a client request. The shell writes it as is; a redirect
// (not serving) gets the leader's address added by the shell.
struct Answer {
  uint64_t request_id = 0;
  int http_status = 200;
  std::string body;         // JSON
  bool not_leader = false;  // 307 to the leader, or 503 when none is known
};

struct Proposal {
  uint64_t id = 0;
  Record record;
};

// What became of a proposal (consensus::Node's outcomes).
enum class ProposeOutcome { applied, unknown, not_leader, not_serving, busy, too_large, stopped };

struct Event {
  enum class Level { debug, info, warn, error };
  Level level = Level::info;
  std::string txid;  // empty: not about one transaction
  std::string message;
};

struct Effects {
  std::vector<AgentCall> calls;
  std::vector<Proposal> proposals;
  std::vector<Answer> answers;
  std::vector<Event> events;
  bool empty() const {
    return calls.empty() && proposals.empty() && answers.empty() && events.empty();
  }
};

// Client requests, parsed by the shell.
struct BeginRequest {
  std::optional<Protocol> protocol;
  std::optional<int64_t> timeout_ms;
  std::string idempotency_key;
};
struct ExecRequest {
  std::string txid;
  std::string participant;
  Statement statement;
};
struct CommitRequest {
  std::string txid;
  bool wait_completed = false;
};
struct SubmitBranch {
  std::string participant;
  std::vector<Statement> statements;
};
struct SubmitRequest {
  std::optional<Protocol> protocol;
  std::optional<int64_t> timeout_ms;
  std::string idempotency_key;
  bool wait_completed = false;
  // Branches one after the other, in the order given, each once the one
  // before voted yes (databases that lock whole, like SQLite, then cannot
  // deadlock across each other); false: all at once.
  bool sequential = false;
  std::vector<SubmitBranch> branches;
};
struct ListRequest {
  std::string state;  // "" any, or "active", "preparing", "decided", "completed", "in_doubt"
  int64_t limit = 100;
  std::string after;          // cursor: txids after this one
  int64_t older_than_ms = 0;  // only those created (or decided) at least this long ago
};
struct OperatorDecision {
  std::string txid;
  Outcome outcome = Outcome::aborted;
  std::string operator_name;
  std::string reason;
  std::vector<std::string> participants;  // to tell, besides those this leader knows
};

struct DriverStats {
  uint64_t begun = 0;
  uint64_t committed_2pc = 0, aborted_2pc = 0, committed_3pc = 0, aborted_3pc = 0;
  uint64_t decisions_resent = 0;
  uint64_t inquiries = 0;
  uint64_t hazards = 0;
  uint64_t leader_terms = 0;
  uint64_t overloaded = 0;
  uint64_t in_flight = 0;
  // Commit latency (decision applied - commit asked), drained by the shell
  // into its histogram.
  std::vector<int64_t> commit_latency_us;
  void count_outcome(Protocol p, Outcome o);
};

class Driver {
 public:
  Driver(DriverConfig config, TxnTable* table);

  // --- leadership
  // The Paxos node made this replica leader under `ballot` and applied its
  // barrier: propose a TERM record; serve once it is applied (on_applied).
  void on_elected(const Ballot& ballot, const Now& now);
  // Leadership is gone (or quorum lost): stop driving, answer every waiting
  // client (202 unknown where a decision may be under way).
  void on_not_serving();
  bool serving() const { return serving_; }
  const Ballot& ballot() const { return ballot_; }

  // --- client requests (answers come in Effects, now or later)
  void begin(uint64_t req, const BeginRequest& r, const Now& now);
  void exec(uint64_t req, ExecRequest r, const Now& now);
  void commit(uint64_t req, const CommitRequest& r, const Now& now);
  void abort(uint64_t req, const std::string& txid, const Now& now);
  void submit(uint64_t req, SubmitRequest r, const Now& now);
  void status(uint64_t req, const std::string& txid, const Now& now);
  void list(uint64_t req, const ListRequest& r, const Now& now);
  // An agent asks for a txid's outcome (GET /v1/transactions/{txid}/outcome).
  // Any replica answers a decided or forgotten txid; the rest need the
  // leader, which answers pending for one it drives and otherwise writes
  // ABORT first (presumed abort).
  void inquiry(uint64_t req, const std::string& txid, const Now& now);
  // --- admin
  void in_doubt(uint64_t req, const Now& now);
  void set_participant(uint64_t req, const ParticipantSetRecord& p, const Now& now);
  void remove_participant(uint64_t req, const std::string& name, const Now& now);
  void operator_decision(uint64_t req, const OperatorDecision& d, const Now& now);
  void redrive(uint64_t req, const std::string& txid, const Now& now);
  void clear_hazard(uint64_t req, const HazardClearedRecord& h, const Now& now);
  // Participants from the configuration file, proposed once when the
  // registry is empty and this leader serves (a new cluster's seed).
  void seed_registry(std::vector<ParticipantSetRecord> seed);

  // --- from the shell
  void on_agent_reply(uint64_t call_id, AgentReply reply, const Now& now);
  void on_proposed(uint64_t proposal_id, ProposeOutcome outcome, const Now& now);
  // After the table applied a record (`result` is what it did).
  void on_applied(const Record& r, const ApplyResult& result, const Now& now);
  void tick(const Now& now);

  Effects take_effects();
  bool has_effects() const { return !fx_.empty(); }

  const DriverStats& stats() const { return stats_; }
  DriverStats& mutable_stats() { return stats_; }
  size_t in_flight() const { return txns_.size(); }
  // This term's sweep has listed every registered agent and its orphan
  // aborts are applied.
  bool sweep_done() const { return serving_ && sweep_pending_.empty() && orphan_props_.empty(); }
  // In-doubt branches per participant (decided or voting, not yet
  // acknowledged): how many, and the longest time one has been prepared.
  struct InDoubt {
    uint64_t branches = 0;
    int64_t oldest_prepared_ms = 0;
  };
  std::map<std::string, InDoubt> in_doubt_by_participant(const Now& now) const;
  // Internal consistency (the simulator runs it after every step): empty
  // when it holds, else what is wrong.
  std::string check_invariants() const;

 private:
  enum class Phase {
    active,     // execs allowed
    preparing,  // prepares (or one-shot batches) sent, votes coming
    deciding,   // a DECISION proposed, not applied yet
    decided,    // the register holds the outcome; phase two under way
    aborting,   // aborted before any prepare: not logged, aborts being sent
    one_phase,  // one participant: commit-one-phase sent, the agent decides
  };
  // read_only: the branch wrote nothing and is over at its agent; it takes no
  // part in phase two (counted acknowledged).
  enum class Vote { none, pending, yes, no, read_only };
  enum class Ask { commit, abort, exec, status, inquiry };
  struct Branch {
    std::string name;
    std::string agent_id;
    std::string url;
    uint64_t exec_count = 0;  // execs the agent ran (answered 200)
    uint64_t digest = 0;
    Statement pending_statement;  // the exec being sent
    bool touched = false;         // an exec, batch or prepare may have reached it
    bool call_in_flight = false;
    uint64_t call_id = 0;
    Vote vote = Vote::none;
    bool prepare_sent = false;
    bool may_have_run = false;   // one phase: an ask whose answer was lost
    bool in_phase2 = false;      // the decision goes to it
    bool precommitted = false;   // 3PC: the agent confirmed PRECOMMITTED (or went past)
    bool acked = false;          // acknowledged the register's outcome
    bool hazard = false;         // acknowledged another outcome (T6)
    int64_t prepared_at_ms = 0;  // mono, when it voted yes
    int64_t retry_at_ms = 0;     // mono: send the decision again
    int64_t retry_exec_at_ms = 0;
    int64_t retry_prepare_at_ms = 0;
    int64_t backoff_ms = 0;
    uint32_t attempts = 0;
    std::vector<txn::StatementResult> results;  // one-shot: per statement
    std::vector<Statement> batch;               // one-shot, sequential: not sent yet
  };
  struct Waiter {
    uint64_t req = 0;
    bool wait_completed = false;
    bool submit = false;
    bool abort_request = false;
  };
  struct Txn {
    Txid txid;
    Protocol protocol = Protocol::two_pc;
    Phase phase = Phase::active;
    bool one_shot = false;
    bool sequential = false;  // one-shot branches one after the other
    bool ours = true;         // begun under this ballot (not adopted from the log or a sweep)
    int64_t created_mono_ms = 0;
    int64_t created_wall_ms = 0;
    int64_t deadline_ms = 0;  // mono
    int64_t timeout_ms = 0;
    std::vector<Branch> branches;
    bool doomed = false;
    AbortReason doom_reason;
    std::string key;        // a one-shot submit's Idempotency-Key
    std::string begin_key;  // a begin's Idempotency-Key
    uint64_t pending_exec_req = 0;
    std::vector<Waiter> waiters;
    uint64_t proposal_id = 0;
    std::optional<Outcome> outcome;
    std::optional<Outcome> proposed;  // what this leader proposed (bugs.outcome_from_proposal)
    AbortReason reason;
    int64_t decided_mono_ms = 0;
    int64_t commit_asked_mono_ms = 0;
    bool completion_queued = false;
    bool acks_done = false;
  };
  // Probing the agents before deciding an older leader's txid (it may have
  // committed in one phase at one of them).
  struct Probe {
    std::set<std::string> pending;               // participants not answered yet
    std::map<std::string, int64_t> retry_at_ms;  // mono: ask again
    std::string committed_at;                    // a participant that committed it
  };
  struct RegisterWaiter {
    uint64_t req = 0;
    Ask ask = Ask::status;
  };
  struct AdminWaiter {
    enum class Kind { participant_set, participant_remove, decision, hazard_cleared };
    uint64_t req = 0;
    Kind kind = Kind::participant_set;
    std::string name;
    Txid txid;
  };
  struct CallRef {
    Txid txid;
    std::string participant;
    bool list = false;
    std::string after;  // list: the page asked for
    AgentCall::Kind kind = AgentCall::Kind::exec;
  };

  // Life cycle (driver.cc).
  void start_serving(const Ballot& ballot, const Now& now);
  Txid issue_txid();
  Branch* enlist(Txn& t, const std::string& participant, uint64_t req);
  void send_exec(Txn& t, Branch& b, const Now& now);
  void on_exec_reply(Txn& t, Branch& b, AgentReply& r, const Now& now);
  void doom(Txn& t, const AbortReason& reason);
  void start_commit(Txn& t, const Now& now);
  void send_prepare(Txn& t, Branch& b, const Now& now);
  void send_batch(Txn& t, Branch& b, const Now& now);
  void send_one_phase(Txn& t, Branch& b, const Now& now);
  void on_one_phase_reply(Txn& t, Branch& b, AgentReply& r, const Now& now);
  void probe_before_deciding(uint64_t req, Ask ask, const Txid& id, const Now& now);
  void send_probe(const Txid& id, const std::string& participant, const Now& now);
  void on_probe_reply(const Txid& id, const std::string& participant, AgentReply& r,
                      const Now& now);
  void probes_due(const Now& now);
  // A DECISION naming one participant (a one-phase commit found by a probe,
  // an orphan's abort), proposed and remembered as this txid's proposal.
  void propose_one_participant(const Txid& id, Outcome o, const AbortReason& reason,
                               const std::string& participant, const Now& now);
  // A call to a registered agent by name (list, probe), with this leader's
  // fencing fields, queued in the effects; nullptr if the name is unknown.
  AgentCall* new_registry_call(AgentCall::Kind kind, const std::string& participant);
  void on_vote(Txn& t, Branch& b, AgentReply& r, const Now& now);
  void vote_no(Txn& t, Branch& b, const AbortReason& reason, const Now& now);
  void maybe_decide(Txn& t, const Now& now);
  void propose_decision(Txn& t, Outcome o, const AbortReason& reason, const Now& now);
  void abort_unlogged(Txn& t, const AbortReason& reason, const Now& now);
  void on_decided(Txn& t, const TxnEntry& e, const Now& now);
  void send_decision(Txn& t, Branch& b, const Now& now);
  void on_decision_reply(Txn& t, Branch& b, AgentCall::Kind kind, AgentReply& r, const Now& now);
  void schedule_retry(Branch& b, const Now& now, bool busy);
  void maybe_complete(Txn& t, const Now& now);
  void answer_waiters(Txn& t, bool completed);
  void finish(const Txid& id);
  void remember_abort(const Txid& id, const AbortReason& reason);
  void check_deadlines(const Now& now);
  void resend_due(const Now& now);
  void flush_completed(const Now& now);
  AgentCall& new_call(AgentCall::Kind kind, const Txn& t, Branch& b, const Now& now);
  uint64_t propose(Record r);
  void event(Event::Level level, const Txid* id, std::string message);

  // Txids not driven here, failover, inquiries, watermark, admin
  // (driver_recovery.cc).
  Txn* find_ours(const std::string& text, uint64_t req, Ask ask, const Now& now);
  void resolve_foreign(uint64_t req, Ask ask, const Txid& id, const Now& now);
  void wait_for_register(uint64_t req, Ask ask, const Txid& id, const std::string& code,
                         const Now& now);
  void answer_register_waiters(const Txid& id, const TxnEntry& e);
  void answer_from_register(uint64_t req, Ask ask, const Txid& id, const TxnEntry& e);
  void answer_forgotten(uint64_t req, Ask ask, const Txid& id);
  Txn& adopt_decided(const TxnEntry& e, const Now& now);
  void add_phase2_branch(Txn& t, const std::string& participant, const Now& now);
  void redrive_open(const Now& now);
  void start_sweep(const Now& now);
  void send_list(const std::string& participant, const std::string& after, const Now& now);
  void on_list_reply(const std::string& participant, const std::string& after, AgentReply& r,
                     const Now& now);
  void sweep_due(const Now& now);
  void on_swept_branch(const std::string& participant, const txn::BranchStatus& bs, const Now& now);
  void propose_orphan_abort(const Txid& id, const std::string& participant, const Now& now);
  void add_abort_branch(Txn& t, const std::string& participant, const Now& now);
  void maybe_advance_watermark(const Now& now);
  void answer_admin(uint64_t proposal_id, ProposeOutcome outcome);

  // Answers (driver_answers.cc).
  static const char* phase_name(Phase p);
  void answer(uint64_t req, int status, const boost::json::object& body);
  void answer_error(uint64_t req, int status, std::string_view code, std::string_view message,
                    boost::json::object extra = {});
  void answer_not_leader(uint64_t req);
  void answer_outcome(uint64_t req, const Txid& id, Outcome o, const AbortReason& reason,
                      const Txn* t, const std::string* stored_results);
  void answer_abort_result(uint64_t req, const Txid& id, Outcome o, const AbortReason& reason);
  void answer_unknown(uint64_t req, const Txid& id);
  static boost::json::object begin_json(const Txn& t, const Now& now);
  boost::json::object inquiry_json(const Txid& id, std::string_view outcome) const;
  static boost::json::object aborted_status_json(const Txid& id, const AbortReason& reason);
  static boost::json::object reason_json(const AbortReason& r);
  static boost::json::object participant_json(const std::string& name);
  static boost::json::array results_json(const Txn& t);
  boost::json::object status_json(const Txid& id, const Txn* t, const TxnEntry* e,
                                  const Now& now) const;

  DriverConfig cfg_;
  TxnTable* table_;
  Effects fx_;
  DriverStats stats_;

  bool serving_ = false;
  std::optional<Ballot> elected_;  // TERM proposed, not applied yet
  Ballot ballot_;
  uint64_t next_seq_ = 1;
  uint64_t next_call_ = 1;
  uint64_t next_proposal_ = 1;

  std::map<Txid, Txn> txns_;
  std::unordered_map<uint64_t, CallRef> calls_;
  std::unordered_map<uint64_t, Record> pending_records_;  // proposed, outcome not yet known
  std::unordered_map<uint64_t, Txid> proposals_;          // decision proposals in flight
  struct RetryProposal {
    Record record;
    uint64_t old_id = 0;
  };
  std::vector<RetryProposal> retry_proposals_;            // refused as busy: again next tick
  std::unordered_map<std::string, Txid> keys_in_flight_;  // one-shot keys, undecided
  std::unordered_map<std::string, Txid> begin_keys_;
  // Aborts of this term's transactions before any prepare (not logged),
  // for status and repeats: bounded, oldest dropped.
  std::map<Txid, AbortReason> recent_aborts_;
  std::deque<Txid> recent_order_;
  // Requests waiting for an ABORT this leader proposed to apply.
  std::map<Txid, std::vector<RegisterWaiter>> register_waiters_;
  std::set<Txid> register_proposed_;
  std::map<Txid, Probe> probes_;
  // When this replica applied each TERM record (wall clock; this replica's
  // view, used only by its own watermark proposals): a term's txids may
  // have committed in one phase with no record yet, so they are kept above
  // the watermark until the retention has passed since the next term began.
  std::map<Ballot, int64_t> term_seen_ms_;
  // Orphans found by the sweep (or decided by an operator): ABORTs
  // proposed and not applied yet, and the agents that reported them.
  std::set<Txid> orphan_props_;
  std::map<Txid, std::vector<std::string>> orphan_participants_;
  // The sweep of this term: agents still to list, where to resume, when.
  std::map<std::string, bool> sweep_pending_;
  std::set<std::string> sweep_in_flight_;
  std::map<std::string, std::string> sweep_resume_;
  std::map<std::string, int64_t> sweep_retry_at_;
  std::vector<Txid> completed_queue_;
  int64_t completed_flush_at_ms_ = 0;
  int64_t watermark_at_ms_ = 0;
  std::optional<Txid> watermark_proposed_;
  std::vector<ParticipantSetRecord> seed_;
  bool seed_proposed_ = false;
  std::map<uint64_t, AdminWaiter> admin_waiters_;
};

}  // namespace dtx::coordinator
