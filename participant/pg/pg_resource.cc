#include "participant/pg/pg_resource.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "common/logging.h"
#include "participant/pg/pg_session.h"

namespace dtx::participant {

using logging::txn_debug;
using logging::txn_error;
using logging::txn_info;
using logging::txn_warn;
using pg::PgSession;
using pg::TextParam;

const char* isolation_sql(PgIsolation level) {
  switch (level) {
    case PgIsolation::read_committed:
      return "READ COMMITTED";
    case PgIsolation::repeatable_read:
      return "REPEATABLE READ";
    case PgIsolation::serializable:
      return "SERIALIZABLE";
  }
  return "READ COMMITTED";
}

namespace pg {

namespace {

// SQLSTATEs dtx reacts to.
constexpr std::string_view kUndefinedObject = "42704";  // no such prepared transaction
constexpr std::string_view kOtherDatabase = "0A000";    // the gid is prepared in another database
constexpr std::string_view kObjectInUse = "55006";      // another session is finishing it
constexpr std::string_view kQueryCanceled = "57014";    // statement_timeout

}  // namespace

// The branch sessions. A session is handed to one owner at a time; a broken
// one is dropped on release and its slot is connected anew by a later
// acquire(), never reused.
class SessionPool {
 public:
  SessionPool(SessionOptions options, size_t size) : options_(std::move(options)), size_(size) {}

  // Connects every empty slot (open(), before any branch).
  Status fill() {
    while (true) {
      {
        std::lock_guard lock(mu_);
        if (live_ >= size_) return ok_status();
      }
      auto s = PgSession::connect(options_);
      if (!s.ok()) return s.status();
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(*s));
      ++live_;
    }
  }

  // A free session, or a new connection for a slot freed by a broken one;
  // Code::busy after `wait` with every session in use.
  Result<std::unique_ptr<PgSession>> acquire(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, wait, [&] { return !idle_.empty() || live_ < size_; })) {
      return error(Code::busy,
                   fmt::format("all {} PostgreSQL branch sessions are in use (waited {} ms)", size_,
                               wait.count()));
    }
    if (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      return s;
    }
    ++live_;  // the slot is ours while we connect
    lock.unlock();
    auto s = PgSession::connect(options_);
    if (!s.ok()) {
      lock.lock();
      --live_;
      cv_.notify_one();
    }
    return s;
  }

  // A free session now, or null; never connects.
  std::unique_ptr<PgSession> try_acquire() {
    std::lock_guard lock(mu_);
    if (idle_.empty()) return nullptr;
    auto s = std::move(idle_.back());
    idle_.pop_back();
    return s;
  }

  void release(std::unique_ptr<PgSession> s) {
    if (s == nullptr) return;
    const bool broken = s->broken();
    if (broken) s.reset();  // closed outside the lock
    std::lock_guard lock(mu_);
    if (broken) {
      --live_;
    } else {
      idle_.push_back(std::move(s));
    }
    cv_.notify_one();
  }

  size_t size() const { return size_; }

 private:
  const SessionOptions options_;
  const size_t size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<PgSession>> idle_;
  size_t live_ = 0;  // idle + handed out + being connected
};

// What the resource and its branches share; branches may outlive the
// resource.
struct PgShared {
  PgShared(SessionOptions branch_options, size_t size, SessionOptions decision_options,
           size_t decision_size)
      : pool(std::move(branch_options), size),
        decisions(std::move(decision_options), decision_size) {}

  SessionPool pool;       // branch sessions, one per active branch
  SessionPool decisions;  // COMMIT/ROLLBACK PREPARED and marker look-ups
  std::mutex mu;
  std::set<std::string> active;    // txids with a branch between begin and its end
  std::set<std::string> prepared;  // txids prepared here and not yet decided
  // txids whose connection broke around PREPARE TRANSACTION and whose
  // clean-up failed too: they voted no, and may be prepared all the same.
  std::set<std::string> orphans;
  std::chrono::steady_clock::time_point orphans_tried{};
  // txids whose one-phase COMMIT lost its answer, and the backend it ran
  // on: their outcome is the marker's once that backend is gone.
  std::map<std::string, int> unsettled;

  // The branch of txid ended without being prepared: its session goes back.
  void end_branch(const std::string& txid, std::unique_ptr<PgSession> session) {
    pool.release(std::move(session));
    std::lock_guard lock(mu);
    active.erase(txid);
  }
};

namespace {

class PgBranch final : public Branch {
 public:
  // The transaction begins with the first statement, in the same round
  // trip (PgSession::begin_and_exec): begin_sql is sent then.
  PgBranch(std::shared_ptr<PgShared> shared, std::string txid, std::unique_ptr<PgSession> session,
           std::string begin_sql)
      : shared_(std::move(shared)),
        txid_(std::move(txid)),
        session_(std::move(session)),
        begin_sql_(std::move(begin_sql)) {}

  ~PgBranch() override {
    if (session_) {
      txn_info(txid_, "postgresql branch dropped before prepare; rolling back");
      rollback();
    }
  }

  const std::string& txid() const override { return txid_; }

  Result<Rows> exec(std::string_view sql, const std::vector<SqlValue>& params,
                    DbError* err) override {
    DbError local;
    DbError& e = err ? *err : local;
    if (session_ == nullptr) {
      e = DbError{std::string(kRefusedByDtx), "the branch was already prepared or rolled back"};
      return error(Code::failed_precondition, e.message);
    }
    if (doomed_) {
      e = doom_error_;
      return error(Code::failed_precondition,
                   "the branch is doomed by an earlier error: " + doom_error_.message);
    }
    if (auto why = statement_refusal(sql)) {
      txn_warn(txid_, "postgresql statement refused: {}", *why);
      return doom(DbError{std::string(kRefusedByDtx), *why},
                  error(Code::invalid_argument, "refused: " + *why), e);
    }
    auto bound = bind_params(params);
    if (!bound.ok()) {
      return doom(DbError{std::string(kRefusedByDtx), bound.status().message()}, bound.status(), e);
    }
    auto failed = [&](const Status& st) {
      if (e.sqlstate == kSessionLost) {
        txn_warn(txid_, "postgresql branch session lost: {}", e.message);
      } else {
        txn_info(txid_, "postgresql statement failed, branch doomed: {} {}", e.sqlstate, e.message);
      }
      return doom(e, st, e);
    };
    if (may_be_read_only_) {
      const std::vector<std::string> w = leading_words(sql, 1);
      may_be_read_only_ = !w.empty() && (w[0] == "SELECT" || w[0] == "VALUES" || w[0] == "TABLE" ||
                                         w[0] == "SHOW" || w[0] == "WITH");
    }
    if (!begun_) {
      begun_ = true;  // whatever happens now, BEGIN was sent
      auto rows = session_->begin_and_exec(begin_sql_, sql, *bound, &backend_pid_, &e);
      if (!rows.ok()) return failed(rows.status());
      txn_debug(txid_, "postgresql branch begun on backend {}", backend_pid_);
      return rows;
    }
    auto r = session_->exec(sql, *bound, &e);
    if (!r.ok()) return failed(r.status());
    return to_rows(*r);
  }

  void rollback() override {
    if (session_ == nullptr) return;
    if (!session_->broken()) session_->rollback_quietly();
    txn_debug(txid_, "postgresql branch rolled back");
    shared_->end_branch(txid_, std::move(session_));
  }

  // For PgResource::prepare: the session leaves the branch, still in its
  // transaction; the branch is finished either way.
  std::unique_ptr<PgSession> take_session() { return std::move(session_); }
  bool doomed() const { return doomed_; }
  // Every statement began with a word of a query that may well have
  // written nothing; only then is the server asked (end_read_only).
  bool may_be_read_only() const { return begun_ && may_be_read_only_; }
  PgSession* session() const { return session_.get(); }
  const DbError& doom_error() const { return doom_error_; }
  const Status& doom_status() const { return doom_status_; }
  int backend_pid() const { return backend_pid_; }

 private:
  Status doom(DbError why, Status status, DbError& out) {
    doomed_ = true;
    doom_error_ = std::move(why);
    doom_status_ = std::move(status);
    out = doom_error_;
    return doom_status_;
  }

  std::shared_ptr<PgShared> shared_;
  const std::string txid_;
  std::unique_ptr<PgSession> session_;
  const std::string begin_sql_;
  bool begun_ = false;
  bool may_be_read_only_ = true;
  int backend_pid_ = 0;  // as the server reported it with BEGIN (A1)
  bool doomed_ = false;
  DbError doom_error_;
  Status doom_status_;
};

}  // namespace
}  // namespace pg

using pg::PgBranch;
using pg::PgShared;

namespace {

pg::SessionOptions make_session_options(const PgOptions& o, std::string_view role) {
  pg::SessionOptions s;
  s.url = pg::with_liveness_defaults(o.url);
  s.statement_timeout = o.statement_timeout;
  s.application_name = fmt::format("dtx-agent {} {}", o.agent_name, role);
  return s;
}

Status no_vote(DbError* err, std::string_view sqlstate, std::string message, Code code) {
  if (err) *err = DbError{std::string(sqlstate), message};
  return error(code, std::move(message));
}

}  // namespace

PgResource::PgResource(PgOptions options)
    : options_(std::move(options)),
      shared_(std::make_shared<PgShared>(
          make_session_options(options_, "branch"), options_.pool_size,
          make_session_options(options_, "decision"),
          options_.decision_sessions ? options_.decision_sessions
                                     : std::max<size_t>(2, options_.pool_size / 2))) {}

PgResource::~PgResource() {
  std::lock_guard lock(control_mu_);
  if (control_) release_agent_lock(*control_);
}

std::string PgResource::gid(const std::string& txid) const {
  return make_gid(options_.cluster_id, txid, options_.agent_name);
}

Status PgResource::check_open() const {
  if (!open_) return error(Code::failed_precondition, "the PostgreSQL resource is not open");
  return ok_status();
}

Status PgResource::check_options() const {
  DTX_RETURN_IF_ERROR(pg::check_name("cluster id", options_.cluster_id));
  DTX_RETURN_IF_ERROR(pg::check_name("agent name", options_.agent_name));
  if (options_.pool_size == 0 || options_.pool_size > 10000) {
    return error(Code::invalid_argument,
                 fmt::format("pool_size must be 1 to 10000, not {}", options_.pool_size));
  }
  if (options_.statement_timeout.count() <= 0 || options_.health_timeout.count() <= 0 ||
      options_.begin_wait.count() < 0) {
    return error(Code::invalid_argument,
                 "statement_timeout and health_timeout must be positive, begin_wait not negative");
  }
  return ok_status();
}

Result<bool> PgResource::take_agent_lock(PgSession& s) {
  const int64_t key = pg::advisory_lock_key(options_.cluster_id, options_.agent_name);
  auto r = s.exec("SELECT pg_try_advisory_lock($1::bigint)", {std::to_string(key)});
  if (!r.ok()) return r.status();
  return (*r)[0][0].as<bool>();
}

void PgResource::release_agent_lock(PgSession& s) {
  if (s.broken()) return;
  const int64_t key = pg::advisory_lock_key(options_.cluster_id, options_.agent_name);
  (void)s.exec("SELECT pg_advisory_unlock($1::bigint)", {std::to_string(key)});
}

Status PgResource::check_server(PgSession& s) {
  // Durability preconditions (design review C7): a yes vote and COMMIT
  // PREPARED are only as durable as the server's WAL.
  auto d = s.exec("SELECT current_setting('fsync'), current_setting('full_page_writes')");
  if (!d.ok()) return d.status();
  if (auto what = pg::durability_problem((*d)[0][0].c_str(), (*d)[0][1].c_str())) {
    if (!options_.unsafe_no_fsync) {
      return error(Code::failed_precondition,
                   *what + "; set both to on, or start with --unsafe-no-fsync (tests only)");
    }
    spdlog::warn("UNSAFE: {} (--unsafe-no-fsync)", *what);
  }
  auto r = s.exec("SELECT current_setting('max_prepared_transactions')::int");
  if (!r.ok()) return r.status();
  const int64_t max_prepared = (*r)[0][0].as<int64_t>();
  if (max_prepared <= 0 || static_cast<uint64_t>(max_prepared) < options_.pool_size) {
    return error(
        Code::failed_precondition,
        fmt::format("PostgreSQL's max_prepared_transactions is {}, less than the branch "
                    "pool size {}: set max_prepared_transactions to at least {} (plus what "
                    "other agents on this server need) in postgresql.conf and restart "
                    "PostgreSQL, or lower the pool size",
                    max_prepared, options_.pool_size, options_.pool_size));
  }
  return ok_status();
}

Status PgResource::create_tables(PgSession& s) {
  // Under a transaction-level advisory lock: concurrent CREATE TABLE IF NOT
  // EXISTS from agents starting together can fail on the catalog's unique
  // index.
  auto r = s.exec_script(fmt::format(
      "BEGIN; SELECT pg_advisory_xact_lock({}); "
      "CREATE TABLE IF NOT EXISTS dtx_markers (cluster text NOT NULL, agent text NOT NULL, "
      "txid text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
      "PRIMARY KEY (cluster, agent, txid)); "
      "CREATE TABLE IF NOT EXISTS dtx_fence (cluster text NOT NULL, agent text NOT NULL, "
      "round bigint NOT NULL, node bigint NOT NULL, PRIMARY KEY (cluster, agent)); COMMIT",
      pg::marker_ddl_lock_key()));
  if (!r.ok()) {
    s.rollback_quietly();
    return error(r.status().code(),
                 "cannot create dtx's tables dtx_markers and dtx_fence: " + r.status().message());
  }
  auto fence_probe = s.exec("SELECT cluster, agent, round, node FROM dtx_fence WHERE false");
  if (!fence_probe.ok()) {
    return error(Code::failed_precondition,
                 "dtx_fence exists but is not dtx's fence table (cluster, agent, round, node): " +
                     fence_probe.status().message());
  }
  // A table of that name from something else would make every prepare
  // fail; say so now.
  auto probe = s.exec("SELECT cluster, agent, txid, created_at FROM dtx_markers WHERE false");
  if (!probe.ok()) {
    return error(Code::failed_precondition,
                 "dtx_markers exists but is not dtx's marker table (cluster, agent, txid, "
                 "created_at): " +
                     probe.status().message());
  }
  return ok_status();
}

Result<std::vector<std::string>> PgResource::reconcile(PgSession& s) {
  // Filtered here, exactly, rather than with LIKE: names may hold '_'.
  auto r = s.exec(
      "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared");
  if (!r.ok()) return r.status();
  std::vector<std::string> txids;
  for (const auto& row : *r) {
    auto txid = pg::txid_of_gid(row[0].c_str(), options_.cluster_id, options_.agent_name);
    if (txid) txids.push_back(std::move(*txid));
  }
  return txids;
}

Result<std::vector<std::string>> PgResource::open() {
  std::unique_lock lock(control_mu_);
  if (open_) return error(Code::failed_precondition, "the PostgreSQL resource is already open");
  DTX_RETURN_IF_ERROR(check_options());

  auto control = PgSession::connect(make_session_options(options_, "control"));
  if (!control.ok()) return control.status();
  PgSession& s = **control;
  const std::string where = s.describe();

  auto locked = take_agent_lock(s);
  if (!locked.ok()) return locked.status();
  if (!*locked) {
    return error(Code::busy,
                 fmt::format("another dtx agent '{}' of cluster '{}' already serves PostgreSQL {} "
                             "(it holds advisory lock {}); stop it first",
                             options_.agent_name, options_.cluster_id, where,
                             pg::advisory_lock_key(options_.cluster_id, options_.agent_name)));
  }
  auto give_up = [&](Status st) {
    release_agent_lock(s);
    return st;
  };
  if (Status st = check_server(s); !st.ok()) return give_up(st);
  if (Status st = create_tables(s); !st.ok()) return give_up(st);
  auto txids = reconcile(s);
  if (!txids.ok()) return give_up(txids.status());
  if (Status st = shared_->pool.fill(); !st.ok()) return give_up(st);
  if (Status st = shared_->decisions.fill(); !st.ok()) return give_up(st);

  control_ = std::move(*control);
  {
    std::lock_guard dlock(describe_mu_);
    describe_ = "postgresql " + where;
  }
  {
    std::lock_guard slock(shared_->mu);
    shared_->prepared.insert(txids->begin(), txids->end());
  }
  lock_held_ = true;
  open_ = true;
  spdlog::info(
      "postgresql {}: agent '{}' of cluster '{}' open, {} branch sessions at {}, {} "
      "prepared branches to resolve",
      where, options_.agent_name, options_.cluster_id, options_.pool_size,
      isolation_sql(options_.isolation), txids->size());
  for (const std::string& txid : *txids) {
    txn_info(txid, "postgresql branch still prepared from before; its outcome must be asked");
  }
  // Housekeeping only: a failure here does not stop the agent.
  lock.unlock();
  Status forgot = forget_old_markers();
  if (!forgot.ok()) {
    spdlog::warn("postgresql {}: old markers not deleted: {}", where, forgot.describe());
  }
  return txids;
}

Status PgResource::ensure_control() {
  if (control_ && !control_->broken_now()) return ok_status();
  if (control_) {
    spdlog::warn("postgresql control session lost; re-opening it and re-taking the lock");
  }
  control_.reset();  // the advisory lock went with it
  lock_held_ = false;
  auto s = PgSession::connect(make_session_options(options_, "control"));
  if (!s.ok()) return s.status();
  auto locked = take_agent_lock(**s);
  if (!locked.ok()) return locked.status();
  if (!*locked) {
    spdlog::error(
        "postgresql: another agent '{}' of cluster '{}' took the advisory lock while "
        "this one's control session was down; refusing to decide branches",
        options_.agent_name, options_.cluster_id);
    return error(Code::busy, "another dtx agent of this name now holds the database's lock");
  }
  control_ = std::move(*s);
  lock_held_ = true;
  return ok_status();
}

Status PgResource::check_agent_lock() {
  DTX_RETURN_IF_ERROR(check_open());
  std::lock_guard lock(control_mu_);
  return ensure_control();
}

Status PgResource::with_decision_session(const std::function<Status(PgSession&)>& f) {
  // Decisions have sessions of their own: branch sessions may all be busy
  // with active branches, and decisions must not queue behind them (nor all
  // behind one session: each COMMIT PREPARED waits for an fsync, and
  // concurrent ones share it). Every f here may run twice (decisions are
  // idempotent), so a session found dead, e.g. idle through a server
  // restart, is dropped and f runs on a fresh one.
  // Every pooled session may have died together (a server restart): each
  // broken one is dropped, and its slot reconnects on a later acquire.
  for (size_t attempt = 0; attempt <= shared_->decisions.size(); ++attempt) {
    auto s = shared_->decisions.acquire(options_.begin_wait);
    if (!s.ok()) return error(Code::unavailable, s.status().message());
    Status st = f(**s);
    const bool broken = (*s)->broken();
    shared_->decisions.release(std::move(*s));
    if (!broken) return st;
  }
  return error(Code::unavailable, "PostgreSQL decision sessions keep breaking");
}

void PgResource::retry_orphans() {
  std::vector<std::string> todo;
  {
    std::lock_guard lock(shared_->mu);
    const auto now = std::chrono::steady_clock::now();
    if (shared_->orphans.empty() || now - shared_->orphans_tried < std::chrono::seconds(1)) return;
    shared_->orphans_tried = now;
    todo.assign(shared_->orphans.begin(), shared_->orphans.end());
  }
  for (const std::string& txid : todo) {
    Result<Outcome> r = abort(txid);
    if (!r.ok()) continue;
    txn_info(txid, "postgresql: the branch that voted no is rolled back, if it was prepared");
    std::lock_guard lock(shared_->mu);
    shared_->orphans.erase(txid);
  }
}

Result<std::unique_ptr<Branch>> PgResource::begin(const std::string& txid) {
  DTX_RETURN_IF_ERROR(pg::check_name("txid", txid));
  DTX_RETURN_IF_ERROR(check_open());
  if (!lock_held_) {
    return error(Code::busy,
                 "this agent does not hold its database lock now (control session lost, or the "
                 "lock taken by another agent)");
  }
  {
    std::lock_guard lock(shared_->mu);
    if (shared_->active.count(txid) || shared_->prepared.count(txid)) {
      return error(Code::already_exists, "txid " + txid + " already has a branch here");
    }
    shared_->active.insert(txid);
  }
  // BEGIN goes out with the branch's first statement (one round trip).
  // A pooled session that died while idle (a server restart: the server's
  // FATAL notice is read here without a round trip) is dropped for another.
  Status last;
  for (size_t attempt = 0; attempt <= shared_->pool.size(); ++attempt) {
    auto s = shared_->pool.acquire(options_.begin_wait);
    if (!s.ok()) {
      last = s.status();
      break;
    }
    if (!(*s)->broken_now()) {
      return std::unique_ptr<Branch>(std::make_unique<PgBranch>(
          shared_, txid, std::move(*s),
          fmt::format("BEGIN ISOLATION LEVEL {}", isolation_sql(options_.isolation))));
    }
    last = error(Code::unavailable, "the pooled PostgreSQL session broke while idle");
    shared_->pool.release(std::move(*s));
  }
  {
    std::lock_guard lock(shared_->mu);
    shared_->active.erase(txid);
  }
  txn_warn(txid, "postgresql branch not begun: {}", last.describe());
  return last;
}

Status PgResource::prepare(std::unique_ptr<Branch> branch, DbError* err) {
  auto* b = dynamic_cast<PgBranch*>(branch.get());
  if (b == nullptr) {
    return no_vote(err, kRefusedByDtx, "not a PostgreSQL branch of this resource",
                   Code::invalid_argument);
  }
  const std::string txid = b->txid();
  std::unique_ptr<PgSession> s = b->take_session();
  if (s == nullptr) {
    return no_vote(err, kRefusedByDtx, "the branch was already rolled back",
                   Code::failed_precondition);
  }
  DbError local;
  DbError& e = err ? *err : local;
  bool sent_prepare = false;

  // Everything up to the yes vote; on any failure the branch is rolled back.
  auto attempt = [&]() -> Status {
    if (b->doomed()) {
      e = b->doom_error();
      return b->doom_status();
    }
    if (Status locked = check_agent_lock(); !locked.ok()) {
      return no_vote(&e, kRefusedByDtx, locked.message(), locked.code());
    }
    // The marker row and PREPARE TRANSACTION in one round trip. The marker
    // is inserted only if (A1) the backend is still the one BEGIN ran on:
    // another backend (a re-opened connection) inserts nothing, is in no
    // transaction, and its PREPARE answers ROLLBACK (A2). Should PREPARE
    // still say PREPARE TRANSACTION without the marker, the vote is no and
    // whatever was prepared is rolled back below (as for a session lost
    // around PREPARE).
    sent_prepare = true;
    bool marked = false;
    Status prepared = s->mark_and_prepare(
        "INSERT INTO dtx_markers (cluster, agent, txid) SELECT $1, $2, $3 "
        "WHERE pg_backend_pid() = $4",
        {options_.cluster_id, options_.agent_name, txid, std::to_string(b->backend_pid())},
        gid(txid), &marked, &e);
    if (!prepared.ok()) return prepared;
    if (!marked || s->broken()) {
      return no_vote(&e, kSessionLost,
                     fmt::format("the branch began on backend {}, and the session no longer "
                                 "reaches it: no marker was written",
                                 b->backend_pid()),
                     Code::unavailable);
    }
    return ok_status();
  };
  Status vote = attempt();

  if (vote.ok()) {
    shared_->pool.release(std::move(s));
    {
      std::lock_guard lock(shared_->mu);
      shared_->active.erase(txid);
      shared_->prepared.insert(txid);
    }
    txn_info(txid, "postgresql branch prepared as '{}': vote yes", gid(txid));
    return ok_status();
  }

  const bool lost_in_prepare = sent_prepare && e.sqlstate == kSessionLost;
  if (!s->broken()) s->rollback_quietly();
  shared_->end_branch(txid, std::move(s));
  if (e.sqlstate == kSessionLost) {
    txn_warn(txid, "postgresql branch votes no, session lost: {}", e.message);
  } else {
    txn_info(txid, "postgresql branch votes no: {} {}", e.sqlstate, e.message);
  }
  if (lost_in_prepare) {
    // The connection broke around PREPARE TRANSACTION, so the transaction
    // may be prepared after all. The vote is no: roll it back if it is
    // there. If that fails too (the server is likely restarting), it is
    // retried (retry_orphans) until it succeeds: nobody else will, as the
    // agent answers this branch as aborted from now on.
    Result<Outcome> cleaned = abort(txid);
    if (!cleaned.ok()) {
      txn_warn(txid, "postgresql: could not check for a half-prepared branch, will retry: {}",
               cleaned.status().describe());
      std::lock_guard lock(shared_->mu);
      shared_->orphans.insert(txid);
    }
  }
  return vote;
}

Result<bool> PgResource::end_read_only(std::unique_ptr<Branch>& branch, DbError* err) {
  auto* b = dynamic_cast<PgBranch*>(branch.get());
  if (b == nullptr || b->doomed() || !b->may_be_read_only() || b->session() == nullptr) {
    return false;
  }
  PgSession& s = *b->session();
  // On the branch's own backend (A1), inside its transaction: NULL means no
  // transaction id was ever assigned, so nothing was written. Any failure
  // here leaves the decision to prepare(), which then votes no.
  DbError e;
  auto r = s.exec("SELECT txid_current_if_assigned() IS NULL, pg_backend_pid() = $1::int",
                  {std::to_string(b->backend_pid())}, &e);
  if (!r.ok() || r->size() != 1 || !(*r)[0][0].as<bool>() || !(*r)[0][1].as<bool>()) {
    return false;
  }
  const std::string txid = b->txid();
  std::unique_ptr<PgSession> session = b->take_session();
  DbError local;
  DbError& out = err ? *err : local;
  Status committed = session->commit_transaction(&out);
  if (!committed.ok() && !session->broken()) session->rollback_quietly();
  shared_->end_branch(txid, std::move(session));
  branch.reset();
  if (!committed.ok()) {
    txn_info(txid, "postgresql read-only branch not committed, votes no: {} {}", out.sqlstate,
             out.message);
    return committed;
  }
  txn_info(txid, "postgresql branch wrote nothing: committed at once, votes read_only");
  return true;
}

Result<Outcome> PgResource::commit_one_phase(std::unique_ptr<Branch> branch, DbError* err) {
  DbError local;
  DbError& e = err ? *err : local;
  auto* b = dynamic_cast<PgBranch*>(branch.get());
  if (b == nullptr) {
    e = DbError{std::string(kRefusedByDtx), "not a PostgreSQL branch of this resource"};
    return Outcome::aborted;
  }
  const std::string txid = b->txid();
  const int pid = b->backend_pid();
  std::unique_ptr<PgSession> s = b->take_session();
  if (s == nullptr) {
    e = DbError{std::string(kRefusedByDtx), "the branch was already rolled back"};
    return Outcome::aborted;
  }
  bool marked = false;
  Status committed = b->doomed() ? b->doom_status() : check_agent_lock();
  if (b->doomed()) e = b->doom_error();
  if (!committed.ok() && !b->doomed()) e = DbError{std::string(kRefusedByDtx), committed.message()};
  if (committed.ok()) {
    // As in prepare(): the marker goes in only on the backend BEGIN ran on (A1).
    committed = s->mark_and_commit(
        "INSERT INTO dtx_markers (cluster, agent, txid) SELECT $1, $2, $3 "
        "WHERE pg_backend_pid() = $4",
        {options_.cluster_id, options_.agent_name, txid, std::to_string(pid)}, &marked, &e);
    if (committed.ok() && !marked) {
      // Another backend answered: the branch's transaction died with its
      // own backend, and nothing was committed.
      committed = no_vote(&e, kSessionLost,
                          fmt::format("the branch began on backend {}, and the session no longer "
                                      "reaches it: nothing committed",
                                      pid),
                          Code::unavailable);
    }
  }
  const bool lost = !committed.ok() && e.sqlstate == kSessionLost && marked == false &&
                    !b->doomed() && s->broken();
  if (!committed.ok() && !s->broken()) s->rollback_quietly();
  shared_->end_branch(txid, std::move(s));
  if (committed.ok()) {
    txn_info(txid, "postgresql branch committed in one phase (marker written)");
    return Outcome::committed;
  }
  if (!lost) {
    txn_info(txid, "postgresql one-phase commit refused, rolled back: {} {}", e.sqlstate,
             e.message);
    return Outcome::aborted;
  }
  {
    std::lock_guard lock(shared_->mu);
    shared_->unsettled[txid] = pid;
  }
  txn_warn(txid, "postgresql one-phase COMMIT lost its answer ({}): settling from the marker",
           e.message);
  return settle_one_phase(txid, pid);
}

Result<Outcome> PgResource::settle_one_phase(const std::string& txid, int backend_pid) {
  // Until the backend that ran the COMMIT is gone, its transaction may still
  // commit: terminate it (it may sit idle, its client never heard of), wait
  // for it to leave, then the marker tells.
  std::optional<Outcome> outcome;
  Status st = with_decision_session([&](PgSession& s) -> Status {
    for (int i = 0; i < 50; ++i) {
      auto r = s.exec(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 "
          "AND application_name = $2",
          {std::to_string(backend_pid), fmt::format("dtx-agent {} branch", options_.agent_name)});
      if (!r.ok()) return error(Code::unavailable, r.status().message());
      if (r->empty()) {
        auto marker = marker_exists(s, txid);
        if (!marker.ok()) return error(Code::unavailable, marker.status().message());
        outcome = *marker ? Outcome::committed : Outcome::aborted;
        return ok_status();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return error(Code::unavailable, fmt::format("backend {} is still there", backend_pid));
  });
  if (!st.ok()) {
    txn_warn(txid, "postgresql one-phase outcome not settled yet: {}", st.describe());
    return error(Code::unavailable, "the one-phase commit's outcome is not settled yet: " +
                                        st.message() + "; ask again");
  }
  {
    std::lock_guard lock(shared_->mu);
    shared_->unsettled.erase(txid);
  }
  txn_info(txid, "postgresql one-phase commit settled by the marker: {}", outcome_name(*outcome));
  return *outcome;
}

Result<bool> PgResource::marker_exists(PgSession& s, const std::string& txid) {
  auto r = s.exec("SELECT 1 FROM dtx_markers WHERE cluster = $1 AND agent = $2 AND txid = $3",
                  {options_.cluster_id, options_.agent_name, txid});
  if (!r.ok()) return r.status();
  return !r->empty();
}

Status PgResource::check_not_active(const std::string& txid) const {
  std::lock_guard lock(shared_->mu);
  if (shared_->active.count(txid)) {
    // Its marker is not visible yet, so any answer now could be contradicted
    // by a yes vote later.
    return error(Code::failed_precondition,
                 "txid " + txid + " has a branch still running here: roll it back or prepare it");
  }
  return ok_status();
}

Result<Outcome> PgResource::decide(const std::string& txid, Outcome wanted) {
  DTX_RETURN_IF_ERROR(pg::check_name("txid", txid));
  DTX_RETURN_IF_ERROR(check_not_active(txid));
  DTX_RETURN_IF_ERROR(check_agent_lock());
  const bool commit = wanted == Outcome::committed;
  const std::string sql =
      fmt::format("{} PREPARED '{}'", commit ? "COMMIT" : "ROLLBACK", gid(txid));
  std::optional<Outcome> outcome;
  bool settled_by_marker = false;
  Status st = with_decision_session([&](PgSession& s) -> Status {
    DbError e;
    auto r = s.exec(sql, {}, &e);
    if (r.ok()) {
      outcome = wanted;
      return ok_status();
    }
    if (e.sqlstate == pg::kOtherDatabase) {
      // gids are server-wide: this one is prepared in another database, by
      // an agent of the same cluster and name there. Not ours to touch;
      // for this database it is "no such prepared transaction".
      auto here =
          s.exec("SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()",
                 {gid(txid)});
      if (!here.ok()) return here.status();
      if (!here->empty()) return error(Code::internal, r.status().message());
      txn_warn(txid, "postgresql: gid '{}' is prepared in another database; left alone", gid(txid));
      e.sqlstate = pg::kUndefinedObject;
    }
    if (e.sqlstate == pg::kUndefinedObject) {
      // Not prepared (any more): the marker tells what happened (A3).
      auto marker = marker_exists(s, txid);
      if (!marker.ok()) return marker.status();
      outcome = *marker ? Outcome::committed : Outcome::aborted;
      settled_by_marker = true;
      return ok_status();
    }
    if (e.sqlstate == kSessionLost || e.sqlstate == pg::kObjectInUse ||
        e.sqlstate == pg::kQueryCanceled) {
      return error(Code::unavailable, r.status().message());
    }
    return error(Code::internal, r.status().message());
  });
  if (!st.ok()) {
    txn_warn(txid, "postgresql {} PREPARED not done, retry later: {}",
             commit ? "COMMIT" : "ROLLBACK", st.describe());
    return st;
  }
  {
    std::lock_guard lock(shared_->mu);
    shared_->prepared.erase(txid);
  }
  if (!settled_by_marker) {
    txn_info(txid, "postgresql branch {}", commit ? "committed" : "rolled back");
  } else if (*outcome == wanted) {
    txn_info(txid, "postgresql branch was already {} (marker {})", outcome_name(*outcome),
             commit ? "present" : "absent");
  } else {
    txn_error(txid,
              "postgresql heuristic outcome: asked to {} but the branch is {} (marker {}); "
              "someone else decided it",
              commit ? "commit" : "abort", outcome_name(*outcome), commit ? "absent" : "present");
  }
  return *outcome;
}

Result<Outcome> PgResource::commit(const std::string& txid) {
  return decide(txid, Outcome::committed);
}

Result<Outcome> PgResource::abort(const std::string& txid) {
  return decide(txid, Outcome::aborted);
}

Result<Outcome> PgResource::outcome_of(const std::string& txid) {
  DTX_RETURN_IF_ERROR(pg::check_name("txid", txid));
  DTX_RETURN_IF_ERROR(check_open());
  DTX_RETURN_IF_ERROR(check_not_active(txid));
  std::optional<int> unsettled;
  {
    std::lock_guard lock(shared_->mu);
    if (auto it = shared_->unsettled.find(txid); it != shared_->unsettled.end())
      unsettled = it->second;
  }
  if (unsettled) return settle_one_phase(txid, *unsettled);
  std::optional<Outcome> outcome;
  Status st = with_decision_session([&](PgSession& s) -> Status {
    auto r = s.exec(
        "SELECT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 "
        "AND database = current_database()), "
        "EXISTS (SELECT 1 FROM dtx_markers WHERE cluster = $2 AND agent = $3 AND txid = $4)",
        {gid(txid), options_.cluster_id, options_.agent_name, txid});
    if (!r.ok()) {
      return error(r.status().code() == Code::invalid_argument ? Code::internal : r.status().code(),
                   r.status().message());
    }
    if ((*r)[0][0].as<bool>()) {
      return error(Code::failed_precondition,
                   "txid " + txid + " is still prepared here: decide it with commit() or abort()");
    }
    outcome = (*r)[0][1].as<bool>() ? Outcome::committed : Outcome::aborted;
    return ok_status();
  });
  if (!st.ok()) return st;
  return *outcome;
}

Status PgResource::with_fence_session(const std::function<Status(PgSession&)>& f) {
  // The fence changes only when a new coordinator leader speaks: its
  // session is idle for long stretches and may have died meanwhile (a
  // server restart). An upsert that never reached the server is simply
  // sent again on a new session; one whose answer was lost may have
  // committed, and sending it again is harmless (it never lowers the row).
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (fence_session_ == nullptr || fence_session_->broken_now()) {
      fence_session_.reset();
      auto s = PgSession::connect(make_session_options(options_, "fence"));
      if (!s.ok()) return s.status();
      // The upsert must be durable when it returns: the server's own
      // synchronous_commit, unless that is off (then local: flushed here).
      auto sc = (*s)->exec(
          "SELECT set_config('synchronous_commit', CASE current_setting('synchronous_commit') "
          "WHEN 'off' THEN 'local' ELSE current_setting('synchronous_commit') END, false)");
      if (!sc.ok()) return sc.status();
      fence_session_ = std::move(*s);
    }
    Status st = f(*fence_session_);
    if (!fence_session_->broken()) return st;
  }
  return error(Code::unavailable, "the PostgreSQL fence session keeps breaking");
}

Result<txn::BallotId> PgResource::load_fence() {
  DTX_RETURN_IF_ERROR(check_open());
  std::lock_guard lock(fence_mu_);
  txn::BallotId b;
  Status st = with_fence_session([&](PgSession& s) -> Status {
    auto r = s.exec("SELECT round, node FROM dtx_fence WHERE cluster = $1 AND agent = $2",
                    {options_.cluster_id, options_.agent_name});
    if (!r.ok()) return r.status();
    if (r->empty()) return ok_status();
    const int64_t round = (*r)[0][0].as<int64_t>(), node = (*r)[0][1].as<int64_t>();
    if (round < 0 || node < 0 ||
        node > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
      return error(Code::corruption,
                   fmt::format("dtx_fence holds ballot {}.{} for agent '{}', which no "
                               "coordinator issues",
                               round, node, options_.agent_name));
    }
    b = txn::BallotId{static_cast<uint64_t>(round), static_cast<uint32_t>(node)};
    return ok_status();
  });
  if (!st.ok()) return st;
  return b;
}

Status PgResource::save_fence(const txn::BallotId& ballot) {
  DTX_RETURN_IF_ERROR(check_open());
  std::lock_guard lock(fence_mu_);
  return with_fence_session([&](PgSession& s) -> Status {
    auto r = s.exec(
        "INSERT INTO dtx_fence AS f (cluster, agent, round, node) "
        "VALUES ($1, $2, $3::bigint, $4::bigint) ON CONFLICT (cluster, agent) DO UPDATE "
        "SET round = EXCLUDED.round, node = EXCLUDED.node "
        "WHERE (f.round, f.node) < (EXCLUDED.round, EXCLUDED.node)",
        {options_.cluster_id, options_.agent_name, std::to_string(ballot.round),
         std::to_string(ballot.node)});
    if (!r.ok()) return r.status();
    spdlog::info("postgresql: agent '{}' stored the fence at ballot {}", options_.agent_name,
                 ballot.describe());
    return ok_status();
  });
}

std::vector<std::string> PgResource::prepared() const {
  std::lock_guard lock(shared_->mu);
  return {shared_->prepared.begin(), shared_->prepared.end()};
}

std::string PgResource::describe() const {
  std::lock_guard lock(describe_mu_);
  return describe_.empty() ? "postgresql (not open)" : describe_;
}

bool PgResource::healthy() {
  if (!open_) return false;
  std::unique_lock lock(control_mu_, std::defer_lock);
  if (!lock.try_lock_for(options_.health_timeout)) return false;
  // A control session found lost by the ping itself is re-opened (and the
  // lock re-taken) once; one that timed out is not waited for again.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!ensure_control().ok()) return false;
    Status st = control_->ping(options_.health_timeout);
    if (st.ok()) return true;
    spdlog::warn("postgresql health check: {}", st.describe());
    if (st.code() != Code::unavailable) return false;
  }
  return false;
}

Status PgResource::forget_markers_before(std::chrono::system_clock::time_point before) {
  DTX_RETURN_IF_ERROR(check_open());
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(before.time_since_epoch()).count();
  // Seconds since the epoch, as decimal text.
  const std::string seconds =
      fmt::format("{}{}.{:06}", us < 0 ? "-" : "", std::abs(us) / 1000000, std::abs(us) % 1000000);
  int64_t deleted = 0;
  Status st = with_decision_session([&](PgSession& s) -> Status {
    auto r = s.exec(
        "DELETE FROM dtx_markers WHERE cluster = $1 AND agent = $2 "
        "AND created_at < to_timestamp($3::double precision)",
        {options_.cluster_id, options_.agent_name, seconds});
    if (!r.ok()) return r.status();
    deleted = static_cast<int64_t>(r->affected_rows());
    return ok_status();
  });
  if (st.ok() && deleted > 0) {
    spdlog::info("postgresql: deleted {} markers of agent '{}' older than {} s since the epoch",
                 deleted, options_.agent_name, seconds);
  }
  return st;
}

Result<uint64_t> PgResource::forget_below(const txn::Txid& watermark) {
  DTX_RETURN_IF_ERROR(check_open());
  if (watermark.cluster != options_.cluster_id) return uint64_t{0};
  uint64_t deleted = 0;
  // Markers of txids in the canonical form (txn/txid.h) whose (round, node,
  // seq) is below the watermark's. Markers of branches still prepared are
  // not visible to this statement (their insert is not committed), so they
  // are neither deleted nor waited for.
  Status st = with_decision_session([&](PgSession& s) -> Status {
    auto r = s.exec(
        "DELETE FROM dtx_markers WHERE cluster = $1 AND agent = $2 "
        "AND txid ~ '^[A-Za-z0-9_-]+[.][0-9]+[.][0-9]+[.][0-9]+$' "
        "AND (split_part(txid, '.', 2)::numeric, split_part(txid, '.', 3)::numeric, "
        "split_part(txid, '.', 4)::numeric) < ($3::numeric, $4::numeric, $5::numeric)",
        {options_.cluster_id, options_.agent_name, std::to_string(watermark.round),
         std::to_string(watermark.node), std::to_string(watermark.seq)});
    if (!r.ok()) return r.status();
    deleted = static_cast<uint64_t>(r->affected_rows());
    return ok_status();
  });
  if (!st.ok()) return st;
  if (deleted > 0) {
    spdlog::debug("postgresql: deleted {} markers of agent '{}' below the watermark {}", deleted,
                  options_.agent_name, watermark.str());
  }
  return deleted;
}

Status PgResource::forget_old_markers() {
  if (options_.marker_retention.count() <= 0) return ok_status();
  return forget_markers_before(std::chrono::system_clock::now() - options_.marker_retention);
}

}  // namespace dtx::participant
