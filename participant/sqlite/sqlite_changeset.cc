#include "participant/sqlite/sqlite_changeset.h"

#include <fmt/format.h>

#include <set>

#include "participant/sqlite/sqlite_guard.h"

namespace dtx::participant::sqlite {
namespace {

// sqlite3changeset_* take a non-const pointer but never write through it.
void* mutable_bytes(std::span<const uint8_t> b) {
  return const_cast<uint8_t*>(b.data());
}

struct IterCloser {
  void operator()(sqlite3_changeset_iter* it) const { sqlite3changeset_finalize(it); }
};
using IterHandle = std::unique_ptr<sqlite3_changeset_iter, IterCloser>;

Result<IterHandle> start(std::span<const uint8_t> cs) {
  if (cs.size() > static_cast<size_t>(INT32_MAX)) {
    return error(Code::invalid_argument, "changeset larger than 2 GiB");
  }
  sqlite3_changeset_iter* raw = nullptr;
  int rc = sqlite3changeset_start(&raw, static_cast<int>(cs.size()), mutable_bytes(cs));
  IterHandle it(raw);
  if (rc != SQLITE_OK) {
    return error(Code::corruption, "changeset does not decode: " + result_code_name(rc));
  }
  return it;
}

// Reads the change the iterator is on.
Status read_change(sqlite3_changeset_iter* it, Change* out) {
  const char* table = nullptr;
  int ncol = 0, op = 0, indirect = 0;
  int rc = sqlite3changeset_op(it, &table, &ncol, &op, &indirect);
  if (rc != SQLITE_OK) return error(Code::corruption, "changeset: " + result_code_name(rc));
  out->table = table ? table : "";
  out->op = op;
  out->indirect = indirect != 0;
  unsigned char* pk = nullptr;
  int npk = 0;
  sqlite3changeset_pk(it, &pk, &npk);
  out->pk.assign(static_cast<size_t>(ncol), false);
  for (int c = 0; c < npk && c < ncol; ++c)
    out->pk[c] = pk[c] != 0;
  out->old_values.assign(static_cast<size_t>(ncol), std::nullopt);
  out->new_values.assign(static_cast<size_t>(ncol), std::nullopt);
  for (int c = 0; c < ncol; ++c) {
    sqlite3_value* v = nullptr;
    if (op != SQLITE_INSERT && sqlite3changeset_old(it, c, &v) == SQLITE_OK && v) {
      out->old_values[c] = stored_value(v);
    }
    v = nullptr;
    if (op != SQLITE_DELETE && sqlite3changeset_new(it, c, &v) == SQLITE_OK && v) {
      out->new_values[c] = stored_value(v);
    }
  }
  return ok_status();
}

std::string column_name(const ColumnNames& names, const Change& c, size_t col) {
  auto it = names.find(c.table);
  if (it != names.end() && it->second.size() == c.pk.size()) return it->second[col];
  return fmt::format("c{}", col);
}

const char* conflict_name(int kind) {
  switch (kind) {
    case SQLITE_CHANGESET_DATA:
      return "the row differs from the recorded old values";
    case SQLITE_CHANGESET_NOTFOUND:
      return "the row is not there";
    case SQLITE_CHANGESET_CONFLICT:
      return "a row with this key is already there";
    case SQLITE_CHANGESET_CONSTRAINT:
      return "a constraint fails";
    case SQLITE_CHANGESET_FOREIGN_KEY:
      return "foreign keys are violated";
    default:
      return "unknown conflict";
  }
}

struct ApplyState {
  std::string first_conflict;
};

int on_conflict(void* ctx, int kind, sqlite3_changeset_iter* it) {
  auto* st = static_cast<ApplyState*>(ctx);
  if (st->first_conflict.empty()) {
    if (kind == SQLITE_CHANGESET_FOREIGN_KEY) {
      int n = 0;
      sqlite3changeset_fk_conflicts(it, &n);
      st->first_conflict = fmt::format("{} ({} violation(s))", conflict_name(kind), n);
    } else {
      Change c;
      if (read_change(it, &c).ok()) {
        std::string key;
        for (const auto& v : c.key())
          key += (key.empty() ? "" : ", ") + render_value(v);
        st->first_conflict = fmt::format("{} of {} key ({}): {}", change_op_name(c.op), c.table,
                                         key, conflict_name(kind));
      } else {
        st->first_conflict = conflict_name(kind);
      }
    }
  }
  // Never OMIT, never REPLACE: the redo must be exact or not happen (A5).
  return SQLITE_CHANGESET_ABORT;
}

}  // namespace

std::vector<StoredValue> Change::key() const {
  std::vector<StoredValue> out;
  const auto& values = op == SQLITE_INSERT ? new_values : old_values;
  for (size_t c = 0; c < pk.size(); ++c) {
    if (pk[c]) out.push_back(values[c].value_or(StoredValue{}));
  }
  return out;
}

const char* change_op_name(int op) {
  switch (op) {
    case SQLITE_INSERT:
      return "INSERT";
    case SQLITE_UPDATE:
      return "UPDATE";
    case SQLITE_DELETE:
      return "DELETE";
    default:
      return "?";
  }
}

Result<std::vector<Change>> decode_changeset(std::span<const uint8_t> cs) {
  std::vector<Change> out;
  auto it = start(cs);
  if (!it.ok()) return it.status();
  int rc;
  while ((rc = sqlite3changeset_next(it->get())) == SQLITE_ROW) {
    Change c;
    DTX_RETURN_IF_ERROR(read_change(it->get(), &c));
    out.push_back(std::move(c));
  }
  if (rc != SQLITE_DONE) {
    return error(Code::corruption, "changeset does not decode: " + result_code_name(rc));
  }
  return out;
}

Result<std::vector<uint8_t>> invert_changeset(std::span<const uint8_t> cs) {
  int n = 0;
  void* out = nullptr;
  int rc = sqlite3changeset_invert(static_cast<int>(cs.size()), mutable_bytes(cs), &n, &out);
  std::vector<uint8_t> bytes = take_sqlite_bytes(out, n);
  if (rc != SQLITE_OK) {
    return error(Code::internal, "cannot invert the changeset: " + result_code_name(rc));
  }
  return bytes;
}

std::string render_changes(const std::vector<Change>& changes, const ColumnNames& names,
                           const std::string& indent) {
  std::string out;
  for (const auto& c : changes) {
    std::string line = indent;
    auto all = [&](const std::vector<std::optional<StoredValue>>& values) {
      std::string s;
      for (size_t i = 0; i < values.size(); ++i) {
        if (!values[i]) continue;
        s += fmt::format("{}{}={}", s.empty() ? "" : ", ", column_name(names, c, i),
                         render_value(*values[i]));
      }
      return s;
    };
    if (c.op == SQLITE_INSERT) {
      line += fmt::format("INSERT INTO {}: {}", c.table, all(c.new_values));
    } else if (c.op == SQLITE_DELETE) {
      line += fmt::format("DELETE FROM {}: {}", c.table, all(c.old_values));
    } else {
      std::string where, set;
      for (size_t i = 0; i < c.pk.size(); ++i) {
        const std::string name = column_name(names, c, i);
        if (c.pk[i]) {
          where += fmt::format("{}{}={}", where.empty() ? "" : " AND ", name,
                               render_value(c.old_values[i].value_or(StoredValue{})));
        } else if (c.new_values[i]) {
          set += fmt::format("{}{} {} -> {}", set.empty() ? "" : ", ", name,
                             c.old_values[i] ? render_value(*c.old_values[i]) : "?",
                             render_value(*c.new_values[i]));
        }
      }
      line += fmt::format("UPDATE {} WHERE {}: {}", c.table, where, set);
    }
    if (c.indirect) line += "  (by a trigger or foreign-key action)";
    out += line + "\n";
  }
  return out;
}

Status apply_strict(sqlite3* db, std::span<const uint8_t> cs, std::string* conflict) {
  auto changes = decode_changeset(cs);
  if (!changes.ok()) return changes.status();
  // sqlite3changeset_apply skips a table whose shape differs, silently.
  std::set<std::string> checked;
  for (const auto& c : *changes) {
    if (!checked.insert(c.table).second) continue;
    auto shape = table_shape(db, c.table);
    if (!shape.ok()) return shape.status();
    std::vector<bool> pk(shape->columns.size(), false);
    for (int col : shape->pk_columns)
      pk[col] = true;
    if (!shape->exists || shape->type != "table" || pk != c.pk) {
      *conflict = fmt::format(
          "table {} is {} the recorded changes expect ({} columns, key columns as recorded)",
          c.table, shape->exists ? "not the table" : "missing, not the table", c.pk.size());
      return error(Code::failed_precondition, *conflict);
    }
  }
  ApplyState st;
  int rc = sqlite3changeset_apply(db, static_cast<int>(cs.size()), mutable_bytes(cs), nullptr,
                                  &on_conflict, &st);
  if (rc == SQLITE_OK) return ok_status();
  if (!st.first_conflict.empty()) {
    *conflict = st.first_conflict;
    return error(Code::failed_precondition, "the changeset conflicts: " + st.first_conflict);
  }
  *conflict = describe_last_error(db);
  return error(Code::io_error, "cannot apply the changeset: " + *conflict);
}

}  // namespace dtx::participant::sqlite
