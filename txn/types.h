// The transaction vocabulary both sides speak: outcomes, gids, SQL values,
// rows and the reasons a database refused. Pure values; see txid.h for
// txids, exec_digest.h for the exec digest, sql_json.h for SQL values in
// JSON and agent_api.h for the agent API's messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"

namespace dtx::txn {

// The outcome of a transaction, or of one branch of it (T1, T6).
enum class Outcome { committed, aborted };
// "committed", "aborted".
const char* outcome_name(Outcome o);
std::optional<Outcome> parse_outcome(std::string_view name);

// gid of a prepared PostgreSQL branch: dtx:<cluster>:<txid>:<agent> (T2).
// With txid.h's limits it is at most 4 + 32 + 1 + 83 + 1 + 64 = 185 bytes,
// under PostgreSQL's 200.
std::string make_gid(std::string_view cluster, std::string_view txid, std::string_view agent);

// A JSON scalar bound to $1..$n, or a column value: null, boolean, integer,
// floating point, text. (Its JSON mapping: sql_json.h.)
using SqlValue = std::variant<std::monostate, bool, int64_t, double, std::string>;

// What a statement returned.
struct Rows {
  std::vector<std::string> columns;
  std::vector<std::vector<SqlValue>> rows;
  int64_t rows_affected = 0;
};

// Why the database (or dtx on its behalf) refused: SQLSTATE ("23505"; ""
// when the failure is not the database's, e.g. a lost connection; "dtx.."
// for dtx's own refusals below) and its message.
struct DbError {
  std::string sqlstate;
  std::string message;
};

// dtx's own SQLSTATE-like codes for refusals that are not the database's.
inline constexpr std::string_view kRefusedByDtx = "dtx01";   // e.g. DDL, table without a key
inline constexpr std::string_view kSessionLost = "dtx02";    // the branch session broke (A1)
inline constexpr std::string_view kPrepareFailed = "dtx03";  // the database did not prepare

}  // namespace dtx::txn
