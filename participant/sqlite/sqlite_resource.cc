#include "participant/sqlite/sqlite_resource.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "common/logging.h"
#include "participant/sqlite/sqlite_branch.h"
#include "participant/sqlite/sqlite_changeset.h"
#include "participant/sqlite/sqlite_wal_records.h"

namespace dtx::participant::sqlite {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kCreateMarkers =
    "CREATE TABLE IF NOT EXISTS main.dtx_markers("
    "txid TEXT PRIMARY KEY, created_at INTEGER NOT NULL)";
constexpr std::string_view kMarkerTable = "dtx_markers";

// Room for a PREPARED record's txid and lengths besides redo and undo.
constexpr uint32_t kPreparedOverheadBytes = 2 + kTxidBytesMax + 4 + 4 + 8;

std::span<const uint8_t> bytes_of(const std::vector<uint8_t>& v) {
  return {v.data(), v.size()};
}

// What PRAGMA foreign_key_check reports, one string per violation.
Result<std::set<std::string>> fk_violations(sqlite3* db) {
  auto stmt = prepare_internal(db, "PRAGMA main.foreign_key_check");
  if (!stmt.ok()) return stmt.status();
  std::set<std::string> out;
  int rc;
  while ((rc = sqlite3_step(stmt->get())) == SQLITE_ROW) {
    std::string v;
    for (int c = 0; c < 4; ++c)
      v += (c ? " " : "") + render_value(stored_column(stmt->get(), c));
    out.insert(std::move(v));
  }
  if (rc != SQLITE_DONE) return error(Code::io_error, "sqlite: " + describe_last_error(db));
  return out;
}

// Whether the transaction on db holds the marker row of txid.
Result<bool> has_marker(sqlite3* db, const std::string& txid) {
  auto stmt = prepare_internal(db, "SELECT 1 FROM main.dtx_markers WHERE txid = ?1");
  if (!stmt.ok()) return stmt.status();
  sqlite3_bind_text64(stmt->get(), 1, txid.data(), txid.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  int rc = sqlite3_step(stmt->get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return error(Code::io_error, "sqlite: marker lookup: " + describe_last_error(db));
  }
  return rc == SQLITE_ROW;
}

bool is_marker_of(const Change& c, const std::string& txid) {
  if (c.table != kMarkerTable || c.op != SQLITE_INSERT) return false;
  auto key = c.key();
  return key.size() == 1 && key[0].type == SQLITE_TEXT && key[0].bytes == txid;
}

Status no_vote(const std::string& txid, Code code, const DbError& e) {
  logging::txn_warn(txid, "prepare: votes no: {}: {}", e.sqlstate, e.message);
  return error(code, fmt::format("txid={} votes no: {}: {}", txid, e.sqlstate, e.message));
}

}  // namespace

SqliteResource::SqliteResource(SqliteOptions options) : opt_(std::move(options)) {}

SqliteResource::~SqliteResource() {
  if (wal_) flush_decisions();  // best effort; the log's close syncs them
  // The held branch's transaction ends with its connection: SQLite rolls an
  // open transaction back on close, and the PREPARED record keeps it.
  std::lock_guard lk(mu_);
  held_.reset();
  queued_.clear();
}

std::string SqliteResource::describe() const {
  return "sqlite " + opt_.db_path;
}

wal::Options SqliteResource::wal_options(const SqliteOptions& o) {
  wal::Options w;
  w.dir = o.wal_dir;
  w.fs = o.wal_fs;
  w.segment_bytes = o.wal_segment_bytes;
  w.record_payload_bytes_max = o.changeset_bytes_max + kPreparedOverheadBytes;
  w.buffer_bytes = w.record_payload_bytes_max + wal::kBatchHeaderBytes + wal::kRecordHeaderBytes;
  w.on_fatal = o.on_fatal;  // empty: the WAL's default, log and abort (W5)
  return w;
}

void SqliteResource::hook(std::string_view point, const std::string& txid) {
  if (opt_.test_hook) opt_.test_hook(point, txid);
}

void SqliteResource::fail(const Status& s) {
  {
    std::lock_guard lk(mu_);
    if (!failed_.ok()) return;
    failed_ = s;
    writer_cv_.notify_all();
  }
  spdlog::critical("sqlite {}: {}; the resource stops", opt_.db_path, s.describe());
  if (opt_.on_fatal) {
    opt_.on_fatal(s);
  } else {
    std::abort();
  }
}

Status SqliteResource::check_usable() const {
  if (!opened_) return error(Code::failed_precondition, describe() + " is not open");
  if (!failed_.ok()) return error(Code::closed, describe() + " failed: " + failed_.message());
  return ok_status();
}

bool SqliteResource::writer_taken() const {
  return !active_txid_.empty() || held_.has_value() || !queued_.empty();
}

// ---------------------------------------------------------------------------
// open and recovery

Status SqliteResource::configure_writer() {
  sqlite3* db = writer_.get();
  auto mode = query_text(db, "PRAGMA main.journal_mode=WAL");
  if (!mode.ok()) return mode.status();
  if (*mode != "wal") {
    return error(Code::failed_precondition,
                 "sqlite " + opt_.db_path + ": journal_mode stays '" + *mode + "', not 'wal'");
  }
  DTX_RETURN_IF_ERROR(exec_simple(db, "PRAGMA main.synchronous=FULL"));
  // Durability preconditions (design review C7): read back what was set.
  auto sync = query_text(db, "PRAGMA main.synchronous");
  if (!sync.ok()) return sync.status();
  if (*sync != "2") {
    const std::string what = "sqlite " + opt_.db_path + ": synchronous is " + *sync +
                             ", not FULL (2): a commit may be lost";
    if (!opt_.unsafe_no_fsync) return error(Code::failed_precondition, what);
    spdlog::warn("UNSAFE: {} (--unsafe-no-fsync)", what);
  }
  DTX_RETURN_IF_ERROR(
      exec_simple(db, opt_.foreign_keys ? "PRAGMA foreign_keys=ON" : "PRAGMA foreign_keys=OFF"));
  DTX_RETURN_IF_ERROR(register_txid_below(db));
  return exec_simple(db, kCreateMarkers);
}

namespace {

// dtx_txid_below(txid, cluster, round, node, seq): 1 if txid is a canonical
// txid of `cluster` below (round, node, seq) (txn/txid.h), else 0.
void txid_below_fn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  (void)argc;
  const unsigned char* text = sqlite3_value_text(argv[0]);
  const unsigned char* cluster = sqlite3_value_text(argv[1]);
  int below = 0;
  if (text && cluster) {
    auto t = txn::Txid::parse(reinterpret_cast<const char*>(text));
    if (t.ok() && t->cluster == reinterpret_cast<const char*>(cluster)) {
      txn::Txid w(t->cluster,
                  txn::BallotId{static_cast<uint64_t>(sqlite3_value_int64(argv[2])),
                                static_cast<uint32_t>(sqlite3_value_int64(argv[3]))},
                  static_cast<uint64_t>(sqlite3_value_int64(argv[4])));
      below = *t < w ? 1 : 0;
    }
  }
  sqlite3_result_int(ctx, below);
}

}  // namespace

Status SqliteResource::register_txid_below(sqlite3* db) {
  const int rc = sqlite3_create_function(db, "dtx_txid_below", 5,
                                         SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY,
                                         nullptr, txid_below_fn, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return error(Code::internal, "sqlite3_create_function: " + result_code_name(rc));
  }
  return ok_status();
}

Result<uint64_t> SqliteResource::forget_below(const txn::Txid& watermark) {
  {
    // The write lock, between branches; never long: a busy database drops
    // its markers at a later upkeep.
    std::unique_lock lk(mu_);
    DTX_RETURN_IF_ERROR(check_usable());
    if (!writer_cv_.wait_for(lk, std::chrono::milliseconds(200),
                             [&] { return !writer_taken() || !failed_.ok(); })) {
      return error(Code::busy, "the write lock stayed taken: markers are dropped later");
    }
    DTX_RETURN_IF_ERROR(check_usable());
    active_txid_ = "dtx:forget-markers";
  }
  sqlite3* db = writer_.get();
  sqlite3_busy_timeout(db, 1000);
  auto fail_with = [&](const std::string& what) -> Status {
    (void)exec_simple(db, "ROLLBACK");
    release_writer();
    return error(Code::io_error, "dropping markers below " + watermark.str() + ": " + what);
  };
  // A marker is the proof of a commit whose COMMITTED record may still wait
  // in memory for the next PREPARED record's fdatasync (append_decision).
  // Once the marker is gone only that record says the branch committed, so
  // every pending decision is made durable first: otherwise a crash before
  // the next prepare finds a PREPARED record with neither marker nor
  // decision, and recovery would redo a committed branch.
  flush_decisions();
  if (const uint64_t last = wal_->next_lsn() - 1; last > wal_->durable_lsn()) {
    if (Status s = wal_->wait_durable(last); !s.ok()) {
      release_writer();
      return error(Code::io_error, "dropping markers below " + watermark.str() +
                                       ": the agent WAL cannot be synced: " + s.describe());
    }
  }
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail_with(describe_last_error(db));
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "DELETE FROM dtx_markers WHERE dtx_txid_below(txid, ?1, ?2, ?3, ?4)",
                         -1, &st, nullptr) != SQLITE_OK) {
    return fail_with(describe_last_error(db));
  }
  sqlite3_bind_text(st, 1, watermark.cluster.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, static_cast<int64_t>(watermark.round));
  sqlite3_bind_int64(st, 3, static_cast<int64_t>(watermark.node));
  sqlite3_bind_int64(st, 4, static_cast<int64_t>(watermark.seq));
  const int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return fail_with(describe_last_error(db));
  const uint64_t n = static_cast<uint64_t>(sqlite3_changes(db));
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail_with(describe_last_error(db));
  }
  release_writer();
  return n;
}

Result<std::vector<std::string>> SqliteResource::open() {
  {
    std::lock_guard lk(mu_);
    if (opened_ || db_lock_) return error(Code::failed_precondition, describe() + " is open");
  }
  if (opt_.db_path.empty() || opt_.wal_dir.empty()) {
    return error(Code::invalid_argument, "sqlite: db_path and wal_dir are required");
  }
  if (opt_.busy_wait.count() <= 0 || opt_.changeset_bytes_max == 0 ||
      opt_.wal_segment_bytes < wal::kSegmentHeaderBytes + wal_options(opt_).buffer_bytes) {
    return error(Code::invalid_argument,
                 "sqlite: busy_wait and changeset_bytes_max must be positive, and "
                 "wal_segment_bytes must hold a largest record");
  }
  std::vector<std::string> in_doubt;
  Status s = [&]() -> Status {
    const std::string lock_path = opt_.db_path + ".dtx-lock";
    auto lock = posix_file_system().lock(lock_path);
    if (!lock.ok()) {
      return error(lock.status().code(),
                   fmt::format("sqlite {}: another dtx agent serves this database (cannot lock "
                               "{}: {})",
                               opt_.db_path, lock_path, lock.status().message()));
    }
    db_lock_ = std::move(*lock);
    auto log = wal::SegmentedLog::open(wal_options(opt_));
    if (!log.ok()) {
      return error(log.status().code(), "sqlite " + opt_.db_path + ": agent WAL " + opt_.wal_dir +
                                            ": " + log.status().message());
    }
    wal_ = std::move(*log);
    auto writer = open_connection(opt_.db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!writer.ok()) return writer.status();
    writer_ = std::move(*writer);
    DTX_RETURN_IF_ERROR(configure_writer());
    auto reader = open_connection(opt_.db_path, SQLITE_OPEN_READWRITE);
    if (!reader.ok()) return reader.status();
    reader_ = std::move(*reader);
    DTX_RETURN_IF_ERROR(exec_simple(reader_.get(), "PRAGMA query_only=ON"));
    return recover(&in_doubt);
  }();
  if (!s.ok()) {
    // Leave nothing locked: the operator may retry, another process may open.
    std::lock_guard lk(mu_);
    held_.reset();
    queued_.clear();
    undecided_.clear();
    reader_.reset();
    writer_.reset();
    wal_.reset();
    db_lock_.reset();
    return s;
  }
  {
    std::lock_guard lk(mu_);
    opened_ = true;
  }
  maybe_truncate();
  spdlog::info("sqlite {}: open, agent WAL {}, {} branch(es) in doubt", opt_.db_path, opt_.wal_dir,
               in_doubt.size());
  return in_doubt;
}

Status SqliteResource::recover(std::vector<std::string>* in_doubt) {
  struct Pending {
    uint64_t lsn;
    std::vector<uint8_t> redo;
  };
  std::map<std::string, Pending> undecided;
  auto reader = wal_->read_from(wal_->first_lsn());
  if (!reader.ok()) return reader.status();
  for (;;) {
    auto next = (*reader)->next();
    if (!next.ok()) return next.status();
    if (!next->has_value()) break;
    const wal::Record& r = **next;
    auto rec = decode_record(r.lsn, r.type, r.payload);
    if (!rec.ok()) {
      return error(Code::corruption, "agent WAL " + opt_.wal_dir + ": " + rec.status().message());
    }
    if (rec->type == RecordType::fence) {
      // Appended only higher (copies are equal): the last one is the fence.
      std::lock_guard lk(mu_);
      if (fence_ < rec->ballot) fence_ = rec->ballot;
      fence_lsn_ = rec->lsn;
    } else if (rec->type == RecordType::prepared) {
      undecided[rec->txid] = Pending{rec->lsn, std::move(rec->redo)};
    } else {
      undecided.erase(rec->txid);
    }
  }
  reader->reset();

  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [txid, p] : undecided)
    order.emplace_back(p.lsn, txid);
  std::sort(order.begin(), order.end());
  std::vector<std::string> doubtful;
  for (const auto& [lsn, txid] : order) {
    auto marker = marker_exists(txid);
    if (!marker.ok()) return marker.status();
    if (*marker) {
      logging::txn_info(txid, "recovery: marker present, the branch committed before the crash");
      append_decision(RecordType::committed, txid);
    } else {
      doubtful.push_back(txid);
    }
  }
  for (const auto& txid : doubtful) {
    Pending& p = undecided[txid];
    if (in_doubt->empty()) {
      auto held = redo(txid, p.redo);
      if (!held.ok()) return held.status();
      std::lock_guard lk(mu_);
      held_ = std::move(*held);
    } else {
      logging::txn_warn(txid,
                        "recovery: also in doubt; redone and held after {} is decided (one "
                        "writer)",
                        in_doubt->back());
      std::lock_guard lk(mu_);
      queued_.push_back(Queued{txid, std::move(p.redo)});
    }
    std::lock_guard lk(mu_);
    undecided_[txid] = p.lsn;
    in_doubt->push_back(txid);
  }
  return ok_status();
}

Result<SqliteResource::Held> SqliteResource::redo(const std::string& txid,
                                                  const std::vector<uint8_t>& redo) {
  auto conn = open_connection(opt_.db_path, SQLITE_OPEN_READWRITE);
  if (!conn.ok()) return conn.status();
  sqlite3* db = conn->get();
  // The changeset already holds every row the branch's triggers and
  // foreign-key actions changed; firing them again would change more.
  int triggers = 1;
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, &triggers);
  if (triggers != 0) return error(Code::internal, "sqlite: cannot disable triggers");
  DTX_RETURN_IF_ERROR(exec_simple(db, "PRAGMA foreign_keys=OFF"));
  DTX_RETURN_IF_ERROR(exec_simple(db, "PRAGMA main.synchronous=FULL"));
  sqlite3_busy_timeout(db, static_cast<int>(opt_.busy_wait.count()));
  if (Status s = exec_simple(db, "BEGIN IMMEDIATE"); !s.ok()) {
    return error(Code::busy, "txid=" + txid + ": recovery: " + s.message());
  }
  auto conflict_error = [&](const std::string& what) {
    (void)exec_simple(db, "ROLLBACK");
    logging::txn_error(txid,
                       "recovery: the redo conflicts with the database ({}): heuristic hazard; "
                       "nothing changed, the branch stays in doubt for an operator",
                       what);
    return error(Code::failed_precondition,
                 fmt::format("txid={}: the redo of this prepared branch conflicts with {} ({}): "
                             "someone changed those rows while the agent was down. Nothing was "
                             "changed; the branch stays in doubt in the agent WAL {}. Inspect it "
                             "(describe_prepared), repair the data, then settle it "
                             "(resolve_by_operator) before the agent can start",
                             txid, opt_.db_path, what, opt_.wal_dir));
  };
  std::set<std::string> fk_before;
  if (opt_.foreign_keys) {
    auto v = fk_violations(db);
    if (!v.ok()) return v.status();
    fk_before = std::move(*v);
  }
  std::string conflict;
  if (Status s = apply_strict(db, bytes_of(redo), &conflict); !s.ok()) {
    if (s.code() == Code::failed_precondition) return conflict_error(conflict);
    (void)exec_simple(db, "ROLLBACK");
    return error(s.code(), "txid=" + txid + ": recovery: " + s.message());
  }
  if (opt_.foreign_keys) {
    auto after = fk_violations(db);
    if (!after.ok()) return after.status();
    for (const auto& v : *after) {
      if (!fk_before.contains(v)) {
        return conflict_error("foreign key violation (table rowid parent fkid): " + v);
      }
    }
  }
  auto marker = has_marker(db, txid);
  if (!marker.ok() || !*marker) {
    (void)exec_simple(db, "ROLLBACK");
    return error(Code::corruption, "txid=" + txid + ": the recorded redo holds no marker row");
  }
  logging::txn_info(txid, "recovery: redo applied ({} bytes); held prepared until decided",
                    redo.size());
  Held h;
  h.txid = txid;
  h.db = db;
  h.owned = std::move(*conn);
  return h;
}

Result<bool> SqliteResource::marker_exists(const std::string& txid) {
  std::lock_guard lk(reader_mu_);
  return has_marker(reader_.get(), txid);
}

// ---------------------------------------------------------------------------
// Branches

Result<std::unique_ptr<Branch>> SqliteResource::begin(const std::string& txid) {
  if (txid.empty() || txid.size() > kTxidBytesMax) {
    return error(Code::invalid_argument,
                 fmt::format("txid must be 1..{} bytes, not {}", kTxidBytesMax, txid.size()));
  }
  const auto deadline = Clock::now() + opt_.busy_wait;
  {
    std::unique_lock lk(mu_);
    DTX_RETURN_IF_ERROR(check_usable());
    if (undecided_.contains(txid) || active_txid_ == txid) {
      return error(Code::failed_precondition, "txid=" + txid + " already has a branch here");
    }
    if (!writer_cv_.wait_until(lk, deadline, [&] { return !writer_taken() || !failed_.ok(); })) {
      const std::string holder = !active_txid_.empty() ? active_txid_
                                 : held_               ? held_->txid
                                                       : queued_.front().txid;
      return error(Code::busy,
                   fmt::format("txid={}: SQLite has one writer and branch {} held it for the "
                               "whole busy wait ({} ms)",
                               txid, holder, opt_.busy_wait.count()));
    }
    DTX_RETURN_IF_ERROR(check_usable());
    active_txid_ = txid;
  }
  sqlite3* db = writer_.get();
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  sqlite3_busy_timeout(db, static_cast<int>(std::max<int64_t>(left.count(), 1)));
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    const int code = sqlite3_extended_errcode(db) & 0xff;
    std::string what = describe_last_error(db);
    release_writer();
    return error(code == SQLITE_BUSY || code == SQLITE_LOCKED ? Code::busy : Code::io_error,
                 "txid=" + txid + ": BEGIN IMMEDIATE: " + what);
  }
  sqlite3_session* session = nullptr;
  int rc = sqlite3session_create(db, "main", &session);
  if (rc == SQLITE_OK) rc = sqlite3session_attach(session, nullptr);
  if (rc != SQLITE_OK) {
    if (session) sqlite3session_delete(session);
    (void)exec_simple(db, "ROLLBACK");
    release_writer();
    return error(Code::internal, "txid=" + txid + ": sqlite3session: " + result_code_name(rc));
  }
  logging::txn_debug(txid, "begin: BEGIN IMMEDIATE on {}", opt_.db_path);
  return std::unique_ptr<Branch>(std::make_unique<SqliteBranch>(
      this, txid, db, session, opt_.branch_rows_max, opt_.result_rows_max));
}

void SqliteResource::release_writer() {
  std::lock_guard lk(mu_);
  active_txid_.clear();
  writer_cv_.notify_all();
}

Result<bool> SqliteResource::end_read_only(std::unique_ptr<Branch>& branch, DbError* err) {
  auto* b = dynamic_cast<SqliteBranch*>(branch.get());
  if (b == nullptr || b->owner() != this || !b->wrote_nothing()) return false;
  {
    std::lock_guard lk(mu_);
    if (!failed_.ok()) return false;  // prepare() votes no
  }
  const std::string txid = b->txid();
  Status s = b->finish_read_only();
  branch.reset();
  if (!s.ok()) {
    if (err) *err = DbError{std::string(kPrepareFailed), s.message()};
    return no_vote(txid, Code::failed_precondition,
                   DbError{std::string(kPrepareFailed), s.message()});
  }
  return true;
}

Status SqliteResource::insert_marker(sqlite3* db, const std::string& txid, DbError* err) {
  auto ins = prepare_internal(db, "INSERT INTO main.dtx_markers(txid, created_at) VALUES(?1, ?2)");
  if (!ins.ok()) {
    *err = DbError{std::string(kPrepareFailed), ins.status().message()};
    return ins.status();
  }
  sqlite3_bind_text64(ins->get(), 1, txid.data(), txid.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  sqlite3_bind_int64(ins->get(), 2, unix_now_ms());
  if (sqlite3_step(ins->get()) != SQLITE_DONE) {
    *err = last_error(db);
    return error(Code::failed_precondition, err->sqlstate + ": " + err->message);
  }
  return ok_status();
}

Result<Outcome> SqliteResource::commit_one_phase(std::unique_ptr<Branch> branch, DbError* err) {
  DbError ignored;
  if (err == nullptr) err = &ignored;
  auto* b = dynamic_cast<SqliteBranch*>(branch.get());
  if (b == nullptr || b->owner() != this) {
    *err = DbError{std::string(kRefusedByDtx), "not a branch of " + describe()};
    return Outcome::aborted;
  }
  const std::string txid = b->txid();
  auto aborted = [&](DbError e) {
    *err = std::move(e);
    b->rollback();
    logging::txn_info(txid, "one-phase commit: aborted: {}: {}", err->sqlstate, err->message);
    return Outcome::aborted;
  };
  if (!b->active()) {
    return aborted(DbError{std::string(kRefusedByDtx), "the branch is no longer active"});
  }
  if (b->doomed()) return aborted(b->doom_error());
  {
    std::lock_guard lk(mu_);
    if (!failed_.ok()) return aborted(DbError{std::string(kPrepareFailed), failed_.message()});
  }
  // The marker row, in the branch's own transaction: present means committed.
  if (DbError e; !insert_marker(b->db(), txid, &e).ok()) return aborted(std::move(e));
  Status s = b->finish_commit(err);
  if (s.code() == Code::failed_precondition) return Outcome::aborted;  // rolled back
  if (!s.ok()) return s;  // unknown until the restart: the marker tells
  hook("one_phase_committed", txid);
  logging::txn_info(txid, "committed in one phase (marker written, no agent WAL record)");
  return Outcome::committed;
}

Status SqliteResource::prepare(std::unique_ptr<Branch> branch, DbError* err) {
  DbError ignored;
  if (err == nullptr) err = &ignored;
  auto* b = dynamic_cast<SqliteBranch*>(branch.get());
  if (b == nullptr || b->owner() != this) {
    *err = DbError{std::string(kPrepareFailed), "not a branch of " + describe()};
    return error(Code::invalid_argument, err->message);
  }
  const std::string txid = b->txid();
  auto no = [&](Code code, DbError e) {
    *err = std::move(e);
    b->rollback();
    return no_vote(txid, code, *err);
  };
  auto dtx_no = [&](Code code, std::string_view sqlstate, std::string message) {
    return no(code, DbError{std::string(sqlstate), std::move(message)});
  };
  if (!b->active()) {
    return dtx_no(Code::failed_precondition, kRefusedByDtx, "the branch is no longer active");
  }
  if (b->doomed()) return no(Code::failed_precondition, b->doom_error());
  {
    std::lock_guard lk(mu_);
    if (!failed_.ok()) return dtx_no(Code::closed, kPrepareFailed, failed_.message());
  }
  sqlite3* db = b->db();

  // The marker row (A3/A5): present after a crash means committed.
  if (DbError e; !insert_marker(db, txid, &e).ok()) return no(Code::failed_precondition, e);
  // COMMIT checks deferred foreign keys; after a yes vote it must not fail.
  int deferred = 0, highwater = 0;
  sqlite3_db_status(db, SQLITE_DBSTATUS_DEFERRED_FKS, &deferred, &highwater, 0);
  if (deferred != 0) {
    return no(Code::failed_precondition,
              DbError{"SQLITE_CONSTRAINT_FOREIGNKEY",
                      "deferred foreign key constraints are violated: COMMIT would fail"});
  }

  auto redo = b->take_changeset();
  if (!redo.ok()) return dtx_no(Code::internal, kPrepareFailed, redo.status().message());
  auto changes = decode_changeset(bytes_of(*redo));
  if (!changes.ok()) return dtx_no(Code::internal, kPrepareFailed, changes.status().message());
  if (std::none_of(changes->begin(), changes->end(),
                   [&](const Change& c) { return is_marker_of(c, txid); })) {
    return dtx_no(Code::internal, kPrepareFailed,
                  "the changeset lacks the marker row: changes escaped the session");
  }
  if (b->tracker().overflowed()) {
    return dtx_no(Code::failed_precondition, kRefusedByDtx,
                  fmt::format("the branch changed more than {} rows", opt_.branch_rows_max));
  }
  {
    std::lock_guard lk(reader_mu_);
    auto missing = check_complete(db, reader_.get(), b->tracker(), *changes);
    if (!missing.ok()) return dtx_no(Code::internal, kPrepareFailed, missing.status().message());
    if (!missing->empty()) return dtx_no(Code::failed_precondition, kRefusedByDtx, *missing);
  }
  auto undo = invert_changeset(bytes_of(*redo));
  if (!undo.ok()) return dtx_no(Code::internal, kPrepareFailed, undo.status().message());
  if (redo->size() + undo->size() > opt_.changeset_bytes_max) {
    return dtx_no(Code::failed_precondition, kPrepareFailed,
                  fmt::format("the branch's redo and undo take {} bytes, more than the {} one "
                              "agent WAL record may hold",
                              redo->size() + undo->size(), opt_.changeset_bytes_max));
  }

  // Durable before the yes vote (with the decisions made since the last one).
  flush_decisions();
  auto payload = encode_prepared(txid, bytes_of(*redo), bytes_of(*undo), unix_now_ms());
  // append_sync: with no other appender around, this thread writes and
  // syncs the batch itself, without a hand-off to the flusher and back.
  auto lsn = wal_->append_sync(static_cast<uint16_t>(RecordType::prepared), payload);
  Status durable = lsn.ok() ? ok_status() : lsn.status();
  if (!durable.ok()) {
    {
      std::lock_guard lk(mu_);
      if (failed_.ok()) failed_ = durable;  // the WAL ran on_fatal itself
    }
    return dtx_no(durable.code(), kPrepareFailed, "agent WAL: " + durable.message());
  }
  hook("prepared_durable", txid);
  b->hand_over();
  {
    std::lock_guard lk(mu_);
    held_ = Held{txid, writer_.get(), nullptr};
    active_txid_.clear();
    undecided_[txid] = *lsn;
  }
  logging::txn_info(txid, "prepared: {} change(s), redo {} bytes, undo {} bytes, WAL lsn {}",
                    changes->size(), redo->size(), undo->size(), *lsn);
  return ok_status();
}

// ---------------------------------------------------------------------------
// Decisions

Result<Outcome> SqliteResource::commit(const std::string& txid) {
  return decide(txid, true);
}

Result<Outcome> SqliteResource::abort(const std::string& txid) {
  return decide(txid, false);
}

Result<Outcome> SqliteResource::decide(const std::string& txid, bool commit) {
  std::lock_guard decide_lock(decide_mu_);
  sqlite3* db = nullptr;
  {
    std::unique_lock lk(mu_);
    DTX_RETURN_IF_ERROR(check_usable());
    if (held_ && held_->txid == txid) {
      db = held_->db;
    } else if (auto q = std::find_if(queued_.begin(), queued_.end(),
                                     [&](const Queued& x) { return x.txid == txid; });
               q != queued_.end()) {
      if (commit) {
        return error(Code::busy, fmt::format("txid={}: waits for {} to be decided first (SQLite "
                                             "has one writer)",
                                             txid, held_ ? held_->txid : queued_.front().txid));
      }
      queued_.erase(q);
      undecided_.erase(txid);
      lk.unlock();
      append_decision(RecordType::aborted, txid);
      logging::txn_info(txid, "aborted before its redo was applied");
      maybe_truncate();
      return Outcome::aborted;
    } else if (active_txid_ == txid) {
      return error(Code::failed_precondition,
                   "txid=" + txid + ": the branch is active; roll it back through its Branch");
    }
  }
  if (db == nullptr) {
    // Not held here (decided already, or never prepared): the database says.
    auto marker = marker_exists(txid);
    if (!marker.ok()) return marker.status();
    return *marker ? Outcome::committed : Outcome::aborted;
  }
  if (Status s = exec_simple(db, commit ? "COMMIT" : "ROLLBACK"); !s.ok()) {
    // The branch stays PREPARED in the WAL; recovery redoes it after restart.
    Status f = error(Code::io_error, "txid=" + txid + ": " + s.message());
    fail(f);
    return f;
  }
  hook(commit ? "db_committed" : "db_rolled_back", txid);
  append_decision(commit ? RecordType::committed : RecordType::aborted, txid);
  logging::txn_info(txid, "{}", commit ? "committed" : "aborted");
  after_decision(txid);
  return commit ? Outcome::committed : Outcome::aborted;
}

void SqliteResource::after_decision(const std::string& txid) {
  {
    std::lock_guard lk(mu_);
    undecided_.erase(txid);
    held_.reset();
  }
  // A recovered branch waiting for the write lock gets it before any new one.
  std::optional<Queued> next;
  {
    std::lock_guard lk(mu_);
    if (!queued_.empty() && failed_.ok()) next = queued_.front();
  }
  if (next) {
    auto held = redo(next->txid, next->redo);
    if (held.ok()) {
      std::lock_guard lk(mu_);
      queued_.pop_front();
      held_ = std::move(*held);
    } else {
      fail(held.status());
    }
  }
  {
    std::lock_guard lk(mu_);
    writer_cv_.notify_all();
  }
  maybe_truncate();
}

// A decision record is only bookkeeping: the marker row proves a commit, and
// a rolled-back branch left nothing. Losing one in a crash costs a recovery
// check (marker present: committed; absent: redo, hold, ask), never a wrong
// outcome. So it is not given an fdatasync of its own: it is appended just
// before the next PREPARED record, whose fdatasync covers it. That keeps the
// order recovery relies on: a later branch's durable PREPARED implies every
// earlier decision is durable, so a later branch's changes never meet an
// undecided earlier branch's redo.
void SqliteResource::append_decision(RecordType type, const std::string& txid) {
  std::lock_guard lk(mu_);
  pending_decisions_.emplace_back(type, txid);
}

void SqliteResource::flush_decisions() {
  std::vector<std::pair<RecordType, std::string>> pending;
  {
    std::lock_guard lk(mu_);
    pending.swap(pending_decisions_);
  }
  for (const auto& [type, txid] : pending) {
    auto lsn = wal_->append(static_cast<uint16_t>(type), encode_decided(txid));
    if (!lsn.ok()) {
      logging::txn_error(txid, "agent WAL: cannot append {}: {}", record_type_name(type),
                         lsn.status().describe());
      std::lock_guard lk(mu_);
      if (failed_.ok()) failed_ = lsn.status();
    }
  }
}

void SqliteResource::maybe_truncate() {
  uint64_t keep_from;
  bool copy_fence = false;
  txn::BallotId fence;
  {
    std::lock_guard lk(mu_);
    // A branch being prepared may have appended a PREPARED record not yet
    // listed in undecided_: truncate later.
    if (!active_txid_.empty() || !failed_.ok() || !wal_) return;
    keep_from = wal_->next_lsn();
    for (const auto& [txid, lsn] : undecided_)
      keep_from = std::min(keep_from, lsn);
    // The FENCE record is kept: truncation stops at it. So that it does not
    // pin the log's head for ever, it is copied forward once the log has
    // grown half a segment past it; the old one may go once the copy is
    // durable (the copy is appended without waiting: the flusher syncs it).
    if (fence_copy_lsn_ != 0 && wal_->durable_lsn() >= fence_copy_lsn_) {
      fence_lsn_ = fence_copy_lsn_;
      fence_copy_lsn_ = 0;
      fence_bytes_at_ = wal_->stats().bytes;
    }
    if (fence_lsn_ != 0) {
      copy_fence = fence_copy_lsn_ == 0 && fence_lsn_ < keep_from &&
                   wal_->stats().bytes - fence_bytes_at_ >= opt_.wal_segment_bytes / 2;
      keep_from = std::min(keep_from, fence_lsn_);
      fence = fence_;
    }
  }
  if (copy_fence) {
    auto lsn = wal_->append(static_cast<uint16_t>(RecordType::fence), encode_fence(fence));
    if (lsn.ok()) {
      std::lock_guard lk(mu_);
      fence_copy_lsn_ = *lsn;
    }
  }
  if (Status s = wal_->truncate_prefix(keep_from); !s.ok()) {
    spdlog::warn("sqlite {}: agent WAL truncation: {}", opt_.db_path, s.describe());
  }
}

Result<Outcome> SqliteResource::outcome_of(const std::string& txid) {
  {
    std::lock_guard lk(mu_);
    DTX_RETURN_IF_ERROR(check_usable());
    if (undecided_.contains(txid)) {
      return error(Code::failed_precondition,
                   "txid=" + txid + " is prepared here: decide it with commit() or abort()");
    }
  }
  auto marker = marker_exists(txid);
  if (!marker.ok()) return marker.status();
  return *marker ? Outcome::committed : Outcome::aborted;
}

Result<txn::BallotId> SqliteResource::load_fence() {
  std::lock_guard lk(mu_);
  DTX_RETURN_IF_ERROR(check_usable());
  return fence_;  // read from the agent WAL by recover()
}

Status SqliteResource::save_fence(const txn::BallotId& ballot) {
  {
    std::lock_guard lk(mu_);
    DTX_RETURN_IF_ERROR(check_usable());
    if (!(fence_ < ballot)) return ok_status();
  }
  // In the agent WAL, not the database: SQLite's write lock may be held by
  // a prepared branch for as long as its decision takes.
  auto lsn = wal_->append_sync(static_cast<uint16_t>(RecordType::fence), encode_fence(ballot));
  if (!lsn.ok()) {
    std::lock_guard lk(mu_);
    if (failed_.ok()) failed_ = lsn.status();  // the WAL ran on_fatal itself
    return error(lsn.status().code(), "agent WAL: " + lsn.status().message());
  }
  std::lock_guard lk(mu_);
  if (fence_ < ballot) {
    fence_ = ballot;
    fence_lsn_ = *lsn;
    fence_copy_lsn_ = 0;
    fence_bytes_at_ = wal_->stats().bytes;
  }
  return ok_status();
}

std::vector<std::string> SqliteResource::prepared() const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  if (held_) out.push_back(held_->txid);
  for (const auto& q : queued_)
    out.push_back(q.txid);
  return out;
}

bool SqliteResource::healthy() {
  {
    std::lock_guard lk(mu_);
    if (!check_usable().ok()) return false;
  }
  std::lock_guard lk(reader_mu_);
  return sqlite3_exec(reader_.get(), "SELECT 1", nullptr, nullptr, nullptr) == SQLITE_OK;
}

// ---------------------------------------------------------------------------
// Operators

Status SqliteResource::resolve_by_operator(const SqliteOptions& options, const std::string& txid,
                                           Outcome outcome) {
  auto log = wal::SegmentedLog::open(wal_options(options));
  if (!log.ok()) return log.status();
  auto reader = (*log)->read_from((*log)->first_lsn());
  if (!reader.ok()) return reader.status();
  bool undecided = false;
  for (;;) {
    auto next = (*reader)->next();
    if (!next.ok()) return next.status();
    if (!next->has_value()) break;
    auto rec = decode_record((*next)->lsn, (*next)->type, (*next)->payload);
    if (!rec.ok()) return rec.status();
    if (rec->txid == txid) undecided = rec->type == RecordType::prepared;
  }
  reader->reset();
  if (!undecided) {
    return error(Code::not_found,
                 "txid=" + txid + " has no undecided PREPARED record in " + options.wal_dir);
  }
  auto lsn = (*log)->append_sync(static_cast<uint16_t>(RecordType::resolved),
                                 encode_resolved(txid, outcome));
  if (!lsn.ok()) return lsn.status();
  logging::txn_warn(txid, "settled by an operator as {} (agent WAL lsn {})", outcome_name(outcome),
                    *lsn);
  return ok_status();
}

}  // namespace dtx::participant::sqlite
