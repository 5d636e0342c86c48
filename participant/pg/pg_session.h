// PgSession: one PostgreSQL connection that never reconnects (A1). Private
// to participant/pg (and its tests); PgResource is the public face.
//
// libpqxx 6.4 silently re-opens a broken connection on the next statement,
// which then runs in autocommit on a fresh backend, outside the branch's
// transaction (reproduced: a BEGIN; INSERT on a terminated backend, then two
// statements that fail, then a third INSERT that commits on its own). So a
// PgSession
//   - inhibits libpqxx's reactivation (statements on a broken connection
//     fail with broken_connection), and
//   - connects through a libpqxx connection policy that counts every
//     connect and records the libpq handle: a session whose count is not 1
//     is broken(), whatever libpqxx did, and is never reused.
// A broken session stays broken; the pool drops it and opens a new one.
//
// Errors are typed, not thrown: a lost connection is Code::unavailable with
// sqlstate kSessionLost; an error the server reported is
// Code::invalid_argument with its SQLSTATE; anything else Code::internal.
//
// Threading: one thread at a time (the pool hands a session to one owner).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "participant/pg/pg_sql.h"
#include "participant/resource.h"

struct pg_conn;    // libpq's PGconn
struct pg_result;  // libpq's PGresult

namespace dtx::participant::pg {

// What the connection policy saw: the current libpq handle and how many
// times a connection was opened for this session.
struct ConnectRecord {
  pg_conn* conn = nullptr;
  uint64_t connects = 0;
};

struct SessionOptions {
  std::string url;  // libpq conninfo or URI; never logged (it may hold a password)
  std::chrono::milliseconds statement_timeout{30000};
  std::string application_name;  // shown in pg_stat_activity
};

class PgSession {
 public:
  static Result<std::unique_ptr<PgSession>> connect(const SessionOptions& options);
  ~PgSession();
  PgSession(const PgSession&) = delete;
  PgSession& operator=(const PgSession&) = delete;

  // One statement with bound text parameters, through the extended query
  // protocol (so exactly one statement runs). On failure fills *err (if
  // not null) and returns the typed error described above.
  Result<pqxx::result> exec(std::string_view sql, const std::vector<TextParam>& params = {},
                            DbError* err = nullptr);
  // A branch's start in one round trip: `begin_sql` (dtx's own BEGIN),
  // SELECT pg_backend_pid() and the branch's first statement with bound
  // parameters, sent as one libpq pipeline. A step after a failed one does
  // not run (the pipeline is aborted), so the statement never runs outside
  // the transaction. *backend_pid gets the server's answer (A1). Errors as
  // exec(); a failed BEGIN is reported as the statement's error.
  Result<Rows> begin_and_exec(std::string_view begin_sql, std::string_view sql,
                              const std::vector<TextParam>& params, int* backend_pid, DbError* err);
  // dtx's own fixed text, which may hold several statements (simple query
  // protocol); the result of the last one. Never for client SQL.
  Result<pqxx::result> exec_script(std::string_view sql, DbError* err = nullptr);

  // PREPARE TRANSACTION '<gid>' (gid checked by the caller to need no
  // escaping). ok only if PostgreSQL answers with the command tag
  // "PREPARE TRANSACTION" (A2): in a failed transaction block, or outside
  // one, it answers ROLLBACK with no error. Any other answer fills *err:
  // kPrepareFailed for a wrong tag, the SQLSTATE for an error, kSessionLost
  // when the connection broke (the outcome is then unknown: the transaction
  // may or may not be prepared).
  Status prepare_transaction(std::string_view gid, DbError* err);
  // COMMIT of the open transaction block, for a branch that wrote nothing.
  // ok only if the session is in a transaction block (not a failed one)
  // and PostgreSQL answers with the command tag "COMMIT" (a failed block
  // answers ROLLBACK with no error, as for PREPARE, A2). A COMMIT refused
  // (e.g. a serialization failure) fills *err with its SQLSTATE; the
  // transaction is then over, rolled back.
  Status commit_transaction(DbError* err);
  // The marker row and PREPARE TRANSACTION in one round trip (one libpq
  // pipeline): `marker_sql` with `params` first, then PREPARE TRANSACTION
  // '<gid>'; if the marker statement fails, PREPARE does not run. ok as
  // prepare_transaction(), and only if the marker statement changed exactly
  // one row: *marked says whether it did (the caller's statement inserts
  // nothing when the backend is not the branch's, A1). Errors as
  // prepare_transaction(); a marker that failed is reported as its error.
  Status mark_and_prepare(std::string_view marker_sql, const std::vector<TextParam>& params,
                          std::string_view gid, bool* marked, DbError* err);

  // The marker row and COMMIT in one round trip (the one-phase fast path),
  // as mark_and_prepare(): ok only if the tag is exactly "COMMIT"; *marked
  // says whether the marker statement changed exactly one row. A COMMIT
  // the server refused (serialization failure, deferred constraint) fills
  // *err with its SQLSTATE and the transaction is rolled back;
  // kSessionLost: the outcome is unknown (the COMMIT may have been sent).
  Status mark_and_commit(std::string_view marker_sql, const std::vector<TextParam>& params,
                         bool* marked, DbError* err);

  // SELECT 1, answered within `timeout` (client side). Code::timeout when
  // it was not (the session is then broken: a query still in flight cannot
  // be abandoned); Code::unavailable when the session is lost.
  Status ping(std::chrono::milliseconds timeout);

  // ROLLBACK, ignoring the answer; a session that cannot is broken.
  void rollback_quietly();

  // Lost, timed out, or connected more than once: never to be used again.
  bool broken() const;
  // broken() after reading, without waiting, whatever the server sent while
  // the session was idle: a terminated backend or a server shutting down
  // sends a FATAL error before it closes the connection, and libpq sees
  // either only on a read. No round trip; a silent network partition still
  // goes unseen.
  bool broken_now();
  // The backend's pid as libpq learned it at connect.
  int backend_pid() const;
  // "dtx_test@127.0.0.1:5432".
  std::string describe();

 private:
  PgSession() = default;
  // One statement that ends the transaction block, its tag checked
  // (expect_tag in the .cc).
  Status end_block(const std::string& sql, const char* command, std::string_view undone,
                   DbError* err);
  // The marker statement, then `end_sql`, as one pipeline.
  Status mark_and_end(std::string_view marker_sql, const std::vector<TextParam>& params,
                      const std::string& end_sql, const char* command, std::string_view undone,
                      bool* marked, DbError* err);
  template <class Run>
  Result<pqxx::result> run(std::string_view sql, DbError* err, Run&& body);
  Status lost(std::string message, DbError* err);
  static void on_notice(void* session, const pg_result* notice);

  // pqxx::connection_base has no virtual destructor: the connection must
  // be deleted as the type it was made as, or it is never closed.
  struct DeleteConnection {
    void operator()(pqxx::connection_base* conn) const;
  };

  ConnectRecord record_;  // written by the connection policy; outlives conn_
  std::unique_ptr<pqxx::connection_base, DeleteConnection> conn_;
  bool lost_ = false;
  std::string fatal_;  // the server's FATAL notice, when it sent one
};

// The rows of a result: column names, values typed by column type OID
// (column_value()), and the number of rows the command affected.
Rows to_rows(const pqxx::result& r);
Rows to_rows(const pg_result* r);

}  // namespace dtx::participant::pg
