// Pure helpers of the PostgreSQL participant: no connection, no I/O.
//
//   - names: the cluster id, the agent name and every txid go into the gid
//     `dtx:<cluster>:<txid>:<agent>` (T2), which PREPARE TRANSACTION takes as
//     a literal (it accepts no parameters). They are checked at the API
//     boundary to be 1..64 characters of [A-Za-z0-9._-], so the gid can be
//     quoted safely, fits PostgreSQL's 200-byte gid limit, and splits back
//     into its parts unambiguously (no part contains ':').
//   - the statement guard: a conservative look at the first keywords of a
//     branch statement, refusing those that would end or change the
//     branch's transaction or the pooled session. It is a guard, not a
//     parser (see statement_refusal()).
//   - text forms: SqlValue parameters to PostgreSQL's text input format, and
//     column text back to SqlValue by the column's type OID.
//   - keys: the advisory lock key of an agent (A4).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "participant/resource.h"
#include "txn/txid.h"

namespace dtx::participant::pg {

inline constexpr size_t kNameBytesMax = 64;  // agent names
// txids are at most txn::kTxidTextMax (83) and cluster ids
// txn::kClusterIdMax (32): a gid is at most 4 + 32 + 1 + 83 + 1 + 64 = 185
// bytes, under PostgreSQL's 200.
size_t name_bytes_max(std::string_view what);

// What is wrong with a server whose settings are fsync=`fsync` and
// full_page_writes=`full_page_writes` (as current_setting() spells them):
// nullopt when both are "on"; else a sentence saying what may be lost.
std::optional<std::string> durability_problem(std::string_view fsync,
                                              std::string_view full_page_writes);

// ok if `value` is 1..name_bytes_max(what) characters of [A-Za-z0-9._-];
// else invalid_argument naming `what` ("txid", "cluster id", "agent name").
Status check_name(std::string_view what, std::string_view value);

// The connection string with TCP liveness settings added where it names
// none of them: keepalives (idle 10 s, every 5 s, 3 probes) and
// tcp_user_timeout 30 s, so a round trip to a server behind a silent
// network partition fails in bounded time instead of waiting for TCP's own
// timeouts (minutes). Works on URIs (postgresql://...) and on key=value
// strings.
std::string with_liveness_defaults(std::string_view conninfo);

// The txid of a gid made by make_gid(cluster, txid, agent), or nullopt if
// the gid belongs to another cluster or agent, or is not a dtx gid at all.
std::optional<std::string> txid_of_gid(std::string_view gid, std::string_view cluster,
                                       std::string_view agent);

// The key of the session-level advisory lock an agent holds on its
// database for its lifetime (A4): the 64-bit FNV-1a hash of
// "dtx-agent:<cluster>:<agent>", as PostgreSQL's bigint. Advisory locks are
// per database, so the key need not name the database.
int64_t advisory_lock_key(std::string_view cluster, std::string_view agent);

// The transaction-level advisory lock taken around the creation of the
// marker table, so agents starting at once on one database do not race in
// CREATE TABLE IF NOT EXISTS (which can fail with a unique violation on the
// catalog when two sessions run it concurrently).
int64_t marker_ddl_lock_key();

// Why a branch must not run `sql`, or nullopt if the guard lets it through.
//
// Looks at the first words after whitespace, comments (--, nested /* */)
// and empty statements (';'). Refused: BEGIN, START, COMMIT, END, ROLLBACK,
// ABORT, PREPARE, SAVEPOINT, RELEASE (the agent alone ends a branch, and a
// failed statement dooms it, so savepoints would only hide what the agent
// has already counted), SET and RESET except the transaction-scoped
// `SET LOCAL <name>` and `SET CONSTRAINTS` (SET TRANSACTION and
// SET LOCAL TRANSACTION/SESSION are refused), DISCARD, COPY (its protocol
// would leave the session mid-copy), LISTEN, UNLISTEN and LOAD (session
// state that would outlive the branch), a statement with no text, and any
// statement naming dtx's own tables dtx_markers or dtx_fence as a word.
//
// This is a guard, not a parser: a function call such as set_config(...,
// false) still changes the session. What makes it sufficient for the
// transaction itself is that branch statements go through the extended
// query protocol, which runs exactly one statement, so nothing can follow
// an allowed first statement; and PostgreSQL refuses COMMIT inside DO
// blocks and procedures called in a transaction block.
std::optional<std::string> statement_refusal(std::string_view sql);

// The first `n` words of `sql` in upper case (ASCII), skipping what
// statement_refusal() skips; fewer if a non-word character comes first.
std::vector<std::string> leading_words(std::string_view sql, size_t n);

// A parameter in PostgreSQL's text input format; nullopt is SQL NULL.
using TextParam = std::optional<std::string>;

// null -> NULL, bool -> "true"/"false", int64 and double -> decimal text
// (NaN, Infinity, -Infinity spelled as PostgreSQL reads them), string ->
// itself. PostgreSQL infers each parameter's type from its context.
// invalid_argument for a string holding a NUL byte, which text cannot store.
Result<std::vector<TextParam>> bind_params(const std::vector<SqlValue>& params);

// PostgreSQL type OIDs that map to typed values.
inline constexpr uint32_t kOidBool = 16;
inline constexpr uint32_t kOidInt8 = 20;
inline constexpr uint32_t kOidInt2 = 21;
inline constexpr uint32_t kOidInt4 = 23;
inline constexpr uint32_t kOidFloat4 = 700;
inline constexpr uint32_t kOidFloat8 = 701;
inline constexpr uint32_t kOidNumeric = 1700;

// A column value from its text form: NULL -> monostate; bool -> bool;
// int2/int4/int8 -> int64; float4/float8 -> double; everything else,
// numeric included (to keep its precision), -> the text.
SqlValue column_value(uint32_t type_oid, std::string_view text, bool is_null);

}  // namespace dtx::participant::pg
