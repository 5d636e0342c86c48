#include "participant/sqlite/sqlite_branch.h"

#include <fmt/format.h>

#include "common/logging.h"
#include "participant/sqlite/sqlite_guard.h"
#include "participant/sqlite/sqlite_resource.h"
#include "participant/sqlite/sqlite_util.h"

namespace dtx::participant::sqlite {

SqliteBranch::SqliteBranch(SqliteResource* owner, std::string txid, sqlite3* db,
                           sqlite3_session* session, size_t rows_max, size_t result_rows_max)
    : owner_(owner),
      txid_(std::move(txid)),
      db_(db),
      session_(session),
      result_rows_max_(result_rows_max),
      tracker_(rows_max),
      changes_at_begin_(sqlite3_total_changes64(db)) {
  tracker_.install(db_);
}

SqliteBranch::~SqliteBranch() {
  rollback();
}

void SqliteBranch::end_session() {
  if (session_ != nullptr) {
    sqlite3session_delete(session_);
    session_ = nullptr;
  }
  RowTracker::uninstall(db_);
}

Status SqliteBranch::doom(DbError e, DbError* err) {
  if (!doomed_) {
    doomed_ = true;
    first_error_ = e;
  }
  logging::txn_warn(txid_, "exec failed, branch doomed (will vote no): {}: {}", e.sqlstate,
                    e.message);
  Status s = error(Code::failed_precondition, e.sqlstate + ": " + e.message);
  *err = std::move(e);
  return s;
}

Status SqliteBranch::refuse(std::string reason, DbError* err) {
  return doom(DbError{std::string(kRefusedByDtx), std::move(reason)}, err);
}

Result<Rows> SqliteBranch::exec(std::string_view sql, const std::vector<SqlValue>& params,
                                DbError* err) {
  DbError ignored;
  if (err == nullptr) err = &ignored;
  // No statement ever runs on a branch that left ACTIVE or failed (T5): after
  // some errors SQLite has already rolled the transaction back, and the
  // statement would then commit on its own.
  if (state_ != State::active) {
    *err = DbError{std::string(kRefusedByDtx), "the branch is no longer active"};
    return error(Code::failed_precondition, "txid=" + txid_ + ": branch is no longer active");
  }
  if (doomed_) {
    *err = DbError{std::string(kRefusedByDtx), "the branch is doomed by an earlier error (" +
                                                   first_error_.sqlstate + ": " +
                                                   first_error_.message + ")"};
    return error(Code::failed_precondition, "txid=" + txid_ + ": " + err->message);
  }

  const std::string keyword = first_keyword(sql);
  if (!keyword_allowed(keyword)) {
    return refuse(keyword.empty() ? std::string("empty statement")
                                  : keyword + " statements are refused in a dtx branch",
                  err);
  }

  StmtHandle stmt;
  const char* tail = nullptr;
  std::string refusal;
  std::set<std::string> written;
  {
    StatementGuard guard(db_);
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &raw, &tail);
    stmt.reset(raw);
    refusal = guard.refusal();
    written = guard.written_tables();
    if (rc != SQLITE_OK) {
      if (!refusal.empty()) return refuse(refusal, err);
      return doom(last_error(db_), err);
    }
  }
  if (!refusal.empty()) return refuse(refusal, err);
  if (!stmt) return refuse("empty statement", err);
  const size_t used = static_cast<size_t>(tail - sql.data());
  if (!only_trivia(sql.substr(used))) {
    return refuse("one statement per exec: SQL after the first statement is refused", err);
  }
  auto bad_table = check_written_tables(db_, written);
  if (!bad_table.ok()) return doom(DbError{"", bad_table.status().message()}, err);
  if (!bad_table->empty()) return refuse(*bad_table, err);
  const bool read_only = sqlite3_stmt_readonly(stmt.get()) != 0;
  if (!read_only && written.empty()) {
    return refuse("the statement writes, but SQLite did not say to which table", err);
  }
  if (std::string b = bind_params(stmt.get(), params); !b.empty()) return refuse(b, err);

  Rows out;
  const int ncol = sqlite3_column_count(stmt.get());
  for (int c = 0; c < ncol; ++c) {
    const char* name = sqlite3_column_name(stmt.get(), c);
    out.columns.emplace_back(name ? name : "");
  }
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    if (out.rows.size() >= result_rows_max_) {
      return refuse(fmt::format("the statement returns more than {} rows", result_rows_max_), err);
    }
    std::vector<SqlValue> row;
    row.reserve(static_cast<size_t>(ncol));
    for (int c = 0; c < ncol; ++c) {
      StoredValue v = stored_column(stmt.get(), c);
      switch (v.type) {
        case SQLITE_INTEGER:
          row.emplace_back(v.i);
          break;
        case SQLITE_FLOAT:
          row.emplace_back(v.d);
          break;
        case SQLITE_TEXT:
        case SQLITE_BLOB:  // the blob's bytes, unchanged (sqlite_resource.h)
          row.emplace_back(std::move(v.bytes));
          break;
        default:
          row.emplace_back(std::monostate{});
      }
    }
    out.rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) return doom(last_error(db_), err);
  if (sqlite3_get_autocommit(db_)) {
    return doom(DbError{std::string(kSessionLost), "the SQLite transaction ended unexpectedly"},
                err);
  }
  out.rows_affected = read_only ? 0 : sqlite3_changes64(db_);
  logging::txn_debug(txid_, "exec {}: {} row(s), {} affected", keyword, out.rows.size(),
                     out.rows_affected);
  return out;
}

Result<std::vector<uint8_t>> SqliteBranch::take_changeset() {
  assert(state_ == State::active && session_ != nullptr);
  tracker_.finish();
  int n = 0;
  void* p = nullptr;
  int rc = sqlite3session_changeset(session_, &n, &p);
  end_session();
  std::vector<uint8_t> out = take_sqlite_bytes(p, n);
  if (rc != SQLITE_OK) {
    return error(Code::internal, "sqlite3session_changeset: " + result_code_name(rc));
  }
  return out;
}

void SqliteBranch::hand_over() {
  end_session();
  state_ = State::handed_over;
}

bool SqliteBranch::wrote_nothing() const {
  return state_ == State::active && !doomed_ && sqlite3_total_changes64(db_) == changes_at_begin_ &&
         (session_ == nullptr || sqlite3session_isempty(session_));
}

Status SqliteBranch::finish_read_only() {
  assert(state_ == State::active);
  end_session();
  if (Status s = exec_simple(db_, "COMMIT"); !s.ok()) {
    // Nothing was written, so rolling back loses nothing; the vote is no.
    logging::txn_warn(txid_, "COMMIT of a branch that wrote nothing failed: {}", s.message());
    rollback();
    return s;
  }
  state_ = State::finished;
  logging::txn_info(txid_, "wrote nothing: committed at once (read_only)");
  owner_->release_writer();
  return ok_status();
}

Status SqliteBranch::finish_commit(DbError* err) {
  assert(state_ == State::active);
  end_session();
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK) {
    state_ = State::finished;
    owner_->release_writer();
    return ok_status();
  }
  *err = last_error(db_);
  const int primary = sqlite3_extended_errcode(db_) & 0xff;
  if (primary == SQLITE_CONSTRAINT || primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    // Refused, nothing written: the transaction is still open (or was
    // rolled back by SQLite); roll it back and free the write lock.
    logging::txn_info(txid_, "COMMIT refused ({}: {}): rolling back", err->sqlstate, err->message);
    rollback();
    return error(Code::failed_precondition, err->sqlstate + ": " + err->message);
  }
  Status f = error(Code::io_error, fmt::format("txid={}: one-phase COMMIT: {}: {}", txid_,
                                               err->sqlstate, err->message));
  state_ = State::finished;
  owner_->fail(f);  // W5: never retried; the marker tells after the restart
  return f;
}

void SqliteBranch::rollback() {
  if (state_ != State::active) return;
  end_session();
  state_ = State::rolled_back;
  if (!sqlite3_get_autocommit(db_)) {
    if (Status s = exec_simple(db_, "ROLLBACK"); !s.ok()) {
      owner_->fail(error(Code::io_error, "txid=" + txid_ + ": " + s.message()));
      return;
    }
  }
  logging::txn_info(txid_, "rolled back");
  owner_->release_writer();
}

}  // namespace dtx::participant::sqlite
