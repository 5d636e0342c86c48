#include "participant/pg/pg_session.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

namespace dtx::participant::pg {

namespace {

// The record the next connection policy constructed on this thread reports
// to. libpqxx builds the policy object itself, from the options string
// alone, inside the connection's constructor; this is how PgSession::connect
// hands it the session's record for exactly that construction.
thread_local ConnectRecord* t_record_for_next_connection = nullptr;

// libpqxx's direct connection, plus a count of every connect it makes. The
// policy is libpqxx's public extension point for opening connections, and
// the only place libpqxx 6.4 shows the libpq handle it uses.
class CountingConnect : public pqxx::connect_direct {
 public:
  explicit CountingConnect(const std::string& options)
      : pqxx::connect_direct(options), record_(t_record_for_next_connection) {}

  handle do_startconnect(handle orig) override {
    handle h = pqxx::connect_direct::do_startconnect(orig);
    if (h != orig && record_ != nullptr) {
      record_->conn = h;
      ++record_->connects;
    }
    return h;
  }

 private:
  ConnectRecord* record_;
};

using CountedConnection = pqxx::basic_connection_base<CountingConnect>;

std::string trimmed(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.remove_suffix(1);
  return std::string(s);
}

// The SQLSTATE of an error libpqxx raised from a server answer. libpqxx 6.4
// maps SQLSTATEs to exception classes but passes the code on to only some
// of them: insufficient_privilege and the transaction_rollback family
// (serialization_failure, deadlock_detected, ...) carry none, so their code
// is restored from the class (a one-to-one mapping in its result.cxx).
std::string sqlstate_of(const std::exception& e) {
  if (const auto* s = dynamic_cast<const pqxx::sql_error*>(&e); s && !s->sqlstate().empty()) {
    return s->sqlstate();
  }
  if (dynamic_cast<const pqxx::insufficient_privilege*>(&e)) return "42501";
  if (dynamic_cast<const pqxx::serialization_failure*>(&e)) return "40001";
  if (dynamic_cast<const pqxx::deadlock_detected*>(&e)) return "40P01";
  if (dynamic_cast<const pqxx::statement_completion_unknown*>(&e)) return "40003";
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e)) return "40000";
  return "";
}

}  // namespace

Result<std::unique_ptr<PgSession>> PgSession::connect(const SessionOptions& options) {
  std::unique_ptr<PgSession> s(new PgSession());
  try {
    t_record_for_next_connection = &s->record_;
    s->conn_.reset(new CountedConnection(options.url));
    t_record_for_next_connection = nullptr;
  } catch (const std::exception& e) {
    t_record_for_next_connection = nullptr;
    return error(Code::unavailable, "cannot connect to PostgreSQL: " + trimmed(e.what()));
  }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  // Deprecated in libpqxx 6.4 (libpqxx 7 never reconnects), but without it
  // libpqxx 6.4 silently re-opens a broken connection on the next statement,
  // which then runs in autocommit outside the branch's transaction (A1).
  s->conn_->inhibit_reactivation(true);
#pragma GCC diagnostic pop
  // A notice receiver replaces libpq's default one, and with it the notice
  // processor libpqxx installs: notices go to the log, and a FATAL one marks
  // the session lost.
  PQsetNoticeReceiver(s->record_.conn, &PgSession::on_notice, s.get());

  auto r = s->exec(
      "SELECT set_config('statement_timeout', $1, false), "
      "set_config('application_name', $2, false)",
      {std::to_string(options.statement_timeout.count()), options.application_name});
  if (!r.ok()) return r.status();
  if (s->broken()) return error(Code::unavailable, "the new PostgreSQL session broke at once");
  return s;
}

PgSession::~PgSession() = default;

void PgSession::DeleteConnection::operator()(pqxx::connection_base* conn) const {
  delete static_cast<CountedConnection*>(conn);
}

void PgSession::on_notice(void* session, const PGresult* notice) {
  auto* self = static_cast<PgSession*>(session);
  // An error that arrives while no query runs is the server saying why it
  // is about to close the connection (a terminated backend, a shutdown);
  // libpq reports it as a notice. The non-localized severity is matched, as
  // lc_messages may translate the other.
  const char* severity = PQresultErrorField(notice, PG_DIAG_SEVERITY_NONLOCALIZED);
  const bool fatal = severity != nullptr &&
                     (std::strcmp(severity, "FATAL") == 0 || std::strcmp(severity, "PANIC") == 0);
  if (fatal) {
    self->lost_ = true;
    self->fatal_ = trimmed(PQresultErrorMessage(notice));
  }
  try {
    spdlog::log(fatal ? spdlog::level::warn : spdlog::level::debug, "postgresql: {}",
                trimmed(PQresultErrorMessage(notice)));
  } catch (...) {
  }
}

bool PgSession::broken() const {
  return lost_ || record_.connects != 1 || conn_ == nullptr || !conn_->is_open();
}

bool PgSession::broken_now() {
  if (broken()) return true;
  // libpq keeps its socket non-blocking: this reads only what has arrived.
  // A terminated backend's FATAL message comes before the end of the
  // connection; parsing it (PQisBusy) hands it to on_notice().
  if (PQconsumeInput(record_.conn) == 0) lost_ = true;
  if (!broken()) (void)PQisBusy(record_.conn);
  return broken();
}

int PgSession::backend_pid() const {
  return record_.conn ? PQbackendPID(record_.conn) : 0;
}

std::string PgSession::describe() {
  if (record_.conn == nullptr) return "(not connected)";
  return fmt::format("{}@{}:{}", PQdb(record_.conn), PQhost(record_.conn), PQport(record_.conn));
}

Status PgSession::lost(std::string message, DbError* err) {
  lost_ = true;
  if (!fatal_.empty()) message = fmt::format("{} ({})", fatal_, message);
  if (err) *err = DbError{std::string(kSessionLost), message};
  return error(Code::unavailable, "PostgreSQL session lost: " + message);
}

template <class Run>
Result<pqxx::result> PgSession::run(std::string_view sql, DbError* err, Run&& body) {
  // Checked first, without a round trip, not only to fail fast: libpqxx
  // 6.4 leaks the libpq result of a statement that finds the connection
  // gone (make_result() asks for the client encoding before it owns the
  // result, and that throws on a dead connection). A connection that dies
  // during the statement still costs that one result.
  if (broken_now()) return lost("the session broke earlier", err);
  try {
    pqxx::nontransaction tx(*conn_);
    pqxx::result r = body(tx);
    // A reconnect behind libpqxx's back would show here even if the
    // statement succeeded: its work would not be in this session (A1).
    if (broken()) return lost("the connection was re-opened during the statement", err);
    return r;
  } catch (const pqxx::broken_connection& e) {
    return lost(trimmed(e.what()), err);
  } catch (const std::exception& e) {
    // Server errors may arrive with the connection closing (a terminated
    // backend answers FATAL 57P01): then the session is lost, whatever the
    // error says.
    if (!conn_->is_open()) return lost(trimmed(e.what()), err);
    const bool from_server = dynamic_cast<const pqxx::sql_error*>(&e) != nullptr ||
                             dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr;
    std::string state = sqlstate_of(e);
    std::string message = trimmed(e.what());
    if (err) *err = DbError{state, message};
    if (!from_server) {
      lost_ = true;  // libpqxx refused for its own reasons; do not trust the session
      return error(Code::internal, fmt::format("libpqxx: {} (in: {:.80})", message, sql));
    }
    return error(Code::invalid_argument, fmt::format("{}: {}", state, message));
  }
}

Result<pqxx::result> PgSession::exec(std::string_view sql, const std::vector<TextParam>& params,
                                     DbError* err) {
  return run(sql, err, [&](pqxx::nontransaction& tx) {
    return tx.exec_params(std::string(sql), pqxx::prepare::make_dynamic_params(params));
  });
}

Result<Rows> PgSession::begin_and_exec(std::string_view begin_sql, std::string_view sql,
                                       const std::vector<TextParam>& params, int* backend_pid,
                                       DbError* err) {
  if (broken_now()) return lost("the session broke earlier", err);
  pg_conn* c = record_.conn;
  using ResultPtr = std::unique_ptr<PGresult, decltype(&PQclear)>;
  auto conn_error = [&] { return trimmed(PQerrorMessage(c)); };
  if (PQenterPipelineMode(c) != 1) return lost("cannot enter pipeline mode: " + conn_error(), err);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const TextParam& p : params)
    values.push_back(p ? p->c_str() : nullptr);
  const std::string begin_text(begin_sql), sql_text(sql);
  const bool sent =
      PQsendQueryParams(c, begin_text.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1 &&
      PQsendQueryParams(c, "SELECT pg_backend_pid()", 0, nullptr, nullptr, nullptr, nullptr, 0) ==
          1 &&
      PQsendQueryParams(c, sql_text.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) == 1 &&
      PQpipelineSync(c) == 1;
  if (!sent) return lost("sending the branch's first statement: " + conn_error(), err);

  // One result per step (each followed by a null), then the sync point.
  ResultPtr step[3] = {{nullptr, &PQclear}, {nullptr, &PQclear}, {nullptr, &PQclear}};
  for (auto& res : step) {
    res.reset(PQgetResult(c));
    if (res == nullptr || PQstatus(c) != CONNECTION_OK) {
      return lost("during the branch's first statement: " + conn_error(), err);
    }
    // A statement answers one result; drain to the null that ends it.
    while (PGresult* extra = PQgetResult(c))
      PQclear(extra);
  }
  ResultPtr sync(PQgetResult(c), &PQclear);
  if (sync == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC ||
      PQexitPipelineMode(c) != 1 || PQstatus(c) != CONNECTION_OK) {
    return lost("leaving pipeline mode: " + conn_error(), err);
  }
  if (broken()) return lost("the connection was re-opened during the statement", err);

  // The first failed step says why; the steps after it were not run.
  for (const auto& res : step) {
    const ExecStatusType st = PQresultStatus(res.get());
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) continue;
    const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
    std::string message = trimmed(PQresultErrorMessage(res.get()));
    if (message.empty()) message = PQresStatus(st);
    if (err) *err = DbError{state ? state : "", message};
    if (state == nullptr) {
      lost_ = true;  // not a server error: do not trust the session
      return error(Code::internal, fmt::format("libpq: {} (in: {:.80})", message, sql));
    }
    return error(Code::invalid_argument, fmt::format("{}: {}", state, message));
  }
  if (backend_pid) *backend_pid = std::atoi(PQgetvalue(step[1].get(), 0, 0));
  return to_rows(step[2].get());
}

Result<pqxx::result> PgSession::exec_script(std::string_view sql, DbError* err) {
  return run(sql, err, [&](pqxx::nontransaction& tx) { return tx.exec(std::string(sql)); });
}

namespace {

// A statement's error as the server reported it.
Status server_error(const PGresult* res, DbError* err) {
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  std::string message = trimmed(PQresultErrorMessage(res));
  if (message.empty()) message = PQresStatus(PQresultStatus(res));
  if (err) *err = DbError{state ? state : "", message};
  return error(Code::invalid_argument, fmt::format("{}: {}", state ? state : "", message));
}

// The answer to a statement that ends a transaction block, whose command
// tag is the answer (A2): ok only for exactly `command`. In a failed block,
// or outside one, PREPARE TRANSACTION and COMMIT answer ROLLBACK (or warn)
// with no error: `undone` says what that means.
Status expect_tag(const PGresult* res, const char* command, std::string_view undone, DbError* err) {
  const ExecStatusType status = PQresultStatus(res);
  const char* tag = PQcmdStatus(const_cast<PGresult*>(res));
  if (status == PGRES_COMMAND_OK && std::strcmp(tag, command) == 0) return ok_status();
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    std::string message = fmt::format("PostgreSQL answered '{}' to {}: {}", tag, command, undone);
    if (err) *err = DbError{std::string(kPrepareFailed), message};
    return error(Code::failed_precondition, message);
  }
  return server_error(res, err);
}

constexpr std::string_view kNothingPrepared =
    "the transaction had failed or was not open, and nothing was prepared";
constexpr std::string_view kNothingCommitted =
    "the transaction had failed or was not open, and nothing was committed";

}  // namespace

Status PgSession::end_block(const std::string& sql, const char* command, std::string_view undone,
                            DbError* err) {
  if (broken_now()) return lost(fmt::format("the session broke before {}", command), err);
  // libpq directly, on the session's own connection: libpqxx 6.4 keeps a
  // result's command status tag private (result::cmd_status() serves its
  // cursors only), and here the tag is the answer (A2).
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(record_.conn, sql.c_str()), &PQclear);
  if (res == nullptr || PQstatus(record_.conn) != CONNECTION_OK) {
    return lost(fmt::format("during {}: {}", command, trimmed(PQerrorMessage(record_.conn))), err);
  }
  return expect_tag(res.get(), command, undone, err);
}

Status PgSession::prepare_transaction(std::string_view gid, DbError* err) {
  return end_block(fmt::format("PREPARE TRANSACTION '{}'", gid), "PREPARE TRANSACTION",
                   kNothingPrepared, err);
}

Status PgSession::commit_transaction(DbError* err) {
  if (!broken_now() && PQtransactionStatus(record_.conn) != PQTRANS_INTRANS) {
    std::string message =
        "the branch's transaction block is not open (or has failed): nothing to commit";
    if (err) *err = DbError{std::string(kPrepareFailed), message};
    return error(Code::failed_precondition, message);
  }
  return end_block("COMMIT", "COMMIT", kNothingCommitted, err);
}

Status PgSession::mark_and_end(std::string_view marker_sql, const std::vector<TextParam>& params,
                               const std::string& end_sql, const char* command,
                               std::string_view undone, bool* marked, DbError* err) {
  *marked = false;
  if (broken_now()) return lost(fmt::format("the session broke before {}", command), err);
  pg_conn* c = record_.conn;
  using ResultPtr = std::unique_ptr<PGresult, decltype(&PQclear)>;
  auto conn_error = [&] { return trimmed(PQerrorMessage(c)); };
  if (PQenterPipelineMode(c) != 1) return lost("cannot enter pipeline mode: " + conn_error(), err);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const TextParam& p : params)
    values.push_back(p ? p->c_str() : nullptr);
  const std::string marker_text(marker_sql);
  const bool sent =
      PQsendQueryParams(c, marker_text.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) == 1 &&
      PQsendQueryParams(c, end_sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1 &&
      PQpipelineSync(c) == 1;
  // From here the outcome may be unknown: the second statement may have
  // been sent.
  if (!sent) return lost(fmt::format("sending the marker and {}: {}", command, conn_error()), err);
  ResultPtr step[2] = {{nullptr, &PQclear}, {nullptr, &PQclear}};
  for (auto& res : step) {
    res.reset(PQgetResult(c));
    if (res == nullptr || PQstatus(c) != CONNECTION_OK) {
      return lost(fmt::format("during {}: {}", command, conn_error()), err);
    }
    while (PGresult* extra = PQgetResult(c))
      PQclear(extra);
  }
  ResultPtr sync(PQgetResult(c), &PQclear);
  if (sync == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC ||
      PQexitPipelineMode(c) != 1 || PQstatus(c) != CONNECTION_OK) {
    return lost(fmt::format("leaving pipeline mode after {}: {}", command, conn_error()), err);
  }
  if (broken()) return lost(fmt::format("the connection was re-opened during {}", command), err);
  if (PQresultStatus(step[0].get()) != PGRES_COMMAND_OK &&
      PQresultStatus(step[0].get()) != PGRES_TUPLES_OK) {
    return server_error(step[0].get(), err);  // the second did not run (the pipeline was aborted)
  }
  *marked = std::strcmp(PQcmdTuples(step[0].get()), "1") == 0;
  return expect_tag(step[1].get(), command, undone, err);
}

Status PgSession::mark_and_prepare(std::string_view marker_sql,
                                   const std::vector<TextParam>& params, std::string_view gid,
                                   bool* marked, DbError* err) {
  return mark_and_end(marker_sql, params, fmt::format("PREPARE TRANSACTION '{}'", gid),
                      "PREPARE TRANSACTION", kNothingPrepared, marked, err);
}

Status PgSession::mark_and_commit(std::string_view marker_sql, const std::vector<TextParam>& params,
                                  bool* marked, DbError* err) {
  return mark_and_end(marker_sql, params, "COMMIT", "COMMIT", kNothingCommitted, marked, err);
}

Status PgSession::ping(std::chrono::milliseconds timeout) {
  if (broken_now()) return lost("the session broke earlier", nullptr);
  // libpq's asynchronous calls, so the wait is bounded on this side even
  // when the server or the network does not answer at all; libpqxx 6.4 has
  // no timeout of its own.
  pg_conn* c = record_.conn;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (PQsendQuery(c, "SELECT 1") == 0) return lost(trimmed(PQerrorMessage(c)), nullptr);
  bool ok = false;
  while (true) {
    if (PQconsumeInput(c) == 0) return lost(trimmed(PQerrorMessage(c)), nullptr);
    if (PQisBusy(c)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        lost_ = true;  // a query is still in flight: the session cannot be reused
        return error(Code::timeout,
                     fmt::format("PostgreSQL did not answer SELECT 1 in {} ms", timeout.count()));
      }
      pollfd p{PQsocket(c), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
      continue;
    }
    PGresult* r = PQgetResult(c);
    if (r == nullptr) break;
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
  }
  if (broken()) return lost("during SELECT 1", nullptr);
  if (!ok) return error(Code::internal, "SELECT 1 did not answer a row");
  return ok_status();
}

void PgSession::rollback_quietly() {
  if (!exec_script("ROLLBACK").ok()) lost_ = true;
}

Rows to_rows(const pqxx::result& r) {
  Rows rows;
  const auto ncols = r.columns();
  rows.columns.reserve(ncols);
  std::vector<uint32_t> types(ncols);
  for (pqxx::row::size_type c = 0; c < ncols; ++c) {
    rows.columns.emplace_back(r.column_name(c));
    types[c] = r.column_type(c);
  }
  rows.rows.reserve(r.size());
  for (const auto& row : r) {
    std::vector<SqlValue> values;
    values.reserve(ncols);
    for (pqxx::row::size_type c = 0; c < ncols; ++c) {
      const pqxx::field f = row[c];
      values.push_back(column_value(types[c], std::string_view(f.c_str(), f.size()), f.is_null()));
    }
    rows.rows.push_back(std::move(values));
  }
  rows.rows_affected = static_cast<int64_t>(r.affected_rows());
  return rows;
}

Rows to_rows(const pg_result* r) {
  Rows rows;
  const int ncols = PQnfields(r);
  rows.columns.reserve(static_cast<size_t>(ncols));
  std::vector<uint32_t> types(static_cast<size_t>(ncols));
  for (int c = 0; c < ncols; ++c) {
    rows.columns.emplace_back(PQfname(r, c));
    types[static_cast<size_t>(c)] = PQftype(r, c);
  }
  const int nrows = PQntuples(r);
  rows.rows.reserve(static_cast<size_t>(nrows));
  for (int i = 0; i < nrows; ++i) {
    std::vector<SqlValue> values;
    values.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      values.push_back(column_value(
          types[static_cast<size_t>(c)],
          std::string_view(PQgetvalue(r, i, c), static_cast<size_t>(PQgetlength(r, i, c))),
          PQgetisnull(r, i, c) != 0));
    }
    rows.rows.push_back(std::move(values));
  }
  const char* affected = PQcmdTuples(const_cast<pg_result*>(r));
  rows.rows_affected = (affected && *affected) ? std::atoll(affected) : 0;
  return rows;
}

}  // namespace dtx::participant::pg
