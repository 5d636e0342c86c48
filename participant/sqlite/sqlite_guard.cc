#include "participant/sqlite/sqlite_guard.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <map>

#include "participant/sqlite/sqlite_util.h"

namespace dtx::participant::sqlite {
namespace {

// Skips whitespace and comments from `i`; returns the new position.
size_t skip_blanks(std::string_view s, size_t i) {
  while (i < s.size()) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
    } else if (c == '-' && i + 1 < s.size() && s[i + 1] == '-') {
      size_t nl = s.find('\n', i);
      i = nl == std::string_view::npos ? s.size() : nl + 1;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      size_t end = s.find("*/", i + 2);
      // An unterminated comment runs to the end, as SQLite reads it.
      i = end == std::string_view::npos ? s.size() : end + 2;
    } else {
      break;
    }
  }
  return i;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Read-only PRAGMAs that take an argument naming what to describe.
constexpr std::array<std::string_view, 9> kIntrospectionPragmas = {
    "table_info",       "table_xinfo",       "index_info",      "index_xinfo", "index_list",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"};
// PRAGMAs that only read when given no argument.
constexpr std::array<std::string_view, 17> kQueryPragmas = {
    "table_list",   "database_list",   "collation_list", "function_list",  "module_list",
    "pragma_list",  "compile_options", "user_version",   "application_id", "schema_version",
    "data_version", "page_count",      "page_size",      "freelist_count", "encoding",
    "foreign_keys", "journal_mode"};

bool is_schema_table(std::string_view t) {
  return iequals(t, "sqlite_master") || iequals(t, "sqlite_schema") ||
         iequals(t, "sqlite_temp_master") || iequals(t, "sqlite_temp_schema");
}

}  // namespace

std::string first_keyword(std::string_view sql) {
  size_t i = skip_blanks(sql, 0);
  size_t j = i;
  while (j < sql.size() && std::isalpha(static_cast<unsigned char>(sql[j])))
    ++j;
  return upper(sql.substr(i, j - i));
}

bool keyword_allowed(std::string_view kw) {
  static constexpr std::array<std::string_view, 8> kAllowed = {
      "SELECT", "VALUES", "WITH", "INSERT", "REPLACE", "UPDATE", "DELETE", "PRAGMA"};
  return std::find(kAllowed.begin(), kAllowed.end(), kw) != kAllowed.end();
}

bool only_trivia(std::string_view rest) {
  size_t i = 0;
  for (;;) {
    i = skip_blanks(rest, i);
    if (i < rest.size() && rest[i] == ';') {
      ++i;
      continue;
    }
    return i == rest.size();
  }
}

bool pragma_is_read_only(std::string_view name, bool has_argument) {
  auto in = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(),
                       [&](std::string_view p) { return iequals(p, name); });
  };
  if (in(kIntrospectionPragmas)) return true;
  return !has_argument && in(kQueryPragmas);
}

// ---------------------------------------------------------------------------
// StatementGuard

StatementGuard::StatementGuard(sqlite3* db) : db_(db) {
  sqlite3_set_authorizer(db_, &StatementGuard::callback, this);
}

StatementGuard::~StatementGuard() {
  sqlite3_set_authorizer(db_, nullptr, nullptr);
}

int StatementGuard::callback(void* self, int action, const char* a1, const char* a2,
                             const char* schema, const char* trigger) {
  return static_cast<StatementGuard*>(self)->on_action(action, a1, a2, schema, trigger);
}

int StatementGuard::deny(std::string reason) {
  if (refusal_.empty()) refusal_ = std::move(reason);
  return SQLITE_DENY;
}

int StatementGuard::on_action(int action, const char* a1, const char* a2, const char* schema,
                              const char* trigger) {
  const std::string_view t1 = a1 ? a1 : "";
  const std::string via = trigger ? fmt::format(" (in trigger {})", trigger) : "";
  // SQLite may name no schema for a read of the temp schema's table.
  if (iequals(t1, "sqlite_temp_master") || iequals(t1, "sqlite_temp_schema")) {
    return deny(
        fmt::format("statement touches schema 'temp' ({}): dtx branches may use only "
                    "'main'",
                    t1));
  }
  // Anything outside "main": temp tables, attached databases.
  if (schema != nullptr && std::string_view(schema) != "main") {
    return deny(fmt::format("statement touches schema '{}'{}: dtx branches may use only 'main'",
                            schema, via));
  }
  switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
      return SQLITE_OK;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
      // SQLite reports reads of its own schema table as UPDATEs of it while it
      // sets up a pragma function; a real write to it is refused by SQLite.
      if (is_schema_table(t1)) {
        if (action == SQLITE_UPDATE) return SQLITE_OK;
        return deny(fmt::format("statement writes SQLite's schema table {}", t1));
      }
      if (t1.size() >= 7 && iequals(t1.substr(0, 7), "sqlite_")) {
        return deny(fmt::format("statement writes SQLite's internal table {}{}", t1, via));
      }
      if (iequals(t1, "dtx_markers")) {
        return deny("dtx_markers belongs to dtx: its rows are the proof of commit");
      }
      written_.insert(std::string(t1));
      return SQLITE_OK;
    case SQLITE_PRAGMA:
      if (!pragma_is_read_only(t1, a2 != nullptr)) {
        return deny(
            fmt::format("PRAGMA {}{} is refused: only read-only PRAGMAs may run in a branch", t1,
                        a2 ? fmt::format("({})", a2) : ""));
      }
      return SQLITE_OK;
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
      return deny(
          fmt::format("transaction control ({}{}) is refused: dtx owns the branch's transaction",
                      t1, a2 ? " " + std::string(a2) : ""));
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      return deny("ATTACH and DETACH are refused: dtx branches may use only 'main'");
    default:
      // CREATE, DROP, ALTER, REINDEX, ANALYZE, virtual tables, COPY and
      // anything newer than this list.
      return deny(fmt::format("DDL and schema changes are refused in a dtx branch (action {}{}{})",
                              action, t1.empty() ? "" : " on " + std::string(t1), via));
  }
}

// ---------------------------------------------------------------------------
// Tables

Result<TableShape> table_shape(sqlite3* db, const std::string& table) {
  TableShape shape;
  {
    auto s = prepare_internal(db,
                              "SELECT type, wr, name FROM pragma_table_list WHERE schema = 'main' "
                              "AND name = ?1 COLLATE NOCASE");
    if (!s.ok()) return s.status();
    sqlite3_bind_text(s->get(), 1, table.c_str(), -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s->get());
    if (rc == SQLITE_DONE) return shape;
    if (rc != SQLITE_ROW) return error(Code::io_error, "sqlite: " + describe_last_error(db));
    shape.exists = true;
    shape.type = reinterpret_cast<const char*>(sqlite3_column_text(s->get(), 0));
    shape.without_rowid = sqlite3_column_int(s->get(), 1) != 0;
  }
  if (shape.type != "table") return shape;
  auto s = prepare_internal(
      db, "SELECT name, pk, hidden FROM pragma_table_xinfo(?1, 'main') ORDER BY cid");
  if (!s.ok()) return s.status();
  sqlite3_bind_text(s->get(), 1, table.c_str(), -1, SQLITE_TRANSIENT);
  std::map<int, int> pk_order;  // position in the key -> column index
  int rc;
  while ((rc = sqlite3_step(s->get())) == SQLITE_ROW) {
    const int col = static_cast<int>(shape.columns.size());
    shape.columns.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s->get(), 0)));
    if (int pk = sqlite3_column_int(s->get(), 1); pk > 0) pk_order[pk] = col;
    if (sqlite3_column_int(s->get(), 2) != 0) shape.has_generated = true;
  }
  if (rc != SQLITE_DONE) return error(Code::io_error, "sqlite: " + describe_last_error(db));
  for (auto& [pos, col] : pk_order)
    shape.pk_columns.push_back(col);
  return shape;
}

Result<std::string> check_written_tables(sqlite3* db, const std::set<std::string>& tables) {
  for (const auto& t : tables) {
    auto shape = table_shape(db, t);
    if (!shape.ok()) return shape.status();
    if (!shape->exists) continue;  // SQLite itself will report "no such table"
    if (shape->type == "view") {
      return fmt::format(
          "writes through view {} are refused: dtx needs every changed row in a table with a "
          "PRIMARY KEY",
          t);
    }
    if (shape->type != "table") {
      return fmt::format(
          "writes to {} table {} are refused: SQLite's session extension does not record them",
          shape->type, t);
    }
    if (shape->pk_columns.empty()) {
      return fmt::format(
          "table {} has no explicit PRIMARY KEY: SQLite's session extension would skip its "
          "changes, so dtx could not make them durable at prepare (A6)",
          t);
    }
    if (shape->has_generated) {
      return fmt::format(
          "table {} has generated columns, which SQLite 3.40's session extension cannot record", t);
    }
  }
  return std::string();
}

// ---------------------------------------------------------------------------
// Parameters

std::string bind_params(sqlite3_stmt* stmt, const std::vector<SqlValue>& params) {
  const int count = sqlite3_bind_parameter_count(stmt);
  size_t highest = 0;
  for (int k = 1; k <= count; ++k) {
    const char* name = sqlite3_bind_parameter_name(stmt, k);
    size_t pos = static_cast<size_t>(k);  // a bare "?"
    if (name != nullptr) {
      std::string_view n(name);
      std::string_view digits = n.substr(1);
      size_t parsed = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), parsed);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
          parsed == 0) {
        return fmt::format("parameter {} is not supported: use $1..$n (or ?) bound by position", n);
      }
      pos = parsed;
    }
    highest = std::max(highest, pos);
    if (pos > params.size()) {
      return fmt::format("the statement uses parameter {} but {} parameter(s) were given",
                         name ? name : fmt::format("?{}", pos), params.size());
    }
    const SqlValue& v = params[pos - 1];
    int rc = SQLITE_OK;
    if (std::holds_alternative<std::monostate>(v)) {
      rc = sqlite3_bind_null(stmt, k);
    } else if (const bool* b = std::get_if<bool>(&v)) {
      rc = sqlite3_bind_int64(stmt, k, *b ? 1 : 0);
    } else if (const int64_t* i = std::get_if<int64_t>(&v)) {
      rc = sqlite3_bind_int64(stmt, k, *i);
    } else if (const double* d = std::get_if<double>(&v)) {
      rc = sqlite3_bind_double(stmt, k, *d);
    } else {
      const std::string& s = std::get<std::string>(v);
      rc = sqlite3_bind_text64(stmt, k, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    }
    if (rc != SQLITE_OK) {
      return fmt::format("cannot bind parameter {}: {}", pos, result_code_name(rc));
    }
  }
  if (highest != params.size()) {
    return fmt::format("{} parameter(s) were given but the statement takes {}", params.size(),
                       highest);
  }
  return std::string();
}

}  // namespace dtx::participant::sqlite
